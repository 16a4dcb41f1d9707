// One synchronous training step, as one pipeline: plan (who computes which leaves of the fixed
// tree, and who makes the new values of which parameter shard), compute, and for each shard as
// its sums arrive: reduce along the tree, divide, update, publish; then commit. A participant
// that fails or misses the step deadline has its range recomputed elsewhere. The coordinator
// makes the shards itself (the protocol's two parts of a result, step-update.ts), or a remote
// worker computing the whole step alone makes them and the coordinator applies the same update
// to its replica (docs/design.md, "A worker computing whole steps alone"), or, with two or more
// remote workers, each owns one shard and reduces it among them (sharded-step.ts).
import { DivergedError } from '../errors.js';
import { STEP_DEADLINE_CAP_MS, STEP_DEADLINE_FACTOR, STEP_DEADLINE_FLOOR_MS, STEP_DEADLINE_HISTORY, STEP_DEADLINE_INITIAL_MS, MAX_CONSECUTIVE_LATE } from '../constants.js';
import { batchRange, microbatchCount, type BatchPlan } from '../data/sampler.js';
import { coverNodes, type Slab } from '../reduce/ordered-sum.js';
import type { GradDType } from '../reduce/float16.js';
import { StepUpdate, type StagedWeights, type UpdateShard } from './step-update.js';
import { UpdateLostError, type RangeResult } from '../compute/range.js';
import { splitProportional } from '../reduce/partition.js';
import type { Optimizer } from '../optim/optimizer.js';
import type { Log } from '../metrics/log.js';
import type { StepPhase } from '../metrics/state.js';
import { learningRate, type ScheduleConfig } from './schedule.js';
import { rangeTask, type ComputeOptions, type Membership, type Participant, type StepWork } from './participants.js';
import { shardable, trainShardedStep, type Assigned, type NextStep, type ShardPlanner } from './sharded-step.js';
import type { Verifier } from './verify.js';
import type { WeightsPart } from '../protocol/messages.js';


/**
 * The step deadline for remote participants: STEP_DEADLINE_FACTOR times the median of the last
 * STEP_DEADLINE_HISTORY on-time range times (a straggler's wait is not history), kept within
 * [floor, STEP_DEADLINE_CAP_MS]; `initialMs` (--step-deadline) until there is history. The floor
 * is STEP_DEADLINE_FLOOR_MS, or `initialMs` when that is shorter.
 */
export class StepDeadline {
  private readonly recent: number[] = [];
  private readonly floorMs: number;

  constructor(private readonly initialMs = STEP_DEADLINE_INITIAL_MS) {
    this.floorMs = Math.min(STEP_DEADLINE_FLOOR_MS, initialMs);
  }

  record(ms: number): void {
    this.recent.push(ms);
    if (this.recent.length > STEP_DEADLINE_HISTORY) this.recent.shift();
  }

  currentMs(): number {
    if (this.recent.length === 0) return this.initialMs;
    const sorted = [...this.recent].sort((a, b) => a - b);
    const median = sorted[Math.floor(sorted.length / 2)];
    return Math.min(STEP_DEADLINE_CAP_MS, Math.max(this.floorMs, STEP_DEADLINE_FACTOR * median));
  }

  /** `work`, or a LateError once the current deadline has passed. */
  async race<T>(work: Promise<T>): Promise<T> {
    const ms = this.currentMs();
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new LateError(`missed the ${Math.round(ms)} ms step deadline`)), ms);
    });
    try {
      return await Promise.race([work, late]);
    } finally {
      clearTimeout(timer);
    }
  }
}

/** A participant, or a sharded step, missed the step deadline. */
export class LateError extends Error {}

export interface StepContext {
  plan: BatchPlan;
  membership: Membership;
  url: string;
  slab: Slab;
  weights: Float32Array;
  /** Where the shards of the next version go as they are updated, until the step commits (step-update.ts). */
  staged: StagedWeights;
  /** Where the dense layers' parameters start in the flat vector: results come in two parts split there. */
  split: number;
  /** float32 sums come in two parts and may be applied by a worker; float16 leaves come whole. */
  gradDType: GradDType;
  meanGrad: Float32Array;
  optimizer: Optimizer;
  schedule: ScheduleConfig;
  deadline: StepDeadline;
  /** With --verify-fraction > 0: recomputes a random fraction of the remote ranges (verify.ts). */
  verifier?: Pick<Verifier, 'pick' | 'check' | 'checkSharded'>;
  /** With --allreduce sharded: who owns which parameter shard (sharded-step.ts). */
  shards?: ShardPlanner;
  log: Log;
}


/** Tells the step's update about one range whose dense layers' part is in, or must come again. */
interface RangeParts {
  /** Results come in two parts (float32 sums): the dense layers' part of every sum is in. */
  denseIn?: () => void;
  revoked(): void;
}

