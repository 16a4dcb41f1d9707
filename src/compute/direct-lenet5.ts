// LeNet-5's microbatch gradient without tfjs's engine: the kernels that tf.valueAndGrads runs for
// forward() and summedCrossEntropy() (src/model/forward.ts) and for their registered gradients,
// called directly in the backend, with the same inputs and attributes, so the results are the
// same bits. A CPU profile put two thirds of a 1-sample microbatch in the engine (dispatch, the
// tape, Engine.gradients: about 23 µs a kernel); this path skips all of it. The tape-based path
// stays the reference: a test holds the two to the same bits, and other architectures use it.
//
// Each step below names the tfjs op or gradient (tfjs-core/src/gradients/*_grad.ts) it follows.
// Casts of float32 to float32 that those ops insert copy values unchanged and are left out.
import type { Tensor, TensorInfo } from '@tensorflow/tfjs-core';
import { scalar, wasmKernel, type WasmBackend } from '../backend/kernels/wasm-backend.js';
import { NUM_CLASSES } from '../constants.js';
import type { ModelSpec } from '../model/architectures.js';
import { LENET5_PAD, RESCALE_OFFSET, RESCALE_SCALE } from '../model/forward.js';

const CONV = { strides: 1, pad: 'valid', dataFormat: 'NHWC', dilations: [1, 1], dimRoundingMode: undefined };
const POOL = { filterSize: 2, strides: 2, pad: 'valid', dimRoundingMode: undefined };

/** Whether this path computes `spec`'s gradient (else use the tape). */
export function directGradientSupports(spec: ModelSpec, backendName: string): boolean {
  return spec.arch === 'lenet5' && backendName === 'wasm';
}

/**
 * Called once the dense layers' gradients (parameters 4..9, in ModelSpec order) are final, with
 * the microbatch's loss sum, before the backward pass goes on through the convolutions.
 */
export type DenseReady = (loss: number, denseGrads: Float32Array[]) => void;

/** A microbatch's convolutions, run ahead (DirectLenet5.convolutions), and the tensors it holds. */
export interface ConvForward {
  n: number;
  k1: TensorInfo;
  k2: TensorInfo;
  y: TensorInfo;
  scaled: TensorInfo;
  z1: TensorInfo;
  a1: TensorInfo;
  p1: TensorInfo;
  z2: TensorInfo;
  a2: TensorInfo;
  p2: TensorInfo;
  flat: TensorInfo;
  live: TensorInfo[];
}

export class DirectLenet5 {
  /** Every tensor this gradient made; all are freed when it returns or throws. */
  private live: TensorInfo[] = [];

  constructor(
    private readonly backend: WasmBackend,
    private readonly spec: ModelSpec,
  ) {}

  private keep(t: TensorInfo): TensorInfo {
    this.live.push(t);
    return t;
  }

  private run(name: string, inputs: Record<string, TensorInfo>, attrs: Record<string, unknown> = {}): TensorInfo {
    return this.keep(wasmKernel(name)({ inputs, backend: this.backend as never, attrs: attrs as never }) as TensorInfo);
  }

  private upload(values: Float32Array, shape: number[]): TensorInfo {
    return this.keep(this.backend.makeOutput(shape, 'float32', undefined, values));
  }

  private scalar(value: number): TensorInfo {
    return this.keep(scalar(this.backend, value));
  }

  private act(z: TensorInfo): TensorInfo {
    return this.spec.activation === 'relu' ? this.run('Relu', { x: z }) : this.run('Tanh', { x: z });
  }

  /** Gradient through the activation: Relu_grad mul(dy, step(x)); Tanh_grad mul(1 - y^2, dy). */
  private actGrad(dy: TensorInfo, z: TensorInfo, a: TensorInfo): TensorInfo {
    if (this.spec.activation === 'relu') return this.run('Multiply', { a: dy, b: this.run('Step', { x: z }, { alpha: 0 }) });
    const oneMinusSquare = this.run('Sub', { a: this.scalar(1), b: this.run('Square', { x: a }) });
    return this.run('Multiply', { a: oneMinusSquare, b: dy });
  }

