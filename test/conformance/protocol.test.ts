// Conformance: a real coordinator process, driven over its socket by a scripted client, one test
// per rule of docs/protocol.md that a worker can observe: the handshake, the join probe, the
// refusal of malformed or ill-timed frames, steps computed alone, sharded steps, checked results;
// and, at a real worker's peer listener, the rules of peer links. Two coordinators serve most
// tests: one that trains on its own thread (handshake rules), one that waits for its only worker
// (assignment rules); a rule that needs other settings starts a coordinator of its own. Each test
// opens connections of its own. The worker's side of the rules: worker.test.ts.
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import protobuf from 'protobufjs';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { authProof } from '../../src/protocol/auth.js';
import { encode } from '../../src/protocol/codec.js';
import { valuesDigest } from '../../src/model/weights.js';
import { coverNodes } from '../../src/reduce/ordered-sum.js';
import { PROTOCOL_VERSION, RejectReason, type AssignmentMessage, type Message } from '../../src/protocol/messages.js';
import { MAX_CONSECUTIVE_LATE } from '../../src/constants.js';
import { probeAnswer } from '../fixtures/probe-answer.js';
import { Client, TOKEN } from './client.js';
import { tempDir } from '../helpers.js';
import { startCli, startCoordinator, type RunningCli } from '../integration/run-cli.js';

const dir = tempDir('lenet-conformance-');
/** Every coordinator here: a long run on a small training set, on loopback, with the token. */
const COMMON = ['--epochs', '500', '--train-limit', '2048', '--test-limit', '100', '--quiet', '--port', '0', '--token', TOKEN, '--host', '127.0.0.1'];
const running: RunningCli[] = [];
let training: string; // trains on its own thread, whoever connects
let waiting: string; // --threads 0: every step goes to the one worker it waits for
/** A client that never says Hello, connected first: its 10 s pass while the other tests run. */
let silent: Client;

beforeAll(async () => {
  const common = [...COMMON, '--verify-fraction', '0'];
  training = (await startCoordinator([...common, '--threads', '1', '--checkpoint-dir', join(dir.path, 'training')], running)).url;
  silent = new Client(training);
  waiting = (await startCoordinator([...common, '--threads', '0', '--wait-workers', '1', '--checkpoint-dir', join(dir.path, 'waiting')], running)).url;
});
afterAll(() => {
  running.splice(0).forEach((p) => p.kill());
  dir.remove();
});

/** The samples an assignment covers. */
const total = (a: AssignmentMessage): number => a.sizes.reduce((x, y) => x + y, 0);

/** Whole results of zeros for an assignment: one per maximal subtree, with the right example counts. */
function zeroSums(a: AssignmentMessage): Message[] {
  return coverNodes(a.microbatches, a.lo, a.hi).map(([lo, hi]) => ({
    type: 'result',
    step: a.step,
    lo,
    hi,
    examples: a.sizes.slice(lo - a.lo, hi - a.lo).reduce((x, y) => x + y, 0),
    lossSum: 1,
    offset: 0,
    gradient: new Float32Array(60806),
    computeMs: 1,
  }));
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
    expect(config).toMatchObject({ arch: 'lenet5', paramCount: 60806, denseFrom: 1672, gradDType: 'float32', optimizer: 'adam', sendPixels: true });
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

  it('a duplicate part of a subtree is ignored; parts that disagree on loss_sum: close 4004', async () => {
    const { c, a } = await assigned();
    const dense = result(a, { offset: 1672, gradient: new Float32Array(60806 - 1672) });
    c.send(dense);
    c.send(dense);
    expect(await c.staysOpen()).toBe(true);
    c.send(result(a, { offset: 0, gradient: new Float32Array(1672), lossSum: 2 }));
    expect((await c.closed).code).toBe(4004);
  });

  it('a frame over 8 MiB: close 1009', async () => {
    const { c } = await assigned();
    c.send(new Uint8Array(9 * 1024 * 1024));
    expect((await c.closed).code).toBe(1009);
  });
});

