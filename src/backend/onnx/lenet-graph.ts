// LeNet-5's microbatch gradient and forward pass as ONNX graphs, generated from the ModelSpec.
// They compute what forward() and summedCrossEntropy() (src/model/forward.ts) compute, in NCHW
// layout, with the backward pass written out op by op: ONNX has no autodiff outside training
// builds of ONNX Runtime.
//
// Inputs: `x` [n,1,28,28] pixels in [0,1] (the same memory as tfjs's [n,28,28,1]), `y` [n,10]
// one-hot labels, and `p0`..`p9` the parameters in ModelSpec order and tfjs's shapes (kernels
// [kh,kw,in,out] and [in,out], masked entries zero). Every parameter is an input, not an
// initializer, so each step feeds new weights. The gradient graph's outputs: `loss` (the summed
// cross-entropy, a scalar) and `g0`..`g9`, each parameter's gradient in its tfjs shape.
import { firstDenseParam, type ModelSpec } from '../../model/architectures.js';
import { LENET5_PAD, RESCALE_OFFSET, RESCALE_SCALE } from '../../model/forward.js';
import { NUM_CLASSES } from '../../constants.js';
import { FLOAT, Graph, type Dim } from './model-proto.js';

/** tfjs conv kernel [kh,kw,in,out] to ONNX's [out,in,kh,kw]. */
const KERNEL_TO_ONNX = [3, 2, 0, 1];
const NCHW_TO_NHWC = [0, 2, 3, 1];
const NHWC_TO_NCHW = [0, 3, 1, 2];
/** [n,c,h,w] to [c,n,h,w]; and the filter gradient's [in,out,kh,kw] to tfjs's [kh,kw,in,out]. */
const SWAP_BATCH_CHANNELS = [1, 0, 2, 3];
const SWAPPED_TO_KERNEL = [2, 3, 0, 1];

/** What the forward pass leaves for the backward pass. */
interface Forward {
  /** The first convolution's input (padded and scaled for lenet5). */
  input: string;
  k: string[];
  z: string[];
  a: string[];
  pooled: string[];
  /** keras: where each pooling window's maximum is (MaxPool's Indices, flat over the tensor). */
  argMax: string[];
  flat: string;
  logits: string;
  logProbs: string;
  loss: string;
  /** [channels, height, width] of the second pooling's output (flattened in NHWC order). */
  pooledShape: [number, number, number];
}

function activation(g: Graph, spec: ModelSpec, z: string): string {
  return g.op(spec.activation === 'relu' ? 'Relu' : 'Tanh', [z]);
}

/**
 * dL/dz from dL/da: relu's mask is a > 0 (exactly when z > 0) cast to 0 or 1, 6-10% faster in
 * the whole graph than Sign(a) or Where; tanh's is 1 - a^2.
 */
function activationGrad(g: Graph, spec: ModelSpec, da: string, a: string): string {
  if (spec.activation === 'relu') return g.op('Mul', [da, g.op('Cast', [g.op('Greater', [a, g.constFloat([0], [])])], { to: FLOAT })]);
  return g.op('Mul', [da, g.op('Sub', [g.constFloat([1], []), g.op('Mul', [a, a])])]);
}

function buildForward(g: Graph, spec: ModelSpec, x: string, y: string, p: string[]): Forward {
  let input = x;
  if (spec.arch === 'lenet5') {
    const pad = LENET5_PAD;
    const padded = g.op('Pad', [x, g.constInt64([0, 0, pad, pad, 0, 0, pad, pad])]);
    input = g.op('Add', [g.op('Mul', [padded, g.constFloat([RESCALE_SCALE], [])]), g.constFloat([RESCALE_OFFSET], [])]);
  }
  const k = [p[0], p[2]].map((kernel) => g.op('Transpose', [kernel], { perm: KERNEL_TO_ONNX }));
  const z: string[] = [];
  const a: string[] = [];
  const pooled: string[] = [];
  const argMax: string[] = [];
  let h = input;
  for (let layer = 0; layer < 2; layer++) {
    z.push(g.op('Conv', [h, k[layer], p[2 * layer + 1]]));
    a.push(activation(g, spec, z[layer]));
    const window = { kernel_shape: [2, 2], strides: [2, 2] };
    if (spec.arch === 'lenet5') {
      pooled.push(g.op('AveragePool', [a[layer]], window));
    } else {
      const [values, indices] = g.opOutputs('MaxPool', [a[layer]], 2, window);
      pooled.push(values);
      argMax.push(indices);
    }
    h = pooled[layer];
  }
  const [, ...rest] = carriedShapes(spec).dPooled;
  const pooledShape = rest as [number, number, number];
  const flat = g.op('Reshape', [g.op('Transpose', [h], { perm: NCHW_TO_NHWC }), g.constInt64([-1, pooledShape[0] * pooledShape[1] * pooledShape[2]])]);
  h = flat;
  for (let layer = 2; layer < 5; layer++) {
    const zd = g.op('Gemm', [h, p[2 * layer], p[2 * layer + 1]]);
    z.push(zd);
    if (layer < 4) {
      a.push(activation(g, spec, zd));
      h = a[a.length - 1];
    }
  }
  const logits = z[4];
  const logProbs = g.op('LogSoftmax', [logits], { axis: 1 });
  const loss = g.op('Neg', [g.op('ReduceSum', [g.op('Mul', [logProbs, y])], { keepdims: 0 })]);
  return { input, k, z, a, pooled, argMax, flat, logits, logProbs, loss, pooledShape };
}