  /** Add_grad for a bias: the sum of dy over every axis but the last. */
  private biasGrad(dy: TensorInfo): TensorInfo {
    const axes = dy.shape.slice(0, -1).map((_, i) => i);
    return this.run('Sum', { x: dy }, { axis: axes, keepDims: false });
  }

  /**
   * The convolutions' forward pass of a microbatch (parameters 0..3 in ModelSpec order), for
   * gradient() to finish later: a remote worker runs those of all its microbatches while the
   * dense layers' weights are still arriving. Its tensors live until gradient() or release().
   */
  convolutions(pixels: Float32Array, oneHot: Float32Array, n: number, conv: Tensor[]): ConvForward {
    const [k1, b1, k2, b2] = conv as TensorInfo[];
    this.live = [];
    try {
      // ---- forward (forward.ts, lenet5) ----
      const x = this.upload(pixels, [n, 28, 28, 1]);
      const y = this.upload(oneHot, [n, NUM_CLASSES]);
      const p = LENET5_PAD;
      const padded = this.run('PadV2', { x }, { paddings: [[0, 0], [p, p], [p, p], [0, 0]], constantValue: 0 });
      const scaled = this.run('Add', { a: this.run('Multiply', { a: padded, b: this.scalar(RESCALE_SCALE) }), b: this.scalar(RESCALE_OFFSET) });
      const c1 = this.run('Conv2D', { x: scaled, filter: k1 }, CONV);
      const z1 = this.run('Add', { a: c1, b: b1 });
      const a1 = this.act(z1);
      const p1 = this.run('AvgPool', { x: a1 }, POOL);
      const c2 = this.run('Conv2D', { x: p1, filter: k2 }, CONV);
      const z2 = this.run('Add', { a: c2, b: b2 });
      const a2 = this.act(z2);
      const p2 = this.run('AvgPool', { x: a2 }, POOL);
      const flat = this.run('Reshape', { x: p2 }, { shape: [n, -1] });
      return { n, k1, k2, y, scaled, z1, a1, p1, z2, a2, p2, flat, live: this.live };
    } catch (err) {
      this.release({ live: this.live });
      throw err;
    } finally {
      this.live = [];
    }
  }

  /** Frees a convolutions() result that gradient() will not finish. */
  release(f: Pick<ConvForward, 'live'>): void {
    for (const t of f.live) this.backend.disposeData(t.dataId);
    f.live.length = 0;
  }

