// Checked results: verification by recomputation. The invariant means any subtree sum can be
// recomputed and compared bit for bit. A fraction of the remote ranges, chosen with a private
// random source the workers cannot predict, is recomputed by the coordinator's own compute
// before the step uses it. The recomputation writes the honest sums over the worker's in the
// slab, so a step goes on with the right values whatever the comparison says; a mismatch ejects
// the worker. A worker that corrupts a fraction q of its results survives k of them with
// probability (1 - F·q)^k.
//
// Sharded steps (sharded-step.ts), whose partial sums never reach the coordinator, are checked
// through digests (valuesDigest): each worker reports the digest of every sum it sent each owner
// and of every shard of the weights it computed with; each owner reports those of the sums it
// reduced. Every step, the coordinator compares them with one another and with its replica of
// the weights (an owner that made or sent other values, a sender and an owner whose accounts
// differ); in a fraction F of the steps it also recomputes every range and compares the
// digests and each owner's mean with the fixed tree's. Any fault ejects whoever it points at,
// and the step is done again through the coordinator before anything of it is used.
//
// Not verified: a worker computing whole steps alone (--threads 0, one worker), whose next step
// was preassigned with this one and whose results for it would reach the slab while a recomputation delays this
// step's reduce.
import { randomInt } from 'node:crypto';
import type { ComputePool } from '../compute/pool.js';
import { computeRange } from '../compute/range.js';
import { InlineCompute } from '../compute/inline.js';
import type { RangeTask } from '../compute/types.js';
import type { PoolOptions } from '../compute/pool.js';
import { EVERY_VERSION, newDenseFlag } from '../compute/dense-flag.js';
import { float32Bytes } from '../model/weights.js';
import { shardMean } from '../optim/optimizer.js';
import type { RangeDoneMessage, ShardUpdateMessage } from '../protocol/messages.js';
import { nodeKey, readyNodes, slot, type Slab, type TreeNode } from '../reduce/ordered-sum.js';
import { sumsDigests, type Shard } from '../reduce/shards.js';

/** Resolution of the choice: a range is verified when randomInt(VERIFY_SCALE) < fraction·VERIFY_SCALE. */
const VERIFY_SCALE = 1_000_000;

export class Verifier {
  /** Remote ranges recomputed over the run, and the faults found: ranges that differed, sharded-step faults. */
  checked = 0;
  failed = 0;
  /** A sharded step's mean gradient as the fixed tree gives it, when one is recomputed. */
  private mean: Float32Array | undefined;

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
    const compute = await InlineCompute.start({ ...inline, denseVersion: newDenseFlag(EVERY_VERSION) });
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

  /**
   * The faults of a sharded step: those shardedFaults() finds in every step, and in a fraction of
   * the steps, when it finds none, those recomputation finds. The slab's sums are spent afterwards.
   */
  async checkSharded(a: ShardedAccount): Promise<ShardFault[]> {
    let faults = shardedFaults(a);
    if (faults.length === 0 && this.pick()) faults = await this.recomputeSharded(a);
    this.failed += faults.length;
    return faults;
  }

  private async recomputeSharded(a: ShardedAccount): Promise<ShardFault[]> {
    await Promise.all(a.owners.map((o) => this.recompute({ ...o.task, leavesOnly: false })));
    this.checked += a.owners.length;
    const faults = new Faults();
    a.owners.forEach((o, j) => {
      const truth = sumsDigests(this.slab, o.done.nodes.map((n) => [n.lo, n.hi]), a.shards);
      const same = o.done.nodes.every((n) => n.lossSum === this.slab.loss[n.lo] && n.examples === this.slab.count[n.lo]) && truth.every((d, i) => equal(o.done.sumsDigests[i], d));
      if (!same) faults.add(j, `sent sums for microbatches [${o.task.lo},${o.task.hi}) of step ${a.step} that recomputation does not give`);
    });
    if (faults.list.length > 0) return faults.list;
    // Every sum is what recomputation gives and what its owner reduced: each mean must be the fixed tree's.
    this.mean ??= new Float32Array(this.slab.width);
    shardMean(this.slab, a.microbatches, readyNodes(a.nodes), this.mean, 0, this.slab.width, a.examples);
    a.owners.forEach((o, k) => {
      const [from, to] = a.shards[k];
      if (!float32Bytes(o.update.mean).equals(float32Bytes(this.mean!.subarray(from, to)))) {
        faults.add(k, `sent a mean gradient of values [${from},${to}) for step ${a.step} that the fixed tree over its sums does not give`);
      }
    });
    return faults.list;
  }
}

