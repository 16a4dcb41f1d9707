// The only code that touches wire bytes: encoding Messages into protobuf Envelopes and decoding
// and validating incoming ones. Structural checks live here (size, version, known body, tensor
// byte lengths, array lengths); checks that need run state (step, ranges, values) live with the
// code that owns that state.
import { endianness } from 'node:os';
import protobuf from 'protobufjs';
import { MAX_FRAME_BYTES, VALUES_DIGEST_BYTES } from '../constants.js';
import { float16BytesToFloat32, float32ToFloat16Bytes, type GradDType } from '../reduce/float16.js';
import { CLOSE_PROTOCOL_ERROR, CLOSE_TOO_BIG, CLOSE_VERSION_MISMATCH, ProtocolError } from './errors.js';
import { PROTO_SOURCE } from './schema.js';
import { PROTOCOL_VERSION, type Message, type ResultMessage, type RunConfigMessage, type WeightsMessage } from './messages.js';

const root = protobuf.parse(PROTO_SOURCE).root;
const Envelope = root.lookupType('lenet.v1.Envelope');

const DTYPE_FLOAT32 = 1;
const DTYPE_FLOAT16 = 2;
const LITTLE_ENDIAN = endianness() === 'LE';

// Wire objects as protobufjs hands them over (camelCase field names).
interface WireTensor {
  shape?: number[];
  dtype?: number;
  data?: Uint8Array;
}
type Wire = Record<string, unknown> & { protocolVersion?: number };

function bad(message: string): ProtocolError {
  return new ProtocolError('LENET_ERR_BAD_FRAME', message);
}

// ---- tensors ----------------------------------------------------------------------------

function float32ToBytes(values: Float32Array): Uint8Array {
  const bytes = new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
  if (LITTLE_ENDIAN) return bytes;
  const copy = Buffer.from(bytes);
  copy.swap32();
  return copy;
}

function bytesToFloat32(bytes: Uint8Array, count: number, out: Float32Array = new Float32Array(count)): Float32Array {
  const view = new Uint8Array(out.buffer, out.byteOffset, count * 4);
  view.set(bytes.subarray(0, count * 4));
  if (!LITTLE_ENDIAN) Buffer.from(out.buffer, out.byteOffset, count * 4).swap32();
  return out;
}

function decodeTensor(t: WireTensor | undefined, what: string, into?: Float32Array): Float32Array {
  if (!t) throw bad(`${what}: tensor missing`);
  const shape = t.shape ?? [];
  const count = shape.reduce((a, b) => a * b, 1);
  if (shape.length !== 1) throw bad(`${what}: tensor must be flat (rank 1), got shape [${shape.join(',')}]`);
  const data = t.data ?? new Uint8Array(0);
  const width = t.dtype === DTYPE_FLOAT32 ? 4 : t.dtype === DTYPE_FLOAT16 ? 2 : 0;
  if (width === 0) throw bad(`${what}: unsupported tensor dtype ${t.dtype}`);
  if (data.length !== count * width) throw bad(`${what}: ${data.length} bytes for ${count} values of ${width} bytes`);
  const out = into?.length === count ? into : new Float32Array(count);
  return width === 4 ? bytesToFloat32(data, count, out) : float16BytesToFloat32(data, count, out);
}

// ---- envelopes --------------------------------------------------------------------------

