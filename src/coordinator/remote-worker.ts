// The coordinator's side of one connected, authenticated remote worker.
//
// Lifecycle (the handshake before STARTING lives in server.ts):
//
//   STARTING --Ready and a ProbeResult with the coordinator's bits--> ACTIVE --(assignment sent)-->
//   BUSY --(every subtree received)--> ACTIVE;  STARTING --another probe digest--> Reject(EXACTNESS)
//     |                            |
//     +---- close / heartbeat timeout / protocol violation ----> CLOSED (a pending range is
//                                                               rejected and reassigned)
//
// A worker computing whole steps alone applies the optimizer itself (Assignment.apply) and is
// sent the next step's assignment with this one's; that one waits in `preassignment` until its step.
// In a sharded step (sharded-step.ts) it owns a parameter shard: BUSY until it has reported its
// range (RangeDone) and its shard's mean gradient (ShardUpdate), or the step is aborted.
import type { WebSocket } from 'ws';
import { HEARTBEAT_INTERVAL_MS, HEARTBEAT_TIMEOUT_MS, IMAGE_PIXELS } from '../constants.js';
import type { Mnist } from '../data/mnist.js';
import { decode, encode, encodeTensorFrame } from '../protocol/codec.js';
import type { SharedFrame } from '../protocol/frames.js';
import { CLOSE_BAD_MESSAGE, CLOSE_HEARTBEAT_TIMEOUT, CLOSE_NORMAL, CLOSE_NOT_EXACT, CLOSE_TOO_SLOW, CLOSE_WRONG_RESULT, ProtocolError } from '../protocol/errors.js';
import { RejectReason, notAPart, tensorPart, type Message, type RangeDoneMessage, type ResultMessage, type ShardUpdateMessage, type WeightsPart } from '../protocol/messages.js';
import { stepNodes, type Shard } from '../reduce/shards.js';
import type { GradDType } from '../reduce/float16.js';
import { coverNodes, leaves, slot, type Slab, type TreeNode } from '../reduce/ordered-sum.js';
import type { RangeResult } from '../compute/range.js';
import type { RangeTask } from '../compute/types.js';
import { rangeTask, type ComputeOptions, type Participant, type StepWork } from './participants.js';
import type { ParticipantView } from '../metrics/state.js';
import type { Log } from '../metrics/log.js';

export enum RemoteState {
  /** Welcomed; its threads are starting. Not yet a member: it gets no work. */
  STARTING = 'starting',
  ACTIVE = 'active',
  BUSY = 'busy',
  CLOSED = 'closed',
}

interface Pending {
  step: number;
  /** The range it was assigned, as sent. */
  task: RangeTask;
  promise: Promise<RangeResult>;
  expected: Map<string, { node: TreeNode; examples: number }>;
  /** Parameter ranges [from, to) received so far, per subtree. */
  parts: Map<string, [number, number][]>;
  /** Each subtree's loss sum as its first part gave it (later parts must agree). */
  losses: Map<string, number>;
  /** Subtrees whose dense layers' values have come. */
  dense: Set<string>;
  /** Called once every subtree's dense layers' values are in the slab. */
  onDense: (() => void) | undefined;
  /** Subtrees whose every parameter has come. */
  received: Set<string>;
  resolve: (r: RangeResult) => void;
  reject: (e: Error) => void;
}

/** A deferred result: its promise, and how to settle it. */
interface Deferred<T> {
  promise: Promise<T>;
  resolve: (value: T) => void;
  reject: (err: Error) => void;
}

function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (err: Error) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  promise.catch(() => undefined); // a step given up may leave no one waiting: not unhandled
  return { promise, resolve, reject };
}

/** A range task as an Assignment names it: its samples are the epoch's permutation from `start` on. */
function onWire({ samples: _samples, positions, leavesOnly: _leavesOnly, ...task }: RangeTask): Omit<RangeTask, 'samples' | 'positions' | 'leavesOnly'> & { start: number } {
  return { ...task, start: positions[0] };
}

/** The results a range task must bring: its `nodes`, by `lo:hi`, with the samples each sums. */
function expectedNodes(task: RangeTask, nodes: TreeNode[]): Map<string, { node: TreeNode; examples: number }> {
  const expected = new Map<string, { node: TreeNode; examples: number }>();
  for (const node of nodes) {
    let examples = 0;
    for (let j = node[0]; j < node[1]; j++) examples += task.sizes[j - task.lo];
    expected.set(`${node[0]}:${node[1]}`, { node, examples });
  }
  return expected;
}

