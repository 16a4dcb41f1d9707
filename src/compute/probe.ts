// The join probe: one microbatch that a joining worker computes and the coordinator computed
// before, compared by digest. Equal bits admit the worker, whatever it calls its backend; this is
// what the invariant needs, where comparing backend names proves nothing about bits.
import { createHash } from 'node:crypto';
import { float32Bytes } from '../model/weights.js';
import { modelSpec, type Activation, type ArchName } from '../model/architectures.js';
import { roundToFloat16 } from '../reduce/float16.js';
import { GradientComputer } from './gradients.js';
import type { RangeTask } from './types.js';

/** Samples in the probe microbatch: enough to run every kernel, cheap even on the cpu backend. */
export const PROBE_SAMPLES = 8;
/** The weights version a worker computes the probe under (never a real one). */
export const PROBE_VERSION = -2;

/** SHA-256 of a summed gradient (float32, little-endian) and then its loss sum (float64, little-endian). */
export function probeDigest(gradient: Float32Array, lossSum: number): Uint8Array {
  const loss = Buffer.alloc(8);
  loss.writeDoubleLE(lossSum);
  return new Uint8Array(createHash('sha256').update(float32Bytes(gradient)).update(loss).digest());
}

/** The probe as a one-leaf range task of weights version `version`. */
export function probeTask(samples: Uint32Array, positions: Uint32Array, epoch: number, version: number): RangeTask {
  return { weightsVersion: version, epoch, microbatches: 1, lo: 0, hi: 1, samples, positions, sizes: [samples.length] };
}

/** What of a run's configuration a probe's gradient depends on. */
export interface ProbeRun {
  arch: string;
  activation: string;
  seed: number;
  distort: boolean;
  gradDType: string;
}

/**
 * The honest digest of a probe, computed outright on the current tfjs backend from `images` and
 * `labels` (indexed by sample): for clients that answer a probe without a worker's compute, the
 * scripted workers of the tests and the simulated workers of `npm run scaling`.
 */
export function honestProbeDigest(
  run: ProbeRun,
  images: Uint8Array,
  labels: Uint8Array,
  probe: { weights: Float32Array; samples: Uint32Array; positions: Uint32Array; epoch: number },
): Uint8Array {
  const spec = modelSpec(run.arch as ArchName, run.activation as Activation);
  const computer = new GradientComputer(spec, images, labels, run.seed, run.distort);
  try {
    computer.setWeights(probe.weights, PROBE_VERSION);
    const gradient = new Float32Array(spec.size);
    const loss = computer.microbatchGradient({ samples: probe.samples, positions: probe.positions, epoch: probe.epoch }, gradient);
    if (run.gradDType === 'float16') roundToFloat16(gradient);
    return probeDigest(gradient, loss);
  } finally {
    computer.dispose();
  }
}
