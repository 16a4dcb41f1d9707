// Optimizers over the flat weight vector, applied once per step by the coordinator only.
// Gradient semantics: `grad` is the MEAN over the global batch (the reduced sum divided by the
// batch's example count); the optimizer never sees sums. All arithmetic is plain JavaScript on
// float32 arrays, so the update is reproducible bit for bit.
import { ADAM_BETA1, ADAM_BETA2, ADAM_EPSILON } from '../constants.js';
import { UsageError } from '../errors.js';

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

export interface Optimizer {
  readonly name: OptimizerName;
  apply(weights: Float32Array, grad: Float32Array, lr: number): void;
  state(): OptimizerState;
}

export class Sgd implements Optimizer {
  readonly name = 'sgd';
  private t = 0;
  constructor(state?: OptimizerState) {
    if (state) this.t = state.t;
  }
  apply(weights: Float32Array, grad: Float32Array, lr: number): void {
    for (let i = 0; i < weights.length; i++) weights[i] -= lr * grad[i];
    this.t++;
  }
  state(): OptimizerState {
    return { name: this.name, t: this.t, slots: {} };
  }
}

/** Adam as tfjs's AdamOptimizer computes it: w -= lr * m_hat / (sqrt(v_hat) + epsilon). */
export class Adam implements Optimizer {
  readonly name = 'adam';
  private t = 0;
  private readonly m: Float32Array;
  private readonly v: Float32Array;

  constructor(size: number, state?: OptimizerState) {
    this.m = new Float32Array(size);
    this.v = new Float32Array(size);
    if (state) {
      this.t = state.t;
      this.m.set(state.slots.m);
      this.v.set(state.slots.v);
    }
  }

  apply(weights: Float32Array, grad: Float32Array, lr: number): void {
    this.t++;
    const correction1 = 1 - Math.pow(ADAM_BETA1, this.t);
    const correction2 = 1 - Math.pow(ADAM_BETA2, this.t);
    const { m, v } = this;
    for (let i = 0; i < weights.length; i++) {
      const g = grad[i];
      m[i] = ADAM_BETA1 * m[i] + (1 - ADAM_BETA1) * g;
      v[i] = ADAM_BETA2 * v[i] + (1 - ADAM_BETA2) * g * g;
      weights[i] -= (lr * (m[i] / correction1)) / (Math.sqrt(v[i] / correction2) + ADAM_EPSILON);
    }
  }

  state(): OptimizerState {
    return { name: this.name, t: this.t, slots: { m: this.m, v: this.v } };
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
