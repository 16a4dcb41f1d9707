// The training loop, top to bottom: load data -> build model -> (resume) -> start participants
// -> for each epoch: for each step: plan microbatches -> assign ranges -> reduce in fixed order
// -> optimizer -> publish weights; then evaluate -> checkpoint -> record -> say goodbye.
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { type TrainConfig, RESUME_KEYS } from '../config.js';
import { CheckpointError, UsageError } from '../errors.js';
import { makeDirs } from '../files.js';
import { DEFAULT_PORT } from '../constants.js';
import { initBackend, resolveBackend, threadsFor, type BackendName } from '../backend/select.js';
import { loadMnist, type Mnist } from '../data/mnist.js';
import { batchRange, epochPermutation, stepsPerEpoch, type BatchPlan } from '../data/sampler.js';
import { denseOffset, modelSpec, type ModelSpec } from '../model/architectures.js';
import { initWeights, weightsSha256 } from '../model/weights.js';
import { createSharedSlab } from '../reduce/ordered-sum.js';
import { startPool, type ComputePool } from '../compute/pool.js';
import { listCheckpoints, loadNewestCheckpoint, pruneMidEpoch, saveCheckpoint, type Progress } from '../checkpoint/store.js';
import { MetricsRecorder, type EpochRecord, type RunRecord } from '../metrics/recorder.js';
import { Progress as ProgressView } from '../metrics/progress.js';
import { encode, encodeTensorFrame } from '../protocol/codec.js';
import { VersionedFrame } from '../protocol/frames.js';
import { CLOSE_NORMAL, CLOSE_SHUTTING_DOWN } from '../protocol/errors.js';
import { StopRequest, StoppedError } from './stop.js';
import { createOptimizer, type Optimizer } from '../optim/optimizer.js';
import { evaluate } from './evaluate.js';
import { LocalParticipant, Membership } from './participants.js';
import { StepDeadline, trainStep, type StepContext, type StepTiming } from './step.js';
import { ShardPlanner } from './sharded-step.js';
import { makeJoinProbe } from './probe.js';
import { Verifier } from './verify.js';
import { PACKAGE_VERSION } from '../version.js';
import type { StagedWeights } from './step-update.js';
import { RemoteWorker } from './remote-worker.js';
import { CoordinatorServer, PortInUseError } from './server.js';
import { httpHandler } from './http.js';
import { RunState, STEP_PHASES } from '../metrics/state.js';
import type { Log } from '../metrics/log.js';
import { prometheusRegistry } from '../metrics/prometheus.js';

export interface TrainResult {
  epochs: EpochRecord[];
  weightsSha256: string;
  checkpoint?: string;
  /** A stop was requested (StopRequest): the run was checkpointed at a step boundary and left unfinished. */
  stopped: boolean;
}


function describeConfig(config: TrainConfig, spec: ModelSpec, data: Mnist, backend: BackendName, plan: BatchPlan): string[] {
  const steps = stepsPerEpoch(plan);
  return [
    `lenet-dist: arch ${spec.arch} (${spec.activation}), ${spec.size.toLocaleString('en-US')} trainable parameters, backend ${backend}, ${config.threads} local thread(s)`,
    `data: ${data.train.count} train / ${data.test.count} test samples from ${data.dir} (sha256 ${data.sha256.slice(0, 16)}...)`,
    `batch: global ${plan.batchSize} = up to ${Math.ceil(plan.batchSize / plan.microbatch)} microbatches of ${plan.microbatch}; ${steps} steps per epoch; ${config.epochs} epochs`,
    `optimizer: ${config.optimizer} lr ${config.lr} (warm-up ${config.warmupSteps} steps, x${config.lrDecay} per epoch), seed ${config.seed}, distortions ${config.distort ? 'on' : 'off'}, gradients ${config.gradDType}`,
    `checkpoints: ${config.checkpointDir}${config.metricsOut ? `; metrics: ${config.metricsOut}` : ''}`,
  ];
}

function checkResumable(saved: Record<string, unknown>, config: TrainConfig, trainSamples: number, datasetSha256: string, path: string): void {
  const wanted: Record<string, unknown> = { ...config, trainSamples, datasetSha256 };
  for (const key of [...RESUME_KEYS, 'trainSamples', 'datasetSha256'] as const) {
    if (saved[key] !== wanted[key]) {
      throw new CheckpointError(
        `${path} was written with ${key} = ${JSON.stringify(saved[key])}, but this run has ${JSON.stringify(wanted[key])}; ` +
          `resume with the same settings, or start afresh with --fresh or another --checkpoint-dir`,
      );
    }
  }
}

