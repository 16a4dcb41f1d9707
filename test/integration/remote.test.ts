// Remote workers over loopback, as real processes: the same weights as local training whatever
// the split, wrong tokens, missing data (pixel fallback), and a worker that joins mid-run.
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { writeTinyMnist } from '../helpers.js';
import { epochRecords, readJsonLines, runCli, startCli, startCoordinator, type RunningCli, processesOfThisFile } from './run-cli.js';

const { dir, running } = processesOfThisFile('lenet-remote-');

// The reference configuration of these tests.
const RUN = ['--epochs', '1', '--train-limit', '2048', '--test-limit', '1000', '--seed', '7', '--quiet', '--port', '0'];

function start(program: 'lenet-coord' | 'lenet-worker', args: string[], env?: NodeJS.ProcessEnv): RunningCli {
  const p = startCli(program, args, env);
  running.push(p);
  return p;
}

async function coordinator(name: string, args: string[]): Promise<{ proc: RunningCli; url: string; metrics: string }> {
  const metrics = join(dir.path, `${name}.jsonl`);
  return { ...(await startCoordinator([...RUN, '--checkpoint-dir', join(dir.path, name), '--metrics-out', metrics, ...args], running)), metrics };
}

let reference: string;
let referenceAccuracy: number;
/** The weights after each of three epochs, local threads only. */
let threeEpochs: string[];

