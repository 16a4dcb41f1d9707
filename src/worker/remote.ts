// `lenet-worker join`: a remote gradient worker. It connects to the coordinator, proves it holds
// the token, receives the run configuration, and then, step after step, computes the microbatch
// range it is given with its own threads, pre-summed along the coordinator's fixed tree. A
// browser tab runs this same code (src/browser/worker.ts), bundled with stand-ins for the Node
// modules it imports.
//
// Connection lifecycle:
//
//   CONNECTING --open--> AWAIT_CHALLENGE --challenge/hello--> AWAIT_WELCOME --welcome--> SERVING
//       ^                                                                                  |
//       +---- unexpected close: retry with backoff until --connect-timeout expires --------+
//   SERVING --goodbye(run complete)--> DONE (exit 0);  any state --reject--> REJECTED (exit 5)
import { hostname } from 'node:os';
import { readFileSync } from 'node:fs';
import WebSocket from 'ws';
import { IMAGE_PIXELS, MAX_FRAME_BYTES, MAX_SAME_COMPUTE_FAILURES, RECONNECT_FACTOR, RECONNECT_INITIAL_MS, RECONNECT_MAX_MS, HEARTBEAT_INTERVAL_MS, HEARTBEAT_TIMEOUT_MS } from '../constants.js';
import { EXIT_COMPUTE_FAILED, LenetError } from '../errors.js';
import { resolveBackend, threadsFor, type BackendChoice, type BackendName } from '../backend/select.js';
import { loadMnist, type Mnist } from '../data/mnist.js';
import { EpochOrder, epochPositions } from '../data/sampler.js';
import { denseOffset, modelSpec, type Activation, type ArchName } from '../model/architectures.js';
import { InlineCompute } from '../compute/inline.js';
import { startPool, type PoolOptions } from '../compute/pool.js';
import { announceVersion, newDenseFlag, versionInPlace, type DenseFlag } from '../compute/dense-flag.js';
import { computeRange, type RangeCompute } from '../compute/range.js';
import { createSharedSlab, slot, readyNodes, type Slab, type TreeNode } from '../reduce/ordered-sum.js';
import { batchMean, createOptimizer, type OptimizerName, type Optimizer } from '../optim/optimizer.js';
import { authProof } from '../protocol/auth.js';
import { decode, encode, encodeTensorFrame } from '../protocol/codec.js';
import { FramePool } from '../protocol/frames.js';
import { CLOSE_BAD_MESSAGE, CLOSE_NORMAL, type ProtocolError } from '../protocol/errors.js';
import { RejectReason, notAPart, tensorPart, type AssignmentMessage, type Message, type OptimizerStateMessage, type ProbeMessage, type ResultMessage, type RunConfigMessage, type WeightsMessage } from '../protocol/messages.js';
import { PACKAGE_VERSION } from '../version.js';
import type { Log } from '../metrics/log.js';
import { PeerLinks, flushed } from './peers.js';
import { PROBE_VERSION, probeDigest, probeTask } from '../compute/probe.js';
import { SIMULATE_COMPUTE_MS, simulatedCompute } from './simulated.js';
import { ShardedSteps, type AssignedRange } from './sharded.js';

export const EXIT_REJECTED = 5;
export const EXIT_UNREACHABLE = 6;
export { EXIT_COMPUTE_FAILED };

export interface WorkerOptions {
  url: string;
  threads: number;
  backend: BackendChoice;
  dataDir?: string;
  /** Looks for no MNIST files (a browser tab has none): the coordinator sends the pixels. */
  pixelsOnly?: boolean;
  token?: string;
  /** Give up when no coordinator answers for this long (seconds). */
  connectTimeoutS: number;
  /** CA certificate for wss:// with a private certificate authority. */
  ca?: string;
  name?: string;
  /**
   * Where it listens for other workers in sharded steps; none: it takes no part in them. With
   * `tls` (PEM files) peers reach it over wss://, trusting `ca`.
   */
  peers?: { host: string; port: number; advertise?: string; tls?: { cert: string; key: string } };
  log: Log;
}

export class WorkerRejectedError extends LenetError {
  constructor(reason: RejectReason, message: string) {
    super(`LENET_ERR_REJECTED_${RejectReason[reason]}`, `the coordinator rejected this worker: ${message}`, EXIT_REJECTED);
  }
}

