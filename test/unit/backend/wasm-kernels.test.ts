// lenet-dist's wasm kernels (src/backend/kernels/) against the cpu backend's reference kernels,
// each through the tfjs op (or gradient) that reaches it in a training step.
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend, registerOpGradients } from '../../../src/backend/select.js';

type Shape4 = [number, number, number, number];

function randomData(shape: number[], seed: number, scale = 1): Float32Array {
  const n = shape.reduce((a, b) => a * b, 1);
  const out = new Float32Array(n);
  let s = seed;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = (s / 2 ** 31 - 1) * scale;
  }
  return out;
}

const rand = (shape: number[], seed: number, scale = 1): tf.Tensor => tf.tensor(randomData(shape, seed, scale), shape);

/** Runs `f` on `backend` and returns its result's values. */
async function on(backend: string, f: () => tf.Tensor): Promise<Float32Array> {
  await tf.setBackend(backend);
  const t = tf.tidy(f);
  const data = (await t.data()) as Float32Array;
  t.dispose();
  return data;
}

/** max |wasm - cpu| / max |cpu|. */
function relativeDiff(cpu: Float32Array, wasm: Float32Array): number {
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < cpu.length; i++) {
    diff = Math.max(diff, Math.abs(cpu[i] - wasm[i]));
    scale = Math.max(scale, Math.abs(cpu[i]));
  }
  expect(scale).toBeGreaterThan(0.1); // the case computes something
  return diff / scale;
}

interface ConvCase {
  name: string;
  x: Shape4;
  filter: Shape4;
  strides: number;
  pad: 'valid' | 'same';
}

const CONV_CASES: ConvCase[] = [
  { name: 'lenet5 C1 (32x32x1 -> 6, valid)', x: [8, 32, 32, 1], filter: [5, 5, 1, 6], strides: 1, pad: 'valid' },
  { name: 'lenet5 C3 (14x14x6 -> 16, valid)', x: [8, 14, 14, 6], filter: [5, 5, 6, 16], strides: 1, pad: 'valid' },
  { name: 'keras conv1 (28x28x1 -> 6, valid)', x: [5, 28, 28, 1], filter: [5, 5, 1, 6], strides: 1, pad: 'valid' },
  { name: 'same padding', x: [4, 28, 28, 3], filter: [5, 5, 3, 6], strides: 1, pad: 'same' },
  // Stride 2 goes to the backend's own Conv2DBackpropInput; the other cases to the replacement.
  { name: 'stride 2, valid', x: [4, 13, 13, 2], filter: [3, 3, 2, 4], strides: 2, pad: 'valid' },
];

function convOutShape(c: ConvCase): number[] {
  return tf.tidy(() => tf.conv2d(tf.zeros(c.x) as tf.Tensor4D, tf.zeros(c.filter) as tf.Tensor4D, c.strides, c.pad).shape);
}

interface KernelCase {
  kernel: string;
  name: string;
  run: () => tf.Tensor;
  /** Largest allowed relative difference from the cpu backend; 0 demands the same bits. */
  tolerance: number;
}

