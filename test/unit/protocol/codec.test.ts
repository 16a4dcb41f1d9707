import protobuf from 'protobufjs';
import { describe, expect, it } from 'vitest';
import { decode, encode, encodeTensorFrame } from '../../../src/protocol/codec.js';
import { float32ToFloat16Bytes } from '../../../src/reduce/float16.js';
import { ProtocolError } from '../../../src/protocol/errors.js';
import { PROTOCOL_VERSION, RejectReason, type Message } from '../../../src/protocol/messages.js';
import { MAX_FRAME_BYTES } from '../../../src/constants.js';

const grad = Float32Array.from({ length: 100 }, (_, i) => Math.sin(i) * 1e-3);
const SAMPLES: Message[] = [
  { type: 'challenge', nonce: new Uint8Array(32).fill(7), coordinatorVersion: '0.1.0' },
  { type: 'hello', packageVersion: '0.1.0', backend: 'wasm', threads: 4, datasetSha256: 'ab'.repeat(32), authProof: new Uint8Array(32).fill(1), name: 'node-a', peerUrl: 'ws://10.0.0.7:40111' },
  {
    type: 'welcome',
    workerId: 3,
    config: { arch: 'lenet5', activation: 'relu', seed: 7, distort: true, batchSize: 64, microbatch: 32, trainSamples: 4096, datasetSha256: 'cd'.repeat(32), sendPixels: true, paramCount: 60806, gradDType: 'float32', optimizer: 'adam', runId: '0f'.repeat(16), denseFrom: 1672 },
  },
  { type: 'reject', reason: RejectReason.AUTH, message: 'wrong token' },
  { type: 'weights', version: 12, offset: 0, values: grad },
  { type: 'weights', version: 12, offset: 1672, values: grad },
  {
    type: 'assignment',
    step: 12,
    weightsVersion: 12,
    epoch: 1,
    microbatches: 4,
    lo: 1,
    hi: 3,
    start: 66,
    sizes: [2, 2],
    pixels: new Uint8Array(4 * 784).fill(3),
    labels: Uint8Array.from([1, 2, 3, 4]),
    apply: false,
    lr: 0.002,
    sharded: true,
    plan: 2,
    bounds: [0, 1, 3, 4],
    examples: 8,
  },
  {
    type: 'assignment',
    step: 13,
    weightsVersion: 13,
    epoch: 1,
    microbatches: 2,
    lo: 0,
    hi: 2,
    start: 66,
    sizes: [2, 2],
    pixels: new Uint8Array(0),
    labels: new Uint8Array(0),
    apply: true,
    lr: 0.001 * 0.95,
    sharded: false,
    plan: 0,
    bounds: [],
    examples: 0,
  },
  { type: 'optimizer_state', version: 13, name: 'adam', t: 13, slots: { m: grad, v: grad.map((x) => x * x) } },
  { type: 'optimizer_state', version: 0, name: 'sgd', t: 0, slots: {} },
  { type: 'result', step: 12, lo: 2, hi: 4, examples: 64, lossSum: 12.5, offset: 0, gradient: grad, computeMs: 17.25, dtype: 'float32' },
  { type: 'result', step: 12, lo: 2, hi: 4, examples: 64, lossSum: 12.5, offset: 1672, gradient: grad, computeMs: 17.25, dtype: 'float32' },
  { type: 'ready', threads: 2 },
  { type: 'heartbeat', sentAtMs: 1764300000123 },
  { type: 'goodbye', reason: 'run complete', runComplete: true },
  { type: 'peers', plan: 3, peers: [{ workerId: 1, url: 'ws://10.0.0.7:40111', from: 0, to: 30403 }, { workerId: 4, url: 'ws://[::1]:40112', from: 30403, to: 60806 }] },
  { type: 'peer_hello', runId: '0f'.repeat(16), workerId: 4, authProof: new Uint8Array(32).fill(9) },
  { type: 'shard_update', step: 12, offset: 1672, mean: grad, receivedDigests: [new Uint8Array(16).fill(1), new Uint8Array(16).fill(2)] },
  { type: 'range_done', step: 12, nodes: [{ lo: 0, hi: 2, examples: 64, lossSum: 12.5 }, { lo: 2, hi: 3, examples: 17, lossSum: -0.25 }], computeMs: 7.5, sumsDigests: [1, 2, 3, 4].map((b) => new Uint8Array(16).fill(b)), weightsDigests: [new Uint8Array(16).fill(5), new Uint8Array(16).fill(6)] },
  { type: 'abort', step: 12 },
];

