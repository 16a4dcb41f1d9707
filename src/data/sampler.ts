// The data order of a run: a seeded shuffle per epoch, cut into global batches and then into
// fixed-size microbatches. Everything here is a pure function of (seed, epoch, step), which is
// what makes resume and any split of work across participants reproduce the same training.
import { Rng, mixSeed } from './rng.js';

/** Salt that separates the shuffle's random stream from other uses of the run seed. */
const SHUFFLE_SALT = 0x5348_5546;

export interface BatchPlan {
  /** Global batch size (the last batch of an epoch may hold fewer samples). */
  batchSize: number;
  /** Microbatch size (the last microbatch of a batch may hold fewer samples). */
  microbatch: number;
  /** Training samples per epoch. */
  samples: number;
}

export function stepsPerEpoch(plan: BatchPlan): number {
  return Math.ceil(plan.samples / plan.batchSize);
}

/** The permutation of sample indices for one epoch (epochs count from 0). */
export function epochPermutation(seed: number, epoch: number, samples: number): Uint32Array {
  const perm = new Uint32Array(samples);
  for (let i = 0; i < samples; i++) perm[i] = i;
  const rng = new Rng(mixSeed(SHUFFLE_SALT, seed, epoch));
  for (let i = samples - 1; i > 0; i--) {
    const j = rng.nextInt(i + 1);
    const t = perm[i];
    perm[i] = perm[j];
    perm[j] = t;
  }
  return perm;
}

/** Epoch positions [start, start + count): a range's samples' positions, which seed their distortions. */
export function epochPositions(start: number, count: number): Uint32Array {
  const positions = new Uint32Array(count);
  for (let i = 0; i < count; i++) positions[i] = start + i;
  return positions;
}

/**
 * The permutations of one run's epochs, kept for the epoch last asked for: a worker's view of the
 * data order, which the coordinator's assignments name by epoch and position only.
 */
export class EpochOrder {
  private epoch = -1;
  private perm: Uint32Array = new Uint32Array(0);

  constructor(
    private readonly seed: number,
    private readonly samples: number,
  ) {}

  /** The training-set indices at positions [start, start + count) of epoch `epoch`. */
  at(epoch: number, start: number, count: number): Uint32Array {
    if (start + count > this.samples) throw new Error(`positions [${start},${start + count}) are outside an epoch of ${this.samples} samples`);
    if (epoch !== this.epoch) {
      this.perm = epochPermutation(this.seed, epoch, this.samples);
      this.epoch = epoch;
    }
    return this.perm.subarray(start, start + count);
  }
}

/** Position in the epoch's permutation where `step` (counted from 0) begins, and its sample count. */
export function batchRange(plan: BatchPlan, step: number): { start: number; count: number } {
  const start = step * plan.batchSize;
  return { start, count: Math.max(0, Math.min(plan.batchSize, plan.samples - start)) };
}

/** Number of microbatches in a batch of `count` samples. */
export function microbatchCount(plan: BatchPlan, count: number): number {
  return Math.ceil(count / plan.microbatch);
}
