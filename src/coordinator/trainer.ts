// The training loop, top to bottom: load data -> build model -> (resume) -> for each epoch:
// for each step: plan microbatches -> assign to threads -> reduce in fixed order -> optimizer
// -> publish weights; then evaluate -> checkpoint -> record.
import { existsSync, rmSync } from 'node:fs';
import { type TrainConfig, RESUME_KEYS } from '../config.js';
import { EVAL_CHUNK_SAMPLES } from '../constants.js';
import { CheckpointError, UsageError } from '../errors.js';
import { initBackend, type BackendName } from '../backend/select.js';
import { loadMnist, type Mnist } from '../data/mnist.js';
import { batchRange, epochPermutation, microbatchCount, stepsPerEpoch, type BatchPlan } from '../data/sampler.js';
import { modelSpec, type ModelSpec } from '../model/architectures.js';
import { initWeights, weightsSha256 } from '../model/weights.js';
import { createSharedSlab, reduceInPlace, type Slab } from '../reduce/ordered-sum.js';
import { ComputePool } from '../compute/pool.js';
import { listCheckpoints, loadNewestCheckpoint, saveCheckpoint, type Progress } from '../checkpoint/store.js';
import { MetricsRecorder, type EpochRecord, type RunRecord } from '../metrics/recorder.js';
import { Progress as ProgressView } from '../metrics/progress.js';
import { createOptimizer, type Optimizer } from './optimizer.js';
import { learningRate, type ScheduleConfig } from './schedule.js';
import { splitEvenly } from './assign.js';

export interface TrainResult {
  epochs: EpochRecord[];
  weightsSha256: string;
  checkpoint?: string;
}

export type Log = (line: string) => void;

interface StepContext {
  config: TrainConfig;
  plan: BatchPlan;
  pool: ComputePool;
  slab: Slab;
  weights: Float32Array;
  meanGrad: Float32Array;
  optimizer: Optimizer;
  schedule: ScheduleConfig;
}

/** Runs one synchronous step; returns the batch's loss sum and sample count. */
async function trainStep(ctx: StepContext, perm: Uint32Array, epoch: number, step: number, globalStep: number): Promise<{ lossSum: number; count: number }> {
  const { start, count } = batchRange(ctx.plan, step);
  const m = ctx.plan.microbatch;
  const n = microbatchCount(ctx.plan, count);
  const ranges = splitEvenly(n, ctx.pool.threads);
  const replies = await Promise.all(
    ranges.map(([lo, hi]) => {
      const from = start + lo * m;
      const to = start + Math.min(hi * m, count);
      const sizes: number[] = [];
      for (let j = lo; j < hi; j++) sizes.push(Math.min(m, count - j * m));
      const positions = new Uint32Array(to - from);
      for (let i = 0; i < positions.length; i++) positions[i] = from + i;
      return ctx.pool.gradients({
        type: 'gradients',
        weightsVersion: globalStep,
        epoch,
        microbatches: n,
        lo,
        hi,
        samples: perm.slice(from, to),
        positions,
        sizes,
      });
    }),
  );
  const ready = new Set(replies.flatMap((r) => r.nodes.map(([lo, hi]) => `${lo}:${hi}`)));
  reduceInPlace(ctx.slab, 0, n, (lo, hi) => ready.has(`${lo}:${hi}`));
  // Gradient semantics: threads return sums over examples; the update uses the batch mean.
  const sum = ctx.slab.grads;
  const total = ctx.slab.count[0];
  for (let i = 0; i < ctx.meanGrad.length; i++) ctx.meanGrad[i] = sum[i] / total;
  ctx.optimizer.apply(ctx.weights, ctx.meanGrad, learningRate(ctx.schedule, globalStep));
  return { lossSum: ctx.slab.loss[0], count: total };
}

async function evaluate(pool: ComputePool, version: number, testCount: number): Promise<{ accuracy: number; loss: number; confusion: number[] }> {
  const tasks = [];
  for (let from = 0; from < testCount; from += EVAL_CHUNK_SAMPLES) {
    tasks.push(pool.evaluate({ type: 'eval', weightsVersion: version, from, to: Math.min(testCount, from + EVAL_CHUNK_SAMPLES) }));
  }
  const replies = await Promise.all(tasks);
  let correct = 0;
  let loss = 0;
  const confusion = new Array<number>(100).fill(0);
  for (const r of replies) {
    correct += r.correct;
    loss += r.lossSum;
    r.confusion.forEach((c, i) => (confusion[i] += c));
  }
  return { accuracy: correct / testCount, loss: loss / testCount, confusion };
}

