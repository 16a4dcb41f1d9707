// The dense layers' update of a step, applied before the step ends. Remote workers send the dense
// layers' part of their sums (97% of the values) before their convolutions' backward pass. Once
// every range's dense part is in, the coordinator reduces that part, updates those weights and
// sends them to the remote workers while they still compute: the 240 KB reach a worker during
// its backward pass instead of after the step, and the optimizer's larger part is off the step's
// critical path too. Overlapping communication with the backward pass is what PyTorch DDP's
// gradient buckets do; here it is the weights' way back that overlaps.
//
// The update goes into a staged copy: the step's own weights stay as they are until it ends,
// because a range recomputed after a failure must use them. Recomputing gives the same bits
// (the invariant), so an update made before a failure stays right.
import { coverNodes, type Slab } from '../reduce/ordered-sum.js';
import { batchMean, type Optimizer } from '../optim/optimizer.js';

/** The next version's weights while a step runs: its dense layers' part once updated early. */
export interface StagedWeights {
  /** The version `weights` holds the dense layers' part of, or -1 when none is staged. */
  version: number;
  weights: Float32Array;
}

export interface EarlyDenseContext {
  slab: Slab;
  weights: Float32Array;
  staged: StagedWeights;
  meanGrad: Float32Array;
  optimizer: Optimizer;
  /** Where the dense layers' parameters start in the flat vector. */
  split: number;
}

export class EarlyDenseUpdate {
  private readonly waiting = new Set<number>();
  private outcome: 'waiting' | 'applied' | 'diverged' = 'waiting';
  /** The batch's loss sum and example count, read when the dense part was reduced. */
  lossSum = 0;
  count = 0;

  /**
   * `ranges[i]` is the i-th range of the step; `onApplied` sends the staged dense weights of
   * `version` (the next step's) to the remote workers.
   */
  constructor(
    private readonly ctx: EarlyDenseContext,
    private readonly microbatches: number,
    private readonly ranges: readonly (readonly [number, number])[],
    private readonly lr: number,
    private readonly version: number,
    private readonly onApplied: (version: number) => void,
  ) {
    ranges.forEach((_, i) => this.waiting.add(i));
  }

  get applied(): boolean {
    return this.outcome === 'applied';
  }

  get diverged(): boolean {
    return this.outcome === 'diverged';
  }

  /** Range i's dense part is in the slab, at the range's maximal subtrees. */
  arrived(i: number): void {
    if (this.outcome !== 'waiting') return;
    this.waiting.delete(i);
    if (this.waiting.size === 0) this.apply();
  }

  /** Range i failed and goes to someone else, who will write its slots again. */
  revoked(i: number): void {
    if (this.outcome === 'waiting') this.waiting.add(i);
  }

  private apply(): void {
    const { slab, split, meanGrad, optimizer, staged, weights } = this.ctx;
    const ready = new Set(this.ranges.flatMap(([lo, hi]) => coverNodes(this.microbatches, lo, hi)).map(([lo, hi]) => `${lo}:${hi}`));
    const batch = batchMean(slab, this.microbatches, (lo, hi) => ready.has(`${lo}:${hi}`), meanGrad, { from: split, to: slab.width, totals: true });
    if (!batch) {
      this.outcome = 'diverged';
      return;
    }
    this.lossSum = batch.lossSum;
    this.count = batch.count;
    staged.weights.set(weights.subarray(split), split);
    optimizer.begin();
    optimizer.update(staged.weights, meanGrad, this.lr, split, slab.width);
    staged.version = this.version;
    this.outcome = 'applied';
    this.onApplied(this.version);
  }

  /**
   * Ends the step's update once every range is in and the convolutions' part of `meanGrad` is
   * written: that part of the update, then the staged dense part into `weights`.
   */
  finish(): void {
    const { split, meanGrad, optimizer, staged, weights } = this.ctx;
    optimizer.update(weights, meanGrad, this.lr, 0, split);
    weights.set(staged.weights.subarray(split), split);
    staged.version = -1;
  }
}
