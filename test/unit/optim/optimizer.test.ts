// Our flat-array Adam against tfjs's own AdamOptimizer with the same hyper-parameters.
import { createHash } from 'node:crypto';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { ADAM_BETA1, ADAM_BETA2, ADAM_EPSILON } from '../../../src/constants.js';
import { Adam, Sgd, createOptimizer, optimizerOver, powBySquaring } from '../../../src/optim/optimizer.js';
import { learningRate } from '../../../src/coordinator/schedule.js';

beforeAll(async () => {
  await tf.setBackend('cpu');
});

describe('powBySquaring (Adam\'s bias corrections, the same bits on any engine)', () => {
  // Repeated squaring's relative error grows with t (about t ulp); in a bias correction that is
  // far below anything a float32 update can see.
  it('is exact where the result is representable; the bias corrections 1 - beta^t agree with Math.pow\'s to 1e-12', () => {
    expect(powBySquaring(2, 0)).toBe(1);
    expect(powBySquaring(2, 52)).toBe(2 ** 52);
    expect(powBySquaring(0.5, 1074)).toBe(Number.MIN_VALUE);
    expect(powBySquaring(3, 33)).toBe(5559060566555523); // 3^33 < 2^53
    for (const base of [ADAM_BETA1, ADAM_BETA2]) {
      for (const t of [1, 2, 3, 7, 100, 937, 10_000, 123_456, 4_000_000_000]) {
        const ours = 1 - powBySquaring(base, t);
        const theirs = 1 - Math.pow(base, t);
        expect(Math.abs(ours - theirs)).toBeLessThanOrEqual(1e-12 * theirs);
      }
    }
  });
});

describe('Adam', () => {
  it('follows tf.train.adam to a few float32 ulp over 20 steps', () => {
    const n = 50;
    const w0 = Float32Array.from({ length: n }, (_, i) => Math.sin(i));
    const grads = Array.from({ length: 20 }, (_, s) => Float32Array.from({ length: n }, (_, i) => Math.cos(i * 3 + s) * 0.1));
    const ours = new Adam(n);
    const w = w0.slice();
    for (const g of grads) ours.apply(w, g, 0.01);

    const v = tf.variable(tf.tensor1d(w0));
    const opt = tf.train.adam(0.01, ADAM_BETA1, ADAM_BETA2, ADAM_EPSILON);
    for (const g of grads) opt.applyGradients([{ name: v.name, tensor: tf.tensor1d(g) }]);
    const ref = v.dataSync();
    // tfjs rounds every intermediate to float32, we only the stored values: a few ulp per step.
    for (let i = 0; i < n; i++) expect(Math.abs(w[i] - ref[i])).toBeLessThan(5e-6);
  });

  // Every run's digest rests on these bits: a change to the update's arithmetic, however small,
  // is a change of every result, so they are pinned (gradients from 1e-6 to 1e2, 100 steps).
  it('keeps its pinned bits', () => {
    const n = 1000;
    const a = new Adam(n);
    const w = Float32Array.from({ length: n }, (_, i) => Math.cos(i) * 0.05);
    for (let t = 1; t <= 100; t++) a.apply(w, Float32Array.from({ length: n }, (_, i) => Math.sin(i * t) * 10 ** ((i % 9) - 6)), 1e-3);
    const h = createHash('sha256');
    for (const values of [w, a.state().slots.m, a.state().slots.v]) h.update(Buffer.from(values.buffer));
    expect(h.digest('hex')).toBe('cc0f001b6ca2b048201f3beaee9e54c18ac03fad04e3702d1b7f1c7513ea19be');
  });

  it('resumes from its state exactly', () => {
    const g = Float32Array.from({ length: 8 }, (_, i) => i - 3.5);
    const a = new Adam(8);
    const wa = new Float32Array(8);
    for (let s = 0; s < 6; s++) a.apply(wa, g, 0.1);
    const b = new Adam(8);
    const wb = new Float32Array(8);
    for (let s = 0; s < 3; s++) b.apply(wb, g, 0.1);
    const c = createOptimizer('adam', 8, structuredClone(b.state()));
    for (let s = 0; s < 3; s++) c.apply(wb, g, 0.1);
    expect(wb).toEqual(wa);
  });

  it('over the same state, shard by shard and told the count (compute threads), gives the bits of apply()', () => {
    const g = Float32Array.from({ length: 10 }, (_, i) => Math.cos(i) - 0.2);
    const whole = new Adam(10);
    const wa = new Float32Array(10);
    const own = new Adam(10);
    const wb = new Float32Array(10);
    // Two "threads" over the owner's slots, which live in shared memory.
    const shards = [optimizerOver(own.state()), optimizerOver(own.state())];
    expect(own.state().slots.m.buffer).toBeInstanceOf(SharedArrayBuffer);
    for (let t = 1; t <= 5; t++) {
      whole.apply(wa, g, 0.05);
      own.begin(); // the owner counts the update; the threads are told its number
      [[6, 10], [0, 6]].forEach(([from, to], k) => {
        shards[k].beginAt(t);
        shards[k].update(wb, g, 0.05, from, to);
      });
    }
    expect(wb).toEqual(wa);
    expect(own.state().slots.v).toEqual(whole.state().slots.v);
    expect(own.state().t).toBe(5);
  });

  it('refuses the state of another optimizer', () => {
    expect(() => createOptimizer('sgd', 8, new Adam(8).state())).toThrow(/--optimizer adam/);
  });
});

describe('Sgd', () => {
  it('steps against the gradient', () => {
    const w = Float32Array.from([1, 2]);
    new Sgd().apply(w, Float32Array.from([1, -1]), 0.5);
    expect(Array.from(w)).toEqual([0.5, 2.5]);
  });
});

describe('an update in parts', () => {
  // The trainer updates the dense layers early and the convolutions last: the same bits as one apply().
  for (const name of ['adam', 'sgd'] as const) {
    it(`${name}: begin() and update() over two ranges, dense part first, equal apply() bit for bit`, () => {
      const n = 37;
      const split = 11;
      const whole = createOptimizer(name, n);
      const parts = createOptimizer(name, n);
      const w1 = Float32Array.from({ length: n }, (_, i) => Math.sin(i));
      const w2 = w1.slice();
      for (let s = 0; s < 5; s++) {
        const g = Float32Array.from({ length: n }, (_, i) => Math.cos(i * 7 + s) * 0.3);
        whole.apply(w1, g, 0.01);
        parts.begin();
        parts.update(w2, g, 0.01, split, n);
        parts.update(w2, g, 0.01, 0, split);
      }
      expect(new Uint32Array(w2.buffer)).toEqual(new Uint32Array(w1.buffer));
      expect(parts.state().t).toBe(5);
    });
  }
});

describe('learningRate', () => {
  const c = { lr: 1, decayPerEpoch: 0.5, warmupSteps: 10, stepsPerEpoch: 100 };
  it('warms up linearly, then decays per epoch independent of the run length', () => {
    expect(learningRate(c, 0)).toBeCloseTo(0.1 * 0.5 ** 0);
    expect(learningRate(c, 9)).toBeCloseTo(0.5 ** 0.09);
    expect(learningRate(c, 100)).toBeCloseTo(0.5);
    expect(learningRate(c, 300)).toBeCloseTo(0.125);
  });
});