describe('codec round trips', () => {
  for (const msg of SAMPLES) {
    it(`${msg.type}`, () => {
      const back = decode(encode(msg));
      expect(back).toEqual(msg);
    });
  }

  it('sends float16 gradients at half the size, close to the originals', () => {
    const msg = SAMPLES.find((m) => m.type === 'result')!;
    const f32 = encode(msg, 'float32');
    const f16 = encode(msg, 'float16');
    expect(f16.length).toBeLessThan(f32.length * 0.6);
    const back = decode(f16) as Extract<Message, { type: 'result' }>;
    for (let i = 0; i < grad.length; i++) expect(Math.abs(back.gradient[i] - grad[i])).toBeLessThanOrEqual(Math.abs(grad[i]) * 1e-3 + 1e-7);
  });

  it('decodes a weights part where a function says, by its offset and length', () => {
    const shared = new Float32Array(2000).fill(-1);
    const asked: [number, number][] = [];
    const msg = { type: 'weights' as const, version: 3, offset: 1672, values: grad };
    const back = decode(encode(msg), (offset, count) => {
      asked.push([offset, count]);
      return shared.subarray(offset, offset + count);
    }) as Extract<Message, { type: 'weights' }>;
    expect(asked).toEqual([[1672, grad.length]]);
    expect(back.values.buffer).toBe(shared.buffer);
    expect(Array.from(shared.subarray(1672, 1672 + grad.length))).toEqual(Array.from(grad));
    expect(shared[1671]).toBe(-1);
    expect(shared[1672 + grad.length]).toBe(-1);
  });

  it('decodes a gradient into a caller-owned array of its length, and allocates for any other length', () => {
    const msg = SAMPLES.find((m) => m.type === 'result')!;
    for (const dtype of ['float32', 'float16'] as const) {
      const into = new Float32Array(grad.length).fill(NaN);
      const back = decode(encode(msg, dtype), into) as Extract<Message, { type: 'result' }>;
      expect(back.gradient).toBe(into);
      expect(back).toEqual(decode(encode(msg, dtype)));
      const other = new Float32Array(grad.length + 1);
      const fresh = decode(encode(msg, dtype), other) as Extract<Message, { type: 'result' }>;
      expect(fresh.gradient).not.toBe(other);
      expect(Array.from(other)).toEqual(new Array(grad.length + 1).fill(0));
    }
  });
});

describe('hand-written tensor frames', () => {
  // The reference: what protobufjs itself writes for the same message.
  const root = protobuf.loadSync(new URL('../../../proto/lenet.proto', import.meta.url).pathname);
  const Envelope = root.lookupType('lenet.v1.Envelope');
  const tensor = (v: Float32Array, half: boolean): Record<string, unknown> => ({
    shape: [v.length],
    dtype: half ? 2 : 1,
    data: half ? float32ToFloat16Bytes(v) : new Uint8Array(v.buffer, v.byteOffset, v.byteLength),
  });
  const reference = (msg: Extract<Message, { type: 'weights' | 'result' }>, half: boolean): Uint8Array => {
    const body =
      msg.type === 'weights'
        ? { weights: { version: msg.version, values: tensor(msg.values, false), offset: msg.offset } }
        : { result: { step: msg.step, lo: msg.lo, hi: msg.hi, examples: msg.examples, lossSum: msg.lossSum, gradient: tensor(msg.gradient, half), computeMs: msg.computeMs, offset: msg.offset } };
    return Envelope.encode(Envelope.create({ protocolVersion: PROTOCOL_VERSION, ...body })).finish();
  };
  // Sizes and numbers that take 1 to 5 varint bytes; zeros (left out) and -0 (kept) included.
  const big = Float32Array.from({ length: 60806 }, (_, i) => Math.cos(i) * 1e-2);
  const cases: Extract<Message, { type: 'weights' | 'result' }>[] = [
    { type: 'weights', version: 0, offset: 0, values: new Float32Array(1) },
    { type: 'weights', version: 1, offset: 300, values: new Float32Array(0) },
    { type: 'weights', version: 12, offset: 1672, values: grad },
    { type: 'weights', version: 2 ** 32 - 1, offset: 2 ** 32 - 1, values: big },
    { type: 'result', step: 0, lo: 0, hi: 1, examples: 0, lossSum: 0, offset: 0, gradient: new Float32Array(3), computeMs: 0 },
    { type: 'result', step: 1, lo: 0, hi: 1, examples: 1, lossSum: -0, offset: 1, gradient: new Float32Array(3), computeMs: -0 },
    { type: 'result', step: 300_000, lo: 127, hi: 128, examples: 16_384, lossSum: -1.5e300, offset: 1672, gradient: big, computeMs: 17.25 },
    { type: 'result', step: 2 ** 28, lo: 2, hi: 4, examples: 64, lossSum: 12.5, offset: 2 ** 31, gradient: grad, computeMs: 1e-9 },
  ];

  it('are byte for byte what protobufjs writes, in float32 and float16', () => {
    for (const msg of cases) {
      for (const half of msg.type === 'result' ? [false, true] : [false]) {
        const ours = encodeTensorFrame(msg, half ? 'float16' : 'float32');
        expect(Buffer.from(ours).equals(Buffer.from(reference(msg, half))), `${msg.type} ${half ? 'float16' : 'float32'}`).toBe(true);
      }
    }
  });

  it('read from shared memory and write into a larger reused buffer as a prefix of it', () => {
    const shared = new Float32Array(new SharedArrayBuffer(big.byteLength));
    shared.set(big);
    const msg = { type: 'result' as const, step: 9, lo: 0, hi: 2, examples: 64, lossSum: 3, offset: 0, gradient: shared, computeMs: 2 };
    const reused = new Uint8Array(400_000).fill(0xee);
    const frame = encodeTensorFrame(msg, 'float32', (bytes) => {
      expect(bytes).toBeLessThanOrEqual(reused.length);
      return reused;
    });
    expect(frame.buffer).toBe(reused.buffer);
    expect(frame.byteOffset).toBe(0);
    expect(Buffer.from(frame).equals(Buffer.from(reference({ ...msg, gradient: big }, false)))).toBe(true);
    expect(reused[frame.length]).toBe(0xee);
  });
});

