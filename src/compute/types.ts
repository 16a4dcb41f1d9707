// Messages between the coordinator's pool and its compute threads. Large data never travels in
// these: pixels, weights and gradient sums live in SharedArrayBuffers named in ThreadInit.
import type { MessagePort } from 'node:worker_threads';
import type { Activation, ArchName } from '../model/architectures.js';
import type { BackendName } from '../backend/select.js';
import type { GradDType } from '../reduce/float16.js';
import type { TreeNode } from '../reduce/ordered-sum.js';
import type { OptimizerName } from '../optim/optimizer.js';
import type { DenseFlag } from './dense-flag.js';

/** Handed to every thread once, as piscina's workerData. */
export interface ThreadInit {
  arch: ArchName;
  activation: Activation;
  backend: BackendName;
  seed: number;
  distort: boolean;
  trainImages: Uint8Array;
  trainLabels: Uint8Array;
  testImages: Uint8Array;
  testLabels: Uint8Array;
  /** The current flat weights, written by the coordinator between steps, or by the threads of a whole step's update (ShardUpdate). */
  weights: Float32Array;
  /** Gradient slab: slot i holds leaf (microbatch) i or the sum of a subtree starting at i. */
  slabGrads: Float32Array;
  slabLoss: Float64Array;
  slabCount: Int32Array;
  slabSlots: number;
  /** float16: every microbatch gradient is rounded to half precision before any sum. */
  gradDType: GradDType;
  /** One flag per slab slot: a thread with an `early` task sets its task's `lo` flag to 1. */
  signals: Int32Array;
  /** Which version's dense layers' weights are in `weights`, for awaitDense tasks (dense-flag.ts). */
  denseVersion: DenseFlag;
  /** Per thread i: [2i] counts the tasks sent to its mailbox, [2i+1] the replies it sent (pool.ts). */
  mailbox: Int32Array;
  /** The coordinator's pool: what its threads need to make a step's update themselves. */
  update: SharedUpdate | null;
}

/** The coordinator's optimizer state, which its pool's threads update in place with the weights. */
export interface SharedUpdate {
  optimizer: OptimizerName;
  /** The optimizer's slots (Adam: m and v), in shared memory. */
  slots: Record<string, Float32Array>;
  /** [0]: arrivals counted over the run (barrier.ts); [1]: the highest count given up on. */
  barrier: Int32Array;
}

/**
 * With a whole step's gradient task: once every thread's sums are in and the coordinator has
 * taken the step, complete the tree over parameters [from, to), divide by `examples`, and apply
 * update number `t` of the optimizer to them, in the weights and the optimizer's slots; then
 * wait until every thread has, so that the next task reads the new weights whole.
 */
export interface ShardUpdate {
  from: number;
  to: number;
  lr: number;
  t: number;
  examples: number;
  /** Every thread's sums are in, and the coordinator took the step, once SharedUpdate.barrier[0] reaches this. */
  arrivals: number;
  /** Every thread's shard is updated once SharedUpdate.barrier[0] reaches this. */
  committed: number;
  /** This thread also sums the step's losses and counts along the tree (one thread per step). */
  totals: boolean;
  /** The subtrees that the step's threads leave summed: the tree is completed from them. */
  ready: TreeNode[];
}

/** Microbatches [lo,hi) of a step: what a participant (or one of its threads) computes. */
export interface RangeTask {
  weightsVersion: number;
  epoch: number;
  /** Microbatches in the whole step (the size of the reduction tree). */
  microbatches: number;
  lo: number;
  hi: number;
  /** Sample indices of microbatches lo..hi-1, concatenated. */
  samples: Uint32Array;
  /** Epoch positions of those samples (seeds their distortion). */
  positions: Uint32Array;
  /** Sample count of each microbatch lo..hi-1. */
  sizes: number[];
  /** Leave every microbatch's own sum in its slot (no pre-summing): float16 results go out per leaf. */
  leavesOnly?: boolean;
  /**
   * Changes when the values of `weightsVersion` were written again (a remote worker sent the
   * coordinator's after it made that version with its peers): tensors loaded for the version
   * before are stale then. 0 where versions are never rewritten.
   */
  weightsGeneration?: number;
}

/** Compute the gradient sums of microbatches [lo,hi) of a step and leave them in the slab. */
export interface GradientTask extends RangeTask {
  type: 'gradients';
  /**
   * Sum the dense layers' part of the subtrees (and their losses and counts) as soon as the last
   * microbatch's dense gradients are final, then raise `signals[lo]` (Atomics.notify) before the
   * convolutions' backward pass; their part is summed at the end. Not with leavesOnly.
   */
  early?: boolean;
  /**
   * The dense layers' weights may still be arriving (remote workers): start on the convolutions
   * and wait for `weightsVersion` to be in place in `denseVersion` before the dense layers.
   */
  awaitDense?: boolean;
  /** With awaitDense: the flag's let-go count when the task was sent; the wait gives up once it changed (letGoWaits). */
  letGoSeen?: number;
  /** This thread's shard of the step's update (whole steps on the coordinator's pool only). */
  update?: ShardUpdate;
}

export interface GradientReply {
  type: 'gradients';
  /** The subtrees whose sums are now in the slab, at their `lo` slots. */
  nodes: TreeNode[];
  computeMs: number;
  /** With `update`: false when a mean value of the shard was not finite (then nothing was written). */
  finite?: boolean;
  /** With `update`: the time the shard's reduction and update took, once every sum was in. */
  updateMs?: number;
  /** With `update`: another thread failed while the step's update was being made (its shard may not be). */
  lost?: boolean;
  /** With `update` and `totals`: the step's loss sum and example count. */
  totals?: { lossSum: number; count: number };
}

/** Evaluate test samples [from,to) with the current weights. */
export interface EvalTask {
  type: 'eval';
  weightsVersion: number;
  from: number;
  to: number;
}

export interface EvalReply {
  type: 'eval';
  correct: number;
  lossSum: number;
  count: number;
  /** Row-major 10x10 counts: confusion[true * 10 + predicted]. */
  confusion: number[];
}

/** Initialise the thread's backend now (so that start-up cost stays out of step timings). */
export interface ReadyTask {
  type: 'ready';
}

export interface ReadyReply {
  type: 'ready';
  backend: string;
}

/** Serve the mailbox at `index` until told to stop: tasks come over `port`, replies go back on it. */
export interface ServeTask {
  type: 'serve';
  index: number;
  port: MessagePort;
}

export interface StopServing {
  type: 'stop';
}

/** What piscina runs on a thread. */
export type ThreadTask = ReadyTask | ServeTask;
export type ThreadReply = ReadyReply | { type: 'stopped' };

/** What a serving thread takes from its mailbox, and what it answers. */
export type ServedTask = GradientTask | EvalTask | StopServing;
export interface MailboxReply {
  ok?: GradientReply | EvalReply;
  error?: unknown;
}
