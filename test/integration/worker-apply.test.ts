// A worker computing whole steps alone applies the optimizer itself (Assignment.apply) and starts
// the next step, sent ahead, on the weights it made. Scripted coordinator, real worker in this
// process: its weights must be the bits of the coordinator's own update, and an apply assignment
// that weights came after (the coordinator took the step back) must not be computed.
import { afterEach, describe, expect, it } from 'vitest';
import type { AssignmentMessage, Message, ResultMessage } from '../../src/protocol/messages.js';
import { modelSpec } from '../../src/model/architectures.js';
import { initWeights } from '../../src/model/weights.js';
import { createOptimizer, meanInto } from '../../src/optim/optimizer.js';
import { RemoteWorkerProcess } from '../../src/worker/remote.js';
import { runConfig, scriptedCoordinator, wholeStep, type ScriptedCoordinator } from './scripted-coordinator.js';

const spec = modelSpec('lenet5');
const config = runConfig({ batchSize: 1024 }); // room for 32 microbatches
const LR = [0.01, 0.005];

let scripted: ScriptedCoordinator | undefined;
afterEach(async () => {
  await scripted?.close();
  scripted = undefined;
});

/** The whole of step `step`: `microbatches` of 32 samples; applied by the worker with LR[step] if `apply`. */
const assignment = (step: number, apply: boolean, microbatches = 2): AssignmentMessage =>
  wholeStep(step, { microbatches, lr: apply ? LR[step] : undefined, start: step * 6400 });

/** A scripted coordinator on a free loopback port; `script` answers the worker's messages. */
async function coordinator(script: (m: Message, send: (m: Message) => void) => void): Promise<string> {
  scripted = await scriptedCoordinator(config, (m, c) => script(m, c.send));
  return scripted.url;
}

describe('a worker computing whole steps alone', () => {
  it('makes the next weights itself, the bits of the coordinator\'s update, and computes the step sent ahead on them', async () => {
    const weights = initWeights(spec, 4);
    const optimizer = createOptimizer('adam', spec.size);
    const results: ResultMessage[] = [];
    const url = await coordinator((m, send) => {
      if (m.type === 'ready') {
        send({ type: 'optimizer_state', version: 0, ...optimizer.state() });
        send({ type: 'weights', version: 0, offset: 0, values: weights });
        send(assignment(0, true));
        send(assignment(1, true)); // sent ahead: on weights the worker is to make
      }
      if (m.type === 'result') {
        results.push({ ...m, gradient: m.gradient.slice() });
        if (m.step === 1) send({ type: 'goodbye', reason: 'run complete', runComplete: true });
      }
    });
    const worker = new RemoteWorkerProcess({ url, threads: 1, backend: 'wasm', connectTimeoutS: 5, name: 'alone', log: () => undefined });
    const held = (): Float32Array => (worker as unknown as { session: { weights: Float32Array } }).session.weights;
    expect(await worker.run()).toBe(0);
    expect(results.map((r) => [r.step, r.offset, r.gradient.length])).toEqual([
      [0, 0, spec.size],
      [1, 0, spec.size],
    ]);
    // The coordinator's two updates from the two results, as the trainer applies them.
    const mean = new Float32Array(spec.size);
    for (const r of results) {
      expect(meanInto(mean, r.gradient, r.examples, 0, spec.size)).toBe(true);
      optimizer.apply(weights, mean, LR[r.step]);
    }
    expect(Buffer.from(held().buffer).equals(Buffer.from(weights.buffer))).toBe(true);
    // Step 1's gradient was computed on the weights made after step 0, not on those of step 0.
    expect(results[1].lossSum).not.toBe(results[0].lossSum);
  }, 60_000);

  it('neither applies a step\'s update over weights that came during it, nor computes a step sent ahead that weights came after', async () => {
    // 32 microbatches: step 0 runs well past the 100 ms after which a one-thread worker reads its
    // socket, so the frames that take the steps back are read during it.
    const long = (step: number, apply: boolean) => assignment(step, apply, 32);
    const weights = initWeights(spec, 4);
    const steps: number[] = [];
    const lines: string[] = [];
    const url = await coordinator((m, send) => {
      if (m.type === 'ready') {
        send({ type: 'optimizer_state', version: 0, ...createOptimizer('adam', spec.size).state() });
        send({ type: 'weights', version: 0, offset: 0, values: weights });
        send(long(0, true));
        send(long(1, true));
        // Step 0 is taken back (say it was late) and given again, to be applied by the coordinator.
        setTimeout(() => {
          send({ type: 'weights', version: 0, offset: 0, values: weights });
          send(long(0, false));
          // A last step, to know the worker is past the others.
          send({ type: 'weights', version: 5, offset: 0, values: weights });
          send({ ...long(0, false), step: 5, weightsVersion: 5 });
        }, 20);
      }
      if (m.type === 'result') {
        steps.push(m.step);
        if (m.step === 5) send({ type: 'goodbye', reason: 'run complete', runComplete: true });
      }
    });
    const worker = new RemoteWorkerProcess({ url, threads: 1, backend: 'wasm', connectTimeoutS: 5, name: 'taken-back', log: (l) => lines.push(l) });
    expect(await worker.run()).toBe(0);
    expect(lines.filter((l) => /step \d/.test(l))).toEqual([
      'worker: step 0 was taken back by the coordinator during its computation; its update is not applied here',
      'worker: step 1 was taken back by the coordinator; skipped',
    ]);
    expect(steps).not.toContain(1);
    expect(steps[steps.length - 1]).toBe(5);
  }, 60_000);
});