/**
 * A 2x2, stride-2 pooling's input gradient from its output gradient `dy`; `argMax`: MaxPool's
 * indices (keras), `input`: the pooling's input.
 */
function poolGrad(g: Graph, dy: string, input: string, argMax: string | undefined): string {
  // Average: each input gets a quarter of its window's gradient (x * 0.25 is exact), quartered
  // before it is spread, on a quarter of the values.
  if (argMax === undefined) {
    return g.op('Resize', [g.op('Mul', [dy, g.constFloat([0.25], [])]), '', g.constFloat([1, 1, 2, 2], [4])], {
      mode: 'nearest',
      coordinate_transformation_mode: 'asymmetric',
      nearest_mode: 'floor',
    });
  }
  // Max: the whole gradient goes to the window's first maximum in row-major order, as tfjs's
  // MaxPoolGrad does (ties are common: windows of zeros, or of tanh(0) over the blank border).
  const shape = g.op('Shape', [input]);
  const flat = g.constInt64([-1]);
  const zeros = g.op('Reshape', [g.op('ConstantOfShape', [shape]), flat]);
  const scattered = g.op('ScatterElements', [zeros, g.op('Reshape', [argMax, flat]), g.op('Reshape', [dy, flat])], { axis: 0 });
  return g.op('Reshape', [scattered, shape]);
}

/**
 * The gradient of a 'valid', stride-1 convolution's filter, [kh,kw,in,out] as tfjs shapes it: a
 * convolution over the batch axis, of the input [in,n,h,w] with the output gradient [out,n,oh,ow]
 * as its filter. (ONNX has no filter-gradient op. An explicit im2col of Slices and a Concat,
 * then one Gemm, was as fast for lenet5 and 12% slower for keras.)
 */
function filterGrad(g: Graph, x: string, dz: string): string {
  const swapped = g.op('Conv', [g.op('Transpose', [x], { perm: SWAP_BATCH_CHANNELS }), g.op('Transpose', [dz], { perm: SWAP_BATCH_CHANNELS })]);
  return g.op('Transpose', [swapped], { perm: SWAPPED_TO_KERNEL });
}

function inputs(g: Graph, spec: ModelSpec): { x: string; y: string; p: string[] } {
  const x = g.input('x', ['n', 1, 28, 28]);
  const y = g.input('y', ['n', NUM_CLASSES]);
  const p = spec.params.map((param, i) => g.input(`p${i}`, param.shape));
  return { x, y, p };
}

/**
 * The dense layers' backward pass: their gradients (parameters 4..9) into `grads`, and the
 * gradient of the second pooling's output, NCHW.
 */
function denseBackward(g: Graph, spec: ModelSpec, f: Forward, y: string, p: string[], grads: string[]): string {
  // Summed cross-entropy of one-hot labels: dL/dlogits = softmax - y.
  let dz = g.op('Sub', [g.op('Exp', [f.logProbs]), y]);
  const batchAxis = g.constInt64([0]);
  for (let layer = 4; layer >= 2; layer--) {
    const below = layer === 2 ? f.flat : f.a[layer - 1];
    grads[2 * layer + 1] = g.op('ReduceSum', [dz, batchAxis], { keepdims: 0 });
    grads[2 * layer] = g.op('Gemm', [below, dz], { transA: 1 });
    const dBelow = g.op('Gemm', [dz, p[2 * layer]], { transB: 1 });
    dz = layer === 2 ? dBelow : activationGrad(g, spec, dBelow, below);
  }
  const [c, hh, ww] = f.pooledShape;
  return g.op('Transpose', [g.op('Reshape', [dz, g.constInt64([-1, hh, ww, c])])], { perm: NHWC_TO_NCHW });
}

/** What the convolutions' backward pass reads of the forward pass. */
interface ConvTensors {
  /** The first convolution's input, each convolution's activation, the first pooling's output. */
  input: string;
  a: [string, string];
  pooled0: string;
  /** The second convolution's kernel, ONNX-shaped. */
  k1: string;
  /** keras: MaxPool's indices of each pooling. */
  argMax: string[];
}

/** The convolutions' backward pass from `dPooled`: their gradients (parameters 0..3) into `grads`. */
function convBackward(g: Graph, spec: ModelSpec, t: ConvTensors, dPooled: string, grads: string[]): void {
  const spatialAxes = g.constInt64([0, 2, 3]);
  for (let layer = 1; layer >= 0; layer--) {
    const da = poolGrad(g, dPooled, t.a[layer], t.argMax[layer]);
    const dzc = activationGrad(g, spec, da, t.a[layer]);
    const below = layer === 0 ? t.input : t.pooled0;
    grads[2 * layer + 1] = g.op('ReduceSum', [dzc, spatialAxes], { keepdims: 0 });
    grads[2 * layer] = filterGrad(g, below, dzc);
    // The first layer's input gradient is not needed: pixels are not trained.
    if (layer === 1) dPooled = g.op('ConvTranspose', [dzc, t.k1]);
  }
}

