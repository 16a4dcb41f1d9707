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
// Any failure (a worker lost, a bad frame, the deadline, a check that fails: verify.ts) aborts
// the attempt: every worker drops the step, and the step is done again the plain way (step.ts).
// The coordinator's weights and optimizer are untouched until every shard is in and checked, so
// nothing of the attempt remains.
import { encode } from '../protocol/codec.js';
import type { RangeDoneMessage, ShardUpdateMessage } from '../protocol/messages.js';
import { coverNodes, readyNodes, reduceInPlace, slot, type TreeNode } from '../reduce/ordered-sum.js';
import { shardLayout, stepNodes, sumsDigests, type Shard } from '../reduce/shards.js';
import { valuesDigest } from '../model/weights.js';
import type { RangeResult } from '../compute/range.js';
import { MAX_ABORTED_SHARDED_STEPS } from '../constants.js';
import { RemoteWorker } from './remote-worker.js';
import { rangeTask, type Participant, type StepWork } from './participants.js';
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
  fromPeers: boolean[];
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

  constructor(
    private readonly params: number,
    private readonly log: (line: string) => void,
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
function startOwners(plan: ShardPlan, work: StepWork, assigned: Assigned[], lr: number, ahead: boolean): Omit<PlannedAhead, 'step' | 'assigned'> {
  const bounds = [0, ...assigned.map((a) => a.hi)];
  const started: Omit<PlannedAhead, 'step' | 'assigned'> = { reports: [], updates: [], fromPeers: [] };
  assigned
    .filter((a) => a.p instanceof RemoteWorker)
    .forEach((a, k) => {
      const { done, update, fromPeers } = (a.p as RemoteWorker).computeSharded(work, a.lo, a.hi, { plan: plan.id, peersFrame: plan.peersFrame, shard: plan.shards[k], shards: plan.shards.length, bounds, lr }, ahead);
      started.reports.push(done);
      started.updates.push(update);
      started.fromPeers.push(fromPeers);
    });
  return started;
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
  const { reports, updates, fromPeers } = ahead ?? startOwners(plan, work, assigned, lr, false);
  if (next && sameOwners(remotes, next.assigned)) {
    const planned = startOwners(plan, next.work, next.assigned, next.lr, true);
    // Answers that may come to nothing (this step aborted) must not go unhandled.
    for (const p of [...planned.reports, ...planned.updates]) p.catch(() => undefined);
    planner.planAhead({ step: next.work.globalStep, assigned: next.assigned, ...planned });
  }
  // The coordinator's threads: compute, then hand each owner its shard of their sums; those of
  // shards that hold only dense-layer values as soon as they are final, where the threads hand
  // them over early (LocalParticipant).
  const local = assigned.find((a) => !(a.p instanceof RemoteWorker));
  let localSums: Uint8Array[] = [];
  const denseOnly = plan.shards.map(([from]) => from >= ctx.split);
  let sentDense = false;
  const localRun: Promise<RangeResult | undefined> = local
    ? local.p
        .compute(work, local.lo, local.hi, {
          onDense: () => {
            sentDense = true;
            sendLocalPartials(ctx, plan, work, coverNodes(n, local.lo, local.hi), denseOnly);
          },
        })
        .then((r) => {
          sendLocalPartials(ctx, plan, work, r.nodes, sentDense ? denseOnly.map((d) => !d) : denseOnly.map(() => true));
          localSums = ctx.verifier ? sumsDigests(ctx.slab, r.nodes, plan.shards) : [];
          return r;
        })
    : Promise.resolve(undefined);
  // Any failure: every worker drops the step (and the next, if planned), to be done again.
  const giveUp = async (reason: string): Promise<undefined> => {
    for (const a of remotes) (a.p as RemoteWorker).abortSharded(v, reason); // and the next step, if planned
    planner.abortedUpTo(planner.takeAhead(v + 1) ? v + 1 : v);
    // Its threads must be done with the slab before the step is done again, and their
    // microbatches are counted once: by the attempt that completes the step.
    if (local && (await localRun.catch(() => undefined))) local.p.microbatchesDone -= local.hi - local.lo;
    ctx.log(`sharded step ${v} given up (${reason}); it is done again through the coordinator`, { event: 'sharded_step_aborted', step: v });
    return undefined;
  };
  let done: RangeDoneMessage[];
  let shardMeans: ShardUpdateMessage[];
  let localResult: RangeResult | undefined;
  try {
    [done, shardMeans, localResult] = await ctx.deadline.race(Promise.all([Promise.all(reports), Promise.all(updates), localRun]));
  } catch (err) {
    await giveUp((err as Error).message);
    ctx.shards!.attempted(false);
    return undefined;
  }
  const t1 = performance.now();
  if (ctx.verifier) {
    const owners = remotes.map((a, k) => ({ id: a.p.id, task: rangeTask(work, a.lo, a.hi), done: done[k], update: shardMeans[k], fromPeers: fromPeers[k] }));
    const faults = await ctx.verifier.checkSharded({
      step: v,
      microbatches: n,
      examples: work.count,
      shards: plan.shards,
      owners,
      local: { nodes: local ? coverNodes(n, local.lo, local.hi) : [], sumsDigests: localSums },
      weightsDigests: plan.shards.map(([from, to]) => valuesDigest(ctx.weights.subarray(from, to))),
      nodes: stepNodes(n, [0, ...assigned.map((a) => a.hi)]),
    });
    if (faults.length > 0) {
      const ejected = faults.map((f) => remotes[f.owner].p as RemoteWorker);
      await giveUp(`${ejected.map((p) => p.id).join(' and ')} ejected`);
      faults.forEach((f, i) => {
        const p = ejected[i];
        ctx.log(`${p.id} (${p.name}) ${f.reason}; ejected`, { event: 'verification_failed', worker: p.id, step: v });
        ctx.membership.remove(p);
        p.drop(f.reason, 'wrong_result');
      });
      return undefined;
    }
  }
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

/** The coordinator's threads' sums of the shards `which` picks, to each such shard's owner. */
function sendLocalPartials(ctx: StepContext, plan: ShardPlan, work: StepWork, nodes: TreeNode[], which: boolean[]): void {
  plan.owners.forEach((owner, k) => {
    if (!which[k]) return;
    const [from, to] = plan.shards[k];
    for (const [lo, hi] of nodes) {
      owner.sendPartial({ type: 'result', step: work.globalStep, lo, hi, examples: ctx.slab.count[lo], lossSum: ctx.slab.loss[lo], offset: from, gradient: slot(ctx.slab, lo).subarray(from, to), computeMs: 0 });
    }
  });
}
