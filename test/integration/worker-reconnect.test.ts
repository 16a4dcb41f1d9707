// A worker that reconnects to the same run (the coordinator was restarted and resumed from an
// earlier checkpoint) must not trust the weights it still holds: their versions may be ahead of
// the new coordinator's. Scripted coordinator, real worker in this process: the second
// connection's dense weights come 300 ms after its assignment, and the worker must wait for them.
import { afterEach, describe, expect, it } from 'vitest';
import { denseOffset, modelSpec } from '../../src/model/architectures.js';
import { initWeights } from '../../src/model/weights.js';
import { RemoteWorkerProcess } from '../../src/worker/remote.js';
import { runConfig, scriptedCoordinator, wholeStep, type ScriptedCoordinator } from './scripted-coordinator.js';

const spec = modelSpec('lenet5');
const split = denseOffset(spec);

let coordinator: ScriptedCoordinator | undefined;
afterEach(async () => {
  await coordinator?.close();
  coordinator = undefined;
});

describe('a worker reconnecting to the same run', () => {
  it('waits for the new connection\'s dense weights instead of computing on those it held', async () => {
    const first = initWeights(spec, 1);
    const second = initWeights(spec, 2);
    let denseSentAt = 0;
    let secondResultAt = 0;
    coordinator = await scriptedCoordinator(runConfig(), (m, { n, ws, send }) => {
      if (m.type === 'ready' && n === 1) {
        // The first coordinator got as far as version 9, dense part included.
        send({ type: 'weights', version: 9, offset: 0, values: first });
        send(wholeStep(9));
      }
      if (m.type === 'result' && n === 1 && m.offset === 0) ws.terminate(); // killed
      if (m.type === 'ready' && n === 2) {
        // The restarted one resumed at version 3: convolutions and assignment now, dense later.
        send({ type: 'weights', version: 3, offset: 0, values: second.subarray(0, split) });
        send(wholeStep(3));
        setTimeout(() => {
          denseSentAt = performance.now();
          send({ type: 'weights', version: 3, offset: split, values: second.subarray(split) });
        }, 300);
      }
      if (m.type === 'result' && n === 2 && m.offset === 0) {
        secondResultAt = performance.now();
        send({ type: 'goodbye', reason: 'run complete', runComplete: true });
      }
    });
    const url = coordinator.url;
    const worker = new RemoteWorkerProcess({ url, threads: 1, backend: 'wasm', connectTimeoutS: 30, name: 'reconnecting', log: () => undefined });
    expect(await worker.run()).toBe(0);
    expect(coordinator.connections()).toBe(2);
    expect(denseSentAt).toBeGreaterThan(0);
    expect(secondResultAt).toBeGreaterThan(denseSentAt);
  }, 60_000);
});
