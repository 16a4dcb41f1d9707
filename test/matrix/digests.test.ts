// The digest matrix: for every architecture and activation, every way of splitting the work gives
// the weights of one local thread: 2 local threads; one remote worker with 1 or 2 threads computing
// alone (it applies the updates itself); a local thread beside a remote worker; two remote
// workers in sharded steps; each with one microbatch per thread (batch 64) and with several
// (batch 256). `npm test` runs keras with relu at batch 256 (its remote path once failed with
// several microbatches per thread); LENET_MATRIX=full (npm run test:matrix) runs every row.
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { epochDigests, runCli, startCli, startCoordinator, processesOfThisFile } from '../integration/run-cli.js';

const { dir, running } = processesOfThisFile('lenet-matrix-');

const FULL = process.env.LENET_MATRIX === 'full';
const MODELS = FULL ? [['lenet5', 'relu'], ['lenet5', 'tanh'], ['keras', 'relu'], ['keras', 'tanh']] : [['keras', 'relu']];
const BATCHES = FULL ? [64, 256] : [256];

/** Local threads, and remote workers' threads, of each way of splitting the work. */
const SPLITS: { name: string; threads: number; workers: number[] }[] = [
  { name: 'two local threads', threads: 2, workers: [] },
  { name: 'one 1-thread worker alone', threads: 0, workers: [1] },
  { name: 'one 2-thread worker alone', threads: 0, workers: [2] },
  { name: 'a local thread and a 1-thread worker', threads: 1, workers: [1] },
  { name: 'two 1-thread workers, sharded', threads: 0, workers: [1, 1] },
];

let runs = 0;

async function digests(arch: string, activation: string, batch: number, threads: number, workers: number[]): Promise<string[]> {
  const name = `run-${++runs}`;
  const metrics = join(dir.path, `${name}.jsonl`);
  // Three steps, then one more epoch of three: the second starts from weights made by the first.
  const args = ['--arch', arch, '--activation', activation, '--epochs', '2', '--train-limit', String(3 * batch), '--test-limit', '50', '--batch-size', String(batch), '--seed', '6',
    '--quiet', '--port', '0', '--threads', String(threads), '--checkpoint-dir', join(dir.path, name), '--metrics-out', metrics];
  if (workers.length === 0) {
    const r = await runCli('lenet-coord', ['start', ...args]);
    expect(r.code, r.stderr).toBe(0);
  } else {
    const { proc, url } = await startCoordinator([...args, '--wait-workers', String(workers.length)], running);
    const ws = workers.map((t) => {
      const w = startCli('lenet-worker', ['join', url, '--threads', String(t)]);
      running.push(w);
      return w;
    });
    const r = await proc.done;
    expect(r.code, r.stderr).toBe(0);
    for (const w of ws) expect((await w.done).code).toBe(0);
  }
  return epochDigests(metrics);
}

describe('digest matrix', () => {
  for (const [arch, activation] of MODELS) {
    for (const batch of BATCHES) {
      describe(`${arch} ${activation}, batch ${batch} (${batch / 32} microbatches)`, () => {
        let reference: string[];
        it('reference: one local thread', async () => {
          reference = await digests(arch, activation, batch, 1, []);
          expect(reference).toHaveLength(2);
        });
        for (const split of SPLITS) {
          it(`${split.name}: the same weights`, async () => {
            expect(await digests(arch, activation, batch, split.threads, split.workers)).toEqual(reference);
          });
        }
      });
    }
  }
});
