// The protocol's messages as a TypeScript union tagged by `type`, mirroring proto/lenet.proto.
// Only codec.ts converts between these and wire bytes.
import type { RangeTask } from '../compute/types.js';
import type { GradDType } from '../reduce/float16.js';

/**
 * 2: weights and results may come in parts (Weights.offset, GradientResult.offset).
 * 3: a worker given a whole step alone applies the optimizer itself (Assignment.apply, OptimizerState).
 * 4: sharded steps: workers reduce and update parameter shards among themselves (Peers,
 *    PeerHello, ShardUpdate, RangeDone, Abort; Hello.peer_url, RunConfig.run_id).
 * 5: sharded steps can be checked: RangeDone.sums_sha256 and weights_sha256,
 *    ShardUpdate.received_sha256.
 * 6: Assignment.start instead of the list of samples and positions (the worker derives them);
 *    the sharded steps' digests are 16 bytes (fields renamed *_digests).
 */
export const PROTOCOL_VERSION = 6;

export enum RejectReason {
  UNSPECIFIED = 0,
  PROTOCOL_VERSION = 1,
  AUTH = 2,
  /** No longer sent: the join probe, not a backend name, decides (EXACTNESS). Kept so the number stays taken. */
  BACKEND = 3,
  BAD_MESSAGE = 4,
  SHUTTING_DOWN = 5,
  EXACTNESS = 6,
}

export interface RunConfigMessage {
  arch: string;
  activation: string;
  seed: number;
  distort: boolean;
  batchSize: number;
  microbatch: number;
  trainSamples: number;
  datasetSha256: string;
  sendPixels: boolean;
  paramCount: number;
  gradDType: GradDType;
  /** adam | sgd: what a worker applies for an Assignment with `apply`. */
  optimizer: string;
  /** Random per coordinator process; a peer link proves it belongs to this run. */
  runId: string;
  /** d: where the dense layers' parameters start; weights and results may be split there. */
  denseFrom: number;
}

export interface ChallengeMessage {
  type: 'challenge';
  nonce: Uint8Array;
  coordinatorVersion: string;
}

export interface HelloMessage {
  type: 'hello';
  packageVersion: string;
  backend: string;
  threads: number;
  datasetSha256: string;
  authProof: Uint8Array;
  name: string;
  /** ws://HOST:PORT where the worker accepts peer links; empty when it has none. */
  peerUrl: string;
}

export interface WelcomeMessage {
  type: 'welcome';
  workerId: number;
  config: RunConfigMessage;
}

export interface RejectMessage {
  type: 'reject';
  reason: RejectReason;
  message: string;
}

/**
 * The parts a weights or result tensor may come in: all `width` values, the convolutions' values
 * [0, split) or the dense layers' [split, width), where split = denseOffset of the model. Which one
 * values [from, to) are, or undefined for anything else.
 */
/** A tensor of the flat vector goes whole, or in the two parts split where the dense layers start. */
export type WeightsPart = 'all' | 'conv' | 'dense';

export function tensorPart(from: number, to: number, split: number, width: number): WeightsPart | undefined {
  if (from === 0 && to === width) return 'all';
  if (from === 0 && to === split) return 'conv';
  if (from === split && to === width) return 'dense';
  return undefined;
}

/** Why values [from, to) are not one of the parts tensorPart() accepts. */
export function notAPart(from: number, to: number, split: number, width: number): string {
  return `values [${from},${to}) are neither all ${width} values nor the part before or from ${split}`;
}

export interface WeightsMessage {
  type: 'weights';
  version: number;
  /** Values [offset, offset + values.length) of the flat weights. */
  offset: number;
  values: Float32Array;
}

/**
 * A range of a step's microbatches for a worker: the range task its threads compute, on the wire.
 * Its samples are the epoch's permutation from position `start` on (both sides derive it).
 */
