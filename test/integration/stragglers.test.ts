// A straggler: a worker that joins and then never answers in time. Its ranges are recomputed
// elsewhere within the step, its late answers are ignored, its share shrinks, and after
// MAX_CONSECUTIVE_LATE late steps it is dropped; the weights equal the undisturbed run's.
// And a worker computing whole steps alone (it applies the updates itself) that is late once.
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { MAX_CONSECUTIVE_LATE, STEP_DEADLINE_FLOOR_MS } from '../../src/constants.js';
import { RemoteWorkerProcess } from '../../src/worker/remote.js';
import { stalledWorker } from '../fixtures/stalled-worker.js';
import { interceptSends } from './intercept-sends.js';
import { epochDigests, epochRecords, runCli, startCoordinator, processesOfThisFile } from './run-cli.js';

const { dir, running } = processesOfThisFile('lenet-straggler-');
let restoreSends: (() => void) | undefined;
afterEach(() => restoreSends?.());

let reference: string[];

const RUN = ['--epochs', '1', '--train-limit', '1280', '--test-limit', '200', '--seed', '9', '--quiet', '--port', '0', '--threads', '1'];

describe('stragglers', () => {
  it('a worker that misses deadlines is worked around, ignored when late, and dropped', async () => {
    const refMetrics = join(dir.path, 'ref.jsonl');
    expect((await runCli('lenet-coord', ['start', ...RUN, '--checkpoint-dir', join(dir.path, 'ref'), '--metrics-out', refMetrics])).code).toBe(0);

    const metrics = join(dir.path, 'slow.jsonl');
    // A deadline of 1 s (the floor follows it down), so that three late steps take seconds.
    const { proc: c, url } = await startCoordinator([...RUN, '--wait-workers', '1', '--step-deadline', '1', '--checkpoint-dir', join(dir.path, 'slow'), '--metrics-out', metrics], running);
    // Answers only after the first deadline has passed, so the answer is stale by then.
    const slow = stalledWorker(url, 60806, 1_500);
    const result = await c.done;
    expect(result.code, result.stderr).toBe(0);
    const closed = await slow.closed;
    expect(closed.code).toBe(4007);
    expect(closed.reason).toMatch(new RegExp(`late ${MAX_CONSECUTIVE_LATE} steps in a row`));
    expect(slow.assignments).toBe(MAX_CONSECUTIVE_LATE);
    expect(result.stdout).toMatch(/worker-1 missed the \d+ ms step deadline \(step 0\); microbatches \[\d+,\d+\) go to local/);
    expect(epochDigests(metrics)).toEqual(epochDigests(refMetrics));
    reference = epochDigests(refMetrics);
  });

  it('a worker computing alone that is late once: that step and the one sent ahead are taken back, and the weights are unchanged', async () => {
    const LATE_STEP = 5;
    const metrics = join(dir.path, 'alone.jsonl');
    const { proc: c, url } = await startCoordinator([...RUN.slice(0, -2), '--threads', '0', '--wait-workers', '1', '--checkpoint-dir', join(dir.path, 'alone'), '--metrics-out', metrics], running);
    // The worker (in this process) holds back its result of LATE_STEP past the deadline's floor; it
    // goes on meanwhile: applies that step's update and computes the step sent ahead.
    let held = false;
    restoreSends = interceptSends((_ws, msg, frame, send) => {
      if (held || msg.type !== 'result' || msg.step !== LATE_STEP) return false;
      held = true;
      const copy = Uint8Array.from(frame); // its buffer is reused for later results
      setTimeout(() => send(copy), STEP_DEADLINE_FLOOR_MS + 700);
      return true;
    });
    const worker = new RemoteWorkerProcess({ url, threads: 1, backend: 'wasm', connectTimeoutS: 30, name: 'alone', log: () => undefined });
    expect(await worker.run()).toBe(0);
    const result = await c.done;
    expect(result.code, result.stderr).toBe(0);
    expect(held).toBe(true);
    expect(result.stdout).toMatch(new RegExp(`worker-1 missed the \\d+ ms step deadline \\(step ${LATE_STEP}\\); microbatches \\[0,2\\) go to worker-1`));
    // Alone before and after the late step; that step recomputed with the coordinator's update.
    expect(worker.stats.applied).toBeGreaterThan(LATE_STEP);
    expect(worker.stats.ranges).toBeGreaterThan(worker.stats.applied);
    const [epoch] = epochRecords(metrics);
    expect(epoch.weightsSha256).toBe(reference[0]);
    // Each microbatch counted once, the step sent ahead and taken back included: 20 steps x 2.
    expect((epoch.participants as { microbatches: number }[]).reduce((a, p) => a + p.microbatches, 0)).toBe(40);
  }, 120_000);
});
