// A straggler: a worker that joins and then never answers in time. Its ranges are recomputed
// elsewhere within the step, its late answers are ignored, its share shrinks, and after
// MAX_CONSECUTIVE_LATE late steps it is dropped; the weights equal the undisturbed run's.
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { MAX_CONSECUTIVE_LATE, STEP_DEADLINE_INITIAL_MS } from '../../src/constants.js';
import { stalledWorker } from '../fixtures/stalled-worker.js';
import { tempDir } from '../helpers.js';
import { readJsonLines, runCli, startCli, type RunningCli } from './run-cli.js';

const dir = tempDir('lenet-straggler-');
const running: RunningCli[] = [];
afterEach(() => running.splice(0).forEach((p) => p.kill()));
afterAll(() => dir.remove());

const RUN = ['--epochs', '1', '--train-limit', '1280', '--test-limit', '200', '--seed', '9', '--quiet', '--port', '0', '--threads', '1'];

describe('stragglers', () => {
  it('a worker that misses deadlines is worked around, ignored when late, and dropped', async () => {
    const refMetrics = join(dir.path, 'ref.jsonl');
    expect((await runCli('lenet-coord', ['start', ...RUN, '--checkpoint-dir', join(dir.path, 'ref'), '--metrics-out', refMetrics])).code).toBe(0);

    const metrics = join(dir.path, 'slow.jsonl');
    const c = startCli('lenet-coord', ['start', ...RUN, '--wait-workers', '1', '--checkpoint-dir', join(dir.path, 'slow'), '--metrics-out', metrics]);
    running.push(c);
    const [, url] = await c.waitFor(/listening for workers on (ws:\/\/\S+)/);
    // Answers only after the first deadline has passed, so the answer is stale by then.
    const slow = stalledWorker(url, 60806, STEP_DEADLINE_INITIAL_MS + 500);
    const result = await c.done;
    expect(result.code, result.stderr).toBe(0);
    const closed = await slow.closed;
    expect(closed.code).toBe(4007);
    expect(closed.reason).toMatch(new RegExp(`late ${MAX_CONSECUTIVE_LATE} steps in a row`));
    expect(slow.assignments).toBe(MAX_CONSECUTIVE_LATE);
    expect(result.stdout).toMatch(/worker-1 missed the \d+ ms step deadline \(step 0\); microbatches \[\d+,\d+\) go to local/);
    const epochs = (m: string): Record<string, unknown>[] => readJsonLines(m).filter((r) => r.type === 'epoch');
    expect(epochs(metrics).map((e) => e.weightsSha256)).toEqual(epochs(refMetrics).map((e) => e.weightsSha256));
  });
});