function describeConfig(config: TrainConfig, spec: ModelSpec, data: Mnist, backend: BackendName, plan: BatchPlan): string[] {
  const steps = stepsPerEpoch(plan);
  return [
    `lenet-dist: arch ${spec.arch} (${spec.activation}), ${spec.size.toLocaleString('en-US')} trainable parameters, backend ${backend}, ${config.threads} thread(s)`,
    `data: ${data.train.count} train / ${data.test.count} test samples from ${data.dir} (sha256 ${data.sha256.slice(0, 16)}...)`,
    `batch: global ${plan.batchSize} = up to ${Math.ceil(plan.batchSize / plan.microbatch)} microbatches of ${plan.microbatch}; ${steps} steps per epoch; ${config.epochs} epochs`,
    `optimizer: ${config.optimizer} lr ${config.lr} (warm-up ${config.warmupSteps} steps, x${config.lrDecay} per epoch), seed ${config.seed}, distortions ${config.distort ? 'on' : 'off'}`,
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

export async function train(config: TrainConfig, log: Log): Promise<TrainResult> {
  const started = performance.now();
  const data = loadMnist({ dataDir: config.dataDir, trainLimit: config.trainLimit, testLimit: config.testLimit });
  if (data.train.count === 0 || data.test.count === 0) throw new UsageError('--train-limit and --test-limit must leave at least one sample');
  const spec = modelSpec(config.arch, config.activation);
  const backend = await initBackend(config.backend);
  const plan: BatchPlan = { batchSize: config.batchSize, microbatch: config.microbatch, samples: data.train.count };
  const steps = stepsPerEpoch(plan);
  const savedConfig = { ...config, trainSamples: data.train.count, datasetSha256: data.sha256 };

  // Start or resume.
  const weights = new Float32Array(new SharedArrayBuffer(4 * spec.size));
  let progress: Progress = { epoch: 0, step: 0, globalStep: 0 };
  let history: EpochRecord[] = [];
  let optimizer: Optimizer;
  let elapsedBefore = 0;
  if (config.fresh && existsSync(config.checkpointDir)) {
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
  for (const line of describeConfig(config, spec, data, backend, plan)) log(line);

  const maxMicrobatches = Math.ceil(config.batchSize / config.microbatch);
  const slab = createSharedSlab(spec.size, maxMicrobatches);
  const pool = new ComputePool(config.threads, {
    arch: spec.arch,
    activation: spec.activation,
    backend,
    seed: config.seed,
    distort: config.distort,
    trainImages: data.train.images,
    trainLabels: data.train.labels,
    testImages: data.test.images,
    testLabels: data.test.labels,
    weights,
    slabGrads: slab.grads,
    slabLoss: slab.loss,
    slabCount: slab.count,
    slabSlots: slab.slots,
  });
  await pool.ready();
  const recorder = new MetricsRecorder(config.metricsOut, resumed !== undefined);
  const runRecord: RunRecord = {
    type: 'run',
    arch: spec.arch,
    activation: spec.activation,
    params: spec.size,
    backend,
    threads: config.threads,
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

  const ctx: StepContext = {
    config,
    plan,
    pool,
    slab,
    weights,
    meanGrad: new Float32Array(spec.size),
    optimizer,
    schedule: { lr: config.lr, decayPerEpoch: config.lrDecay, warmupSteps: config.warmupSteps, stepsPerEpoch: steps },
  };
  const view = new ProgressView(process.stderr, !config.quiet);
  let checkpoint: string | undefined;
  try {
    for (let epoch = progress.epoch; epoch < config.epochs; epoch++) {
      const perm = epochPermutation(config.seed, epoch, data.train.count);
      let trainMs = 0;
      let lossSum = 0;
      let seen = 0;
      for (let step = progress.step; step < steps; step++) {
        const t0 = performance.now();
        const r = await trainStep(ctx, perm, epoch, step, progress.globalStep);
        trainMs += performance.now() - t0;
        progress = { epoch, step: step + 1, globalStep: progress.globalStep + 1 };
        lossSum += r.lossSum;
        seen += r.count;
        view.update({ epoch: epoch + 1, epochs: config.epochs, done: batchRange(plan, step).start + r.count, total: data.train.count, samplesPerSecond: (seen / trainMs) * 1000, loss: lossSum / seen });
      }
      view.clear();
      const ev = await evaluate(pool, progress.globalStep, data.test.count);
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
      };
      history = [...history, record];
      checkpoint = await saveCheckpoint({ dir: config.checkpointDir, spec, weights, optimizer: optimizer.state(), progress, config: savedConfig, metrics: history });
      recorder.write(record);
      log(
        `epoch ${record.epoch}/${config.epochs}: train loss ${record.trainLoss.toFixed(4)}, test accuracy ${(record.testAccuracy * 100).toFixed(2)}%, ` +
          `test loss ${record.testLoss.toFixed(4)}, ${record.samplesPerSecond.toFixed(0)} samples/s, ${record.elapsedSeconds.toFixed(1)} s elapsed, weights ${digest.slice(0, 16)}...`,
      );
    }
  } finally {
    view.clear();
    await pool.close();
  }
  return { epochs: history, weightsSha256: weightsSha256(weights), checkpoint };
}