/** Settings saved with checkpoints: the resume keys, never secrets. */
function savedSettings(config: TrainConfig, data: Mnist): Record<string, unknown> {
  const saved: Record<string, unknown> = { trainSamples: data.train.count, datasetSha256: data.sha256, epochs: config.epochs };
  for (const key of RESUME_KEYS) saved[key] = config[key];
  return saved;
}

/** Trains as `config` says; `stop` ends it early, checkpointed at a step boundary (stop.ts). */
export async function train(config: TrainConfig, log: Log, stop: StopRequest = new StopRequest()): Promise<TrainResult> {
  const started = performance.now();
  const data = loadMnist({ dataDir: config.dataDir, trainLimit: config.trainLimit, testLimit: config.testLimit });
  if (data.train.count === 0 || data.test.count === 0) throw new UsageError('--train-limit and --test-limit must leave at least one sample');
  const spec = modelSpec(config.arch, config.activation);
  // The compute backend runs in the threads. The main thread only exports checkpoints then, which
  // the cpu backend does without a wasm heap of its own; with --threads 0 it also evaluates.
  const backend = await resolveBackend(config.backend, log);
  await initBackend(config.threads > 0 ? 'cpu' : backend);
  config = { ...config, threads: threadsFor(backend, config.threads, log) };
  const plan: BatchPlan = { batchSize: config.batchSize, microbatch: config.microbatch, samples: data.train.count };
  const steps = stepsPerEpoch(plan);

  // Start or resume.
  const weights = new Float32Array(new SharedArrayBuffer(4 * spec.size));
  let progress: Progress = { epoch: 0, step: 0, globalStep: 0 };
  let history: EpochRecord[] = [];
  let optimizer: Optimizer;
  let elapsedBefore = 0;
  // Made now, so that a folder that cannot be made fails at once, not after the first epoch.
  try {
    makeDirs(config.checkpointDir);
  } catch (err) {
    throw new UsageError(`--checkpoint-dir ${config.checkpointDir}: cannot create it (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  if (config.fresh) {
    for (const path of listCheckpoints(config.checkpointDir)) rmSync(path, { recursive: true, force: true });
  }
  const resumed = config.resume ? loadNewestCheckpoint(config.checkpointDir, spec) : undefined;
  if (resumed) {
    checkResumable(resumed.state.config, config, data.train.count, data.sha256, resumed.path);
    weights.set(resumed.weights);
    optimizer = createOptimizer(config.optimizer, spec.size, resumed.optimizer);
    progress = resumed.state.progress;
    history = resumed.state.metrics as EpochRecord[];
    elapsedBefore = history.length > 0 ? history[history.length - 1].elapsedSeconds : 0;
    log(`resumed from ${resumed.path}: ${progress.epoch} epoch(s) and ${progress.step} step(s) done, weights ${resumed.state.weightsSha256.slice(0, 16)}...`);
  } else {
    if (config.resume) log(`no checkpoint in ${config.checkpointDir}; starting from scratch`);
    else if (listCheckpoints(config.checkpointDir).length > 0) {
      throw new UsageError(
        `${config.checkpointDir} already holds checkpoints of an earlier run; pass --resume to continue it, ` +
          `--fresh to delete them, or another --checkpoint-dir`,
      );
    }
    weights.set(initWeights(spec, config.seed));
    optimizer = createOptimizer(config.optimizer, spec.size);
  }
  // Before any thread or socket exists, so a path that cannot be written fails with nothing to undo.
  const recorder = new MetricsRecorder(config.metricsOut, resumed !== undefined);
  if (resumed) recorder.reconcile(history);
  for (const line of describeConfig(config, spec, data, backend, plan)) log(line);

  // Participants: local threads, then remote workers as they join.
  const slab = createSharedSlab(spec.size, Math.ceil(config.batchSize / config.microbatch));
  const membership = new Membership(log, config.workerWaitTimeoutS * 1000, stop);
  // The next version's weights while a step runs (step-update.ts).
  const staged: StagedWeights = { version: -1, weights: new Float32Array(spec.size) };
  let pool: ComputePool | undefined;
  if (config.threads > 0) {
    // The optimizer's slots are shared, so that the threads of a step they compute whole make its update themselves.
    const update = { optimizer: config.optimizer, slots: optimizer.state().slots };
    pool = await startPool(config.threads, { spec, backend, seed: config.seed, distort: config.distort, train: data.train, test: data.test, weights, slab, gradDType: config.gradDType, update });
    // The dense layers' update overlaps the convolutions' backward pass where a core is free for it.
    membership.add(new LocalParticipant(pool, slab, config.threads < availableParallelism() ? denseOffset(spec) : undefined));
  }
  // What a joining worker must compute to these bits before it gets work.
  const probe = await makeJoinProbe({ pool, slab, spec, data, weights, version: progress.globalStep, seed: config.seed, distort: config.distort, gradDType: config.gradDType });
  // The weights of each version are encoded once, into reused memory, for every worker, in two
  // parts: the convolutions' go with the assignment, the dense layers' after it or, updated
  // early, during the step before (step-update.ts), from the staged copy.
  const split = denseOffset(spec);
  const weightsPart = (from: number, to: number): VersionedFrame =>
    new VersionedFrame((version, alloc) => {
      const source = version === staged.version ? staged.weights : weights;
      return encodeTensorFrame({ type: 'weights', version, offset: from, values: source.subarray(from, to) }, 'float32', alloc);
    });
  const convWeights = weightsPart(0, split);
  const denseWeights = weightsPart(split, spec.size);
  const remotes = new Set<RemoteWorker>();
  /** `name@host` of the workers ejected by verification (verify.ts). */
  const ejected = new Set<string>();
  // What the coordinator's link carries: with the star it grows with the workers, sharded it does not.
  const traffic = { sent: 0, received: 0 };
  const state = new RunState();
  state.participants = () => [...membership.seen.values()].map((p) => p.view());
  const server = new CoordinatorServer({
    onHttp: httpHandler(state, prometheusRegistry(state)),
    onReject: (reason) => state.reject(reason),
    host: config.host,
    port: config.port ?? DEFAULT_PORT,
    token: config.token,
    tlsCert: config.tlsCert,
    tlsKey: config.tlsKey,
    config: {
      arch: spec.arch,
      activation: spec.activation,
      seed: config.seed,
      distort: config.distort,
      batchSize: config.batchSize,
      microbatch: config.microbatch,
      trainSamples: data.train.count,
      datasetSha256: data.sha256,
      paramCount: spec.size,
      gradDType: config.gradDType,
      optimizer: config.optimizer,
      runId: randomBytes(16).toString('hex'),
      denseFrom: denseOffset(spec),
    },
    log,
    // A worker ejected for what it sent (verify.ts) may not join again under the
    // same name from the same host (a deterrent, not a defence: both are the worker's to choose).
    refuse: (hello, host) => (ejected.has(`${hello.name}@${host}`) ? `${hello.name}@${host} was ejected from this run: what it sent failed verification` : undefined),
    onWorker: (ws, hello, info) => {
      const worker = new RemoteWorker(ws, {
        workerId: info.workerId,
        name: hello.name,
        address: info.address,
        browser: info.browser,
        threads: hello.threads,
        peerUrl: hello.peerUrl,
        traffic,
        probe: { frame: probe.frame(info.sendPixels), digest: probe.digest },
        computesWith: `the ${backend} backend of lenet-dist ${PACKAGE_VERSION}`,
        says: `the ${hello.backend || 'unnamed'} backend of lenet-dist ${hello.packageVersion || '(no version)'}`,
        sendPixels: info.sendPixels,
        gradDType: config.gradDType,
        slab,
        partSplit: split,
        data,
        weightsFrame: (version, part) => (part === 'conv' ? convWeights : denseWeights).take(version),
        optimizerFrame: (version) => encode({ type: 'optimizer_state', version, ...optimizer.state() }),
        log,
        onViolation: (reason) => state.reject(reason),
        onEject: () => ejected.add(`${hello.name}@${info.address.replace(/:\d+$/, '')}`),
        onReady: (w) => {
          membership.add(w);
          log(`${w.describe()} joined${info.sendPixels ? ' without this dataset (pixels will be sent)' : ''}; it takes part from the next step`, { event: 'worker_joined', worker: w.id, address: info.address, threads: w.threads });
        },
        onClose: (w, reason) => {
          remotes.delete(w);
          membership.remove(w);
          log(`${w.describe()} left: ${reason}`, { event: 'worker_left', worker: w.id, reason });
        },
      });
      remotes.add(worker);
    },
  });
  let url: string;
  try {
    url = await server.listen().catch(async (err: unknown) => {
      if (config.port !== undefined || !(err instanceof PortInUseError)) throw err;
      log(`port ${DEFAULT_PORT} is taken; listening on a free port instead (pass --port to choose)`);
      return server.listen(0);
    });
  } catch (err) {
    await pool?.close(); // its threads would keep the process alive after the error
    throw err;
  }
  log(`listening for workers on ${url}${config.token === undefined ? ' (no token: loopback only unless --allow-no-token)' : ' (token required)'}`);
  log(`dashboard: ${server.httpUrl}/   metrics: ${server.httpUrl}/metrics`);
  log(`browser tabs join at ${server.httpUrl}/join${config.token === undefined ? '#open' : '#token=<the token>'}`);
  state.info = {
    arch: spec.arch,
    params: spec.size,
    backend,
    threads: config.threads,
    globalBatch: config.batchSize,
    microbatch: config.microbatch,
    seed: config.seed,
    epochs: config.epochs,
    stepsPerEpoch: steps,
    trainSamples: data.train.count,
    url,
  };

  const verifier =
    config.verifyFraction > 0
      ? await Verifier.start(config.verifyFraction, slab, pool, { spec, backend, seed: config.seed, distort: config.distort, train: data.train, test: data.test, weights, slab, gradDType: config.gradDType })
      : undefined;
  if (verifier) state.verification = () => ({ checked: verifier.checked, failed: verifier.failed });
  const view = new ProgressView(
    process.stderr,
    !config.quiet,
    config.logFormat === 'json' ? (text, s) => log(`progress: ${text}`, { event: 'progress', epoch: s.epoch, done: s.done, total: s.total, samplesPerSecond: s.samplesPerSecond, loss: s.loss }) : undefined,
  );
  const ctx: StepContext = {
    plan,
    membership,
    url,
    slab,
    weights,
    staged,
    split,
    gradDType: config.gradDType,
    meanGrad: new Float32Array(spec.size),
    optimizer,
    schedule: { lr: config.lr, decayPerEpoch: config.lrDecay, warmupSteps: config.warmupSteps, stepsPerEpoch: steps },
    deadline: new StepDeadline(config.stepDeadlineS * 1000),
    shards: config.allreduce === 'sharded' ? new ShardPlanner(spec.size, (line) => log(line)) : undefined,
    verifier,
    log: (line, fields) => {
      view.clear();
      log(line, fields);
    },
  };
  let checkpoint: string | undefined;
  /** The newest checkpoint of this process, and the global step and epoch it holds. */
  let saved: { path: string; globalStep: number; epoch: number } | undefined;
  // The run as it stands: weights, optimizer state, progress and the epoch records so far.
  const saveNow = async (): Promise<string> => {
    const path = await saveCheckpoint({ dir: config.checkpointDir, spec, weights, optimizer: optimizer.state(), progress, config: savedSettings(config, data), metrics: history });
    saved = { path, globalStep: progress.globalStep, epoch: progress.epoch };
    return path;
  };
  let stopped = false;
  try {
    state.phase = 'waiting';
    await membership.waitFor(config.waitWorkers, url);
    state.phase = 'training';
    const runRecord: RunRecord = {
      type: 'run',
      arch: spec.arch,
      activation: spec.activation,
      params: spec.size,
      backend,
      threads: config.threads,
      remoteWorkers: membership.remoteCount(),
      globalBatch: config.batchSize,
      microbatch: config.microbatch,
      optimizer: config.optimizer,
      lr: config.lr,
      seed: config.seed,
      distort: config.distort,
      epochs: config.epochs,
      stepsPerEpoch: steps,
      trainSamples: data.train.count,
      testSamples: data.test.count,
      datasetSha256: data.sha256,
      resumedFrom: resumed ? { epoch: progress.epoch, step: progress.step } : null,
    };
    recorder.write(runRecord);
    for (let epoch = progress.epoch; epoch < config.epochs; epoch++) {
      const perm = epochPermutation(config.seed, epoch, data.train.count);
      membership.resetCounters();
      // A mid-epoch checkpoint carries the epoch's running sums, so its record comes out the same.
      let trainMs = progress.partial?.trainMs ?? 0;
      let lossSum = progress.partial?.lossSum ?? 0;
      let seen = progress.partial?.samples ?? 0;
      // Summed step timings of this process's steps of the epoch, averaged into its record.
      let timedSteps = 0;
      const trafficBefore = { ...traffic };
      const timeSums = Object.fromEntries(STEP_PHASES.map((k) => [k, 0])) as StepTiming;
      for (let step = progress.step; step < steps; step++) {
        stop.check();
        const t0 = performance.now();
        const r = await trainStep(ctx, perm, epoch, step, progress.globalStep);
        trainMs += performance.now() - t0;
        lossSum += r.lossSum;
        seen += r.count;
        state.recordStep({ step: progress.globalStep, epoch, loss: r.lossSum / r.count, samples: r.count, samplesPerSecond: (r.count / r.timing.step) * 1000, timing: r.timing, at: Date.now() });
        timedSteps++;
        for (const k of STEP_PHASES) timeSums[k] += r.timing[k];
        progress = { epoch, step: step + 1, globalStep: progress.globalStep + 1, partial: { lossSum, samples: seen, trainMs } };
        view.update({ epoch: epoch + 1, epochs: config.epochs, done: batchRange(plan, step).start + r.count, total: data.train.count, samplesPerSecond: (seen / trainMs) * 1000, loss: lossSum / seen });
        if (config.checkpointEverySteps > 0 && progress.globalStep % config.checkpointEverySteps === 0 && step + 1 < steps) {
          const path = await saveNow();
          pruneMidEpoch(config.checkpointDir, path);
        }
      }
      view.clear();
      state.phase = 'evaluating';
      const ev = await evaluate(pool, spec, data, weights, progress.globalStep);
      progress = { epoch: epoch + 1, step: 0, globalStep: progress.globalStep };
      const digest = weightsSha256(weights);
      const record: EpochRecord = {
        type: 'epoch',
        epoch: epoch + 1,
        trainLoss: seen > 0 ? lossSum / seen : NaN,
        testLoss: ev.loss,
        testAccuracy: ev.accuracy,
        samplesPerSecond: trainMs > 0 ? (seen / trainMs) * 1000 : 0,
        trainSeconds: trainMs / 1000,
        elapsedSeconds: elapsedBefore + (performance.now() - started) / 1000,
        globalStep: progress.globalStep,
        weightsSha256: digest,
        remoteWorkers: membership.remoteCount(),
        stepTimeMs: Object.fromEntries(STEP_PHASES.map((k) => [k, timedSteps > 0 ? timeSums[k] / timedSteps : 0])),
        // Evaluation and checkpoints move no worker bytes; heartbeats and joins are in it.
        coordinatorBytesPerStep: {
          sent: timedSteps > 0 ? (traffic.sent - trafficBefore.sent) / timedSteps : 0,
          received: timedSteps > 0 ? (traffic.received - trafficBefore.received) / timedSteps : 0,
        },
        participants: [...membership.seen.values()].map((p) => ({ id: p.id, kind: p.kind, name: p.name, threads: p.threads, microbatches: p.microbatchesDone })),
        verification: state.verification(),
      };
      history = [...history, record];
      state.recordEpoch(record);
      state.phase = 'training';
      checkpoint = await saveNow();
      pruneMidEpoch(config.checkpointDir);
      recorder.write(record);
      log(
        `epoch ${record.epoch}/${config.epochs}: train loss ${record.trainLoss.toFixed(4)}, test accuracy ${(record.testAccuracy * 100).toFixed(2)}%, ` +
          `test loss ${record.testLoss.toFixed(4)}, ${record.samplesPerSecond.toFixed(0)} samples/s, ${record.elapsedSeconds.toFixed(1)} s elapsed, weights ${digest.slice(0, 16)}...`,
        { event: 'epoch', epoch: record.epoch, trainLoss: record.trainLoss, testAccuracy: record.testAccuracy, samplesPerSecond: record.samplesPerSecond, weightsSha256: digest },
      );
    }
    state.phase = 'done';
  } catch (err) {
    if (!(err instanceof StoppedError)) {
      state.phase = 'failed';
      throw err;
    }
    // At a step boundary: the weights and optimizer are those of `progress` (a step updates them
    // only when it completes), so this checkpoint resumes to the uninterrupted run's bits.
    view.clear();
    state.phase = 'stopping';
    stopped = true;
    if (saved?.globalStep !== progress.globalStep || saved.epoch !== progress.epoch) {
      log(`stopping: checkpointing step ${progress.globalStep} (epoch ${progress.epoch + 1}, step ${progress.step} of ${steps})`, { event: 'stopping', step: progress.globalStep });
      const path = await saveNow();
      if (progress.step > 0) pruneMidEpoch(config.checkpointDir, path);
    }
    checkpoint = saved?.path ?? listCheckpoints(config.checkpointDir).at(-1);
    state.phase = 'stopped';
    log(`stopped (${stop.reason}): continue with the same command and --resume${checkpoint ? `, from ${checkpoint}` : ''}`, { event: 'stopped', checkpoint });
  } finally {
    view.clear();
    // Stopped, the workers keep trying to reconnect (--connect-timeout): a resumed coordinator gets them back.
    for (const w of [...remotes]) {
      if (stopped) w.close(CLOSE_SHUTTING_DOWN, 'coordinator stopping; it will resume from its checkpoint', { runComplete: false });
      else w.close(CLOSE_NORMAL, 'run complete', { runComplete: true });
    }
    await server.close();
    await pool?.close();
  }
  return { epochs: history, weightsSha256: weightsSha256(weights), checkpoint, stopped };
}
