// Computing a contiguous range of a step's microbatches with a pool of threads: the range is
// split over the threads, each pre-sums its whole subtrees, and the results are combined into
// the maximal subtrees of the range, all along the fixed reduction tree. Used by the
// coordinator's own threads and by remote workers alike.
import { splitEvenly } from '../reduce/partition.js';
import { coverNodes, leaves, reduceInPlace, readyNodes, wholeSlot, type Slab, type TreeNode } from '../reduce/ordered-sum.js';
import type { ComputePool } from './pool.js';
import { EXIT_COMPUTE_FAILED, LenetError } from '../errors.js';
import type { GradientTask, RangeTask } from './types.js';

/**
 * A thread failed after another had begun its shard of the step's update: the optimizer's state
 * is partly that of the next step, so the step cannot be computed again. Not expected short of a
 * thread killed from outside; the run stops, and resumes exactly from its last checkpoint.
 */
export class UpdateLostError extends LenetError {
  constructor(cause: unknown) {
    super(
      'LENET_ERR_COMPUTE',
      `a compute thread failed while the step's update was being made (${(cause as Error)?.message ?? String(cause)}); continue from the last checkpoint with --resume`,
      EXIT_COMPUTE_FAILED,
    );
  }
}

export interface RangeResult {
  /** Maximal subtrees of [lo,hi), whose sums are now in the slab at their lo slots. */
  nodes: TreeNode[];
  /** Time the slowest thread spent computing (the rest of the wall time is messaging). */
  computeMs: number;
  /**
   * Set when the range was a whole step whose update its threads made (StepUpdateTask): false
   * in `finite` when a mean value was not finite; `ms`, the slowest thread's time for it; the
   * step's loss sum and example count (its slab may hold the next step's sums already).
   */
  updated?: { finite: boolean; ms: number; lossSum: number; count: number };
}

/** A whole step's update, made by the threads that compute it (ComputePool.updates). */
export interface StepUpdateTask {
  lr: number;
  /** The update's number: the optimizer's count once it is begun. */
  t: number;
  /** The batch's example count, which the sums are divided by. */
  examples: number;
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

/** The parts of `task`'s microbatches, one per thread of `pool` (as even as they split). */
function threadParts(pool: ComputePool, task: RangeTask): (readonly [number, number])[] {
  return splitEvenly(task.hi - task.lo, pool.threads).map(([a, b]) => [task.lo + a, task.lo + b] as const);
}

/** Microbatches [a,b) of `task`, one thread's part of it, as a gradient task. */
function partTask(task: RangeTask, a: number, b: number): GradientTask {
  let from = 0;
  for (let j = task.lo; j < a; j++) from += task.sizes[j - task.lo];
  let to = from;
  for (let j = a; j < b; j++) to += task.sizes[j - task.lo];
  return {
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
  };
}

/**
 * `awaitDense`: the dense layers' weights of the task's version may still be arriving
 * (GradientTask). `update`: the task is a whole step, and its threads make its update too, each
 * one shard of the parameters, once all of them have their sums in (thread.ts).
 */
export async function computeRange(pool: ComputePool, slab: Slab, task: RangeTask, early?: EarlyDense, awaitDense = false, update?: StepUpdateTask): Promise<RangeResult> {
  if (update) return queueStep(pool, slab, task, update).go();
  const parts = threadParts(pool, task);
  const inFlight = parts.map(([a, b]) => pool.gradients({ ...partTask(task, a, b), leavesOnly: task.leavesOnly, early: early !== undefined, awaitDense }));
  // Marked handled: if the early wait below throws, a thread failing later must not be unhandled.
  for (const p of inFlight) p.catch(() => undefined);
  const nodes = task.leavesOnly ? leaves(task.lo, task.hi) : coverNodes(task.microbatches, task.lo, task.hi);
  // What each thread leaves summed: its own maximal subtrees.
  const isReady = readyNodes(parts.flatMap(([a, b]) => coverNodes(task.microbatches, a, b)));
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

/**
 * A whole step on the pool's threads, which make its update themselves (ShardUpdate): its tasks
 * are in the threads' mailboxes, and the threads compute its sums, then wait for the coordinator
 * to take it (go) before they touch the weights or the optimizer. A step queued behind the one
 * the threads are on starts as soon as they have made that one's update, without waiting for the
 * coordinator's turn in between.
 */
export interface QueuedStep {
  /** The step (weights version) and the update it was queued with. */
  readonly step: number;
  readonly update: StepUpdateTask;
  /**
   * Takes the step, once the step queued before it has answered: its threads make the update,
   * and this resolves with the result, or rejects (UpdateLostError where the update was partly
   * made). Its sums' losses and counts are summed by a thread: the slab may hold the next
   * step's sums by the time this resolves.
   */
  go(): Promise<RangeResult>;
  /** The step is not taken: its threads give up before the weights or the optimizer, and this resolves once they have. */
  abandon(): Promise<void>;
}

/** Queues a whole step on `pool`'s threads (QueuedStep), behind whatever they have to do. */
export function queueStep(pool: ComputePool, slab: Slab, task: RangeTask, update: StepUpdateTask): QueuedStep {
  if (task.lo !== 0 || task.hi !== task.microbatches || task.leavesOnly) throw new Error('only a whole step makes its update on the threads');
  const parts = threadParts(pool, task);
  const shards = splitEvenly(slab.width, parts.length);
  const ready = parts.flatMap(([a, b]) => coverNodes(task.microbatches, a, b));
  const planned = pool.planStep(parts.length, (counts) =>
    parts.map(([a, b], i) => pool.gradients({ ...partTask(task, a, b), update: { from: shards[i][0], to: shards[i][1], ...update, ...counts, totals: i === 0, ready } }, i)),
  );
  return {
    step: task.weightsVersion,
    update,
    async go() {
      await planned.take();
      const outcomes = await planned.settled;
      const failed = outcomes.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      const replies = outcomes.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
      // A thread that answered passed the first wait, so every sum was in and it may have updated
      // its shard: the step cannot be computed again.
      if ((failed && replies.length > 0) || replies.some((r) => r.lost)) throw new UpdateLostError(failed?.reason ?? new Error('another thread failed'));
      if (failed) throw failed.reason;
      const totals = replies.find((r) => r.totals)?.totals;
      if (!totals) throw new Error('no thread of the step summed its losses and counts');
      return {
        nodes: coverNodes(task.microbatches, 0, task.microbatches),
        computeMs: Math.max(...replies.map((r) => r.computeMs)),
        updated: { finite: replies.every((r) => r.finite === true), ms: Math.max(...replies.map((r) => r.updateMs ?? 0)), ...totals },
      };
    },
    async abandon() {
      planned.giveUp();
      await planned.settled;
    },
  };
}
