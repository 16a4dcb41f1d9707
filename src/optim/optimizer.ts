// Optimizers over the flat weight vector, applied once per step by the coordinator only.
// Gradient semantics: `grad` is the MEAN over the global batch (the reduced sum divided by the
// batch's example count); the optimizer never sees sums. All arithmetic is plain JavaScript on
// float32 arrays, so the update is reproducible bit for bit.
import { ADAM_BETA1, ADAM_BETA2, ADAM_EPSILON } from '../constants.js';
import { UsageError } from '../errors.js';
import { reduceInPlace, wholeSlot, type Slab, type SlotPart } from '../reduce/ordered-sum.js';

/** Writes the batch mean of `sums` over [from, to) into `mean`; false if any value is not finite. */
export function meanInto(mean: Float32Array, sums: Float32Array, count: number, from: number, to: number): boolean {
  let finite = true;
  for (let i = from; i < to; i++) {
    const g = sums[i] / count;
    if (!Number.isFinite(g)) finite = false;
    mean[i] = g;
  }
  return finite;
}

/**
 * Completes a step's reduction tree over `part` of the slab, whose maximal subtrees already summed
 * `isReady` names, and writes the batch mean of those values into `mean`: the optimizer's input.
 * Returns the batch's loss sum and example count (the tree's root), or undefined when the loss or
 * any mean value is not finite. A worker computing a whole step alone (worker/remote.ts) makes its
 * update from this; the coordinator does the same per shard (reduceInPlace, then meanInto with
 * the root's count: coordinator/step-update.ts), so theirs are the same bits.
 */
export function batchMean(
  slab: Slab,
  microbatches: number,
  isReady: (lo: number, hi: number) => boolean,
  mean: Float32Array,
  part: SlotPart = wholeSlot(slab),
): { lossSum: number; count: number } | undefined {
  reduceInPlace(slab, 0, microbatches, isReady, part);
  const lossSum = slab.loss[0];
  const count = slab.count[0];
  if (!meanInto(mean, slab.grads, count, part.from, part.to) || !Number.isFinite(lossSum)) return undefined;
  return { lossSum, count };
}

/**
 * batchMean() of one parameter shard [from, to) of a sharded step (reduce/shards.ts): the tree
 * completed over those values only, divided by the step's example count, which the shard's
 * owner is told (the totals are reduced by the coordinator). False when a value is not finite.
 */
export function shardMean(slab: Slab, microbatches: number, isReady: (lo: number, hi: number) => boolean, mean: Float32Array, from: number, to: number, examples: number): boolean {
  reduceInPlace(slab, 0, microbatches, isReady, { from, to, totals: false });
  return meanInto(mean, slab.grads, examples, from, to);
}

export const OPTIMIZERS = ['adam', 'sgd'] as const;
export type OptimizerName = (typeof OPTIMIZERS)[number];

/** State that a checkpoint must carry to resume exactly. */
export interface OptimizerState {
  name: OptimizerName;
  /** Updates applied so far. */
  t: number;
  /** Named float32 slot arrays (Adam: m and v). */
  slots: Record<string, Float32Array>;
}

/**
 * An update can be applied in parts: begin() once, then update() over ranges of parameters that
 * together cover the vector, in any order, with the bits of one apply(). The trainer updates the
 * dense layers as soon as their gradient is complete, and the convolutions last.
 */
export interface Optimizer {
  readonly name: OptimizerName;
  /** begin() and update() over every parameter. */
  apply(weights: Float32Array, grad: Float32Array, lr: number): void;
  /** Starts the next update (Adam counts it here). */
  begin(): void;
  /**
   * Starts update number `t` (1 for the first): what a compute thread updating its shard of the
   * coordinator's own state calls, told the count (optimizerOver).
   */
  beginAt(t: number): void;
  /** Updates parameters [from, to) in the update begun last. */
  update(weights: Float32Array, grad: Float32Array, lr: number, from: number, to: number): void;
  state(): OptimizerState;
}

/** What every optimizer here shares: the count of updates, and apply() as begin() + update(). */
abstract class CountingOptimizer implements Optimizer {
  abstract readonly name: OptimizerName;
  /** Updates applied (begun) so far. */
  protected t: number;

  constructor(state?: OptimizerState) {
    this.t = state?.t ?? 0;
  }

  apply(weights: Float32Array, grad: Float32Array, lr: number): void {
    this.begin();
    this.update(weights, grad, lr, 0, weights.length);
  }

