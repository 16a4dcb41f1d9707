// Conformance: a real coordinator process, driven over its socket by a scripted client, one test
// per rule of docs/protocol.md that a worker can observe: the handshake, the join probe, and the
// refusal of malformed or ill-timed frames; and, at a real worker's peer listener, the rules of
// peer links. Two coordinators serve every test: one that trains on its own thread (handshake
// rules), one that waits for its only worker (assignment rules); each test opens connections of
// its own.
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import protobuf from 'protobufjs';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { authProof } from '../../src/protocol/auth.js';
import { decode, encode } from '../../src/protocol/codec.js';
import { PROTOCOL_VERSION, RejectReason, type AssignmentMessage, type Message, type RunConfigMessage } from '../../src/protocol/messages.js';
import { probeAnswer } from '../fixtures/probe-answer.js';
import { tempDir } from '../helpers.js';
import { startCli, startCoordinator, type RunningCli } from '../integration/run-cli.js';

const TOKEN = 'conformance-token-0123456789';
const dir = tempDir('lenet-conformance-');
const running: RunningCli[] = [];
let training: string; // trains on its own thread, whoever connects
let waiting: string; // --threads 0: every step goes to the one worker it waits for

beforeAll(async () => {
  const common = ['--epochs', '500', '--train-limit', '2048', '--test-limit', '100', '--quiet', '--port', '0', '--token', TOKEN, '--host', '127.0.0.1', '--verify-fraction', '0'];
  training = (await startCoordinator([...common, '--threads', '1', '--checkpoint-dir', join(dir.path, 'training')], running)).url;
  waiting = (await startCoordinator([...common, '--threads', '0', '--wait-workers', '1', '--checkpoint-dir', join(dir.path, 'waiting')], running)).url;
});
afterAll(() => {
  running.splice(0).forEach((p) => p.kill());
  dir.remove();
});

/** A scripted connection: every frame it receives, decoded, and how it was closed. */
class Client {
  readonly ws: WebSocket;
  readonly frames: Message[] = [];
  closed: Promise<{ code: number; reason: string }>;
  private waiters: (() => void)[] = [];

  constructor(url: string) {
    this.ws = new WebSocket(url, { maxPayload: 64 * 1024 * 1024 });
    this.ws.on('error', () => undefined);
    this.closed = new Promise((resolve) => this.ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() })));
    this.ws.on('message', (data) => {
      this.frames.push(decode(data as Buffer));
      this.waiters.splice(0).forEach((w) => w());
    });
  }

  /** The first frame of type `type` (already here or yet to come), within `ms`. */
  async next<T extends Message['type']>(type: T, ms = 20_000): Promise<Extract<Message, { type: T }>> {
    const deadline = Date.now() + ms;
    for (;;) {
      const found = this.frames.find((f) => f.type === type);
      if (found) return found as Extract<Message, { type: T }>;
      if (Date.now() > deadline) throw new Error(`no ${type} within ${ms} ms; got ${this.frames.map((f) => f.type).join(', ')}`);
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve);
        setTimeout(resolve, 200);
      });
    }
  }

  send(msg: Message | Uint8Array | string): void {
    this.ws.send(typeof msg === 'string' || msg instanceof Uint8Array ? msg : encode(msg));
  }

  hello(overrides: Partial<Extract<Message, { type: 'hello' }>> = {}, nonce?: Uint8Array): void {
    const proof = nonce ? authProof(TOKEN, nonce) : new Uint8Array(0);
    this.send({ type: 'hello', packageVersion: 'conformance', backend: 'scripted', threads: 1, datasetSha256: '', authProof: proof, name: 'conformance', peerUrl: '', ...overrides });
  }

  /** Challenge, Hello with the right proof, Welcome: the run's config. */
  async join(): Promise<RunConfigMessage> {
    const challenge = await this.next('challenge');
    this.hello({}, challenge.nonce);
    return (await this.next('welcome')).config;
  }

  /** join(), then Ready and the honest probe answer: a member from the next step. */
  async admitted(): Promise<RunConfigMessage> {
    const config = await this.join();
    this.send({ type: 'ready', threads: 1 });
    const probe = await this.next('probe');
    this.send({ type: 'probe_result', digest: await probeAnswer(probe, config) });
    return config;
  }

  close(): void {
    this.ws.terminate();
  }
}

const reject = async (c: Client): Promise<Extract<Message, { type: 'reject' }>> => c.next('reject');

