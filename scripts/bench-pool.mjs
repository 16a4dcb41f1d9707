// The coordinator's pool on its own: whole steps of real MNIST microbatches computed by its
// threads through computeRange(), as the local participant runs them, with the update made
// on the coordinator's thread afterwards (reduce, mean, Adam) or by the threads themselves,
// a shard each (--update threads), and with each next step queued behind the one the threads
// are on, as a lone local participant gets it (--update queued). Prints per step: the wall time,
// the slowest thread's compute, the update, and what is left (hand-offs and waits). No sockets,
// no evaluation, no checkpoints.
//
//   node scripts/bench-pool.mjs [--threads 2] [--backend onnx|wasm] [--batch-size 64] [--microbatch 32] [--steps 600] [--update main|threads|queued]
import { parseArgs } from 'node:util';
import { startPool } from '../dist/compute/pool.js';
import { computeRange, queueStep } from '../dist/compute/range.js';
import { createSharedSlab, reduceInPlace } from '../dist/reduce/ordered-sum.js';
import { modelSpec } from '../dist/model/architectures.js';
import { initWeights } from '../dist/model/weights.js';
import { loadMnist } from '../dist/data/mnist.js';
import { createOptimizer, meanInto } from '../dist/optim/optimizer.js';
import { machineSummary } from './lib.mjs';

const { values } = parseArgs({
  options: {
    threads: { type: 'string', default: '2' },
    backend: { type: 'string', default: 'onnx' },
    'batch-size': { type: 'string', default: '64' },
    microbatch: { type: 'string', default: '32' },
    steps: { type: 'string', default: '600' },
    update: { type: 'string', default: 'threads' },
    help: { type: 'boolean', short: 'h' },
  },
});
if (values.help || !['main', 'threads', 'queued'].includes(values.update)) {
  console.log('Usage: node scripts/bench-pool.mjs [--threads 2] [--backend onnx|wasm] [--batch-size 64] [--microbatch 32] [--steps 600] [--update main|threads|queued]');
  process.exit(values.help ? 0 : 2);
}
const threads = Number(values.threads);
const batch = Number(values['batch-size']);
const microbatch = Number(values.microbatch);
const steps = Number(values.steps);
const warmup = Math.min(100, Math.floor(steps / 5));
const spec = modelSpec('lenet5', 'relu');
const data = loadMnist({ trainLimit: 12800, testLimit: 10 });
const weights = new Float32Array(new SharedArrayBuffer(4 * spec.size));
weights.set(initWeights(spec, 1));
const staged = new Float32Array(spec.size);
const mean = new Float32Array(spec.size);
const leaves = Math.ceil(batch / microbatch);
const slab = createSharedSlab(spec.size, leaves);
const optimizer = createOptimizer('adam', spec.size);
const update = values.update !== 'main' ? { optimizer: 'adam', slots: optimizer.state().slots } : undefined;
const pool = await startPool(threads, { spec, backend: values.backend, seed: 1, distort: false, train: data.train, test: data.test, weights, slab, gradDType: 'float32', update });

const sizes = Array.from({ length: leaves }, (_, j) => Math.min(microbatch, batch - j * microbatch));
const sum = { wall: 0, compute: 0, update: 0 };
const stepTask = (s) => {
  const samples = Uint32Array.from({ length: batch }, (_, i) => (s * batch + i) % 12800);
  return { weightsVersion: s, epoch: 0, microbatches: leaves, lo: 0, hi: leaves, samples, positions: samples, sizes };
};
const stepUpdate = (s) => ({ lr: 0.001, t: s + 1, examples: batch });
let queued = values.update === 'queued' ? queueStep(pool, slab, stepTask(0), stepUpdate(0)) : undefined;
for (let s = 0; s < steps; s++) {
  const t0 = performance.now();
  let r;
  if (queued) {
    const next = s + 1 < steps ? queueStep(pool, slab, stepTask(s + 1), stepUpdate(s + 1)) : undefined;
    r = await queued.go();
    queued = next;
  } else {
    r = await computeRange(pool, slab, stepTask(s), undefined, false, update && stepUpdate(s));
  }
  let updateMs = r.updated?.ms ?? 0;
  if (!update) {
    const u0 = performance.now();
    reduceInPlace(slab, 0, leaves, (lo, hi) => lo === 0 && hi === leaves, { from: 0, to: spec.size, totals: true });
    meanInto(mean, slab.grads, batch, 0, spec.size);
    optimizer.begin();
    staged.set(weights);
    optimizer.update(staged, mean, 0.001, 0, spec.size);
    weights.set(staged);
    updateMs = performance.now() - u0;
  } else optimizer.beginAt(s + 1); // the threads updated the weights in place
  if (s < warmup) continue;
  sum.wall += performance.now() - t0;
  sum.compute += r.computeMs;
  sum.update += updateMs;
}
await pool.close();
const per = (x) => (x / (steps - warmup)).toFixed(3);
console.log(`bench-pool: ${threads} thread(s), ${values.backend}, batch ${batch} = ${leaves} microbatch(es) of ${microbatch}, update on ${{ main: "the coordinator's thread", threads: 'the threads', queued: 'the threads, next step queued' }[values.update]}, mean of ${steps - warmup} steps; ${machineSummary()}`);
console.log(`  step ${per(sum.wall)} ms: compute ${per(sum.compute)}, update ${per(sum.update)}, hand-offs and waits ${per(sum.wall - sum.compute - sum.update)}`);
