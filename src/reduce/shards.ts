// Parameter shards: the unit a sharded step reduces, updates and publishes. The flat parameter
// vector [0, P) is cut into contiguous shards; each shard's owner completes the fixed tree for
// its values only. Every value is still added along the same tree as in an unsharded sum, and
// the optimizer is elementwise, so any shard layout gives the bits of one update of the whole.
import { valuesDigest } from '../model/weights.js';
import { coverNodes, slot, type Slab, type TreeNode } from './ordered-sum.js';

export type Shard = readonly [from: number, to: number];

/** [0, size) in `parts` contiguous shards whose sizes differ by at most one. */
export function shardLayout(size: number, parts: number): Shard[] {
  if (!Number.isInteger(parts) || parts < 1 || parts > size) throw new Error(`cannot cut ${size} values into ${parts} shards`);
  const base = Math.floor(size / parts);
  const extra = size % parts;
  const shards: Shard[] = [];
  let from = 0;
  for (let i = 0; i < parts; i++) {
    const to = from + base + (i < extra ? 1 : 0);
    shards.push([from, to]);
    from = to;
  }
  return shards;
}

/**
 * Every partial sum a step cut into the ranges `bounds` (0 = b0 < b1 < ... < bm = microbatches)
 * produces: the maximal subtrees of each range, in range order.
 */
export function stepNodes(microbatches: number, bounds: readonly number[]): TreeNode[] {
  const nodes: TreeNode[] = [];
  for (let i = 0; i + 1 < bounds.length; i++) nodes.push(...coverNodes(microbatches, bounds[i], bounds[i + 1]));
  return nodes;
}

/**
 * The digest (valuesDigest) of the sum at each of `nodes` over each of `shards`, node-major: the layout of
 * RangeDone.sums_digests (what a participant sent each shard's owner).
 */
export function sumsDigests(slab: Slab, nodes: readonly TreeNode[], shards: readonly Shard[]): Uint8Array[] {
  return nodes.flatMap(([lo]) => shards.map(([from, to]) => valuesDigest(slot(slab, lo).subarray(from, to))));
}

