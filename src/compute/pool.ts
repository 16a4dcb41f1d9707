// The coordinator's local compute: a piscina pool of threads sharing pixels, weights and the
// gradient slab with the coordinator through SharedArrayBuffers.
//
// Piscina starts the threads and supervises them; once they are up, each thread serves one
// long-running task that takes its work from a mailbox: the task itself comes over a
// MessagePort, read synchronously (receiveMessageOnPort), and a shared counter per direction
// says that something is there (Atomics.wait in the thread, Atomics.waitAsync here). A step
// hands each thread a task and takes its reply back, and with the onnx backend at batch 64
// those hand-offs are a tenth of the step: piscina's own task queue and port events made them
// slower than the threads' wake-ups (`node scripts/bench-pool.mjs` shows what is left of them).
import { MessageChannel, receiveMessageOnPort, type MessagePort } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';
import { Piscina } from 'piscina';
import { THREAD_YOUNG_GENERATION_MB } from '../constants.js';
import type { BackendName } from '../backend/select.js';
import type { ModelSpec } from '../model/architectures.js';
import type { GradDType } from '../reduce/float16.js';
import type { Slab } from '../reduce/ordered-sum.js';
import type { OptimizerName } from '../optim/optimizer.js';
import { giveUp } from './barrier.js';
import { untilAtLeast, waitAsync } from './atomics.js';
import { letGoCount, newDenseFlag, type DenseFlag } from './dense-flag.js';
import type { EvalReply, EvalTask, GradientReply, GradientTask, MailboxReply, ServeTask, ServedTask, ThreadInit } from './types.js';

/** How long close() lets a thread finish the task it is on. */
const CLOSE_GRACE_MS = 1000;

const THREAD_FILE = fileURLToPath(new URL('./thread.js', import.meta.url));

/** What a pool's threads share with their owner. */
export interface PoolOptions {
  spec: ModelSpec;
  backend: BackendName;
  seed: number;
  distort: boolean;
  train: { images: Uint8Array; labels: Uint8Array };
  /** Test images for evaluation tasks; empty on remote workers. */
  test: { images: Uint8Array; labels: Uint8Array };
  weights: Float32Array;
  slab: Slab;
  gradDType: GradDType;
  /** Set by a remote worker as the dense layers' weights of each version arrive (awaitDense). */
  denseVersion?: DenseFlag;
  /**
   * The coordinator's optimizer state, in shared memory: given it, the threads of a whole step
   * make its update themselves, a shard each, in the weights (GradientTask.update).
   */
  update?: { optimizer: OptimizerName; slots: Record<string, Float32Array> };
}

/** The barrier counts of a planned whole step (ComputePool.planStep, ShardUpdate). */
export interface StepCounts {
  arrivals: number;
  committed: number;
}

/** A whole step planned on the pool: its tasks' outcomes, and the coordinator's part in it. */
export interface PlannedStep<T> {
  settled: Promise<PromiseSettledResult<T>[]>;
  /** The coordinator takes the step: once their sums are in, its threads make the update. */
  take(): Promise<void>;
  /** The step is not taken: its threads still waiting stop, and write nothing more. */
  giveUp(): void;
}

/** Starts a pool of `threads` and waits until every thread has its backend up. */
export async function startPool(threads: number, o: PoolOptions): Promise<ComputePool> {
  const pool = new ComputePool(threads, {
    arch: o.spec.arch,
    activation: o.spec.activation,
    backend: o.backend,
    seed: o.seed,
    distort: o.distort,
    trainImages: o.train.images,
    trainLabels: o.train.labels,
    testImages: o.test.images,
    testLabels: o.test.labels,
    weights: o.weights,
    slabGrads: o.slab.grads,
    slabLoss: o.slab.loss,
    slabCount: o.slab.count,
    slabSlots: o.slab.slots,
    gradDType: o.gradDType,
    signals: new Int32Array(new SharedArrayBuffer(4 * o.slab.slots)),
    denseVersion: o.denseVersion ?? newDenseFlag(),
    mailbox: new Int32Array(new SharedArrayBuffer(8 * threads)),
    update: o.update ? { ...o.update, barrier: new Int32Array(new SharedArrayBuffer(8)) } : null,
  });
  await pool.ready();
  return pool;
}

