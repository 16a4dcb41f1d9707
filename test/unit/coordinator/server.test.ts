// The coordinator's handshake, driven by a hand-written client: tokens, replayed proofs,
// protocol versions, backends and dataset identity.
import protobuf from 'protobufjs';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CoordinatorServer, PortInUseError } from '../../../src/coordinator/server.js';
import { UsageError } from '../../../src/errors.js';
import { authProof } from '../../../src/protocol/auth.js';
import { decode, encode } from '../../../src/protocol/codec.js';
import { PROTOCOL_VERSION, RejectReason, type HelloMessage, type Message } from '../../../src/protocol/messages.js';

const DATASET = 'ab'.repeat(32);
const CONFIG = { arch: 'lenet5', activation: 'relu', seed: 1, distort: false, batchSize: 64, microbatch: 32, trainSamples: 100, datasetSha256: DATASET, paramCount: 60806, gradDType: 'float32', optimizer: 'adam', runId: 'r', denseFrom: 1672 } as const;
const joined: HelloMessage[] = [];
const logs: string[] = [];
let server: CoordinatorServer;
let url: string;

beforeAll(async () => {
  server = new CoordinatorServer({
    host: '127.0.0.1',
    port: 0,
    token: 's3cret',
    config: CONFIG,
    log: (l) => logs.push(l),
    onWorker: (ws, hello) => {
      joined.push(hello);
      ws.close();
    },
  });
  url = await server.listen();
});
afterAll(() => server.close());

interface Exchange {
  challenge: Extract<Message, { type: 'challenge' }>;
  answer: Message;
}

/** Connects, answers the challenge with `hello(nonce)` (raw bytes), returns the coordinator's answer. */
function handshake(hello: (nonce: Uint8Array) => Uint8Array): Promise<Exchange> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    let challenge: Exchange['challenge'] | undefined;
    ws.on('message', (data) => {
      const msg = decode(data as Buffer);
      if (msg.type === 'challenge') {
        challenge = msg;
        ws.send(hello(msg.nonce));
      } else {
        ws.close();
        resolve({ challenge: challenge!, answer: msg });
      }
    });
    ws.on('error', reject);
  });
}

const helloWith = (overrides: Partial<HelloMessage>) => (nonce: Uint8Array): Uint8Array =>
  encode({ type: 'hello', packageVersion: '0.1.0', backend: 'wasm', threads: 1, datasetSha256: DATASET, authProof: authProof('s3cret', nonce), name: 't', peerUrl: '', ...overrides });

