// A one-thread worker's compute on its own thread: the sums a pool thread leaves, while the dense
// layers' weights are still arriving, with the event loop served in between.
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../../../src/backend/select.js';
import { GradientComputer } from '../../../src/compute/gradients.js';
import { InlineCompute } from '../../../src/compute/inline.js';
import { newDenseFlag } from '../../../src/compute/dense-flag.js';
import type { RangeTask } from '../../../src/compute/types.js';
import { loadMnist, type Mnist } from '../../../src/data/mnist.js';
import { denseOffset, modelSpec } from '../../../src/model/architectures.js';
import { initWeights } from '../../../src/model/weights.js';
import { coverNodes, createSharedSlab, reduceInPlace, slot } from '../../../src/reduce/ordered-sum.js';

let mnist: Mnist;
beforeAll(async () => {
  mnist = loadMnist({ trainLimit: 256, testLimit: 64 });
  await initBackend('wasm');
});

const spec = modelSpec('lenet5');
const split = denseOffset(spec);
const MICROBATCH = 8;
// Microbatches [1,4) of a 4-microbatch step: two subtrees, [1,2) and [2,4).
const task: RangeTask = {
  weightsVersion: 3,
  epoch: 0,
  microbatches: 4,
  lo: 1,
  hi: 4,
  samples: Uint32Array.from({ length: 3 * MICROBATCH }, (_, i) => (i * 7) % 256),
  positions: Uint32Array.from({ length: 3 * MICROBATCH }, (_, i) => MICROBATCH + i),
  sizes: [MICROBATCH, MICROBATCH, MICROBATCH],
};

/** The sums as the coordinator's reference: one microbatch at a time, then the fixed tree. */
function reference(weights: Float32Array): { grads: Float32Array[]; loss: number[] } {
  const slab = createSharedSlab(spec.size, 4);
  const computer = new GradientComputer(spec, mnist.train.images, mnist.train.labels, 5, true);
  computer.setWeights(weights, 0);
  for (let leaf = task.lo; leaf < task.hi; leaf++) {
    const from = (leaf - task.lo) * MICROBATCH;
    const input = { samples: task.samples.subarray(from, from + MICROBATCH), positions: task.positions.subarray(from, from + MICROBATCH), epoch: 0 };
    slab.loss[leaf] = computer.microbatchGradient(input, slot(slab, leaf));
    slab.count[leaf] = MICROBATCH;
  }
  computer.dispose();
  const nodes = coverNodes(4, task.lo, task.hi);
  for (const [lo, hi] of nodes) reduceInPlace(slab, lo, hi, (a, b) => b - a === 1);
  return { grads: nodes.map(([lo]) => slot(slab, lo).slice()), loss: nodes.map(([lo]) => slab.loss[lo]) };
}

const bits = (a: Float32Array): Uint32Array => new Uint32Array(a.slice().buffer);

describe('InlineCompute', () => {
  it('waits for the dense weights without blocking the event loop, calls onDense before it ends, and leaves the fixed tree\'s sums', async () => {
    const weights = new Float32Array(new SharedArrayBuffer(4 * spec.size));
    const all = initWeights(spec, 2);
    weights.set(all.subarray(0, split)); // the convolutions' part only: the rest is "on its way"
    const denseVersion = newDenseFlag();
    const slab = createSharedSlab(spec.size, 4);
    const empty = new Uint8Array(0);
    const compute = await InlineCompute.start({
      spec,
      backend: 'wasm',
      seed: 5,
      distort: true,
      train: mnist.train,
      test: { images: empty, labels: empty },
      weights,
      slab,
      gradDType: 'float32',
      denseVersion,
    });
    const events: string[] = [];
    let denseAtEarly: Float32Array[] = [];
    const running = compute.computeRange(task, {
      split,
      onDense: (nodes) => {
        events.push('dense');
        denseAtEarly = nodes.map(([lo]) => slot(slab, lo).slice(split));
      },
    });
    // Only a served event loop runs this timer; it delivers the dense weights, as a socket would.
    setTimeout(() => {
      events.push('weights');
      weights.set(all.subarray(split), split);
      Atomics.store(denseVersion, 0, task.weightsVersion);
      Atomics.notify(denseVersion, 0);
    }, 20);
    const result = await running;
    events.push('done');
    await compute.close();

    expect(events).toEqual(['weights', 'dense', 'done']);
    expect(result.nodes).toEqual(coverNodes(4, task.lo, task.hi));
    const want = reference(all);
    result.nodes.forEach(([lo], i) => {
      expect(bits(slot(slab, lo))).toEqual(bits(want.grads[i]));
      expect(slab.loss[lo]).toBe(want.loss[i]);
      // The dense part was already final when onDense ran.
      expect(bits(denseAtEarly[i])).toEqual(bits(want.grads[i].subarray(split)));
    });
  });
});