describe('remote workers', () => {
  it('local reference: --threads 1', async () => {
    const metrics = join(dir.path, 'local.jsonl');
    const r = await runCli('lenet-coord', ['start', ...RUN, '--threads', '1', '--checkpoint-dir', join(dir.path, 'local'), '--metrics-out', metrics]);
    expect(r.code).toBe(0);
    reference = epochRecords(metrics)[0].weightsSha256 as string;
    referenceAccuracy = epochRecords(metrics)[0].testAccuracy as number;
    expect(referenceAccuracy).toBeGreaterThan(0.75);
    expect(reference).toMatch(/^[0-9a-f]{64}$/);
  });

  it('--threads 0 with two 1-thread workers gives the same weights as --threads 1', async () => {
    const c = await coordinator('two-workers', ['--threads', '0', '--wait-workers', '2']);
    const w1 = start('lenet-worker', ['join', c.url, '--threads', '1', '--name', 'w1']);
    const w2 = start('lenet-worker', ['join', c.url, '--threads', '1', '--name', 'w2']);
    const result = await c.proc.done;
    expect(result.code, result.stderr).toBe(0);
    expect((await w1.done).code).toBe(0);
    expect((await w2.done).code).toBe(0);
    const e = epochRecords(c.metrics)[0];
    expect(e.weightsSha256).toBe(reference);
    const run = readJsonLines(c.metrics)[0];
    expect(run.remoteWorkers).toBe(2);
    const parts = e.participants as { kind: string; microbatches: number }[];
    expect(parts.filter((p) => p.kind === 'remote')).toHaveLength(2);
    expect(parts.reduce((a, p) => a + p.microbatches, 0)).toBe(64); // 32 steps x 2 microbatches
    expect(parts.every((p) => p.microbatches > 0)).toBe(true);
  });

  it('one worker alone applies every update itself (docs/design.md, "A worker computing whole steps alone"): the same weights', async () => {
    const c = await coordinator('alone', ['--threads', '0', '--wait-workers', '1']);
    const w = start('lenet-worker', ['join', c.url, '--threads', '1']);
    const result = await c.proc.done;
    expect(result.code, result.stderr).toBe(0);
    const r = await w.done;
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/run complete; 32 range\(s\) computed, 32 of them whole steps whose update was applied here/);
    expect(epochRecords(c.metrics)[0].weightsSha256).toBe(reference);
  });

  it('a mix of local threads and a 2-thread remote worker gives the same weights', async () => {
    const c = await coordinator('mixed', ['--threads', '1', '--wait-workers', '1', '--batch-size', '128', '--microbatch', '32']);
    start('lenet-worker', ['join', c.url, '--threads', '2']);
    expect((await c.proc.done).code).toBe(0);
    const local = join(dir.path, 'mixed-local.jsonl');
    await runCli('lenet-coord', ['start', ...RUN, '--threads', '1', '--batch-size', '128', '--microbatch', '32', '--checkpoint-dir', join(dir.path, 'mixed-local'), '--metrics-out', local]);
    expect(epochRecords(c.metrics)[0].weightsSha256).toBe(epochRecords(local)[0].weightsSha256);
  });

  it('--grad-dtype float16: a 2-thread worker sends half-precision microbatch gradients; same weights as local float16, not as float32', async () => {
    const c = await coordinator('f16-remote', ['--threads', '0', '--wait-workers', '1', '--grad-dtype', 'float16']);
    start('lenet-worker', ['join', c.url, '--threads', '2']);
    expect((await c.proc.done).code).toBe(0);
    const local = join(dir.path, 'f16-local.jsonl');
    const r = await runCli('lenet-coord', ['start', ...RUN, '--threads', '2', '--grad-dtype', 'float16', '--checkpoint-dir', join(dir.path, 'f16-local'), '--metrics-out', local]);
    expect(r.code, r.stderr).toBe(0);
    const f16 = epochRecords(c.metrics)[0].weightsSha256;
    expect(f16).toBe(epochRecords(local)[0].weightsSha256);
    expect(f16).not.toBe(reference);
    // Half precision trains as well as float32 (within a point of its test accuracy).
    expect(epochRecords(c.metrics)[0].testAccuracy).toBeGreaterThan(referenceAccuracy - 0.01);
  });

  it('a worker without the dataset is sent pixels and still gives the same weights', async () => {
    const other = join(dir.path, 'other-data');
    (await import('node:fs')).mkdirSync(other);
    writeTinyMnist(other, 50, 10);
    const c = await coordinator('pixels', ['--threads', '0', '--wait-workers', '1']);
    const w = start('lenet-worker', ['join', c.url, '--threads', '2', '--data-dir', other]);
    await c.proc.waitFor(/joined without this dataset \(pixels will be sent\)/);
    expect((await c.proc.done).code).toBe(0);
    expect((await w.done).stdout).toMatch(/pixels sent by the coordinator/);
    expect(epochRecords(c.metrics)[0].weightsSha256).toBe(reference);
  });

  it('rejects a worker with the wrong token; the run goes on and the worker exits 5', async () => {
    const c = await coordinator('token', ['--threads', '1', '--token', 'the-right-token-0123456789']);
    const bad = start('lenet-worker', ['join', c.url, '--threads', '1', '--token', 'the-wrong-token-0123456789']);
    const r = await bad.done;
    expect(r.code).toBe(5);
    expect(r.stderr).toMatch(/^error LENET_ERR_REJECTED_AUTH: the coordinator rejected this worker: authentication failed: wrong token/);
    await c.proc.waitFor(/rejected a worker from 127\.0\.0\.1:\d+: authentication failed: wrong token/);
    const done = await c.proc.done;
    expect(done.code).toBe(0);
    expect(epochRecords(c.metrics)[0].weightsSha256).toBe(reference);
  });

  it('refuses, by the join probe, a worker whose gradient is other bits (the cpu backend); the run goes on', async () => {
    // The run waits for one worker, so it cannot end before the refused worker's probe is judged;
    // an honest worker joins after it and the run goes on.
    const c = await coordinator('other-bits', ['--threads', '1', '--wait-workers', '1']);
    const other = start('lenet-worker', ['join', c.url, '--threads', '1', '--backend', 'cpu']);
    const r = await other.done;
    const honest = start('lenet-worker', ['join', c.url, '--threads', '1']);
    expect(r.code).toBe(5);
    expect(r.stderr).toMatch(/^error LENET_ERR_REJECTED_EXACTNESS: the coordinator rejected this worker: its gradient of the join probe is not this run's bits/);
    expect(r.stderr).toMatch(/the worker computes with the cpu backend of lenet-dist \S+, the coordinator with the wasm backend/);
    await c.proc.waitFor(/worker-1 \(\S+, 1 thread\) left: its gradient of the join probe is not this run's bits/);
    const done = await c.proc.done;
    expect(done.code).toBe(0);
    expect((await honest.done).code).toBe(0);
    expect(epochRecords(c.metrics)[0].weightsSha256).toBe(reference);
  });

  it('a worker that joins mid-run takes part from the next step and changes nothing', async () => {
    // The local run goes on beside it (the same bits however busy the machine is).
    const local = join(dir.path, 'late-local.jsonl');
    const ref = start('lenet-coord', ['start', ...RUN, '--threads', '1', '--epochs', '3', '--checkpoint-dir', join(dir.path, 'late-local'), '--metrics-out', local]);
    // Training starts at once; the worker needs a second or two to start, so it joins mid-run.
    const c = await coordinator('join-late', ['--threads', '1', '--epochs', '3']);
    start('lenet-worker', ['join', c.url, '--threads', '1']);
    await c.proc.waitFor(/worker-1 .* joined; it takes part from the next step/);
    expect((await c.proc.done).code).toBe(0);
    expect((await ref.done).code).toBe(0);
    const e = epochRecords(c.metrics);
    expect(e.map((x) => x.weightsSha256)).toEqual(epochRecords(local).map((x) => x.weightsSha256));
    const remoteWork = e.flatMap((x) => (x.participants as { kind: string; microbatches: number }[]).filter((p) => p.kind === 'remote').map((p) => p.microbatches));
    expect(remoteWork.reduce((a, b) => a + b, 0)).toBeGreaterThan(0);
    threeEpochs = epochRecords(local).map((x) => x.weightsSha256 as string);
  });

  it('a worker alone, joined by a second that is then killed, and alone again: the same weights', async () => {
    const c = await coordinator('alone-joined', ['--threads', '0', '--wait-workers', '1', '--epochs', '3']);
    const a = start('lenet-worker', ['join', c.url, '--threads', '1', '--name', 'first']);
    await c.proc.waitFor(/\(first@\S+, 1 thread\) joined/);
    const b = start('lenet-worker', ['join', c.url, '--threads', '1', '--name', 'second']);
    await c.proc.waitFor(/\(second@\S+, 1 thread\) joined/);
    await new Promise((r) => setTimeout(r, 300)); // sharing steps by now
    b.kill('SIGKILL');
    const result = await c.proc.done;
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/\(second@\S+, 1 thread\) left: connection closed/);
    const r = await a.done;
    const [, ranges, applied] = /(\d+) range\(s\) computed, (\d+) of them whole steps/.exec(r.stdout) ?? [];
    // Alone, then sharing (the coordinator applies), then alone again.
    expect(Number(applied)).toBeGreaterThan(0);
    expect(Number(ranges)).toBeGreaterThan(Number(applied));
    expect(epochRecords(c.metrics).map((x) => x.weightsSha256)).toEqual(threeEpochs);
  });

  it('a worker retries until the coordinator is up', async () => {
    const port = 17000 + Math.floor(Math.random() * 2000);
    const w = start('lenet-worker', ['join', `ws://127.0.0.1:${port}`, '--threads', '1', '--connect-timeout', '60']);
    await new Promise((r) => setTimeout(r, 1500));
    const c = start('lenet-coord', ['start', ...RUN.filter((a) => a !== '0' && a !== '--port'), '--port', String(port), '--threads', '0', '--wait-workers', '1', '--train-limit', '256', '--checkpoint-dir', join(dir.path, 'late-coord')]);
    expect((await c.done).code).toBe(0);
    expect((await w.done).code).toBe(0);
  });

  it('a worker gives up with exit 6 when nobody answers', async () => {
    const r = await runCli('lenet-worker', ['join', 'ws://127.0.0.1:1', '--connect-timeout', '1']);
    expect(r.code).toBe(6);
    expect(r.stderr).toMatch(/^error LENET_ERR_UNREACHABLE: no coordinator answered at ws:\/\/127\.0\.0\.1:1 within 1 s/);
  });
});