/** The plan of a sharded step, as a RemoteWorker needs it. */
export interface ShardedWork {
  /** The Peers plan's number and its encoded frame. */
  plan: number;
  peersFrame: Uint8Array;
  /** This worker's shard, and how many shards the plan has. */
  shard: Shard;
  shards: number;
  bounds: number[];
  lr: number;
}

interface ShardedPending {
  step: number;
  lo: number;
  hi: number;
  shard: Shard;
  /** The plan's shards, and the subtrees of the whole step: what its digests must number. */
  shards: number;
  stepNodes: number;
  nodes: Map<string, { node: TreeNode; examples: number }>;
  done: Deferred<RangeDoneMessage>;
  update: Deferred<ShardUpdateMessage>;
}

export interface RemoteWorkerOptions {
  workerId: number;
  name: string;
  address: string;
  /** A browser tab (the /join page), shown as its own kind. */
  browser: boolean;
  threads: number;
  /** Where it accepts peer links for sharded steps; empty: it takes no part in them. */
  peerUrl: string;
  sendPixels: boolean;
  gradDType: GradDType;
  slab: Slab;
  data: Mnist;
  /**
   * Where a result may be split in two parts (denseOffset of the model): a worker sends values
   * [split, width) and [0, split) of a subtree's sum, or all of it at once.
   */
  partSplit: number;
  /**
   * One of the two parts of a version's weights, the convolutions' or the dense layers', encoded
   * once (when first asked for) and shared by all workers; call `sent` when written.
   */
  weightsFrame: (version: number, part: 'conv' | 'dense') => SharedFrame;
  /** The OptimizerState frame of the coordinator's optimizer, which is at `version` when asked. */
  optimizerFrame: (version: number) => Uint8Array;
  log: Log;
  /** A frame from this worker was refused (for /metrics), with a short reason. */
  onViolation: (reason: string) => void;
  /** Bytes of WebSocket payload to and from every worker, counted here (the coordinator's link). */
  traffic: { sent: number; received: number };
  /** The worker's threads are up: it can take part from the next step. */
  onReady: (worker: RemoteWorker) => void;
  /** It sent a result that recomputation did not reproduce: it may not join this run again. */
  onEject: (worker: RemoteWorker) => void;
  /** The join probe (probe.ts): its frame goes out at once; the worker's digest must be `digest`. */
  probe: { frame: Uint8Array; digest: Uint8Array };
  /** What the coordinator computes with, for the refusal of a worker that computes otherwise. */
  computesWith: string;
  /** What the worker says it computes with (Hello.backend, Hello.package_version). */
  says: string;
  onClose: (worker: RemoteWorker, reason: string) => void;
}

export class RemoteWorker implements Participant {
  readonly kind = 'remote';
  readonly id: string;
  /** The number the coordinator gave it (its id is `worker-<workerId>`). */
  readonly workerId: number;
  readonly name: string;
  readonly threads: number;
  microbatchesDone = 0;
  lateStreak = 0;
  lateTotal = 0;
  failures = 0;
  state = RemoteState.STARTING;
  lastSeenMs = Date.now();
  /**
   * The versions of the convolutions' and the dense layers' weights the worker holds or is about
   * to (sent, or to be made by its own update), and of its optimizer state; -1: none.
   */
  private sentConv = -1;
  private sentDense = -1;
  private optimizerAt = -1;
  /**
   * 0: its optimizer state at optimizerAt is whole (sent); else that of the shard it owned in this
   * Peers plan, all it updated.
   */
  private optimizerPlan = 0;
  /** The Peers plan it holds; 0: none. */
  private planSent = 0;
  /**
   * The version it made with its peers in its last sharded step (of plan planSent), while the
   * coordinator has sent it no weights since; -1 otherwise.
   */
  private peersMade = -1;
  /** Its sharded steps in flight: the current one, and the next when planned with it (`ahead`). */
  private readonly sharded = new Map<number, ShardedPending>();
  /** Its threads are up (Ready), and its probe gave the coordinator's bits: then it is ACTIVE. */
  private readySeen = false;
  private probed = false;
  /** After a cancelled step the worker may hold any version: everything goes again, dense first. */
  private unsure = false;
  private pending: Pending | undefined;
  /** The next step's assignment, preassigned to a worker that applies its updates itself. */
  private preassignment: Pending | undefined;
  private queue: Promise<unknown> = Promise.resolve();
  private readonly heartbeat: NodeJS.Timeout;
  /** Where results are decoded: each is validated and copied into the slab before the next frame. */
  private readonly decoded: Float32Array;

