// The join probe: one microbatch that a joining worker computes and the coordinator computed
// before, compared by digest. Equal bits admit the worker, whatever it calls its backend; this is
// what the invariant needs, where comparing backend names proves nothing about bits.
import { createHash } from 'node:crypto';
import { float32Bytes } from '../model/weights.js';
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