/** `p.compute`, but a remote participant that misses the deadline has its range cancelled. */
async function computeWithDeadline(ctx: StepContext, p: Participant, work: StepWork, lo: number, hi: number, opts: ComputeOptions): Promise<RangeResult> {
  if (p.kind === 'local') return p.compute(work, lo, hi, opts);
  try {
    const result = await ctx.deadline.race(p.compute(work, lo, hi, opts));
    p.lateStreak = 0;
    return result;
  } catch (err) {
    if (err instanceof LateError) {
      p.cancel(work.globalStep); // its results for this step are ignored from now on
      p.lateStreak++;
      p.lateTotal++;
      if (p.lateStreak >= MAX_CONSECUTIVE_LATE) p.drop(`late ${p.lateStreak} steps in a row`, 'late');
    }
    throw err;
  }
}

/** Where a step's time went, in milliseconds (compute and transfer of its slowest range). */
export type StepTiming = Record<StepPhase, number>;

/**
 * Computes one range on `p`; if `p` fails or is late, logs it and hands the same range to another
 * participant, who does not make the update itself (`whole`).
 */
async function runRange(
  ctx: StepContext,
  p: Participant,
  work: StepWork,
  lo: number,
  hi: number,
  parts?: RangeParts,
  whole: Pick<ComputeOptions, 'apply' | 'update' | 'next'> = {},
): Promise<RangeResult> {
  // A verified range's dense part may not be used early: it counts once recomputed (verify.ts).
  // A worker computing whole steps alone is not verified: it computes the next step meanwhile,
  // and its results would land in the slab before this step is reduced (verify.ts).
  const verify = p.kind === 'remote' && whole.apply === undefined && ctx.verifier?.pick() === true;
  try {
    const result = await computeWithDeadline(ctx, p, work, lo, hi, { onDense: verify ? undefined : parts?.denseIn, ...whole });
    if (verify && !(await ctx.verifier!.check(rangeTask(work, lo, hi), result.nodes))) {
      // The slab holds the recomputed sums now: the step goes on with honest values.
      ctx.log(`${p.id} (${p.name}) sent sums for microbatches [${lo},${hi}) of step ${work.globalStep} that recomputation does not give; ejected`, {
        event: 'verification_failed',
        worker: p.id,
        step: work.globalStep,
      });
      ctx.membership.remove(p);
      p.drop(`its sums for [${lo},${hi}) of step ${work.globalStep} are not what recomputation gives`, 'wrong_result');
    }
    return result;
  } catch (err) {
    if (err instanceof UpdateLostError) throw err;
    // Once `p` has failed or been cancelled it writes nothing more; whoever takes over will.
    parts?.revoked();
    if (!(err instanceof LateError) || p.lateStreak >= MAX_CONSECUTIVE_LATE) ctx.membership.remove(p);
    p.failures++;
    const next = await ctx.membership.replacement(ctx.url, p);
    ctx.log(`${p.id} ${(err as Error).message} (step ${work.globalStep}); microbatches [${lo},${hi}) go to ${next.id}`, {
      event: 'reassigned',
      worker: p.id,
      to: next.id,
      step: work.globalStep,
    });
    return runRange(ctx, next, work, lo, hi, parts);
  }
}

/** The work of step `step` of an epoch. */
function stepWork(ctx: StepContext, perm: Uint32Array, epoch: number, step: number, globalStep: number): StepWork {
  const { start, count } = batchRange(ctx.plan, step);
  return { globalStep, epoch, microbatches: microbatchCount(ctx.plan, count), microbatch: ctx.plan.microbatch, perm, start, count };
}

/**
 * Runs one synchronous step; returns the batch's loss sum, sample count and timing. Sharded when
 * it can be (sharded-step.ts); a sharded attempt that is aborted is done again unsharded.
 */