export class WorkerSetupError extends LenetError {
  constructor(message: string) {
    super('LENET_ERR_WORKER_SETUP', `cannot take part in this run: ${message}`, EXIT_REJECTED);
  }
}

export class ComputeFailedError extends LenetError {
  constructor(step: number, message: string) {
    super(
      'LENET_ERR_COMPUTE',
      `computing step ${step} failed twice in a row with the same error (${message}); this worker cannot take part in this run: ` +
        `check --backend, --threads and the memory it has, or report it if the coordinator is lenet-dist's own`,
      EXIT_COMPUTE_FAILED,
    );
  }
}

export class CoordinatorUnreachableError extends LenetError {
  constructor(url: string, seconds: number, last: string) {
    super('LENET_ERR_UNREACHABLE', `no coordinator answered at ${url} within ${seconds} s (last error: ${last}); is it running, and is --connect-timeout long enough?`, EXIT_UNREACHABLE);
  }
}

/**
 * How a worker computes its ranges (the dense layers' weights may still be arriving): with one
 * thread on its main thread (InlineCompute), with more in a pool of threads; simulated for
 * `npm run scaling` with LENET_SIMULATE_COMPUTE_MS (simulated.ts).
 */
async function startCompute(threads: number, o: PoolOptions & { denseVersion: DenseFlag }): Promise<RangeCompute> {
  let real: RangeCompute;
  if (threads === 1) real = await InlineCompute.start(o);
  else {
    const pool = await startPool(threads, o);
    real = { computeRange: (task, early) => computeRange(pool, o.slab, task, early, true), close: () => pool.close() };
  }
  return SIMULATE_COMPUTE_MS > 0 ? simulatedCompute(real, SIMULATE_COMPUTE_MS, o.slab, o.denseVersion) : real;
}

/** What a worker sets up once it knows the run: shared buffers and its compute. */
interface Session {
  config: RunConfigMessage;
  compute: RangeCompute;
  slab: Slab;
  weights: Float32Array;
  /** The newest version whose convolutions' weights are in `weights`. */
  convVersion: number;
  /** The same for the dense layers' weights (versionInPlace), shared with the threads (they wait on it). */
  denseVersion: DenseFlag;
  images: Uint8Array;
  labels: Uint8Array;
  /** Where the dense layers' part of a result starts. */
  denseFrom: number;
  /** For steps computed alone (Assignment.apply): the coordinator's optimizer, and the version its state is of. */
  optimizer: Optimizer | undefined;
  optimizerVersion: number;
  /** The batch mean of a step computed alone. */
  mean: Float32Array;
  /**
   * Weights and OptimizerState frames received. The coordinator sends them after an apply
   * assignment only when it has taken that step back; the assignment is then void.
   */
  replaced: number;
  /** Its part in sharded steps. */
  sharded: ShardedSteps;
  /** The run's data order: which samples an assignment's positions name. */
  order: EpochOrder;
}

/**
 * A test hook, for the test that proves verification catches a dishonest worker
 * (test/integration/verify.test.ts): with LENET_TEST_CORRUPT_EVERY=N the worker perturbs one
 * value of every Nth result it sends. Never set otherwise.
 */
const CORRUPT_EVERY = Number(process.env.LENET_TEST_CORRUPT_EVERY ?? 0);
/** The same, for the test that proves the join probe refuses such a worker: its probe gradient is perturbed. */
const CORRUPT_PROBE = process.env.LENET_TEST_CORRUPT_PROBE === '1';

function corrupted(msg: ResultMessage): ResultMessage {
  const gradient = Float32Array.from(msg.gradient);
  gradient[0] += 1e-3;
  return { ...msg, gradient };
}

