// The coordinator's side of a remote worker: assembling a subtree's sum from the parts a worker
// sends (the dense layers' part early, the convolutions' after), and refusing parts that do not fit.
import { EventEmitter } from 'node:events';
import { afterEach, describe, expect, it } from 'vitest';
import { RemoteWorker } from '../../../src/coordinator/remote-worker.js';
import type { StepWork } from '../../../src/coordinator/participants.js';
import { decode, encode } from '../../../src/protocol/codec.js';
import { createSharedSlab, slot } from '../../../src/reduce/ordered-sum.js';

const WIDTH = 10;
/** First bytes of the fake weights frames. */
const CONV_FRAME = 0xc0;
const DENSE_FRAME = 0xde;
const OPTIMIZER_FRAME = 0x0f;
const PROBE_FRAME = 0x9b;
/** The digest the join probe must give. */
const PROBE_DIGEST = new Uint8Array(32).fill(7);

class FakeSocket extends EventEmitter {
  readonly OPEN = 1;
  readyState = 1;
  sent: Uint8Array[] = [];
  /** What reached the wire: one entry per write, several frames when they were corked. */
  writes: Uint8Array[][] = [];
  private corked: Uint8Array[] | undefined;
  /** As ws's WebSocket: its net.Socket. */
  readonly _socket = {
    cork: (): void => {
      this.corked = [];
    },
    uncork: (): void => {
      if (this.corked) this.writes.push(this.corked);
      this.corked = undefined;
    },
  };
  closed: { code: number; reason: string } | undefined;
  send(frame: Uint8Array, _opts: unknown, cb?: () => void): void {
    this.sent.push(frame);
    if (this.corked) this.corked.push(frame);
    else this.writes.push([frame]);
    cb?.();
  }
  close(code: number, reason: string): void {
    this.closed = { code, reason };
    this.readyState = 3;
  }
  frame(msg: Parameters<typeof encode>[0]): void {
    this.emit('message', Buffer.from(encode(msg)), true);
  }
}

const workers: RemoteWorker[] = [];
/** compute() sends its assignment after earlier ranges: a turn of the event loop. */
const sentAssignment = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
afterEach(() => workers.splice(0).forEach((w) => w.close(1000, 'test over')));

/** A worker as welcomed: STARTING, its join probe sent, neither Ready nor a probe result back. */
function welcomed(gradDType: 'float32' | 'float16' = 'float32'): { ws: FakeSocket; worker: RemoteWorker; slab: ReturnType<typeof createSharedSlab>; violations: string[]; ready: RemoteWorker[] } {
  const ws = new FakeSocket();
  const ready: RemoteWorker[] = [];
  const slab = createSharedSlab(WIDTH, 2);
  const violations: string[] = [];
  const worker = new RemoteWorker(ws as never, {
    workerId: 1,
    name: 'w',
    address: '127.0.0.1',
    browser: false,
    threads: 1,
    peerUrl: '',
    traffic: { sent: 0, received: 0 },
    sendPixels: false,
    gradDType,
    slab,
    partSplit: 6,
    data: undefined as never,
    weightsFrame: (version, part) => ({ frame: Uint8Array.of(part === 'conv' ? CONV_FRAME : DENSE_FRAME, version), sent: () => undefined }),
    optimizerFrame: (version) => Uint8Array.of(OPTIMIZER_FRAME, version),
    log: () => undefined,
    onViolation: (reason) => violations.push(reason),
    onReady: (w) => ready.push(w),
    onEject: () => undefined,
    onClose: () => undefined,
    probe: { frame: Uint8Array.of(PROBE_FRAME), digest: PROBE_DIGEST },
    computesWith: 'the wasm backend of lenet-dist 0.1.0',
    says: 'the cpu backend of lenet-dist 0.1.0',
  });
  workers.push(worker);
  return { ws, worker, slab, violations, ready };
}

