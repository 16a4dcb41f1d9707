// `tf.profile` of one microbatch gradient, the unit of work of every lenet-dist thread: the time
// per microbatch over 100 runs, then the kernels of one run, summed by name, slowest first. This
// is how the wasm kernels in src/backend/kernels/ were chosen. Uses the built dist/.
//
//   node scripts/profile-step.mjs [--backend wasm|cpu] [--microbatch 32] [--activation relu|tanh] [--all]
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../dist/backend/select.js';
import { modelSpec } from '../dist/model/architectures.js';
import { GradientComputer } from '../dist/compute/gradients.js';
import { initWeights } from '../dist/model/weights.js';
import { loadMnist } from '../dist/data/mnist.js';

const { values } = parseArgs({
  options: {
    backend: { type: 'string', default: 'wasm' },
    microbatch: { type: 'string', default: '32' },
    activation: { type: 'string', default: 'relu' },
    all: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h' },
  },
});
if (values.help) {
  console.log('Usage: node scripts/profile-step.mjs [--backend wasm|cpu] [--microbatch 32] [--activation relu|tanh] [--all]');
  process.exit(0);
}
const n = Number(values.microbatch);
await initBackend(values.backend);
const spec = modelSpec('lenet5', values.activation);
const data = loadMnist({ trainLimit: n, testLimit: 1 });
const computer = new GradientComputer(spec, data.train.images, data.train.labels, 1, false);
const weights = initWeights(spec, 1);
computer.setWeights(weights, 0);
const out = new Float32Array(weights.length);
const input = { samples: Array.from({ length: n }, (_, i) => i), positions: Array.from({ length: n }, (_, i) => i), epoch: 0 };
for (let i = 0; i < 20; i++) computer.microbatchGradient(input, out); // warm-up
const t0 = performance.now();
for (let i = 0; i < 100; i++) computer.microbatchGradient(input, out);
const ms = (performance.now() - t0) / 100;
console.log(`${values.backend}, lenet5 (${values.activation}), microbatch ${n}: ${ms.toFixed(2)} ms per microbatch gradient (${((n * 1000) / ms).toFixed(0)} samples/s on one thread)`);
const profile = await tf.profile(() => {
  computer.microbatchGradient(input, out);
});
const byName = new Map();
for (const k of profile.kernels) {
  const a = byName.get(k.name) ?? { calls: 0, ms: 0 };
  a.calls++;
  a.ms += k.kernelTimeMs;
  byName.set(k.name, a);
}
console.log(`one profiled run: ${profile.kernels.length} kernels (profiling adds its own overhead)`);
for (const [name, a] of [...byName].sort((x, y) => y[1].ms - x[1].ms)) console.log(`  ${name.padEnd(24)} ${String(a.calls).padStart(3)} calls ${a.ms.toFixed(2).padStart(7)} ms`);
if (values.all) {
  for (const k of profile.kernels) console.log(`  ${k.name.padEnd(24)} ${k.kernelTimeMs.toFixed(3).padStart(7)} ms  ${JSON.stringify(k.inputShapes)} -> ${JSON.stringify(k.outputShapes)}`);
}
