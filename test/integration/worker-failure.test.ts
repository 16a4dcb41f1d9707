// A worker whose compute fails the same way every time gives up after the second time, with
// its own exit code and a goodbye that says why, instead of reconnecting forever.
import { afterEach, describe, expect, it } from 'vitest';
import type { Message } from '../../src/protocol/messages.js';
import { modelSpec } from '../../src/model/architectures.js';
import { initWeights } from '../../src/model/weights.js';
import { ComputeFailedError, EXIT_COMPUTE_FAILED, RemoteWorkerProcess } from '../../src/worker/remote.js';
import { runConfig, scriptedCoordinator, wholeStep, type ScriptedCoordinator } from './scripted-coordinator.js';

let scripted: ScriptedCoordinator | undefined;
afterEach(async () => {
  await scripted?.close();
  scripted = undefined;
});

describe('a worker whose compute keeps failing', () => {
  it('exits 9 after the same failure twice in a row, saying goodbye with the reason', async () => {
    const weights = initWeights(modelSpec('lenet5'), 2);
    const goodbyes: string[] = [];
    scripted = await scriptedCoordinator(runConfig(), (m: Message, c) => {
      if (m.type === 'ready') {
        c.send({ type: 'weights', version: 0, offset: 0, values: weights });
        c.send(wholeStep(0, { start: 70_000 })); // beyond the 60,000 training samples
      }
      if (m.type === 'goodbye') goodbyes.push(m.reason);
    });
    const lines: string[] = [];
    const worker = new RemoteWorkerProcess({ url: scripted.url, threads: 1, backend: 'wasm', connectTimeoutS: 10, name: 'failing', log: (l) => lines.push(l) });
    const err = await worker.run().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ComputeFailedError);
    expect((err as ComputeFailedError).exitCode).toBe(EXIT_COMPUTE_FAILED);
    expect((err as Error).message).toMatch(/computing step 0 failed twice in a row with the same error \(positions \[70000,70064\) are outside an epoch of 60000 samples\)/);
    expect(scripted.connections()).toBe(2); // one retry, then no more
    await new Promise((r) => setTimeout(r, 100));
    expect(goodbyes).toEqual(['compute failed 2 times in a row: positions [70000,70064) are outside an epoch of 60000 samples']);
    expect(lines.filter((l) => /could not compute step 0/.test(l))).toHaveLength(1);
  });
});
