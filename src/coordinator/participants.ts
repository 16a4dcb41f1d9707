// Everyone who computes gradients, behind one interface: the coordinator's own thread pool and
// each remote worker. Membership changes (joins, departures) take effect between steps; a
// participant that fails during a step has its range recomputed by another one.
import type { ComputePool } from '../compute/pool.js';
import type { RangeTask } from '../compute/types.js';
import { computeRange, queueStep, type QueuedStep, type RangeResult, type StepUpdateTask } from '../compute/range.js';
import type { Slab } from '../reduce/ordered-sum.js';
import { epochPositions } from '../data/sampler.js';
import type { WeightsPart } from '../protocol/messages.js';
import { LenetError } from '../errors.js';
import type { ParticipantView } from '../metrics/state.js';
import type { Log } from '../metrics/log.js';
import { StopRequest } from './stop.js';

/** Nobody is left (or came) to compute gradients within --worker-wait-timeout. */
export class NoWorkersError extends LenetError {
  constructor(url: string, timeoutMs: number) {
    super(
      'LENET_ERR_NO_WORKERS',
      `no worker to compute gradients joined at ${url} within ${Math.round(timeoutMs / 1000)} s; ` +
        `start workers with 'lenet-worker join ${url}', give the coordinator --threads, or raise --worker-wait-timeout`,
      7,
    );
  }
}

/** What every participant needs to know about the current step. */
export interface StepWork {
  globalStep: number;
  epoch: number;
  /** Microbatches in the step (leaves of its reduction tree). */
  microbatches: number;
  microbatch: number;
  /** The epoch's permutation and where this step's batch begins in it. */
  perm: Uint32Array;
  start: number;
  count: number;
}

/** How a participant computes a range, beyond which microbatches. */
export interface ComputeOptions {
  /**
   * Called once the dense layers' part of every sum (and the losses and counts) is in, before the
   * rest: the step reduces and updates the dense layers while the convolutions' backward pass
   * still runs.
   */
  onDense?: () => void;
  /**
   * Remote only, for the whole step: the worker applies the optimizer itself with learning rate
   * `lr` and so makes the next weights (docs/design.md, "A worker computing whole steps alone").
   */
  apply?: { lr: number };
  /**
   * The range is the whole step: make its update too where the participant shares the
   * coordinator's memory (the local pool's threads, a shard each); RangeResult.updated then
   * says it did, and `onDense` is not called (the step would update the dense layers twice).
   */
  update?: StepUpdateTask;
  /**
   * With a whole step: the next step of the epoch, whole, with learning rate `lr`. A participant
   * that makes this step's update itself (`apply`, `update`) starts on it as soon as it has, and
   * it is then its (`preassigned`); one that does not ignores it.
   */
  next?: { work: StepWork; lr: number };
}

export interface Participant {
  readonly id: string;
  readonly kind: 'local' | 'remote';
  readonly name: string;
  readonly threads: number;
  /** Microbatches computed since the counter was last reset (per epoch). */
  microbatchesDone: number;
  /** Consecutive steps this participant missed the deadline (its share halves per late step). */
  lateStreak: number;
  lateTotal: number;
  /** Ranges it failed (disconnect, bad result, late) over the run. */
  failures: number;
  /**
   * Give up on the step's range; results for it are ignored from now on. Only participants that
   * can miss the step deadline are ever asked (remote ones: the local pool is not raced).
   */
  cancel(step: number): void;
  /**
   * Disconnect, logging why: too late too often, or a result that recomputation did not
   * reproduce (it may not join again). Never asked of the local pool, which is neither raced
   * nor checked.
   */
  drop(reason: string, cause: 'late' | 'wrong_result'): void;
  /** A row of the dashboard's participants table. */
  view(): ParticipantView;
  /**
   * Computes microbatches [lo,hi) of the step and leaves the sums of the range's maximal subtrees
   * in the coordinator's slab. Rejects if the participant fails; the caller then reassigns.
   */
  compute(work: StepWork, lo: number, hi: number, opts?: ComputeOptions): Promise<RangeResult>;
  /** This whole step was assigned to it with the step before (ComputeOptions.next); it must be its. */
  preassigned(step: number): boolean;
  /**
   * Part `part` of the weights of `version`, updated before the step ends (step-update.ts): sent
   * at once if the participant does not hold it (the local pool shares the coordinator's memory).
   */
  publish(version: number, part: WeightsPart): void;
  /** Some results of its current range are not in yet, and will come over a link. */
  computing(): boolean;
}

