// A coordinator written as a script, for tests of a real worker running in the test's process:
// it does the handshake (challenge, welcome) and hands every later message to the test.
import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { WebSocketServer, type WebSocket } from 'ws';
import { decode, encode } from '../../src/protocol/codec.js';
import type { AssignmentMessage, Message, RunConfigMessage } from '../../src/protocol/messages.js';
import { denseOffset, modelSpec } from '../../src/model/architectures.js';

/** lenet5 at batch 64 (2 microbatches of 32) over the embedded training set; override what a test needs. */
export function runConfig(overrides: Partial<RunConfigMessage> = {}): RunConfigMessage {
  return {
    arch: 'lenet5',
    activation: 'relu',
    seed: 4,
    distort: false,
    batchSize: 64,
    microbatch: 32,
    trainSamples: 60000,
    datasetSha256: '',
    sendPixels: false,
    paramCount: modelSpec('lenet5').size,
    gradDType: 'float32',
    optimizer: 'adam',
    runId: 'scripted-run',
    denseFrom: denseOffset(modelSpec('lenet5')),
    ...overrides,
  };
}

/**
 * The whole of step `step` on weights of the same version: `microbatches` of 32 samples, each
 * sample index derived from `sample(i)`; with `lr`, an apply assignment.
 */
export function wholeStep(step: number, o: { microbatches?: number; lr?: number; start?: number } = {}): AssignmentMessage {
  const microbatches = o.microbatches ?? 2;
  const n = 32 * microbatches;
  return {
    type: 'assignment',
    step,
    weightsVersion: step,
    epoch: 0,
    microbatches,
    lo: 0,
    hi: microbatches,
    start: o.start ?? step * n,
    sizes: Array.from({ length: microbatches }, () => 32),
    pixels: new Uint8Array(0),
    labels: new Uint8Array(0),
    apply: o.lr !== undefined,
    lr: o.lr ?? 0,
    sharded: false,
    plan: 0,
    bounds: [],
    examples: 0,
  };
}

export interface ScriptedConnection {
  /** 1 for the first connection, 2 for the next (a reconnect), ... */
  n: number;
  ws: WebSocket;
  send(m: Message): void;
}

export interface ScriptedCoordinator {
  url: string;
  connections(): number;
  close(): Promise<void>;
}

/** Listens on a free loopback port; `script` gets each message after the worker's Hello. */
export async function scriptedCoordinator(config: RunConfigMessage, script: (m: Message, c: ScriptedConnection) => void): Promise<ScriptedCoordinator> {
  const server = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise((resolve) => server.once('listening', resolve));
  let connections = 0;
  server.on('connection', (ws: WebSocket) => {
    const c: ScriptedConnection = {
      n: ++connections,
      ws,
      send: (m) => {
        if (ws.readyState === ws.OPEN) ws.send(encode(m));
      },
    };
    c.send({ type: 'challenge', nonce: randomBytes(32), coordinatorVersion: 'scripted' });
    ws.on('message', (data: Buffer) => {
      const m = decode(data);
      if (m.type === 'hello') c.send({ type: 'welcome', workerId: c.n, config });
      else script(m, c);
    });
  });
  return {
    url: `ws://127.0.0.1:${(server.address() as AddressInfo).port}`,
    connections: () => connections,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