describe('codec validation', () => {
  const root = protobuf.loadSync(new URL('../../../proto/lenet.proto', import.meta.url).pathname);
  const Envelope = root.lookupType('lenet.v1.Envelope');
  const raw = (obj: Record<string, unknown>): Uint8Array => Envelope.encode(Envelope.create(obj)).finish();

  const rejects = (frame: Uint8Array, code: string): void => {
    let err: unknown;
    try {
      decode(frame);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ProtocolError);
    expect((err as ProtocolError).code).toBe(code);
  };

  it('rejects another protocol version', () => {
    rejects(raw({ protocolVersion: PROTOCOL_VERSION + 1, heartbeat: { sentAtMs: 1 } }), 'LENET_ERR_PROTOCOL_VERSION');
    rejects(raw({ heartbeat: { sentAtMs: 1 } }), 'LENET_ERR_PROTOCOL_VERSION');
  });

  it('rejects bytes that are not protobuf', () => {
    rejects(Uint8Array.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff]), 'LENET_ERR_BAD_FRAME');
  });

  it('rejects an envelope without a body', () => {
    rejects(raw({ protocolVersion: PROTOCOL_VERSION }), 'LENET_ERR_BAD_FRAME');
  });

  it('rejects oversized frames', () => {
    rejects(new Uint8Array(MAX_FRAME_BYTES + 1), 'LENET_ERR_FRAME_TOO_BIG');
  });

  it('rejects tensors whose bytes do not match their shape or dtype', () => {
    const tensor = (shape: number[], dtype: number, bytes: number): Record<string, unknown> => ({ shape, dtype, data: new Uint8Array(bytes) });
    rejects(raw({ protocolVersion: PROTOCOL_VERSION, weights: { version: 1, values: tensor([10], 1, 39) } }), 'LENET_ERR_BAD_FRAME');
    rejects(raw({ protocolVersion: PROTOCOL_VERSION, weights: { version: 1, values: tensor([10], 7, 40) } }), 'LENET_ERR_BAD_FRAME');
    rejects(raw({ protocolVersion: PROTOCOL_VERSION, weights: { version: 1, values: tensor([2, 5], 1, 40) } }), 'LENET_ERR_BAD_FRAME');
    rejects(raw({ protocolVersion: PROTOCOL_VERSION, weights: { version: 1 } }), 'LENET_ERR_BAD_FRAME');
  });

  it('rejects assignments whose ranges and arrays disagree', () => {
    const base = { step: 1, weightsVersion: 1, epoch: 0, microbatches: 4, lo: 0, hi: 2, start: 0, sizes: [1, 1] };
    expect(decode(raw({ protocolVersion: PROTOCOL_VERSION, assignment: base })).type).toBe('assignment');
    rejects(raw({ protocolVersion: PROTOCOL_VERSION, assignment: { ...base, hi: 5 } }), 'LENET_ERR_BAD_FRAME');
    rejects(raw({ protocolVersion: PROTOCOL_VERSION, assignment: { ...base, sizes: [1] } }), 'LENET_ERR_BAD_FRAME');
    rejects(raw({ protocolVersion: PROTOCOL_VERSION, assignment: { ...base, pixels: new Uint8Array(10) } }), 'LENET_ERR_BAD_FRAME');
  });

  it('rejects an assignment to apply the optimizer for less than a whole step, or without a usable learning rate', () => {
    const whole = { step: 1, weightsVersion: 1, epoch: 0, microbatches: 2, lo: 0, hi: 2, start: 0, sizes: [1, 1], apply: true, lr: 0.001 };
    expect(decode(raw({ protocolVersion: PROTOCOL_VERSION, assignment: whole })).type).toBe('assignment');
    rejects(raw({ protocolVersion: PROTOCOL_VERSION, assignment: { ...whole, microbatches: 4 } }), 'LENET_ERR_BAD_FRAME');
    rejects(raw({ protocolVersion: PROTOCOL_VERSION, assignment: { ...whole, lr: 0 } }), 'LENET_ERR_BAD_FRAME');
    rejects(raw({ protocolVersion: PROTOCOL_VERSION, assignment: { ...whole, lr: Number.NaN } }), 'LENET_ERR_BAD_FRAME');
  });

  it('rejects optimizer state whose slots are not float32 tensors of their stated length', () => {
    const slot = (bytes: number): Record<string, unknown> => ({ shape: [10], dtype: 1, data: new Uint8Array(bytes) });
    rejects(raw({ protocolVersion: PROTOCOL_VERSION, optimizerState: { version: 1, name: 'adam', t: 1, slots: { m: slot(39) } } }), 'LENET_ERR_BAD_FRAME');
    rejects(raw({ protocolVersion: PROTOCOL_VERSION, optimizerState: { version: 1, name: 'adam', t: 1, slots: { m: { shape: [10], dtype: 2, data: new Uint8Array(20) } } } }), 'LENET_ERR_BAD_FRAME');
  });

  it('rejects sharded-step digests that are not 16 bytes each, or not a whole number per subtree', () => {
    const d = new Uint8Array(16);
    const done = { step: 1, lo: [0, 2], hi: [2, 3], examples: [64, 32], lossSum: [1, 1], weightsDigests: [d, d] };
    const mean = { shape: [4], dtype: 1, data: new Uint8Array(16) };
    expect(decode(raw({ protocolVersion: PROTOCOL_VERSION, rangeDone: { ...done, sumsDigests: [d, d, d, d] } }))).toMatchObject({ type: 'range_done' });
    rejects(raw({ protocolVersion: PROTOCOL_VERSION, rangeDone: { ...done, sumsDigests: [d, d, d] } }), 'LENET_ERR_BAD_FRAME');
    rejects(raw({ protocolVersion: PROTOCOL_VERSION, rangeDone: { ...done, sumsDigests: [d, d, d, new Uint8Array(32)] } }), 'LENET_ERR_BAD_FRAME');
    rejects(raw({ protocolVersion: PROTOCOL_VERSION, rangeDone: { ...done, sumsDigests: [d, d, d, d], weightsDigests: [d, new Uint8Array(15)] } }), 'LENET_ERR_BAD_FRAME');
    rejects(raw({ protocolVersion: PROTOCOL_VERSION, shardUpdate: { step: 1, offset: 0, mean, receivedDigests: [d, new Uint8Array(0)] } }), 'LENET_ERR_BAD_FRAME');
  });
});

describe('float16 gradients', () => {
  it('are exact on the wire once rounded where computed, so sums do not depend on who computed them', async () => {
    const { roundToFloat16 } = await import('../../../src/reduce/float16.js');
    const g = Float32Array.from({ length: 1000 }, (_, i) => Math.sin(i) * 10 ** ((i % 7) - 4));
    roundToFloat16(g);
    const once = g.slice();
    roundToFloat16(g);
    expect(g).toEqual(once); // idempotent
    const msg = { type: 'result' as const, step: 1, lo: 0, hi: 1, examples: 1, lossSum: 1, offset: 0, gradient: g, computeMs: 0 };
    const back = decode(encode(msg, 'float16')) as Extract<Message, { type: 'result' }>;
    expect(back.gradient).toEqual(g);
  });
});