  constructor(
    private readonly ws: WebSocket,
    private readonly opts: RemoteWorkerOptions,
  ) {
    this.workerId = opts.workerId;
    this.id = `worker-${opts.workerId}`;
    this.name = `${opts.name || 'worker'}@${opts.address}`;
    this.threads = opts.threads;
    this.decoded = new Float32Array(opts.slab.width);
    ws.on('message', (data, isBinary) => this.onFrame(data as Buffer, isBinary));
    ws.on('close', (code, reason) => this.onSocketClose(code, reason.toString()));
    ws.on('error', (err) => this.close(CLOSE_BAD_MESSAGE, `socket error: ${err.message}`));
    this.heartbeat = setInterval(() => this.onHeartbeatTimer(), HEARTBEAT_INTERVAL_MS);
    this.send(opts.probe.frame);
  }

  view(): ParticipantView {
    return {
      id: this.id,
      kind: this.opts.browser ? 'browser' : 'remote',
      name: this.name,
      threads: this.threads,
      microbatches: this.microbatchesDone,
      lastHeartbeatMsAgo: Date.now() - this.lastSeenMs,
      late: this.lateTotal,
      failures: this.failures,
      state: this.state,
    };
  }

  get peerUrl(): string {
    return this.opts.peerUrl;
  }

  /**
   * Starts its range [lo, hi) of a sharded step, owning `w.shard`: sends what it lacks of the plan,
   * the optimizer state and the weights of the step's version, then the assignment. `done` resolves
   * with its RangeDone, `update` with its shard's ShardUpdate; both reject if it leaves or the step
   * is aborted. `ahead`: the step is planned during the one before, which makes its weights and
   * its shard's optimizer state with the same plan at the worker: the assignment goes alone.
   * `fromPeers`: the step's weights are those the worker made with its peers, not the coordinator's.
   */
  computeSharded(work: StepWork, lo: number, hi: number, w: ShardedWork, ahead = false): { done: Promise<RangeDoneMessage>; update: Promise<ShardUpdateMessage>; fromPeers: boolean } {
    const v = work.globalStep;
    const done = deferred<RangeDoneMessage>();
    const update = deferred<ShardUpdateMessage>();
    const ready = ahead ? this.state === RemoteState.BUSY && this.sharded.has(v - 1) && this.planSent === w.plan : this.state === RemoteState.ACTIVE;
    if (!ready) {
      done.reject(new Error(`${this.id} is ${this.state}${ahead ? ' without the step before' : ''}`));
      update.reject(new Error(`${this.id} is ${this.state}${ahead ? ' without the step before' : ''}`));
      return { done: done.promise, update: update.promise, fromPeers: false };
    }
    const task = rangeTask(work, lo, hi);
    const nodes = expectedNodes(task, coverNodes(work.microbatches, lo, hi));
    const stepNodeCount = stepNodes(work.microbatches, w.bounds).length;
    this.sharded.set(v, { step: v, lo, hi, shard: w.shard, shards: w.shards, stepNodes: stepNodeCount, nodes, done, update });
    this.state = RemoteState.BUSY;
    const assign = (): void => {
      const { pixels, labels } = this.pixelsOf(task);
      this.send(encode({ type: 'assignment', step: v, ...onWire(task), pixels, labels, apply: false, lr: w.lr, sharded: true, plan: w.plan, bounds: w.bounds, examples: work.count }));
    };
    if (ahead) {
      assign();
      return { done: done.promise, update: update.promise, fromPeers: true };
    }
    this.together(() => {
      if (this.planSent !== w.plan) {
        this.send(w.peersFrame);
        // Weights made by the owners of another plan: the coordinator's go instead, so that each
        // shard of what it computes with came from one known owner or from the coordinator.
        if (this.peersMade === v) this.unsure = true;
      }
      this.planSent = w.plan;
      if (this.optimizerAt !== v || (this.optimizerPlan !== 0 && this.optimizerPlan !== w.plan)) {
        this.send(this.opts.optimizerFrame(v));
        this.optimizerAt = v;
        this.optimizerPlan = 0;
      }
      if (this.unsure || this.sentDense !== v) this.sendWeights(v, 'dense');
      if (this.unsure || this.sentConv !== v) this.sendWeights(v, 'conv');
      this.unsure = false;
      this.sentConv = v;
      this.sentDense = v;
      assign();
    });
    return { done: done.promise, update: update.promise, fromPeers: this.peersMade === v };
  }

