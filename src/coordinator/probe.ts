// The coordinator's side of the join probe (compute/probe.ts): the expected digest, computed once
// at start on the run's own compute (its threads, or its main thread with --threads 0) from the
// run's current weights, and the Probe frame every joining worker gets.
import { IMAGE_PIXELS } from '../constants.js';
import type { ComputePool } from '../compute/pool.js';
import { computeRange } from '../compute/range.js';
import { GradientComputer } from '../compute/gradients.js';
import { PROBE_SAMPLES, probeDigest, probeTask } from '../compute/probe.js';
import type { Mnist } from '../data/mnist.js';
import { epochPositions } from '../data/sampler.js';
import type { ModelSpec } from '../model/architectures.js';
import { encode } from '../protocol/codec.js';
import { roundToFloat16, type GradDType } from '../reduce/float16.js';
import { slot, type Slab } from '../reduce/ordered-sum.js';

export interface JoinProbe {
  /** What a worker's ProbeResult must carry. */
  digest: Uint8Array;
  /** The Probe frame, with the samples' pixels for a worker without this dataset. */
  frame(sendPixels: boolean): Uint8Array;
}

export interface JoinProbeOptions {
  pool: ComputePool | undefined;
  slab: Slab;
  spec: ModelSpec;
  data: Mnist;
  weights: Float32Array;
  /** The version `weights` holds (the pool's threads cache weights by version). */
  version: number;
  seed: number;
  distort: boolean;
  gradDType: GradDType;
}

/** Computes the probe's gradient here, before any step: the slab is free. */
export async function makeJoinProbe(o: JoinProbeOptions): Promise<JoinProbe> {
  const count = Math.min(PROBE_SAMPLES, o.data.train.count);
  const samples = Uint32Array.from({ length: count }, (_, i) => i);
  const positions = epochPositions(0, count);
  let gradient: Float32Array;
  let lossSum: number;
  if (o.pool) {
    await computeRange(o.pool, o.slab, probeTask(samples, positions, 0, o.version));
    gradient = slot(o.slab, 0);
    lossSum = o.slab.loss[0];
  } else {
    // --threads 0: the main thread runs the backend, as a one-thread worker's does.
    const computer = new GradientComputer(o.spec, o.data.train.images, o.data.train.labels, o.seed, o.distort);
    computer.setWeights(o.weights, o.version);
    gradient = new Float32Array(o.spec.size);
    lossSum = computer.microbatchGradient({ samples, positions, epoch: 0 }, gradient);
    if (o.gradDType === 'float16') roundToFloat16(gradient);
    computer.dispose();
  }
  const digest = probeDigest(gradient, lossSum);
  const weights = Float32Array.from(o.weights);
  const frames = new Map<boolean, Uint8Array>();
  return {
    digest,
    frame(sendPixels) {
      let frame = frames.get(sendPixels);
      if (!frame) {
        const { images, labels } = o.data.train;
        const pixels = sendPixels ? Uint8Array.from(images.subarray(0, count * IMAGE_PIXELS)) : new Uint8Array(0);
        frame = encode({ type: 'probe', weights, samples, positions, epoch: 0, pixels, labels: sendPixels ? Uint8Array.from(labels.subarray(0, count)) : new Uint8Array(0) });
        frames.set(sendPixels, frame);
      }
      return frame;
    },
  };
}
