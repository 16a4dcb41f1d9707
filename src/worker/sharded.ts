// A worker's part in sharded steps (docs/design.md, "Sharded steps"). The worker computes its
// range, sends the partial sums of every other shard straight to that shard's owner, and owns one
// shard itself: once every participant's partial sums of it are in, it completes the fixed tree
// over those values, divides by the step's example count, applies the optimizer to them, and
// sends the new values to every other owner and the mean gradient to the coordinator. The next
// version's shards are gathered as they come, each published in two parts where it holds both
// convolution and dense-layer values: once the convolutions' values and its own shard are in,
// the next step may start (convVersion), as the forward pass begins with the convolutions; the
// dense layers' values (most of the bytes) may still come meanwhile, and the compute waits for
// them (denseVersion) before the dense layers.
//
// One step at a time:  IDLE --sharded Assignment--> WAITING_WEIGHTS (conv shards of v in?)
//   --> COMPUTING (dense shards of v in: digests of the weights) --> SENT (partials out,
//   RangeDone to the coordinator) --> OWN_SHARD_DONE --> IDLE, gathering the shards of v+1.
//   Abort(step), at any point: IDLE, everything of that step and its gathering dropped.
import { encodeTensorFrame } from '../protocol/codec.js';
import type { AssignmentMessage, Message, PeerEntry, PeersMessage, ResultMessage, WeightsMessage } from '../protocol/messages.js';
import { coverNodes, nodeKey, readyNodes, slot, type Slab, type TreeNode } from '../reduce/ordered-sum.js';
import { stepNodes, sumsDigests } from '../reduce/shards.js';
import { shardMean, type Optimizer } from '../optim/optimizer.js';
import { announceVersion, letGoWaits, versionInPlace, type DenseFlag } from '../compute/dense-flag.js';
import type { EarlyDense, RangeResult } from '../compute/range.js';
import type { RangeTask } from '../compute/types.js';
import { valuesDigest } from '../model/weights.js';

/**
 * A test hook, for the tests that prove sharded steps are checked (test/integration/sharded.test.ts):
 * LENET_TEST_CORRUPT_SHARDED=WHAT:N perturbs one value in every Nth sharded step of WHAT: `sums`,
 * the partial sums it sends its peers (and reports); `mean`, its shard's mean gradient it reports
 * to the coordinator; `weights`, its shard's new values it sends its peers. Never set otherwise.
 */
const [CORRUPT_WHAT, CORRUPT_EVERY] = ((): [string, number] => {
  const [what = '', every = '0'] = (process.env.LENET_TEST_CORRUPT_SHARDED ?? '').split(':');
  return [what, Number(every)];
})();

/** An assignment with its samples and their epoch positions, as the worker derived them. */
export type AssignedRange = AssignmentMessage & Pick<RangeTask, 'samples' | 'positions'>;

/** What of the worker's session a sharded step reads and writes. */
export interface ShardedSession {
  slab: Slab;
  weights: Float32Array;
  mean: Float32Array;
  /** The newest version whose convolutions' weights are in `weights`. */
  convVersion: number;
  /** The same for the dense layers' weights (versionInPlace), shared with the threads. */
  denseVersion: DenseFlag;
  optimizer: Optimizer | undefined;
  optimizerVersion: number;
  /** Where the dense layers' parameters start (denseOffset): their sums are final first. */
  denseFrom: number;
}

export interface ShardedIo {
  toCoordinator(msg: Message): void;
  toPeer(url: string, frame: Uint8Array): void;
  /** Everything sent so far, to peers and the coordinator, has left this process's buffers. */
  flushed(): Promise<void>;
  log(msg: string): void;
}

interface Current {
  a: AssignedRange;
  own: PeerEntry;
  others: PeerEntry[];
  /** Every partial sum of the step; `arrived`: those of them in the slab for the own shard. */
  expected: Map<string, TreeNode>;
  arrived: Set<string>;
  published: boolean;
  /** This step's value of the test hook above: the one to corrupt, if any. */
  corrupt: string;
}

/**
 * A shard as its owner publishes it: in one part, or two where it holds both convolution and
 * dense-layer values, the convolutions' first (the next step starts with them).
 */
