// The coordinator's update of one step, shard by shard (docs/design.md, "The step, shard by
// shard"). The parameter vector is cut into shards, and each one is updated as soon as its
// values are known: reduced here along the fixed tree from the sums in the slab once every
// range's part of it is in, or received as a mean from the remote participant that owns it and
// reduced it itself. Its new values go into a staged copy and, where the coordinator made them
// while workers still compute, out to them at once (publish). When the step ends, commit() moves
// every shard into the weights.
//
// The optimizer is elementwise and begun once per step, so the order in which shards finish
// does not change a bit: with one shard this is the plain update, with the protocol's two parts
// (convolutions, dense layers) remote workers get the dense layers' new values during their
// convolutions' backward pass, and with one shard per worker (sharded steps) it is the replica
// of what the owners applied. The step's own weights stay as they are until commit(): a range
// recomputed after a failure must use them, and gives the same bits (the invariant), so a shard
// updated before the failure stays right. The one exception is a whole step whose threads made
// the update in place (made()): once they begin it, the step cannot fail and be computed again.
import { reduceInPlace, readyNodes, type Slab, type TreeNode } from '../reduce/ordered-sum.js';
import { meanInto, type Optimizer } from '../optim/optimizer.js';

/** The next version's weights while a step runs: the shards updated so far. */
export interface StagedWeights {
  /** The version the updated shards of `weights` belong to, or -1 between steps. */
  version: number;
  weights: Float32Array;
}

export interface UpdateContext {
  slab: Slab;
  weights: Float32Array;
  staged: StagedWeights;
  meanGrad: Float32Array;
  optimizer: Optimizer;
}

/** Parameters [from, to) of the flat vector. */
export interface UpdateShard {
  from: number;
  to: number;
}

export class StepUpdate {
  /** Per shard: the ranges whose part of it is not in the slab yet; undefined once updated. */
  private readonly waiting: (Set<number> | undefined)[];
  /** Per range: where its sums are in the slab, once they are. */
  private readonly nodes: TreeNode[][];
  private begun = false;
  private totals: { lossSum: number; count: number } | undefined;
  private nonFinite = false;
  /** The threads of the whole step made its update in the weights (made()). */
  private madeInPlace = false;
  /** Time spent completing the tree and dividing, and in the optimizer, over the step so far. */
  reduceMs = 0;
  optimizerMs = 0;

  /**
   * The step has `ranges` ranges of leaves; `version` is the one the update makes; `publish(k)`
   * is told when shard k was made here from the slab.
   */
  constructor(
    private readonly ctx: UpdateContext,
    private readonly microbatches: number,
    ranges: number,
    readonly shards: readonly UpdateShard[],
    private readonly lr: number,
    private readonly version: number,
    private readonly publish: (shard: number) => void = () => undefined,
  ) {
    this.waiting = shards.map(() => new Set(Array.from({ length: ranges }, (_, i) => i)));
    this.nodes = Array.from({ length: ranges }, () => []);
  }

  /** A value was not finite: the run has diverged. */
  get diverged(): boolean {
    return this.nonFinite;
  }

  /** Every shard is updated: commit() may run. */
  get complete(): boolean {
    return this.waiting.every((w) => w === undefined);
  }

  /** The batch's loss sum and example count, known once the first shard was made here. */
  get lossSum(): number {
    return this.totals?.lossSum ?? Number.NaN;
  }

  get count(): number {
    return this.totals?.count ?? 0;
  }

  /**
   * Range i's values of shard k (of every shard when k is undefined) are in the slab, summed at
   * `nodes`: its maximal subtrees, or its leaves (float16 results from a remote worker).
   */
  arrived(i: number, nodes: TreeNode[], k?: number): void {
    this.nodes[i] = nodes;
    for (const j of k === undefined ? this.shards.keys() : [k]) {
      const w = this.waiting[j];
      if (!w) continue;
      w.delete(i);
      if (w.size === 0) this.reduce(j);
    }
  }

  /** Range i goes to someone else, who writes its values of every shard not yet updated again. */
  revoked(i: number): void {
    for (const w of this.waiting) w?.add(i);
  }

  /**
   * Shard k's batch-mean gradient, reduced by its owner; the step's totals, from the subtrees'
   * losses and counts that their participants reported.
   */
  received(k: number, mean: Float32Array, totals: { lossSum: number; count: number }): void {
    if (!this.waiting[k]) return;
    this.totals ??= totals;
    const { from, to } = this.shards[k];
    this.ctx.meanGrad.set(mean, from);
    for (let i = from; i < to; i++) if (!Number.isFinite(mean[i - from])) this.nonFinite = true;
    this.update(k);
  }

  /**
   * Range i, the whole step, was computed by threads that shared this memory and made every
   * shard's update themselves, in the weights and the optimizer's slots (with update number
   * optimizer count + 1: counted here), and summed its losses and counts.
   */
  made(i: number, nodes: TreeNode[], updated: { finite: boolean; ms: number; lossSum: number; count: number }): void {
    if (this.waiting.some((w) => w === undefined)) throw new Error('a shard of this step was updated here already: its update cannot be made whole elsewhere');
    this.nodes[i] = nodes;
    this.totals = { lossSum: updated.lossSum, count: updated.count };
    if (!updated.finite || !Number.isFinite(this.lossSum)) this.nonFinite = true;
    this.waiting.fill(undefined);
    this.ctx.optimizer.begin();
    this.begun = true;
    this.madeInPlace = true;
    this.optimizerMs += updated.ms;
  }

  /** Moves every updated shard into the weights (made in place already by threads): the step's new version. */
  commit(): void {
    const { weights, staged } = this.ctx;
    if (!this.madeInPlace) for (const { from, to } of this.shards) weights.set(staged.weights.subarray(from, to), from);
    staged.version = -1;
  }

  /**
   * Completes the tree over shard k's values in the slab and divides by the batch's example
   * count. The losses and counts are reduced with the first shard: every part of a result
   * carries them, and the first shard's parts are in before any other's.
   */
  private reduce(k: number): void {
    const t0 = performance.now();
    const { slab, meanGrad } = this.ctx;
    const { from, to } = this.shards[k];

    const first = this.totals === undefined;
    reduceInPlace(slab, 0, this.microbatches, readyNodes(this.nodes.flat()), { from, to, totals: first });
    if (first) this.totals = { lossSum: slab.loss[0], count: slab.count[0] };
    if (!meanInto(meanGrad, slab.grads, this.count, from, to) || !Number.isFinite(this.lossSum)) this.nonFinite = true;
    this.reduceMs += performance.now() - t0;
    this.update(k);
    if (!this.nonFinite) this.publish(k);
  }

  /** Shard k's update into the staged copy, unless the step has diverged (then nothing is made). */
  private update(k: number): void {
    this.waiting[k] = undefined;
    if (this.nonFinite) return;
    const t0 = performance.now();
    const { optimizer, staged, weights, meanGrad } = this.ctx;
    const { from, to } = this.shards[k];
    if (!this.begun) optimizer.begin();
    this.begun = true;
    staged.weights.set(weights.subarray(from, to), from);
    optimizer.update(staged.weights, meanGrad, this.lr, from, to);
    staged.version = this.version;
    this.optimizerMs += performance.now() - t0;
  }
}
