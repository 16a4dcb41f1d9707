// The onnx backend end to end: the same bits for any number of threads and across a resume, remote
// workers on it, a worker on another backend refused, and the fallback where the package is
// missing. Skipped where onnxruntime-node is not installed (it is an optional dependency).
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { onnxRuntimeAvailable } from '../../src/backend/onnx/runtime.js';
import { epochRecords, readJsonLines, runCli, startCli, startCoordinator, processesOfThisFile, type RunningCli } from './run-cli.js';

const { dir, running } = processesOfThisFile('lenet-onnx-');

const RUN = ['--train-limit', '1024', '--test-limit', '200', '--batch-size', '128', '--microbatch', '16', '--seed', '5', '--quiet', '--port', '0'];

async function train(name: string, extra: string[], env?: NodeJS.ProcessEnv): Promise<{ digests: string[]; run: Record<string, unknown>; stdout: string }> {
  const metrics = join(dir.path, `${name}.jsonl`);
  const r = await runCli('lenet-coord', ['start', ...RUN, '--checkpoint-dir', join(dir.path, name), '--metrics-out', metrics, ...extra], 110_000, env);
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  return { digests: epochRecords(metrics).map((e) => e.weightsSha256 as string), run: readJsonLines(metrics)[0], stdout: r.stdout };
}

function start(program: 'lenet-coord' | 'lenet-worker', args: string[]): RunningCli {
  const p = startCli(program, args);
  running.push(p);
  return p;
}

let reference: string[];

describe.skipIf(!onnxRuntimeAvailable())('--backend onnx', () => {
  it('gives bit-identical weights after every epoch with 1, 2 and 4 threads, other bits than wasm', async () => {
    const runs = [];
    for (const threads of [1, 2, 4]) runs.push(await train(`threads-${threads}`, ['--epochs', '2', '--threads', String(threads), '--backend', 'onnx']));
    reference = runs[0].digests;
    expect(reference).toHaveLength(2);
    expect(runs.map((r) => r.run.backend)).toEqual(['onnx', 'onnx', 'onnx']);
    expect(runs[1].digests).toEqual(reference);
    expect(runs[2].digests).toEqual(reference);
    const wasm = await train('wasm', ['--epochs', '1', '--threads', '2', '--backend', 'wasm']);
    expect(wasm.digests[0]).not.toBe(reference[0]);
  });

  it('a run of 2 epochs equals 1 epoch followed by --resume to 2, bit for bit', async () => {
    await train('resumed', ['--epochs', '1', '--threads', '1', '--backend', 'onnx']);
    const resumed = await train('resumed', ['--epochs', '2', '--threads', '2', '--backend', 'onnx', '--resume']);
    expect(resumed.stdout).toMatch(/resumed from .*ckpt-e0001-s000000/);
    expect(resumed.digests).toEqual(reference);
  });

  it('two remote workers on onnx (sharded) end on the 1-thread digest; a wasm worker is refused, naming the backends', async () => {
    const metrics = join(dir.path, 'remote.jsonl');
    const c = await startCoordinator([...RUN, '--epochs', '2', '--threads', '0', '--backend', 'onnx', '--wait-workers', '2', '--checkpoint-dir', join(dir.path, 'remote'), '--metrics-out', metrics], running);
    const wasm = start('lenet-worker', ['join', c.url, '--threads', '1', '--backend', 'wasm']);
    const refused = await wasm.done;
    expect(refused.code).toBe(5);
    expect(refused.stderr).toMatch(/the worker computes with the wasm backend of lenet-dist \S+, the coordinator with the onnx backend/);
    const workers = ['w1', 'w2'].map((name) => start('lenet-worker', ['join', c.url, '--threads', '1', '--backend', 'onnx', '--name', name]));
    const done = await c.proc.done;
    expect(done.code, done.stderr).toBe(0);
    for (const w of workers) expect((await w.done).code).toBe(0);
    expect(epochRecords(metrics).map((e) => e.weightsSha256)).toEqual(reference);
  });

  it('falls back to wasm with one line where onnxruntime-node does not load', async () => {
    const r = await train('fallback', ['--epochs', '1', '--threads', '1', '--backend', 'onnx'], { ...process.env, LENET_TEST_NO_ONNX: '1' });
    expect(r.run.backend).toBe('wasm');
    expect(r.stdout.split('\n').filter((l) => /onnxruntime-node/.test(l))).toEqual([
      'note: the onnx backend needs onnxruntime-node, which is not installed or does not load here; using the wasm backend',
    ]);
  });
});
