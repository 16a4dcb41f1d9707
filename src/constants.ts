// Every default, limit and tuning constant of lenet-dist, with units in the name.
// CLI defaults reach users through the --help texts (src/cli/*-args.ts), which docs/cli.md is made from.

/**
 * Global batch: samples per optimizer step. With the learning-rate defaults below this reaches
 * 99% test accuracy within 10 epochs (docs/design.md, "Why these defaults"); see there before changing them.
 */
export const DEFAULT_BATCH_SIZE = 64;
/** Microbatch: the unit of gradient computation and of the fixed-order reduction. */
export const DEFAULT_MICROBATCH = 32;
export const DEFAULT_EPOCHS = 10;
export const DEFAULT_SEED = 1;
export const DEFAULT_LEARNING_RATE = 4e-3;
export const DEFAULT_WARMUP_STEPS = 0;
/** Learning-rate multiplier per epoch after warm-up. */
export const DEFAULT_LR_DECAY = 0.7;
export const DEFAULT_CHECKPOINT_DIR = 'checkpoints';

export const ADAM_BETA1 = 0.9;
export const ADAM_BETA2 = 0.999;
export const ADAM_EPSILON = 1e-7;

/** MNIST training-set pixel mean and standard deviation (of pixels scaled to [0,1]). */
export const MNIST_PIXEL_MEAN = 0.1307;
export const MNIST_PIXEL_STD = 0.3081;
export const IMAGE_SIDE = 28;
export const IMAGE_PIXELS = IMAGE_SIDE * IMAGE_SIDE;
export const NUM_CLASSES = 10;

/** Progress lines when stdout is not a TTY: one every this many milliseconds. */
export const PROGRESS_INTERVAL_MS = 10_000;
/** Progress bar redraws on a TTY at most this often. */
export const PROGRESS_REDRAW_MS = 200;

/**
 * Samples one evaluation task covers (the test set is split into such chunks). Small on purpose:
 * a wasm heap never shrinks. 1,000 images at once grew every thread by about 100 MB, 250 by
 * 18 MB; 100 fit in the heap a training microbatch already needs.
 */
export const EVAL_CHUNK_SAMPLES = 100;

/**
 * Young-generation limit of a compute thread's V8 heap (MB). V8's default lets each thread's
 * nursery grow to tens of MB; a step allocates little that lives, so a small one costs no speed
 * and saves about 30 MB per thread (measured with process RSS, see docs/performance.md, "Memory").
 */
export const THREAD_YOUNG_GENERATION_MB = 12;
/** Largest --microbatch accepted; bigger gains nothing on LeNet-5 and wastes memory. */
export const MAX_MICROBATCH = 4096;
/** Largest number of microbatches per step (bounds the shared gradient slab). */
export const MAX_MICROBATCHES_PER_STEP = 1024;
/** Largest --threads accepted, and largest Hello.threads a worker may announce. */
export const MAX_THREADS = 256;

/** Checkpoint folder names: ckpt-<epoch>-<step>, zero-padded so they sort. */
export const CHECKPOINT_PREFIX = 'ckpt-';
export const CHECKPOINT_STATE_FILE = 'state.json';
export const CHECKPOINT_FORMAT_VERSION = 1;

// ---- remote workers (WebSocket protocol) ----
export const DEFAULT_PORT = 7070;
export const DEFAULT_HOST_NO_TOKEN = '127.0.0.1';
export const DEFAULT_HOST_WITH_TOKEN = '0.0.0.0';
/** Largest WebSocket frame accepted (ws maxPayload): one weights or gradient tensor plus pixels, with room. */
export const MAX_FRAME_BYTES = 8 * 1024 * 1024;
/**
 * Bytes of the digests sharded steps report of sums and weights: SHA-256 cut to its first 128
 * bits, which still takes about 2^64 hashes to find two sets of values with one digest.
 */
export const VALUES_DIGEST_BYTES = 16;
export const HEARTBEAT_INTERVAL_MS = 5_000;
/** A peer silent for this long is considered gone. */
export const HEARTBEAT_TIMEOUT_MS = 20_000;
/**
 * A one-thread worker computes on its main thread; it lets that thread's event loop run at least
 * this often (heartbeats, a goodbye), between microbatches.
 */
export const COMPUTE_YIELD_MS = 100;
/** Time a connecting worker has to answer the challenge. */
export const HANDSHAKE_TIMEOUT_MS = 10_000;
/** Worker reconnect backoff: first delay, growth factor, cap. */
export const RECONNECT_INITIAL_MS = 250;
export const RECONNECT_FACTOR = 2;
export const RECONNECT_MAX_MS = 5_000;
export const DEFAULT_CONNECT_TIMEOUT_S = 60;
/** How often a browser tab's worker reports its state and counts to its page. */
export const TAB_STATUS_INTERVAL_MS = 250;
/** A worker whose compute fails this many times in a row with the same error gives up (exit 9). */
export const MAX_SAME_COMPUTE_FAILURES = 2;
/** Coordinator: how long to wait for workers when no participant is left or --wait-workers is unmet. */
export const DEFAULT_WORKER_WAIT_TIMEOUT_S = 600;
export const AUTH_NONCE_BYTES = 32;
/** Shortest --token accepted: 16 characters (`openssl rand -hex 16` gives 32). */
export const MIN_TOKEN_LENGTH = 16;
/** Tokens from examples and templates, refused: anyone who read them could join. */
export const PLACEHOLDER_TOKENS = ['change-me', 'changeme', 'change_me', 'secret', 'password', 'token', 'example', 'test', 'replace-me', 'your-token-here'];

/**
 * After the first SIGTERM or SIGINT a coordinator has this long to finish its step, checkpoint
 * and say goodbye before it exits anyway (its newest complete checkpoint stays intact). Below
 * docker stop's 10 s; Kubernetes gives 30 s.
 */
export const STOP_GRACE_MS = 8_000;

/** How long the coordinator's endpoint, closing, lets a connection already closing finish its goodbye (server.ts). */
export const CLOSE_FLUSH_MS = 2_000;

// ---- stragglers ----
/** Step deadline for remote workers = factor x median of recent step times, within [floor, cap]. */
export const STEP_DEADLINE_FACTOR = 4;
export const STEP_DEADLINE_FLOOR_MS = 2_000;
export const STEP_DEADLINE_CAP_MS = 60_000;
/** Deadline before any step has finished on time (the first steps also carry start-up costs). */
export const STEP_DEADLINE_INITIAL_MS = 10_000;
/** Step times the median is taken over. */
export const STEP_DEADLINE_HISTORY = 50;
/** --verify-fraction: the fraction of remote ranges recomputed by the coordinator (verify.ts). */
export const DEFAULT_VERIFY_FRACTION = 0.02;
/** A worker late this many steps in a row is dropped. */
export const MAX_CONSECUTIVE_LATE = 3;
/**
 * Sharded steps given up this many times in a row (workers that cannot reach each other, say)
 * end sharding for the run: every later step goes through the coordinator.
 */
export const MAX_ABORTED_SHARDED_STEPS = 3;
