// A disk that fails a write (full, read-only, failing) is the user's to fix: one CheckpointError
// naming the folder, the cause and the checkpoint to resume from, and no temporary folder left.
import { readdirSync } from 'node:fs';
import { beforeAll, describe, expect, it, vi } from 'vitest';
import { initBackend } from '../../../src/backend/select.js';
import { listCheckpoints, saveCheckpoint } from '../../../src/checkpoint/store.js';
import { MetricsRecorder } from '../../../src/metrics/recorder.js';
import { Adam } from '../../../src/optim/optimizer.js';
import { modelSpec } from '../../../src/model/architectures.js';
import { initWeights } from '../../../src/model/weights.js';
import { CheckpointError } from '../../../src/errors.js';
import { tempDir } from '../../helpers.js';

/** The errno code the next writes fail with, if any (writeSync and appendFileSync). */
const fail = vi.hoisted(() => ({ code: undefined as string | undefined, afterWrites: 0 }));

vi.mock('node:fs', async (importOriginal) => {
  const fs = await importOriginal<typeof import('node:fs')>();
  const maybeFail = (): void => {
    if (fail.code === undefined) return;
    if (fail.afterWrites > 0) {
      fail.afterWrites--;
      return;
    }
    throw Object.assign(new Error(`${fail.code}: injected failure, write`), { code: fail.code });
  };
  return {
    ...fs,
    writeSync: (...args: Parameters<typeof fs.writeSync>) => (maybeFail(), fs.writeSync(...args)),
    appendFileSync: (...args: Parameters<typeof fs.appendFileSync>) => (maybeFail(), fs.appendFileSync(...args)),
  };
});

const dir = tempDir('lenet-write-errors-');
beforeAll(async () => {
  await initBackend('wasm');
});

function input(step: number) {
  const spec = modelSpec('lenet5');
  return { dir: dir.path, spec, weights: initWeights(spec, 1), optimizer: new Adam(spec.size).state(), progress: { epoch: 0, step, globalStep: step }, config: {}, metrics: [] };
}

describe('write errors', () => {
  for (const code of ['ENOSPC', 'EROFS', 'EIO', 'EACCES']) {
    it(`${code} while a checkpoint is written: one CheckpointError, no temporary folder, the last checkpoint named`, async () => {
      const good = await saveCheckpoint(input(1));
      fail.code = code;
      fail.afterWrites = 2; // model.json and weights.bin go through, optimizer.bin fails
      const err = await saveCheckpoint(input(2)).catch((e: unknown) => e);
      fail.code = undefined;
      expect(err).toBeInstanceOf(CheckpointError);
      const e = err as CheckpointError;
      expect(e.exitCode).toBe(3);
      expect(e.message).toContain(`cannot write a checkpoint into ${dir.path} (${code}: injected failure)`);
      expect(e.message).toContain(`the newest complete checkpoint is ${good}`);
      expect(e.message).toMatch(/--resume/);
      expect(readdirSync(dir.path).filter((f) => f.startsWith('.tmp-'))).toEqual([]);
      expect(listCheckpoints(dir.path)).toEqual([good]);
    });
  }

  it('ENOSPC on --metrics-out: a CheckpointError naming the file', () => {
    const recorder = new MetricsRecorder(`${dir.path}/m.jsonl`, false);
    fail.code = 'ENOSPC';
    fail.afterWrites = 0;
    let err: unknown;
    try {
      recorder.write({ type: 'epoch', epoch: 1, trainLoss: 0, testLoss: 0, testAccuracy: 0, samplesPerSecond: 0, trainSeconds: 0, elapsedSeconds: 0, weightsSha256: '' });
    } catch (e) {
      err = e;
    }
    fail.code = undefined;
    expect(err).toBeInstanceOf(CheckpointError);
    expect((err as Error).message).toContain(`cannot write --metrics-out ${dir.path}/m.jsonl (ENOSPC`);
  });

  it('other errors are not turned into user errors', async () => {
    fail.code = 'EBADF';
    fail.afterWrites = 0;
    const err = await saveCheckpoint(input(3)).catch((e: unknown) => e);
    fail.code = undefined;
    expect(err).not.toBeInstanceOf(CheckpointError);
    expect((err as NodeJS.ErrnoException).code).toBe('EBADF');
  });
});