function publishedParts(p: PeerEntry, denseFrom: number): [from: number, to: number][] {
  return p.from < denseFrom && denseFrom < p.to ? [[p.from, denseFrom], [denseFrom, p.to]] : [[p.from, p.to]];
}

/** The version a step makes, as its shards' parts come from their owners. */
interface Gathering {
  /** The step making it; its version is `step`'s weights version + 1. */
  step: number;
  version: number;
  /** Every part to come, by where it starts, with its end and its owner. */
  parts: Map<number, { to: number; owner: number }>;
  /** The parts in (the own shard's once made). */
  have: Set<number>;
  /** The parts the next step needs before it starts: the convolutions', and this worker's own (its optimizer state moves with them). */
  first: number[];
}

export class ShardedSteps {
  private plan: PeersMessage | undefined;
  private current: Current | undefined;
  /**
   * The versions being gathered, by version: the one this step makes, and the one it computes
   * with while that one's dense layers' shards still come. Every shard of v is in before any of
   * v+1 can come (those need this worker's sums, computed with v).
   */
  private readonly gathering = new Map<number, Gathering>();
  /** Partial sums of the own shard that came before their step's assignment. */
  private readonly early = new Map<number, ResultMessage[]>();
  /** Steps up to this one were aborted by the coordinator. */
  private abortedUpTo = -1;
  /** The last step whose own shard was reduced here: its partial sums are all in. */
  private reducedUpTo = -1;
  private waiters: (() => void)[] = [];
  private stepsRun = 0;

  constructor(
    private readonly s: ShardedSession,
    private readonly workerId: number,
    private readonly io: ShardedIo,
  ) {}

  setPlan(msg: PeersMessage): void {
    if (msg.peers.at(-1)?.to !== this.s.weights.length) throw new Error(`peers: shards end at ${msg.peers.at(-1)?.to}, the model has ${this.s.weights.length} parameters`);
    this.plan = msg;
  }

  /**
   * The coordinator gave up on `step`: forget it (it will be done again, the plain way). A
   * computation of it that waits for dense layers' shards that will not come is let go on (its
   * result is dropped); denseVersion keeps saying which version is in place, so the weights the
   * coordinator sends next (perhaps an older version, the dense layers' first) are waited for as
   * ever by the computations that begin after this.
   */
  abort(step: number): void {
    this.abortedUpTo = Math.max(this.abortedUpTo, step);
    const c = this.current;
    if (c && c.a.step <= step) {
      this.current = undefined;
      letGoWaits(this.s.denseVersion);
    }
    for (const g of [...this.gathering.values()]) if (g.step <= step) this.gathering.delete(g.version);
    for (const s of [...this.early.keys()]) if (s <= step) this.early.delete(s);
    this.wake();
  }

  /** Weights arrived from the coordinator: a step waiting for its version may start. */
  weightsChanged(): void {
    this.wake();
  }

