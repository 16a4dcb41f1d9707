// Computing a contiguous range of a step's microbatches with a pool of threads: the range is
// split over the threads, each pre-sums its whole subtrees, and the results are combined into
// the maximal subtrees of the range, all along the fixed reduction tree. Used by the
// coordinator's own threads and by remote workers alike.
import { splitEvenly } from '../reduce/partition.js';
import { coverNodes, leaves, reduceInPlace, wholeSlot, type Slab, type TreeNode } from '../reduce/ordered-sum.js';
import type { ComputePool } from './pool.js';
import type { RangeTask } from './types.js';

export interface RangeResult {
  /** Maximal subtrees of [lo,hi), whose sums are now in the slab at their lo slots. */
  nodes: TreeNode[];
  /** Time the slowest thread spent computing (the rest of the wall time is messaging). */
  computeMs: number;
}

/**
 * Sends the dense part of a range's sums before the rest (remote workers): `onDense(nodes)` is
 * called once values [split, width) of every node's slot, and its loss and count, are final;
 * values [0, split) follow when computeRange resolves.
 */
export interface EarlyDense {
  split: number;
  onDense: (nodes: TreeNode[]) => void;
}

/**
 * Something that computes ranges into its slab and can be closed: a pool with computeRange()
 * below, an InlineCompute, or a worker's simulated compute.
 */
export interface RangeCompute {
  computeRange(task: RangeTask, early?: EarlyDense): Promise<RangeResult>;
  close(): Promise<void>;
}

/** `awaitDense`: the dense layers' weights of the task's version may still be arriving (GradientTask). */
export async function computeRange(pool: ComputePool, slab: Slab, task: RangeTask, early?: EarlyDense, awaitDense = false): Promise<RangeResult> {
  const offsets = [0];
  for (const s of task.sizes) offsets.push(offsets[offsets.length - 1] + s);
  const parts = splitEvenly(task.hi - task.lo, pool.threads).map(([a, b]) => [task.lo + a, task.lo + b] as const);
  const inFlight = parts.map(([a, b]) => {
    const from = offsets[a - task.lo];
    const to = offsets[b - task.lo];
    return pool.gradients({
      type: 'gradients',
      weightsVersion: task.weightsVersion,
      weightsGeneration: task.weightsGeneration,
      epoch: task.epoch,
      microbatches: task.microbatches,
      lo: a,
      hi: b,
      samples: task.samples.slice(from, to),
      positions: task.positions.slice(from, to),
      sizes: task.sizes.slice(a - task.lo, b - task.lo),
      leavesOnly: task.leavesOnly,
      early: early !== undefined,
      awaitDense,
    });
  });
  // Marked handled: if the early wait below throws, a thread failing later must not be unhandled.
  for (const p of inFlight) p.catch(() => undefined);
  const nodes = task.leavesOnly ? leaves(task.lo, task.hi) : coverNodes(task.microbatches, task.lo, task.hi);
  // What each thread leaves summed: its own maximal subtrees.
  const ready = new Set(parts.flatMap(([a, b]) => coverNodes(task.microbatches, a, b)).map(([lo, hi]) => `${lo}:${hi}`));
  const isReady = (a: number, b: number): boolean => ready.has(`${a}:${b}`);
  if (early) {
    // A thread that fails before its flag is raised rejects here instead of leaving us waiting.
    await Promise.all(parts.map(([a], i) => Promise.race([pool.denseReady(a), inFlight[i]])));
    for (const [lo, hi] of nodes) reduceInPlace(slab, lo, hi, isReady, { from: early.split, to: slab.width, totals: true });
    early.onDense(nodes);
  }
  const replies = await Promise.all(inFlight);
  const computeMs = Math.max(...replies.map((r) => r.computeMs));
  if (task.leavesOnly) return { nodes, computeMs };
  const part = early ? { from: 0, to: early.split, totals: false } : wholeSlot(slab);
  for (const [lo, hi] of nodes) reduceInPlace(slab, lo, hi, isReady, part);
  return { nodes, computeMs };
}
