// The step with fake participants, in milliseconds: whoever computes which range, whatever
// fails, is late, arrives out of order or is checked, the weights after each step are the bits
// of one participant computing everything.
import { describe, expect, it } from 'vitest';
import { Membership, rangeTask, type ComputeOptions, type Participant, type StepWork } from '../../../src/coordinator/participants.js';
import { LateError, StepDeadline, trainStep, type StepContext } from '../../../src/coordinator/step.js';
import { MAX_CONSECUTIVE_LATE, STEP_DEADLINE_CAP_MS, STEP_DEADLINE_FLOOR_MS, STEP_DEADLINE_INITIAL_MS } from '../../../src/constants.js';
import { UpdateLostError, type RangeResult, type StepUpdateTask } from '../../../src/compute/range.js';
import type { RangeTask } from '../../../src/compute/types.js';
import type { ParticipantView } from '../../../src/metrics/state.js';
import { createOptimizer, meanInto, optimizerOver } from '../../../src/optim/optimizer.js';
import { coverNodes, createSharedSlab, reduceInPlace, slot, type Slab, type TreeNode } from '../../../src/reduce/ordered-sum.js';
import type { GradDType } from '../../../src/reduce/float16.js';
import type { WeightsPart } from '../../../src/protocol/messages.js';

const WIDTH = 12;
const SPLIT = 5; // the "dense layers" start here
const PLAN = { batchSize: 256, microbatch: 32, samples: 512 + 100 }; // 3 steps: 8, 8 and 4 microbatches
const STEPS = 3;
const N = 8;

/** The honest sums of leaves [lo,hi) of `work`, pre-summed into the range's maximal subtrees. */
function honestSums(slab: Slab, work: StepWork, lo: number, hi: number): TreeNode[] {
  const task = rangeTask(work, lo, hi);
  for (let j = lo; j < hi; j++) {
    const g = slot(slab, j);
    for (let i = 0; i < WIDTH; i++) g[i] = Math.sin(work.globalStep * 31 + j * 7 + i) * (1 + task.samples[(j - lo) * work.microbatch] / 100);
    slab.loss[j] = 0.5 + j / 8;
    slab.count[j] = task.sizes[j - lo];
  }
  const nodes = coverNodes(work.microbatches, lo, hi);
  for (const [a, b] of nodes) reduceInPlace(slab, a, b, (x, y) => y - x === 1);
  return nodes;
}

type Behaviour = 'ok' | 'fail' | 'late' | 'dishonest' | 'lost-update';

class FakeParticipant implements Participant {
  microbatchesDone = 0;
  lateStreak = 0;
  lateTotal = 0;
  failures = 0;
  readonly calls: { step: number; lo: number; hi: number; opts?: ComputeOptions }[] = [];
  readonly cancelled: number[] = [];
  dropped: string | undefined;
  /** The versions of early dense weights it was sent. */
  readonly published: [number, WeightsPart][] = [];
  private pending = 0;
  /** What it does at each global step (default 'ok'). */
  behaviour: (step: number) => Behaviour = () => 'ok';
  /** Milliseconds before it answers, per call. */
  delay: () => number = () => 0;
  /** Makes a whole step's update itself when offered one, as the local pool's threads do. */
  inPlace: ((u: StepUpdateTask) => void) | undefined;
  /** The step queued with the one before, when it makes whole steps' updates (ComputeOptions.next). */
  private queued: number | undefined;
  private cancels = new Map<number, () => void>();

  constructor(
    readonly id: string,
    readonly kind: 'local' | 'remote',
    readonly threads: number,
    private readonly slab: Slab,
  ) {}

  get name(): string {
    return this.id;
  }

  view(): ParticipantView {
    return { id: this.id, kind: this.kind, name: this.name, threads: this.threads, microbatches: this.microbatchesDone, lastHeartbeatMsAgo: null, late: this.lateTotal, failures: this.failures, state: 'active' };
  }

  cancel(step: number): void {
    this.cancelled.push(step);
    this.cancels.get(step)?.();
  }

  drop(reason: string): void {
    this.dropped = reason;
  }

  preassigned(step: number): boolean {
    return this.queued === step;
  }