  begin(): void {
    this.t++;
  }

  beginAt(t: number): void {
    this.t = t;
  }

  abstract update(weights: Float32Array, grad: Float32Array, lr: number, from: number, to: number): void;
  abstract state(): OptimizerState;
}

export class Sgd extends CountingOptimizer {
  readonly name = 'sgd';
  update(weights: Float32Array, grad: Float32Array, lr: number, from: number, to: number): void {
    for (let i = from; i < to; i++) weights[i] -= lr * grad[i];
  }
  state(): OptimizerState {
    return { name: this.name, t: this.t, slots: {} };
  }
}

/**
 * `base` to the power of a whole number `n` >= 0 by repeated squaring: IEEE multiplications only,
 * so every JavaScript engine gives the same bits. Math.pow's last bits are each engine's own
 * choice, and a worker applying the update itself (docs/design.md, "A worker computing whole steps alone") may run
 * another Node version than its coordinator.
 */
export function powBySquaring(base: number, n: number): number {
  let result = 1;
  for (let b = base, e = n; e > 0; b *= b, e = Math.floor(e / 2)) {
    if (e % 2 === 1) result *= b;
  }
  return result;
}

/**
 * Adam as tfjs's AdamOptimizer computes it: w -= lr * m_hat / (sqrt(v_hat) + epsilon). Only + - * /
 * and Math.sqrt (correctly rounded by the ECMAScript specification) touch the values.
 */
export class Adam extends CountingOptimizer {
  readonly name = 'adam';
  private readonly m: Float32Array;
  private readonly v: Float32Array;

  /**
   * The moments live in shared memory, so that the coordinator's compute threads can update their
   * shards of them (optimizerOver); with `adopt`, they are `state`'s arrays themselves.
   */
  constructor(size: number, state?: OptimizerState, adopt = false) {
    super(state);
    if (adopt && state) {
      this.m = state.slots.m;
      this.v = state.slots.v;
      return;
    }
    this.m = new Float32Array(new SharedArrayBuffer(4 * size));
    this.v = new Float32Array(new SharedArrayBuffer(4 * size));
    if (state) {
      this.m.set(state.slots.m);
      this.v.set(state.slots.v);
    }
  }

  update(weights: Float32Array, grad: Float32Array, lr: number, from: number, to: number): void {
    const correction1 = 1 - powBySquaring(ADAM_BETA1, this.t);
    const correction2 = 1 - powBySquaring(ADAM_BETA2, this.t);
    const { m, v } = this;
    // The moments are float32: each is rounded (Math.fround) as storing it would round it, and
    // used from the register rather than read back, a third faster with the same bits.
    const decay1 = 1 - ADAM_BETA1;
    const decay2 = 1 - ADAM_BETA2;
    for (let i = from; i < to; i++) {
      const g = grad[i];
      const mi = Math.fround(ADAM_BETA1 * m[i] + decay1 * g);
      const vi = Math.fround(ADAM_BETA2 * v[i] + decay2 * g * g);
      m[i] = mi;
      v[i] = vi;
      weights[i] -= (lr * (mi / correction1)) / (Math.sqrt(vi / correction2) + ADAM_EPSILON);
    }
  }

  state(): OptimizerState {
    return { name: this.name, t: this.t, slots: { m: this.m, v: this.v } };
  }
}

/**
 * An optimizer whose state is `state`'s own arrays, not copies: a compute thread updating its
 * shard of the coordinator's optimizer, whose slots are in shared memory (Adam's always are).
 */
export function optimizerOver(state: OptimizerState): Optimizer {
  switch (state.name) {
    case 'adam':
      return new Adam(state.slots.m.length, state, true);
    case 'sgd':
      return new Sgd(state);
    default:
      throw new Error(`unknown optimizer ${state.name as string}`);
  }
}

export function createOptimizer(name: OptimizerName, size: number, state?: OptimizerState): Optimizer {
  if (state && state.name !== name) {
    throw new UsageError(`the checkpoint was trained with --optimizer ${state.name}, not ${name}`);
  }
  switch (name) {
    case 'adam':
      return new Adam(size, state);
    case 'sgd':
      return new Sgd(state);
    default:
      throw new UsageError(`--optimizer must be one of ${OPTIMIZERS.join(', ')} (got '${name as string}')`);
  }
}