/** Leaves [lo,hi) of a step as a range task: their sample indices, epoch positions and sizes. */
export function rangeTask(work: StepWork, lo: number, hi: number): RangeTask {
  const from = work.start + lo * work.microbatch;
  const to = work.start + Math.min(hi * work.microbatch, work.count);
  const sizes: number[] = [];
  for (let j = lo; j < hi; j++) sizes.push(Math.min(work.microbatch, work.count - j * work.microbatch));
  return {
    weightsVersion: work.globalStep,
    epoch: work.epoch,
    microbatches: work.microbatches,
    lo,
    hi,
    samples: work.perm.slice(from, to),
    positions: epochPositions(from, to - from),
    sizes,
  };
}

export class LocalParticipant implements Participant {
  readonly id = 'local';
  readonly kind = 'local';
  readonly name = 'coordinator threads';
  microbatchesDone = 0;
  lateStreak = 0;
  lateTotal = 0;
  failures = 0;
  /** The next step whole, queued on the threads behind the one they are on (ComputeOptions.next). */
  private queued: QueuedStep | undefined;

  /**
   * `earlyFrom`: where the dense layers' parameters start in the flat weights (denseOffset), when
   * their sums are to be handed over before the convolutions' backward pass, so that the step
   * reduces and updates them meanwhile. That pays only where a core is free for it: with a thread
   * on every core, the coordinator's update slowed the threads by more than it saved (onnx, 2
   * threads on 2 cores: 3-6% fewer samples/s; 1 thread: 9-11% more). Without it, the threads
   * make the update of a step they compute whole themselves, each one shard of it, where the
   * pool was given the optimizer's state (ComputePool.updates).
   */
  constructor(
    private readonly pool: ComputePool,
    private readonly slab: Slab,
    private readonly earlyFrom: number | undefined,
  ) {}

  get threads(): number {
    return this.pool.threads;
  }

  view(): ParticipantView {
    return { id: this.id, kind: 'local', name: this.name, threads: this.threads, microbatches: this.microbatchesDone, lastHeartbeatMsAgo: null, late: 0, failures: this.failures, state: 'active' };
  }

  async compute(work: StepWork, lo: number, hi: number, opts: ComputeOptions = {}): Promise<RangeResult> {
    const { onDense } = opts;
    const split = this.earlyFrom;
    const early = onDense && split !== undefined ? { split, onDense: () => onDense() } : undefined;
    const update = split === undefined && this.pool.updates ? opts.update : undefined;
    const queued = this.queued;
    this.queued = undefined;
    // The step queued here with the one before, unless the trainer gives another one: the
    // queued one is then given up before it touches anything, and this one computed afresh.
    const taken = queued && update && queued.step === work.globalStep && sameUpdate(queued.update, update) ? queued : undefined;
    if (queued && !taken) await queued.abandon();
    let result: RangeResult;
    if (update) {
      const step = taken ?? queueStep(this.pool, this.slab, rangeTask(work, lo, hi), update);
      const next = opts.next;
      if (next) this.queued = queueStep(this.pool, this.slab, rangeTask(next.work, 0, next.work.microbatches), { lr: next.lr, t: update.t + 1, examples: next.work.count });
      try {
        result = await step.go();
      } catch (err) {
        await this.queued?.abandon();
        this.queued = undefined;
        throw err;
      }
    } else {
      result = await computeRange(this.pool, this.slab, rangeTask(work, lo, hi), early, false);
    }
    this.microbatchesDone += hi - lo;
    return result;
  }

