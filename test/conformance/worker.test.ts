// Conformance, the worker's side: a real `lenet-worker` process joins a coordinator that the test
// plays, one test per rule of docs/protocol.md that a coordinator can observe of a worker: what
// it sends and in which order, the frames it must refuse (it disconnects with 4004 and connects
// again, so one worker serves test after test), what it must ignore, and how it exits.
import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import protobuf from 'protobufjs';
import { WebSocketServer, type WebSocket } from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PROTOCOL_VERSION, type AssignmentMessage, type Message, type RunConfigMessage } from '../../src/protocol/messages.js';
import { denseOffset, modelSpec } from '../../src/model/architectures.js';
import { valuesDigest } from '../../src/model/weights.js';
import { runConfig, wholeStep } from '../integration/scripted-coordinator.js';
import { startCli, type CliResult, type RunningCli } from '../integration/run-cli.js';
import { Client } from './client.js';

const P = modelSpec('lenet5').size;
const D = denseOffset(modelSpec('lenet5'));
const WORKER_ID = 1;

/** Challenge, the worker's Hello, then Welcome with the run's config (its dataset, `overrides`). */
async function welcome(c: Client, overrides: Partial<RunConfigMessage> = {}): Promise<Extract<Message, { type: 'hello' }>> {
  c.send({ type: 'challenge', nonce: randomBytes(32), coordinatorVersion: 'conformance' });
  const hello = await c.next('hello');
  c.send({ type: 'welcome', workerId: WORKER_ID, config: runConfig({ datasetSha256: hello.datasetSha256, ...overrides }) });
  return hello;
}

/** A listening socket that hands the test each connection a worker opens, in order. */
class PlayedCoordinator {
  private readonly server = new WebSocketServer({ host: '127.0.0.1', port: 0, maxPayload: 64 * 1024 * 1024 });
  private readonly accepted: Client[] = [];
  private waiters: (() => void)[] = [];
  private taken = 0;

  constructor() {
    this.server.on('connection', (ws: WebSocket) => {
      this.accepted.push(new Client(ws));
      this.waiters.splice(0).forEach((w) => w());
    });
  }