describe('handshake (docs/protocol.md, "Handshake")', () => {
  it('the first frame is a Challenge with a fresh 32-byte nonce', async () => {
    const [a, b] = [new Client(training), new Client(training)];
    const [ca, cb] = [await a.next('challenge'), await b.next('challenge')];
    expect(ca.nonce.length).toBe(32);
    expect(Buffer.from(ca.nonce).equals(Buffer.from(cb.nonce))).toBe(false);
    a.close();
    b.close();
  });

  it('another protocol version: Reject(PROTOCOL_VERSION), close 4002, naming both versions', async () => {
    const c = new Client(training);
    const challenge = await c.next('challenge');
    const root = protobuf.loadSync(new URL('../../proto/lenet.proto', import.meta.url).pathname);
    const Envelope = root.lookupType('lenet.v1.Envelope');
    c.send(Envelope.encode(Envelope.create({ protocolVersion: PROTOCOL_VERSION - 1, hello: { threads: 1, authProof: authProof(TOKEN, challenge.nonce) } })).finish());
    const r = await reject(c);
    expect(r.reason).toBe(RejectReason.PROTOCOL_VERSION);
    expect(r.message).toMatch(new RegExp(`version ${PROTOCOL_VERSION - 1}, this side speaks ${PROTOCOL_VERSION}`));
    expect((await c.closed).code).toBe(4002);
  });

  it('a wrong or missing token proof: Reject(AUTH), close 4001', async () => {
    for (const proof of [new Uint8Array(0), new Uint8Array(32).fill(1)]) {
      const c = new Client(training);
      await c.next('challenge');
      c.hello({ authProof: proof });
      expect((await reject(c)).reason).toBe(RejectReason.AUTH);
      expect((await c.closed).code).toBe(4001);
    }
  });

  it('a text frame, or garbage, instead of Hello: Reject(BAD_MESSAGE), close', async () => {
    for (const frame of ['{"hello": true}', Uint8Array.from([1, 2, 3, 250])]) {
      const c = new Client(training);
      await c.next('challenge');
      c.send(frame);
      expect((await reject(c)).reason).toBe(RejectReason.BAD_MESSAGE);
      expect([1002, 4004]).toContain((await c.closed).code);
    }
  });

  it('no Hello within 10 s: Reject(BAD_MESSAGE), close 4004', async () => {
    const c = new Client(training);
    await c.next('challenge');
    const r = await c.next('reject', 15_000);
    expect(r.reason).toBe(RejectReason.BAD_MESSAGE);
    expect(r.message).toMatch(/no hello within 10000 ms/);
    expect((await c.closed).code).toBe(4004);
  });

  it('threads must be 1 to 256', async () => {
    for (const threads of [0, 257]) {
      const c = new Client(training);
      const challenge = await c.next('challenge');
      c.hello({ threads }, challenge.nonce);
      expect((await reject(c)).reason).toBe(RejectReason.BAD_MESSAGE);
    }
  });

  it('a valid Hello gets Welcome, whatever backend it names, and then the Probe', async () => {
    const c = new Client(training);
    const config = await c.join();
    expect(config).toMatchObject({ arch: 'lenet5', paramCount: 60806, gradDType: 'float32', optimizer: 'adam', sendPixels: true });
    expect(config.runId).toMatch(/^[0-9a-f]{32}$/);
    const probe = await c.next('probe');
    expect(probe.weights.length).toBe(60806);
    expect(probe.samples.length).toBe(8);
    expect(probe.pixels.length).toBe(8 * 784); // it named no dataset: the pixels come along
    c.close();
  });
});

describe('join probe (docs/protocol.md, "Handshake")', () => {
  it('a digest that is not the run\'s bits: Reject(EXACTNESS), close 4008, saying what to do', async () => {
    const c = new Client(training);
    await c.join();
    c.send({ type: 'ready', threads: 1 });
    await c.next('probe');
    c.send({ type: 'probe_result', digest: randomBytes(32) });
    const r = await reject(c);
    expect(r.reason).toBe(RejectReason.EXACTNESS);
    expect(r.message).toMatch(/the worker computes with the scripted backend of lenet-dist conformance, the coordinator with the wasm backend/);
    expect((await c.closed).code).toBe(4008);
  });

  it('Ready alone gets no work; Ready and the honest digest do, weights before the Assignment', async () => {
    const c = new Client(waiting);
    await c.join();
    c.send({ type: 'ready', threads: 1 });
    await new Promise((r) => setTimeout(r, 1500));
    expect(c.frames.some((f) => f.type === 'assignment')).toBe(false);
    const probe = await c.next('probe');
    c.send({ type: 'probe_result', digest: await probeAnswer(probe, (await c.next('welcome')).config) });
    const assignment = await c.next('assignment');
    const firstWeights = c.frames.findIndex((f) => f.type === 'weights');
    expect(firstWeights).toBeGreaterThanOrEqual(0);
    expect(firstWeights).toBeLessThan(c.frames.indexOf(assignment));
    c.close();
  });
});

