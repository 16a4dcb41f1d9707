// The coordinator's local compute: a piscina pool of threads sharing pixels, weights and the
// gradient slab with the coordinator through SharedArrayBuffers.
import { fileURLToPath } from 'node:url';
import { Piscina } from 'piscina';
import { THREAD_YOUNG_GENERATION_MB } from '../constants.js';
import type { BackendName } from '../backend/select.js';
import type { ModelSpec } from '../model/architectures.js';
import type { GradDType } from '../reduce/float16.js';
import type { Slab } from '../reduce/ordered-sum.js';
import type { EvalReply, EvalTask, GradientReply, GradientTask, ThreadInit } from './types.js';

// Atomics.waitAsync (Node 16+): TypeScript types it only from lib es2024 on.
export const waitAsync = (Atomics as unknown as { waitAsync(a: Int32Array, index: number, value: number): { async: boolean; value: unknown } }).waitAsync;

/** Resolves once `flag[0]` (a weights version, raised with Atomics.notify) is at least `version`. */
export async function untilVersion(flag: Int32Array, version: number): Promise<void> {
  for (;;) {
    const have = Atomics.load(flag, 0);
    if (have >= version) return;
    const wait = waitAsync(flag, 0, have);
    if (wait.async) await wait.value;
  }
}

const THREAD_FILE = fileURLToPath(new URL('./thread.js', import.meta.url));

/** What a pool's threads share with their owner. */
export interface PoolOptions {
  spec: ModelSpec;
  backend: BackendName;
  seed: number;
  distort: boolean;
  train: { images: Uint8Array; labels: Uint8Array };
  /** Test images for evaluation tasks; empty on remote workers. */
  test: { images: Uint8Array; labels: Uint8Array };
  weights: Float32Array;
  slab: Slab;
  gradDType: GradDType;
  /** Set by a remote worker as the dense layers' weights of each version arrive (awaitDense). */
  denseVersion?: Int32Array;
}

/** Starts a pool of `threads` and waits until every thread has its backend up. */
export async function startPool(threads: number, o: PoolOptions): Promise<ComputePool> {
  const pool = new ComputePool(threads, {
    arch: o.spec.arch,
    activation: o.spec.activation,
    backend: o.backend,
    seed: o.seed,
    distort: o.distort,
    trainImages: o.train.images,
    trainLabels: o.train.labels,
    testImages: o.test.images,
    testLabels: o.test.labels,
    weights: o.weights,
    slabGrads: o.slab.grads,
    slabLoss: o.slab.loss,
    slabCount: o.slab.count,
    slabSlots: o.slab.slots,
    gradDType: o.gradDType,
    signals: new Int32Array(new SharedArrayBuffer(4 * o.slab.slots)),
    denseVersion: o.denseVersion ?? new Int32Array(new SharedArrayBuffer(4)),
  });
  await pool.ready();
  return pool;
}

export class ComputePool {
  private readonly piscina: Piscina;
  readonly threads: number;
  private readonly signals: Int32Array;

  constructor(threads: number, init: ThreadInit) {
    this.threads = threads;
    this.signals = init.signals;
    this.piscina = new Piscina({
      filename: THREAD_FILE,
      minThreads: threads,
      maxThreads: threads,
      idleTimeout: Number.MAX_SAFE_INTEGER,
      concurrentTasksPerWorker: 1,
      workerData: init,
      resourceLimits: { maxYoungGenerationSizeMb: THREAD_YOUNG_GENERATION_MB },
    });
  }

  /** Resolves once every thread has initialised its backend. */
  async ready(): Promise<void> {
    await Promise.all(Array.from({ length: this.threads }, () => this.piscina.run({ type: 'ready' })));
  }

  gradients(task: GradientTask): Promise<GradientReply> {
    if (task.early) Atomics.store(this.signals, task.lo, 0);
    return this.piscina.run(task) as Promise<GradientReply>;
  }

  /** Resolves once the thread running the `early` task that starts at slot `lo` has raised its flag. */
  async denseReady(lo: number): Promise<void> {
    const wait = waitAsync(this.signals, lo, 0);
    if (wait.async) await wait.value;
  }

  evaluate(task: EvalTask): Promise<EvalReply> {
    return this.piscina.run(task) as Promise<EvalReply>;
  }

  async close(): Promise<void> {
    await this.piscina.close({ force: true });
  }
}