  /** Its sharded step is done: it holds version `next`, made with its peers, and its shard's optimizer state of `plan`. */
  finishSharded(next: number, plan: number): void {
    const p = this.sharded.get(next - 1);
    if (!p) return;
    this.sharded.delete(next - 1);
    if (this.state === RemoteState.BUSY && this.sharded.size === 0) this.state = RemoteState.ACTIVE;
    this.microbatchesDone += p.hi - p.lo;
    this.sentConv = next;
    this.sentDense = next;
    this.peersMade = next;
    this.optimizerAt = next;
    this.optimizerPlan = plan;
  }

  /**
   * The sharded step is given up, and with it the next one if it was planned ahead: the worker
   * drops them, and may hold any version now.
   */
  abortSharded(step: number, reason: string): void {
    const steps = [...this.sharded.keys()].filter((s) => s >= step).sort((a, b) => a - b);
    if (steps.length === 0) return;
    for (const s of steps) {
      const p = this.sharded.get(s)!;
      this.sharded.delete(s);
      p.done.reject(new Error(`sharded step ${s} aborted: ${reason}`));
      p.update.reject(new Error(`sharded step ${s} aborted: ${reason}`));
      this.send(encode({ type: 'abort', step: s }));
    }
    if (this.state === RemoteState.BUSY && this.sharded.size === 0) this.state = RemoteState.ACTIVE;
    this.unsure = true;
    this.optimizerAt = -1;
  }

  /** A partial sum of this worker's shard, from the coordinator's own threads. */
  sendPartial(msg: ResultMessage): void {
    this.send(encodeTensorFrame(msg, 'float32'));
  }

  describe(): string {
    return `${this.id} (${this.name}, ${this.threads} thread${this.threads === 1 ? '' : 's'})`;
  }

  /** Ranges are computed one at a time: a second range (a reassignment) waits for the first. */
  compute(work: StepWork, lo: number, hi: number, opts: ComputeOptions = {}): Promise<RangeResult> {
    const run = this.queue.then(() => this.computeNow(work, lo, hi, opts));
    this.queue = run.catch(() => undefined);
    return run;
  }

  preassigned(step: number): boolean {
    return this.preassignment?.step === step;
  }

  /** Some of the results of its current range are not in yet. */
  computing(): boolean {
    return this.pending !== undefined && this.pending.received.size < this.pending.expected.size;
  }

  /**
   * Part `part` of the weights of `version`, updated before the step that needs them ends
   * (step-update.ts): sent now, while the worker still computes (the dense layers' part during
   * its convolutions' backward pass). Once per version and part.
   */
  publish(version: number, part: WeightsPart): void {
    if (this.state !== RemoteState.ACTIVE && this.state !== RemoteState.BUSY) return;
    if (part !== 'conv' && this.sentDense !== version) {
      this.sentDense = version;
      this.sendWeights(version, 'dense');
    }
    if (part !== 'dense' && this.sentConv !== version) {
      this.sentConv = version;
      this.sendWeights(version, 'conv');
    }
  }

  private computeNow(work: StepWork, lo: number, hi: number, opts: ComputeOptions): Promise<RangeResult> {
    if (this.state !== RemoteState.ACTIVE) return Promise.reject(new Error(`${this.id} is ${this.state}`));
    const v = work.globalStep;
    const apply = opts.apply;
    let pending: Pending;
    const pre = this.preassignment;
    this.preassignment = undefined;
    if (pre?.step === v) {
      // Sent with the step before; its results may be in already.
      if (pre.task.lo !== lo || pre.task.hi !== hi || !apply) throw new Error(`step ${v} was preassigned to ${this.id} whole; the trainer must keep it so`);
      pending = pre;
      pending.onDense = opts.onDense;
    } else {
      pending = this.newPending(v, rangeTask(work, lo, hi), opts.onDense);
    }
    if (pending.received.size < pending.expected.size) {
      this.pending = pending;
      this.state = RemoteState.BUSY;
    } else {
      this.microbatchesDone += hi - lo;
    }
    // Not its step: the trainer gives a step preassigned to no one else (a bug otherwise).
    if (pre && pending !== pre) pre.reject(new Error(`step ${pre.step} was preassigned to ${this.id}, which was given step ${v}`));
    const next = apply && opts.next && { step: opts.next.work.globalStep, task: rangeTask(opts.next.work, 0, opts.next.work.microbatches), lr: opts.next.lr };
    if (next) {
      this.preassignment = this.newPending(next.step, next.task, undefined);
      this.preassignment.promise.catch(() => undefined); // rejected with no one waiting yet: not unhandled
    }
    let denseLate = false;
    this.together(() => {
      if (pending !== pre) denseLate = this.sendAssignment(v, pending.task, apply?.lr);
      if (next) this.sendAssignment(next.step, next.task, next.lr);
    });
    if (denseLate) this.sendWeights(v, 'dense');
    return pending.promise;
  }

