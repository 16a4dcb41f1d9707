// A sharded step (docs/design.md, "Sharded steps"): the parameter vector is cut into one shard
// per remote participant. Every participant sends its partial sums of shard k straight to shard
// k's owner, which completes the fixed tree for those values, divides by the step's example
// count, applies the optimizer to its shard and sends the new values to the other owners: a
// reduce-scatter, then an all-gather, with the same additions in the same order as the star.
// The coordinator stays the control plane: it plans, receives each owner's mean gradient (one
// copy of the model per step, whatever the number of workers) and the subtrees' losses, and
// applies the same update to its own replica, so it can checkpoint, evaluate and hand anything
// over at any step. Its own threads take part as one participant that owns no shard.
//
// Any failure (a worker lost, a bad frame, the deadline) aborts the attempt: every worker drops
// the step, and the step is done again the plain way (step.ts). The coordinator's weights and
// optimizer are untouched until every shard is in, so nothing of the attempt remains.
import { encode } from '../protocol/codec.js';
import type { RangeDoneMessage, ShardUpdateMessage } from '../protocol/messages.js';
import { coverNodes, reduceInPlace, slot, type TreeNode } from '../reduce/ordered-sum.js';
import { readyNodes, shardLayout, type Shard } from '../reduce/shards.js';
import type { RangeResult } from '../compute/range.js';
import { MAX_ABORTED_SHARDED_STEPS } from '../constants.js';
import { RemoteWorker } from './remote-worker.js';
import type { Participant, StepWork } from './participants.js';
import type { StepContext, StepTiming } from './step.js';
import { DivergedError } from '../errors.js';
import { StepUpdate } from './step-update.js';

/** Who owns which shard: stays the same while the owners do, so workers keep their plan. */
export interface ShardPlan {
  id: number;
  owners: RemoteWorker[];
  shards: Shard[];
  peersFrame: Uint8Array;
}

/** A sharded step planned during the one before it: its ranges, and its owners' answers to come. */
interface PlannedAhead {
  step: number;
  assigned: Assigned[];
  reports: Promise<RangeDoneMessage>[];
  updates: Promise<ShardUpdateMessage>[];
}

export class ShardPlanner {
  private plan: ShardPlan | undefined;
  /** The next step, when its assignments went out with the current step's. */
  private ahead: PlannedAhead | undefined;
  /** Sharded attempts aborted in a row; at MAX_ABORTED_SHARDED_STEPS the run stops sharding. */
  aborted = 0;
  /**
   * The last step workers were sent Abort for. A worker drops every sharded assignment of a step
   * it was told to abort (partial sums of the aborted attempt may still be on their way), so such
   * a step is done through the coordinator, however it came to be aborted.
   */
  private abortedThrough = -1;

  /**
   * `verifying`: the run checks results by recomputation (--verify-fraction), which sharded steps
   * do not offer; the first plan says so once.
   */
  constructor(
    private readonly params: number,
    private readonly log: (line: string) => void,
    private readonly verifying = false,
  ) {}

  /** False once sharded attempts have failed too often in a row: the star from then on. */
  get enabled(): boolean {
    return this.aborted < MAX_ABORTED_SHARDED_STEPS;
  }

  /** Step `step` may be sharded: sharding is on, and no worker was told to abort it. */
  mayShard(step: number): boolean {
    return this.enabled && step > this.abortedThrough;
  }

  /** Workers were told to abort every sharded step up to `step`. */
  abortedUpTo(step: number): void {
    this.abortedThrough = Math.max(this.abortedThrough, step);
  }

  /** Step `ahead.step` was started with the one before. */
  planAhead(ahead: PlannedAhead): void {
    this.ahead = ahead;
  }

  /** The owners' answers for `step` if it was planned ahead; forgotten either way. */
  takeAhead(step: number): PlannedAhead | undefined {
    const ahead = this.ahead?.step === step ? this.ahead : undefined;
    if (this.ahead && this.ahead.step <= step) this.ahead = undefined;
    return ahead;
  }

  attempted(ok: boolean): void {
    this.aborted = ok ? 0 : this.aborted + 1;
    if (!this.enabled && !ok) {
      this.log(`${this.aborted} sharded steps in a row were given up; every sum goes through the coordinator from now on (check that workers reach each other at their --advertise addresses)`);
    }
  }