  publish(version: number, part: WeightsPart): void {
    this.published.push([version, part]);
  }

  computing(): boolean {
    return this.pending > 0;
  }

  async compute(work: StepWork, lo: number, hi: number, opts?: ComputeOptions): Promise<RangeResult> {
    this.calls.push({ step: work.globalStep, lo, hi, opts });
    this.pending++;
    try {
      return await this.answer(work, lo, hi, opts);
    } finally {
      this.pending--;
    }
  }

  private async answer(work: StepWork, lo: number, hi: number, opts?: ComputeOptions): Promise<RangeResult> {
    const what = this.behaviour(work.globalStep);
    await new Promise((r) => setTimeout(r, this.delay()));
    if (what === 'fail') throw new Error('lost its connection');
    if (what === 'late') {
      // Answers only when cancelled, and then with nothing: a cancelled range writes no more.
      await new Promise<void>((resolve) => this.cancels.set(work.globalStep, resolve));
      throw new LateError('cancelled');
    }
    const nodes = honestSums(this.slab, work, lo, hi);
    if (what === 'dishonest') slot(this.slab, nodes[0][0])[0] += 1e-3;
    if (what === 'lost-update') throw new UpdateLostError(new Error('a thread was killed'));
    const inPlace = opts?.update && this.inPlace;
    if (!inPlace) opts?.onDense?.();
    this.microbatchesDone += hi - lo;
    if (opts?.update && this.inPlace) {
      this.inPlace(opts.update);
      // Queued behind this one, as the pool's threads do: it is its from now on.
      this.queued = opts.next?.work.globalStep;
      return { nodes, computeMs: 1, updated: { finite: true, ms: 0, lossSum: this.slab.loss[0], count: this.slab.count[0] } };
    }
    return { nodes, computeMs: 1 };
  }
}

/** A deadline of a fixed few milliseconds, so that lateness shows at once. */
class ShortDeadline extends StepDeadline {
  override currentMs(): number {
    return 40;
  }
}

function context(gradDType: GradDType = 'float16') {
  const slab = createSharedSlab(WIDTH, N);
  const lines: string[] = [];
  const log = (line: string): void => void lines.push(line);
  const membership = new Membership(log, 1000);
  const ctx: StepContext = {
    plan: PLAN,
    membership,
    url: 'ws://test',
    slab,
    weights: Float32Array.from({ length: WIDTH }, (_, i) => Math.cos(i) / 4),
    staged: { version: -1, weights: new Float32Array(WIDTH) },
    split: SPLIT,
    gradDType,
    meanGrad: new Float32Array(WIDTH),
    optimizer: createOptimizer('adam', WIDTH),
    schedule: { lr: 0.01, decayPerEpoch: 0.9, warmupSteps: 0, stepsPerEpoch: STEPS },
    deadline: new ShortDeadline(),
    log,
  };
  const join = (id: string, kind: 'local' | 'remote', threads = 1): FakeParticipant => {
    const p = new FakeParticipant(id, kind, threads, slab);
    membership.add(p);
    return p;
  };
  return { ctx, lines, join };
}

const PERM = Uint32Array.from({ length: PLAN.samples }, (_, i) => (i * 37) % PLAN.samples);
const bits = (a: Float32Array): string => Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString('hex');

/** Runs the epoch's steps; the weights' bits after each. */
async function epoch(ctx: StepContext): Promise<string[]> {
  const out: string[] = [];
  for (let step = 0; step < STEPS; step++) {
    await trainStep(ctx, PERM, 0, step, step);
    out.push(bits(ctx.weights));
  }
  return out;
}

async function reference(): Promise<string[]> {
  const { ctx, join } = context();
  join('local', 'local');
  return epoch(ctx);
}