function outputGrads(g: Graph, spec: ModelSpec, grads: string[], from: number, to: number): void {
  for (let i = from; i < to; i++) g.output(grads[i], `g${i}`, spec.params[i].shape);
}

/** The serialised gradient graph of `spec` (see the file's comment for its inputs and outputs). */
export function gradientGraph(spec: ModelSpec): Uint8Array {
  const g = new Graph();
  const { x, y, p } = inputs(g, spec);
  const f = buildForward(g, spec, x, y, p);
  const grads: string[] = [];
  const dPooled = denseBackward(g, spec, f, y, p, grads);
  convBackward(g, spec, { input: f.input, a: [f.a[0], f.a[1]], pooled0: f.pooled[0], k1: f.k[1], argMax: f.argMax }, dPooled, grads);
  g.output(f.loss, 'loss', []);
  outputGrads(g, spec, grads, 0, spec.params.length);
  return g.encode(`${spec.arch}_${spec.activation}_gradient`);
}

/** The tensors the dense half of a split gradient hands to the convolutions' half, by name. */
export const CARRIED = ['input', 'a0', 'pooled0', 'a1', 'dPooled'] as const;

/** Their shapes: the first convolution's input is 32x32 (lenet5 pads) or 28x28; 5x5 kernels. */
function carriedShapes(spec: ModelSpec): Record<(typeof CARRIED)[number], Dim[]> {
  const size = spec.arch === 'lenet5' ? 28 + 2 * LENET5_PAD : 28;
  const [c1, c2] = [spec.params[0].shape[3], spec.params[2].shape[3]];
  const conv1 = size - 4;
  const conv2 = conv1 / 2 - 4;
  return {
    input: ['n', 1, size, size],
    a0: ['n', c1, conv1, conv1],
    pooled0: ['n', c1, conv1 / 2, conv1 / 2],
    a1: ['n', c2, conv2, conv2],
    dPooled: ['n', c2, conv2 / 2, conv2 / 2],
  };
}

/**
 * The gradient graph cut in two at the dense layers' gradients, so that they can be used while
 * the convolutions' backward pass still runs (the last microbatch of an `early` task). `dense`
 * has gradientGraph's inputs and outputs `loss`, `g4`..`g9` and the CARRIED tensors; `convs`
 * takes those and the second kernel `p2`, and outputs `g0`..`g3`. The same ops on the same
 * values: the same bits as gradientGraph (a test holds them together).
 */
export function splitGradientGraphs(spec: ModelSpec): { dense: Uint8Array; convs: Uint8Array } {
  const firstDense = firstDenseParam(spec);
  const d = new Graph();
  const { x, y, p } = inputs(d, spec);
  const f = buildForward(d, spec, x, y, p);
  const grads: string[] = [];
  const dPooled = denseBackward(d, spec, f, y, p, grads);
  d.output(f.loss, 'loss', []);
  outputGrads(d, spec, grads, firstDense, spec.params.length);
  const carried = { input: f.input, a0: f.a[0], pooled0: f.pooled[0], a1: f.a[1], dPooled };
  const shapes = carriedShapes(spec);
  for (const name of CARRIED) d.output(carried[name], name, shapes[name]);

  const c = new Graph();
  const [input, a0, pooled0, a1, dPooledIn] = CARRIED.map((name) => c.input(name, shapes[name]));
  const k1 = c.op('Transpose', [c.input('p2', spec.params[2].shape)], { perm: KERNEL_TO_ONNX });
  // keras: MaxPool's indices again from the pooling's input (the same windows, the same indices).
  const argMax = spec.arch === 'lenet5' ? [] : [a0, a1].map((a) => c.opOutputs('MaxPool', [a], 2, { kernel_shape: [2, 2], strides: [2, 2] })[1]);
  const convGrads: string[] = [];
  convBackward(c, spec, { input, a: [a0, a1], pooled0, k1, argMax }, dPooledIn, convGrads);
  outputGrads(c, spec, convGrads, 0, firstDense);
  return { dense: d.encode(`${spec.arch}_${spec.activation}_gradient_dense`), convs: c.encode(`${spec.arch}_${spec.activation}_gradient_convs`) };
}

/** The forward graph: outputs `logits` [n,10] and `loss`, the summed cross-entropy against `y`. */
export function forwardGraph(spec: ModelSpec): Uint8Array {
  const g = new Graph();
  const { x, y, p } = inputs(g, spec);
  const f = buildForward(g, spec, x, y, p);
  g.output(f.logits, 'logits', ['n', NUM_CLASSES]);
  g.output(f.loss, 'loss', []);
  return g.encode(`${spec.arch}_${spec.activation}_forward`);
}
