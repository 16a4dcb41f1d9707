// The coordinator's update of a step, shard by shard: a shard is updated only once every range's
// part of it is in, never in the step's own weights; shards finishing in any order, or made by
// their owners, give the bits of one whole update.
import { describe, expect, it } from 'vitest';
import { StepUpdate, type StagedWeights } from '../../../src/coordinator/step-update.js';
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
/** Where each range's sums are in the slab: its maximal subtrees. */
const NODES = RANGES.map(([lo, hi]) => coverNodes(N, lo, hi));
const PARTS = [
  { from: 0, to: SPLIT },
  { from: SPLIT, to: WIDTH },
];

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
const WEIGHTS = Float32Array.from({ length: WIDTH }, (_, i) => Math.cos(i));

/** The plain step: everything reduced, one apply(). */
function reference(): { weights: Float32Array; mean: Float32Array; lossSum: number; count: number } {
  const ref = filledSlab();
  reduceInPlace(ref, 0, N, isCovered);
  const mean = new Float32Array(WIDTH);
  expect(meanInto(mean, ref.grads, ref.count[0], 0, WIDTH)).toBe(true);
  const weights = WEIGHTS.slice();
  createOptimizer('adam', WIDTH).apply(weights, mean, 0.01);
  return { weights, mean, lossSum: ref.loss[0], count: ref.count[0] };
}

function setup(shards = PARTS, poison = false) {
  const slab = filledSlab(poison);
  const weights = WEIGHTS.slice();
  const staged: StagedWeights = { version: -1, weights: new Float32Array(WIDTH) };
  const published: number[] = [];
  const update = new StepUpdate({ slab, weights, staged, meanGrad: new Float32Array(WIDTH), optimizer: createOptimizer('adam', WIDTH) }, N, RANGES.length, shards, 0.01, 8, (k) => published.push(k));
  return { weights, staged, published, update };
}

describe('StepUpdate', () => {
  it('updates a shard once every range\'s part of it is in, again waiting for a revoked range, into a staged copy only', () => {
    const { weights, staged, published, update } = setup();
    update.arrived(0, NODES[0], 1);
    update.revoked(0); // its participant failed: the range is being recomputed
    update.arrived(1, NODES[1], 1);
    expect(published).toEqual([]);
    update.arrived(0, NODES[0], 1);
    expect(published).toEqual([1]);
    expect(staged.version).toBe(8);
    expect(bits(weights)).toEqual(bits(WEIGHTS)); // a range recomputed now still sees these
    update.revoked(1); // too late for shard 1: it is made
    expect(update.complete).toBe(false);
    update.arrived(1, NODES[1]);
    update.arrived(0, NODES[0]);
    expect(published).toEqual([1, 0]);
    expect(update.complete).toBe(true);
  });

  for (const [what, order] of [
    ['the dense layers first', [[0, 1], [1, 1], [0], [1]]],
    ['the convolutions first', [[0, 0], [1, 0], [1], [0]]],
    ['all at once', [[1], [0]]],
  ] as [string, [number, number?][]][]) {
    it(`shards made in any order (${what}) commit the bits of reducing everything and one apply()`, () => {
      const ref = reference();
      const { weights, staged, update } = setup();
      for (const [i, k] of order) update.arrived(i, NODES[i], k);
      expect(update.lossSum).toBe(ref.lossSum);
      expect(update.count).toBe(ref.count);
      update.commit();
      expect(bits(weights)).toEqual(bits(ref.weights));
      expect(staged.version).toBe(-1);
    });
  }

  it('one shard, or one per owner whose mean is received: the same bits', () => {
    const ref = reference();
    const whole = setup([{ from: 0, to: WIDTH }]);
    whole.update.arrived(0, NODES[0]);
    whole.update.arrived(1, NODES[1]);
    whole.update.commit();
    expect(bits(whole.weights)).toEqual(bits(ref.weights));
    const owned = setup([{ from: 0, to: 3 }, { from: 3, to: 7 }, { from: 7, to: WIDTH }]);
    for (const k of [2, 0, 1]) {
      const { from, to } = owned.update.shards[k];
      owned.update.received(k, ref.mean.subarray(from, to), { lossSum: ref.lossSum, count: ref.count });
    }
    expect(owned.published).toEqual([]); // their owners sent the new values
    owned.update.commit();
    expect(bits(owned.weights)).toEqual(bits(ref.weights));
  });

  it('a shard with a non-finite value is neither updated nor published, and the step has diverged', () => {
    const { published, update, staged } = setup(PARTS, true); // the NaN is in shard 1
    update.arrived(0, NODES[0], 1);
    update.arrived(1, NODES[1], 1);
    expect(update.diverged).toBe(true);
    expect(published).toEqual([]);
    expect(staged.version).toBe(-1);
  });
});