/** The compute pool's end of one thread's mailbox. */
class Mailbox {
  /** Replies still to come, in the order the tasks went. */
  private readonly pending: { resolve: (r: MailboxReply['ok']) => void; reject: (e: unknown) => void }[] = [];
  private listening = false;
  private repliesSeen = 0;
  private failure: unknown;

  constructor(
    /** [2i]: tasks sent to thread i; [2i+1]: replies it sent. */
    private readonly counters: Int32Array,
    private readonly index: number,
    private readonly port: MessagePort,
    /** The thread's serving task: settles when it stops, or rejects when the thread dies. */
    readonly serving: Promise<unknown>,
  ) {
    serving.then(
      () => this.fail(new Error('compute thread stopped')),
      (err: unknown) => this.fail(err),
    );
  }

  get load(): number {
    return this.pending.length;
  }

  send<R extends MailboxReply['ok']>(task: ServedTask): Promise<R> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    return new Promise<R>((resolve, reject) => {
      this.pending.push({ resolve: resolve as (r: MailboxReply['ok']) => void, reject });
      this.post(task);
      if (!this.listening) void this.listen();
    });
  }

  /** Tells the thread to end its serving task (after the tasks already sent). */
  stop(): void {
    this.post({ type: 'stop' });
  }

  private post(task: ServedTask): void {
    this.port.postMessage(task);
    Atomics.add(this.counters, 2 * this.index, 1);
    Atomics.notify(this.counters, 2 * this.index);
  }

  /** Takes replies as they come while any is due; no wait is left pending once none is. */
  private async listen(): Promise<void> {
    this.listening = true;
    try {
      while (this.pending.length > 0 && this.failure === undefined) {
        await untilAtLeast(this.counters, 2 * this.index + 1, this.repliesSeen + 1);
        for (let got = receiveMessageOnPort(this.port); got; got = receiveMessageOnPort(this.port)) {
          this.repliesSeen++;
          const reply = got.message as MailboxReply;
          const waiter = this.pending.shift();
          if (reply.error !== undefined) waiter?.reject(reply.error);
          else waiter?.resolve(reply.ok);
        }
      }
    } finally {
      this.listening = false;
    }
  }

  private fail(err: unknown): void {
    this.failure = err;
    for (const waiter of this.pending.splice(0)) waiter.reject(err);
    this.port.close();
  }
}

export class ComputePool {
  private readonly piscina: Piscina;
  readonly threads: number;
  private readonly signals: Int32Array;
  private readonly counters: Int32Array;
  private readonly barrier: Int32Array | undefined;
  private readonly denseVersion: DenseFlag;
  private mailboxes: Mailbox[] = [];
  private closing = false;
  /** The barrier count after the last whole step planned (planStep), and how many are in flight. */
  private plannedArrivals = 0;
  private stepsInFlight = 0;
  private lastPlanned: Promise<unknown> = Promise.resolve();

  constructor(threads: number, init: ThreadInit) {
    this.threads = threads;
    this.signals = init.signals;
    this.counters = init.mailbox;
    this.barrier = init.update?.barrier;
    this.denseVersion = init.denseVersion;
    this.piscina = new Piscina({
      filename: THREAD_FILE,
      minThreads: threads,
      maxThreads: threads,
      idleTimeout: Number.MAX_SAFE_INTEGER,
      concurrentTasksPerWorker: 1,
      workerData: init,
      resourceLimits: { maxYoungGenerationSizeMb: THREAD_YOUNG_GENERATION_MB },
    });
  }

  /**
   * Resolves once every thread has initialised its backend and serves its mailbox. One serving
   * task per thread: piscina gives a task to a thread with none running, and these never end
   * on their own.
   */
  async ready(): Promise<void> {
    await Promise.all(Array.from({ length: this.threads }, () => this.piscina.run({ type: 'ready' })));
    this.mailboxes = Array.from({ length: this.threads }, (_, index) => this.serve(index));
  }

