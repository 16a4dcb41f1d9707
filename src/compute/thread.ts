// Entry point of a compute thread (run by piscina). Initialises its own tfjs backend once, then
// serves gradient and evaluation tasks from its mailbox (pool.ts), reading pixels and weights
// from shared memory and leaving gradient sums in the shared slab.
import { receiveMessageOnPort, workerData } from 'node:worker_threads';
import { initBackend } from '../backend/select.js';
import { denseOffset, modelSpec } from '../model/architectures.js';
import { reduceInPlace, readyNodes, type Slab } from '../reduce/ordered-sum.js';
import { meanInto, optimizerOver, type Optimizer } from '../optim/optimizer.js';
import { arriveAndWait, giveUp, StepAbandoned } from './barrier.js';
import { awaitVersion, versionInPlace } from './dense-flag.js';
import { GradientComputer } from './gradients.js';
import { GradientTaskRun } from './task.js';
import type { EvalReply, EvalTask, GradientReply, GradientTask, MailboxReply, ServeTask, ServedTask, ShardUpdate, SharedUpdate, ThreadInit, ThreadReply, ThreadTask } from './types.js';

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

/** The coordinator's optimizer, over its own (shared) slots, and this thread's batch means. */
const shared: { update: SharedUpdate; optimizer: Optimizer; mean: Float32Array } | undefined = init.update
  ? { update: init.update, optimizer: optimizerOver({ name: init.update.optimizer, t: 0, slots: init.update.slots }), mean: new Float32Array(init.weights.length) }
  : undefined;

/**
 * Waits until every thread of the step has its sums in the slab and the coordinator has taken
 * the step, then makes this thread's shard of the update in the weights: the tree completed over
 * its parameters, the batch mean, the optimizer; then waits until every thread has made its
 * shard. Shards are disjoint, and the optimizer is elementwise: any split gives the bits of one
 * update. Every thread has finished reading the step's weights and the slab by the first wait,
 * and the next task starts after the second. Tells whether the mean was finite (if not, nothing
 * is updated), the milliseconds from the first wait's release to the end, and, with
 * `totals`, the step's loss sum and example count. Once past the first wait it does not throw
 * for another thread's failure: `lost` says the update may be partly made.
 */
function updateShard(task: GradientTask & { update: ShardUpdate }): Pick<GradientReply, 'finite' | 'updateMs' | 'lost' | 'totals'> {
  if (!shared) throw new Error('this pool was not given the optimizer state');
  const { barrier } = shared.update;
  const u = task.update;
  arriveAndWait(barrier, u.arrivals);
  const started = performance.now();
  reduceInPlace(slab, 0, task.microbatches, readyNodes(u.ready), { from: u.from, to: u.to, totals: u.totals });
  const totals = u.totals ? { lossSum: slab.loss[0], count: slab.count[0] } : undefined;
  const finite = meanInto(shared.mean, slab.grads, u.examples, u.from, u.to);
  if (finite) {
    shared.optimizer.beginAt(u.t);
    shared.optimizer.update(init.weights, shared.mean, u.lr, u.from, u.to);
  }
  try {
    arriveAndWait(barrier, u.committed);
  } catch (err) {
    if (!(err instanceof StepAbandoned)) throw err;
    return { finite, updateMs: performance.now() - started, totals, lost: true };
  }
  return { finite, updateMs: performance.now() - started, totals };
}

function onGradientTask(computer: GradientComputer, task: GradientTask): GradientReply {
  const started = performance.now();
  computer.setWeights(init.weights, task.weightsVersion, task.awaitDense ? () => awaitVersion(init.denseVersion, task.weightsVersion, task.letGoSeen) : undefined, task.weightsGeneration);
  const run = new GradientTaskRun(computer, slab, denseFrom, init.gradDType, task, () => {
    Atomics.store(init.signals, task.lo, 1);
    Atomics.notify(init.signals, task.lo);
  });
  // Remote workers: the next microbatches' convolutions while the dense weights are still on
  // their way, and no more. With all eight of a 256 batch run ahead, the bench had a remote
  // worker 24% slower than a local thread at that batch, where it had been level.
  const denseMissing = (): boolean => versionInPlace(init.denseVersion) < task.weightsVersion;
  try {
    if (task.awaitDense) {
      run.runAhead();
      while (denseMissing() && run.runAhead());
    }
    while (run.finishNext());
  } finally {
    run.release();
  }
  const computeMs = performance.now() - started;
  if (!task.update) return { type: 'gradients', nodes: run.nodes, computeMs };
  return { type: 'gradients', nodes: run.nodes, computeMs, ...updateShard(task as GradientTask & { update: ShardUpdate }) };
}

function onEvalTask(computer: GradientComputer, task: EvalTask): EvalReply {
  computer.setWeights(init.weights, task.weightsVersion);
  const r = computer.evaluate(init.testImages, init.testLabels, task.from, task.to);
  return { type: 'eval', ...r, count: task.to - task.from };
}

/**
 * Runs the tasks of mailbox `index` in the order they come until told to stop, blocking this
 * thread in Atomics.wait whenever none is waiting.
 */
function serve(computer: GradientComputer, { index, port }: ServeTask): ThreadReply {
  const { mailbox } = init;
  for (;;) {
    const sent = Atomics.load(mailbox, 2 * index);
    const got = receiveMessageOnPort(port);
    if (!got) {
      Atomics.wait(mailbox, 2 * index, sent);
      continue;
    }
    const task = got.message as ServedTask;
    if (task.type === 'stop') {
      port.close();
      return { type: 'stopped' };
    }
    let reply: MailboxReply;
    try {
      reply = { ok: task.type === 'gradients' ? onGradientTask(computer, task) : onEvalTask(computer, task) };
    } catch (err) {
      // The step's other threads must not wait for this one's sums.
      if (task.type === 'gradients' && task.update && shared) giveUp(shared.update.barrier, task.update.committed);
      reply = { error: err };
    }
    port.postMessage(reply);
    Atomics.add(mailbox, 2 * index + 1, 1);
    Atomics.notify(mailbox, 2 * index + 1);
  }
}

export default async function run(task: ThreadTask): Promise<ThreadReply> {
  const computer = await ready;
  switch (task.type) {
    case 'serve':
      return serve(computer, task);
    case 'ready':
      return { type: 'ready', backend: init.backend };
    default: {
      const never: never = task;
      throw new Error(`unknown thread task ${JSON.stringify(never)}`);
    }
  }
}