/** What a sharded step's participants reported, beside what the coordinator knows of it. */
export interface ShardedAccount {
  /** The step, which computes with weights version `step`. */
  step: number;
  microbatches: number;
  examples: number;
  /** The plan's shards: owner k owns shards[k]. */
  shards: readonly Shard[];
  owners: {
    id: string;
    task: RangeTask;
    done: RangeDoneMessage;
    update: ShardUpdateMessage;
    /** Its weights of the step came from its peers (made in the step before), not from the coordinator. */
    fromPeers: boolean;
  }[];
  /** The coordinator's threads' subtrees, and their sums' digests: node-major, then shard. */
  local: { nodes: TreeNode[]; sumsDigests: Uint8Array[] };
  /** The coordinator's replica of the step's weights, digest per shard. */
  weightsDigests: Uint8Array[];
  /** Every subtree of the step, in leaf order: what each owner's received digests list. */
  nodes: TreeNode[];
}

/** Owner `owner` (an index into ShardedAccount.owners) is to be ejected, for `reason`. */
export interface ShardFault {
  owner: number;
  reason: string;
}

class Faults {
  readonly list: ShardFault[] = [];
  add(owner: number, reason: string): void {
    if (!this.list.some((f) => f.owner === owner)) this.list.push({ owner, reason });
  }
}

const equal = (a: Uint8Array | undefined, b: Uint8Array | undefined): boolean => a !== undefined && b !== undefined && Buffer.from(a).equals(Buffer.from(b));

/**
 * What the digests of a sharded step show without recomputing anything. Honest participants never
 * disagree (frames arrive as sent), so where two accounts differ one of them is false. A worker
 * that two or more others contradict is the one ejected; one that only one other contradicts is
 * ejected with it, as nothing tells which of the two is false.
 */
export function shardedFaults(a: ShardedAccount): ShardFault[] {
  const faults = new Faults();
  const S = a.shards.length;
  /** Per sender: the receivers whose account of what it sent differs from its own, and what. */
  const contradicted = new Map<number, { receivers: number[]; what: string }>();
  const contradict = (sender: number, receiver: number, what: string): void => {
    const c = contradicted.get(sender) ?? { receivers: [], what };
    c.receivers.push(receiver);
    contradicted.set(sender, c);
  };
  // The weights each owner computed with: the replica's, or the values their shard's owner made.
  a.owners.forEach((o, j) => {
    a.shards.forEach(([from, to], k) => {
      if (equal(o.done.weightsDigests[k], a.weightsDigests[k])) return;
      const values = `weights [${from},${to}) of version ${a.step}`;
      if (!o.fromPeers) faults.add(j, `computed step ${a.step} with ${values} other than the coordinator sent it`);
      else if (k === j) faults.add(j, `made ${values} other than its update gives`);
      else if (equal(a.owners[k].done.weightsDigests[k], a.weightsDigests[k])) contradict(k, j, `the ${values} that it made`);
      // else the owner made other values itself: its own check names it
    });
  });
  const judge = (): void => {
    for (const [sender, { receivers, what }] of contradicted) {
      const id = a.owners[sender].id;
      if (receivers.length >= 2) {
        faults.add(sender, `is contradicted by ${receivers.map((r) => a.owners[r].id).join(' and ')} about ${what}`);
        continue;
      }
      const [receiver] = receivers;
      faults.add(sender, `and ${a.owners[receiver].id} disagree on ${what.replace(/\bit\b/, id)}`);
      faults.add(receiver, `and ${id} disagree on ${what.replace(/\bit\b/, id)}`);
    }
    contradicted.clear();
  };
  judge();
  // The sums each owner reduced: those their senders sent.
  const sender = new Map<string, { j: number; i: number }>();
  a.local.nodes.forEach(([lo, hi], i) => sender.set(nodeKey(lo, hi), { j: -1, i }));
  a.owners.forEach((o, j) => o.done.nodes.forEach((n, i) => sender.set(nodeKey(n.lo, n.hi), { j, i })));
  a.owners.forEach((o, k) => {
    a.nodes.forEach(([lo, hi], n) => {
      const from = sender.get(nodeKey(lo, hi));
      if (!from) throw new Error(`sharded step ${a.step}: nobody computed subtree [${lo},${hi})`);
      const received = o.update.receivedDigests[n];
      const sums = `the sums of [${lo},${hi}) of step ${a.step}`;
      if (from.j === -1) {
        if (!equal(received, a.local.sumsDigests[from.i * S + k])) faults.add(k, `reduced ${sums} other than the coordinator's threads sent it`);
      } else if (!equal(received, a.owners[from.j].done.sumsDigests[from.i * S + k])) {
        if (from.j === k) faults.add(k, `reduced ${sums} other than it reported`);
        else contradict(from.j, k, `${sums} that it sent`);
      }
    });
  });
  judge();
  return faults.list;
}