  private newPending(step: number, task: RangeTask, onDense: (() => void) | undefined): Pending {
    const { lo, hi } = task;
    // float16 results come per microbatch (half-precision values cannot be pre-summed exactly).
    const expected = expectedNodes(task, this.opts.gradDType === 'float16' ? leaves(lo, hi) : coverNodes(task.microbatches, lo, hi));
    let resolve!: (r: RangeResult) => void;
    let reject!: (e: Error) => void;
    const promise = new Promise<RangeResult>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    return { step, task, promise, expected, parts: new Map(), losses: new Map(), dense: new Set(), onDense, received: new Set(), resolve, reject };
  }

  /**
   * The assignment of [lo, hi) of a step, after the weights (and optimizer state) it needs that the
   * worker does not hold. The convolutions' weights go before it, the dense layers' after it (true
   * is returned: the caller sends them once this write is out), so the worker starts the forward
   * pass while the larger part is on its way, unless the worker may hold newer dense weights (sent
   * early, or after a cancelled step): then they go first, as they do for an apply assignment,
   * which any later weights would void. `applyLr`: the worker applies the update itself and will
   * hold the next version.
   */
  private sendAssignment(v: number, task: RangeTask, applyLr: number | undefined): boolean {
    const { pixels, labels } = this.pixelsOf(task);
    const apply = applyLr !== undefined;
    // A plain step computes on the coordinator's weights, never on those its peers made.
    const peersMade = this.peersMade === v;
    const conv = this.unsure || peersMade || this.sentConv !== v;
    const dense = this.unsure || peersMade || this.sentDense !== v;
    const denseFirst = dense && (apply || this.unsure || this.sentDense > v);
    if (apply && this.optimizerAt !== v) this.send(this.opts.optimizerFrame(v));
    if (denseFirst) this.sendWeights(v, 'dense');
    if (conv) this.sendWeights(v, 'conv');
    this.send(encode({ type: 'assignment', step: v, ...onWire(task), pixels, labels, apply, lr: applyLr ?? 0, sharded: false, plan: 0, bounds: [], examples: 0 }));
    this.unsure = false;
    // What the worker holds once this assignment is done: with apply, the next version, made there.
    const holds = apply ? v + 1 : v;
    this.sentConv = holds;
    this.sentDense = holds;
    if (apply) this.optimizerAt = holds;
    return dense && !denseFirst;
  }

  /** The pixels and labels of a task's samples, for a worker without this dataset; else none. */
  private pixelsOf(task: RangeTask): { pixels: Uint8Array; labels: Uint8Array } {
    if (!this.opts.sendPixels) return { pixels: new Uint8Array(0), labels: new Uint8Array(0) };
    const pixels = new Uint8Array(task.samples.length * IMAGE_PIXELS);
    const labels = new Uint8Array(task.samples.length);
    const { images, labels: all } = this.opts.data.train;
    task.samples.forEach((s, i) => {
      pixels.set(images.subarray(s * IMAGE_PIXELS, (s + 1) * IMAGE_PIXELS), i * IMAGE_PIXELS);
      labels[i] = all[s];
    });
    return { pixels, labels };
  }

  cancel(step: number): void {
    const p = this.pending;
    if (!p || p.step !== step) return;
    this.pending = undefined;
    if (this.state === RemoteState.BUSY) this.state = RemoteState.ACTIVE;
    // The worker may finish the step, and the one preassigned, and update its weights, or not.
    this.unsure = true;
    this.optimizerAt = -1;
    const pre = this.preassignment;
    this.preassignment = undefined;
    pre?.reject(new Error(`step ${pre.step} was preassigned to ${this.id}, whose step ${step} was cancelled`));
    p.reject(new Error(`range of step ${step} cancelled`));
  }