describe('coordinator handshake', () => {
  it('welcomes a worker with the right token, without sending pixels when the data matches', async () => {
    const { answer } = await handshake(helloWith({ name: 'good' }));
    expect(answer.type).toBe('welcome');
    if (answer.type === 'welcome') {
      expect(answer.config.sendPixels).toBe(false);
      expect(answer.config.paramCount).toBe(60806);
    }
    expect(joined.map((h) => h.name)).toContain('good');
  });

  it('welcomes a worker with other data, and sends it pixels', async () => {
    const { answer } = await handshake(helloWith({ datasetSha256: 'ff'.repeat(32) }));
    expect(answer.type === 'welcome' && answer.config.sendPixels).toBe(true);
  });

  it('rejects a wrong token, and logs it', async () => {
    const { answer } = await handshake((nonce) => helloWith({ authProof: authProof('guess', nonce) })(nonce));
    expect(answer).toMatchObject({ type: 'reject', reason: RejectReason.AUTH });
    expect(logs.some((l) => /rejected a worker .*wrong token/.test(l))).toBe(true);
  });

  it('rejects a worker without a token', async () => {
    const { answer } = await handshake(helloWith({ authProof: new Uint8Array(0) }));
    expect(answer).toMatchObject({ type: 'reject', reason: RejectReason.AUTH });
    expect(answer.type === 'reject' && answer.message).toMatch(/no token given/);
  });

  it('rejects a replayed proof: the nonce is fresh on every connection', async () => {
    const first = await handshake(helloWith({}));
    const recorded = authProof('s3cret', first.challenge.nonce);
    const { challenge, answer } = await handshake(helloWith({ authProof: recorded }));
    expect(Buffer.from(challenge.nonce).equals(Buffer.from(first.challenge.nonce))).toBe(false);
    expect(answer).toMatchObject({ type: 'reject', reason: RejectReason.AUTH });
  });

  it('rejects another protocol version', async () => {
    const root = protobuf.loadSync(new URL('../../../proto/lenet.proto', import.meta.url).pathname);
    const Envelope = root.lookupType('lenet.v1.Envelope');
    const { answer } = await handshake((nonce) =>
      Envelope.encode(Envelope.create({ protocolVersion: PROTOCOL_VERSION + 1, hello: { backend: 'wasm', threads: 1, authProof: authProof('s3cret', nonce) } })).finish(),
    );
    expect(answer).toMatchObject({ type: 'reject', reason: RejectReason.PROTOCOL_VERSION });
  });

  it('welcomes a worker that names another backend: the join probe, not the name, decides', async () => {
    const { answer } = await handshake(helloWith({ backend: 'cpu' }));
    expect(answer.type).toBe('welcome');
  });

  it('rejects a worker claiming more threads than any worker may have (it would get all the work)', async () => {
    const { answer } = await handshake(helloWith({ threads: 4_294_967_295 }));
    expect(answer).toMatchObject({ type: 'reject', reason: RejectReason.BAD_MESSAGE });
    expect(answer.type === 'reject' && answer.message).toMatch(/1 to 256/);
    const { answer: most } = await handshake(helloWith({ threads: 256 }));
    expect(most.type).toBe('welcome');
  });

  it("rejects a browser page of another site before any challenge; welcomes the coordinator's own page", async () => {
    const first = (origin: string): Promise<Message> =>
      new Promise((resolve, reject) => {
        const ws = new WebSocket(url, { origin });
        ws.on('message', (data) => {
          ws.close();
          resolve(decode(data as Buffer));
        });
        ws.on('error', reject);
      });
    const refused = await first('http://evil.example');
    expect(refused).toMatchObject({ type: 'reject', reason: RejectReason.AUTH });
    expect((refused as { message: string }).message).toMatch(/a page from http:\/\/evil\.example may not join this run/);
    expect(await first(`http://${new URL(url).host}`)).toMatchObject({ type: 'challenge' });
  });

  it('rejects garbage instead of a hello', async () => {
    const { answer } = await handshake(() => Uint8Array.from([1, 2, 3, 250, 251]));
    expect(answer).toMatchObject({ type: 'reject', reason: RejectReason.BAD_MESSAGE });
    expect(server.rejections.get('BAD_MESSAGE')).toBeGreaterThan(0);
  });
});

describe('listening', () => {
  const other = (host: string): CoordinatorServer =>
    new CoordinatorServer({ host, port: 0, config: CONFIG, log: () => undefined, onWorker: () => undefined });

  it('a port in use is a PortInUseError (the default port falls back to a free one on it alone)', async () => {
    const taken = Number(new URL(url).port);
    const s = other('127.0.0.1');
    const err = await s.listen(taken).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PortInUseError);
    expect((err as Error).message).toBe(`port ${taken} on 127.0.0.1 is already in use; pass another --port`);
    await s.close();
  });

  it('an address this machine does not have is a usage error of another kind, naming it', async () => {
    const s = other('192.0.2.1'); // TEST-NET-1, never a local address
    const err = await s.listen().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UsageError);
    expect(err).not.toBeInstanceOf(PortInUseError);
    expect((err as Error).message).toMatch(/^cannot listen on 192\.0\.2\.1:0 \(EADDRNOTAVAIL\)/);
    await s.close();
  });
});

describe('closing the endpoint', () => {
  it('lets a connection already closing finish its goodbye before the endpoint goes', async () => {
    // A frame too large to leave the process at once: cut off, the worker would see 1006 and no goodbye.
    const goodbye = new Uint8Array(32 * 1024 * 1024).fill(7);
    let closing!: () => void;
    const told = new Promise<void>((resolve) => (closing = resolve));
    const s = new CoordinatorServer({
      host: '127.0.0.1',
      port: 0,
      token: 's3cret',
      config: CONFIG,
      log: () => undefined,
      onWorker: (ws) => {
        ws.send(goodbye);
        ws.close(1000, 'run complete');
        closing();
      },
    });
    const at = await s.listen();
    const client = new WebSocket(at, { maxPayload: 64 * 1024 * 1024 });
    const received: number[] = [];
    const closed = new Promise<number>((resolve) => client.on('close', (code) => resolve(code)));
    client.on('message', (data) => {
      const frame = data as Buffer;
      if (frame.length === goodbye.length) return void received.push(frame.length);
      const msg = decode(frame);
      if (msg.type === 'challenge') client.send(helloWith({})(msg.nonce));
    });
    await told;
    await s.close();
    expect(await closed).toBe(1000);
    expect(received).toEqual([goodbye.length]);
  });
});
