// A remote worker's compute when it has one thread: the calling (main) thread computes itself.
// A pool thread would add two hand-offs to every step (assignment in, sums out), each costing
// about half a millisecond inside a step on the 2-vCPU bench machine, and a third busy thread
// competing with the two main threads for the cores. Between microbatches this yields to the
// event loop, so weights still arriving, heartbeats and a goodbye are read while it computes.
import { initBackend } from '../backend/select.js';
import { COMPUTE_YIELD_MS } from '../constants.js';
import { denseOffset } from '../model/architectures.js';
import type { Slab } from '../reduce/ordered-sum.js';
import type { GradDType } from '../reduce/float16.js';
import { GradientComputer } from './gradients.js';
import type { PoolOptions } from './pool.js';
import { letGoCount, letGoSince, untilVersion, versionInPlace, type DenseFlag } from './dense-flag.js';
import type { EarlyDense, RangeResult } from './range.js';
import { GradientTaskRun } from './task.js';
import type { RangeTask } from './types.js';

/**
 * Lets the event loop read the socket. One setImmediate is not enough: called from a socket's
 * callback (the poll phase), it runs in the same loop iteration, before the socket is polled
 * again; traced, the dense weights were then read only after the next microbatch's forward pass.
 */
const yieldToEventLoop = (): Promise<void> => new Promise((resolve) => setImmediate(() => setImmediate(resolve)));

export class InlineCompute {
  private readonly weights: Float32Array;
  private readonly slab: Slab;
  private readonly denseVersion: DenseFlag;
  private readonly gradDType: GradDType;
  private readonly denseFrom: number;

  private constructor(
    private readonly computer: GradientComputer,
    o: PoolOptions & { denseVersion: DenseFlag },
  ) {
    this.weights = o.weights;
    this.slab = o.slab;
    this.denseVersion = o.denseVersion;
    this.gradDType = o.gradDType;
    this.denseFrom = denseOffset(o.spec);
  }

  /** Starts the backend on this thread. `denseVersion`: as for a pool (see PoolOptions). */
  static async start(o: PoolOptions & { denseVersion: DenseFlag }): Promise<InlineCompute> {
    await initBackend(o.backend);
    return new InlineCompute(new GradientComputer(o.spec, o.train.images, o.train.labels, o.seed, o.distort), o);
  }

  /**
   * computeRange() of range.ts, here, for a task whose dense layers' weights may still be
   * arriving; `early.onDense` runs synchronously, before the convolutions' backward pass.
   */
  async computeRange(range: RangeTask, early?: EarlyDense): Promise<RangeResult> {
    const started = performance.now();
    const version = range.weightsVersion;
    const denseMissing = (): boolean => versionInPlace(this.denseVersion) < version;
    // Waits let go since now (letGoWaits): the step was given up, and this result is dropped.
    const letGoSeen = letGoCount(this.denseVersion);
    const letGo = (): boolean => letGoSince(this.denseVersion, letGoSeen);
    this.computer.setWeights(
      this.weights,
      version,
      () => {
        if (denseMissing() && !letGo()) throw new Error(`the dense layers' weights of version ${version} were needed before they arrived`);
      },
      range.weightsGeneration,
    );
    const task = { ...range, type: 'gradients', early: early !== undefined, awaitDense: true } as const;
    const run = new GradientTaskRun(this.computer, this.slab, this.denseFrom, this.gradDType, task, () => early?.onDense(run.nodes));
    try {
      // As a pool thread does: convolutions run ahead only while the dense weights are missing.
      run.runAhead();
      while (denseMissing() && !letGo()) {
        await yieldToEventLoop();
        if (!denseMissing() || !run.runAhead()) break;
      }
      await untilVersion(this.denseVersion, version, letGoSeen); // the dense layers' weights of `version`, or newer
      let yielded = performance.now();
      while (run.finishNext()) {
        if (performance.now() - yielded < COMPUTE_YIELD_MS) continue;
        await yieldToEventLoop();
        yielded = performance.now();
      }
    } finally {
      run.release();
    }
    return { nodes: run.nodes, computeMs: performance.now() - started };
  }

  /** Frees the weights' tensors; only between ranges (the worker queues it after the last). */
  async close(): Promise<void> {
    this.computer.dispose();
  }
}