  drop(reason: string, cause: 'late' | 'wrong_result'): void {
    if (cause === 'wrong_result') {
      this.opts.onViolation('wrong_result');
      this.opts.onEject(this);
    }
    this.close(cause === 'late' ? CLOSE_TOO_SLOW : CLOSE_WRONG_RESULT, reason);
  }

  /** Ends the connection; a pending range is rejected so the trainer reassigns it. */
  close(code: number, reason: string, goodbye?: { runComplete: boolean }): void {
    if (this.state === RemoteState.CLOSED) return;
    if (goodbye) this.send(encode({ type: 'goodbye', reason, runComplete: goodbye.runComplete }));
    this.ws.close(code, reason.slice(0, 120));
    this.finish(reason);
  }

  /** `sent` is called once the socket has taken the frame, or at once when it is not open. */
  private send(frame: Uint8Array, sent?: () => void): void {
    if (this.ws.readyState === this.ws.OPEN) {
      this.opts.traffic.sent += frame.length;
      this.ws.send(frame, { binary: true }, sent);
    } else sent?.();
  }

  private sendShared(shared: SharedFrame): void {
    this.send(shared.frame, shared.sent);
  }

  /** One part of the coordinator's weights of `version`: from now on it holds none its peers made. */
  private sendWeights(version: number, part: 'conv' | 'dense'): void {
    this.peersMade = -1;
    this.sendShared(this.opts.weightsFrame(version, part));
  }

  /**
   * Frames sent in `fn` leave in one write: the worker wakes once for them, not once per frame
   * (measured on loopback: the assignment came 0.26 ms after the weights before it). ws keeps
   * its socket in `_socket`; without one (a test's fake) each frame goes on its own.
   */
  private together(fn: () => void): void {
    const socket = (this.ws as unknown as { _socket?: { cork(): void; uncork(): void } })._socket;
    socket?.cork();
    try {
      fn();
    } finally {
      socket?.uncork();
    }
  }

  private finish(reason: string): void {
    if (this.state === RemoteState.CLOSED) return;
    this.state = RemoteState.CLOSED;
    clearInterval(this.heartbeat);
    const pending = this.pending;
    this.pending = undefined;
    pending?.reject(new Error(`${this.id} left during step ${pending.step}: ${reason}`));
    const pre = this.preassignment;
    this.preassignment = undefined;
    pre?.reject(new Error(`${this.id} left before step ${pre.step}: ${reason}`));
    for (const p of this.sharded.values()) {
      p.done.reject(new Error(`${this.id} left during sharded step ${p.step}: ${reason}`));
      p.update.reject(new Error(`${this.id} left during sharded step ${p.step}: ${reason}`));
    }
    this.sharded.clear();
    this.opts.onClose(this, reason);
  }

  private onSocketClose(code: number, reason: string): void {
    this.finish(`connection closed (${code}${reason ? `: ${reason}` : ''})`);
  }

  private onHeartbeatTimer(): void {
    if (Date.now() - this.lastSeenMs > HEARTBEAT_TIMEOUT_MS) {
      this.close(CLOSE_HEARTBEAT_TIMEOUT, `no message for ${HEARTBEAT_TIMEOUT_MS} ms`);
      return;
    }
    this.send(encode({ type: 'heartbeat', sentAtMs: Date.now() }));
  }

  private onFrame(data: Buffer, isBinary: boolean): void {
    this.lastSeenMs = Date.now();
    this.opts.traffic.received += data.length;
    let msg: Message;
    try {
      if (!isBinary) throw new ProtocolError('LENET_ERR_BAD_FRAME', 'text frame; the protocol is binary');
      msg = decode(data, this.decoded);
    } catch (err) {
      const e = err as ProtocolError;
      this.opts.onViolation((e.code ?? 'LENET_ERR_BAD_FRAME').replace('LENET_ERR_', '').toLowerCase());
      this.close(e.closeCode ?? CLOSE_BAD_MESSAGE, `${e.code ?? 'error'}: ${e.message}`);
      return;
    }
    try {
      this.dispatch(msg);
    } catch (err) {
      // A bug in handling one worker's message must not take the coordinator down.
      this.close(CLOSE_BAD_MESSAGE, `internal error handling ${msg.type}: ${(err as Error).message}`);
    }
  }

