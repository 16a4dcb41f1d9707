// Child of bench.mjs: stock tfjs `model.fit` on the wasm backend (one thread), the same model,
// batch and samples as lenet-dist, with only the missing Conv2DBackpropFilter kernel supplied.
// Prints one JSON line: {samplesPerSecond, samples, batch}.
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { registerMissingWasmKernels } from '../dist/backend/wasm-kernels.js';
import { loadMnist } from '../dist/data/mnist.js';
import { modelSpec } from '../dist/model/architectures.js';
import { buildLayersModel } from '../dist/model/export.js';

const [samples, batch, arch] = [Number(process.argv[2]), Number(process.argv[3]), process.argv[4] ?? 'lenet5'];
// Stock tfjs: only the kernel wasm lacks is supplied (not lenet-dist's faster input gradient).
registerMissingWasmKernels();
await tf.setBackend('wasm');
await tf.ready();
const data = loadMnist({ trainLimit: samples, testLimit: 1 });
const x = tf.tidy(() => tf.tensor4d(Float32Array.from(data.train.images, (v) => v / 255), [samples, 28, 28, 1]));
const y = tf.tidy(() => tf.oneHot(tf.tensor1d(Array.from(data.train.labels), 'int32'), 10));
const model = buildLayersModel(modelSpec(arch));
model.compile({ optimizer: tf.train.adam(1e-3), loss: 'categoricalCrossentropy' });
// Warm-up: one short fit so kernel setup and first-call costs are not timed.
await model.fit(x.slice(0, batch * 2), y.slice(0, batch * 2), { batchSize: batch, epochs: 1, verbose: 0 });
const t0 = performance.now();
await model.fit(x, y, { batchSize: batch, epochs: 1, verbose: 0, shuffle: true });
const seconds = (performance.now() - t0) / 1000;
process.stdout.write(JSON.stringify({ samplesPerSecond: samples / seconds, samples, batch }) + '\n');
