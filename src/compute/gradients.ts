// One participant's compute: the gradient of the summed loss over one microbatch, given weights
// and pixels, and evaluation of the test set. The same code runs in coordinator threads and on
// remote workers, which is what lets any of them compute any microbatch with identical bits.
import * as tf from '@tensorflow/tfjs-core';
import { computeBackend, registerOpGradients } from '../backend/select.js';
import { IMAGE_PIXELS, NUM_CLASSES } from '../constants.js';
import { copyImage, distortImage } from '../data/distort.js';
import { firstDenseParam, type ModelSpec } from '../model/architectures.js';
import { forward, summedCrossEntropy } from '../model/forward.js';
import { compactInto, expandWeights } from '../model/weights.js';
import { DirectLenet5, directGradientSupports, type ConvForward } from './direct-lenet5.js';
import { OnnxLenet } from './onnx-lenet.js';

export interface MicrobatchInput {
  /** Sample indices into the training images. */
  samples: ArrayLike<number>;
  /** Each sample's position in the epoch (seeds its distortion). */
  positions: ArrayLike<number>;
  epoch: number;
}

/** A microbatch ready for GradientComputer.finish (see prepare). */
export interface PreparedMicrobatch {
  n: number;
  pixels: Float32Array;
  oneHot: Float32Array;
  convs: ConvForward | undefined;
}

export class GradientComputer {
  /** The loaded weights: tensors on a tfjs backend, arrays (copies) on onnx. */
  private params: tf.Tensor[] = [];
  private arrays: Float32Array[] = [];
  private version = -1;
  private generation = 0;
  /** The dense layers' weights of `version`, not loaded yet (see setWeights). */
  private pendingDense: { flat: Float32Array; wait: () => void } | undefined;
  /** The tape-free path where it applies (lenet5 on wasm); it gives the tape's bits, faster. */
  private readonly direct: DirectLenet5 | undefined;
  /** ONNX Runtime's graphs, when the backend is onnx: no tfjs kernel runs then. */
  private readonly onnx: OnnxLenet | undefined;
  /** Parameters before this are the convolutions', from it on the dense layers'. */
  private readonly firstDense: number;

  /** `tape` forces tfjs's autodiff (the reference the direct path is tested against). */
  constructor(
    private readonly spec: ModelSpec,
    private readonly images: Uint8Array,
    private readonly labels: Uint8Array,
    private readonly seed: number,
    private readonly distort: boolean,
    tape = false,
  ) {
    this.firstDense = firstDenseParam(spec);
    if (computeBackend() === 'onnx') {
      this.onnx = new OnnxLenet(spec);
    } else if (!tape && directGradientSupports(spec, tf.getBackend())) {
      this.direct = new DirectLenet5(tf.engine().backend as never, spec);
    } else {
      registerOpGradients();
    }
  }

  /**
   * Loads weights into tensors unless `version` of `generation` (RangeTask.weightsGeneration) is
   * already loaded. With `awaitDense`, only the convolutions' are loaded now; the dense layers'
   * are read from `flat` when first needed, after awaitDense() returns (a remote worker's threads
   * start while those are still arriving).
   */
  setWeights(flat: Float32Array, version: number, awaitDense?: () => void, generation = 0): void {
    if (version === this.version && generation === this.generation) return;
    this.generation = generation;
    tf.dispose(this.params);
    this.params = [];
    this.arrays = [];
    this.load(flat, 0, awaitDense ? this.firstDense : this.spec.params.length);
    this.pendingDense = awaitDense ? { flat, wait: awaitDense } : undefined;
    this.version = version;
  }

  /**
   * Every parameter tensor, the dense layers' loaded first if they are still pending. Never call
   * it inside tf.tidy: tensors it creates there would be disposed when the tidy ends, and the next
   * microbatch on the same weights would use them.
   */
  private allParams(): tf.Tensor[] {
    this.loadPending();
    return this.params;
  }

  /** Every parameter as an array (onnx), the dense layers' loaded first if they are still pending. */
  private allArrays(): Float32Array[] {
    this.loadPending();
    return this.arrays;
  }