// Tolerances are relative to the result's scale: max |wasm - cpu| <= tol * max |cpu|. XNNPACK
// accumulates many float32 products per entry in its own order, so entries that nearly cancel
// carry absolute errors near float32 epsilon times the scale, not times themselves.
const CASES: KernelCase[] = [
  ...CONV_CASES.map((c) => ({
    kernel: 'Conv2DBackpropFilter',
    name: c.name,
    tolerance: 1e-5,
    run: () => {
      const x = rand(c.x, 1) as tf.Tensor4D;
      const dy = rand(convOutShape(c), 2);
      return tf.grad((f: tf.Tensor) => tf.conv2d(x, f as tf.Tensor4D, c.strides, c.pad))(tf.zeros(c.filter), dy);
    },
  })),
  ...CONV_CASES.map((c) => ({
    kernel: 'Conv2DBackpropInput',
    name: c.name,
    tolerance: 1e-5,
    run: () => {
      const w = rand(c.filter, 3) as tf.Tensor4D;
      const dy = rand(convOutShape(c), 4);
      return tf.grad((x: tf.Tensor) => tf.conv2d(x as tf.Tensor4D, w, c.strides, c.pad))(tf.zeros(c.x), dy);
    },
  })),
  ...[
    { name: 'dense gradient dy x W^T (lenet5 F5)', a: [32, 120], b: [400, 120], ta: false, tb: true },
    { name: 'dense gradient x^T x dy (lenet5 F5)', a: [32, 400], b: [32, 120], ta: true, tb: false },
    { name: 'both transposed', a: [7, 5], b: [9, 7], ta: true, tb: true },
    { name: 'batched, transposed b', a: [3, 4, 6], b: [3, 5, 6], ta: false, tb: true },
    { name: 'untransposed (stock kernel)', a: [32, 400], b: [400, 120], ta: false, tb: false },
  ].map((m) => ({
    kernel: 'BatchMatMul',
    name: m.name,
    tolerance: 1e-6,
    run: () => tf.matMul(rand(m.a, 5), rand(m.b, 6), m.ta, m.tb),
  })),
  ...[
    { name: 'lenet5 S2 (28x28x6, 2x2 stride 2)', x: [8, 28, 28, 6] as Shape4, size: 2, stride: 2 },
    { name: 'lenet5 S4 (10x10x16, 2x2 stride 2)', x: [8, 10, 10, 16] as Shape4, size: 2, stride: 2 },
    { name: '3x3 stride 3', x: [2, 9, 12, 3] as Shape4, size: 3, stride: 3 },
    { name: 'overlapping 3x3 stride 2 (stock kernel)', x: [2, 9, 9, 3] as Shape4, size: 3, stride: 2 },
  ].map((p) => ({
    kernel: 'AvgPoolGrad',
    name: p.name,
    // 2x2 windows: one product by 0.25 per entry, exact, so the same bits as the cpu backend.
    tolerance: p.size === 2 && p.stride === 2 ? 0 : 1e-6,
    run: () => {
      const outShape = tf.tidy(() => tf.avgPool(tf.zeros(p.x) as tf.Tensor4D, p.size, p.stride, 'valid').shape);
      return tf.grad((x: tf.Tensor) => tf.avgPool(x as tf.Tensor4D, p.size, p.stride, 'valid'))(tf.zeros(p.x), rand(outShape, 7));
    },
  })),
  ...[
    { name: 'lenet5 input (28x28x1 -> 32x32x1)', x: [8, 28, 28, 1], p: [[0, 0], [2, 2], [2, 2], [0, 0]], value: 0 },
    { name: 'channels and batch padded, asymmetric', x: [2, 3, 4, 5], p: [[1, 0], [0, 2], [3, 1], [1, 2]], value: -1.5 },
    { name: 'rank 2', x: [5, 7], p: [[2, 1], [0, 3]], value: 0.25 },
  ].map((c) => ({
    kernel: 'PadV2',
    name: c.name,
    tolerance: 0,
    run: () => tf.pad(rand(c.x, 8), c.p as [number, number][], c.value),
  })),
  {
    kernel: 'Identity',
    name: 'a clone shares memory and survives its source (tf.clone)',
    tolerance: 0,
    run: () => {
      const x = rand([32, 28, 28, 6], 12);
      const y = tf.clone(x);
      x.dispose();
      return tf.add(y, 0);
    },
  },
  {
    kernel: 'Tanh',
    name: 'values from -12 to 12 (absolute error, at most a few float32 ulps of 1)',
    tolerance: 5e-7,
    run: () => tf.tanh(rand([64, 1000], 9, 12)),
  },
  {
    kernel: 'Tanh',
    name: 'its gradient, dy * (1 - tanh^2)',
    tolerance: 1e-6,
    run: () => tf.grad((x: tf.Tensor) => tf.tanh(x))(rand([32, 10, 10, 16], 10, 3), rand([32, 10, 10, 16], 11)),
  },
];

describe('wasm training kernels', () => {
  beforeAll(async () => {
    registerOpGradients(); // tf.grad below
    await initBackend('cpu');
    await initBackend('wasm');
  });

  it('Conv2DBackpropFilter, which stock wasm lacks, is registered', () => {
    expect(tf.getKernel('Conv2DBackpropFilter', 'wasm')).toBeDefined();
  });

  for (const c of CASES) {
    const claim = c.tolerance === 0 ? 'gives the same bits as the cpu backend' : `matches the cpu backend to ${c.tolerance} of its scale`;
    it(`${c.kernel} ${claim}: ${c.name}`, async () => {
      const cpu = await on('cpu', c.run);
      const wasm = await on('wasm', c.run);
      expect(wasm.length).toBe(cpu.length);
      if (c.tolerance === 0) expect(Buffer.from(wasm.buffer).equals(Buffer.from(cpu.buffer))).toBe(true);
      else expect(relativeDiff(cpu, wasm)).toBeLessThan(c.tolerance);
    });
  }

  for (const kernel of new Set(CASES.map((c) => c.kernel))) {
    it(`${kernel} leaves no tensors or backend data behind`, async () => {
      const c = CASES.find((k) => k.kernel === kernel)!;
      await on('wasm', c.run);
      const before = tf.memory().numTensors;
      const dataBefore = tf.engine().backend.numDataIds();
      for (let i = 0; i < 5; i++) await on('wasm', c.run);
      expect(tf.memory().numTensors).toBe(before);
      expect(tf.engine().backend.numDataIds()).toBe(dataBefore);
    });
  }
});
