// Computing a contiguous range of a step's microbatches with a pool of threads: the range is
// split over the threads, each pre-sums its whole subtrees, and the results are combined into
// the maximal subtrees of the range, all along the fixed reduction tree. Used by the
// coordinator's own threads and by remote workers alike.
import { splitEvenly } from '../reduce/partition.js';
import { coverNodes, leaves, reduceInPlace, type Slab, type TreeNode } from '../reduce/ordered-sum.js';
import type { ComputePool } from './pool.js';
import type { RangeTask } from './types.js';

export interface RangeResult {
  /** Maximal subtrees of [lo,hi), whose sums are now in the slab at their lo slots. */
  nodes: TreeNode[];
  /** Time the slowest thread spent computing (the rest of the wall time is messaging). */
  computeMs: number;
}

export async function computeRange(pool: ComputePool, slab: Slab, task: RangeTask): Promise<RangeResult> {
  const offsets = [0];
  for (const s of task.sizes) offsets.push(offsets[offsets.length - 1] + s);
  const parts = splitEvenly(task.hi - task.lo, pool.threads).map(([a, b]) => [task.lo + a, task.lo + b] as const);
  const replies = await Promise.all(
    parts.map(([a, b]) => {
      const from = offsets[a - task.lo];
      const to = offsets[b - task.lo];
      return pool.gradients({
        type: 'gradients',
        weightsVersion: task.weightsVersion,
        epoch: task.epoch,
        microbatches: task.microbatches,
        lo: a,
        hi: b,
        samples: task.samples.slice(from, to),
        positions: task.positions.slice(from, to),
        sizes: task.sizes.slice(a - task.lo, b - task.lo),
        leavesOnly: task.leavesOnly,
      });
    }),
  );
  const computeMs = Math.max(...replies.map((r) => r.computeMs));
  if (task.leavesOnly) return { nodes: leaves(task.lo, task.hi), computeMs };
  const ready = new Set(replies.flatMap((r) => r.nodes.map(([lo, hi]) => `${lo}:${hi}`)));
  const nodes = coverNodes(task.microbatches, task.lo, task.hi);
  for (const [lo, hi] of nodes) reduceInPlace(slab, lo, hi, (a, b) => ready.has(`${a}:${b}`));
  return { nodes, computeMs };
}