  // The pool shares the coordinator's memory: nothing is published to it, and nothing of it is
  // in flight over a link. It is never raced against the deadline, so never cancelled or dropped.
  cancel(): void {}

  drop(): void {}

  preassigned(step: number): boolean {
    return this.queued?.step === step;
  }

  publish(): void {}

  computing(): boolean {
    return false;
  }
}

function sameUpdate(a: StepUpdateTask, b: StepUpdateTask): boolean {
  return a.lr === b.lr && a.t === b.t && a.examples === b.examples;
}

/**
 * Who takes part. Joins are queued and become members at the next step boundary; failures
 * remove a member at once. `waitFor` blocks the trainer until enough remote workers are in.
 */
export class Membership {
  private members: Participant[] = [];
  private joining: Participant[] = [];
  private waiters: (() => void)[] = [];
  /** Per-participant counters that survive departures, for the epoch record. */
  readonly seen = new Map<string, Participant>();

  constructor(
    private readonly log: Log,
    /** How long to wait for a participant before giving up. */
    private readonly waitTimeoutMs: number,
    /** A stop wakes every wait, which then throws StoppedError. */
    private readonly stop: StopRequest = new StopRequest(),
  ) {
    stop.onRequest(() => this.waiters.splice(0).forEach((wake) => wake()));
  }

  add(p: Participant): void {
    this.joining.push(p);
    this.seen.set(p.id, p);
    for (const wake of this.waiters.splice(0)) wake();
  }

  remove(p: Participant): void {
    this.members = this.members.filter((m) => m !== p);
    this.joining = this.joining.filter((m) => m !== p);
  }

  /** Members for the next step: everyone who joined since the last call takes part from now on. */
  forStep(): Participant[] {
    if (this.joining.length > 0) {
      this.members.push(...this.joining);
      this.joining = [];
    }
    return [...this.members];
  }

  /** Someone has joined since the last step began: the next step's members will differ. */
  joinsPending(): boolean {
    return this.joining.length > 0;
  }

  remoteCount(): number {
    return [...this.members, ...this.joining].filter((p) => p.kind === 'remote').length;
  }

  /**
   * Resolves once at least `remotes` remote workers (and at least one participant) are in;
   * throws NoWorkersError after the wait timeout, StoppedError when a stop is requested.
   */
  async waitFor(remotes: number, url: string): Promise<void> {
    const deadline = Date.now() + this.waitTimeoutMs;
    let announced = false;
    while (this.remoteCount() < remotes || this.members.length + this.joining.length === 0) {
      this.stop.check();
      if (!announced) {
        const need = Math.max(remotes - this.remoteCount(), 1);
        this.log(`waiting up to ${Math.round(this.waitTimeoutMs / 1000)} s for ${need} more worker(s) to join at ${url} (lenet-worker join ${url})`);
        announced = true;
      }
      const left = deadline - Date.now();
      if (left <= 0) throw new NoWorkersError(url, this.waitTimeoutMs);
      let timer: NodeJS.Timeout | undefined;
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve);
        timer = setTimeout(resolve, left);
      });
      clearTimeout(timer);
    }
  }

  /** A participant to take over `failed`'s range: the local pool first, else the fastest other member. */
  async replacement(url: string, failed: Participant): Promise<Participant> {
    for (;;) {
      const others = this.forStep().filter((p) => p !== failed);
      const local = others.find((p) => p.kind === 'local');
      if (local) return local;
      if (others.length > 0) return others.sort((a, b) => a.lateStreak - b.lateStreak || b.threads - a.threads)[0];
      if (this.members.includes(failed)) return failed; // late but still the only one: let it finish
      await this.waitFor(0, url);
    }
  }

  resetCounters(): void {
    for (const p of this.seen.values()) p.microbatchesDone = 0;
  }
}
