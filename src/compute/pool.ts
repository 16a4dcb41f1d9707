// The coordinator's local compute: a piscina pool of threads sharing pixels, weights and the
// gradient slab with the coordinator through SharedArrayBuffers.
import { fileURLToPath } from 'node:url';
import { Piscina } from 'piscina';
import type { EvalReply, EvalTask, GradientReply, GradientTask, ThreadInit } from './types.js';

const THREAD_FILE = fileURLToPath(new URL('./thread.js', import.meta.url));

export class ComputePool {
  private readonly piscina: Piscina;
  readonly threads: number;

  constructor(threads: number, init: ThreadInit) {
    this.threads = threads;
    this.piscina = new Piscina({
      filename: THREAD_FILE,
      minThreads: threads,
      maxThreads: threads,
      idleTimeout: Number.MAX_SAFE_INTEGER,
      concurrentTasksPerWorker: 1,
      workerData: init,
    });
  }

  /** Resolves once every thread has initialised its backend. */
  async ready(): Promise<void> {
    await Promise.all(Array.from({ length: this.threads }, () => this.piscina.run({ type: 'ready' })));
  }

  gradients(task: GradientTask): Promise<GradientReply> {
    return this.piscina.run(task) as Promise<GradientReply>;
  }

  evaluate(task: EvalTask): Promise<EvalReply> {
    return this.piscina.run(task) as Promise<EvalReply>;
  }

  async close(): Promise<void> {
    await this.piscina.close({ force: true });
  }
}