export class RemoteWorkerProcess {
  private data: Mnist | undefined;
  private backend: BackendName | undefined;
  private threads = 1;
  /** The id the coordinator gave us, for log lines. */
  workerId: string | undefined;
  private session: Session | undefined;
  private queue: Promise<void> = Promise.resolve();
  /** Buffers for outgoing results. */
  private readonly frames = new FramePool();
  /** Ranges computed and sent, and of those, steps computed alone whose update was applied here, and sharded steps; samples in them. */
  readonly stats = { ranges: 0, applied: 0, sharded: 0, samples: 0 };
  /** What it is doing, for a live view (the browser worker's page). */
  phase: 'connecting' | 'proving' | 'computing' | 'waiting' | 'stopped' = 'connecting';
  private peers: PeerLinks | undefined;
  /** Why the worker is stopping (stop()), or undefined. */
  private stopping: string | undefined;
  /** Ends the current connection with a goodbye, or a reconnect wait, when stop() is called. */
  private onStop: (() => void) | undefined;
  /** The last compute failure and how many times in a row it came; a range computed resets it. */
  private failure: { message: string; count: number } | undefined;
  /** Results sent (for the test hook CORRUPT_EVERY). */
  private resultsSent = 0;

  /** --ca, read once: it is trusted for the coordinator's wss:// and for wss:// peers. */
  private readonly ca: Buffer | undefined;

  constructor(private readonly opts: WorkerOptions) {
    this.ca = opts.ca ? readFileSync(opts.ca) : undefined;
  }

  /** Every line names this worker: the coordinator's id for it once known, else its name. */
  private log(msg: string): void {
    this.opts.log(msg, { worker: this.workerId ?? this.opts.name ?? hostname() });
  }