  /** The ranges of step `step` if it was planned with the step before. */
  plannedFor(step: number): Assigned[] | undefined {
    return this.ahead?.step === step ? this.ahead.assigned : undefined;
  }

  /** The plan for these owners, in this order: the last one if they are the same. */
  planFor(owners: RemoteWorker[]): ShardPlan {
    const last = this.plan;
    if (last && last.owners.length === owners.length && last.owners.every((w, i) => w === owners[i])) return last;
    const shards = shardLayout(this.params, owners.length);
    const id = (last?.id ?? 0) + 1;
    if (!last && this.verifying) {
      this.log('note: sharded steps are not checked by recomputation (--verify-fraction checks star steps only); with --allreduce star every step can be checked');
    }
    const peers = owners.map((w, i) => ({ workerId: w.workerId, url: w.peerUrl, from: shards[i][0], to: shards[i][1] }));
    this.plan = { id, owners, shards, peersFrame: encode({ type: 'peers', plan: id, peers }) };
    return this.plan;
  }
}

export interface Assigned {
  p: Participant;
  lo: number;
  hi: number;
}

/** Step `step` can be sharded: float32 sums, two or more remote workers that all accept peer links. */
export function shardable(ctx: StepContext, step: number, assigned: Assigned[]): boolean {
  const remotes = assigned.filter((a) => a.p instanceof RemoteWorker);
  return ctx.shards !== undefined && ctx.shards.mayShard(step) && ctx.gradDType === 'float32' && remotes.length >= 2 && remotes.every((a) => (a.p as RemoteWorker).peerUrl !== '');
}

/** The next step, to be planned with this one: its work, ranges (the same owners, in the same order) and rate. */
export interface NextStep {
  work: StepWork;
  assigned: Assigned[];
  lr: number;
}

/** Sends every owner its range of `work` and returns what they will answer. */
function startOwners(plan: ShardPlan, work: StepWork, assigned: Assigned[], lr: number, ahead: boolean): { reports: Promise<RangeDoneMessage>[]; updates: Promise<ShardUpdateMessage>[] } {
  const bounds = [0, ...assigned.map((a) => a.hi)];
  const reports: Promise<RangeDoneMessage>[] = [];
  const updates: Promise<ShardUpdateMessage>[] = [];
  assigned
    .filter((a) => a.p instanceof RemoteWorker)
    .forEach((a, k) => {
      const { done, update } = (a.p as RemoteWorker).computeSharded(work, a.lo, a.hi, { plan: plan.id, peersFrame: plan.peersFrame, shard: plan.shards[k], bounds, lr }, ahead);
      reports.push(done);
      updates.push(update);
    });
  return { reports, updates };
}

/**
 * Runs step `work` sharded over `assigned` (ranges in leaf order). Returns the step's loss sum,
 * count and timing, or undefined when the attempt was aborted (the caller does it again). With
 * `next`, the next step's assignments go out too: each owner starts it as soon as it holds the
 * new weights, which it makes with its peers, instead of after the coordinator's turnaround
 * (every owner's mean gradient in over the coordinator's one link, the replica updated, the
 * next assignments out). The step was planned so by the one before when the planner has it.
 */