describe('a worker computing whole steps alone (docs/protocol.md, "A worker that computes whole steps alone")', () => {
  it('the optimizer state and the weights come before the first apply assignment, and the next step\'s in the same write', async () => {
    const c = new Client(waiting);
    const config = await c.admitted();
    // Its first assignment may be the rest of a step another client left, not to be applied:
    // answered with zero sums, the step ends and the next ones are this client's alone.
    const first = await c.next('assignment');
    if (!first.apply) {
      zeroSums(first).forEach((r) => c.send(r));
    }
    const a = await c.next('assignment', 20_000, (x) => x.apply);
    const next = await c.next('assignment', 20_000, (x) => x.step === a.step + 1);
    expect(a).toMatchObject({ lo: 0, hi: a.microbatches, sharded: false });
    expect(a.lr).toBeGreaterThan(0);
    const state = await c.next('optimizer_state', 20_000, (x) => x.version === a.weightsVersion);
    expect(state).toMatchObject({ version: a.weightsVersion, name: config.optimizer });
    // Then the weights it lacks (none when it holds them already), the assignment, the next one.
    expect(c.frames.indexOf(state)).toBeLessThan(c.frames.indexOf(a));
    expect(c.frames.slice(c.frames.indexOf(state) + 1, c.frames.indexOf(a)).every((f) => f.type === 'weights')).toBe(true);
    expect(c.frames.indexOf(next)).toBe(c.frames.indexOf(a) + 1);
    expect(next).toMatchObject({ step: a.step + 1, weightsVersion: a.weightsVersion + 1, apply: true });
    c.close();
  });
});