  /**
   * The summed cross-entropy of the microbatch and its gradient with respect to the expanded
   * parameter tensors (`conv`: parameters 0..3, then `denseParams()`: 4..9, in ModelSpec order):
   * the values forward + summedCrossEntropy under tf.valueAndGrads give. `convs` is the
   * microbatch's convolutions() when they were run ahead; the kernels and their inputs are the
   * same either way.
   */
  gradient(pixels: Float32Array, oneHot: Float32Array, n: number, conv: Tensor[], denseParams: () => Tensor[], early?: DenseReady, convs?: ConvForward): { loss: number; grads: Float32Array[] } {
    const f = convs ?? this.convolutions(pixels, oneHot, n, conv);
    const { k1, k2, y, scaled, z1, a1, p1, z2, a2, p2, flat } = f;
    this.live = f.live;
    try {
      // Asked for only now: on a remote worker they may still be arriving.
      const [k3, b3, k4, b4, k5, b5] = denseParams() as TensorInfo[];
      const dense = (h: TensorInfo, k: TensorInfo, b: TensorInfo): TensorInfo =>
        this.run('Add', { a: this.run('BatchMatMul', { a: h, b: k }, { transposeA: false, transposeB: false }), b });
      const z3 = dense(flat, k3, b3);
      const a3 = this.act(z3);
      const z4 = dense(a3, k4, b4);
      const a4 = this.act(z4);
      const logits = dense(a4, k5, b5);
      // summedCrossEntropy: neg(sum(mul(logSoftmax(logits), oneHot))); logSoftmax as its customGrad op.
      const xMax = this.run('Max', { x: logits }, { reductionIndices: 1, keepDims: true });
      const shifted = this.run('Sub', { a: logits, b: xMax });
      const logSumExp = this.run('Log', { x: this.run('Sum', { x: this.run('Exp', { x: shifted }) }, { axis: 1, keepDims: true }) });
      const logProbs = this.run('Sub', { a: shifted, b: logSumExp });
      const loss = this.run('Neg', { x: this.run('Sum', { x: this.run('Multiply', { a: logProbs, b: y }) }, { axis: null, keepDims: false }) });

      // ---- backward, from dy = 1 (Engine.gradients seeds ones) ----
      const dNeg = this.run('Neg', { x: this.scalar(1) }); // Neg_grad
      // Sum_grad: mul(reshape(dy, [1, 1]), ones([n, 10])).
      const ones = this.upload(new Float32Array(n * NUM_CLASSES).fill(1), [n, NUM_CLASSES]);
      const dSum = this.run('Multiply', { a: this.run('Reshape', { x: dNeg }, { shape: [1, 1] }), b: ones });
      const dLogProbs = this.run('Multiply', { a: dSum, b: y }); // Multiply_grad: mul(dy, b)
      // logSoftmax's gradFunc: sub(dy, mul(sum(dy, axis, true), exp(value))).
      const softmax = this.run('Exp', { x: logProbs });
      const dLogits = this.run('Sub', {
        a: dLogProbs,
        b: this.run('Multiply', { a: this.run('Sum', { x: dLogProbs }, { axis: 1, keepDims: true }), b: softmax }),
      });
      // Dense layers: Add_grad (bias), BatchMatMul_grad (kernel, input), activation.
      const db5 = this.biasGrad(dLogits);
      const dk5 = this.run('BatchMatMul', { a: a4, b: dLogits }, { transposeA: true, transposeB: false });
      const da4 = this.run('BatchMatMul', { a: dLogits, b: k5 }, { transposeA: false, transposeB: true });
      const dz4 = this.actGrad(da4, z4, a4);
      const db4 = this.biasGrad(dz4);
      const dk4 = this.run('BatchMatMul', { a: a3, b: dz4 }, { transposeA: true, transposeB: false });
      const da3 = this.run('BatchMatMul', { a: dz4, b: k4 }, { transposeA: false, transposeB: true });
      const dz3 = this.actGrad(da3, z3, a3);
      const db3 = this.biasGrad(dz3);
      const dk3 = this.run('BatchMatMul', { a: flat, b: dz3 }, { transposeA: true, transposeB: false });
      // The dense layers' gradients are final here; the convolutions' take the rest of the time.
      const read = (t: TensorInfo): Float32Array => this.backend.readSync(t.dataId) as Float32Array;
      const lossValue = read(loss)[0];
      const denseGrads = [dk3, db3, dk4, db4, dk5, db5].map(read);
      early?.(lossValue, denseGrads);
      const dFlat = this.run('BatchMatMul', { a: dz3, b: k3 }, { transposeA: false, transposeB: true });
      // Reshape_grad, AvgPool_grad, activation, Add_grad, Conv2D_grad.
      const dp2 = this.run('Reshape', { x: dFlat }, { shape: p2.shape });
      const da2 = this.run('AvgPoolGrad', { dy: dp2, input: a2 }, POOL);
      const dz2 = this.actGrad(da2, z2, a2);
      const db2 = this.biasGrad(dz2);
      const dk2 = this.run('Conv2DBackpropFilter', { x: p1, dy: dz2 }, { ...CONV, filterShape: k2.shape });
      const dp1 = this.run('Conv2DBackpropInput', { dy: dz2, filter: k2 }, { ...CONV, inputShape: p1.shape });
      const da1 = this.run('AvgPoolGrad', { dy: dp1, input: a1 }, POOL);
      const dz1 = this.actGrad(da1, z1, a1);
      const db1 = this.biasGrad(dz1);
      const dk1 = this.run('Conv2DBackpropFilter', { x: scaled, dy: dz1 }, { ...CONV, filterShape: k1.shape });
      // The first layer's input gradient is not needed (pixels are not trained), as on the tape.
      return { loss: lossValue, grads: [...[dk1, db1, dk2, db2].map(read), ...denseGrads] };
    } finally {
      this.release(f);
      this.live = [];
    }
  }
}
