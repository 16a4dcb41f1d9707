// One microbatch's gradient: same function on wasm and cpu, no tensor growth across steps.
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../../../src/backend/select.js';
import { GradientComputer } from '../../../src/compute/gradients.js';
import { loadMnist, type Mnist } from '../../../src/data/mnist.js';
import { denseOffset, modelSpec, type ArchName } from '../../../src/model/architectures.js';
import { initWeights } from '../../../src/model/weights.js';

let mnist: Mnist;
beforeAll(async () => {
  mnist = loadMnist({ trainLimit: 256, testLimit: 64 });
  await initBackend('cpu');
  await initBackend('wasm');
});

const input = { samples: Array.from({ length: 16 }, (_, i) => i * 3), positions: Array.from({ length: 16 }, (_, i) => i), epoch: 0 };

function gradientOn(backend: string, arch: ArchName): { grad: Float32Array; loss: number } {
  tf.setBackend(backend);
  const spec = modelSpec(arch);
  const computer = new GradientComputer(spec, mnist.train.images, mnist.train.labels, 1, false);
  computer.setWeights(initWeights(spec, 1), 0);
  const grad = new Float32Array(spec.size);
  const loss = computer.microbatchGradient(input, grad);
  computer.dispose();
  return { grad, loss };
}

describe('GradientComputer', () => {
  for (const arch of ['lenet5', 'keras'] as const) {
    it(`computes the same ${arch} gradient on wasm as on the cpu backend`, () => {
      const cpu = gradientOn('cpu', arch);
      const wasm = gradientOn('wasm', arch);
      expect(Math.abs(wasm.loss - cpu.loss) / cpu.loss).toBeLessThan(1e-5);
      let diff = 0;
      let scale = 0;
      for (let i = 0; i < cpu.grad.length; i++) {
        diff = Math.max(diff, Math.abs(cpu.grad[i] - wasm.grad[i]));
        scale = Math.max(scale, Math.abs(cpu.grad[i]));
      }
      expect(scale).toBeGreaterThan(0);
      expect(diff / scale).toBeLessThan(1e-5);
    });
  }

  // src/compute/direct-lenet5.ts runs the tape's kernels without the engine: it must give the
  // tape's bits, or every run would depend on which path a thread took.
  for (const activation of ['relu', 'tanh'] as const) {
    for (const size of [16, 1]) {
      it(`computes lenet5 (${activation}) without the tape to the tape's bits, microbatch of ${size}`, () => {
        tf.setBackend('wasm');
        const spec = modelSpec('lenet5', activation);
        const weights = initWeights(spec, 5);
        const one = { ...input, samples: input.samples.slice(0, size), positions: input.positions.slice(0, size) };
        const results = [false, true].map((tape) => {
          const computer = new GradientComputer(spec, mnist.train.images, mnist.train.labels, 1, true, tape);
          computer.setWeights(weights, 0);
          const grad = new Float32Array(spec.size);
          const loss = computer.microbatchGradient(one, grad);
          computer.dispose();
          return { grad, loss };
        });
        expect(results[0].loss).toBe(results[1].loss);
        expect(Buffer.from(results[0].grad.buffer).equals(Buffer.from(results[1].grad.buffer))).toBe(true);
        expect(results[0].grad.some((g) => g !== 0)).toBe(true);
      });
    }
  }

  // A remote worker sends the dense layers' part of a sum while the convolutions' backward runs.
  for (const tape of [false, true]) {
    it(`calls onDense once the dense part is final${tape ? ' (at the end on the tape)' : ', before the convolutions\' part is written'}`, () => {
      tf.setBackend('wasm');
      const spec = modelSpec('lenet5');
      const split = denseOffset(spec);
      const computer = new GradientComputer(spec, mnist.train.images, mnist.train.labels, 1, false, tape);
      computer.setWeights(initWeights(spec, 3), 0);
      const plain = new Float32Array(spec.size);
      const plainLoss = computer.microbatchGradient(input, plain);
      const grad = new Float32Array(spec.size).fill(NaN);
      const seen: { loss: number; dense: Float32Array; convWritten: boolean }[] = [];
      const loss = computer.microbatchGradient(input, grad, (l) => seen.push({ loss: l, dense: grad.slice(split), convWritten: !Number.isNaN(grad[0]) }));
      computer.dispose();
      expect(seen).toHaveLength(1);
      expect(seen[0].loss).toBe(plainLoss);
      expect(loss).toBe(plainLoss);
      expect(Buffer.from(seen[0].dense.buffer).equals(Buffer.from(plain.slice(split).buffer))).toBe(true);
      expect(seen[0].convWritten).toBe(tape);
      expect(Buffer.from(grad.buffer).equals(Buffer.from(plain.buffer))).toBe(true);
    });
  }

  it('runs every microbatch\'s convolutions ahead, waits for the dense weights only after them, and gives the same bits', () => {
    tf.setBackend('wasm');
    const spec = modelSpec('lenet5');
    const weights = initWeights(spec, 4);
    const inputs = [input, { ...input, samples: input.samples.map((i) => i + 1) }];
    const plain = new GradientComputer(spec, mnist.train.images, mnist.train.labels, 1, true);
    plain.setWeights(weights, 0);
    const want = inputs.map((i) => {
      const g = new Float32Array(spec.size);
      return { loss: plain.microbatchGradient(i, g), g };
    });
    plain.dispose();

    const tensorsBefore = tf.engine().backend.numDataIds();
    const computer = new GradientComputer(spec, mnist.train.images, mnist.train.labels, 1, true);
    const events: string[] = [];
    computer.setWeights(weights, 0, () => events.push('dense weights'));
    const held = tf.engine().backend.numDataIds();
    const prepared = inputs.map((i) => computer.prepare(i, true));
    events.push('convolutions done');
    expect(prepared.every((p) => p.convs !== undefined)).toBe(true);
    expect(tf.engine().backend.numDataIds()).toBeGreaterThan(held); // their activations are held
    const got = prepared.map((p) => {
      const g = new Float32Array(spec.size);
      return { loss: computer.finish(p, g), g };
    });
    for (const p of prepared) computer.release(p); // already finished: frees nothing twice
    expect(events).toEqual(['convolutions done', 'dense weights']);
    for (let k = 0; k < inputs.length; k++) {
      expect(got[k].loss).toBe(want[k].loss);
      expect(Buffer.from(got[k].g.buffer).equals(Buffer.from(want[k].g.buffer))).toBe(true);
    }
    // A prepared microbatch that is never finished is freed by release().
    computer.release(computer.prepare(input, true));
    computer.dispose();
    expect(tf.engine().backend.numDataIds()).toBe(tensorsBefore);
  });

  it('is bit-for-bit repeatable on wasm', () => {
    expect(gradientOn('wasm', 'lenet5').grad).toEqual(gradientOn('wasm', 'lenet5').grad);
  });

  it('keeps the tensors of a loaded version, and loads it again when its generation changes (values written again)', () => {
    tf.setBackend('wasm');
    const spec = modelSpec('lenet5');
    const computer = new GradientComputer(spec, mnist.train.images, mnist.train.labels, 1, true);
    const gradientOf = (weights: Float32Array, generation: number): Float32Array => {
      computer.setWeights(weights, 3, undefined, generation);
      const grad = new Float32Array(spec.size);
      computer.microbatchGradient(input, grad);
      return grad;
    };
    const weights = initWeights(spec, 2);
    const before = gradientOf(weights, 0);
    weights.set(initWeights(spec, 3)); // other values under the same version
    expect(gradientOf(weights, 0)).toEqual(before); // the same version and generation: kept
    const fresh = new GradientComputer(spec, mnist.train.images, mnist.train.labels, 1, true);
    fresh.setWeights(weights, 0);
    const expected = new Float32Array(spec.size);
    fresh.microbatchGradient(input, expected);
    fresh.dispose();
    expect(gradientOf(weights, 1)).toEqual(expected);
    computer.dispose();
  });

  it('does not grow the number of tensors across steps', () => {
    tf.setBackend('wasm');
    const spec = modelSpec('lenet5');
    const computer = new GradientComputer(spec, mnist.train.images, mnist.train.labels, 1, true);
    const weights = initWeights(spec, 2);
    const grad = new Float32Array(spec.size);
    computer.setWeights(weights, 0);
    computer.microbatchGradient(input, grad);
    const tensors = tf.memory().numTensors;
    const dataIds = tf.engine().backend.numDataIds();
    for (let step = 1; step <= 5; step++) {
      weights[0] += 0.01;
      computer.setWeights(weights, step);
      computer.microbatchGradient(input, grad);
      computer.evaluate(mnist.test.images, mnist.test.labels, 0, 64);
    }
    expect(tf.memory().numTensors).toBe(tensors);
    expect(tf.engine().backend.numDataIds()).toBe(dataIds);
    computer.dispose();
  });

  // The dense layers' weights of a remote worker's version load on first use (setWeights with
  // awaitDense). On the tape path that first use was inside tf.tidy, which disposed them: the
  // second microbatch on the same weights failed ('Cannot read properties of undefined').
  for (const arch of ['keras', 'lenet5'] as const) {
    it(`${arch}: several microbatches on weights whose dense part came late, the bits of weights loaded whole`, () => {
      tf.setBackend('wasm');
      const spec = modelSpec(arch);
      const weights = initWeights(spec, 4);
      const halves = [input, { ...input, samples: input.samples.map((s) => s + 1) }];
      const run = (late: boolean): Float32Array[] => {
        const computer = new GradientComputer(spec, mnist.train.images, mnist.train.labels, 1, false);
        computer.setWeights(weights, 0, late ? () => undefined : undefined);
        const grads = halves.map((mb) => {
          const grad = new Float32Array(spec.size);
          computer.microbatchGradient(mb, grad);
          return grad;
        });
        grads.push(Float32Array.from([computer.evaluate(mnist.test.images, mnist.test.labels, 0, 16).lossSum]));
        computer.dispose();
        return grads;
      };
      expect(run(true)).toEqual(run(false));
    });
  }
});
