// The dense layers' update made before the step ends: only once every range's dense part is in,
// never in the step's own weights, and, finished, the bits of one whole update.
import { describe, expect, it } from 'vitest';
import { EarlyDenseUpdate, type StagedWeights } from '../../../src/coordinator/early-dense.js';
import { createOptimizer, meanInto } from '../../../src/optim/optimizer.js';
import { coverNodes, createSharedSlab, reduceInPlace, slot, type Slab } from '../../../src/reduce/ordered-sum.js';

const WIDTH = 10;
const SPLIT = 4;
const N = 4;
// Two participants: microbatch [0,1) and microbatches [1,4).
const RANGES = [
  [0, 1],
  [1, 4],
] as const;

function filledSlab(poison = false): Slab {
  const slab = createSharedSlab(WIDTH, N);
  for (const [lo, hi] of RANGES) {
    for (const [a] of coverNodes(N, lo, hi)) {
      slot(slab, a).set(Array.from({ length: WIDTH }, (_, i) => Math.sin(a * 13 + i) * 3));
      slab.loss[a] = 1.5 + a;
      slab.count[a] = 8 * (coverNodes(N, lo, hi).find(([x]) => x === a)![1] - a);
    }
  }
  if (poison) slot(slab, 2)[WIDTH - 1] = NaN;
  return slab;
}

const isCovered = (lo: number, hi: number): boolean => RANGES.some(([a, b]) => coverNodes(N, a, b).some(([x, y]) => x === lo && y === hi));
const bits = (a: Float32Array): number[] => Array.from(new Uint32Array(a.slice().buffer));

function setup(poison = false) {
  const slab = filledSlab(poison);
  const weights = Float32Array.from({ length: WIDTH }, (_, i) => Math.cos(i));
  const staged: StagedWeights = { version: -1, weights: new Float32Array(WIDTH) };
  const optimizer = createOptimizer('adam', WIDTH);
  const meanGrad = new Float32Array(WIDTH);
  const sent: number[] = [];
  const ahead = new EarlyDenseUpdate({ slab, weights, staged, meanGrad, optimizer, split: SPLIT }, N, RANGES, 0.01, 8, (v) => sent.push(v));
  return { slab, weights, staged, meanGrad, sent, ahead };
}

describe('EarlyDenseUpdate', () => {
  it('waits for every range, again for a revoked one, and updates a staged copy only', () => {
    const { weights, staged, sent, ahead } = setup();
    const before = weights.slice();
    ahead.arrived(0);
    ahead.revoked(0); // its participant failed: the range is being recomputed
    ahead.arrived(1);
    expect(ahead.applied).toBe(false);
    expect(sent).toEqual([]);
    ahead.arrived(0);
    expect(ahead.applied).toBe(true);
    expect(sent).toEqual([8]);
    expect(staged.version).toBe(8);
    expect(bits(weights)).toEqual(bits(before)); // a range recomputed now still sees these
    ahead.revoked(1); // too late to matter: the update is made
    expect(ahead.applied).toBe(true);
  });

  it('finished, gives the bits of reducing everything and one apply()', () => {
    const { slab, weights, staged, meanGrad, ahead } = setup();
    // Reference: the step as it is without early updates.
    const ref = filledSlab();
    reduceInPlace(ref, 0, N, isCovered);
    const refMean = new Float32Array(WIDTH);
    expect(meanInto(refMean, ref.grads, ref.count[0], 0, WIDTH)).toBe(true);
    const refWeights = weights.slice();
    createOptimizer('adam', WIDTH).apply(refWeights, refMean, 0.01);

    ahead.arrived(1);
    ahead.arrived(0);
    expect(ahead.lossSum).toBe(ref.loss[0]);
    expect(ahead.count).toBe(ref.count[0]);
    // What trainStep does at the end: the convolutions' part, then finish().
    reduceInPlace(slab, 0, N, isCovered, { from: 0, to: SPLIT, totals: false });
    meanInto(meanGrad, slab.grads, ahead.count, 0, SPLIT);
    ahead.finish();
    expect(bits(weights)).toEqual(bits(refWeights));
    expect(staged.version).toBe(-1);
  });

  it('does not update or send non-finite weights', () => {
    const { sent, ahead, staged } = setup(true);
    ahead.arrived(0);
    ahead.arrived(1);
    expect(ahead.diverged).toBe(true);
    expect(ahead.applied).toBe(false);
    expect(sent).toEqual([]);
    expect(staged.version).toBe(-1);
  });
});