  private dispatch(msg: Message): void {
    switch (msg.type) {
      case 'result':
        this.onResult(msg);
        return;
      case 'ready':
        this.readySeen = true;
        this.maybeActive();
        return;
      case 'probe_result':
        this.onProbeResult(msg.digest);
        return;
      case 'range_done':
        this.onRangeDone(msg);
        return;
      case 'shard_update':
        this.onShardUpdate(msg);
        return;
      case 'heartbeat':
        return;
      case 'goodbye':
        this.close(CLOSE_NORMAL, `worker said goodbye${msg.reason ? `: ${msg.reason}` : ''}`);
        return;
      case 'challenge':
      case 'hello':
      case 'welcome':
      case 'reject':
      case 'weights':
      case 'assignment':
      case 'optimizer_state':
      case 'peers':
      case 'peer_hello':
      case 'abort':
      case 'probe':
        this.opts.onViolation('unexpected_message');
        this.close(CLOSE_BAD_MESSAGE, `unexpected ${msg.type} message from a worker`);
        return;
      default: {
        const never: never = msg;
        this.close(CLOSE_BAD_MESSAGE, `unknown message ${JSON.stringify(never)}`);
      }
    }
  }

  private maybeActive(): void {
    if (this.state !== RemoteState.STARTING || !this.readySeen || !this.probed) return;
    this.state = RemoteState.ACTIVE;
    this.opts.onReady(this);
  }

  /** The join probe's digest: the coordinator's bits admit the worker, any other refuses it. */
  private onProbeResult(digest: Uint8Array): void {
    if (this.state !== RemoteState.STARTING || this.probed) {
      this.opts.onViolation('unexpected_message');
      this.close(CLOSE_BAD_MESSAGE, 'probe result when no probe was outstanding');
      return;
    }
    const want = this.opts.probe.digest;
    if (Buffer.from(digest).equals(Buffer.from(want))) {
      this.probed = true;
      this.maybeActive();
      return;
    }
    const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex').slice(0, 16);
    const message =
      `its gradient of the join probe is not this run's bits (digest ${hex(digest)}..., expected ${hex(want)}...): ` +
      `the worker computes with ${this.opts.says}, the coordinator with ${this.opts.computesWith}; ` +
      `start the worker with the coordinator's --backend and lenet-dist version, or start the run with the worker's --backend`;
    this.opts.onViolation('handshake_exactness');
    this.send(encode({ type: 'reject', reason: RejectReason.EXACTNESS, message }));
    this.close(CLOSE_NOT_EXACT, message);
  }

  /** Its subtrees of a sharded step: exactly those of its range, with their example counts. */
  private onRangeDone(msg: RangeDoneMessage): void {
    const p = this.sharded.get(msg.step);
    if (!p) {
      this.opts.onViolation('stale_result');
      return;
    }
    const wrong = msg.nodes.length !== p.nodes.size || msg.nodes.some((n) => p.nodes.get(`${n.lo}:${n.hi}`)?.examples !== n.examples);
    if (wrong || !msg.nodes.every((n) => Number.isFinite(n.lossSum))) {
      this.opts.onViolation('bad_range_done');
      this.close(CLOSE_BAD_MESSAGE, `range done for step ${msg.step} does not list the subtrees of [${p.lo},${p.hi}) with their examples and finite losses`);
      return;
    }
    if (msg.sumsDigests.length !== msg.nodes.length * p.shards || msg.weightsDigests.length !== p.shards) {
      this.opts.onViolation('bad_range_done');
      this.close(CLOSE_BAD_MESSAGE, `range done for step ${msg.step} has ${msg.sumsDigests.length} sums digests and ${msg.weightsDigests.length} weights digests; its ${msg.nodes.length} subtrees and the plan's ${p.shards} shards need ${msg.nodes.length * p.shards} and ${p.shards}`);
      return;
    }
    p.done.resolve(msg);
  }

  /** The batch-mean gradient of the shard it owns, reduced by it along the fixed tree. */
  private onShardUpdate(msg: ShardUpdateMessage): void {
    const p = this.sharded.get(msg.step);
    if (!p) {
      this.opts.onViolation('stale_result');
      return;
    }
    const [from, to] = p.shard;
    if (msg.offset !== from || msg.mean.length !== to - from) {
      this.opts.onViolation('bad_shard_update');
      this.close(CLOSE_BAD_MESSAGE, `shard update of values [${msg.offset},${msg.offset + msg.mean.length}), its shard is [${from},${to})`);
      return;
    }
    if (msg.receivedDigests.length !== p.stepNodes) {
      this.opts.onViolation('bad_shard_update');
      this.close(CLOSE_BAD_MESSAGE, `shard update for step ${msg.step} has ${msg.receivedDigests.length} digests of received sums; the step has ${p.stepNodes} subtrees`);
      return;
    }
    p.update.resolve(msg);
  }

