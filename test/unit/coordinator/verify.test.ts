// The checks of a sharded step that need no recomputation (verify.ts, shardedFaults): who a
// disagreement between the digests points at. Recomputation itself is covered with real
// processes (test/integration/sharded.test.ts) and at the protocol (test/conformance).
import { describe, expect, it } from 'vitest';
import { shardedFaults, type ShardedAccount } from '../../../src/coordinator/verify.js';
import type { TreeNode } from '../../../src/reduce/ordered-sum.js';
import type { RangeTask } from '../../../src/compute/types.js';

const d = (b: number): Uint8Array => new Uint8Array(16).fill(b);
// Ranges of one leaf each: the coordinator's threads [0,1), then owner j [j+1,j+2), which owns
// shard [5j, 5j+5). Digest bytes: 10·(node+1) + shard for sums; 100 + shard for weights.
const sums = (node: number, shard: number): Uint8Array => d(10 * (node + 1) + shard);
const NAMES = ['worker-A', 'worker-B', 'worker-C'];

function honest(owners = 2): ShardedAccount {
  const nodes: TreeNode[] = Array.from({ length: owners + 1 }, (_, i) => [i, i + 1]);
  const shards = Array.from({ length: owners }, (_, k) => [5 * k, 5 * k + 5] as const);
  const owner = (j: number) => ({
    id: NAMES[j],
    task: {} as RangeTask,
    done: { type: 'range_done' as const, step: 7, nodes: [{ lo: j + 1, hi: j + 2, examples: 4, lossSum: 1 }], computeMs: 1, sumsDigests: shards.map((_, k) => sums(j + 1, k)), weightsDigests: shards.map((_, k) => d(100 + k)) },
    update: { type: 'shard_update' as const, step: 7, offset: j * 5, mean: new Float32Array(5), receivedDigests: nodes.map((_, n) => sums(n, j)) },
    fromPeers: true,
  });
  return {
    step: 7,
    microbatches: owners + 1,
    examples: 4 * (owners + 1),
    shards,
    owners: shards.map((_, j) => owner(j)),
    local: { nodes: [[0, 1]], sumsDigests: shards.map((_, k) => sums(0, k)) },
    weightsDigests: shards.map((_, k) => d(100 + k)),
    nodes,
  };
}

describe('shardedFaults', () => {
  it('finds nothing in an honest account', () => {
    expect(shardedFaults(honest())).toEqual([]);
  });

  it('an owner whose own shard of the weights is not the replica made other values than its update gives', () => {
    const a = honest();
    a.owners[1].done.weightsDigests[1] = d(0);
    a.owners[0].done.weightsDigests[1] = d(0); // it sent the same to A: A is not blamed for it
    expect(shardedFaults(a)).toEqual([{ owner: 1, reason: 'made weights [5,10) of version 7 other than its update gives' }]);
  });

  it("a worker that says it got other values than the owner's: both, as nothing tells which account is false", () => {
    const a = honest();
    a.owners[0].done.weightsDigests[1] = d(0);
    const faults = shardedFaults(a);
    expect(faults.map((f) => f.owner).sort()).toEqual([0, 1]);
    expect(faults.find((f) => f.owner === 0)!.reason).toBe('and worker-B disagree on the weights [5,10) of version 7 that worker-B made');
  });

  it('an owner that two peers contradict about the weights it sent them: that owner alone', () => {
    const a = honest(3);
    a.owners[0].done.weightsDigests[2] = d(0);
    a.owners[1].done.weightsDigests[2] = d(1);
    expect(shardedFaults(a)).toEqual([{ owner: 2, reason: 'is contradicted by worker-A and worker-B about the weights [10,15) of version 7 that it made' }]);
  });

  it('a sender that two owners contradict about the sums it sent them: that sender alone', () => {
    const a = honest(3);
    a.owners[1].update.receivedDigests[1] = d(0); // A's subtree [1,2), as B and C say they got it
    a.owners[2].update.receivedDigests[1] = d(0);
    expect(shardedFaults(a)).toEqual([{ owner: 0, reason: 'is contradicted by worker-B and worker-C about the sums of [1,2) of step 7 that it sent' }]);
  });

  it('weights other than the coordinator sent: that worker alone', () => {
    const a = honest();
    a.owners[0].fromPeers = false;
    a.owners[0].done.weightsDigests[1] = d(0);
    expect(shardedFaults(a)).toEqual([{ owner: 0, reason: 'computed step 7 with weights [5,10) of version 7 other than the coordinator sent it' }]);
  });

  it("an owner that reduced other sums than the coordinator's threads sent it: that owner", () => {
    const a = honest();
    a.owners[1].update.receivedDigests[0] = d(0);
    expect(shardedFaults(a)).toEqual([{ owner: 1, reason: "reduced the sums of [0,1) of step 7 other than the coordinator's threads sent it" }]);
  });

  it('an owner that reduced other sums than a peer says it sent: both', () => {
    const a = honest();
    a.owners[1].update.receivedDigests[1] = d(0); // A's subtree [1,2), as B says it got it
    const faults = shardedFaults(a);
    expect(faults.map((f) => f.owner).sort()).toEqual([0, 1]);
    expect(faults.find((f) => f.owner === 1)!.reason).toBe('and worker-A disagree on the sums of [1,2) of step 7 that worker-A sent');
  });

  it('an owner that reduced other own sums than it reported: that owner', () => {
    const a = honest();
    a.owners[0].update.receivedDigests[1] = d(0);
    expect(shardedFaults(a)).toEqual([{ owner: 0, reason: 'reduced the sums of [1,2) of step 7 other than it reported' }]);
  });
});
