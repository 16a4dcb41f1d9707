// The dense layers' weights of the next step go out before a step ends (the dense shard,
// src/coordinator/step-update.ts). A worker that fails after they did, its dense part already used, must still
// leave the weights of an undisturbed run: its range is recomputed with the step's own weights.
// The worker runs in this process so the test can time its failure to the message.
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { decode } from '../../src/protocol/codec.js';
import { denseOffset, modelSpec } from '../../src/model/architectures.js';
import { RemoteWorkerProcess } from '../../src/worker/remote.js';
import { interceptSends } from './intercept-sends.js';
import { epochDigests, runCli, startCoordinator, processesOfThisFile } from './run-cli.js';

const { dir, running } = processesOfThisFile('lenet-early-dense-');
let restoreSends: (() => void) | undefined;
afterEach(() => restoreSends?.());

// Batch 64 = 2 microbatches: one for the coordinator's thread, one for the worker. 64 steps: the
// run goes on for about a second after the worker drops at step VICTIM_STEP, well past its first
// reconnect (RECONNECT_INITIAL_MS); with 16 steps the run could end first and the worker, finding
// no coordinator, failed after its --connect-timeout (seen once in CI).
// No verification: a range picked for recomputation does not hand its dense part over early
// (step.ts, runRange), so with the default --verify-fraction 0.02 the step-4 range was picked in
// about one run in 50, the next dense weights could not be made before its held-back convolutions'
// part, and the coordinator took the range back as late ("missed the 2000 ms step deadline").
const RUN = ['--epochs', '1', '--train-limit', '4096', '--test-limit', '200', '--seed', '3', '--quiet', '--port', '0', '--threads', '1', '--verify-fraction', '0'];
const SPLIT = denseOffset(modelSpec('lenet5'));
const VICTIM_STEP = 4;

describe('dense weights sent ahead', () => {
  it('a worker that dies after the next dense weights reached it leaves the undisturbed weights', { timeout: 120_000 }, async () => {
    const refMetrics = join(dir.path, 'ref.jsonl');
    expect((await runCli('lenet-coord', ['start', ...RUN, '--checkpoint-dir', join(dir.path, 'ref'), '--metrics-out', refMetrics])).code).toBe(0);

    const metrics = join(dir.path, 'victim.jsonl');
    const { proc: c, url } = await startCoordinator([...RUN, '--wait-workers', '1', '--checkpoint-dir', join(dir.path, 'victim'), '--metrics-out', metrics], running);

    // At step VICTIM_STEP the worker holds back the convolutions' part of its result and drops
    // once the dense weights of the next step have come (so its dense part has been used). They
    // may come before that part is ready to go: the coordinator's thread can finish its dense part
    // while the worker still runs the convolutions' backward pass. So the worker listens from its
    // dense part on, which the coordinator needs before it can make them.
    let sawEarlyDenseUpdate = false;
    let holding = false;
    const listening = new WeakSet<object>();
    restoreSends = interceptSends((ws, msg) => {
      if (msg.type !== 'result' || msg.step !== VICTIM_STEP) return false;
      if (msg.offset === SPLIT) {
        if (listening.has(ws)) return false;
        listening.add(ws);
        ws.on('message', (frame: Buffer) => {
          const m = decode(frame);
          if (m.type !== 'weights' || m.version !== VICTIM_STEP + 1 || m.offset !== SPLIT) return;
          sawEarlyDenseUpdate = true;
          if (holding) ws.terminate();
        });
        return false;
      }
      if (msg.offset !== 0 || msg.gradient.length !== SPLIT) return false;
      holding = true;
      if (sawEarlyDenseUpdate) ws.terminate();
      return true;
    });

    const lines: string[] = [];
    const worker = new RemoteWorkerProcess({ url, threads: 1, backend: 'wasm', connectTimeoutS: 30, name: 'victim', log: (m) => lines.push(m) });
    const code = await worker.run();
    const result = await c.done;
    expect(result.code, result.stderr).toBe(0);
    expect(code).toBe(0);
    expect(sawEarlyDenseUpdate).toBe(true);
    expect(lines.join('\n')).toMatch(/connection lost/); // and it came back for the later steps
    expect(result.stdout, `${result.stdout}\nworker:\n${lines.join('\n')}`).toMatch(new RegExp(`worker-1 left during step ${VICTIM_STEP}.*\\(step ${VICTIM_STEP}\\); microbatches \\[1,2\\) go to local`));
    expect(epochDigests(metrics)[0]).toBe(epochDigests(refMetrics)[0]);
  });
});