  /** Runs until the coordinator ends the run (resolves 0) or rejects us / cannot be reached (throws). */
  async run(): Promise<number> {
    this.backend = await resolveBackend(this.opts.backend, this.opts.log); // started by its compute (startCompute)
    this.threads = threadsFor(this.backend, this.opts.threads, this.opts.log);
    if (this.opts.pixelsOnly) {
      this.log(`worker: backend ${this.backend}, ${this.threads} thread(s); the coordinator will send pixels`);
    } else {
      try {
        this.data = loadMnist({ dataDir: this.opts.dataDir });
        this.log(`worker: backend ${this.backend}, ${this.threads} thread(s), MNIST sha256 ${this.data.sha256.slice(0, 16)}...`);
      } catch (err) {
        this.log(`worker: no usable MNIST here (${(err as Error).message}); the coordinator will send pixels`);
      }
    }
    await this.startPeers();
    let delay = RECONNECT_INITIAL_MS;
    let deadline = Date.now() + this.opts.connectTimeoutS * 1000;
    let lastError = 'none';
    try {
      for (;;) {
        if (this.stopping) return 0;
        const outcome = await this.connectOnce();
        if (outcome.kind === 'done' || this.stopping) return 0;
        if (outcome.kind === 'served') {
          // We had a working connection: a new outage gets the full timeout again.
          deadline = Date.now() + this.opts.connectTimeoutS * 1000;
          delay = RECONNECT_INITIAL_MS;
          this.log(`worker: connection lost (${outcome.reason}); reconnecting`);
        } else {
          lastError = outcome.reason;
        }
        if (Date.now() + delay > deadline) throw new CoordinatorUnreachableError(this.opts.url, this.opts.connectTimeoutS, lastError);
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, delay);
          this.onStop = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        delay = Math.min(delay * RECONNECT_FACTOR, RECONNECT_MAX_MS);
      }
    } finally {
      this.phase = 'stopped';
      await this.session?.compute.close();
      await this.peers?.close();
    }
  }

  /**
   * Stops the worker (SIGTERM, SIGINT): a goodbye to the coordinator, which gives its range to
   * someone else at once instead of after a deadline; then run() resolves 0.
   */
  stop(reason: string): void {
    if (this.stopping) return;
    this.stopping = reason;
    this.onStop?.();
  }

  /** The endpoint other workers send this one their partial sums and shards on (sharded steps). */
  private async startPeers(): Promise<void> {
    const o = this.opts.peers;
    if (!o) return;
    // What peers send each other must not go in the clear beside an encrypted run.
    if (this.opts.url.startsWith('wss:') && !o.tls) {
      this.log('worker: the coordinator serves wss:// and this worker has no --peer-tls-cert/--peer-tls-key: taking no part in sharded steps');
      return;
    }
    const tls = o.tls && { cert: readFileSync(o.tls.cert), key: readFileSync(o.tls.key) };
    const peers = new PeerLinks({ host: o.host, port: o.port, token: this.opts.token, tls, ca: this.ca, log: (m) => this.log(m), onFrame: (msg, from) => this.onPeerFrame(msg, from) });
    try {
      const port = await peers.listen();
      this.peers = peers;
      this.log(`worker: listening for peers on ${o.host}:${port}${tls ? ' (TLS)' : ''}`);
    } catch (err) {
      this.log(`worker: cannot listen for peers on ${o.host}:${o.port} (${(err as Error).message}); taking no part in sharded steps`);
    }
  }

  /** Where other workers reach this one: --advertise, else the address the coordinator link leaves from. */
  private peerUrl(ws: WebSocket): string {
    const o = this.opts.peers;
    if (!o || !this.peers) return '';
    const local = (ws as unknown as { _socket?: { localAddress?: string } })._socket?.localAddress;
    const host = o.advertise ?? (o.host === '127.0.0.1' || !local ? o.host === '0.0.0.0' ? '127.0.0.1' : o.host : local.replace(/^::ffff:/, ''));
    return `${o.tls ? 'wss' : 'ws'}://${host.includes(':') ? `[${host}]` : host}:${this.peers.port}`;
  }

  private onPeerFrame(msg: Message, from: number): void {
    const s = this.session;
    if (!s) return;
    if (msg.type === 'result') s.sharded.onPartial(msg);
    else if (msg.type === 'weights') s.sharded.onShardWeights(msg, from);
    else this.log(`worker: ignored an unexpected ${msg.type} from peer worker-${from}`);
  }

  /** One connection attempt, from connect to close. */
  private connectOnce(): Promise<{ kind: 'done' } | { kind: 'served' | 'failed'; reason: string }> {
    return new Promise((resolve, reject) => {
      this.phase = 'connecting';
      const ws = new WebSocket(this.opts.url, {
        maxPayload: MAX_FRAME_BYTES,
        perMessageDeflate: false,
        // RFC 6455 masks client frames to protect browser-facing proxies from forged requests;
        // a worker is not a browser. An all-zero mask lets ws on both sides skip the XOR pass
        // (and a copy) over every 240 KB gradient: about 1.5 ms per step on loopback.
        generateMask: (mask: Buffer) => mask.fill(0),
        ca: this.ca,
      });
      let welcomed = false;
      let finished = false;
      let lastSeen = Date.now();
      const heartbeat = setInterval(() => {
        if (Date.now() - lastSeen > HEARTBEAT_TIMEOUT_MS) ws.terminate();
        else if (welcomed) send({ type: 'heartbeat', sentAtMs: Date.now() });
      }, HEARTBEAT_INTERVAL_MS);
      const send = (msg: Message): void => {
        if (ws.readyState !== WebSocket.OPEN) return;
        if (msg.type !== 'result') {
          ws.send(encode(msg), { binary: true });
          return;
        }
        if (CORRUPT_EVERY > 0 && ++this.resultsSent % CORRUPT_EVERY === 0) msg = corrupted(msg);
        // Every step's gradients: encoded into reused memory, handed back once written.
        const frame = encodeTensorFrame(msg, this.session?.config.gradDType, (bytes) => this.frames.take(bytes));
        ws.send(frame, { binary: true }, () => this.frames.give(frame));
      };
      const end = (value: { kind: 'done' } | { kind: 'served' | 'failed'; reason: string } | Error): void => {
        if (finished) return;
        finished = true;
        clearInterval(heartbeat);
        if (value instanceof Error) reject(value);
        else resolve(value);
      };
      this.onStop = () => {
        send({ type: 'goodbye', reason: `worker stopping (${this.stopping})`, runComplete: false });
        ws.close(CLOSE_NORMAL, 'worker stopping');
        end({ kind: 'done' });
      };
      ws.on('error', (err) => end({ kind: welcomed ? 'served' : 'failed', reason: err.message }));
      ws.on('close', (code, reason) => end({ kind: welcomed ? 'served' : 'failed', reason: `closed (${code}${reason.length ? `: ${reason.toString()}` : ''})` }));
      ws.on('message', (data, isBinary) => {
        lastSeen = Date.now();
        let msg: Message;
        try {
          if (!isBinary) throw new Error('text frame');
          // Weights are decoded straight into the threads' shared weights (see onWeights).
          msg = decode(data as Buffer, (offset, count, kind) => {
            const w = this.session?.weights;
            return kind === 'weights' && w && offset + count <= w.length ? w.subarray(offset, offset + count) : undefined;
          });
        } catch (err) {
          if ((err as ProtocolError).code === 'LENET_ERR_PROTOCOL_VERSION') {
            end(new WorkerRejectedError(RejectReason.PROTOCOL_VERSION, (err as Error).message));
          } else {
            this.log(`worker: bad frame from the coordinator (${(err as Error).message}); disconnecting`);
          }
          ws.close(CLOSE_BAD_MESSAGE, 'bad frame');
          return;
        }
        switch (msg.type) {
          case 'challenge':
            this.phase = 'proving';
            send({
              type: 'hello',
              packageVersion: PACKAGE_VERSION,
              backend: this.backend!,
              threads: this.threads,
              datasetSha256: this.data?.sha256 ?? '',
              authProof: this.opts.token ? authProof(this.opts.token, msg.nonce) : new Uint8Array(0),
              name: this.opts.name ?? hostname(),
              peerUrl: this.peerUrl(ws),
            });
            return;
          case 'welcome':
            welcomed = true;
            this.queue = this.queue
              .then(() => this.onWelcome(msg.workerId, msg.config, send, () => flushed(ws)))
              .then(() => send({ type: 'ready', threads: this.threads }))
              .then(() => void (this.phase = 'waiting'))
              .catch((err: Error) => {
                end(new WorkerSetupError(err.message));
                ws.close(CLOSE_NORMAL, 'cannot set up');
              });
            return;
          case 'reject':
            end(new WorkerRejectedError(msg.reason, msg.message));
            ws.close(CLOSE_NORMAL);
            return;
          case 'weights':
          case 'optimizer_state':
            // Not queued behind the running assignment: its threads may be waiting for these.
            try {
              if (msg.type === 'weights') this.onWeights(msg);
              else this.onOptimizerState(msg);
            } catch (err) {
              this.log(`worker: bad ${msg.type === 'weights' ? 'weights' : 'optimizer state'} from the coordinator (${(err as Error).message}); disconnecting`);
              ws.close(CLOSE_BAD_MESSAGE, `bad ${msg.type}`);
            }
            return;
          case 'probe':
            this.queue = this.queue
              .then(() => this.onProbe(msg, send))
              .catch((err: Error) => {
                this.log(`worker: could not compute the join probe: ${err.message}; disconnecting`);
                ws.close(CLOSE_BAD_MESSAGE, 'probe failed');
              });
            return;
          case 'assignment': {
            // What had arrived when it came: a later Weights or OptimizerState voids an apply assignment.
            const replaced = this.session?.replaced ?? 0;
            this.queue = this.queue
              .then(() => void (this.phase = 'computing'))
              .then(() => this.onAssignment(msg, send, replaced))
              .then(() => {
                this.failure = undefined;
                this.phase = 'waiting';
              })
              .catch((err: Error) => {
                // Once can be a passing fault (a reconnect starts the compute afresh); the same
                // error again is this worker's for good, and retrying would loop forever.
                const count = this.failure?.message === err.message ? this.failure.count + 1 : 1;
                this.failure = { message: err.message, count };
                if (count < MAX_SAME_COMPUTE_FAILURES) {
                  this.log(`worker: could not compute step ${msg.step}: ${err.message}; disconnecting`);
                  ws.close(CLOSE_BAD_MESSAGE, 'compute failed');
                  return;
                }
                send({ type: 'goodbye', reason: `compute failed ${count} times in a row: ${err.message}`, runComplete: false });
                end(new ComputeFailedError(msg.step, err.message));
                ws.close(CLOSE_NORMAL, 'compute failed');
              });
            return;
          }
          case 'peers':
          case 'abort':
          case 'result':
            // Sharded steps: the plan, a step given up, the coordinator's threads' partial sums.
            // Not queued: a queued sharded step may be waiting for them.
            try {
              const sharded = this.session?.sharded;
              if (!sharded) throw new Error('before welcome');
              if (msg.type === 'peers') sharded.setPlan(msg);
              else if (msg.type === 'abort') sharded.abort(msg.step);
              else sharded.onPartial(msg);
            } catch (err) {
              this.log(`worker: bad ${msg.type} from the coordinator (${(err as Error).message}); disconnecting`);
              ws.close(CLOSE_BAD_MESSAGE, `bad ${msg.type}`);
            }
            return;
          case 'heartbeat':
            return;
          case 'goodbye':
            this.log(`worker: coordinator said goodbye (${msg.reason})`);
            if (msg.runComplete) end({ kind: 'done' });
            ws.close(CLOSE_NORMAL);
            return;
          case 'hello':
          case 'ready':
          case 'peer_hello':
          case 'shard_update':
          case 'range_done':
          case 'probe_result':
            this.log(`worker: unexpected ${msg.type} from the coordinator; disconnecting`);
            ws.close(CLOSE_BAD_MESSAGE, `unexpected ${msg.type}`);
            return;
          default: {
            const never: never = msg;
            ws.close(CLOSE_BAD_MESSAGE, `unknown ${JSON.stringify(never)}`);
          }
        }
      });
    });
  }

  private async onWelcome(workerId: number, config: RunConfigMessage, send: (m: Message) => void, flushedLink: () => Promise<void>): Promise<void> {
    this.workerId = `worker-${workerId}`;
    this.log(`worker: joined as worker-${workerId}: ${config.arch}, batch ${config.batchSize} / microbatch ${config.microbatch}, seed ${config.seed}${config.sendPixels ? ', pixels sent by the coordinator' : ''}`);
    // Peer links of this run are accepted from now on; what comes on them before the session
    // below exists is dropped, and no peer sends any before this worker is Ready.
    this.peers?.join({ runId: config.runId, workerId });
    // Every connection starts from nothing, even to the same run: the weights held are the last
    // coordinator's, possibly of a version this one has not reached (it resumed from an earlier
    // checkpoint, and its dense part may have been published early), and the compute caches weights by
    // version, which a different run may number alike (its learning rate is not in RunConfig).
    // Kept, they could be used for this coordinator's: they look present. Restarting the compute
    // costs a reconnect 0.6-0.8 s with a pool of two threads, a few ms on the main thread.
    await this.session?.compute.close();
    this.session = undefined;
    const spec = modelSpec(config.arch as ArchName, config.activation as Activation);
    if (spec.size !== config.paramCount) throw new Error(`model ${config.arch} has ${spec.size} parameters here, ${config.paramCount} at the coordinator`);
    if (config.denseFrom !== denseOffset(spec)) throw new Error(`model ${config.arch}'s dense layers start at ${denseOffset(spec)} here, at ${config.denseFrom} at the coordinator`);
    const slab = createSharedSlab(spec.size, Math.ceil(config.batchSize / config.microbatch));
    const weights = new Float32Array(new SharedArrayBuffer(4 * spec.size));
    let images: Uint8Array;
    let labels: Uint8Array;
    if (config.sendPixels || !this.data) {
      // Filled in per assignment with the pixels the coordinator sends.
      images = new Uint8Array(new SharedArrayBuffer(config.trainSamples * IMAGE_PIXELS));
      labels = new Uint8Array(new SharedArrayBuffer(config.trainSamples));
    } else {
      images = this.data.train.images;
      labels = this.data.train.labels;
    }
    const empty = new Uint8Array(new SharedArrayBuffer(1));
    const denseVersion = newDenseFlag();
    const compute = await startCompute(this.threads, {
      spec,
      backend: this.backend!,
      seed: config.seed,
      distort: config.distort,
      train: { images, labels },
      test: { images: empty, labels: empty },
      weights,
      slab,
      gradDType: config.gradDType,
      denseVersion,
    });
    const session = {
      config,
      compute,
      slab,
      weights,
      convVersion: -1,
      denseVersion,
      images,
      labels,
      denseFrom: denseOffset(spec),
      optimizer: undefined,
      optimizerVersion: -1,
      mean: new Float32Array(spec.size),
      replaced: 0,
      order: new EpochOrder(config.seed, config.trainSamples),
    } as Session;
    // The same object: the sharded steps read and write the session's versions.
    session.sharded = new ShardedSteps(session, workerId, {
      toCoordinator: send,
      toPeer: (url, frame) => this.peers?.send(url, frame),
      flushed: async () => void (await Promise.all([this.peers?.flushed(), flushedLink()])),
      log: (m) => this.log(m),
    });
    this.session = session;
  }

  /**
   * Weights come whole or in two parts: the convolutions' before an assignment, the dense layers'
   * after it, while the compute already runs the forward pass (it waits for `denseVersion`), or
   * early, during the step before, once this worker has sent its dense parts: its threads have
   * loaded the dense weights they need by then. The values were decoded in place. A thread still
   * on a step the coordinator has given up on may read newer weights midway; its result is for
   * an old step and is ignored.
   */
  private onWeights(msg: WeightsMessage): void {
    const s = this.session;
    if (!s) throw new Error('weights before welcome');
    const from = msg.offset;
    const to = msg.offset + msg.values.length;
    const part = tensorPart(from, to, s.denseFrom, s.weights.length);
    if (!part) throw new Error(notAPart(from, to, s.denseFrom, s.weights.length));
    s.replaced++;
    if (msg.values.buffer !== s.weights.buffer) s.weights.set(msg.values, from);
    if (part !== 'dense') s.convVersion = msg.version;
    if (part !== 'conv') announceVersion(s.denseVersion, msg.version);
    s.sharded.weightsChanged();
  }

  /** The coordinator's optimizer state of a weights version, for the steps this worker computes alone. */
  private onOptimizerState(msg: OptimizerStateMessage): void {
    const s = this.session;
    if (!s) throw new Error('optimizer state before welcome');
    if (msg.name !== s.config.optimizer) throw new Error(`optimizer ${msg.name}, but the run uses ${s.config.optimizer}`);
    for (const [name, values] of Object.entries(msg.slots)) {
      if (values.length !== s.weights.length) throw new Error(`optimizer slot ${name} has ${values.length} values for ${s.weights.length} weights`);
    }
    s.replaced++;
    s.optimizer = createOptimizer(msg.name as OptimizerName, s.weights.length, { name: msg.name as OptimizerName, t: msg.t, slots: msg.slots });
    s.optimizerVersion = msg.version;
  }

  /**
   * After sending the result of a step computed alone: the update the coordinator applies too,
   * from the same sums in the same order, so the weights of the next version are made here, the
   * same bits, and the next step (preassigned with this one) starts without waiting for them.
   */
  private applyAlone(s: Session, a: AssignedRange, nodes: TreeNode[]): void {
    // Not finite: the coordinator ends the run as diverged; nothing to make.
    if (!batchMean(s.slab, a.microbatches, readyNodes(nodes), s.mean)) return;
    s.optimizer!.apply(s.weights, s.mean, a.lr);
    this.stats.applied++;
    const next = a.weightsVersion + 1;
    s.convVersion = next;
    s.optimizerVersion = next;
    announceVersion(s.denseVersion, next);
  }

  /**
   * The join probe: one microbatch on the weights it carries, computed by the same compute as any
   * range (so with the same bits), its digest sent back. The weights it leaves are version
   * PROBE_VERSION, never a real one: the first assignment comes after real weights.
   */
  private async onProbe(msg: ProbeMessage, send: (m: Message) => void): Promise<void> {
    const s = this.session;
    if (!s) throw new Error('probe before welcome');
    if (msg.weights.length !== s.weights.length) throw new Error(`probe weights have ${msg.weights.length} values for ${s.weights.length} parameters`);
    s.weights.set(msg.weights);
    s.convVersion = PROBE_VERSION;
    announceVersion(s.denseVersion, PROBE_VERSION);
    const task = probeTask(msg.samples, msg.positions, msg.epoch, PROBE_VERSION);
    this.takeSamples(s, { ...task, pixels: msg.pixels, labels: msg.labels });
    await s.compute.computeRange(task);
    if (CORRUPT_PROBE) slot(s.slab, 0)[0] += 1e-3;
    send({ type: 'probe_result', digest: probeDigest(slot(s.slab, 0), s.slab.loss[0]) });
    s.convVersion = -1;
    announceVersion(s.denseVersion, -1);
  }

  /** Checks an assignment's range and samples against the run, and keeps the pixels it carries. */
  private takeSamples(s: Session, a: Pick<AssignedRange, 'lo' | 'hi' | 'samples' | 'pixels' | 'labels'>): void {
    if (a.hi > s.slab.slots) throw new Error(`assignment range [${a.lo},${a.hi}) exceeds ${s.slab.slots} microbatches`);
    for (const index of a.samples) if (index >= s.labels.length) throw new Error(`sample ${index} is outside the training set`);
    if (a.pixels.length > 0) {
      a.samples.forEach((index, i) => {
        s.images.set(a.pixels.subarray(i * IMAGE_PIXELS, (i + 1) * IMAGE_PIXELS), index * IMAGE_PIXELS);
        s.labels[index] = a.labels[i];
      });
    }
  }

  private async onAssignment(msg: AssignmentMessage, send: (m: Message) => void, replacedBefore: number): Promise<void> {
    const s = this.session;
    if (!s) throw new Error('assignment before welcome');
    const count = msg.sizes.reduce((n, x) => n + x, 0);
    const a: AssignedRange = { ...msg, samples: s.order.at(msg.epoch, msg.start, count), positions: epochPositions(msg.start, count) };
    if (a.apply) {
      if (s.config.gradDType !== 'float32') throw new Error('apply assignment in a run with float16 gradients');
      // Its weights or optimizer state came again after it: the coordinator took this step (or the
      // one before, whose update was to make its weights) back, and no longer wants it. Frames
      // read only after the step has started cannot stop it (a one-thread worker reads its socket
      // between steps and every COMPUTE_YIELD_MS): its result is then for a step the coordinator
      // no longer waits for, and is ignored there.
      const v = a.weightsVersion;
      if (s.replaced !== replacedBefore || s.convVersion !== v || s.optimizerVersion !== v || versionInPlace(s.denseVersion) !== v) {
        this.log(`worker: step ${a.step} was taken back by the coordinator; skipped`);
        return;
      }
    }
    if (a.sharded) {
      // Its weights may still be coming from the other owners: the step waits for them.
      if (s.config.gradDType !== 'float32') throw new Error('sharded assignment in a run with float16 gradients');
      this.takeSamples(s, a);
      await s.sharded.run(a, (task, early) => s.compute.computeRange({ ...task, weightsGeneration: s.replaced }, early));
      this.stats.ranges++;
      this.stats.sharded++;
      this.stats.samples += a.samples.length;
      return;
    }
    // Newer weights already here: the coordinator has moved past this step and does not want it.
    if (a.weightsVersion < s.convVersion) return;
    if (a.weightsVersion !== s.convVersion) throw new Error(`assignment needs weights ${a.weightsVersion}, have ${s.convVersion}`);
    this.takeSamples(s, a);
    // float32 sums go out in two parts: the dense layers' (97% of the bytes) while the threads
    // still run the convolutions' backward pass, then the convolutions'. float16 goes per leaf.
    const sendPart = (lo: number, hi: number, from: number, to: number, computeMs: number): void =>
      send({
        type: 'result',
        step: a.step,
        lo,
        hi,
        examples: s.slab.count[lo],
        lossSum: s.slab.loss[lo],
        offset: from,
        gradient: slot(s.slab, lo).subarray(from, to),
        computeMs,
      });
    // A step computed alone goes whole: the coordinator does not update its dense layers early.
    const leavesOnly = s.config.gradDType === 'float16';
    const early =
      leavesOnly || a.apply
        ? undefined
        : { split: s.denseFrom, onDense: (nodes: TreeNode[]) => nodes.forEach(([lo, hi]) => sendPart(lo, hi, s.denseFrom, s.slab.width, 0)) };
    // A version the coordinator sent again (after one made with peers) is loaded again.
    const result = await s.compute.computeRange({ ...a, leavesOnly, weightsGeneration: s.replaced }, early);
    for (const [lo, hi] of result.nodes) sendPart(lo, hi, 0, early ? s.denseFrom : s.slab.width, result.computeMs);
    this.stats.ranges++;
    this.stats.samples += a.samples.length;
    if (!a.apply) return;
    // Weights that came during the step: the coordinator took it back; they are not ours to update.
    if (s.replaced === replacedBefore) this.applyAlone(s, a, result.nodes);
    else this.log(`worker: step ${a.step} was taken back by the coordinator during its computation; its update is not applied here`);
  }
}