  async url(): Promise<string> {
    if (!this.server.address()) await new Promise((resolve) => this.server.once('listening', resolve));
    return `ws://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  /** The worker's next connection (it reconnects after each one the test ends). */
  async connection(): Promise<Client> {
    while (this.accepted.length <= this.taken) await new Promise<void>((resolve) => this.waiters.push(resolve));
    return this.accepted[this.taken++];
  }

  /** The next connection, through Challenge, Hello, Welcome(config) and Ready. */
  async welcomed(overrides: Partial<RunConfigMessage> = {}): Promise<{ c: Client; hello: Extract<Message, { type: 'hello' }> }> {
    const c = await this.connection();
    const hello = await welcome(c, overrides);
    await c.next('ready');
    return { c, hello };
  }

  close(): Promise<void> {
    for (const c of this.accepted) c.close();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

const running: RunningCli[] = [];
const worker = async (url: string): Promise<RunningCli> => {
  const w = startCli('lenet-worker', ['join', url, '--threads', '1', '--connect-timeout', '60', '--name', 'conformance-worker']);
  running.push(w);
  return w;
};
afterAll(() => running.splice(0).forEach((p) => p.kill()));

const weights = (version: number, offset = 0, count = P - offset): Message => ({
  type: 'weights',
  version,
  offset,
  values: Float32Array.from({ length: count }, (_, i) => (((offset + i) % 13) - 6) * 0.01),
});
const adamState = (version: number, slots = P): Message => ({ type: 'optimizer_state', version, name: 'adam', t: version, slots: { m: new Float32Array(slots), v: new Float32Array(slots) } });
const partial = (step: number, lo: number, hi: number, offset: number, count: number): Message => ({
  type: 'result',
  step,
  lo,
  hi,
  examples: 32 * (hi - lo),
  lossSum: 1,
  offset,
  gradient: new Float32Array(count).fill(0.5),
  computeMs: 0,
});

describe('a worker, joined to a played coordinator (docs/protocol.md)', () => {
  const coordinator = new PlayedCoordinator();
  let w: RunningCli;
  beforeAll(async () => {
    w = await worker(await coordinator.url());
  });
  afterAll(() => coordinator.close());

  it('answers the Challenge with Hello: its threads, its dataset\'s SHA-256, and an empty proof in a run without a token', async () => {
    const c = await coordinator.connection();
    c.send({ type: 'challenge', nonce: randomBytes(32), coordinatorVersion: 'conformance' });
    const hello = await c.next('hello');
    expect(hello.threads).toBe(1);
    expect(hello.datasetSha256).toMatch(/^[0-9a-f]{64}$/);
    expect(hello.authProof).toHaveLength(0);
    expect(hello.name).toBe('conformance-worker');
    c.close();
  });

  it('an Assignment before Welcome: disconnects with 4004', async () => {
    const c = await coordinator.connection();
    c.send({ type: 'challenge', nonce: randomBytes(32), coordinatorVersion: 'conformance' });
    await c.next('hello');
    c.send(wholeStep(0));
    expect((await c.closed).code).toBe(4004);
  });

  it('a message only a worker sends (Hello): 4004', async () => {
    const { c, hello } = await coordinator.welcomed();
    c.send(hello);
    expect((await c.closed).code).toBe(4004);
  });

  it('Weights that are neither all values nor one of the two parts: 4004', async () => {
    const { c } = await coordinator.welcomed();
    c.send(weights(0, 5, 10));
    expect((await c.closed).code).toBe(4004);
  });

  it('an Assignment for weights it does not hold: 4004', async () => {
    const { c } = await coordinator.welcomed();
    c.send(weights(3));
    c.send({ ...wholeStep(5) });
    expect((await c.closed).code).toBe(4004);
  });

  it('an Assignment of positions past the epoch\'s end: 4004', async () => {
    const { c } = await coordinator.welcomed();
    c.send(weights(0));
    c.send(wholeStep(0, { start: 60_000 - 32 }));
    expect((await c.closed).code).toBe(4004);
  });

  const badApply: [string, AssignmentMessage][] = [
    ['less than the whole step', { ...wholeStep(0, { lr: 0.001 }), hi: 1 }],
    ['a learning rate not > 0', { ...wholeStep(0), apply: true, lr: 0 }],
  ];
  for (const [what, a] of badApply) {
    it(`an apply Assignment for ${what}: 4004`, async () => {
      const { c } = await coordinator.welcomed();
      c.send(adamState(0));
      c.send(weights(0));
      c.send(a);
      expect((await c.closed).code).toBe(4004);
    });
  }

  const badState: [string, Message][] = [
    ['another optimizer', { type: 'optimizer_state', version: 0, name: 'sgd', t: 0, slots: {} }],
    ['slots of the wrong length', adamState(0, 100)],
  ];
  for (const [what, state] of badState) {
    it(`OptimizerState for ${what}: 4004`, async () => {
      const { c } = await coordinator.welcomed();
      c.send(state);
      expect((await c.closed).code).toBe(4004);
    });
  }

  it('an Assignment for older weights than it holds is skipped; one for the weights it holds is computed, each subtree\'s dense part first', async () => {
    const { c } = await coordinator.welcomed();
    c.send(weights(3));
    c.send(wholeStep(2));
    c.send(wholeStep(3));
    const results = await c.first('result', 2);
    expect(results.map((r) => r.step)).toEqual([3, 3]);
    expect(results.map((r) => [r.lo, r.hi, r.examples])).toEqual([[0, 2, 64], [0, 2, 64]]);
    expect(results.map((r) => [r.offset, r.gradient.length])).toEqual([[D, P - D], [0, D]]);
    expect(results[0].lossSum).toBe(results[1].lossSum);
    expect(await c.staysOpen()).toBe(true);
    expect(c.all('result')).toHaveLength(2);
    c.close();
  });

  it('Weights during an apply Assignment\'s computation: that step\'s update is not applied', async () => {
    // 32 microbatches: the step runs well past the 100 ms after which a one-thread worker reads
    // its socket, so the Weights that take the step back are read during it.
    const { c } = await coordinator.welcomed({ batchSize: 1024 });
    c.send(adamState(0));
    c.send(weights(0));
    c.send(wholeStep(0, { lr: 0.001, microbatches: 32 }));
    c.send(weights(0));
    await w.waitFor(/step 0 was taken back by the coordinator during its computation; its update is not applied here/, 20_000);
    c.close();
  });

  /** A plan of two owners, this worker first; its range is leaf 0 of a 2-leaf step, the other owner's leaf 1. */
  const SPLIT = 30_000;
  function shardedStep(c: Client): AssignmentMessage {
    c.send({ type: 'peers', plan: 1, peers: [{ workerId: WORKER_ID, url: 'ws://127.0.0.1:9', from: 0, to: SPLIT }, { workerId: 2, url: 'ws://127.0.0.1:10', from: SPLIT, to: P }] });
    c.send(adamState(0));
    c.send(weights(0));
    const a = leafZero(1);
    c.send(a);
    return a;
  }

  /** Leaf 0 of step 0's two, sharded with plan `plan`: this worker's range in the plan above. */
  function leafZero(plan: number): AssignmentMessage {
    const whole = wholeStep(0);
    return { ...whole, hi: 1, sizes: [32], sharded: true, plan, bounds: [0, 1, 2], examples: 64, lr: 0.001 };
  }

  it('a sharded step: RangeDone lists its subtrees and the digests of what it computed with and sent; a partial sum of a subtree the step lacks is ignored; once every partial sum of its shard is in, ShardUpdate with the digests of what it reduced', async () => {
    const { c } = await coordinator.welcomed();
    shardedStep(c);
    const done = await c.next('range_done');
    expect(done.step).toBe(0);
    expect(done.nodes).toEqual([{ lo: 0, hi: 1, examples: 32, lossSum: expect.any(Number) }]);
    const w0 = (weights(0) as Extract<Message, { type: 'weights' }>).values;
    expect(done.weightsDigests).toEqual([valuesDigest(w0.subarray(0, SPLIT)), valuesDigest(w0.subarray(SPLIT, P))]);
    expect(done.sumsDigests).toHaveLength(2); // its one subtree, over each of the two shards
    c.send(partial(0, 5, 6, 0, SPLIT));
    await w.waitFor(/ignored a partial sum of step 0 for a subtree the step does not have/, 10_000);
    expect(c.all('shard_update')).toHaveLength(0);
    const sent = partial(0, 1, 2, 0, SPLIT) as Extract<Message, { type: 'result' }>;
    c.send(sent);
    const update = await c.next('shard_update');
    expect([update.step, update.offset, update.mean.length]).toEqual([0, 0, SPLIT]);
    // Its own subtree's sum over its shard, as it reported it, then the one it was sent.
    expect(update.receivedDigests).toEqual([done.sumsDigests[0], valuesDigest(sent.gradient)]);
    c.close();
  });

  it('Abort(step): the step is dropped, and the partial sums that complete its shard make no ShardUpdate', async () => {
    const { c } = await coordinator.welcomed();
    shardedStep(c);
    await c.next('range_done');
    c.send({ type: 'abort', step: 0 });
    c.send(partial(0, 1, 2, 0, SPLIT));
    expect(await c.staysOpen(1500)).toBe(true);
    expect(c.all('shard_update')).toHaveLength(0);
    c.close();
  });

  it('a sharded Assignment without the optimizer state of its version: 4004', async () => {
    const { c } = await coordinator.welcomed();
    c.send({ type: 'peers', plan: 2, peers: [{ workerId: WORKER_ID, url: 'ws://127.0.0.1:9', from: 0, to: SPLIT }, { workerId: 2, url: 'ws://127.0.0.1:10', from: SPLIT, to: P }] });
    c.send(weights(0));
    c.send(leafZero(2));
    expect((await c.closed).code).toBe(4004);
  });

  it('an apply Assignment it cannot honour (a float16 run): 4004', async () => {
    const { c } = await coordinator.welcomed({ gradDType: 'float16' });
    c.send(adamState(0));
    c.send(weights(0));
    c.send(wholeStep(0, { lr: 0.001 }));
    expect((await c.closed).code).toBe(4004);
  });

  it('close 4006 (the coordinator shutting down): it connects again', async () => {
    const { c } = await coordinator.welcomed();
    c.ws.close(4006, 'shutting down');
    const again = await coordinator.connection();
    again.send({ type: 'challenge', nonce: randomBytes(32), coordinatorVersion: 'conformance' });
    expect((await again.next('hello')).name).toBe('conformance-worker');
    again.close();
  });

  it('a sharded Assignment whose plan it does not hold: 4004', async () => {
    const { c } = await coordinator.welcomed();
    c.send(adamState(0));
    c.send(weights(0));
    c.send({ ...wholeStep(0), sharded: true, plan: 7, bounds: [0, 2], examples: 64, lr: 0.001 });
    expect((await c.closed).code).toBe(4004);
  });
});

// 6 s of waiting: in `npm run test:conformance` (LENET_CONFORMANCE=full), not in `npm test`.
describe.runIf(process.env.LENET_CONFORMANCE === 'full')('a worker\'s heartbeats (docs/protocol.md, "Limits")', () => {
  it('sends Heartbeat every 5 s once welcomed', async () => {
    const coordinator = new PlayedCoordinator();
    try {
      await worker(await coordinator.url());
      const { c } = await coordinator.welcomed();
      await new Promise((r) => setTimeout(r, 6_000));
      expect(c.all('heartbeat').length).toBeGreaterThanOrEqual(1);
    } finally {
      await coordinator.close();
    }
  }, 20_000);
});

describe('how a worker ends (docs/protocol.md, "Handshake" and "What each side does with the unexpected")', () => {
  /** A worker of its own, joined to a coordinator of its own, that `script` plays; its exit code. */
  async function exitOf(script: (c: Client) => Promise<void>): Promise<CliResult> {
    const coordinator = new PlayedCoordinator();
    try {
      const w = await worker(await coordinator.url());
      await script(await coordinator.connection());
      return await w.done;
    } finally {
      await coordinator.close();
    }
  }

  it('Goodbye with run_complete: exits 0', async () => {
    const { code } = await exitOf(async (c) => {
      await welcome(c);
      await c.next('ready');
      c.send({ type: 'goodbye', reason: 'run complete', runComplete: true });
    });
    expect(code).toBe(0);
  });

  it('a Challenge of another protocol version: exits 5, naming both versions', async () => {
    const { code, stdout, stderr } = await exitOf(async (c) => {
      const root = protobuf.loadSync(new URL('../../proto/lenet.proto', import.meta.url).pathname);
      const Envelope = root.lookupType('lenet.v1.Envelope');
      c.send(Envelope.encode(Envelope.create({ protocolVersion: PROTOCOL_VERSION + 1, challenge: { nonce: randomBytes(32), coordinatorVersion: 'future' } })).finish());
    });
    expect(code).toBe(5);
    expect(stdout + stderr).toMatch(new RegExp(`version ${PROTOCOL_VERSION + 1}, this side speaks ${PROTOCOL_VERSION}`));
  });

  const otherModels: [string, Partial<RunConfigMessage>][] = [
    ['param_count not the model\'s', { paramCount: P + 1 }],
    ['dense_from not the model\'s', { denseFrom: D + 1 }],
    ['an unknown arch', { arch: 'alexnet' }],
  ];
  for (const [what, config] of otherModels) {
    it(`a model it cannot compute (${what}): closes without Ready, exits 5`, async () => {
      let c: Client | undefined;
      const { code } = await exitOf(async (conn) => {
        c = conn;
        await welcome(conn, config);
      });
      expect(code).toBe(5);
      expect(c!.all('ready')).toHaveLength(0);
    });
  }
});
