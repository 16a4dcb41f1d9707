// The registered Conv2DBackpropFilter on wasm against the cpu backend's reference kernel.
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../../../src/backend/select.js';

interface Case {
  name: string;
  x: [number, number, number, number];
  filter: [number, number, number, number];
  strides: number;
  pad: 'valid' | 'same';
}

const CASES: Case[] = [
  { name: 'lenet5 C1 (32x32x1 -> 6, valid)', x: [8, 32, 32, 1], filter: [5, 5, 1, 6], strides: 1, pad: 'valid' },
  { name: 'lenet5 C3 (14x14x6 -> 16, valid)', x: [8, 14, 14, 6], filter: [5, 5, 6, 16], strides: 1, pad: 'valid' },
  { name: 'keras conv1 (28x28x1 -> 6, valid)', x: [5, 28, 28, 1], filter: [5, 5, 1, 6], strides: 1, pad: 'valid' },
  { name: 'same padding', x: [4, 28, 28, 3], filter: [5, 5, 3, 6], strides: 1, pad: 'same' },
  { name: 'stride 2, valid', x: [4, 13, 13, 2], filter: [3, 3, 2, 4], strides: 2, pad: 'valid' },
];

function randomData(shape: number[], seed: number): Float32Array {
  const n = shape.reduce((a, b) => a * b, 1);
  const out = new Float32Array(n);
  let s = seed;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s / 2 ** 31 - 1;
  }
  return out;
}

/** The filter gradient of conv2d for fixed random x and dy, taken through tf.grad (so through the kernel). */
async function filterGrad(backend: string, c: Case): Promise<Float32Array> {
  await tf.setBackend(backend);
  const dw = tf.tidy(() => {
    const x = tf.tensor4d(randomData(c.x, 1), c.x);
    const outShape = tf.conv2d(x, tf.zeros(c.filter) as tf.Tensor4D, c.strides, c.pad).shape;
    const dy = tf.tensor4d(randomData(outShape, 2), outShape);
    return tf.grad((f: tf.Tensor) => tf.conv2d(x, f as tf.Tensor4D, c.strides, c.pad))(tf.zeros(c.filter), dy);
  });
  const data = (await dw.data()) as Float32Array;
  dw.dispose();
  return data;
}

/** The input gradient of conv2d for fixed random x, filter and dy, through the Conv2DBackpropInput kernel. */
async function inputGrad(backend: string, c: Case): Promise<Float32Array> {
  await tf.setBackend(backend);
  const dx = tf.tidy(() => {
    const w = tf.tensor4d(randomData(c.filter, 3), c.filter);
    const outShape = tf.conv2d(tf.zeros(c.x) as tf.Tensor4D, w, c.strides, c.pad).shape;
    const dy = tf.tensor4d(randomData(outShape, 4), outShape);
    return tf.grad((x: tf.Tensor) => tf.conv2d(x as tf.Tensor4D, w, c.strides, c.pad))(tf.zeros(c.x), dy);
  });
  const data = (await dx.data()) as Float32Array;
  dx.dispose();
  return data;
}

function relativeDiff(cpu: Float32Array, wasm: Float32Array): number {
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < cpu.length; i++) {
    diff = Math.max(diff, Math.abs(cpu[i] - wasm[i]));
    scale = Math.max(scale, Math.abs(cpu[i]));
  }
  expect(scale).toBeGreaterThan(1);
  return diff / scale;
}

const KERNELS = [
  // Stride 2 goes to the backend's own Conv2DBackpropInput; the other cases to the replacement.
  { name: 'Conv2DBackpropInput (XNNPACK-based replacement)', gradient: inputGrad },
  { name: 'Conv2DBackpropFilter (supplied: wasm has none)', gradient: filterGrad },
];

describe('wasm training kernels', () => {
  beforeAll(async () => {
    await initBackend('cpu');
    await initBackend('wasm');
  });

  it('Conv2DBackpropFilter is registered', () => {
    expect(tf.getKernel('Conv2DBackpropFilter', 'wasm')).toBeDefined();
  });

  // Tolerance is relative to the gradient's scale: max |wasm - cpu| <= 1e-5 * max |cpu|. XNNPACK
  // accumulates thousands of float32 products per entry, so entries that nearly cancel carry
  // absolute errors near float32 epsilon times the scale, not times themselves.
  for (const k of KERNELS) {
    for (const c of CASES) {
      it(`${k.name} matches the cpu backend to 1e-5 of its scale: ${c.name}`, async () => {
        const cpu = await k.gradient('cpu', c);
        const wasm = await k.gradient('wasm', c);
        expect(wasm.length).toBe(cpu.length);
        expect(relativeDiff(cpu, wasm)).toBeLessThan(1e-5);
      });
    }

    it(`${k.name} leaves no tensors or backend data behind`, async () => {
      await tf.setBackend('wasm');
      await k.gradient('wasm', CASES[1]);
      const before = tf.memory().numTensors;
      const dataBefore = tf.engine().backend.numDataIds();
      for (let i = 0; i < 5; i++) await k.gradient('wasm', CASES[1]);
      expect(tf.memory().numTensors).toBe(before);
      expect(tf.engine().backend.numDataIds()).toBe(dataBefore);
    });
  }
});
