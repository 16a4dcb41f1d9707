import { describe, expect, it } from 'vitest';
import { c3Connections, modelSpec } from '../../../src/model/architectures.js';
import { compactInto, expandWeights, initWeights, weightsSha256 } from '../../../src/model/weights.js';

describe('parameter counts', () => {
  it('lenet5 has 60,806 trainable parameters, 1,516 of them in C3', () => {
    const spec = modelSpec('lenet5');
    expect(spec.size).toBe(60806);
    const c3 = spec.params.filter((p) => p.layer === 'c3');
    expect(c3.reduce((a, p) => a + p.size, 0)).toBe(1516);
    expect(spec.params.map((p) => p.size)).toEqual([150, 6, 1500, 16, 48000, 120, 10080, 84, 840, 10]);
  });

  it('keras has exactly 44,426 parameters', () => {
    expect(modelSpec('keras').size).toBe(44426);
  });

  it('follows Table I of the paper: 60 connections', () => {
    const t = c3Connections();
    expect(t).toHaveLength(16);
    expect(t.flat()).toHaveLength(60);
    expect(t[0]).toEqual([0, 1, 2]);
    expect(t[5]).toEqual([5, 0, 1]);
    expect(t[6]).toEqual([0, 1, 2, 3]);
    expect(t[12]).toEqual([0, 1, 3, 4]);
    expect(t[15]).toEqual([0, 1, 2, 3, 4, 5]);
  });
});

describe('flat weights', () => {
  const spec = modelSpec('lenet5');

  it('expands C3 with zeros where the table has no connection and compacts back exactly', () => {
    const flat = initWeights(spec, 3);
    const full = expandWeights(spec, flat);
    const c3 = full[2];
    expect(c3.length).toBe(2400);
    const mask = spec.params[2].mask!;
    for (let i = 0; i < c3.length; i++) if (!mask[i]) expect(c3[i]).toBe(0);
    const back = new Float32Array(spec.size);
    compactInto(spec, full, back);
    expect(back).toEqual(flat);
  });

  it('initialises deterministically per seed, biases at zero', () => {
    expect(weightsSha256(initWeights(spec, 3))).toBe(weightsSha256(initWeights(spec, 3)));
    expect(weightsSha256(initWeights(spec, 4))).not.toBe(weightsSha256(initWeights(spec, 3)));
    const full = expandWeights(spec, initWeights(spec, 3));
    expect(Array.from(full[1])).toEqual([0, 0, 0, 0, 0, 0]);
  });
});
