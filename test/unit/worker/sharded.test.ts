// A worker's part in sharded steps (src/worker/sharded.ts), driven by hand: fake compute, the
// peers' and the coordinator's messages delivered as calls, what it sends captured. One worker
// of three owners, each computing one leaf of a 3-leaf step.
import { describe, expect, it } from 'vitest';
import { createOptimizer } from '../../../src/optim/optimizer.js';
import { decode } from '../../../src/protocol/codec.js';
import type { Message, PeersMessage, ResultMessage } from '../../../src/protocol/messages.js';
import { createSharedSlab, slot } from '../../../src/reduce/ordered-sum.js';
import { valuesDigest } from '../../../src/model/weights.js';
import type { RangeCompute } from '../../../src/compute/range.js';
import { announceVersion, untilVersion } from '../../../src/compute/dense-flag.js';
import { ShardedSteps, type AssignedRange, type ShardedSession } from '../../../src/worker/sharded.js';

const P = 60;
const DENSE_FROM = 10;
const ME = 1;
const PLAN: PeersMessage = {
  type: 'peers',
  plan: 4,
  peers: [
    { workerId: ME, url: 'ws://me', from: 0, to: 20 },
    { workerId: 2, url: 'ws://b', from: 20, to: 40 },
    { workerId: 3, url: 'ws://c', from: 40, to: 60 },
  ],
};
/** Leaf i's sums: distinct values per leaf and parameter. */
const leaf = (i: number): Float32Array => Float32Array.from({ length: P }, (_, k) => (i + 1) * 0.01 + k * 1e-4);

function setUp(denseFrom = DENSE_FROM) {
  const session: ShardedSession = {
    slab: createSharedSlab(P, 3),
    weights: new Float32Array(new SharedArrayBuffer(4 * P)).fill(0.5),
    mean: new Float32Array(P),
    convVersion: 0,
    denseVersion: new Int32Array(new SharedArrayBuffer(8)), // [0] version 0 in place, [1] no waits let go
    optimizer: createOptimizer('adam', P),
    optimizerVersion: 0,
    denseFrom,
  };
  const toCoordinator: Message[] = [];
  const toPeer: { url: string; msg: Message }[] = [];
  const steps = new ShardedSteps(session, ME, {
    toCoordinator: (m) => toCoordinator.push(m),
    toPeer: (url, frame) => toPeer.push({ url, msg: decode(frame) }),
    flushed: async () => undefined,
    log: () => undefined,
  });
  steps.setPlan(PLAN);
  /**
   * Computes leaf 0 of any step: its sums, 4 examples, the dense part handed over first. Like a
   * real one it starts with the convolutions' weights and waits for the dense layers'.
   */
  const computed: number[] = [];
  /** Resolved when a computation may reach its dense layers (at once unless a test holds it). */
  const gate = { reached: Promise.resolve() };
  const compute: RangeCompute['computeRange'] = async (task, early) => {
    computed.push(task.weightsVersion);
    const letGoSeen = Atomics.load(session.denseVersion, 1);
    await gate.reached;
    await untilVersion(session.denseVersion, task.weightsVersion, letGoSeen);
    slot(session.slab, 0).set(leaf(0));
    session.slab.count[0] = 4;
    session.slab.loss[0] = 1.5;
    early?.onDense([[0, 1]]);
    return { nodes: [[0, 1]], computeMs: 1 };
  };
  return { session, steps, toCoordinator, toPeer, compute, computed, gate };
}

const assignment = (step: number): AssignedRange => ({
  type: 'assignment',
  step,
  weightsVersion: step,
  epoch: 0,
  microbatches: 3,
  lo: 0,
  hi: 1,
  start: 12 * step,
  sizes: [4],
  samples: Uint32Array.of(5, 6, 7, 8),
  positions: Uint32Array.from({ length: 4 }, (_, i) => 12 * step + i),
  pixels: new Uint8Array(0),
  labels: new Uint8Array(0),
  apply: false,
  lr: 0.01,
  sharded: true,
  plan: PLAN.plan,
  bounds: [0, 1, 2, 3],
  examples: 12,
});