/** The small messages, as protobufjs objects (weights and results: encodeTensorFrame). */
function toWire(msg: Exclude<Message, WeightsMessage | ResultMessage>): Wire {
  switch (msg.type) {
    case 'challenge':
      return { challenge: { nonce: msg.nonce, coordinatorVersion: msg.coordinatorVersion } };
    case 'hello': {
      const { type: _t, ...hello } = msg;
      return { hello };
    }
    case 'welcome':
      return { welcome: { workerId: msg.workerId, config: { ...msg.config, gradDtype: msg.config.gradDType === 'float16' ? DTYPE_FLOAT16 : DTYPE_FLOAT32 } } };
    case 'reject':
      return { reject: { reason: msg.reason, message: msg.message } };
    case 'assignment': {
      const { type: _t, ...a } = msg;
      return { assignment: a };
    }
    case 'optimizer_state': {
      const slots = Object.fromEntries(Object.entries(msg.slots).map(([k, v]) => [k, { shape: [v.length], dtype: DTYPE_FLOAT32, data: float32ToBytes(v) }]));
      return { optimizerState: { version: msg.version, name: msg.name, t: msg.t, slots } };
    }
    case 'ready':
      return { ready: { threads: msg.threads } };
    case 'heartbeat':
      return { heartbeat: { sentAtMs: msg.sentAtMs } };
    case 'goodbye':
      return { goodbye: { reason: msg.reason, runComplete: msg.runComplete } };
    case 'peers':
      return { peers: { plan: msg.plan, peers: msg.peers.map((p) => ({ workerId: p.workerId, url: p.url, shardFrom: p.from, shardTo: p.to })) } };
    case 'peer_hello':
      return { peerHello: { runId: msg.runId, workerId: msg.workerId, authProof: msg.authProof } };
    case 'shard_update':
      return { shardUpdate: { step: msg.step, offset: msg.offset, mean: { shape: [msg.mean.length], dtype: DTYPE_FLOAT32, data: float32ToBytes(msg.mean) }, receivedDigests: msg.receivedDigests } };
    case 'range_done':
      return {
        rangeDone: {
          step: msg.step,
          lo: msg.nodes.map((n) => n.lo),
          hi: msg.nodes.map((n) => n.hi),
          examples: msg.nodes.map((n) => n.examples),
          lossSum: msg.nodes.map((n) => n.lossSum),
          computeMs: msg.computeMs,
          sumsDigests: msg.sumsDigests,
          weightsDigests: msg.weightsDigests,
        },
      };
    case 'abort':
      return { abort: { step: msg.step } };
    case 'probe':
      return { probe: { weights: { shape: [msg.weights.length], dtype: DTYPE_FLOAT32, data: float32ToBytes(msg.weights) }, samples: Array.from(msg.samples), positions: Array.from(msg.positions), epoch: msg.epoch, pixels: msg.pixels, labels: msg.labels } };
    case 'probe_result':
      return { probeResult: { digest: msg.digest } };
    default: {
      const never: never = msg;
      throw new Error(`cannot encode ${JSON.stringify(never)}`);
    }
  }
}

/**
 * Encodes one message as one binary WebSocket frame. Gradients go as `gradDType`. Weights and
 * results are written by encodeTensorFrame, the rest by protobufjs.
 */
export function encode(msg: Message, gradDType: GradDType = 'float32'): Uint8Array {
  if (msg.type === 'weights' || msg.type === 'result') return encodeTensorFrame(msg, gradDType);
  return Envelope.encode(Envelope.create({ protocolVersion: PROTOCOL_VERSION, ...toWire(msg) })).finish();
}

// ---- the two large frames, written by hand -------------------------------------------------
//
// Weights (coordinator to worker) and results (back) are 243 KB each and cross the wire every
// step. protobufjs allocates a fresh buffer for each and is slow to copy a tensor out of shared
// memory: a worker spent 2.4 ms encoding each result (median, traced over a run). These two
// messages are written here instead: exactly the bytes protobufjs writes (a test compares them),
// into memory the caller may reuse (see frames.ts).

const WIRE_VARINT = 0;
const WIRE_I64 = 1;
const WIRE_LEN = 2;
const BODY_WEIGHTS = 14; // Envelope field numbers, as in proto/lenet.proto
const BODY_RESULT = 16;

/** Bytes of `v` as a protobuf varint (uint32). */
function varintBytes(v: number): number {
  v >>>= 0;
  return v < 0x80 ? 1 : v < 0x4000 ? 2 : v < 0x200000 ? 3 : v < 0x10000000 ? 4 : 5;
}

// proto3 leaves out a scalar field at its default, as protobufjs does (0, +0.0, empty bytes).
const u32Field = (v: number): number => (v === 0 ? 0 : 1 + varintBytes(v));
const f64Field = (v: number): number => (Object.is(v, 0) ? 0 : 9);
const lenField = (len: number): number => 1 + varintBytes(len) + len;
const bytesField = (len: number): number => (len === 0 ? 0 : lenField(len));