  private loadPending(): void {
    const pending = this.pendingDense;
    if (!pending) return;
    pending.wait();
    this.pendingDense = undefined;
    this.load(pending.flat, this.firstDense, this.spec.params.length);
  }

  /**
   * Loads parameters [first, end) from the flat weights after those loaded: as tensors, or on
   * onnx as copies (the flat weights may be rewritten while a microbatch still uses them).
   */
  private load(flat: Float32Array, first: number, end: number): void {
    const expanded = expandWeights(this.spec, flat, first, end);
    if (this.onnx) this.arrays.push(...expanded.map((w) => w.slice()));
    else this.params.push(...expanded.map((w, i) => tf.tensor(w, this.spec.params[first + i].shape, 'float32')));
  }

  /**
   * Writes the gradient of the summed loss over the microbatch into `out`; returns the loss sum.
   * `onDense(loss)` is called once the dense layers' part of `out` (from denseOffset(spec)) is
   * final: before the convolutions' backward pass where the direct path or onnx runs, else at
   * the end.
   */
  microbatchGradient(input: MicrobatchInput, out: Float32Array, onDense?: (loss: number) => void): number {
    return this.finish(this.prepare(input, false), out, onDense);
  }

  /**
   * A microbatch's pixels and labels and, with `convolutions` where the direct path runs, its
   * convolutions' forward pass: run ahead while the dense layers' weights may still be arriving.
   * finish() completes it; release() frees one that will not be finished.
   */
  prepare(input: MicrobatchInput, convolutions: boolean): PreparedMicrobatch {
    const n = input.samples.length;
    const pixels = new Float32Array(n * IMAGE_PIXELS);
    const oneHot = new Float32Array(n * NUM_CLASSES);
    for (let i = 0; i < n; i++) {
      const index = input.samples[i];
      if (this.distort) {
        distortImage(this.images, index, pixels, i * IMAGE_PIXELS, this.seed, input.epoch, input.positions[i]);
      } else {
        copyImage(this.images, index, pixels, i * IMAGE_PIXELS);
      }
      oneHot[i * NUM_CLASSES + this.labels[index]] = 1;
    }
    const convs = convolutions && this.direct ? this.direct.convolutions(pixels, oneHot, n, this.params.slice(0, this.firstDense)) : undefined;
    return { n, pixels, oneHot, convs };
  }

  release(p: PreparedMicrobatch): void {
    if (p.convs) this.direct?.release(p.convs);
  }

  /** microbatchGradient() of a prepared microbatch. */
  finish(p: PreparedMicrobatch, out: Float32Array, onDense?: (loss: number) => void): number {
    const { n, pixels, oneHot } = p;
    // Where the dense layers' gradients come before the convolutions' (onnx, the direct path):
    // they go into `out` at once, then onDense is told.
    const early = onDense
      ? (loss: number, dense: Float32Array[]): void => {
          compactInto(this.spec, dense, out, this.firstDense);
          onDense(loss);
        }
      : undefined;
    const computed =
      this.onnx?.gradient(pixels, oneHot, n, this.allArrays(), early) ??
      this.direct?.gradient(pixels, oneHot, n, this.params.slice(0, this.firstDense), () => this.allParams().slice(this.firstDense), early, p.convs);
    if (computed) {
      compactInto(this.spec, early ? computed.grads.slice(0, this.firstDense) : computed.grads, out);
      return computed.loss;
    }
    const grads: Float32Array[] = [];
    const params = this.allParams();
    const loss = tf.tidy(() => {
      const x = tf.tensor4d(pixels, [n, 28, 28, 1]);
      const y = tf.tensor2d(oneHot, [n, NUM_CLASSES]);
      const lossFn = (...params: tf.Tensor[]): tf.Scalar => summedCrossEntropy(forward(this.spec, params, x), y);
      const { value, grads: g } = tf.valueAndGrads(lossFn)(params);
      for (const t of g) grads.push(t.dataSync() as Float32Array);
      return value.dataSync()[0];
    });
    compactInto(this.spec, grads, out);
    onDense?.(loss);
    return loss;
  }