  /**
   * Runs one sharded assignment: waits for its weights, computes, sends, reduces the own shard.
   * The partial sums of shards that hold only dense-layer values go to their owners as soon as
   * those values are final, while the convolutions' backward pass still runs (`compute`'s early
   * hand-over); the others' once the range is done.
   */
  async run(a: AssignedRange, compute: (task: RangeTask, early?: EarlyDense) => Promise<RangeResult>): Promise<void> {
    const plan = this.plan;
    if (!plan || plan.plan !== a.plan) throw new Error(`sharded step ${a.step} follows plan ${a.plan}, but this worker has ${plan ? `plan ${plan.plan}` : 'none'}`);
    const own = plan.peers.find((p) => p.workerId === this.workerId);
    if (!own) throw new Error(`sharded step ${a.step}: plan ${a.plan} gives this worker no shard`);
    const v = a.weightsVersion;
    if (!(await this.weightsOf(v, a.step, 'start'))) return;
    const s = this.s;
    if (!s.optimizer || s.optimizerVersion !== v) throw new Error(`sharded step ${a.step} needs the optimizer state of version ${v}, have ${s.optimizerVersion}`);
    const expected = new Map(stepNodes(a.microbatches, a.bounds).map((n) => [nodeKey(n[0], n[1]), n] as const));
    const corrupt = CORRUPT_EVERY > 0 && ++this.stepsRun % CORRUPT_EVERY === 0 ? CORRUPT_WHAT : '';
    const current: Current = { a, own, others: plan.peers.filter((p) => p !== own), expected, arrived: new Set(), published: false, corrupt };
    this.current = current;
    // The shards of v+1 may come from now on (from owners whose sums are complete first).
    const parts = new Map(plan.peers.flatMap((p) => publishedParts(p, s.denseFrom).map(([from, to]) => [from, { to, owner: p.workerId }] as const)));
    const first = [...parts].filter(([from, { owner }]) => from < s.denseFrom || owner === own.workerId).map(([from]) => from);
    this.gathering.set(v + 1, { step: a.step, version: v + 1, parts, have: new Set(), first });
    // What it computes with, shard by shard, for the coordinator to compare with its replica:
    // taken the moment version v is whole here (a microtask of that moment, so before any shard
    // of v+1 can come: those need this worker's sums of this step).
    const weightsDigests = this.weightsOf(v, a.step, 'whole').then((whole) => (whole ? plan.peers.map((p) => valuesDigest(s.weights.subarray(p.from, p.to))) : undefined));
    // What this worker sent last (its shard's new values, which its peers need to start this step)
    // goes out before a computation on the main thread holds the event loop.
    await this.io.flushed();
    if (this.current !== current) return; // aborted meanwhile
    for (const msg of this.early.get(a.step) ?? []) this.onPartial(msg);
    this.early.delete(a.step);
    const mine = coverNodes(a.microbatches, a.lo, a.hi);
    const sendTo = (peers: PeerEntry[]): void => {
      for (const p of peers) {
        for (const [lo, hi] of mine) {
          const msg: ResultMessage = { type: 'result', step: a.step, lo, hi, examples: s.slab.count[lo], lossSum: s.slab.loss[lo], offset: p.from, gradient: slot(s.slab, lo).subarray(p.from, p.to), computeMs: 0 };
          this.io.toPeer(p.url, encodeTensorFrame(msg, 'float32'));
        }
      }
    };
    const dense = current.others.filter((p) => p.from >= s.denseFrom);
    const rest = current.others.filter((p) => p.from < s.denseFrom);
    const early: EarlyDense | undefined = dense.length > 0 ? { split: s.denseFrom, onDense: () => this.current === current && sendTo(dense) } : undefined;
    const started = performance.now();
    const result = await compute({ ...a, leavesOnly: false }, early);
    // The compute waited for the dense layers' shards, so the digests are taken by now.
    const digests = await weightsDigests;
    if (this.current !== current || !digests) return; // aborted meanwhile
    if (corrupt === 'sums') slot(s.slab, mine[0][0])[0] += 1e-3; // value 0: a convolution's, sent below
    sendTo(rest);
    const nodes = mine.map(([lo, hi]) => ({ lo, hi, examples: s.slab.count[lo], lossSum: s.slab.loss[lo] }));
    // What it sent each owner (and keeps of its own shard), node by node, shard by shard.
    const sums = sumsDigests(s.slab, mine, plan.peers.map((p) => [p.from, p.to] as const));
    this.io.toCoordinator({ type: 'range_done', step: a.step, nodes, computeMs: Math.max(result.computeMs, performance.now() - started), sumsDigests: sums, weightsDigests: digests });
    for (const [lo, hi] of mine) current.arrived.add(nodeKey(lo, hi));
    this.maybeReduce(current);
  }

  /** A partial sum of the own shard, from a peer or from the coordinator's threads. */
  onPartial(msg: ResultMessage): void {
    if (msg.step <= this.abortedUpTo || msg.step <= this.reducedUpTo) return;
    const c = this.current;
    if (!c || msg.step > c.a.step) {
      const list = this.early.get(msg.step) ?? [];
      list.push(msg);
      this.early.set(msg.step, list);
      return;
    }
    if (msg.step < c.a.step) return; // a step already done here
    const key = nodeKey(msg.lo, msg.hi);
    const { from, to } = c.own;
    const wrong = !c.expected.has(key) ? 'a subtree the step does not have' : c.arrived.has(key) ? 'a subtree already in' : msg.offset !== from || msg.gradient.length !== to - from ? `values [${msg.offset},${msg.offset + msg.gradient.length}) instead of this worker's shard [${from},${to})` : undefined;
    if (wrong) {
      this.io.log(`worker: ignored a partial sum of step ${msg.step} for ${wrong}`);
      return;
    }
    slot(this.s.slab, msg.lo).set(msg.gradient, from);
    c.arrived.add(key);
    this.maybeReduce(c);
  }