export async function trainStep(
  ctx: StepContext,
  perm: Uint32Array,
  epoch: number,
  step: number,
  globalStep: number,
  mayShard = true,
): Promise<{ lossSum: number; count: number; timing: StepTiming }> {
  const started = performance.now();
  const work = stepWork(ctx, perm, epoch, step, globalStep);
  const n = work.microbatches;
  let members = ctx.membership.forStep();
  if (members.length === 0) {
    await ctx.membership.waitFor(0, ctx.url);
    members = ctx.membership.forStep();
  }
  // Plan. A worker this whole step was preassigned to (with the step before) computes it: whoever
  // joined since takes part from the next step. Otherwise a participant late in recent steps
  // gets a smaller share: its threads halved per late step.
  // A sharded step planned with the one before keeps that plan.
  const preassigned = members.find((p) => p.preassigned(globalStep));
  const planned = mayShard ? ctx.shards?.plannedFor(globalStep) : undefined;
  const assigned = planned ?? (preassigned ? [{ p: preassigned, lo: 0, hi: n }] : proportional(members, n));
  const lr = learningRate(ctx.schedule, globalStep);
  if (mayShard && !preassigned && (planned || shardable(ctx, globalStep, assigned))) {
    // While nobody waits to join, the next step of this epoch is planned with this one.
    let next: NextStep | undefined;
    if (step + 1 < ctx.schedule.stepsPerEpoch && !ctx.membership.joinsPending()) {
      const nextWork = stepWork(ctx, perm, epoch, step + 1, globalStep + 1);
      next = { work: nextWork, assigned: proportional(members, nextWork.microbatches), lr: learningRate(ctx.schedule, globalStep + 1) };
    }
    const sharded = await trainShardedStep(ctx, work, assigned, lr, next);
    if (sharded) return sharded;
    return trainStep(ctx, perm, epoch, step, globalStep, false);
  }
  const remotes = assigned.filter((a) => a.p.kind === 'remote').map((a) => a.p);
  // Who makes the next weights: a remote worker computing the whole step alone makes them itself
  // (apply), the local pool's threads computing it whole make them in the coordinator's memory
  // (inPlace); otherwise the coordinator does, and publishes each shard it makes to the workers
  // while any of them still computes: what that overlaps is their backward pass. When the last
  // shard came with the last result there is nothing to overlap, and sending it to every worker
  // first would hold up every next assignment (64 simulated workers, `npm run scaling`): it
  // then goes with the next assignments. A participant making a whole step's update itself while
  // it is the only member is given the next step of the epoch with this one (`next`), and so
  // starts on it without waiting for this one to be committed here.
  const owner = ownsWholeStep(ctx, assigned) ? assigned[0].p : undefined;
  const apply = owner ? { lr } : undefined;
  const inPlace = assigned.length === 1 ? { lr, t: ctx.optimizer.state().t + 1, examples: work.count } : undefined;
  const nextWork = assigned.length === 1 && members.length === 1 && step + 1 < ctx.schedule.stepsPerEpoch ? stepWork(ctx, perm, epoch, step + 1, globalStep + 1) : undefined;
  const next = nextWork && { work: nextWork, lr: learningRate(ctx.schedule, globalStep + 1) };
  const shards = resultParts(ctx);
  const publish = (k: number): void => {
    if (!owner && remotes.some((p) => p.computing())) remotes.forEach((p) => p.publish(globalStep + 1, shards[k].part));
  };
  const update = new StepUpdate(ctx, n, assigned.length, shards, lr, globalStep + 1, publish);
  const dense = shards.findIndex((s) => s.part === 'dense');
  const timed = async (p: Participant, lo: number, hi: number, i: number): Promise<RangeResult & { wallMs: number; onTime: boolean }> => {
    const t0 = performance.now();
    const failuresBefore = p.failures;
    // Dense parts come early only as float32 sums, which are at the range's maximal subtrees.
    const denseIn = dense >= 0 ? (): void => update.arrived(i, coverNodes(n, lo, hi), dense) : undefined;
    const r = await runRange(ctx, p, work, lo, hi, { denseIn, revoked: () => update.revoked(i) }, { apply: p === owner ? apply : undefined, update: inPlace, next });
    const wallMs = performance.now() - t0;
    if (r.updated) update.made(i, r.nodes, r.updated);
    else update.arrived(i, r.nodes); // every part of its sums is in
    return { ...r, wallMs, onTime: p.failures === failuresBefore };
  };
  const results = await Promise.all(assigned.map((a, i) => timed(a.p, a.lo, a.hi, i)));
  if (update.diverged) throw new DivergedError(globalStep);
  const t0 = performance.now();
  update.commit();
  const onTime = results.filter((r) => r.onTime);
  if (onTime.length > 0) ctx.deadline.record(Math.max(...onTime.map((r) => r.wallMs)));
  const slowest = results.reduce((a, b) => (b.wallMs > a.wallMs ? b : a));
  const timing: StepTiming = {
    step: performance.now() - started,
    compute: slowest.computeMs,
    transfer: Math.max(0, slowest.wallMs - slowest.computeMs - (slowest.updated?.ms ?? 0)),
    reduce: update.reduceMs,
    optimizer: update.optimizerMs + performance.now() - t0,
  };
  return { lossSum: update.lossSum, count: update.count, timing };
}

/** Contiguous ranges of `n` leaves in proportion to the members' threads, halved per recent late step. */
function proportional(members: Participant[], n: number): Assigned[] {
  const ranges = splitProportional(n, members.map((p) => p.threads / 2 ** p.lateStreak));
  return ranges.flatMap((r, i) => (r ? [{ p: members[i], lo: r[0], hi: r[1] }] : []));
}

/**
 * The shards of an update the coordinator makes from the slab: the protocol's two parts of a
 * float32 result (remote workers send the dense layers' part first, so that shard is made
 * first), or all values at once (float16 results come per leaf, whole).
 */
function resultParts(ctx: Pick<StepContext, 'gradDType' | 'split' | 'slab'>): (UpdateShard & { part: WeightsPart })[] {
  if (ctx.gradDType !== 'float32') return [{ from: 0, to: ctx.slab.width, part: 'all' }];
  return [
    { from: 0, to: ctx.split, part: 'conv' },
    { from: ctx.split, to: ctx.slab.width, part: 'dense' },
  ];
}

/** One remote worker computes the whole step, and may apply its update (float32 sums only). */
function ownsWholeStep(ctx: StepContext, assigned: Assigned[]): boolean {
  return ctx.gradDType === 'float32' && assigned.length === 1 && assigned[0].p.kind === 'remote';
}