  /**
   * Mailbox `index`, served by a thread of its own. If that thread dies, the tasks it held fail
   * (their callers recompute them) and the mailbox is served again by the thread piscina starts
   * in its place.
   */
  private serve(index: number): Mailbox {
    Atomics.store(this.counters, 2 * index, 0);
    Atomics.store(this.counters, 2 * index + 1, 0);
    const { port1, port2 } = new MessageChannel();
    const task: ServeTask = { type: 'serve', index, port: port2 };
    const serving = this.piscina.run(task, { transferList: [port2] as never });
    serving.catch(() => {
      if (!this.closing) this.mailboxes[index] = this.serve(index);
    });
    return new Mailbox(this.counters, index, port1, serving);
  }

  /** Whether whole steps' tasks may carry their update (PoolOptions.update). */
  get updates(): boolean {
    return this.barrier !== undefined;
  }

  /**
   * Plans the next whole step whose threads make its update (barrier.ts), and posts its tasks
   * with `post`, given its barrier counts: `arrivals` once every thread's sums are in and the
   * coordinator has taken the step (take()), `committed` once every thread has updated its shard.
   * Steps are counted one after another as they are planned, so a step's tasks may wait in the
   * mailboxes behind the one before; once none is in flight, counting starts again from what the
   * barrier holds, past any count given up on. A task that fails gives the step up.
   */
  planStep<T>(threads: number, post: (counts: StepCounts) => Promise<T>[]): PlannedStep<T> {
    if (!this.barrier) throw new Error('this pool makes no updates');
    const barrier = this.barrier;
    if (this.stepsInFlight === 0) {
      this.plannedArrivals = Math.max(Atomics.load(barrier, 0), Atomics.load(barrier, 1));
      Atomics.store(barrier, 0, this.plannedArrivals);
    }
    const arrivals = this.plannedArrivals + threads + 1;
    const counts = { arrivals, committed: arrivals + threads };
    this.plannedArrivals = counts.committed;
    this.stepsInFlight++;
    const tasks = post(counts);
    tasks.forEach((t) => t.catch(() => giveUp(barrier, counts.committed)));
    const settled = Promise.allSettled(tasks).finally(() => this.stepsInFlight--);
    const before = this.lastPlanned;
    this.lastPlanned = settled;
    return {
      settled,
      // Counted once the step before has answered: its threads wait for counts of their own.
      take: async () => {
        await before;
        Atomics.add(barrier, 0, 1);
        Atomics.notify(barrier, 0);
      },
      giveUp: () => giveUp(barrier, counts.committed),
    };
  }

  /** The mailbox with the fewest tasks still to answer (the first such). */
  private idlest(): Mailbox {
    return this.mailboxes.reduce((a, b) => (b.load < a.load ? b : a));
  }

  /**
   * Runs a gradient task on the thread with the fewest tasks to answer, or on thread `thread`:
   * the tasks of one step that makes its update wait for each other, so each needs a thread of
   * its own.
   */
  gradients(task: GradientTask, thread?: number): Promise<GradientReply> {
    if (task.early) Atomics.store(this.signals, task.lo, 0);
    const stamped = task.awaitDense ? { ...task, letGoSeen: letGoCount(this.denseVersion) } : task;
    return (thread === undefined ? this.idlest() : this.mailboxes[thread]).send<GradientReply>(stamped);
  }

  /** Resolves once the thread running the `early` task that starts at slot `lo` has raised its flag. */
  async denseReady(lo: number): Promise<void> {
    const wait = waitAsync(this.signals, lo, 0);
    if (wait.async) await wait.value;
  }

  evaluate(task: EvalTask): Promise<EvalReply> {
    return this.idlest().send<EvalReply>(task);
  }

  /** Stops the threads; one still computing after CLOSE_GRACE_MS is terminated. */
  async close(): Promise<void> {
    this.closing = true;
    // A whole step planned but never taken waits for the coordinator: it is given up.
    if (this.stepsInFlight > 0 && this.barrier) giveUp(this.barrier, this.plannedArrivals);
    for (const m of this.mailboxes) m.stop();
    let timer: NodeJS.Timeout | undefined;
    const grace = new Promise((resolve) => (timer = setTimeout(resolve, CLOSE_GRACE_MS)));
    await Promise.race([Promise.allSettled(this.mailboxes.map((m) => m.serving)), grace]);
    clearTimeout(timer);
    await this.piscina.close({ force: true });
  }
}