describe('results (docs/protocol.md, "A step" and "What each side does with the unexpected")', () => {
  /** An admitted client and its first assignment (the waiting coordinator gives it the whole step). */
  async function assigned(): Promise<{ c: Client; a: AssignmentMessage }> {
    const c = new Client(waiting);
    await c.admitted();
    return { c, a: await c.next('assignment') };
  }
  const result = (a: AssignmentMessage, o: Partial<Extract<Message, { type: 'result' }>> = {}): Message => ({
    type: 'result',
    step: a.step,
    lo: a.lo,
    hi: a.hi,
    examples: a.sizes.reduce((x, y) => x + y, 0),
    lossSum: 1,
    offset: 0,
    gradient: new Float32Array(60806),
    computeMs: 1,
    ...o,
  });

  const refusals: [string, (a: AssignmentMessage) => Message | Uint8Array][] = [
    ['a subtree that was not assigned', (a) => result(a, { lo: a.hi, hi: a.hi + 1 })],
    ['the wrong example count', (a) => result(a, { examples: 1 })],
    ['a non-finite value', (a) => result(a, { gradient: new Float32Array(60806).fill(Number.NaN) })],
    ['values that are neither all nor one of the two parts', (a) => result(a, { gradient: new Float32Array(17) })],
    ['a float16 result in a float32 run', (a) => encode(result(a), 'float16')],
    ['a message only the coordinator sends', (a) => ({ ...a })],
  ];
  for (const [what, frame] of refusals) {
    it(`${what}: close 4004`, async () => {
      const { c, a } = await assigned();
      c.send(frame(a));
      expect((await c.closed).code).toBe(4004);
    });
  }

  it('a result for another step is ignored: the connection stays', async () => {
    const { c, a } = await assigned();
    c.send(result(a, { step: a.step + 1000 }));
    await new Promise((r) => setTimeout(r, 500));
    expect(c.ws.readyState).toBe(WebSocket.OPEN);
    c.close();
  });

  it('a frame over 8 MiB: close 1009', async () => {
    const { c } = await assigned();
    c.send(new Uint8Array(9 * 1024 * 1024));
    expect((await c.closed).code).toBe(1009);
  });
});

// 25 s of waiting: in `npm run test:conformance` (LENET_CONFORMANCE=full), not in `npm test`.
describe.runIf(process.env.LENET_CONFORMANCE === 'full')('heartbeats (docs/protocol.md, "Limits")', () => {
  it('the coordinator sends Heartbeat every 5 s; a worker silent for 20 s is closed with 4005, one that answers is not', async () => {
    const [silent, alive] = [new Client(training), new Client(training)];
    await Promise.all([silent.join(), alive.join()]);
    const started = Date.now();
    const beat = setInterval(() => alive.send({ type: 'heartbeat', sentAtMs: Date.now() }), 5_000);
    try {
      const closed = await silent.closed;
      const after = Date.now() - started;
      expect(closed.code).toBe(4005);
      expect(after).toBeGreaterThan(19_000);
      expect(silent.frames.filter((f) => f.type === 'heartbeat').length).toBeGreaterThanOrEqual(3);
      expect(alive.ws.readyState).toBe(WebSocket.OPEN);
    } finally {
      clearInterval(beat);
      alive.close();
    }
  }, 60_000);
});

describe('peer links (docs/protocol.md, "Peer links")', () => {
  let peerUrl: string;
  let runId: string;
  beforeAll(async () => {
    // A real worker in the training coordinator's run, listening for peers on loopback.
    const worker = startCli('lenet-worker', ['join', training, '--threads', '1', '--token', TOKEN, '--peer-host', '127.0.0.1', '--name', 'peer-listener']);
    running.push(worker);
    peerUrl = `ws://${(await worker.waitFor(/listening for peers on (\S+)/))[1]}`;
    await worker.waitFor(/joined as worker-\d+/);
    const c = new Client(training);
    runId = (await c.join()).runId;
    c.close();
  });

  it('the listener speaks first, a Challenge with a fresh 32-byte nonce', async () => {
    const [a, b] = [new Client(peerUrl), new Client(peerUrl)];
    const [ca, cb] = [await a.next('challenge'), await b.next('challenge')];
    expect(ca.nonce).toHaveLength(32);
    expect(Buffer.from(ca.nonce).equals(Buffer.from(cb.nonce))).toBe(false);
    a.close();
    b.close();
  });

  const peerHello = (nonce: Uint8Array, overrides: Record<string, unknown> = {}): Message =>
    ({ type: 'peer_hello', runId, workerId: 99, authProof: authProof(TOKEN, nonce), ...overrides }) as Message;

  it('PeerHello of another run: close 4004', async () => {
    const c = new Client(peerUrl);
    c.send(peerHello((await c.next('challenge')).nonce, { runId: 'another-run' }));
    expect((await c.closed).code).toBe(4004);
  });

  it('a wrong proof of the token: close 4001', async () => {
    const c = new Client(peerUrl);
    c.send(peerHello((await c.next('challenge')).nonce, { authProof: randomBytes(32) }));
    expect((await c.closed).code).toBe(4001);
  });

  it('anything but PeerHello first: close 4004', async () => {
    const c = new Client(peerUrl);
    await c.next('challenge');
    c.hello();
    expect((await c.closed).code).toBe(4004);
  });

  it('the right run and proof: the link stays open for partial sums and weights', async () => {
    const c = new Client(peerUrl);
    c.send(peerHello((await c.next('challenge')).nonce));
    await new Promise((r) => setTimeout(r, 500));
    expect(c.ws.readyState).toBe(WebSocket.OPEN);
    c.close();
  });
});
