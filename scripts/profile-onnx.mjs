// ONNX Runtime's profile of the onnx backend's gradient graph: kernel time per node (or per op
// type with --by-op), averaged over --runs runs of one microbatch of real MNIST images.
//
//   node scripts/profile-onnx.mjs [--arch lenet5|keras] [--activation relu|tanh] [--microbatch N] [--runs R] [--by-op]
import { readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { gradientGraph } from '../dist/backend/onnx/lenet-graph.js';
import { OrtSession, onnxRuntimeAvailable } from '../dist/backend/onnx/runtime.js';
import { loadMnist } from '../dist/data/mnist.js';
import { modelSpec } from '../dist/model/architectures.js';
import { expandWeights, initWeights } from '../dist/model/weights.js';
import { machineSummary } from './lib.mjs';

const { values } = parseArgs({
  options: {
    arch: { type: 'string', default: 'lenet5' },
    activation: { type: 'string', default: 'relu' },
    microbatch: { type: 'string', default: '32' },
    runs: { type: 'string', default: '50' },
    'by-op': { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
  },
});
if (values.help) {
  console.log('Usage: node scripts/profile-onnx.mjs [--arch lenet5|keras] [--activation relu|tanh] [--microbatch N] [--runs R] [--by-op]');
  process.exit(0);
}
if (!onnxRuntimeAvailable()) {
  console.error('profile-onnx: onnxruntime-node is not installed or does not load here');
  process.exit(2);
}
const n = Number(values.microbatch);
const runs = Number(values.runs);
const spec = modelSpec(values.arch, values.activation);
const mnist = loadMnist({ trainLimit: n, testLimit: 1 });
const pixels = Float32Array.from(mnist.train.images, (v) => v / 255);
const oneHot = new Float32Array(n * 10);
for (let i = 0; i < n; i++) oneHot[i * 10 + mnist.train.labels[i]] = 1;
const feeds = { x: { data: pixels, dims: [n, 1, 28, 28] }, y: { data: oneHot, dims: [n, 10] } };
expandWeights(spec, initWeights(spec, 1)).forEach((w, i) => (feeds[`p${i}`] = { data: w, dims: spec.params[i].shape }));

const session = new OrtSession(gradientGraph(spec), join(tmpdir(), 'lenet-onnx-profile'));
for (let r = 0; r < runs; r++) session.run(feeds);
const file = session.endProfiling();
const events = JSON.parse(readFileSync(file, 'utf8'));
rmSync(file, { force: true });
const byKey = new Map();
for (const e of events) {
  if (e.cat !== 'Node' || !e.name.endsWith('_kernel_time')) continue;
  const key = values['by-op'] ? e.args.op_name : `${e.args.op_name} ${e.name.replace('_kernel_time', '')}`;
  byKey.set(key, (byKey.get(key) ?? 0) + e.dur);
}
const total = [...byKey.values()].reduce((a, b) => a + b, 0);
console.log(`profile-onnx: ${values.arch} (${values.activation}) gradient graph, microbatch ${n}, mean of ${runs} runs; ${machineSummary()}`);
console.log(`kernel time ${(total / runs / 1000).toFixed(2)} ms per run (${Math.round((n * runs * 1e6) / total)} samples/s)`);
for (const [key, us] of [...byKey].sort((a, b) => b[1] - a[1])) {
  if (us / total < 0.005) break;
  console.log(`${(us / runs).toFixed(0).padStart(7)} us  ${((us / total) * 100).toFixed(1).padStart(5)}%  ${key}`);
}
