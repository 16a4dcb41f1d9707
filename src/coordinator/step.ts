// One synchronous training step: plan the microbatches, hand contiguous ranges to participants
// in proportion to their weight, recompute the range of anyone who fails or misses the step
// deadline elsewhere, complete the fixed reduction tree, and apply the optimizer once. A remote
// worker that computes a whole step alone applies the same update itself and gets the next
// step's assignment with this one (docs/design.md, "A worker computing whole steps alone").
import { DivergedError } from '../errors.js';
import { STEP_DEADLINE_CAP_MS, STEP_DEADLINE_FACTOR, STEP_DEADLINE_FLOOR_MS, STEP_DEADLINE_HISTORY, STEP_DEADLINE_INITIAL_MS, MAX_CONSECUTIVE_LATE } from '../constants.js';
import { batchRange, microbatchCount, type BatchPlan } from '../data/sampler.js';
import { reduceInPlace, type Slab } from '../reduce/ordered-sum.js';
import { EarlyDenseUpdate, type StagedWeights } from './early-dense.js';
import type { RangeResult } from '../compute/range.js';
import { splitProportional } from '../reduce/partition.js';
import { batchMean, meanInto, type Optimizer } from '../optim/optimizer.js';
import type { Log } from '../metrics/log.js';
import type { StepPhase } from '../metrics/state.js';
import { learningRate, type ScheduleConfig } from './schedule.js';
import { rangeTask, type ComputeOptions, type Membership, type Participant, type StepWork } from './participants.js';
import { shardable, trainShardedStep, type ShardPlanner } from './sharded-step.js';
import type { Verifier } from './verify.js';


/**
 * The step deadline for remote participants: STEP_DEADLINE_FACTOR times the median of the last
 * STEP_DEADLINE_HISTORY on-time range times (a straggler's wait is not history), kept within
 * [STEP_DEADLINE_FLOOR_MS, STEP_DEADLINE_CAP_MS]; STEP_DEADLINE_INITIAL_MS until there is history.
 */
export class StepDeadline {
  private readonly recent: number[] = [];

  record(ms: number): void {
    this.recent.push(ms);
    if (this.recent.length > STEP_DEADLINE_HISTORY) this.recent.shift();
  }