  /** Test-set evaluation of samples [from,to) of `images`/`labels`. */
  evaluate(images: Uint8Array, labels: Uint8Array, from: number, to: number): { correct: number; lossSum: number; confusion: number[] } {
    const n = to - from;
    const pixels = new Float32Array(n * IMAGE_PIXELS);
    const oneHot = new Float32Array(n * NUM_CLASSES);
    for (let i = 0; i < n; i++) {
      copyImage(images, from + i, pixels, i * IMAGE_PIXELS);
      oneHot[i * NUM_CLASSES + labels[from + i]] = 1;
    }
    const { predicted, lossSum } = this.onnx ? this.onnxEvaluate(this.onnx, pixels, oneHot, n) : this.tfjsEvaluate(pixels, oneHot, n);
    const confusion = new Array<number>(NUM_CLASSES * NUM_CLASSES).fill(0);
    let correct = 0;
    for (let i = 0; i < n; i++) {
      const truth = labels[from + i];
      if (predicted[i] === truth) correct++;
      confusion[truth * NUM_CLASSES + predicted[i]]++;
    }
    return { correct, lossSum, confusion };
  }

  private tfjsEvaluate(pixels: Float32Array, oneHot: Float32Array, n: number): { predicted: ArrayLike<number>; lossSum: number } {
    const params = this.allParams();
    return tf.tidy(() => {
      const logits = forward(this.spec, params, tf.tensor4d(pixels, [n, 28, 28, 1]));
      const lossSum = summedCrossEntropy(logits, tf.tensor2d(oneHot, [n, NUM_CLASSES])).dataSync()[0];
      return { predicted: tf.argMax(logits, 1).dataSync(), lossSum };
    });
  }

  private onnxEvaluate(onnx: OnnxLenet, pixels: Float32Array, oneHot: Float32Array, n: number): { predicted: ArrayLike<number>; lossSum: number } {
    const { logits, loss } = onnx.forward(pixels, oneHot, n, this.allArrays());
    const predicted = new Int32Array(n);
    for (let i = 0; i < n; i++) predicted[i] = argMax(logits, i * NUM_CLASSES, NUM_CLASSES);
    return { predicted, lossSum: loss };
  }

  /** Class probabilities [n,10] for pixels in [0,1] (n images of 784, concatenated). */
  predict(pixels: Float32Array, n: number): Float32Array {
    if (this.onnx) {
      const { logits } = this.onnx.forward(pixels, new Float32Array(n * NUM_CLASSES), n, this.allArrays());
      return softmaxRows(logits, NUM_CLASSES);
    }
    const params = this.allParams();
    return tf.tidy(() => tf.softmax(forward(this.spec, params, tf.tensor4d(pixels, [n, 28, 28, 1]))).dataSync() as Float32Array);
  }

  dispose(): void {
    tf.dispose(this.params);
    this.onnx?.dispose();
    this.params = [];
    this.arrays = [];
    this.pendingDense = undefined;
    this.version = -1;
  }
}

/** The index of the largest of `count` values from `offset` (the first of equal ones, as tf.argMax). */
function argMax(values: Float32Array, offset: number, count: number): number {
  let best = 0;
  for (let j = 1; j < count; j++) if (values[offset + j] > values[offset + best]) best = j;
  return best;
}

/** Row-wise softmax of [rows, width] logits, in float64 and rounded once. */
function softmaxRows(logits: Float32Array, width: number): Float32Array {
  const out = new Float32Array(logits.length);
  for (let r = 0; r < logits.length; r += width) {
    let max = -Infinity;
    for (let j = 0; j < width; j++) max = Math.max(max, logits[r + j]);
    let sum = 0;
    for (let j = 0; j < width; j++) sum += Math.exp(logits[r + j] - max);
    for (let j = 0; j < width; j++) out[r + j] = Math.exp(logits[r + j] - max) / sum;
  }
  return out;
}