  /**
   * Validates a subtree sum, or a part of one, and writes it into the slab; resolves the step when
   * every subtree has come whole.
   */
  private onResult(msg: ResultMessage): void {
    const p = msg.step === this.pending?.step ? this.pending : msg.step === this.preassignment?.step ? this.preassignment : undefined;
    if (!p) {
      this.opts.onViolation('stale_result'); // late, for a step already done or reassigned: ignored
      return;
    }
    const key = `${msg.lo}:${msg.hi}`;
    const want = p.expected.get(key);
    if (!want) {
      this.opts.onViolation('unassigned_result');
      this.close(CLOSE_BAD_MESSAGE, `result for subtree [${msg.lo},${msg.hi}) that was not assigned`);
      return;
    }
    const slab = this.opts.slab;
    const from = msg.offset;
    const to = msg.offset + msg.gradient.length;
    const split = this.opts.partSplit;
    const part = tensorPart(from, to, split, slab.width);
    if (!part) {
      this.opts.onViolation('bad_result_shape');
      this.close(CLOSE_BAD_MESSAGE, `gradient ${notAPart(from, to, split, slab.width)}`);
      return;
    }
    if (msg.dtype !== undefined && msg.dtype !== this.opts.gradDType) {
      // A float16 leaf in a float32 run (or the reverse) is another run's arithmetic.
      this.opts.onViolation('bad_result_dtype');
      this.close(CLOSE_BAD_MESSAGE, `result for [${msg.lo},${msg.hi}) is ${msg.dtype}, but the run's gradients are ${this.opts.gradDType}`);
      return;
    }
    const parts = p.parts.get(key) ?? [];
    if (parts.some(([a, b]) => from < b && a < to)) {
      this.opts.onViolation('duplicate_result'); // the first valid value of a parameter won
      return;
    }
    if (msg.examples !== want.examples) {
      this.opts.onViolation('bad_result_examples');
      this.close(CLOSE_BAD_MESSAGE, `result for [${msg.lo},${msg.hi}) sums ${msg.examples} examples, expected ${want.examples}`);
      return;
    }
    if (!Number.isFinite(msg.lossSum) || !allFinite(msg.gradient)) {
      this.opts.onViolation('non_finite_result');
      this.close(CLOSE_BAD_MESSAGE, `non-finite values in the result for [${msg.lo},${msg.hi})`);
      return;
    }
    if (parts.length > 0 && p.losses.get(key) !== msg.lossSum) {
      this.opts.onViolation('inconsistent_result');
      this.close(CLOSE_BAD_MESSAGE, `parts of the result for [${msg.lo},${msg.hi}) disagree on its loss`);
      return;
    }
    slot(slab, msg.lo).set(msg.gradient, from);
    parts.push([from, to]);
    p.parts.set(key, parts);
    p.losses.set(key, msg.lossSum);
    if (parts.reduce((n, [a, b]) => n + b - a, 0) === slab.width) p.received.add(key);
    if (part !== 'conv') {
      // The loss and count go in with the dense part only: once every range's dense part is in,
      // the trainer may reduce them (step-update.ts), and a later write would undo that sum.
      slab.loss[msg.lo] = msg.lossSum;
      slab.count[msg.lo] = msg.examples;
      p.dense.add(key);
      if (p.dense.size === p.expected.size) {
        const onDense = p.onDense;
        p.onDense = undefined;
        onDense?.();
      }
    }
    if (p.received.size === p.expected.size) {
      // A preassigned step is counted when the trainer takes it (it may be cancelled before).
      if (p === this.pending) {
        this.pending = undefined;
        this.state = RemoteState.ACTIVE;
        this.microbatchesDone += p.task.hi - p.task.lo;
      }
      p.resolve({ nodes: [...p.expected.values()].map((e) => e.node), computeMs: msg.computeMs });
    }
  }
}

function allFinite(a: Float32Array): boolean {
  for (let i = 0; i < a.length; i++) if (!Number.isFinite(a[i])) return false;
  return true;
}
