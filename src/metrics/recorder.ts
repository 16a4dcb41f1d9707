// Machine-readable results: JSON lines, one `run` record then one `epoch` record per epoch.
// Each record is appended and flushed as it happens, so a crash loses nothing already reported.
import { appendFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { makeDirs } from '../files.js';
import { dirname } from 'node:path';
import { CheckpointError, UsageError, writeError } from '../errors.js';

export interface RunRecord {
  type: 'run';
  arch: string;
  params: number;
  backend: string;
  threads: number;
  globalBatch: number;
  microbatch: number;
  seed: number;
  trainSamples: number;
  testSamples: number;
  datasetSha256: string;
  [key: string]: unknown;
}

export interface EpochRecord {
  type: 'epoch';
  epoch: number;
  trainLoss: number;
  testLoss: number;
  testAccuracy: number;
  samplesPerSecond: number;
  trainSeconds: number;
  elapsedSeconds: number;
  weightsSha256: string;
  [key: string]: unknown;
}

export class MetricsRecorder {
  /** Creates the file's folder if needed; a path that cannot be written is the user's to fix. */
  constructor(private readonly path: string | undefined, append: boolean) {
    if (!path) return;
    try {
      makeDirs(dirname(path));
      if (append) appendFileSync(path, '');
      else writeFileSync(path, '');
    } catch (err) {
      throw new UsageError(`--metrics-out ${path}: cannot write there (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
    }
  }

  /**
   * After a resume: makes the file's epoch records agree with the checkpoint's history. A crash
   * can fall between writing a checkpoint and its record (record missing), or after a record
   * whose checkpoint is then not the one resumed from (record to be redone).
   */
  reconcile(history: EpochRecord[]): void {
    if (!this.path) return;
    const lines = existsSync(this.path) ? readFileSync(this.path, 'utf8').split('\n').filter((l) => l.trim() !== '') : [];
    const last = history.length > 0 ? history[history.length - 1].epoch : 0;
    const kept: string[] = [];
    const present = new Set<number>();
    for (const line of lines) {
      let rec: { type?: string; epoch?: number };
      try {
        rec = JSON.parse(line) as { type?: string; epoch?: number };
      } catch {
        continue; // a line cut short by a crash
      }
      if (rec.type === 'epoch' && (rec.epoch === undefined || rec.epoch > last || present.has(rec.epoch))) continue;
      if (rec.type === 'epoch') present.add(rec.epoch!);
      kept.push(line);
    }
    for (const rec of history) if (!present.has(rec.epoch)) kept.push(JSON.stringify(rec));
    writeFileSync(this.path, kept.map((l) => l + '\n').join(''));
  }

  write(record: RunRecord | EpochRecord): void {
    if (!this.path) return;
    try {
      appendFileSync(this.path, JSON.stringify(record) + '\n');
    } catch (err) {
      // The epoch's checkpoint is written before its record: --resume restores the record.
      const e = writeError(err, `--metrics-out ${this.path}`);
      if (!e) throw err;
      throw new CheckpointError(`${e.message}; the run's checkpoints are intact: make room, then continue with --resume`);
    }
  }
}
