// Sharded steps with real processes: workers reduce and update parameter shards among
// themselves over peer links, and the weights are those of one local thread, with the
// coordinator's threads taking part or not, and through faults: a worker killed in the middle, a
// shard owner that stalls, a worker joining mid-run, the coordinator killed and resumed; over
// TLS, where the peer links are TLS too; and workers whose sums, means or weights are wrong,
// which the checks of verify.ts eject.
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { epochDigests, epochRecords, runCli, startCli, startCoordinator, type RunningCli, processesOfThisFile } from './run-cli.js';

const { dir, running } = processesOfThisFile('lenet-sharded-');

// Batch 256 = 8 microbatches, so three participants all get a range; two epochs of 12 steps.
const RUN = ['--epochs', '2', '--train-limit', '3072', '--batch-size', '256', '--test-limit', '500', '--seed', '5', '--quiet', '--port', '0'];

function worker(url: string, threads: number, name: string, extra: string[] = []): RunningCli {
  const p = startCli('lenet-worker', ['join', url, '--threads', String(threads), '--name', name, ...extra]);
  running.push(p);
  return p;
}

/** `N sharded steps` from a worker's closing line. */
async function shardedSteps(w: RunningCli): Promise<number> {
  const r = await w.done;
  expect(r.code, r.stderr).toBe(0);
  const m = r.stdout.match(/(\d+) sharded steps/);
  return m ? Number(m[1]) : 0;
}

let reference: string[];

