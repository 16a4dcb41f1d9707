// Entry point of a compute thread (run by piscina). Initialises its own tfjs backend once, then
// serves gradient and evaluation tasks, reading pixels and weights from shared memory and leaving
// gradient sums in the shared slab.
import { workerData } from 'node:worker_threads';
import { initBackend } from '../backend/select.js';
import { denseOffset, modelSpec } from '../model/architectures.js';
import { coverNodes, leaves, reduceInPlace, slot, wholeSlot, type Slab, type SlotPart } from '../reduce/ordered-sum.js';
import { roundToFloat16 } from '../reduce/float16.js';
import { GradientComputer, type MicrobatchInput, type PreparedMicrobatch } from './gradients.js';
import type { EvalReply, EvalTask, GradientReply, GradientTask, ThreadInit, ThreadReply, ThreadTask } from './types.js';

const init = workerData as ThreadInit;
const spec = modelSpec(init.arch, init.activation);
const ready: Promise<GradientComputer> = (async () => {
  await initBackend(init.backend);
  return new GradientComputer(spec, init.trainImages, init.trainLabels, init.seed, init.distort);
})();
const denseFrom = denseOffset(spec);

const slab: Slab = {
  width: init.weights.length,
  slots: init.slabSlots,
  grads: init.slabGrads,
  loss: init.slabLoss,
  count: init.slabCount,
};

/** Blocks until the dense layers' weights of `version` (or newer) are in place. */
function awaitDense(version: number): void {
  for (;;) {
    const have = Atomics.load(init.denseVersion, 0);
    if (have >= version) return;
    Atomics.wait(init.denseVersion, 0, have, 1000);
  }
}

function onGradientTask(computer: GradientComputer, task: GradientTask): GradientReply {
  const started = performance.now();
  computer.setWeights(init.weights, task.weightsVersion, task.awaitDense ? () => awaitDense(task.weightsVersion) : undefined);
  const nodes = task.leavesOnly ? leaves(task.lo, task.hi) : coverNodes(task.microbatches, task.lo, task.hi);
  const sum = (part: SlotPart): void => {
    for (const [lo, hi] of nodes) reduceInPlace(slab, lo, hi, (a, b) => b - a === 1, part);
  };
  // With `early`: the dense part of the sums goes out before the last convolutions' backward.
  const onDense = (leaf: number, size: number) => (loss: number): void => {
    slab.loss[leaf] = loss;
    slab.count[leaf] = size;
    sum({ from: denseFrom, to: slab.width, totals: true });
    Atomics.store(init.signals, task.lo, 1);
    Atomics.notify(init.signals, task.lo);
  };
  const inputs: MicrobatchInput[] = [];
  for (let leaf = task.lo, offset = 0; leaf < task.hi; offset += task.sizes[leaf - task.lo], leaf++) {
    const size = task.sizes[leaf - task.lo];
    inputs.push({ samples: task.samples.subarray(offset, offset + size), positions: task.positions.subarray(offset, offset + size), epoch: task.epoch });
  }
  // Remote workers: the next microbatches' convolutions while the dense weights are still on
  // their way, and no more. With all eight of a 256 batch run ahead, the bench had a remote
  // worker 24% slower than a local thread at that batch, where it had been level.
  const ahead: PreparedMicrobatch[] = [];
  const denseMissing = (): boolean => Atomics.load(init.denseVersion, 0) < task.weightsVersion;
  while (task.awaitDense && ahead.length < inputs.length && (ahead.length === 0 || denseMissing())) {
    ahead.push(computer.prepare(inputs[ahead.length], true));
  }
  try {
    for (let leaf = task.lo; leaf < task.hi; leaf++) {
      const size = task.sizes[leaf - task.lo];
      const grad = slot(slab, leaf);
      const last = task.early && leaf === task.hi - 1;
      const prepared = ahead[leaf - task.lo] ?? computer.prepare(inputs[leaf - task.lo], false);
      const loss = computer.finish(prepared, grad, last ? onDense(leaf, size) : undefined);
      if (!last) {
        slab.loss[leaf] = loss;
        slab.count[leaf] = size;
      }
      if (init.gradDType === 'float16') roundToFloat16(grad);
    }
  } finally {
    for (const p of ahead) computer.release(p);
  }
  if (task.early) sum({ from: 0, to: denseFrom, totals: false });
  else if (!task.leavesOnly) sum(wholeSlot(slab));
  return { type: 'gradients', nodes, computeMs: performance.now() - started };
}

function onEvalTask(computer: GradientComputer, task: EvalTask): EvalReply {
  computer.setWeights(init.weights, task.weightsVersion);
  const r = computer.evaluate(init.testImages, init.testLabels, task.from, task.to);
  return { type: 'eval', ...r, count: task.to - task.from };
}

export default async function run(task: ThreadTask): Promise<ThreadReply> {
  const computer = await ready;
  switch (task.type) {
    case 'gradients':
      return onGradientTask(computer, task);
    case 'eval':
      return onEvalTask(computer, task);
    case 'ready':
      return { type: 'ready', backend: init.backend };
    default: {
      const never: never = task;
      throw new Error(`unknown thread task ${JSON.stringify(never)}`);
    }
  }
}