  /** A part of an owner's shard of the next version. */
  onShardWeights(msg: WeightsMessage, fromWorker: number): void {
    const g = this.gathering.get(msg.version);
    const part = g?.parts.get(msg.offset);
    if (!g || !part || part.owner !== fromWorker || fromWorker === this.workerId || part.to !== msg.offset + msg.values.length || g.have.has(msg.offset)) return;
    this.s.weights.set(msg.values, msg.offset);
    this.havePart(g, msg.offset);
  }

  private maybeReduce(c: Current): void {
    if (c.published || c.arrived.size < c.expected.size || this.current !== c) return;
    c.published = true;
    const { a, own } = c;
    const s = this.s;
    const g = this.gathering.get(a.weightsVersion + 1)!;
    this.current = undefined; // what is left of the step is gathering the shards of v+1
    this.reducedUpTo = a.step;
    // The sums it reduces, as they came: the coordinator compares them with what was sent.
    const receivedDigests = [...c.expected.values()].map(([lo]) => valuesDigest(slot(s.slab, lo).subarray(own.from, own.to)));
    const finite = shardMean(s.slab, a.microbatches, readyNodes([...c.expected.values()]), s.mean, own.from, own.to, a.examples);
    // Not finite: the coordinator ends the run as diverged; nothing to make.
    if (finite) {
      s.optimizer!.begin();
      s.optimizer!.update(s.weights, s.mean, a.lr, own.from, own.to);
    }
    const mean = s.mean.subarray(own.from, own.to);
    this.io.toCoordinator({ type: 'shard_update', step: a.step, offset: own.from, mean: c.corrupt === 'mean' ? perturbed(mean) : mean, receivedDigests });
    if (!finite) return;
    // Its shard's new values to every other owner, the convolutions' part first.
    for (const [from, to] of publishedParts(own, s.denseFrom)) {
      const values = s.weights.subarray(from, to);
      const weights: WeightsMessage = { type: 'weights', version: g.version, offset: from, values: c.corrupt === 'weights' && from === own.from ? perturbed(values) : values };
      const frame = encodeTensorFrame(weights, 'float32');
      for (const p of c.others) this.io.toPeer(p.url, frame);
    }
    s.optimizerVersion = g.version;
    for (const [from] of publishedParts(own, s.denseFrom)) this.havePart(g, from);
  }

  /**
   * The part at `from` of the version being gathered is in the weights. Once the parts the next
   * step starts with are all in, it may start; once every part is, the compute may go on into
   * the dense layers.
   */
  private havePart(g: Gathering, from: number): void {
    g.have.add(from);
    const s = this.s;
    if (s.convVersion < g.version && g.first.every((f) => g.have.has(f))) s.convVersion = g.version;
    if (g.have.size === g.parts.size) {
      announceVersion(s.denseVersion, g.version);
      this.gathering.delete(g.version);
    }
    this.wake();
  }

  /**
   * Resolves true once version `v` is here, enough of it to `start` a step (the convolutions'
   * weights) or `whole`; false if `step` is aborted first or the coordinator has moved on.
   */
  private async weightsOf(v: number, step: number, what: 'start' | 'whole'): Promise<boolean> {
    for (;;) {
      if (step <= this.abortedUpTo) return false;
      const s = this.s;
      if (s.convVersion === v && (what === 'start' || versionInPlace(s.denseVersion) === v)) return true;
      if (s.convVersion > v) return false; // the coordinator has moved on
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }
}


/** The test hook's change: a copy with its first value moved. */
function perturbed(values: Float32Array): Float32Array {
  const copy = Float32Array.from(values);
  copy[0] += 1e-3;
  return copy;
}
