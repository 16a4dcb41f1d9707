// Errors a user can cause or fix. Each has a stable code (listed in the README and docs/cli.md) and an exit code;
// the CLI prints `error <code>: <message>` and never a stack trace for these.

export const EXIT_USAGE = 2;
export const EXIT_CHECKPOINT = 3;
export const EXIT_BACKEND = 4;
/** Stopped by SIGTERM or SIGINT after a checkpoint at a step boundary: continue with --resume. */
export const EXIT_STOPPED = 8;
/** A compute failure that the run cannot get past: a worker's twice in a row, or a coordinator thread's mid-update. */
export const EXIT_COMPUTE_FAILED = 9;

export class LenetError extends Error {
  readonly code: string;
  readonly exitCode: number;
  constructor(code: string, message: string, exitCode: number) {
    super(message);
    this.name = 'LenetError';
    this.code = code;
    this.exitCode = exitCode;
  }
}

/** A command-line flag or value the user gave is not acceptable. */
export class UsageError extends LenetError {
  constructor(message: string) {
    super('LENET_ERR_USAGE', message, EXIT_USAGE);
  }
}

/** An MNIST file is missing, truncated or not an IDX file of the expected kind. */
export class DataError extends LenetError {
  constructor(message: string) {
    super('LENET_ERR_DATA', message, EXIT_USAGE);
  }
}

/** A checkpoint is missing, partial, corrupt or belongs to a different run configuration. */
export class CheckpointError extends LenetError {
  constructor(message: string) {
    super('LENET_ERR_CHECKPOINT', message, EXIT_CHECKPOINT);
  }
}

/** The requested compute backend cannot be loaded on this machine. */
export class BackendError extends LenetError {
  constructor(message: string) {
    super('LENET_ERR_BACKEND', message, EXIT_BACKEND);
  }
}

/** Training produced a non-finite loss or gradient: the model has diverged. */
export class DivergedError extends LenetError {
  constructor(step: number) {
    super('LENET_ERR_DIVERGED', `the loss became non-finite at step ${step}; lower --lr (or raise --batch-size) and start again`, 1);
  }
}

/**
 * Errors of the disk or the folder, not of lenet-dist: a full disk, no permission, a read-only
 * or failing file system. They are the user's to fix, and said in one line.
 */
const WRITE_ERRORS = new Set(['ENOSPC', 'EDQUOT', 'EACCES', 'EPERM', 'EROFS', 'EIO', 'ENOTDIR', 'EEXIST', 'EMFILE', 'ENFILE']);

/** A file-system error as a user error, when it is one of WRITE_ERRORS. */
export function writeError(err: unknown, what: string): CheckpointError | undefined {
  const code = (err as NodeJS.ErrnoException)?.code;
  if (code === undefined || !WRITE_ERRORS.has(code)) return undefined;
  const cause = (err as Error).message.replace(/^\w+: /, '').replace(/, \w+( '.*')?$/, '');
  return new CheckpointError(`cannot write ${what} (${code}: ${cause})`);
}
