// Progress while an epoch runs: a redrawn bar on a TTY, a plain line every PROGRESS_INTERVAL_MS
// otherwise (logs, CI), nothing with --quiet. With --log-format json the line is a log record
// (`line`), so a JSON log holds nothing but JSON.
import { PROGRESS_INTERVAL_MS, PROGRESS_REDRAW_MS } from '../constants.js';

export interface ProgressSample {
  epoch: number;
  epochs: number;
  done: number;
  total: number;
  samplesPerSecond: number;
  loss: number;
}

const BAR_WIDTH = 24;

export class Progress {
  private last = 0;
  private drawn = false;

  constructor(
    private readonly stream: NodeJS.WriteStream,
    private readonly enabled: boolean,
    /** Writes the periodic line as a log record instead (no bar then, even on a TTY). */
    private readonly line?: (text: string, sample: ProgressSample) => void,
  ) {}

  update(s: ProgressSample): void {
    if (!this.enabled) return;
    const now = Date.now();
    const tty = this.stream.isTTY === true && !this.line;
    if (now - this.last < (tty ? PROGRESS_REDRAW_MS : PROGRESS_INTERVAL_MS) && s.done < s.total) return;
    this.last = now;
    const frac = s.total > 0 ? s.done / s.total : 1;
    const eta = s.samplesPerSecond > 0 ? Math.round((s.total - s.done) / s.samplesPerSecond) : 0;
    const text =
      `epoch ${s.epoch}/${s.epochs} ${(frac * 100).toFixed(0).padStart(3)}% ${s.done}/${s.total} ` +
      `${s.samplesPerSecond.toFixed(0)} samples/s loss ${s.loss.toFixed(4)} eta ${eta}s`;
    if (tty) {
      const filled = Math.round(frac * BAR_WIDTH);
      this.stream.write(`\r[${'#'.repeat(filled)}${'.'.repeat(BAR_WIDTH - filled)}] ${text}\x1b[K`);
      this.drawn = true;
    } else if (s.done < s.total) {
      if (this.line) this.line(text, s);
      else this.stream.write(`progress: ${text}\n`);
    }
  }

  /** Clears the bar before a normal line is printed. */
  clear(): void {
    if (this.drawn) this.stream.write('\r\x1b[K');
    this.drawn = false;
  }
}
