// The coordinator's pool on its own: whole steps of real MNIST microbatches computed by its
// threads through computeRange(), as the local participant runs them, with the update made
// on the coordinator's thread afterwards (reduce, mean, Adam) or by the threads themselves,
// a shard each (--update threads). Prints per step: the wall time, the slowest thread's compute,
// the update, and what is left (hand-offs and waits). No sockets, no evaluation, no checkpoints.
//
//   node scripts/bench-pool.mjs [--threads 2] [--backend onnx|wasm] [--batch-size 64] [--microbatch 32] [--steps 600] [--update main|threads]
import { parseArgs } from 'node:util';
import { startPool } from '../dist/compute/pool.js';
import { computeRange } from '../dist/compute/range.js';
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
if (values.help || !['main', 'threads'].includes(values.update)) {
  console.log('Usage: node scripts/bench-pool.mjs [--threads 2] [--backend onnx|wasm] [--batch-size 64] [--microbatch 32] [--steps 600] [--update main|threads]');
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
const staged = new Float32Array(new SharedArrayBuffer(4 * spec.size));
const mean = new Float32Array(spec.size);
const leaves = Math.ceil(batch / microbatch);
const slab = createSharedSlab(spec.size, leaves);
const optimizer = createOptimizer('adam', spec.size);
const update = values.update === 'threads' ? { optimizer: 'adam', slots: optimizer.state().slots, staged } : undefined;
const pool = await startPool(threads, { spec, backend: values.backend, seed: 1, distort: false, train: data.train, test: data.test, weights, slab, gradDType: 'float32', update });

const sizes = Array.from({ length: leaves }, (_, j) => Math.min(microbatch, batch - j * microbatch));
const sum = { wall: 0, compute: 0, update: 0 };
for (let s = 0; s < steps; s++) {
  const samples = Uint32Array.from({ length: batch }, (_, i) => (s * batch + i) % 12800);
  const task = { weightsVersion: s, epoch: 0, microbatches: leaves, lo: 0, hi: leaves, samples, positions: samples, sizes };
  const t0 = performance.now();
  const r = await computeRange(pool, slab, task, undefined, false, update && { lr: 0.001, t: s + 1, examples: batch });
  let updateMs = r.updated?.ms ?? 0;
  if (!update) {
    const u0 = performance.now();
    reduceInPlace(slab, 0, leaves, (lo, hi) => lo === 0 && hi === leaves, { from: 0, to: spec.size, totals: true });
    meanInto(mean, slab.grads, batch, 0, spec.size);
    optimizer.begin();
    staged.set(weights);
    optimizer.update(staged, mean, 0.001, 0, spec.size);
    updateMs = performance.now() - u0;
  } else optimizer.beginAt(s + 1);
  weights.set(staged);
  if (s < warmup) continue;
  sum.wall += performance.now() - t0;
  sum.compute += r.computeMs;
  sum.update += updateMs;
}
await pool.close();
const per = (x) => (x / (steps - warmup)).toFixed(3);
console.log(`bench-pool: ${threads} thread(s), ${values.backend}, batch ${batch} = ${leaves} microbatch(es) of ${microbatch}, update on ${values.update === 'threads' ? 'the threads' : "the coordinator's thread"}, mean of ${steps - warmup} steps; ${machineSummary()}`);
console.log(`  step ${per(sum.wall)} ms: compute ${per(sum.compute)}, update ${per(sum.update)}, hand-offs and waits ${per(sum.wall - sum.compute - sum.update)}`);
