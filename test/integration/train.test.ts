// End to end through `lenet-coord start`: determinism across thread counts, exact resume, and
// what the user sees when something is wrong.
import { join } from 'node:path';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { tempDir } from '../helpers.js';
import { SMALL_RUN, readJsonLines, runCli } from './run-cli.js';

const dir = tempDir('lenet-train-');
afterAll(() => dir.remove());

async function train(name: string, extra: string[]): Promise<{ epochs: Record<string, unknown>[]; run: Record<string, unknown>; stdout: string }> {
  const metrics = join(dir.path, `${name}.jsonl`);
  const r = await runCli('lenet-coord', ['start', ...SMALL_RUN, '--checkpoint-dir', join(dir.path, name), '--metrics-out', metrics, ...extra]);
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  const records = readJsonLines(metrics);
  return { run: records[0], epochs: records.filter((x) => x.type === 'epoch'), stdout: r.stdout };
}

describe('lenet-coord start', () => {
  it('gives bit-identical weights after every epoch with 1, 2 and 4 threads', async () => {
    const runs = [];
    for (const threads of [1, 2, 4]) runs.push(await train(`threads-${threads}`, ['--epochs', '2', '--threads', String(threads), '--seed', '3']));
    const digests = runs.map((r) => r.epochs.map((e) => e.weightsSha256));
    expect(digests[0]).toHaveLength(2);
    expect(new Set(digests[0]).size).toBe(2); // the weights did change between epochs
    expect(digests[1]).toEqual(digests[0]);
    expect(digests[2]).toEqual(digests[0]);
    expect(runs.map((r) => r.run.threads)).toEqual([1, 2, 4]);
  });

  it('writes the run and epoch records with the documented fields', async () => {
    const { run, epochs, stdout } = await train('records', ['--epochs', '1', '--threads', '2']);
    for (const key of ['arch', 'params', 'backend', 'threads', 'globalBatch', 'microbatch', 'seed', 'trainSamples', 'testSamples', 'datasetSha256']) {
      expect(run).toHaveProperty(key);
    }
    expect(run).toMatchObject({ type: 'run', arch: 'lenet5', params: 60806, backend: 'wasm', globalBatch: 128, microbatch: 16, trainSamples: 700, testSamples: 200 });
    expect(epochs).toHaveLength(1);
    const e = epochs[0];
    for (const key of ['epoch', 'trainLoss', 'testAccuracy', 'samplesPerSecond', 'elapsedSeconds', 'weightsSha256']) expect(e).toHaveProperty(key);
    expect(e.testAccuracy).toBeGreaterThan(0.1);
    expect(e.testAccuracy).toBeLessThanOrEqual(1);
    expect(e.samplesPerSecond).toBeGreaterThan(0);
    expect(stdout).toMatch(/backend wasm/);
    expect(stdout).toMatch(/epoch 1\/1: train loss/);
  });

  it('a run of 4 epochs equals 2 epochs followed by --resume to 4, bit for bit', async () => {
    const straight = await train('straight', ['--epochs', '4', '--threads', '2', '--distort']);
    await train('resumed', ['--epochs', '2', '--threads', '1', '--distort']);
    const resumed = await train('resumed', ['--epochs', '4', '--threads', '2', '--distort', '--resume']);
    expect(resumed.stdout).toMatch(/resumed from .*ckpt-e0002-s000000/);
    // The metrics file continues across the resume: a second run record, then epochs 3 and 4.
    expect(resumed.epochs.map((e) => e.epoch)).toEqual([1, 2, 3, 4]);
    expect(resumed.epochs.map((e) => e.weightsSha256)).toEqual(straight.epochs.map((e) => e.weightsSha256));
    expect(readdirSync(join(dir.path, 'resumed'))).toEqual(['ckpt-e0001-s000000', 'ckpt-e0002-s000000', 'ckpt-e0003-s000000', 'ckpt-e0004-s000000']);
  });

  it('refuses to resume a corrupt checkpoint, with exit code 3 and no stack trace', async () => {
    await train('corrupt', ['--epochs', '1', '--threads', '1']);
    const weights = join(dir.path, 'corrupt', 'ckpt-e0001-s000000', 'weights.bin');
    const bytes = readFileSync(weights);
    bytes[8] ^= 0x40;
    writeFileSync(weights, bytes);
    const r = await runCli('lenet-coord', ['start', ...SMALL_RUN, '--epochs', '2', '--checkpoint-dir', join(dir.path, 'corrupt'), '--resume']);
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/^error LENET_ERR_CHECKPOINT: .*weights\.bin does not match its recorded SHA-256/);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });

  it('refuses to resume with different batch settings', async () => {
    await train('mismatch', ['--epochs', '1', '--threads', '1']);
    const r = await runCli('lenet-coord', ['start', ...SMALL_RUN, '--epochs', '2', '--batch-size', '64', '--checkpoint-dir', join(dir.path, 'mismatch'), '--resume']);
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/batchSize = 128, but this run has 64/);
  });

  it('will not mix a fresh run into a folder of old checkpoints', async () => {
    await train('old', ['--epochs', '1', '--threads', '1']);
    const r = await runCli('lenet-coord', ['start', ...SMALL_RUN, '--epochs', '1', '--checkpoint-dir', join(dir.path, 'old')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/already holds checkpoints.*--resume.*--fresh/);
  });
});

