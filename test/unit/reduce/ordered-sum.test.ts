import { describe, expect, it } from 'vitest';
import { coverNodes, createSharedSlab, reduceInPlace, slot, splitPoint } from '../../../src/reduce/ordered-sum.js';
import { splitEvenly } from '../../../src/reduce/partition.js';

describe('reduction tree', () => {
  it('splits at the largest power of two below the width', () => {
    expect(splitPoint(0, 2)).toBe(1);
    expect(splitPoint(0, 3)).toBe(2);
    expect(splitPoint(0, 4)).toBe(2);
    expect(splitPoint(0, 5)).toBe(4);
    expect(splitPoint(4, 8)).toBe(6);
  });

  it('covers any contiguous range exactly with maximal subtrees', () => {
    for (let n = 1; n <= 13; n++) {
      for (let a = 0; a < n; a++) {
        for (let b = a + 1; b <= n; b++) {
          const nodes = coverNodes(n, a, b);
          const leaves = nodes.flatMap(([lo, hi]) => Array.from({ length: hi - lo }, (_, i) => lo + i));
          expect(leaves).toEqual(Array.from({ length: b - a }, (_, i) => a + i));
        }
      }
    }
    expect(coverNodes(8, 0, 8)).toEqual([[0, 8]]);
    expect(coverNodes(8, 2, 7)).toEqual([[2, 4], [4, 6], [6, 7]]);
  });
});

/** Sums n random leaves with the work split into `parts` ranges; returns the root slot's bytes. */
function reduceSplit(values: Float32Array[], parts: number): Float32Array {
  const n = values.length;
  const width = values[0].length;
  const slab = createSharedSlab(width, n);
  const ready = new Set<string>();
  for (const [a, b] of splitEvenly(n, parts)) {
    // What one participant does: write its leaves, then pre-sum its maximal subtrees.
    for (let i = a; i < b; i++) {
      slot(slab, i).set(values[i]);
      slab.count[i] = 1;
    }
    for (const [lo, hi] of coverNodes(n, a, b)) {
      reduceInPlace(slab, lo, hi, (x, y) => y - x === 1);
      ready.add(`${lo}:${hi}`);
    }
  }
  reduceInPlace(slab, 0, n, (lo, hi) => ready.has(`${lo}:${hi}`));
  expect(slab.count[0]).toBe(n);
  return slot(slab, 0).slice();
}

describe('reduceInPlace', () => {
  it('gives the same bits for every split of the work', () => {
    const n = 11;
    const values = Array.from({ length: n }, (_, i) =>
      Float32Array.from({ length: 257 }, (_, j) => Math.fround(Math.sin(i * 1000 + j) * 10 ** ((j % 9) - 4))),
    );
    const reference = reduceSplit(values, 1);
    for (const parts of [2, 3, 4, 5, 7, 11]) expect(reduceSplit(values, parts)).toEqual(reference);
  });

  it('differs from a naive left-to-right sum somewhere (so the order matters and is fixed)', () => {
    const n = 8;
    const values = Array.from({ length: n }, (_, i) => Float32Array.from({ length: 4096 }, (_, j) => Math.fround(Math.cos(i * 77 + j) * 10 ** ((j % 13) - 6))));
    const tree = reduceSplit(values, 1);
    const naive = new Float32Array(4096);
    for (const v of values) for (let j = 0; j < naive.length; j++) naive[j] += v[j];
    expect(naive).not.toEqual(tree);
  });

  it('gives the same bits summed in two parts of each slot (a worker\'s early dense part) as whole', () => {
    const n = 6;
    const width = 300;
    const split = 37;
    const fill = (): ReturnType<typeof createSharedSlab> => {
      const slab = createSharedSlab(width, n);
      for (let i = 0; i < n; i++) {
        slot(slab, i).set(Float32Array.from({ length: width }, (_, j) => Math.fround(Math.sin(i * 31 + j) * 10 ** ((j % 7) - 3))));
        slab.loss[i] = i + 0.5;
        slab.count[i] = i + 1;
      }
      return slab;
    };
    const leaf = (a: number, b: number): boolean => b - a === 1;
    const whole = fill();
    reduceInPlace(whole, 0, n, leaf);
    const parts = fill();
    reduceInPlace(parts, 0, n, leaf, { from: split, to: width, totals: true });
    expect(parts.count[0]).toBe(whole.count[0]);
    expect(parts.loss[0]).toBe(whole.loss[0]);
    expect(slot(parts, 0).subarray(split)).toEqual(slot(whole, 0).subarray(split));
    expect(slot(parts, 0).subarray(0, split)).not.toEqual(slot(whole, 0).subarray(0, split)); // not summed yet
    reduceInPlace(parts, 0, n, leaf, { from: 0, to: split, totals: false });
    expect(Buffer.from(slot(parts, 0).slice().buffer).equals(Buffer.from(slot(whole, 0).slice().buffer))).toBe(true);
    expect(parts.loss[0]).toBe(whole.loss[0]); // totals were added once
  });
});