describe('sharded steps (docs/protocol.md, "Sharded steps")', () => {
  /** A coordinator that waits for two workers and has no threads: its first step is sharded over them. */
  async function shardedPair(verifyFraction = '0'): Promise<{ a: Client; b: Client; aa: AssignmentMessage; ab: AssignmentMessage }> {
    const { url } = await startCoordinator([...COMMON, '--verify-fraction', verifyFraction, '--threads', '0', '--wait-workers', '2', '--checkpoint-dir', join(dir.path, `sharded-${randomBytes(4).toString('hex')}`)], running);
    // Peer URLs nobody listens on: the test plays both workers and sends nothing between them.
    const [a, b] = [new Client(url), new Client(url)];
    await Promise.all([a.admitted({ name: 'a', peerUrl: 'ws://127.0.0.1:9' }), b.admitted({ name: 'b', peerUrl: 'ws://127.0.0.1:10' })]);
    return { a, b, aa: await a.next('assignment'), ab: await b.next('assignment') };
  }

  it('each owner gets Peers, the optimizer state and the weights, then a sharded Assignment with the bounds of every range', async () => {
    const { a, b, aa, ab } = await shardedPair();
    const peers = await a.next('peers');
    expect(peers.peers.map((p) => p.url).sort()).toEqual(['ws://127.0.0.1:10', 'ws://127.0.0.1:9']);
    expect(peers.peers[0].from).toBe(0);
    expect(peers.peers[0].to).toBe(peers.peers[1].from);
    expect(peers.peers[1].to).toBe(60806);
    for (const [c, x] of [[a, aa], [b, ab]] as const) {
      expect(x).toMatchObject({ sharded: true, apply: false, plan: peers.plan, bounds: [0, aa.hi, ab.hi].sort((p, q) => p - q) });
      expect(x.lr).toBeGreaterThan(0);
      expect(x.examples).toBe(total(aa) + total(ab));
      for (const type of ['peers', 'optimizer_state', 'weights'] as const) expect(c.frames.findIndex((f) => f.type === type)).toBeLessThan(c.frames.indexOf(x));
    }
    a.close();
    b.close();
  });

  it('the next step\'s sharded Assignment may come before the step ends: the same plan, the next version, and nothing before it', async () => {
    const { a, aa } = await shardedPair();
    const next = await a.next('assignment', 10_000, (x) => x.step === aa.step + 1);
    expect(next).toMatchObject({ sharded: true, plan: aa.plan, weightsVersion: aa.weightsVersion + 1 });
    expect(a.all('shard_update')).toHaveLength(0); // nothing of this step has been answered
    expect(a.frames.slice(a.frames.indexOf(aa) + 1, a.frames.indexOf(next)).map((f) => f.type)).toEqual([]);
    a.close();
  });

  /** The subtrees of a range, as RangeDone lists them: one leaf per microbatch here (ranges of 1). */
  const rangeDone = (x: AssignmentMessage, examples = total(x)): Message => ({ type: 'range_done', step: x.step, nodes: [{ lo: x.lo, hi: x.hi, examples, lossSum: 1 }], computeMs: 1, sumsDigests: [ZERO, ZERO], weightsDigests: [ZERO, ZERO] });
  const ZERO = new Uint8Array(16);

  /**
   * Both owners' honest-looking account of a step whose sums were all zeros: digests of zeros for
   * every sum sent and received, the weights they were sent, and zero means. `change` alters it.
   */
  async function zeroAccount(c: Client, x: AssignmentMessage, change: { received?: boolean; weights?: boolean } = {}): Promise<void> {
    const peers = await c.next('peers');
    const weights = c.weightsOf(x.weightsVersion);
    const zeros = (from: number, to: number): Uint8Array => valuesDigest(new Float32Array(to - from));
    const { workerId } = await c.next('welcome');
    const own = peers.peers.find((p) => p.workerId === workerId)!;
    const weightsDigests = peers.peers.map((p) => valuesDigest(weights.subarray(p.from, p.to)));
    if (change.weights) weightsDigests[0] = ZERO;
    const examples = total(x);
    c.send({ type: 'range_done', step: x.step, nodes: [{ lo: x.lo, hi: x.hi, examples, lossSum: 1 }], computeMs: 1, sumsDigests: peers.peers.map((p) => zeros(p.from, p.to)), weightsDigests });
    const receivedDigests = x.bounds.slice(1).map(() => zeros(own.from, own.to));
    if (change.received) receivedDigests[0] = ZERO;
    c.send({ type: 'shard_update', step: x.step, offset: own.from, mean: new Float32Array(own.to - own.from), receivedDigests });
  }

  it('a RangeDone without a digest for each subtree and shard: close 4004', async () => {
    const { a, aa } = await shardedPair();
    a.send({ ...(rangeDone(aa) as Extract<Message, { type: 'range_done' }>), sumsDigests: [ZERO] });
    expect((await a.closed).code).toBe(4004);
  });

  it('checked (--verify-fraction 1): owners whose accounts agree, but whose sums recomputation does not give: both closed with 4009', async () => {
    const { a, b, aa, ab } = await shardedPair('1');
    await Promise.all([zeroAccount(a, aa), zeroAccount(b, ab)]);
    for (const c of [a, b]) expect(await c.closed).toMatchObject({ code: 4009, reason: expect.stringMatching(/not what recomputation gives|recomputation does not give/) });
  });

  it('checked: an owner that says it reduced other sums than its peer sent: both closed with 4009, for disagreeing', async () => {
    const { a, b, aa, ab } = await shardedPair('1');
    await Promise.all([zeroAccount(a, aa, { received: aa.lo !== 0 }), zeroAccount(b, ab, { received: ab.lo !== 0 })]);
    for (const c of [a, b]) expect(await c.closed).toMatchObject({ code: 4009, reason: expect.stringMatching(/disagree on the sums of \[0,1\)/) });
  });

  it('checked: an owner that computed with other weights than the coordinator sent: it alone is closed; the step goes to the other, unsharded', async () => {
    const { a, b, aa, ab } = await shardedPair('1');
    await Promise.all([zeroAccount(a, aa, { weights: true }), zeroAccount(b, ab)]);
    expect(await a.closed).toMatchObject({ code: 4009, reason: expect.stringMatching(/computed step \d+ with weights \[0,\d+\) of version \d+ other than the coordinator sent it/) });
    const again = await b.next('assignment', 20_000, (x) => !x.sharded);
    expect(again.step).toBe(ab.step);
    b.close();
  });

  it('a RangeDone with the wrong example count: close 4004, and Abort to the other owner for the step and the one planned with it', async () => {
    const { a, b, aa } = await shardedPair();
    await b.next('assignment', 10_000, (x) => x.step === aa.step + 1);
    a.send(rangeDone(aa, 1));
    expect((await a.closed).code).toBe(4004);
    await b.next('abort', 10_000, (x) => x.step === aa.step + 1);
    expect(b.all('abort').map((x) => x.step)).toEqual([aa.step, aa.step + 1]);
    b.close();
  });

  it('a ShardUpdate for another shard: close 4004, and Abort(step) to the other owner', async () => {
    const { a, b, aa } = await shardedPair();
    const peers = await a.next('peers');
    const other = peers.peers.find((p) => p.url === 'ws://127.0.0.1:10')!;
    a.send({ type: 'shard_update', step: aa.step, offset: other.from, mean: new Float32Array(other.to - other.from), receivedDigests: [ZERO, ZERO] });
    expect((await a.closed).code).toBe(4004);
    expect((await b.next('abort')).step).toBe(aa.step);
    b.close();
  });

  it('a given-up step is done again through the coordinator: the remaining worker gets it unsharded', async () => {
    const { a, b, aa } = await shardedPair();
    a.send(rangeDone(aa, 1));
    await b.next('abort');
    const again = await b.next('assignment', 20_000, (x) => !x.sharded);
    expect(again.step).toBe(aa.step);
    expect([again.lo, again.hi]).toEqual([0, again.microbatches]);
    b.close();
  });
});

