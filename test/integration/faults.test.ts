// Faults, as real processes: remote workers killed with SIGKILL mid-epoch and mid-step, and the
// coordinator itself killed and resumed. Each run must end with the fault-free weights.
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { epochDigests, readJsonLines, runCli, startCli, startCoordinator, type RunningCli, processesOfThisFile } from './run-cli.js';

const { dir, running } = processesOfThisFile('lenet-faults-');

// Batch 128 = 4 microbatches: every participant (1 local thread + 2 workers) gets a range each step.
const RUN = ['--epochs', '2', '--train-limit', '2048', '--batch-size', '128', '--test-limit', '500', '--seed', '11', '--quiet', '--port', '0'];

function start(program: 'lenet-coord' | 'lenet-worker', args: string[]): RunningCli {
  const p = startCli(program, args);
  running.push(p);
  return p;
}


const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

let reference: string[];

describe('faults', () => {
  it('fault-free reference', async () => {
    const metrics = join(dir.path, 'ref.jsonl');
    const r = await runCli('lenet-coord', ['start', ...RUN, '--threads', '1', '--checkpoint-dir', join(dir.path, 'ref'), '--metrics-out', metrics]);
    expect(r.code).toBe(0);
    reference = epochDigests(metrics);
    expect(reference).toHaveLength(2);
  });

  it('remote workers killed with SIGKILL mid-epoch and mid-step: same weights, every sample once', async () => {
    const metrics = join(dir.path, 'kill-workers.jsonl');
    const { proc: c, url } = await startCoordinator([...RUN, '--threads', '1', '--wait-workers', '2', '--checkpoint-dir', join(dir.path, 'kw'), '--metrics-out', metrics], running);
    const a = start('lenet-worker', ['join', url, '--threads', '1', '--name', 'victim-a']);
    const b = start('lenet-worker', ['join', url, '--threads', '1', '--name', 'victim-b']);
    await c.waitFor(/worker-2 .* joined/);
    await sleep(400); // into epoch 1 (it takes well over a second): steps are running, so the kill lands mid-step
    a.kill('SIGKILL');
    // Worker ids follow the order of joining, so the victims are found by name.
    await c.waitFor(/\(victim-a@\S+, 1 thread\) left/);
    await c.waitFor(/epoch 1\/2/); // epoch 2 starts as this is printed, and takes a quarter of a second on a fast machine
    b.kill('SIGKILL');
    const result = await c.done;
    expect(result.code, result.stderr).toBe(0);
    // Both died mid-run (not at the end), and a kill landed mid-step: the victim's range went to
    // someone else, or (two workers share steps sharded) the step was done again without it.
    expect(result.stdout).toMatch(/\(victim-a@\S+, 1 thread\) left: connection closed/);
    expect(result.stdout).toMatch(/\(victim-b@\S+, 1 thread\) left: connection closed/);
    expect(result.stdout).toMatch(/worker-\d .*microbatches \[\d+,\d+\) go to local|sharded step \d+ given up \(worker-\d left during sharded step \d+/);
    expect(epochDigests(metrics)).toEqual(reference);
    // Every microbatch of every step was computed exactly once by someone: 16 steps x 4 per epoch.
    for (const e of readJsonLines(metrics).filter((r) => r.type === 'epoch')) {
      const parts = e.participants as { microbatches: number }[];
      expect(parts.reduce((s, p) => s + p.microbatches, 0)).toBe(64);
    }
  });

  // --threads 0: the worker computes every step alone and applies the updates itself; after the
  // resume it gets the optimizer state the checkpoint restored.
  it.each([
    ['1', 'with a local thread'],
    ['0', 'computing alone'],
  ])('the coordinator killed with SIGKILL mid-epoch resumes to the same weights; its worker reconnects (--threads %s: %s)', async (threads) => {
    const ckpt = join(dir.path, `kc${threads}`);
    const metrics = join(dir.path, `kill-coord${threads}.jsonl`);
    const port = String(20000 + Math.floor(Math.random() * 5000));
    const args = ['start', ...RUN.slice(0, -2), '--port', port, '--threads', threads, '--checkpoint-every-steps', '5', '--checkpoint-dir', ckpt, '--metrics-out', metrics];
    const first = start('lenet-coord', args);
    await first.waitFor(/listening/);
    const w = start('lenet-worker', ['join', `ws://127.0.0.1:${port}`, '--threads', '1', '--connect-timeout', '60']);
    await first.waitFor(/worker-1 .* joined/);
    // Kill as soon as a mid-epoch checkpoint of epoch 2 exists.
    for (let i = 0; i < 600; i++) {
      if (existsSync(ckpt) && readdirSync(ckpt).some((n) => /^ckpt-e0001-s0000[0-9][1-9]$|^ckpt-e0001-s0000[1-9]\d$/.test(n))) break;
      await sleep(50);
    }
    first.kill('SIGKILL');
    await first.done;
    const names = readdirSync(ckpt).filter((n) => n.startsWith('ckpt-'));
    expect(names.some((n) => n.startsWith('ckpt-e0001-s') && !n.endsWith('s000000'))).toBe(true);
    // --wait-workers 1: the rest of the run would otherwise finish before the worker's backoff ends.
    const second = start('lenet-coord', [...args, '--resume', '--wait-workers', '1']);
    await second.waitFor(/resumed from .*ckpt-e0001-s0000\d\d: 1 epoch\(s\) and \d+ step\(s\) done/);
    await second.waitFor(/worker-\d .* joined/); // the worker found the restarted coordinator by itself
    const r = await second.done;
    expect(r.code, r.stderr).toBe(0);
    expect((await w.done).code).toBe(0);
    expect(epochDigests(metrics)).toEqual(reference);
    // Mid-epoch checkpoints are pruned at the epoch's end; the epoch ones stay.
    expect(readdirSync(ckpt).filter((n) => n.startsWith('ckpt-'))).toEqual(['ckpt-e0001-s000000', 'ckpt-e0002-s000000']);
  });

  it('TLS: a worker joins over wss:// with a certificate made by the test', async () => {
    const key = join(dir.path, 'key.pem');
    const cert = join(dir.path, 'cert.pem');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost'], { stdio: 'ignore' });
    const metrics = join(dir.path, 'tls.jsonl');
    const { proc: c, url } = await startCoordinator([...RUN, '--threads', '0', '--wait-workers', '1', '--tls-cert', cert, '--tls-key', key, '--token', 'tls-test-token-0123456789', '--host', '127.0.0.1', '--checkpoint-dir', join(dir.path, 'tls'), '--metrics-out', metrics], running);
    expect(url).toMatch(/^wss:\/\//);
    const untrusted = await runCli('lenet-worker', ['join', url, '--token', 'tls-test-token-0123456789', '--connect-timeout', '1']);
    expect(untrusted.code).toBe(6); // a certificate nobody vouches for is refused
    const w = start('lenet-worker', ['join', url, '--threads', '1', '--ca', cert, '--token', 'tls-test-token-0123456789']);
    expect((await c.done).code).toBe(0);
    expect((await w.done).code).toBe(0);
    expect(epochDigests(metrics)).toEqual(reference);
  });
});