/** A peer's partial sum of this worker's shard [0, 20). */
const partial = (step: number, lo: number): ResultMessage => ({ type: 'result', step, lo, hi: lo + 1, examples: 4, lossSum: 1, offset: 0, gradient: leaf(lo).slice(0, 20), computeMs: 0 });

describe('a worker\'s sharded step', () => {
  it('sends each owner its sums of that shard and reports their digests and those of its weights; reduces its own shard along the tree once every partial sum is in; holds the next version once every shard has come', async () => {
    const { session, steps, toCoordinator, toPeer, compute } = setUp();
    const before = session.weights.slice();
    await steps.run(assignment(0), compute);
    expect(toPeer.map(({ url, msg }) => [url, msg.type === 'result' && [msg.offset, msg.gradient.length]])).toEqual([
      ['ws://b', [20, 20]],
      ['ws://c', [40, 20]],
    ]);
    const [done] = toCoordinator;
    expect(done).toMatchObject({ type: 'range_done', step: 0, nodes: [{ lo: 0, hi: 1, examples: 4, lossSum: 1.5 }] });
    if (done.type !== 'range_done') throw new Error('no RangeDone');
    expect(done.weightsDigests).toEqual(PLAN.peers.map((p) => valuesDigest(before.subarray(p.from, p.to))));
    expect(done.sumsDigests).toEqual(PLAN.peers.map((p) => valuesDigest(leaf(0).subarray(p.from, p.to))));

    steps.onPartial(partial(0, 2)); // out of leaf order: the tree, not the arrival, orders the sum
    expect(toCoordinator.map((m) => m.type)).toEqual(['range_done']);
    steps.onPartial(partial(0, 1));
    const update = toCoordinator[1];
    if (update?.type !== 'shard_update') throw new Error('no ShardUpdate');
    // Node [0,3) = ([0,1) + [1,2)) + [2,3), in float32, then divided by the step's 12 examples.
    const expected = Float32Array.from({ length: 20 }, (_, k) => Math.fround(Math.fround(Math.fround(leaf(0)[k] + leaf(1)[k]) + leaf(2)[k]) / 12));
    expect(Array.from(update.mean)).toEqual(Array.from(expected));
    expect(update.receivedDigests).toEqual([0, 1, 2].map((i) => valuesDigest(leaf(i).subarray(0, 20))));
    // Its shard's new values, one frame to each other owner; the others' shards of version 1 to come.
    const sent = toPeer.slice(2);
    // In two parts, as it holds convolution values [0, 10) and dense-layer values [10, 20).
    expect(sent.map(({ url, msg }) => [url, msg.type === 'weights' && [msg.version, msg.offset, msg.values.length]])).toEqual([
      ['ws://b', [1, 0, 10]],
      ['ws://c', [1, 0, 10]],
      ['ws://b', [1, 10, 10]],
      ['ws://c', [1, 10, 10]],
    ]);
    expect(Array.from(session.weights.subarray(0, 20))).not.toEqual(Array.from(before.subarray(0, 20)));
    // Its own shard holds every convolution value: the next step may start; the dense layers wait.
    expect([session.convVersion, session.optimizerVersion, Atomics.load(session.denseVersion, 0)]).toEqual([1, 1, 0]);
    steps.onShardWeights({ type: 'weights', version: 1, offset: 20, values: new Float32Array(20).fill(0.25) }, 2);
    expect(Atomics.load(session.denseVersion, 0)).toBe(0);
    steps.onShardWeights({ type: 'weights', version: 1, offset: 40, values: new Float32Array(20).fill(0.75) }, 3);
    expect([session.convVersion, session.optimizerVersion, Atomics.load(session.denseVersion, 0)]).toEqual([1, 1, 1]);
    expect(Array.from(session.weights.subarray(20, 60))).toEqual([...Array(20).fill(0.25), ...Array(20).fill(0.75)]);
  });

  it('keeps a partial sum that comes before its step\'s assignment, and uses it', async () => {
    const { steps, toCoordinator, compute } = setUp();
    steps.onPartial(partial(0, 1));
    steps.onPartial(partial(0, 2));
    await steps.run(assignment(0), compute);
    expect(toCoordinator.map((m) => m.type)).toEqual(['range_done', 'shard_update']);
  });

  it('ignores a partial sum of a subtree the step does not have, of another shard, or one already in', async () => {
    const { steps, toCoordinator, compute } = setUp();
    await steps.run(assignment(0), compute);
    steps.onPartial({ ...partial(0, 1), lo: 1, hi: 3 });
    steps.onPartial({ ...partial(0, 1), offset: 20 });
    steps.onPartial(partial(0, 1));
    steps.onPartial(partial(0, 1));
    expect(toCoordinator.map((m) => m.type)).toEqual(['range_done']);
  });

  it('takes a shard of the next version only from its owner, whole, for the version being made', async () => {
    const { session, steps, compute } = setUp();
    await steps.run(assignment(0), compute);
    steps.onPartial(partial(0, 1));
    steps.onPartial(partial(0, 2));
    steps.onShardWeights({ type: 'weights', version: 1, offset: 20, values: new Float32Array(20) }, 3); // not its owner
    steps.onShardWeights({ type: 'weights', version: 2, offset: 20, values: new Float32Array(20) }, 2); // another version
    steps.onShardWeights({ type: 'weights', version: 1, offset: 20, values: new Float32Array(10) }, 2); // part of it
    steps.onShardWeights({ type: 'weights', version: 1, offset: 40, values: new Float32Array(20) }, 3);
    expect(Atomics.load(session.denseVersion, 0)).toBe(0);
    steps.onShardWeights({ type: 'weights', version: 1, offset: 20, values: new Float32Array(20) }, 2);
    expect(Atomics.load(session.denseVersion, 0)).toBe(1);
  });

  it('Abort(step): the step is dropped, the partial sums that would complete its shard make nothing, and a step waiting for its weights does not start', async () => {
    const { steps, toCoordinator, toPeer, compute, computed } = setUp();
    await steps.run(assignment(0), compute);
    steps.abort(0);
    steps.onPartial(partial(0, 1));
    steps.onPartial(partial(0, 2));
    expect(toCoordinator.map((m) => m.type)).toEqual(['range_done']);
    expect(toPeer.map(({ msg }) => msg.type)).toEqual(['result', 'result']);
    // Step 1 needs version 1, which nobody will make now; its abort ends the wait.
    const waiting = steps.run(assignment(1), compute);
    steps.abort(1);
    await waiting;
    expect(computed).toEqual([0]);
  });

  it('the next step starts once the shards with convolution values and its own are in, and reports the digests of the whole version', async () => {
    const { session, steps, toCoordinator, compute, computed } = setUp();
    await steps.run(assignment(0), compute);
    const next = steps.run(assignment(1), compute);
    steps.onPartial(partial(0, 1));
    await new Promise((r) => setTimeout(r, 10));
    expect(computed).toEqual([0]); // its own shard of version 1 is not made yet
    steps.onPartial(partial(0, 2));
    steps.onShardWeights({ type: 'weights', version: 1, offset: 20, values: new Float32Array(20).fill(0.25) }, 2);
    await new Promise((r) => setTimeout(r, 10));
    expect(computed).toEqual([0, 1]); // started on the convolutions' weights
    const rangeDone = () => toCoordinator.filter((m) => m.type === 'range_done').map((m) => m.type === 'range_done' && m.step);
    expect(rangeDone()).toEqual([0]); // waiting for the dense layers' last shard
    steps.onShardWeights({ type: 'weights', version: 1, offset: 40, values: new Float32Array(20).fill(0.75) }, 3);
    const whole = session.weights.slice();
    await next;
    expect(rangeDone()).toEqual([0, 1]);
    const done = toCoordinator.filter((m) => m.type === 'range_done')[1];
    if (done.type !== 'range_done') throw new Error('no RangeDone');
    expect(done.weightsDigests).toEqual(PLAN.peers.map((p) => valuesDigest(whole.subarray(p.from, p.to))));
  });

  it('keeps a shard of the next version that comes before its own shard is made', async () => {
    const { session, steps } = setUp();
    // The peer's shard of version 1 comes while this worker still computes step 0.
    const compute: RangeCompute['computeRange'] = async (_task, early) => {
      steps.onShardWeights({ type: 'weights', version: 1, offset: 20, values: new Float32Array(20).fill(0.25) }, 2);
      slot(session.slab, 0).set(leaf(0));
      session.slab.count[0] = 4;
      session.slab.loss[0] = 1.5;
      early?.onDense([[0, 1]]);
      return { nodes: [[0, 1]], computeMs: 1 };
    };
    await steps.run(assignment(0), compute);
    steps.onPartial(partial(0, 1));
    steps.onPartial(partial(0, 2));
    steps.onShardWeights({ type: 'weights', version: 1, offset: 40, values: new Float32Array(20).fill(0.75) }, 3);
    expect(Atomics.load(session.denseVersion, 0)).toBe(1);
    expect(Array.from(session.weights.subarray(20, 40))).toEqual(Array(20).fill(0.25));
  });

  it('with convolution values in another owner\'s shard, the next step waits for that part of it, and the rest for the dense layers', async () => {
    const { session, steps, compute, computed } = setUp(30); // shard [20, 40) holds convolution values [20, 30)
    await steps.run(assignment(0), compute);
    const next = steps.run(assignment(1), compute);
    steps.onPartial(partial(0, 1));
    steps.onPartial(partial(0, 2));
    steps.onShardWeights({ type: 'weights', version: 1, offset: 40, values: new Float32Array(20) }, 3);
    steps.onShardWeights({ type: 'weights', version: 1, offset: 20, values: new Float32Array(20) }, 2); // not a part it publishes
    await new Promise((r) => setTimeout(r, 10));
    expect(computed).toEqual([0]);
    steps.onShardWeights({ type: 'weights', version: 1, offset: 20, values: new Float32Array(10) }, 2);
    await new Promise((r) => setTimeout(r, 10));
    expect(computed).toEqual([0, 1]);
    expect(Atomics.load(session.denseVersion, 0)).toBe(0);
    steps.onShardWeights({ type: 'weights', version: 1, offset: 30, values: new Float32Array(10) }, 2);
    await next;
    expect(Atomics.load(session.denseVersion, 0)).toBe(1);
  });

  it('Abort(step) lets a computation waiting for dense shards that will not come go on, and drops its result', async () => {
    const { session, steps, toCoordinator, toPeer, compute, computed } = setUp();
    await steps.run(assignment(0), compute);
    const next = steps.run(assignment(1), compute);
    steps.onPartial(partial(0, 1));
    steps.onPartial(partial(0, 2));
    await new Promise((r) => setTimeout(r, 10));
    expect(computed).toEqual([0, 1]);
    const sentBefore = toPeer.length;
    steps.abort(0);
    steps.abort(1);
    await next;
    expect(toCoordinator.filter((m) => m.type === 'range_done').length).toBe(1);
    expect(toPeer.length).toBe(sentBefore); // nothing of step 1 went to its peers
    // The version it waited for is not whole; the next assignment brings the weights whole.
    steps.onShardWeights({ type: 'weights', version: 1, offset: 20, values: new Float32Array(20) }, 2);
    expect(session.weights.subarray(20, 40).every((x) => x === 0.5)).toBe(true);
  });
  it('Abort(step) lets go a computation that reaches its dense layers only after older weights lowered denseVersion, and not one begun after', async () => {
    const { session, steps, toCoordinator, compute, computed, gate } = setUp();
    await steps.run(assignment(0), compute);
    let reach!: () => void;
    gate.reached = new Promise((r) => (reach = r)); // step 1's threads are still in the convolutions
    const next = steps.run(assignment(1), compute);
    steps.onPartial(partial(0, 1));
    steps.onPartial(partial(0, 2));
    await new Promise((r) => setTimeout(r, 10));
    expect(computed).toEqual([0, 1]);
    steps.abort(0);
    steps.abort(1);
    // The coordinator sends its weights of version 0 again, whole, the dense layers' first.
    announceVersion(session.denseVersion, 0);
    reach();
    await next; // it does not wait for version 1's dense layers, which will not come
    expect(toCoordinator.filter((m) => m.type === 'range_done').length).toBe(1);
    // A computation of version 1 that begins now waits for those weights as ever.
    let done = false;
    const later = untilVersion(session.denseVersion, 1, Atomics.load(session.denseVersion, 1)).then(() => (done = true));
    await new Promise((r) => setTimeout(r, 10));
    expect(done).toBe(false);
    announceVersion(session.denseVersion, 1);
    await later;
    expect(done).toBe(true);
  });
});