/** A worker that has passed the join probe and is ACTIVE, its handshake writes forgotten. */
function setUp(gradDType: 'float32' | 'float16' = 'float32'): { ws: FakeSocket; worker: RemoteWorker; slab: ReturnType<typeof createSharedSlab>; violations: string[] } {
  const w = welcomed(gradDType);
  w.ws.frame({ type: 'ready', threads: 1 });
  w.ws.frame({ type: 'probe_result', digest: PROBE_DIGEST });
  w.ws.writes = [];
  w.ws.sent = [];
  return w;
}

describe('RemoteWorker join probe', () => {
  it('sends the probe at once, and takes the worker only once it is Ready and its digest is the run\'s bits', () => {
    const { ws, worker, ready, violations } = welcomed();
    expect(Array.from(ws.sent[0])).toEqual([PROBE_FRAME]);
    ws.frame({ type: 'ready', threads: 1 });
    expect(ready).toEqual([]);
    expect(worker.state).toBe('starting');
    ws.frame({ type: 'probe_result', digest: PROBE_DIGEST });
    expect(ready).toEqual([worker]);
    expect(worker.state).toBe('active');
    expect(violations).toEqual([]);
  });

  it('refuses a worker whose probe gradient differs, saying what each computes with and what to do', () => {
    const { ws, worker, ready, violations } = welcomed();
    ws.frame({ type: 'probe_result', digest: new Uint8Array(32).fill(8) });
    ws.frame({ type: 'ready', threads: 1 });
    expect(ready).toEqual([]);
    expect(worker.state).toBe('closed');
    expect(ws.closed?.code).toBe(4008);
    expect(violations).toEqual(['handshake_exactness']);
    const reject = decode(ws.sent.at(-1)!);
    expect(reject).toMatchObject({ type: 'reject', reason: 6 });
    expect(reject.type === 'reject' && reject.message).toMatch(/not this run's bits .*the cpu backend.*the wasm backend.*--backend/);
  });
});

// Step 5: two microbatches of 2 samples, one subtree [0,2) of 4 examples.
const work: StepWork = { globalStep: 5, epoch: 0, microbatches: 2, microbatch: 2, perm: Uint32Array.from([0, 1, 2, 3]), start: 0, count: 4 };
const values = Float32Array.from({ length: WIDTH }, (_, i) => i + 0.25);
const part = (from: number, to: number, lossSum = 3.5) =>
  ({ type: 'result', step: 5, lo: 0, hi: 2, examples: 4, lossSum, offset: from, gradient: values.slice(from, to), computeMs: 1 }) as const;

describe('RemoteWorker results in parts', () => {
  it('assembles a subtree from parts in any order and resolves once every value has come', async () => {
    const { ws, worker, slab, violations } = setUp();
    let done = false;
    const result = worker.compute(work, 0, 2).then((r) => ((done = true), r));
    await sentAssignment();
    ws.frame(part(6, WIDTH));
    await Promise.resolve();
    expect(done).toBe(false);
    ws.frame(part(0, 6));
    expect((await result).nodes).toEqual([[0, 2]]);
    expect(Array.from(slot(slab, 0))).toEqual(Array.from(values));
    expect([slab.loss[0], slab.count[0]]).toEqual([3.5, 4]);
    expect(violations).toEqual([]);
    expect(ws.closed).toBeUndefined();
  });

  it('writes the convolutions\' weights and the assignment together, then the dense layers\' weights', async () => {
    const { ws, worker } = setUp();
    worker.compute(work, 0, 2).catch(() => undefined);
    await sentAssignment();
    expect(ws.writes.map((w) => w.length)).toEqual([2, 1]);
    const [[conv, assignment], [dense]] = ws.writes;
    expect(Array.from(conv)).toEqual([CONV_FRAME, 5]);
    expect(decode(assignment)).toMatchObject({ type: 'assignment', step: 5, lo: 0, hi: 2, weightsVersion: 5 });
    expect(Array.from(dense)).toEqual([DENSE_FRAME, 5]);
  });

  it('ignores a part that overlaps one already taken (the first value won)', async () => {
    const { ws, worker, slab, violations } = setUp();
    const result = worker.compute(work, 0, 2);
    await sentAssignment();
    ws.frame(part(0, 6));
    ws.frame({ ...part(0, WIDTH), gradient: new Float32Array(WIDTH).fill(99) });
    ws.frame(part(6, WIDTH));
    await result;
    expect(Array.from(slot(slab, 0))).toEqual(Array.from(values));
    expect(violations).toEqual(['duplicate_result']);
  });

  it('disconnects a worker whose parts disagree on the loss, or are not the agreed parts', async () => {
    const a = setUp();
    a.worker.compute(work, 0, 2).catch(() => undefined);
    await sentAssignment();
    a.ws.frame(part(0, 6));
    a.ws.frame(part(6, WIDTH, 4.5));
    expect(a.violations).toEqual(['inconsistent_result']);
    expect(a.ws.closed?.reason).toMatch(/disagree on its loss/);

    const b = setUp();
    b.worker.compute(work, 0, 2).catch(() => undefined);
    await sentAssignment();
    b.ws.frame({ ...part(0, 6), offset: 6 });
    expect(b.violations).toEqual(['bad_result_shape']);
    expect(b.ws.closed?.reason).toMatch(/\[6,12\) are neither all 10 values nor the part before or from 6/);

    const c = setUp();
    c.worker.compute(work, 0, 2).catch(() => undefined);
    await sentAssignment();
    c.ws.frame(part(0, 3)); // a part, but not one of the two agreed
    expect(c.violations).toEqual(['bad_result_shape']);
  });

  it('disconnects a worker that sends a float16 result in a float32 run, before it reaches the slab', async () => {
    const { ws, worker, slab, violations } = setUp();
    const result = worker.compute(work, 0, 2);
    await sentAssignment();
    ws.emit('message', Buffer.from(encode(part(0, WIDTH), 'float16')), true);
    await expect(result).rejects.toThrow(/float16, but the run's gradients are float32/);
    expect(violations).toEqual(['bad_result_dtype']);
    expect(ws.closed?.code).toBe(4004);
    expect(slot(slab, 0).every((v) => v === 0)).toBe(true);
  });

  it('and one that sends a float32 result in a float16 run', async () => {
    const { ws, worker, slab, violations } = setUp('float16');
    const result = worker.compute(work, 0, 2);
    await sentAssignment();
    ws.emit('message', Buffer.from(encode({ ...part(0, WIDTH), hi: 1, examples: 2 }, 'float32')), true);
    await expect(result).rejects.toThrow(/float32, but the run's gradients are float16/);
    expect(violations).toEqual(['bad_result_dtype']);
    expect(ws.closed?.code).toBe(4004);
    expect(slot(slab, 0).every((v) => v === 0)).toBe(true);
  });

  it('calls onDense once every dense part is in, and computing() stays true until the rest is', async () => {
    const { ws, worker } = setUp();
    let dense = 0;
    const result = worker.compute(work, 0, 2, { onDense: () => dense++ });
    await sentAssignment();
    expect(worker.computing()).toBe(true);
    ws.frame(part(6, WIDTH));
    expect(dense).toBe(1);
    expect(worker.computing()).toBe(true);
    ws.frame(part(0, 6));
    await result;
    expect(dense).toBe(1);
    expect(worker.computing()).toBe(false);
  });
});

describe('RemoteWorker dense weights sent ahead', () => {
  it('sends them once; a range of the older step then gets its own dense weights before the assignment', async () => {
    const { ws, worker } = setUp();
    const done = worker.compute(work, 0, 2);
    await sentAssignment();
    ws.frame(part(6, WIDTH));
    worker.publish(6, 'dense');
    worker.publish(6, 'dense'); // once is enough
    ws.frame(part(0, 6));
    await done;
    const firstStep = ws.writes.length;
    expect(ws.writes.slice(firstStep - 1).map((w) => w.map((f) => Array.from(f.subarray(0, 2))))).toEqual([[[DENSE_FRAME, 6]]]);

    // Someone else failed: a range of step 5 again. The worker holds version 6's dense weights.
    worker.compute(work, 0, 2).catch(() => undefined);
    await sentAssignment();
    const again = ws.writes.slice(firstStep);
    expect(again).toHaveLength(1); // one write: no convolutions' weights (unchanged), nothing after
    const [denseFive, assignment] = again[0];
    expect(Array.from(denseFive)).toEqual([DENSE_FRAME, 5]);
    expect(decode(assignment)).toMatchObject({ type: 'assignment', step: 5 });
  });
});

describe('RemoteWorker steps computed alone (the worker applies the update itself)', () => {
  const work6: StepWork = { ...work, globalStep: 6 };
  const work7: StepWork = { ...work, globalStep: 7 };
  const whole = (step: number) => ({ ...part(0, WIDTH), step });
  const head = (f: Uint8Array): unknown => (f[0] === CONV_FRAME || f[0] === DENSE_FRAME || f[0] === OPTIMIZER_FRAME ? Array.from(f) : decode(f));

  it('sends the optimizer state and all the weights before the assignment, and the next step\'s assignment with it', async () => {
    const { ws, worker, violations } = setUp();
    const five = worker.compute(work, 0, 2, { apply: { lr: 0.01 }, next: { work: work6, lr: 0.02 } });
    await sentAssignment();
    expect(ws.writes).toHaveLength(1); // one write, nothing after the assignment: it would void it
    const [write] = ws.writes.map((w) => w.map(head));
    expect(write.slice(0, 3)).toEqual([
      [OPTIMIZER_FRAME, 5],
      [DENSE_FRAME, 5],
      [CONV_FRAME, 5],
    ]);
    expect(write[3]).toMatchObject({ type: 'assignment', step: 5, weightsVersion: 5, apply: true, lr: 0.01 });
    expect(write[4]).toMatchObject({ type: 'assignment', step: 6, weightsVersion: 6, lo: 0, hi: 2, apply: true, lr: 0.02 });
    expect(worker.preassigned(6)).toBe(true);

    ws.frame(whole(5));
    expect((await five).nodes).toEqual([[0, 2]]);
    // Step 6's result may come before the trainer starts step 6: it is kept for it.
    ws.frame(whole(6));
    const six = await worker.compute(work6, 0, 2, { apply: { lr: 0.02 }, next: { work: work7, lr: 0.03 } });
    expect(six.nodes).toEqual([[0, 2]]);
    // Step 6 went before; only step 7's assignment goes now, with no weights: the worker makes them.
    expect(ws.writes.slice(1).map((w) => w.map(head))).toEqual([[expect.objectContaining({ type: 'assignment', step: 7, weightsVersion: 7, apply: true, lr: 0.03 })]]);
    expect(worker.microbatchesDone).toBe(4);
    expect(violations).toEqual([]);
  });

  it('a cancelled step takes the step sent ahead with it; the next assignment sends everything again, dense weights first', async () => {
    const { ws, worker } = setUp();
    const five = worker.compute(work, 0, 2, { apply: { lr: 0.01 }, next: { work: work6, lr: 0.02 } });
    await sentAssignment();
    worker.cancel(5);
    await expect(five).rejects.toThrow(/cancelled/);
    expect(worker.preassigned(6)).toBe(false);

    // The same range again, not applied here (the trainer's reassignment): the worker may hold
    // version 5 or 6 of anything, so both parts go, the dense one first.
    worker.compute(work, 0, 2).catch(() => undefined);
    await sentAssignment();
    expect(ws.writes.slice(1).map((w) => w.map(head))).toEqual([[[DENSE_FRAME, 5], [CONV_FRAME, 5], expect.objectContaining({ type: 'assignment', step: 5, apply: false })]]);
    ws.frame(whole(5));
    await sentAssignment();
    // Alone again at step 6: its optimizer state is unknown, so it goes again.
    worker.compute(work6, 0, 2, { apply: { lr: 0.02 } }).catch(() => undefined);
    await sentAssignment();
    expect(ws.writes.slice(2).map((w) => w.map(head))[0].slice(0, 3)).toEqual([
      [OPTIMIZER_FRAME, 6],
      [DENSE_FRAME, 6],
      [CONV_FRAME, 6],
    ]);
  });

  it('results for a step sent ahead but cancelled are ignored as stale', async () => {
    const { ws, worker, violations } = setUp();
    worker.compute(work, 0, 2, { apply: { lr: 0.01 }, next: { work: work6, lr: 0.02 } }).catch(() => undefined);
    await sentAssignment();
    worker.cancel(5);
    ws.frame(whole(5));
    ws.frame(whole(6));
    expect(violations).toEqual(['stale_result', 'stale_result']);
    expect(ws.closed).toBeUndefined();
  });

  it('a worker that leaves fails the step it computes; the step sent ahead goes with it, unhandled by no one', async () => {
    const { ws, worker } = setUp();
    const five = worker.compute(work, 0, 2, { apply: { lr: 0.01 }, next: { work: work6, lr: 0.02 } });
    await sentAssignment();
    ws.emit('close', 1006, Buffer.from(''));
    await expect(five).rejects.toThrow(/left during step 5/);
    expect(worker.preassigned(6)).toBe(false);
  });
});

describe('RemoteWorker sharded steps planned ahead', () => {
  const shardedWork = (step: number): StepWork => ({ ...work, globalStep: step });
  const w = { plan: 3, peersFrame: Uint8Array.of(0x9e), shard: [0, WIDTH] as [number, number], shards: 1, bounds: [0, 2], lr: 0.01 };
  const digest = new Uint8Array(16);
  const head = (f: Uint8Array): unknown => (f[0] === CONV_FRAME || f[0] === DENSE_FRAME || f[0] === OPTIMIZER_FRAME || f[0] === 0x9e ? f[0] : decode(f));

  it('the step planned with the one before goes out alone, and is answered after it', async () => {
    const { ws, worker, violations } = setUp();
    const five = worker.computeSharded(shardedWork(5), 0, 2, w);
    const six = worker.computeSharded(shardedWork(6), 0, 2, w, true);
    // Step 5: the plan, the optimizer state, the weights, the assignment; step 6: its assignment only.
    expect(ws.sent.map(head)).toEqual([0x9e, OPTIMIZER_FRAME, DENSE_FRAME, CONV_FRAME, expect.objectContaining({ type: 'assignment', step: 5, sharded: true }), expect.objectContaining({ type: 'assignment', step: 6, weightsVersion: 6, sharded: true })]);
    for (const step of [5, 6]) {
      ws.frame({ type: 'range_done', step, nodes: [{ lo: 0, hi: 2, examples: 4, lossSum: 1 }], computeMs: 1, sumsDigests: [digest], weightsDigests: [digest] });
      ws.frame({ type: 'shard_update', step, offset: 0, mean: new Float32Array(WIDTH), receivedDigests: [digest] });
    }
    expect((await five.update).step).toBe(5);
    worker.finishSharded(6, 3);
    expect((await six.done).step).toBe(6);
    worker.finishSharded(7, 3);
    expect(worker.microbatchesDone).toBe(4);
    expect(violations).toEqual([]);
  });

  it('giving a step up gives up the one planned with it: an Abort for each', async () => {
    const { ws, worker } = setUp();
    const five = worker.computeSharded(shardedWork(5), 0, 2, w);
    const six = worker.computeSharded(shardedWork(6), 0, 2, w, true);
    ws.sent = [];
    worker.abortSharded(5, 'a peer left');
    await expect(five.done).rejects.toThrow(/aborted/);
    await expect(six.update).rejects.toThrow(/sharded step 6 aborted/);
    expect(ws.sent.map(head)).toEqual([{ type: 'abort', step: 5 }, { type: 'abort', step: 6 }]);
  });

  it('a RangeDone or ShardUpdate without a digest for each subtree and shard: close 4004', () => {
    for (const msg of [
      { type: 'range_done' as const, step: 5, nodes: [{ lo: 0, hi: 2, examples: 4, lossSum: 1 }], computeMs: 1, sumsDigests: [], weightsDigests: [digest] },
      { type: 'range_done' as const, step: 5, nodes: [{ lo: 0, hi: 2, examples: 4, lossSum: 1 }], computeMs: 1, sumsDigests: [digest], weightsDigests: [digest, digest] },
      { type: 'shard_update' as const, step: 5, offset: 0, mean: new Float32Array(WIDTH), receivedDigests: [digest, digest] },
    ]) {
      const { ws, worker, violations } = setUp();
      void worker.computeSharded(shardedWork(5), 0, 2, w);
      ws.frame(msg);
      expect(ws.closed?.code).toBe(4004);
      expect(violations).toEqual([msg.type === 'range_done' ? 'bad_range_done' : 'bad_shard_update']);
    }
  });

  it('weights made with its peers: a sharded step of the same plan computes on them; a plain step, or a new plan, gets the coordinator\'s', async () => {
    const { ws, worker } = setUp();
    const five = worker.computeSharded(shardedWork(5), 0, 2, w);
    expect(five.fromPeers).toBe(false); // the coordinator sent version 5
    ws.frame({ type: 'range_done', step: 5, nodes: [{ lo: 0, hi: 2, examples: 4, lossSum: 1 }], computeMs: 1, sumsDigests: [digest], weightsDigests: [digest] });
    ws.frame({ type: 'shard_update', step: 5, offset: 0, mean: new Float32Array(WIDTH), receivedDigests: [digest] });
    await five.update;
    worker.finishSharded(6, 3);
    ws.sent = [];
    const six = worker.computeSharded(shardedWork(6), 0, 2, w);
    expect(six.fromPeers).toBe(true);
    expect(ws.sent.map(head)).toEqual([expect.objectContaining({ type: 'assignment', step: 6 })]);
    worker.abortSharded(6, 'test');
    worker.finishSharded(6, 3); // as if it had made version 6 after all
    ws.sent = [];
    const other = worker.computeSharded(shardedWork(6), 0, 2, { ...w, plan: 4, peersFrame: Uint8Array.of(0x9e) });
    expect(other.fromPeers).toBe(false);
    expect(ws.sent.map(head)).toEqual([0x9e, OPTIMIZER_FRAME, DENSE_FRAME, CONV_FRAME, expect.objectContaining({ type: 'assignment', step: 6 })]);
  });

  it('a plain step after a sharded one sends the coordinator\'s weights of its version', async () => {
    const { ws, worker } = setUp();
    const five = worker.computeSharded(shardedWork(5), 0, 2, w);
    ws.frame({ type: 'range_done', step: 5, nodes: [{ lo: 0, hi: 2, examples: 4, lossSum: 1 }], computeMs: 1, sumsDigests: [digest], weightsDigests: [digest] });
    ws.frame({ type: 'shard_update', step: 5, offset: 0, mean: new Float32Array(WIDTH), receivedDigests: [digest] });
    await five.update;
    worker.finishSharded(6, 3);
    ws.sent = [];
    void worker.compute(shardedWork(6), 0, 2);
    await sentAssignment();
    // As any plain assignment: the convolutions' weights, the assignment, the dense layers'.
    expect(ws.sent.map(head)).toEqual([CONV_FRAME, expect.objectContaining({ type: 'assignment', step: 6, sharded: false }), DENSE_FRAME]);
  });

  it('a step cannot be planned ahead of nothing', async () => {
    const { worker } = setUp();
    await expect(worker.computeSharded(shardedWork(6), 0, 2, w, true).done).rejects.toThrow(/without the step before/);
  });
});