export interface AssignmentMessage extends Omit<RangeTask, 'leavesOnly' | 'samples' | 'positions'> {
  type: 'assignment';
  step: number;
  /** The epoch position of leaf lo's first sample; leaves lo..hi-1 hold the positions from there on. */
  start: number;
  /** With sendPixels: 784 bytes per sample, in `samples` order; else empty. */
  pixels: Uint8Array;
  labels: Uint8Array;
  /**
   * The worker computes the whole step alone and then applies the optimizer itself, with `lr`,
   * to hold the weights of version weightsVersion + 1 (docs/protocol.md, "A worker that computes whole steps alone").
   */
  apply: boolean;
  lr: number;
  /** A sharded step (docs/protocol.md, "Sharded steps"), following Peers `plan`. */
  sharded: boolean;
  plan: number;
  /** Every participant's range of the step: 0 = bounds[0] < ... < bounds[m] = microbatches. */
  bounds: number[];
  /** Samples in the whole step: the mean's divisor. */
  examples: number;
}

/** One owner of a parameter shard, for sharded steps. */
export interface PeerEntry {
  workerId: number;
  url: string;
  from: number;
  to: number;
}

/** The owners of the parameter shards, in shard order, covering [0, param_count). */
export interface PeersMessage {
  type: 'peers';
  plan: number;
  peers: PeerEntry[];
}

/** The dialer's answer to a peer's Challenge. */
export interface PeerHelloMessage {
  type: 'peer_hello';
  runId: string;
  workerId: number;
  authProof: Uint8Array;
}

/** An owner's batch-mean gradient of its shard: values [offset, offset + mean.length). */
export interface ShardUpdateMessage {
  type: 'shard_update';
  step: number;
  offset: number;
  mean: Float32Array;
  /** The digest (valuesDigest) of each of the step's subtree sums over this shard, as reduced here, in leaf order. */
  receivedDigests: Uint8Array[];
}

/** A worker's subtrees of a sharded step, with their example counts and loss sums. */
export interface RangeDoneMessage {
  type: 'range_done';
  step: number;
  nodes: { lo: number; hi: number; examples: number; lossSum: number }[];
  computeMs: number;
  /** Node-major: for nodes[i] and the plan's shard k, the digest of its sum over the shard at i·shards + k. */
  sumsDigests: Uint8Array[];
  /** Per shard of the plan: the digest of the step's weights over it, as computed with. */
  weightsDigests: Uint8Array[];
}

/** One microbatch a joining worker must compute to the coordinator's bits. */
export interface ProbeMessage {
  type: 'probe';
  weights: Float32Array;
  samples: Uint32Array;
  positions: Uint32Array;
  epoch: number;
  /** With sendPixels: 784 bytes per sample and 1 label byte per sample; else empty. */
  pixels: Uint8Array;
  labels: Uint8Array;
}

export interface ProbeResultMessage {
  type: 'probe_result';
  /** SHA-256 of the gradient's float32 bytes and then the loss sum's float64 bytes. */
  digest: Uint8Array;
}

export interface AbortMessage {
  type: 'abort';
  step: number;
}

/** The coordinator's optimizer state of weights version `version`, for a worker that applies it. */
export interface OptimizerStateMessage {
  type: 'optimizer_state';
  version: number;
  name: string;
  /** Updates applied. */
  t: number;
  /** Adam: m and v; SGD: none. Each param_count values. */
  slots: Record<string, Float32Array>;
}

export interface ResultMessage {
  type: 'result';
  step: number;
  lo: number;
  hi: number;
  examples: number;
  lossSum: number;
  /** Values [offset, offset + gradient.length) of the subtree's sum; the parts of a subtree cover it once. */
  offset: number;
  gradient: Float32Array;
  computeMs: number;
  /**
   * How the gradient came on the wire, set by decode(): a run takes only its own grad dtype. An
   * encoder writes the run's instead (encode's gradDType).
   */
  dtype?: GradDType;
}

export interface ReadyMessage {
  type: 'ready';
  threads: number;
}

export interface HeartbeatMessage {
  type: 'heartbeat';
  sentAtMs: number;
}

export interface GoodbyeMessage {
  type: 'goodbye';
  reason: string;
  runComplete: boolean;
}

export type Message =
  | ChallengeMessage
  | HelloMessage
  | WelcomeMessage
  | RejectMessage
  | WeightsMessage
  | AssignmentMessage
  | ResultMessage
  | OptimizerStateMessage
  | ReadyMessage
  | HeartbeatMessage
  | GoodbyeMessage
  | PeersMessage
  | PeerHelloMessage
  | ShardUpdateMessage
  | RangeDoneMessage
  | AbortMessage
  | ProbeMessage
  | ProbeResultMessage;

export type MessageType = Message['type'];