describe('trainStep with fake participants', () => {
  it('any split of the leaves gives the bits of one participant computing every step', async () => {
    const ref = await reference();
    expect(new Set(ref).size).toBe(STEPS); // the weights do move
    for (const layout of [[1, 1], [3, 1, 2], [1, 1, 1, 1, 1, 1, 1, 1], [5, 2]]) {
      const { ctx, join } = context();
      const ps = layout.map((threads, i) => join(`p${i}`, i === 0 ? 'local' : 'remote', threads));
      expect(await epoch(ctx)).toEqual(ref);
      expect(ps.reduce((n, p) => n + p.microbatchesDone, 0)).toBe(8 + 8 + 4);
    }
  });

  it('a participant that fails has its range recomputed by the local one, and leaves', async () => {
    const ref = await reference();
    const { ctx, join, lines } = context();
    const local = join('local', 'local');
    const lost = join('lost', 'remote');
    lost.behaviour = (step) => (step === 1 ? 'fail' : 'ok');
    expect(await epoch(ctx)).toEqual(ref);
    expect(lines.some((l) => /^lost lost its connection \(step 1\); microbatches \[4,8\) go to local$/.test(l))).toBe(true);
    expect(ctx.membership.forStep()).toEqual([local]);
    expect(lost.failures).toBe(1);
  });

  it('a late participant is cancelled, its share halves per late step, and it is dropped after the limit', async () => {
    const ref = await reference();
    const { ctx, join } = context();
    join('local', 'local', 2);
    const slow = join('slow', 'remote', 2);
    slow.behaviour = () => 'late';
    expect(await epoch(ctx)).toEqual(ref);
    expect(slow.cancelled).toEqual([0, 1, 2]);
    // 8 leaves at threads 2 : 2, then 2 : 1, then 4 leaves at 2 : 0.5.
    expect(slow.calls.map((c) => c.hi - c.lo)).toEqual([4, 3, 1]);
    expect(slow.lateStreak).toBe(MAX_CONSECUTIVE_LATE);
    expect(slow.dropped).toMatch(/late 3 steps in a row/);
  });

  it('dense parts that come in any order, early updates on: the same bits', async () => {
    const ref = await reference();
    const { ctx, join } = context('float32');
    join('local', 'local');
    const remotes = [join('r1', 'remote'), join('r2', 'remote'), join('r3', 'remote', 2)];
    remotes.forEach((p, i) => (p.delay = () => [9, 1, 5][i] + Math.random() * 3));
    expect(await epoch(ctx)).toEqual(ref);
    // Each step's dense layers were updated before its last range was in, and published.
    for (const p of remotes) expect(p.published).toEqual([[1, 'dense'], [2, 'dense'], [3, 'dense']]);
    expect(ctx.staged.version).toBe(-1); // and made part of their step
  });

  it("a lone remote worker applies each update itself and gets the next step with this one, but not across the epoch's end", async () => {
    const ref = await reference();
    const { ctx, join } = context('float32');
    const alone = join('alone', 'remote');
    expect(await epoch(ctx)).toEqual(ref);
    expect(alone.calls.map((c) => c.opts?.apply?.lr)).toEqual([0, 1, 2].map((s) => 0.01 * 0.9 ** (s / STEPS)));
    expect(alone.calls.map((c) => c.opts?.next?.work.globalStep)).toEqual([1, 2, undefined]);
  });

  it("the local pool computing a step whole makes its update itself, a shard per thread: the same bits; never in a step it shares or takes over", async () => {
    const ref = await reference();
    const { ctx, join } = context('float32');
    const local = join('local', 'local');
    // As thread.ts does it, for two threads: the tree is complete (one range), so divide and
    // update each shard over the coordinator's own optimizer state, in the weights.
    local.inPlace = (u) => {
      const optimizer = optimizerOver(ctx.optimizer.state());
      const mean = new Float32Array(WIDTH);
      for (const [from, to] of [[7, WIDTH], [0, 7]]) {
        meanInto(mean, ctx.slab.grads, u.examples, from, to);
        optimizer.beginAt(u.t);
        optimizer.update(ctx.weights, mean, u.lr, from, to);
      }
    };
    expect(await epoch(ctx)).toEqual(ref);
    expect(local.calls.map((c) => c.opts?.update?.t)).toEqual([1, 2, 3]);
    // Alone, it is given the next step of the epoch with each one, and so computes it.
    expect(local.calls.map((c) => c.opts?.next?.work.globalStep)).toEqual([1, 2, undefined]);
    expect(local.calls.map((c) => c.opts?.update?.examples)).toEqual([256, 256, 100]);
    expect(ctx.optimizer.state().t).toBe(3);

    // Beside a remote worker, or taking over a lone worker's range, it is not offered one.
    const shared = context('float32');
    const local2 = shared.join('local', 'local');
    local2.inPlace = local.inPlace;
    const lost = shared.join('lost', 'remote');
    expect(await epoch(shared.ctx)).toEqual(ref);
    expect(local2.calls.every((c) => c.opts?.update === undefined)).toBe(true);
    const alone = context('float32');
    const worker = alone.join('alone', 'remote');
    let spare: FakeParticipant | undefined;
    worker.behaviour = (step) => {
      if (step > 0) return 'ok';
      spare = alone.join('spare', 'local'); // joins while the step runs, and takes its range over
      spare.inPlace = local.inPlace;
      return 'fail';
    };
    await trainStep(alone.ctx, PERM, 0, 0, 0);
    expect(spare!.calls.map((c) => [c.step, c.lo, c.hi, c.opts?.update])).toEqual([[0, 0, N, undefined]]);
    expect(lost.calls.length).toBeGreaterThan(0);
  });

  it('a step whose update was partly made when a thread failed is not done again: the run stops', async () => {
    const { ctx, join } = context('float32');
    const local = join('local', 'local');
    local.behaviour = () => 'lost-update';
    // Not handed to anyone (that would wait for a worker to join, then fail otherwise).
    await expect(trainStep(ctx, PERM, 0, 0, 0)).rejects.toThrow(UpdateLostError);
    expect(local.calls).toHaveLength(1);
  });

  it('a checked range whose bits recomputation does not give: the honest sums go on, the sender is ejected', async () => {
    const ref = await reference();
    const { ctx, join, lines } = context();
    join('local', 'local');
    const liar = join('liar', 'remote');
    liar.behaviour = (step) => (step === 1 ? 'dishonest' : 'ok');
    let checked = 0;
    ctx.verifier = {
      pick: () => true,
      async check(task: RangeTask, nodes: TreeNode[]): Promise<boolean> {
        checked++;
        const sent = nodes.map(([lo]) => slot(ctx.slab, lo).slice());
        const start = task.weightsVersion * PLAN.batchSize; // epoch 0: the global step is the step
        const work: StepWork = { globalStep: task.weightsVersion, epoch: 0, microbatches: task.microbatches, microbatch: PLAN.microbatch, perm: PERM, start, count: Math.min(PLAN.batchSize, PLAN.samples - start) };
        honestSums(ctx.slab, work, task.lo, task.hi);
        return nodes.every(([lo], k) => bits(sent[k]) === bits(slot(ctx.slab, lo)));
      },
      checkSharded: () => Promise.reject(new Error('no sharded step here')),
    };
    expect(await epoch(ctx)).toEqual(ref);
    expect(checked).toBe(2); // steps 0 and 1: the liar was gone for step 2
    expect(liar.dropped).toMatch(/not what recomputation gives/);
    expect(lines.some((l) => /liar \(liar\) sent sums for microbatches \[4,8\) of step 1 that recomputation does not give; ejected/.test(l))).toBe(true);
  });
});

describe('StepDeadline', () => {
  it('is --step-deadline until a step time is known, then 4 x the median within [min(floor, it), cap]', () => {
    const d = new StepDeadline();
    expect(d.currentMs()).toBe(STEP_DEADLINE_INITIAL_MS);
    for (const ms of [10, 30, 20]) d.record(ms);
    expect(d.currentMs()).toBe(STEP_DEADLINE_FLOOR_MS); // 4 x 20 ms is below the floor
    for (const ms of [5_000, 6_000, 7_000]) d.record(ms);
    expect(d.currentMs()).toBe(4 * 5_000);
    for (let i = 0; i < 10; i++) d.record(60_000);
    expect(d.currentMs()).toBe(STEP_DEADLINE_CAP_MS);

    const short = new StepDeadline(500);
    expect(short.currentMs()).toBe(500);
    short.record(20);
    expect(short.currentMs()).toBe(500); // the floor is the shorter of the two
    short.record(300);
    short.record(400);
    expect(short.currentMs()).toBe(4 * 300);
  });
});
