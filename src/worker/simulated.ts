// Simulated compute, for measuring the network and the protocol with more workers than this
// machine has cores (`npm run scaling`): with LENET_SIMULATE_COMPUTE_MS=T a worker spends T ms
// per microbatch waiting instead of computing and leaves zero gradients in its slab. Everything
// else is real: the join probe (computed by the real backend, so the coordinator's exactness
// check still passes), the protocol, the bytes on every link, and the reduce and update of the
// shards it owns. The model of such a run learns nothing. Never set for training.
// LENET_SIMULATE_DENSE_AT=F: the dense layers' part of the sums is final F of the way through the
// last microbatch, as the convolutions' backward pass then still runs (0.37 with the wasm
// backend, 32-sample microbatches, on a 2-vCPU AMD EPYC), so their early hand-over happens too.
import { letGoCount, untilVersion, type DenseFlag } from '../compute/dense-flag.js';
import { PROBE_VERSION } from '../compute/probe.js';
import type { RangeCompute } from '../compute/range.js';
import { coverNodes, leaves, slot, type Slab } from '../reduce/ordered-sum.js';

export const SIMULATE_COMPUTE_MS = Number(process.env.LENET_SIMULATE_COMPUTE_MS ?? 0);
const DENSE_AT = Math.min(1, Math.max(0, Number(process.env.LENET_SIMULATE_DENSE_AT ?? 0.37)));

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** `real` for the join probe; for every range, `msPerMicrobatch` per microbatch and zero sums. */
export function simulatedCompute(real: RangeCompute, msPerMicrobatch: number, slab: Slab, denseVersion: DenseFlag): RangeCompute {
  return {
    close: () => real.close(),
    async computeRange(task, early) {
      if (task.weightsVersion === PROBE_VERSION) return real.computeRange(task, early);
      const started = performance.now();
      const letGoSeen = letGoCount(denseVersion);
      const total = msPerMicrobatch * (task.hi - task.lo);
      const rest = early ? msPerMicrobatch * (1 - DENSE_AT) : 0;
      const busy = sleep(total - rest);
      // As a real worker, it cannot finish before the dense layers' weights of the step are in.
      await untilVersion(denseVersion, task.weightsVersion, letGoSeen);
      await busy;
      const nodes = task.leavesOnly ? leaves(task.lo, task.hi) : coverNodes(task.microbatches, task.lo, task.hi);
      for (const [lo, hi] of nodes) {
        let examples = 0;
        for (let j = lo; j < hi; j++) examples += task.sizes[j - task.lo];
        slot(slab, lo).fill(0);
        slab.loss[lo] = examples * Math.LN10; // the loss of a uniform guess
        slab.count[lo] = examples;
      }
      if (early) {
        early.onDense(nodes);
        await sleep(rest); // the convolutions' backward pass of the last microbatch
      }
      return { nodes, computeMs: performance.now() - started };
    },
  };
}