export async function trainShardedStep(ctx: StepContext, work: StepWork, assigned: Assigned[], lr: number, next?: NextStep): Promise<{ lossSum: number; count: number; timing: StepTiming } | undefined> {
  const started = performance.now();
  const v = work.globalStep;
  const n = work.microbatches;
  const planner = ctx.shards!;
  const remotes = assigned.filter((a) => a.p instanceof RemoteWorker);
  const plan = planner.planFor(remotes.map((a) => a.p as RemoteWorker));
  const ahead = planner.takeAhead(v);
  const { reports, updates } = ahead ?? startOwners(plan, work, assigned, lr, false);
  if (next && sameOwners(remotes, next.assigned)) {
    const planned = startOwners(plan, next.work, next.assigned, next.lr, true);
    // Answers that may come to nothing (this step aborted) must not go unhandled.
    for (const p of [...planned.reports, ...planned.updates]) p.catch(() => undefined);
    planner.planAhead({ step: next.work.globalStep, assigned: next.assigned, ...planned });
  }
  // The coordinator's threads: compute, then hand each owner its shard of their sums.
  const local = assigned.find((a) => !(a.p instanceof RemoteWorker));
  const localRun: Promise<RangeResult | undefined> = local
    ? local.p.compute(work, local.lo, local.hi).then((r) => {
        sendLocalPartials(ctx, plan, work, r.nodes);
        return r;
      })
    : Promise.resolve(undefined);
  let done: RangeDoneMessage[];
  let shardMeans: ShardUpdateMessage[];
  let localResult: RangeResult | undefined;
  try {
    [done, shardMeans, localResult] = await ctx.deadline.race(Promise.all([Promise.all(reports), Promise.all(updates), localRun]));
  } catch (err) {
    const reason = (err as Error).message;
    for (const a of remotes) (a.p as RemoteWorker).abortSharded(v, reason); // and the next step, if planned
    planner.abortedUpTo(planner.takeAhead(v + 1) ? v + 1 : v);
    // Its threads must be done with the slab before the step is done again, and their
    // microbatches are counted once: by the attempt that completes the step.
    if (local && (await localRun.catch(() => undefined))) local.p.microbatchesDone -= local.hi - local.lo;
    ctx.log(`sharded step ${v} given up (${reason}); it is done again through the coordinator`, { event: 'sharded_step_aborted', step: v });
    ctx.shards!.attempted(false);
    return undefined;
  }
  const t1 = performance.now();
  // The losses and example counts of the remote subtrees; the local ones are in the slab.
  const nodes: TreeNode[] = local ? coverNodes(n, local.lo, local.hi) : [];
  for (const report of done) {
    for (const node of report.nodes) {
      ctx.slab.loss[node.lo] = node.lossSum;
      ctx.slab.count[node.lo] = node.examples;
      nodes.push([node.lo, node.hi]);
    }
  }
  reduceInPlace(ctx.slab, 0, n, readyNodes(nodes), { from: 0, to: 0, totals: true });
  const totals = { lossSum: ctx.slab.loss[0], count: ctx.slab.count[0] };
  if (totals.count !== work.count) throw new Error(`sharded step ${v} summed ${totals.count} examples of ${work.count}`);
  const t2 = performance.now();
  // The same update the owners applied to their shards, to the coordinator's replica.
  const update = new StepUpdate(ctx, n, assigned.length, plan.shards.map(([from, to]) => ({ from, to })), lr, v + 1);
  shardMeans.forEach((u, k) => update.received(k, u.mean, totals));
  if (update.diverged || !Number.isFinite(totals.lossSum)) throw new DivergedError(v);
  update.commit();
  for (const a of remotes) (a.p as RemoteWorker).finishSharded(v + 1, plan.id);
  ctx.shards!.attempted(true);
  const t3 = performance.now();
  ctx.deadline.record(t1 - started);
  const computeMs = Math.max(localResult?.computeMs ?? 0, ...done.map((d) => d.computeMs));
  return {
    lossSum: totals.lossSum,
    count: totals.count,
    timing: { step: t3 - started, compute: computeMs, transfer: Math.max(0, t1 - started - computeMs), reduce: t2 - t1, optimizer: t3 - t2 },
  };
}

/** The same remote participants in the same order: the same shards, the same plan. */
function sameOwners(remotes: Assigned[], next: Assigned[]): boolean {
  const others = next.filter((a) => a.p instanceof RemoteWorker);
  return others.length === remotes.length && others.every((a, i) => a.p === remotes[i].p);
}

/** The coordinator's threads' sums, shard by shard, to each shard's owner. */
function sendLocalPartials(ctx: StepContext, plan: ShardPlan, work: StepWork, nodes: TreeNode[]): void {
  plan.owners.forEach((owner, k) => {
    const [from, to] = plan.shards[k];
    for (const [lo, hi] of nodes) {
      owner.sendPartial({ type: 'result', step: work.globalStep, lo, hi, examples: ctx.slab.count[lo], lossSum: ctx.slab.loss[lo], offset: from, gradient: slot(ctx.slab, lo).subarray(from, to), computeMs: 0 });
    }
  });
}
