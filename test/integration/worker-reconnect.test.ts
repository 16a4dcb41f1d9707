// A worker that reconnects to the same run (the coordinator was restarted and resumed from an
// earlier checkpoint) must not trust the weights it still holds: their versions may be ahead of
// the new coordinator's. Scripted coordinator, real worker in this process: the second
// connection's dense weights come 300 ms after its assignment, and the worker must wait for them.
import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { WebSocketServer, type WebSocket } from 'ws';
import { afterEach, describe, expect, it } from 'vitest';
import { decode, encode } from '../../src/protocol/codec.js';
import type { Message, RunConfigMessage } from '../../src/protocol/messages.js';
import { denseOffset, modelSpec } from '../../src/model/architectures.js';
import { initWeights } from '../../src/model/weights.js';
import { RemoteWorkerProcess } from '../../src/worker/remote.js';

const spec = modelSpec('lenet5');
const split = denseOffset(spec);
const config: RunConfigMessage = {
  arch: 'lenet5',
  activation: 'relu',
  seed: 4,
  distort: false,
  batchSize: 64,
  microbatch: 32,
  trainSamples: 60000,
  datasetSha256: '',
  sendPixels: false,
  paramCount: spec.size,
  gradDType: 'float32',
  optimizer: 'adam',
};

let server: WebSocketServer | undefined;
afterEach(async () => {
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  server = undefined;
});

function assignment(step: number): Message {
  const samples = Uint32Array.from({ length: 64 }, (_, i) => i * 11);
  return { type: 'assignment', step, weightsVersion: step, epoch: 0, microbatches: 2, lo: 0, hi: 2, samples, positions: Uint32Array.from({ length: 64 }, (_, i) => i), sizes: [32, 32], pixels: new Uint8Array(0), labels: new Uint8Array(0), apply: false, lr: 0 };
}

describe('a worker reconnecting to the same run', () => {
  it('waits for the new connection\'s dense weights instead of computing on those it held', async () => {
    server = new WebSocketServer({ host: '127.0.0.1', port: 0 });
    await new Promise((resolve) => server!.once('listening', resolve));
    const url = `ws://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const first = initWeights(spec, 1);
    const second = initWeights(spec, 2);
    let connections = 0;
    let denseSentAt = 0;
    let secondResultAt = 0;
    server.on('connection', (ws: WebSocket) => {
      const n = ++connections;
      const send = (m: Message): void => {
        if (ws.readyState === ws.OPEN) ws.send(encode(m));
      };
      send({ type: 'challenge', nonce: randomBytes(32), coordinatorVersion: 'scripted' });
      ws.on('message', (data: Buffer) => {
        const m = decode(data);
        if (m.type === 'hello') send({ type: 'welcome', workerId: n, config });
        if (m.type === 'ready' && n === 1) {
          // The first coordinator got as far as version 9, dense part included.
          send({ type: 'weights', version: 9, offset: 0, values: first });
          send(assignment(9));
        }
        if (m.type === 'result' && n === 1 && m.offset === 0) ws.terminate(); // killed
        if (m.type === 'ready' && n === 2) {
          // The restarted one resumed at version 3: convolutions and assignment now, dense later.
          send({ type: 'weights', version: 3, offset: 0, values: second.subarray(0, split) });
          send(assignment(3));
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
    });
    const worker = new RemoteWorkerProcess({ url, threads: 1, backend: 'wasm', connectTimeoutS: 30, name: 'reconnecting', log: () => undefined });
    expect(await worker.run()).toBe(0);
    expect(connections).toBe(2);
    expect(denseSentAt).toBeGreaterThan(0);
    expect(secondResultAt).toBeGreaterThan(denseSentAt);
  }, 60_000);
});