describe('checked results (docs/protocol.md, "What each side does with the unexpected")', () => {
  it('sums recomputation does not reproduce: close 4009; the same name from the same host is refused with Reject(EXACTNESS) and 4009', async () => {
    const { url } = await startCoordinator([...COMMON, '--threads', '1', '--verify-fraction', '1', '--checkpoint-dir', join(dir.path, 'verifying')], running);
    const c = new Client(url);
    await c.admitted({ name: 'dishonest' });
    const a = await c.next('assignment');
    zeroSums(a).forEach((r) => c.send(r)); // recomputation gives other sums
    expect((await c.closed).code).toBe(4009);
    const again = new Client(url);
    const challenge = await again.next('challenge');
    again.hello({ name: 'dishonest' }, challenge.nonce);
    expect((await reject(again)).reason).toBe(RejectReason.EXACTNESS);
    expect((await again.closed).code).toBe(4009);
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

// Three late steps of at least 2 s each: in `npm run test:conformance` only.
describe.runIf(process.env.LENET_CONFORMANCE === 'full')('late workers (docs/protocol.md, "Limits")', () => {
  it(`a worker that answers no assignment is late ${MAX_CONSECUTIVE_LATE} steps in a row: close 4007`, async () => {
    // 32 microbatches a step: halved per late step, its share is not yet rounded away at the third.
    const { url } = await startCoordinator([...COMMON, '--train-limit', '4096', '--verify-fraction', '0', '--threads', '1', '--batch-size', '512', '--microbatch', '16', '--checkpoint-dir', join(dir.path, 'late')], running);
    const c = new Client(url);
    await c.admitted();
    const beat = setInterval(() => c.send({ type: 'heartbeat', sentAtMs: Date.now() }), 2_000);
    try {
      expect((await c.closed).code).toBe(4007);
      expect(new Set(c.all('assignment').map((a) => a.step)).size).toBeGreaterThanOrEqual(MAX_CONSECUTIVE_LATE);
    } finally {
      clearInterval(beat);
    }
  }, 120_000);
});

describe('handshake, timed (docs/protocol.md, "Handshake")', () => {
  it('no Hello within 10 s: Reject(BAD_MESSAGE), close 4004', async () => {
    await silent.next('challenge');
    const r = await silent.next('reject', 15_000);
    expect(r.reason).toBe(RejectReason.BAD_MESSAGE);
    expect(r.message).toMatch(/no hello within 10000 ms/);
    expect((await silent.closed).code).toBe(4004);
  });
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
