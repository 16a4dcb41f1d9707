// Machine-readable results: JSON lines, one `run` record then one `epoch` record per epoch.
// Each record is appended and flushed as it happens, so a crash loses nothing already reported.
import { appendFileSync, writeFileSync } from 'node:fs';

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
  constructor(private readonly path: string | undefined, append: boolean) {
    if (path && !append) writeFileSync(path, '');
  }

  write(record: RunRecord | EpochRecord): void {
    if (this.path) appendFileSync(this.path, JSON.stringify(record) + '\n');
  }
}
