// The fixed-order reduction that makes training bit-for-bit independent of how work is split.
//
// The microbatches of a step, numbered 0..n-1 by position, are the leaves of one fixed binary
// tree: node [lo,hi) splits at lo + (largest power of two below hi-lo). Every sum is taken along
// this tree, so (g0+g1)+(g2+g3) is never computed as ((g0+g1)+g2)+g3, whoever does the adding.
// A participant given the contiguous leaves [a,b) pre-sums only whole subtrees inside that range
// (coverNodes) and returns one partial sum per subtree; the coordinator completes the tree.
//
// Sums live in a slab of n slots: the value of node [lo,hi) is kept in slot lo, so combining
// two children is `slot[lo] += slot[mid]`, in place, with no allocation.

/** Where node [lo,hi) splits: lo plus the largest power of two strictly below its width. */
export function splitPoint(lo: number, hi: number): number {
  const width = hi - lo;
  let half = 1;
  while (half * 2 < width) half *= 2;
  return lo + half;
}

export type TreeNode = readonly [lo: number, hi: number];

/** The maximal tree nodes, left to right, that exactly cover leaves [a,b) of a tree over [0,n). */
export function coverNodes(n: number, a: number, b: number): TreeNode[] {
  const out: TreeNode[] = [];
  const visit = (lo: number, hi: number): void => {
    if (b <= lo || hi <= a) return;
    if (a <= lo && hi <= b) {
      out.push([lo, hi]);
      return;
    }
    const mid = splitPoint(lo, hi);
    visit(lo, mid);
    visit(mid, hi);
  };
  if (a < b) visit(0, n);
  return out;
}

/** The leaves [lo,lo+1), ..., [hi-1,hi) as nodes. */
export function leaves(lo: number, hi: number): TreeNode[] {
  return Array.from({ length: hi - lo }, (_, i) => [lo + i, lo + i + 1] as const);
}

/** n slots of `width` float32 gradients plus a float64 loss sum and an example count per slot. */
export const nodeKey = (lo: number, hi: number): string => `${lo}:${hi}`;

/** ready() for reduceInPlace: the nodes given hold their values. */
export function readyNodes(nodes: readonly TreeNode[]): (lo: number, hi: number) => boolean {
  const ready = new Set(nodes.map(([lo, hi]) => nodeKey(lo, hi)));
  return (lo, hi) => ready.has(nodeKey(lo, hi));
}

export interface Slab {
  width: number;
  slots: number;
  grads: Float32Array;
  loss: Float64Array;
  count: Int32Array;
}

/** A slab over SharedArrayBuffers, so compute threads write their sums where the reducer reads them. */
export function createSharedSlab(width: number, slots: number): Slab {
  return {
    width,
    slots,
    grads: new Float32Array(new SharedArrayBuffer(4 * width * slots)),
    loss: new Float64Array(new SharedArrayBuffer(8 * slots)),
    count: new Int32Array(new SharedArrayBuffer(4 * slots)),
  };
}

export function slot(slab: Slab, i: number): Float32Array {
  return slab.grads.subarray(i * slab.width, (i + 1) * slab.width);
}

/**
 * Which part of a slot a reduction covers: gradient values [from,to), and whether the loss sums
 * and example counts come along. A sum taken in parts is the same bits as one taken whole: every
 * value is added along the same tree either way.
 */
export interface SlotPart {
  from: number;
  to: number;
  totals: boolean;
}

export const wholeSlot = (slab: Slab): SlotPart => ({ from: 0, to: slab.width, totals: true });

/**
 * Makes slot lo hold node [lo,hi)'s sum, computing missing nodes from their children.
 * `ready(lo,hi)` tells whether a node's value is already in slot lo; every leaf must be ready.
 * With `part`, only that part of each slot is summed (ready() must then describe that part).
 */
export function reduceInPlace(slab: Slab, lo: number, hi: number, ready: (lo: number, hi: number) => boolean, part: SlotPart = wholeSlot(slab)): void {
  if (ready(lo, hi)) return;
  if (hi - lo === 1) throw new Error(`reduceInPlace: leaf ${lo} has no value`);
  const mid = splitPoint(lo, hi);
  reduceInPlace(slab, lo, mid, ready, part);
  reduceInPlace(slab, mid, hi, ready, part);
  const g = slab.grads;
  const left = lo * slab.width;
  const right = mid * slab.width;
  for (let i = part.from; i < part.to; i++) g[left + i] += g[right + i];
  if (!part.totals) return;
  slab.loss[lo] += slab.loss[mid];
  slab.count[lo] += slab.count[mid];
}
