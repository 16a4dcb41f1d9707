// The coordinator's pool with real threads (the built dist/, whose thread entry point piscina
// loads): a whole step whose threads make its update gives the bits of the update made on this
// thread, for any number of threads, and so do steps queued behind each other, or queued and
// given up; a thread that dies fails its task once, and its mailbox
// is served again by the thread piscina starts in its place; the step is done again to the same bits.
import { fileURLToPath, pathToFileURL } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const built = <T>(path: string): Promise<T> => import(pathToFileURL(`${ROOT}dist/${path}`).href) as Promise<T>;
type Pool = typeof import('../../src/compute/pool.js');
type Range = typeof import('../../src/compute/range.js');
type Optim = typeof import('../../src/optim/optimizer.js');
type Slabs = typeof import('../../src/reduce/ordered-sum.js');
type ComputePool = import('../../src/compute/pool.js').ComputePool;
type RangeTask = import('../../src/compute/types.js').RangeTask;
type RangeResult = import('../../src/compute/range.js').RangeResult;
type StepUpdateTask = import('../../src/compute/range.js').StepUpdateTask;

const BATCH = 80; // 3 microbatches of 32, the last one short
const LEAVES = 3;
const STEPS = 3;
const bits = (a: Float32Array): string => Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString('hex');

let mods: { pool: Pool; range: Range; optim: Optim; slabs: Slabs };
let setup: Awaited<ReturnType<typeof prepare>>;

async function prepare() {
  const { modelSpec } = await built<typeof import('../../src/model/architectures.js')>('model/architectures.js');
  const { initWeights } = await built<typeof import('../../src/model/weights.js')>('model/weights.js');
  const { loadMnist } = await built<typeof import('../../src/data/mnist.js')>('data/mnist.js');
  const spec = modelSpec('lenet5', 'relu');
  return { spec, data: loadMnist({ trainLimit: BATCH * STEPS, testLimit: 10 }), initial: initWeights(spec, 3) };
}

type Mode = 'main' | 'threads' | 'queued';

/**
 * STEPS steps on `threads` threads; the weights and Adam's moments after each, as hex. The update
 * made here (`main`), by the threads (`threads`), or by the threads with each next step queued
 * behind the one they are on (`queued`); `abandon`: the step after the first is queued and given
 * up before it is taken (then computed afresh).
 */
async function train(threads: number, mode: Mode, opts: { kill?: (pool: ComputePool) => Promise<void>; abandon?: boolean } = {}): Promise<string[]> {
  const { spec, data, initial } = setup;
  const shared = (n: number): Float32Array => new Float32Array(new SharedArrayBuffer(4 * n));
  const weights = shared(spec.size);
  weights.set(initial);
  const staged = new Float32Array(spec.size);
  const slab = mods.slabs.createSharedSlab(spec.size, LEAVES);
  const optimizer = mods.optim.createOptimizer('adam', spec.size);
  const update = mode === 'main' ? undefined : { optimizer: 'adam' as const, slots: optimizer.state().slots };
  const pool = await mods.pool.startPool(threads, { spec, backend: 'wasm', seed: 3, distort: false, train: data.train, test: data.test, weights, slab, gradDType: 'float32', update });
  const out: string[] = [];
  const stepTask = (s: number): RangeTask => {
    const samples = Uint32Array.from({ length: BATCH }, (_, i) => s * BATCH + i);
    return { weightsVersion: s, epoch: 0, microbatches: LEAVES, lo: 0, hi: LEAVES, samples, positions: samples, sizes: [32, 32, 16] };
  };
  const stepUpdate = (s: number): StepUpdateTask => ({ lr: 0.01, t: s + 1, examples: BATCH });
  const state = (): string => bits(weights) + bits(optimizer.state().slots.m) + bits(optimizer.state().slots.v);
  try {
    let queued = mode === 'queued' ? mods.range.queueStep(pool, slab, stepTask(0), stepUpdate(0)) : undefined;
    for (let s = 0; s < STEPS; s++) {
      const task = stepTask(s);
      if (opts.kill && s === 1) {
        // Killed while it computes: the attempt fails, with nothing of it written, and is done again.
        const attempt = mods.range.computeRange(pool, slab, task, undefined, false, update && stepUpdate(s));
        await opts.kill(pool);
        await expect(attempt).rejects.toThrow();
      }
      let r: RangeResult;
      if (queued) {
        const next = s + 1 < STEPS ? mods.range.queueStep(pool, slab, stepTask(s + 1), stepUpdate(s + 1)) : undefined;
        r = await queued.go();
        queued = next;
      } else {
        r = await mods.range.computeRange(pool, slab, task, undefined, false, update && stepUpdate(s));
      }
      if (update) {
        expect(r.updated?.finite).toBe(true);
        expect(r.updated?.count).toBe(BATCH);
        optimizer.beginAt(s + 1);
      } else {
        const mean = new Float32Array(spec.size);
        mods.optim.batchMean(slab, LEAVES, (lo, hi) => lo === 0 && hi === LEAVES, mean);
        staged.set(weights);
        optimizer.apply(staged, mean, 0.01);
        expect(slab.count[0]).toBe(BATCH);
        weights.set(staged);
      }
      out.push(state());
      if (opts.abandon && s === 0) {
        // Its threads compute its sums, then give up before the weights or the optimizer.
        await mods.range.queueStep(pool, slab, stepTask(1), stepUpdate(1)).abandon();
        expect(state()).toBe(out[0]);
      }
    }
  } finally {
    await pool.close();
  }
  return out;
}

beforeAll(async () => {
  mods = {
    pool: await built<Pool>('compute/pool.js'),
    range: await built<Range>('compute/range.js'),
    optim: await built<Optim>('optim/optimizer.js'),
    slabs: await built<Slabs>('reduce/ordered-sum.js'),
  };
  setup = await prepare();
});

describe('the compute pool', () => {
  it('a whole step whose threads make its update, a shard each: the bits of the update made here, for 1-3 threads', async () => {
    const reference = await train(1, 'main');
    expect(new Set(reference).size).toBe(STEPS);
    for (const threads of [1, 2, 3]) expect(await train(threads, 'threads')).toEqual(reference);
  }, 120_000);

  it('each next step queued behind the one the threads are on, or queued and given up: the same bits', async () => {
    const reference = await train(1, 'main');
    for (const threads of [1, 2]) expect(await train(threads, 'queued')).toEqual(reference);
    expect(await train(2, 'threads', { abandon: true })).toEqual(reference);
  }, 120_000);

  it('a thread that dies fails its task once; its mailbox is served again, and the bits stay', async () => {
    const reference = await train(2, 'threads');
    const killed = await train(2, 'threads', {
      kill: async (pool) => {
        const piscina = (pool as unknown as { piscina: { threads: { terminate(): Promise<number> }[] } }).piscina;
        await piscina.threads[0].terminate();
      },
    });
    expect(killed).toEqual(reference);
  }, 120_000);
});