  currentMs(): number {
    if (this.recent.length === 0) return STEP_DEADLINE_INITIAL_MS;
    const sorted = [...this.recent].sort((a, b) => a - b);
    const median = sorted[Math.floor(sorted.length / 2)];
    return Math.min(STEP_DEADLINE_CAP_MS, Math.max(STEP_DEADLINE_FLOOR_MS, STEP_DEADLINE_FACTOR * median));
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
  /** Where the dense layers' weights of the next version go when updated early (early-dense.ts). */
  staged: StagedWeights;
  /** Where the dense layers' parameters start in the flat vector. */
  split: number;
  /**
   * Results are float32 sums (not float16 leaves). Then remote workers send the dense part of
   * their sums early, which is updated early (early-dense.ts), and a remote worker given a whole
   * step alone applies the optimizer itself.
   */
  float32Sums: boolean;
  meanGrad: Float32Array;
  optimizer: Optimizer;
  schedule: ScheduleConfig;
  deadline: StepDeadline;
  /** With --verify-fraction > 0: recomputes a random fraction of the remote ranges (verify.ts). */
  verifier?: Pick<Verifier, 'pick' | 'check'>;
  /** With --allreduce sharded: who owns which parameter shard (sharded-step.ts). */
  shards?: ShardPlanner;
  log: Log;
}


/** Tells the step's EarlyDenseUpdate about one range: its dense part is in, or must come again. */
interface RangeDense {
  arrived(): void;
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
 * participant, who does not apply the update (`apply`) itself.
 */
async function runRange(ctx: StepContext, p: Participant, work: StepWork, lo: number, hi: number, dense?: RangeDense, apply?: ComputeOptions['apply']): Promise<RangeResult> {
  // A verified range's dense part may not be used early: it counts once recomputed (verify.ts).
  // A worker computing whole steps alone is not verified: it computes the next step meanwhile,
  // and its results would land in the slab before this step is reduced (verify.ts).
  const verify = p.kind === 'remote' && apply === undefined && ctx.verifier?.pick() === true;
  try {
    const result = await computeWithDeadline(ctx, p, work, lo, hi, { onDense: verify ? undefined : dense?.arrived, apply });
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
    dense?.arrived(); // a local pool's dense part is in when all of it is
    return result;
  } catch (err) {
    // Once `p` has failed or been cancelled it writes nothing more; whoever takes over will.
    dense?.revoked();
    if (!(err instanceof LateError) || p.lateStreak >= MAX_CONSECUTIVE_LATE) ctx.membership.remove(p);
    p.failures++;
    const next = await ctx.membership.replacement(ctx.url, p);
    ctx.log(`${p.id} ${(err as Error).message} (step ${work.globalStep}); microbatches [${lo},${hi}) go to ${next.id}`, {
      event: 'reassigned',
      worker: p.id,
      to: next.id,
      step: work.globalStep,
    });
    return runRange(ctx, next, work, lo, hi, dense);
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
  // A worker this whole step was preassigned to (with the step before) computes it: whoever joined since takes part from
  // the next step. Otherwise a participant late in recent steps gets a smaller share: its threads
  // halved per late step.
  const preassigned = members.find((p) => p.preassigned(globalStep));
  const ranges = preassigned ? members.map((p) => (p === preassigned ? ([0, n] as const) : undefined)) : splitProportional(n, members.map((p) => p.threads / 2 ** p.lateStreak));
  const lr = learningRate(ctx.schedule, globalStep);
  const assigned = ranges.flatMap((r, i) => (r ? [{ p: members[i], lo: r[0], hi: r[1] }] : []));
  if (mayShard && !preassigned && shardable(ctx, assigned)) {
    const sharded = await trainShardedStep(ctx, work, assigned, lr);
    if (sharded) return sharded;
    return trainStep(ctx, perm, epoch, step, globalStep, false);
  }
  const remotes = assigned.filter((a) => a.p.kind === 'remote').map((a) => a.p);
  // A remote worker computing the whole step alone makes the next weights itself, so it can start
  // the next step at once: its assignment goes with this one while the worker is the only member.
  const alone = ctx.float32Sums && assigned.length === 1 && assigned[0].p.kind === 'remote' ? assigned[0].p : undefined;
  let apply: ComputeOptions['apply'];
  if (alone) {
    const next = members.length === 1 && step + 1 < ctx.schedule.stepsPerEpoch ? stepWork(ctx, perm, epoch, step + 1, globalStep + 1) : undefined;
    apply = { lr, next: next && { work: next, lr: learningRate(ctx.schedule, globalStep + 1) } };
  }
  // The next dense weights go out at once only while a worker still computes: that is what they
  // overlap. When the last dense part came with the last result there is nothing to overlap, and
  // sending them to every worker first would hold up every next assignment (64 simulated workers,
  // `npm run scaling`); they then go with the next assignments, as without early updates.
  const sendEarly = (version: number): void => {
    if (remotes.some((p) => p.computing())) remotes.forEach((p) => p.sendEarlyDense(version));
  };
  const early = ctx.float32Sums && remotes.length > 0 && !alone ? new EarlyDenseUpdate(ctx, n, assigned.map((a) => [a.lo, a.hi] as const), lr, globalStep + 1, sendEarly) : undefined;
  const timed = async (p: Participant, lo: number, hi: number, i: number): Promise<RangeResult & { wallMs: number; onTime: boolean }> => {
    const t0 = performance.now();
    const failuresBefore = p.failures;
    const dense = early && { arrived: () => early.arrived(i), revoked: () => early.revoked(i) };
    const r = await runRange(ctx, p, work, lo, hi, dense, p === alone ? apply : undefined);
    return { ...r, wallMs: performance.now() - t0, onTime: p.failures === failuresBefore };
  };
  const results = await Promise.all(assigned.map((a, i) => timed(a.p, a.lo, a.hi, i)));
  const slowest = results.reduce((a, b) => (b.wallMs > a.wallMs ? b : a));
  const t1 = performance.now();
  const ready = new Set(results.flatMap((r) => r.nodes).map(([lo, hi]) => `${lo}:${hi}`));
  const isReady = (lo: number, hi: number): boolean => ready.has(`${lo}:${hi}`);
  // Gradient semantics: participants return sums over examples; the update uses the batch mean.
  let lossSum: number;
  let total: number;
  let t2: number;
  if (early?.diverged) throw new DivergedError(globalStep);
  if (early?.applied) {
    // The dense layers' part was reduced and applied while the convolutions' was computed.
    reduceInPlace(ctx.slab, 0, n, isReady, { from: 0, to: ctx.split, totals: false });
    lossSum = early.lossSum;
    total = early.count;
    if (!meanInto(ctx.meanGrad, ctx.slab.grads, total, 0, ctx.split)) throw new DivergedError(globalStep);
    t2 = performance.now();
    early.finish();
  } else {
    const batch = batchMean(ctx.slab, n, isReady, ctx.meanGrad);
    if (!batch) throw new DivergedError(globalStep);
    ({ lossSum, count: total } = batch);
    t2 = performance.now();
    ctx.optimizer.apply(ctx.weights, ctx.meanGrad, lr);
  }
  const t3 = performance.now();
  const onTime = results.filter((r) => r.onTime);
  if (onTime.length > 0) ctx.deadline.record(Math.max(...onTime.map((r) => r.wallMs)));
  const timing: StepTiming = {
    step: t3 - started,
    compute: slowest.computeMs,
    transfer: Math.max(0, slowest.wallMs - slowest.computeMs),
    reduce: t2 - t1,
    optimizer: t3 - t2,
  };
  return { lossSum, count: total, timing };
}