/** The coordinator ended well, gave up no sharded step, and has the one-thread weights. */
function expectEveryStepSharded(result: { code: number | null; stdout: string; stderr: string }, metrics: string): void {
  expect(result.code, result.stderr).toBe(0);
  expect(result.stdout).not.toMatch(/given up/);
  expect(epochDigests(metrics)).toEqual(reference);
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** One float32 copy of LeNet-5's parameters. */
const MODEL_BYTES = 4 * 60806;

/** What the coordinator received from its workers per step, in the second epoch (joins are in the first). */
function bytesIn(metrics: string): number {
  return (epochRecords(metrics)[1].coordinatorBytesPerStep as { received: number }).received;
}

describe('sharded steps', () => {
  it('fault-free reference: one local thread', async () => {
    const metrics = join(dir.path, 'ref.jsonl');
    const r = await runCli('lenet-coord', ['start', ...RUN, '--threads', '1', '--checkpoint-dir', join(dir.path, 'ref'), '--metrics-out', metrics]);
    expect(r.code, r.stderr).toBe(0);
    reference = epochDigests(metrics);
    expect(reference).toHaveLength(2);
  });

  it('a local thread and two workers, every step sharded and recomputed: the same weights, nobody ejected, one gradient per step into the coordinator', async () => {
    const metrics = join(dir.path, 'mixed.jsonl');
    const { proc: c, url } = await startCoordinator([...RUN, '--threads', '1', '--wait-workers', '2', '--verify-fraction', '1', '--checkpoint-dir', join(dir.path, 'mixed'), '--metrics-out', metrics], running);
    const a = worker(url, 1, 'a');
    const b = worker(url, 2, 'b');
    const result = await c.done;
    expectEveryStepSharded(result, metrics);
    expect(result.stdout).not.toMatch(/ejected/);
    // Every step's two remote ranges were recomputed, and the owners' means compared.
    expect(epochRecords(metrics)[1].verification).toEqual({ checked: 24 * 2, failed: 0 });
    expect(await shardedSteps(a)).toBe(24);
    expect(await shardedSteps(b)).toBe(24);
    const parts = epochRecords(metrics)[0].participants as { kind: string; microbatches: number }[];
    expect(parts.reduce((n, p) => n + p.microbatches, 0)).toBe(12 * 8);
    // The owners' two shard means make one model's worth; the star would take one per worker.
    expect(bytesIn(metrics)).toBeLessThan(1.2 * MODEL_BYTES);
  });

  it('--allreduce star with the same workers: the same weights, nothing sharded', async () => {
    const metrics = join(dir.path, 'star.jsonl');
    const { proc: c, url } = await startCoordinator([...RUN, '--threads', '0', '--wait-workers', '2', '--allreduce', 'star', '--checkpoint-dir', join(dir.path, 'star'), '--metrics-out', metrics], running);
    const a = worker(url, 1, 'a');
    const b = worker(url, 1, 'b');
    const result = await c.done;
    expect(result.code, result.stderr).toBe(0);
    expect(epochDigests(metrics)).toEqual(reference);
    expect(await shardedSteps(a)).toBe(0);
    expect(await shardedSteps(b)).toBe(0);
    expect(bytesIn(metrics)).toBeGreaterThan(1.9 * MODEL_BYTES);
  });

  it('three workers, one killed mid-run: the step is done again, the rest stay sharded, the weights are unchanged', async () => {
    const metrics = join(dir.path, 'kill.jsonl');
    const { proc: c, url } = await startCoordinator([...RUN, '--threads', '0', '--wait-workers', '3', '--checkpoint-dir', join(dir.path, 'kill'), '--metrics-out', metrics], running);
    const a = worker(url, 1, 'a');
    const b = worker(url, 1, 'b');
    const victim = worker(url, 1, 'victim');
    await c.waitFor(/worker-3 .* joined/);
    await c.waitFor(/epoch 1\/2/);
    await new Promise((r) => setTimeout(r, 200)); // into epoch 2's steps
    victim.kill('SIGKILL');
    const result = await c.done;
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/\(victim@\S+, 1 thread\) left: connection closed/);
    // At most the step it was lost in is given up: the step after it is not, and goes on sharded.
    expect((result.stdout.match(/given up/g) ?? []).length).toBeLessThanOrEqual(1);
    expect(epochDigests(metrics)).toEqual(reference);
    // The two left share every step after it, sharded between the two of them.
    const [sa, sb] = [await shardedSteps(a), await shardedSteps(b)];
    expect(sa).toBeGreaterThanOrEqual(12);
    expect(sb).toBeGreaterThanOrEqual(12);
  });

  // A worker with the test hook LENET_TEST_CORRUPT_SHARDED (src/worker/sharded.ts) set.
  function dishonest(url: string, what: string): RunningCli {
    const p = startCli('lenet-worker', ['join', url, '--threads', '1', '--name', 'cheat'], { ...process.env, LENET_TEST_CORRUPT_SHARDED: `${what}:5` });
    running.push(p);
    return p;
  }

  for (const [what, caught] of [
    ['sums', /sent sums for microbatches \[\d+,\d+\) of step \d+ that recomputation does not give; ejected/],
    ['mean', /sent a mean gradient of values \[\d+,\d+\) for step \d+ that the fixed tree over its sums does not give; ejected/],
  ] as const) {
    it(`a worker whose ${what === 'sums' ? 'partial sums are' : "shard's mean gradient is"} wrong in 1 step of 5 is ejected by recomputation (--verify-fraction 1); the weights are unchanged`, async () => {
      const metrics = join(dir.path, `${what}.jsonl`);
      const { proc: c, url } = await startCoordinator([...RUN, '--threads', '1', '--wait-workers', '2', '--verify-fraction', '1', '--checkpoint-dir', join(dir.path, what), '--metrics-out', metrics], running);
      worker(url, 1, 'honest');
      dishonest(url, what);
      await c.waitFor(new RegExp(`worker-\\d+ \\(cheat@\\S+\\) ${caught.source}`));
      const result = await c.done;
      expect(result.code, result.stderr).toBe(0);
      expect(result.stdout).not.toMatch(/honest@\S+\) [^\n]*ejected/);
      expect(epochDigests(metrics)).toEqual(reference);
    });
  }

  it("an owner that sends its peers other values of its shard than it made: both peers say so at the next step, it alone is ejected (every step's checks, without recomputation); the weights are unchanged", async () => {
    const metrics = join(dir.path, 'weights.jsonl');
    const { proc: c, url } = await startCoordinator([...RUN, '--threads', '0', '--wait-workers', '3', '--verify-fraction', '0.000001', '--checkpoint-dir', join(dir.path, 'weights'), '--metrics-out', metrics], running);
    const a = worker(url, 1, 'a');
    worker(url, 1, 'b');
    dishonest(url, 'weights');
    await c.waitFor(/worker-\d+ \(cheat@\S+\) is contradicted by worker-\d+ and worker-\d+ about the weights \[\d+,\d+\) of version \d+ that it made; ejected/);
    const result = await c.done;
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout.match(/; ejected$/gm), result.stdout).toHaveLength(1);
    // The step is done again through the coordinator; the two left shard every step after it.
    expect(result.stdout.match(/given up/g)).toHaveLength(1);
    expect(await shardedSteps(a)).toBeGreaterThanOrEqual(24 - 7);
    expect(epochDigests(metrics), result.stdout).toEqual(reference);
  });

  it('four workers, one stalled (SIGSTOP) mid-run: the sharded step is given up at the deadline and done again; the weights are unchanged', async () => {
    const metrics = join(dir.path, 'stall.jsonl');
    const { proc: c, url } = await startCoordinator([...RUN, '--threads', '0', '--wait-workers', '4', '--checkpoint-dir', join(dir.path, 'stall'), '--metrics-out', metrics], running);
    const ws = ['a', 'b', 'c', 'staller'].map((name) => worker(url, 1, name));
    await c.waitFor(/epoch 1\/2/);
    ws[3].kill('SIGSTOP'); // a shard owner that neither computes nor answers its peers
    await c.waitFor(/sharded step \d+ given up \(missed the \d+ ms step deadline\)/);
    ws[3].kill('SIGCONT');
    const result = await c.done;
    expect(result.code, result.stderr).toBe(0);
    expect(epochDigests(metrics)).toEqual(reference);
    for (const w of ws.slice(0, 3)) expect(await shardedSteps(w)).toBeGreaterThanOrEqual(12);
  });

  it('a worker that joins mid-run takes a shard from the next step; the weights are unchanged', async () => {
    const metrics = join(dir.path, 'join.jsonl');
    const { proc: c, url } = await startCoordinator([...RUN, '--threads', '0', '--wait-workers', '2', '--checkpoint-dir', join(dir.path, 'join'), '--metrics-out', metrics], running);
    const a = worker(url, 1, 'a');
    const b = worker(url, 1, 'b');
    // Training starts as the second worker joins, so the third, started now, joins mid-run: it
    // has the whole run (24 steps) to start in.
    await c.waitFor(/worker-2 .* joined/);
    const late = worker(url, 1, 'late');
    await c.waitFor(/\(late@\S+, 1 thread\) joined; it takes part from the next step/);
    const result = await c.done;
    expectEveryStepSharded(result, metrics);
    // Each step checked (--verify-fraction 0.02): the new plan's weights, sums and means agree.
    expect(result.stdout).not.toMatch(/ejected/);
    expect(await shardedSteps(a)).toBe(24);
    expect(await shardedSteps(b)).toBe(24);
    expect(await shardedSteps(late)).toBeGreaterThan(0);
  });

  it('the coordinator killed with SIGKILL mid-epoch and resumed: its workers reconnect, the steps stay sharded, the weights are unchanged', async () => {
    const ckpt = join(dir.path, 'resume');
    const metrics = join(dir.path, 'resume.jsonl');
    const port = String(25000 + Math.floor(Math.random() * 5000));
    const args = ['start', ...RUN.slice(0, -2), '--port', port, '--threads', '0', '--wait-workers', '2', '--checkpoint-every-steps', '4', '--checkpoint-dir', ckpt, '--metrics-out', metrics];
    const first = startCli('lenet-coord', args);
    running.push(first);
    await first.waitFor(/listening/);
    const ws = ['a', 'b'].map((name) => worker(`ws://127.0.0.1:${port}`, 1, name, ['--connect-timeout', '60']));
    // Killed as soon as a mid-epoch checkpoint of epoch 2 exists.
    for (let i = 0; i < 600; i++) {
      if (existsSync(ckpt) && readdirSync(ckpt).some((n) => /^ckpt-e0001-s0000(0[1-9]|[1-9]\d)$/.test(n))) break;
      await sleep(50);
    }
    first.kill('SIGKILL');
    await first.done;
    const second = startCli('lenet-coord', [...args, '--resume']);
    running.push(second);
    await second.waitFor(/resumed from .*ckpt-e0001-s0000\d\d/);
    const r = await second.done;
    expectEveryStepSharded(r, metrics);
    for (const w of ws) expect(await shardedSteps(w)).toBeGreaterThan(0);
  });

  it('TLS: with wss:// to the coordinator the peer links are wss:// too; a worker without a peer certificate takes no part', async () => {
    const key = join(dir.path, 'key.pem');
    const cert = join(dir.path, 'cert.pem');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost'], { stdio: 'ignore' });
    const token = 'sharded-tls-token-0123456789';
    const tls = ['--tls-cert', cert, '--tls-key', key, '--token', token, '--host', '127.0.0.1'];
    const join2 = ['--ca', cert, '--token', token, '--peer-host', '127.0.0.1'];
    const metrics = join(dir.path, 'tls.jsonl');
    const { proc: c, url } = await startCoordinator([...RUN, '--threads', '0', '--wait-workers', '2', ...tls, '--checkpoint-dir', join(dir.path, 'tls'), '--metrics-out', metrics], running);
    expect(url).toMatch(/^wss:\/\//);
    const ws = ['a', 'b'].map((name) => worker(url, 1, name, [...join2, '--peer-tls-cert', cert, '--peer-tls-key', key]));
    expect((await c.done).code).toBe(0);
    expect(epochDigests(metrics)).toEqual(reference);
    for (const w of ws) expect(await shardedSteps(w)).toBe(24);
    expect((await ws[0].done).stdout).toMatch(/listening for peers on 127\.0\.0\.1:\d+ \(TLS\)/);

    const plainMetrics = join(dir.path, 'tls-plain.jsonl');
    const { proc: c2, url: url2 } = await startCoordinator([...RUN, '--threads', '0', '--wait-workers', '2', ...tls, '--checkpoint-dir', join(dir.path, 'tls-plain'), '--metrics-out', plainMetrics], running);
    const plain = ['a', 'b'].map((name) => worker(url2, 1, name, join2));
    expect((await c2.done).code).toBe(0);
    expect(epochDigests(plainMetrics)).toEqual(reference);
    for (const w of plain) expect(await shardedSteps(w)).toBe(0);
    expect((await plain[0].done).stdout).toMatch(/the coordinator serves wss:\/\/ and this worker has no --peer-tls-cert\/--peer-tls-key: taking no part in sharded steps/);
  });
});