describe('lenet-coord errors', () => {
  it('prints help with exit code 0', async () => {
    const r = await runCli('lenet-coord', ['start', '--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/--threads N/);
    expect((await runCli('lenet-coord', ['--help'])).stdout).toMatch(/Commands:/);
    expect((await runCli('lenet-worker', ['--help'])).code).toBe(0);
  });

  it('names a port that is taken, and exits instead of hanging on its threads', async () => {
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const port = (blocker.address() as AddressInfo).port;
    try {
      const r = await runCli('lenet-coord', ['start', ...SMALL_RUN.slice(0, -2), '--port', String(port), '--threads', '1', '--checkpoint-dir', join(dir.path, 'port')], 60_000);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(new RegExp(`^error LENET_ERR_USAGE: port ${port} on 127\\.0\\.0\\.1 is already in use; pass another --port`));
    } finally {
      blocker.close();
    }
  });

  it('names a missing data folder in one line, exit code 2', async () => {
    const r = await runCli('lenet-coord', ['start', '--data-dir', join(dir.path, 'no-such-dir'), '--checkpoint-dir', join(dir.path, 'x')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^error LENET_ERR_DATA: .*no-such-dir\/train-images-idx3-ubyte: file not found/);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
  });

  it('creates the folder of --metrics-out, and names a path it cannot write in one line', async () => {
    const nested = join(dir.path, 'new', 'folder', 'm.jsonl');
    const ok = await runCli('lenet-coord', ['start', ...SMALL_RUN, '--epochs', '1', '--threads', '1', '--checkpoint-dir', join(dir.path, 'nested'), '--metrics-out', nested]);
    expect(ok.code).toBe(0);
    expect(readJsonLines(nested).filter((x) => x.type === 'epoch')).toHaveLength(1);
    // A folder where the file should be: refused before any thread starts, so the process exits.
    const bad = await runCli('lenet-coord', ['start', ...SMALL_RUN, '--threads', '1', '--checkpoint-dir', join(dir.path, 'bad'), '--metrics-out', dir.path], 60_000);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/^error LENET_ERR_USAGE: --metrics-out .*: cannot write there \(EISDIR\)/);
    expect(bad.stderr.trim().split('\n')).toHaveLength(1);
  });

  it('makes the --checkpoint-dir at start, and names one it cannot make in one line before training', async () => {
    // Under a file (ENOTDIR); and under /proc, where Node's recursive mkdir would spin forever.
    const file = join(dir.path, 'a-file');
    writeFileSync(file, 'x');
    for (const [path, code] of [[join(file, 'ck'), 'ENOTDIR'], ['/proc/lenet-no-such/ck', 'ENOENT']]) {
      const r = await runCli('lenet-coord', ['start', ...SMALL_RUN, '--threads', '1', '--checkpoint-dir', path], 60_000);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toBe(`error LENET_ERR_USAGE: --checkpoint-dir ${path}: cannot create it (${code})\n`);
      expect(r.stdout).not.toMatch(/epoch 1/);
    }
  });

  it('rejects bad flag values with the flag named', async () => {
    const cases: [string[], RegExp][] = [
      [['--threads=-1'], /--threads must be between 0 and 256/],
      [['--batch-size', 'many'], /--batch-size must be an integer/],
      [['--microbatch', '64', '--batch-size', '32'], /--microbatch \(64\) must not exceed --batch-size \(32\)/],
      [['--arch', 'resnet'], /--arch must be one of lenet5, keras/],
      [['--lr=-1'], /--lr must be greater than 0/],
      [['--lr', '-1'], /Option '--lr' argument is ambiguous\. Did you forget/],
      [['--bogus'], /Unknown option '--bogus'/],
      [['--token', 'change-me'], /the token 'change-me' is a placeholder from an example; make one with: openssl rand -hex 16/],
      [['--token', 'short-secret'], /the token is 12 characters; at least 16 are needed/],
      [['--allreduce', 'ring'], /--allreduce must be one of sharded, star/],
    ];
    // Each process only parses its arguments: they run side by side.
    const [unknown, ...results] = await Promise.all([runCli('lenet-coord', ['train']), ...cases.map(([args]) => runCli('lenet-coord', ['start', ...args]))]);
    cases.forEach(([args, message], i) => {
      expect(results[i].code, args.join(' ')).toBe(2);
      expect(results[i].stderr, args.join(' ')).toMatch(message);
    });
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/unknown command 'train'/);
  });
});
