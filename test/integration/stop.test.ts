// Graceful stops, as real processes: SIGTERM or SIGINT to a coordinator mid-epoch checkpoints at
// a step boundary and exits 8 within the grace period, and --resume ends on the uninterrupted
// run's weights; SIGTERM to a worker says goodbye and exits 8, and the run goes on.
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { availableParallelism } from 'node:os';
import { describe, expect, it } from 'vitest';
import { STOP_GRACE_MS } from '../../src/constants.js';
import { epochDigests, runCli, startCli, startCoordinator, type RunningCli, processesOfThisFile } from './run-cli.js';

const { dir, running } = processesOfThisFile('lenet-stop-');

// 32 steps of 64 per epoch, two epochs.
const RUN = ['--epochs', '2', '--train-limit', '2048', '--test-limit', '300', '--seed', '3', '--quiet', '--port', '0'];
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

let reference: string[];

/** Signals the coordinator in its second epoch; checks the stop, then resumes it to the end. */
async function stopAndResume(name: string, signal: NodeJS.Signals, extra: string[], withWorker: boolean, threads = 1): Promise<void> {
  const ck = join(dir.path, name);
  const metrics = join(dir.path, `${name}.jsonl`);
  const { proc: c, url } = await startCoordinator([...RUN, '--threads', String(threads), '--checkpoint-dir', ck, '--metrics-out', metrics, ...extra], running);
  let worker: RunningCli | undefined;
  if (withWorker) {
    worker = startCli('lenet-worker', ['join', url, '--threads', '1', '--connect-timeout', '30']);
    running.push(worker);
  }
  await c.waitFor(/epoch 1\/2/);
  await sleep(threads > 1 ? 30 : 150); // into the second epoch's steps
  const signalled = Date.now();
  c.child.kill(signal);
  const stopped = await c.done;
  expect(stopped.code, stopped.stderr).toBe(8);
  expect(Date.now() - signalled).toBeLessThan(STOP_GRACE_MS);
  expect(stopped.stdout).toMatch(new RegExp(`${signal}: stopping after the current step`));
  const [, step] = stopped.stdout.match(/stopping: checkpointing step (\d+) \(epoch 2, step (\d+) of 32\)/) ?? [];
  expect(Number(step)).toBeGreaterThan(32);
  expect(stopped.stdout).toMatch(new RegExp(`stopped \\(${signal}\\): continue with the same command and --resume, from \\S+ckpt-e0001-s0000\\d\\d`));
  expect(stopped.stderr).not.toMatch(/internal error/);
  // A mid-epoch checkpoint beside epoch 1's, nothing temporary left.
  const names = readdirSync(ck);
  expect(names.filter((n) => n.startsWith('ckpt-e0001-s') && n !== 'ckpt-e0001-s000000')).toHaveLength(1);
  expect(names.filter((n) => n.startsWith('.tmp'))).toEqual([]);
  if (worker) {
    // Told the run is not over, the worker keeps trying to reconnect.
    await sleep(500);
    expect(worker.child.exitCode).toBeNull();
    worker.kill();
  }
  const resumed = await runCli('lenet-coord', ['start', ...RUN, '--threads', '1', '--checkpoint-dir', ck, '--metrics-out', metrics, '--resume']);
  expect(resumed.code, resumed.stderr).toBe(0);
  expect(epochDigests(metrics)).toEqual(reference);
}

describe('graceful stop', () => {
  it('reference: uninterrupted', async () => {
    const metrics = join(dir.path, 'ref.jsonl');
    const r = await runCli('lenet-coord', ['start', ...RUN, '--threads', '1', '--checkpoint-dir', join(dir.path, 'ref'), '--metrics-out', metrics]);
    expect(r.code, r.stderr).toBe(0);
    reference = epochDigests(metrics);
    expect(reference).toHaveLength(2);
  });

  it('SIGTERM mid-epoch with a worker: checkpoint at a step boundary, exit 8, the worker waits, --resume to the same weights', async () => {
    await stopAndResume('term', 'SIGTERM', ['--wait-workers', '1'], true);
  });

  it('SIGINT mid-epoch: the same', async () => {
    await stopAndResume('int', 'SIGINT', [], false);
  });

  it('SIGINT mid-epoch with a thread on every core, which start each next step before the coordinator commits this one: the same', async () => {
    await stopAndResume('int-cores', 'SIGINT', [], false, availableParallelism());
  });

  it('a worker given SIGTERM says goodbye and exits 8 at once; the run goes on to the same weights', async () => {
    const metrics = join(dir.path, 'worker-term.jsonl');
    const { proc: c, url } = await startCoordinator([...RUN, '--threads', '1', '--wait-workers', '1', '--checkpoint-dir', join(dir.path, 'wt'), '--metrics-out', metrics], running);
    const w = startCli('lenet-worker', ['join', url, '--threads', '1', '--name', 'leaving']);
    running.push(w);
    await c.waitFor(/epoch 1\/2/);
    await sleep(150);
    const signalled = Date.now();
    w.child.kill('SIGTERM');
    const gone = await w.done;
    expect(gone.code).toBe(8); // stopped, not the run's end
    expect(Date.now() - signalled).toBeLessThan(5_000);
    expect(gone.stdout).toMatch(/worker: stopped; \d+ range\(s\) computed/);
    await c.waitFor(/\(leaving@\S+, 1 thread\) left: worker said goodbye: worker stopping \(SIGTERM\)/);
    const result = await c.done;
    expect(result.code, result.stderr).toBe(0);
    expect(epochDigests(metrics)).toEqual(reference);
    expect(existsSync(join(dir.path, 'wt'))).toBe(true);
  });
});
