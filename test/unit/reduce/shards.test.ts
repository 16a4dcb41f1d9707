// Parameter shards: any layout, any split of the leaves, gives the bits of one reduce and one
// update of the whole vector. This is the invariant sharded steps rest on.
import { describe, expect, it } from 'vitest';
import { coverNodes, createSharedSlab, readyNodes, slot } from '../../../src/reduce/ordered-sum.js';
import { shardLayout, stepNodes } from '../../../src/reduce/shards.js';
import { batchMean, createOptimizer, shardMean } from '../../../src/optim/optimizer.js';
import { splitProportional } from '../../../src/reduce/partition.js';

/** Deterministic awkward floats: many magnitudes, so the order of additions shows in the bits. */
function leafValues(n: number, width: number, seed: number): Float32Array[] {
  let x = seed;
  const next = (): number => {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    return x / 2 ** 32;
  };
  return Array.from({ length: n }, () => Float32Array.from({ length: width }, () => (next() - 0.5) * 10 ** Math.floor(next() * 6 - 3)));
}

/** A slab holding each range's maximal subtrees' sums, pre-summed along the tree as a participant does. */
function slabFor(leaves: Float32Array[], bounds: number[]): ReturnType<typeof createSharedSlab> {
  const slab = createSharedSlab(leaves[0].length, leaves.length);
  for (const [lo, hi] of stepNodes(leaves.length, bounds)) {
    slot(slab, lo).set(sumAlongTree(leaves, lo, hi));
    slab.count[lo] = 32 * (hi - lo);
  }
  return slab;
}

/** The value of tree node [lo,hi): left plus right, recursively, in float32. */
function sumAlongTree(leaves: Float32Array[], lo: number, hi: number): Float32Array {
  if (hi - lo === 1) return Float32Array.from(leaves[lo]);
  let half = 1;
  while (half * 2 < hi - lo) half *= 2;
  const left = sumAlongTree(leaves, lo, lo + half);
  const right = sumAlongTree(leaves, lo + half, hi);
  return left.map((v, i) => v + right[i]);
}

describe('shards', () => {
  it('cut the parameters into contiguous shards that differ by at most one value', () => {
    expect(shardLayout(10, 3)).toEqual([[0, 4], [4, 7], [7, 10]]);
    expect(shardLayout(60806, 2)).toEqual([[0, 30403], [30403, 60806]]);
    for (const parts of [1, 2, 5, 16]) {
      const shards = shardLayout(1000, parts);
      expect(shards[0][0]).toBe(0);
      expect(shards.at(-1)![1]).toBe(1000);
      shards.forEach((s, i) => i > 0 && expect(s[0]).toBe(shards[i - 1][1]));
    }
    expect(() => shardLayout(3, 4)).toThrow(/cannot cut/);
  });

  it('list every partial sum of a step cut into ranges', () => {
    expect(stepNodes(8, [0, 3, 8])).toEqual([...coverNodes(8, 0, 3), ...coverNodes(8, 3, 8)]);
    expect(stepNodes(5, [0, 5])).toEqual([[0, 5]]);
  });

  it('reduced and updated shard by shard give the bits of the whole, for any layout and split', () => {
    const width = 97;
    const n = 7;
    const examples = 7 * 32;
    const leaves = leafValues(n, width, 3);
    const weights0 = Float32Array.from(leafValues(1, width, 9)[0]);
    // The star: one reduce of everything, one update.
    const whole = slabFor(leaves, [0, n]);
    const mean = new Float32Array(width);
    const total = batchMean(whole, n, readyNodes([[0, n]]), mean);
    expect(total?.count).toBe(examples);
    const star = Float32Array.from(weights0);
    const starOpt = createOptimizer('adam', width);
    starOpt.apply(star, mean, 0.004);
    for (const parts of [2, 3, 5]) {
      for (const threads of [[1, 1], [1, 2, 1], [3, 1, 1, 2]]) {
        const bounds = [0, ...splitProportional(n, threads).filter((r) => r !== null).map((r) => r![1])];
        const slab = slabFor(leaves, bounds);
        const nodes = stepNodes(n, bounds);
        const sharded = Float32Array.from(weights0);
        const shardedMean = new Float32Array(width);
        // Each owner has its own optimizer replica and updates only its shard.
        for (const [from, to] of shardLayout(width, parts)) {
          expect(shardMean(slab, n, readyNodes(nodes), shardedMean, from, to, examples)).toBe(true);
          const owner = createOptimizer('adam', width);
          owner.begin();
          owner.update(sharded, shardedMean, 0.004, from, to);
        }
        expect(Buffer.from(shardedMean.buffer).equals(Buffer.from(mean.buffer))).toBe(true);
        expect(Buffer.from(sharded.buffer).equals(Buffer.from(star.buffer))).toBe(true);
      }
    }
  });
});