class FrameWriter {
  pos = 0;
  private readonly view: DataView;
  constructor(readonly buf: Uint8Array) {
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  }
  varint(v: number): this {
    v >>>= 0;
    while (v > 0x7f) {
      this.buf[this.pos++] = (v & 0x7f) | 0x80;
      v >>>= 7;
    }
    this.buf[this.pos++] = v;
    return this;
  }
  /** The key of a length-delimited field and its length; the contents follow. */
  len(field: number, length: number): this {
    return this.varint((field << 3) | WIRE_LEN).varint(length);
  }
  u32(field: number, v: number): this {
    return v === 0 ? this : this.varint((field << 3) | WIRE_VARINT).varint(v);
  }
  f64(field: number, v: number): this {
    if (Object.is(v, 0)) return this;
    this.varint((field << 3) | WIRE_I64);
    this.view.setFloat64(this.pos, v, true);
    this.pos += 8;
    return this;
  }
  bytes(field: number, b: Uint8Array): this {
    if (b.length === 0) return this;
    this.len(field, b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
    return this;
  }
}

/**
 * Encodes a weights or result message. The frame is a prefix of `alloc(bytes)`, which may hand
 * out a reused buffer of at least `bytes`; by default a fresh one of exactly that size.
 */
export function encodeTensorFrame(
  msg: WeightsMessage | ResultMessage,
  gradDType: GradDType = 'float32',
  alloc: (bytes: number) => Uint8Array = (bytes) => new Uint8Array(bytes),
): Uint8Array {
  const values = msg.type === 'weights' ? msg.values : msg.gradient;
  const half = msg.type === 'result' && gradDType === 'float16';
  const dtype = half ? DTYPE_FLOAT16 : DTYPE_FLOAT32;
  const data = half ? float32ToFloat16Bytes(values) : float32ToBytes(values);
  // Tensor: shape (packed, one value), dtype, data.
  const tensorBytes = lenField(varintBytes(values.length)) + u32Field(dtype) + bytesField(data.length);
  const bodyBytes =
    msg.type === 'weights'
      ? u32Field(msg.version) + lenField(tensorBytes) + u32Field(msg.offset)
      : u32Field(msg.step) + u32Field(msg.lo) + u32Field(msg.hi) + u32Field(msg.examples) + f64Field(msg.lossSum) + lenField(tensorBytes) + f64Field(msg.computeMs) +
        u32Field(msg.offset);
  const body = msg.type === 'weights' ? BODY_WEIGHTS : BODY_RESULT;
  const total = u32Field(PROTOCOL_VERSION) + varintBytes((body << 3) | WIRE_LEN) + varintBytes(bodyBytes) + bodyBytes;

  const w = new FrameWriter(alloc(total).subarray(0, total));
  w.u32(1, PROTOCOL_VERSION).len(body, bodyBytes);
  if (msg.type === 'weights') w.u32(1, msg.version).len(2, tensorBytes);
  else w.u32(1, msg.step).u32(2, msg.lo).u32(3, msg.hi).u32(4, msg.examples).f64(5, msg.lossSum).len(6, tensorBytes);
  w.len(1, varintBytes(values.length)).varint(values.length).u32(2, dtype).bytes(3, data);
  if (msg.type === 'weights') w.u32(3, msg.offset);
  else w.f64(7, msg.computeMs).u32(8, msg.offset);
  if (w.pos !== total) throw new Error(`tensor frame: wrote ${w.pos} bytes, sized ${total}`);
  return w.buf;
}

const u32 = (v: unknown): number => (typeof v === 'number' ? v : 0);
const str = (v: unknown): string => (typeof v === 'string' ? v : '');
// protobufjs hands over Buffers; expose plain Uint8Array views of the same memory.
/** A repeated bytes field of values digests (valuesDigest): 16 bytes each. */
function digests(v: unknown, what: string): Uint8Array[] {
  const list = ((v as unknown[] | undefined) ?? []).map(bytes);
  if (list.some((d) => d.length !== VALUES_DIGEST_BYTES)) throw bad(`${what}: every digest is ${VALUES_DIGEST_BYTES} bytes`);
  return list;
}
const bytes = (v: unknown): Uint8Array => (v instanceof Uint8Array ? new Uint8Array(v.buffer, v.byteOffset, v.byteLength) : new Uint8Array(0));

/**
 * Where a decoded tensor goes: an array of exactly its length is filled in place (else a new one
 * is made). A function chooses by the part's offset, length and kind.
 */
export type TensorTarget = Float32Array | ((offset: number, count: number, kind: 'weights' | 'result') => Float32Array | undefined);

function target(into: TensorTarget | undefined, offset: number, t: WireTensor | undefined, kind: 'weights' | 'result'): Float32Array | undefined {
  if (typeof into !== 'function') return into;
  return into(offset, (t?.shape ?? []).reduce((a, b) => a * b, 1), kind);
}

function fromWire(w: Wire, into?: TensorTarget): Message {
  const body = Object.keys(w).find((k) => k !== 'protocolVersion' && w[k] !== undefined && w[k] !== null);
  const b = (body ? w[body] : {}) as Record<string, unknown>;
  switch (body) {
    case 'challenge':
      if (bytes(b.nonce).length < 16) throw bad('challenge: nonce shorter than 16 bytes');
      return { type: 'challenge', nonce: bytes(b.nonce), coordinatorVersion: str(b.coordinatorVersion) };
    case 'hello':
      return {
        type: 'hello',
        packageVersion: str(b.packageVersion),
        backend: str(b.backend),
        threads: u32(b.threads),
        datasetSha256: str(b.datasetSha256),
        authProof: bytes(b.authProof),
        name: str(b.name),
        peerUrl: str(b.peerUrl),
      };
    case 'welcome': {
      const c = (b.config ?? {}) as Record<string, unknown>;
      const config: RunConfigMessage = {
        arch: str(c.arch),
        activation: str(c.activation),
        seed: u32(c.seed),
        distort: c.distort === true,
        batchSize: u32(c.batchSize),
        microbatch: u32(c.microbatch),
        trainSamples: u32(c.trainSamples),
        datasetSha256: str(c.datasetSha256),
        sendPixels: c.sendPixels === true,
        paramCount: u32(c.paramCount),
        gradDType: c.gradDtype === DTYPE_FLOAT16 ? 'float16' : 'float32',
        optimizer: str(c.optimizer),
        runId: str(c.runId),
        denseFrom: u32(c.denseFrom),
      };
      return { type: 'welcome', workerId: u32(b.workerId), config };
    }
    case 'reject':
      return { type: 'reject', reason: u32(b.reason), message: str(b.message) };
    case 'weights': {
      // float32 only: rounded weights would compute other bits than the coordinator's.
      if ((b.values as WireTensor | undefined)?.dtype === DTYPE_FLOAT16) throw bad('weights: must be float32');
      const offset = u32(b.offset);
      const values = decodeTensor(b.values as WireTensor, 'weights', target(into, offset, b.values as WireTensor, 'weights'));
      return { type: 'weights', version: u32(b.version), offset, values };
    }
    case 'assignment': {
      const sizes = ((b.sizes as number[] | undefined) ?? []).slice();
      const lo = u32(b.lo);
      const hi = u32(b.hi);
      if (hi <= lo || hi > u32(b.microbatches)) throw bad(`assignment: range [${lo},${hi}) is not inside ${u32(b.microbatches)} microbatches`);
      if (sizes.length !== hi - lo) throw bad(`assignment: ${sizes.length} sizes for ${hi - lo} microbatches`);
      const total = sizes.reduce((a, x) => a + x, 0);
      const pixels = bytes(b.pixels);
      const labels = bytes(b.labels);
      if (pixels.length !== 0 && (pixels.length !== total * 784 || labels.length !== total)) throw bad('assignment: pixels or labels do not match the samples');
      const apply = b.apply === true;
      const lr = typeof b.lr === 'number' ? b.lr : 0;
      if (apply && (lo !== 0 || hi !== u32(b.microbatches))) throw bad(`assignment: apply needs the whole step, not [${lo},${hi}) of ${u32(b.microbatches)}`);
      if (apply && !(Number.isFinite(lr) && lr > 0)) throw bad(`assignment: apply needs a positive learning rate, not ${lr}`);
      const sharded = b.sharded === true;
      const bounds = ((b.bounds as number[] | undefined) ?? []).slice();
      const examples = u32(b.examples);
      if (sharded) {
        if (apply) throw bad('assignment: sharded and apply exclude each other');
        if (!(Number.isFinite(lr) && lr > 0)) throw bad(`assignment: a sharded step needs a positive learning rate, not ${lr}`);
        const increasing = bounds.every((x, i) => i === 0 || x > bounds[i - 1]);
        if (bounds[0] !== 0 || bounds.at(-1) !== u32(b.microbatches) || !increasing || !bounds.includes(lo) || !bounds.includes(hi)) {
          throw bad(`assignment: bounds [${bounds.join(',')}] do not cut ${u32(b.microbatches)} microbatches with [${lo},${hi}) as one range`);
        }
        if (examples === 0) throw bad('assignment: a sharded step needs its example count');
      }
      return {
        type: 'assignment',
        step: u32(b.step),
        weightsVersion: u32(b.weightsVersion),
        epoch: u32(b.epoch),
        microbatches: u32(b.microbatches),
        lo,
        hi,
        start: u32(b.start),
        sizes,
        pixels,
        labels,
        apply,
        lr,
        sharded,
        plan: u32(b.plan),
        bounds,
        examples,
      };
    }
    case 'optimizerState': {
      const wire = (b.slots ?? {}) as Record<string, WireTensor>;
      // float32 only: a rounded moment would make the worker's update differ from the coordinator's.
      for (const [k, t] of Object.entries(wire)) if (t?.dtype !== DTYPE_FLOAT32) throw bad(`optimizer slot ${k}: must be float32`);
      const slots = Object.fromEntries(Object.entries(wire).map(([k, t]) => [k, decodeTensor(t, `optimizer slot ${k}`)]));
      return { type: 'optimizer_state', version: u32(b.version), name: str(b.name), t: u32(b.t), slots };
    }
    case 'result':
      return {
        type: 'result',
        step: u32(b.step),
        lo: u32(b.lo),
        hi: u32(b.hi),
        examples: u32(b.examples),
        lossSum: typeof b.lossSum === 'number' ? b.lossSum : NaN,
        offset: u32(b.offset),
        gradient: decodeTensor(b.gradient as WireTensor, 'result', target(into, u32(b.offset), b.gradient as WireTensor, 'result')),
        computeMs: typeof b.computeMs === 'number' ? b.computeMs : 0,
        dtype: (b.gradient as WireTensor).dtype === DTYPE_FLOAT16 ? 'float16' : 'float32',
      };
    case 'ready':
      return { type: 'ready', threads: u32(b.threads) };
    case 'heartbeat':
      return { type: 'heartbeat', sentAtMs: typeof b.sentAtMs === 'number' ? b.sentAtMs : 0 };
    case 'goodbye':
      return { type: 'goodbye', reason: str(b.reason), runComplete: b.runComplete === true };
    case 'peers': {
      const peers = ((b.peers as Record<string, unknown>[] | undefined) ?? []).map((p) => ({ workerId: u32(p.workerId), url: str(p.url), from: u32(p.shardFrom), to: u32(p.shardTo) }));
      if (peers.some((p, i) => p.to <= p.from || (i > 0 && p.from !== peers[i - 1].to)) || peers[0]?.from !== 0) throw bad('peers: shards must cover the parameters contiguously from 0');
      return { type: 'peers', plan: u32(b.plan), peers };
    }
    case 'peerHello':
      return { type: 'peer_hello', runId: str(b.runId), workerId: u32(b.workerId), authProof: bytes(b.authProof) };
    case 'shardUpdate': {
      const mean = b.mean as WireTensor | undefined;
      if (mean?.dtype !== DTYPE_FLOAT32) throw bad('shard update: the mean must be float32');
      return { type: 'shard_update', step: u32(b.step), offset: u32(b.offset), mean: decodeTensor(mean, 'shard update'), receivedDigests: digests(b.receivedDigests, 'shard update: received_digests') };
    }
    case 'rangeDone': {
      const list = (k: string): number[] => ((b[k] as number[] | undefined) ?? []).slice();
      const [lo, hi, examples, lossSum] = [list('lo'), list('hi'), list('examples'), list('lossSum')];
      if (hi.length !== lo.length || examples.length !== lo.length || lossSum.length !== lo.length) throw bad('range done: lo, hi, examples and loss_sum differ in length');
      const nodes = lo.map((l, i) => ({ lo: l, hi: hi[i], examples: examples[i], lossSum: lossSum[i] }));
      const sumsDigests = digests(b.sumsDigests, 'range done: sums_digests');
      if (sumsDigests.length % Math.max(1, nodes.length) !== 0) throw bad(`range done: ${sumsDigests.length} sums_digests for ${nodes.length} subtrees`);
      return { type: 'range_done', step: u32(b.step), nodes, computeMs: typeof b.computeMs === 'number' ? b.computeMs : 0, sumsDigests, weightsDigests: digests(b.weightsDigests, 'range done: weights_digests') };
    }
    case 'abort':
      return { type: 'abort', step: u32(b.step) };
    case 'probe': {
      const weights = b.weights as WireTensor | undefined;
      if (weights?.dtype !== DTYPE_FLOAT32) throw bad('probe: the weights must be float32');
      const samples = Uint32Array.from((b.samples as number[] | undefined) ?? []);
      const positions = Uint32Array.from((b.positions as number[] | undefined) ?? []);
      if (samples.length === 0 || positions.length !== samples.length) throw bad(`probe: ${samples.length} samples and ${positions.length} positions`);
      const [pixels, labels] = [bytes(b.pixels), bytes(b.labels)];
      if (pixels.length !== 0 && (pixels.length !== samples.length * 784 || labels.length !== samples.length)) throw bad('probe: pixels or labels do not match the samples');
      return { type: 'probe', weights: decodeTensor(weights, 'probe'), samples, positions, epoch: u32(b.epoch), pixels, labels };
    }
    case 'probeResult':
      if (bytes(b.digest).length !== 32) throw bad('probe result: the digest must be 32 bytes');
      return { type: 'probe_result', digest: bytes(b.digest) };
    default:
      throw bad(`envelope has no known message body`);
  }
}

/**
 * Decodes and structurally validates one frame. Throws ProtocolError (with the close code to
 * use) for oversized frames, undecodable bytes, another protocol version, or a malformed body.
 * A tensor body (weights, a result's gradient) is decoded into `into` when that has exactly its
 * length (see TensorTarget), and the message then shares it: for a caller that is done with each
 * message before it decodes the next (the coordinator, with 64 workers, spent a fifth of its busy
 * time collecting a fresh 243 KB array per result), or that decodes weights where they belong.
 */
export function decode(frame: Uint8Array, into?: TensorTarget): Message {
  if (frame.length > MAX_FRAME_BYTES) {
    throw new ProtocolError('LENET_ERR_FRAME_TOO_BIG', `frame of ${frame.length} bytes exceeds ${MAX_FRAME_BYTES}`, CLOSE_TOO_BIG);
  }
  let wire: Wire;
  try {
    wire = Envelope.toObject(Envelope.decode(frame), { defaults: false, arrays: true }) as Wire;
  } catch (err) {
    throw new ProtocolError('LENET_ERR_BAD_FRAME', `undecodable protobuf frame (${(err as Error).message})`, CLOSE_PROTOCOL_ERROR);
  }
  if (wire.protocolVersion !== PROTOCOL_VERSION) {
    throw new ProtocolError('LENET_ERR_PROTOCOL_VERSION', `peer speaks protocol version ${wire.protocolVersion ?? 0}, this side speaks ${PROTOCOL_VERSION}`, CLOSE_VERSION_MISMATCH);
  }
  return fromWire(wire, into);
}
