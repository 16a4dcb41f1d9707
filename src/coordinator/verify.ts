// Checked results: verification by recomputation. The invariant means any subtree sum can be
// recomputed and compared bit for bit. A fraction of the remote ranges, chosen with a private
// random source the workers cannot predict, is recomputed by the coordinator's own compute
// before the step uses it. The recomputation writes the honest sums over the worker's in the
// slab, so a step goes on with the right values whatever the comparison says; a mismatch ejects
// the worker. A worker that corrupts a fraction q of its results survives k of them with
// probability (1 - F·q)^k.
//
// Not verified: a worker computing whole steps alone (--threads 0, one worker), whose next step
// was preassigned with this one and whose results for it would reach the slab while a recomputation delays this
// step's reduce; and sharded steps, whose partial sums never reach the coordinator.
import { randomInt } from 'node:crypto';
import type { ComputePool } from '../compute/pool.js';
import { computeRange } from '../compute/range.js';
import { InlineCompute } from '../compute/inline.js';
import type { RangeTask } from '../compute/types.js';
import type { PoolOptions } from '../compute/pool.js';
import { float32Bytes } from '../model/weights.js';
import { slot, type Slab, type TreeNode } from '../reduce/ordered-sum.js';

/** Resolution of the choice: a range is verified when randomInt(VERIFY_SCALE) < fraction·VERIFY_SCALE. */
const VERIFY_SCALE = 1_000_000;

export class Verifier {
  /** Ranges recomputed, and how many of them differed, over the run. */
  checked = 0;
  failed = 0;

  private constructor(
    private readonly fraction: number,
    private readonly slab: Slab,
    /** float16 runs: remote results come per leaf, and are recomputed so. */
    private readonly leavesOnly: boolean,
    private readonly recompute: (task: RangeTask) => Promise<unknown>,
  ) {}

  /** On the coordinator's threads, or with none on its main thread (the backend runs there then). */
  static async start(fraction: number, slab: Slab, pool: ComputePool | undefined, inline: PoolOptions): Promise<Verifier> {
    const leavesOnly = inline.gradDType === 'float16';
    if (pool) return new Verifier(fraction, slab, leavesOnly, (task) => computeRange(pool, slab, task));
    // The dense weights are always whole here: the version flag never holds a computation back.
    const compute = await InlineCompute.start({ ...inline, denseVersion: Int32Array.of(0x7fffffff) });
    return new Verifier(fraction, slab, leavesOnly, (task) => compute.computeRange(task));
  }

  /** Whether the next remote range is to be verified. */
  pick(): boolean {
    return this.fraction > 0 && randomInt(VERIFY_SCALE) < this.fraction * VERIFY_SCALE;
  }

  /**
   * Recomputes `task`, whose subtree sums `nodes` a worker left in the slab; returns whether the
   * worker's values were the recomputed bits. The slab holds the recomputed values afterwards.
   */
  async check(task: RangeTask, nodes: TreeNode[]): Promise<boolean> {
    const sent = nodes.map(([lo]) => ({ lo, grad: slot(this.slab, lo).slice(), loss: this.slab.loss[lo], count: this.slab.count[lo] }));
    await this.recompute({ ...task, leavesOnly: this.leavesOnly });
    this.checked++;
    const same = sent.every((s) => s.loss === this.slab.loss[s.lo] && s.count === this.slab.count[s.lo] && float32Bytes(s.grad).equals(float32Bytes(slot(this.slab, s.lo))));
    if (!same) this.failed++;
    return same;
  }
}
