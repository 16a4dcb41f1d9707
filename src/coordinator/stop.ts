// A request to stop a run gracefully (the first SIGTERM or SIGINT): the trainer finishes or gives
// up the current step, checkpoints at the step boundary, tells its workers, and returns. Whatever
// waits for workers is woken and gives up (StoppedError), so a stop never waits for a join.
import { LenetError } from '../errors.js';

/** Thrown where the run waited for something when a stop was requested. */
export class StoppedError extends LenetError {
  constructor(reason: string) {
    super('LENET_STOPPED', `stopped (${reason})`, 0);
  }
}

export class StopRequest {
  reason: string | undefined;
  private readonly listeners: (() => void)[] = [];

  get requested(): boolean {
    return this.reason !== undefined;
  }

  request(reason: string): void {
    if (this.reason !== undefined) return;
    this.reason = reason;
    for (const l of this.listeners.splice(0)) l();
  }

  /** Calls `fn` once a stop is requested (at once if it already was). */
  onRequest(fn: () => void): void {
    if (this.requested) fn();
    else this.listeners.push(fn);
  }

  /** Throws StoppedError if a stop was requested. */
  check(): void {
    if (this.reason !== undefined) throw new StoppedError(this.reason);
  }
}
