// Training kernels for the tfjs WebAssembly backend, built from the fast (XNNPACK) kernels it has:
// one it lacks (Conv2DBackpropFilter) and one it has only as a slow direct loop
// (Conv2DBackpropInput, a third of a LeNet-5 training step before this replacement).
//
// Conv2DBackpropFilter (tfjs#8474): the filter gradient is itself a convolution. With x of shape
// [b,H,W,ci] and dy of shape [b,oh,ow,co]: transpose x to [ci,H,W,b] (ci becomes the batch, b the
// channels) and dy to [oh,ow,b,co] (a filter), convolve with the forward pass's padding and with
// dilation equal to the forward stride, giving [ci,kh,kw,co]; transpose that to [kh,kw,ci,co].
import {
  backend_util,
  getKernel,
  registerKernel,
  unregisterKernel,
  type KernelConfig,
  type KernelFunc,
  type TensorInfo,
  type NamedAttrMap,
} from '@tensorflow/tfjs-core';

interface WasmBackendLike {
  disposeData(dataId: object): boolean;
}

function wasmKernel(name: string): KernelFunc {
  const config = getKernel(name, 'wasm');
  if (!config) throw new Error(`the wasm backend has no ${name} kernel; is it registered?`);
  return config.kernelFunc;
}

type Shape4 = [number, number, number, number];

/** The attributes both convolution gradient kernels receive (besides the shape they produce). */
interface ConvGradAttrs {
  strides: [number, number] | number;
  pad: 'valid' | 'same' | number | backend_util.ExplicitPadding;
  dataFormat: 'NHWC' | 'NCHW';
  dimRoundingMode?: 'floor' | 'round' | 'ceil';
}

function conv2DBackpropFilter(args: { inputs: { x: TensorInfo; dy: TensorInfo }; backend: object; attrs: NamedAttrMap }): TensorInfo {
  const { inputs, backend, attrs } = args;
  const { x, dy } = inputs;
  const { strides, pad, dataFormat, dimRoundingMode, filterShape } = attrs as unknown as ConvGradAttrs & { filterShape: Shape4 };
  if (dataFormat === 'NCHW') throw new Error('Conv2DBackpropFilter (wasm): only NHWC is supported');
  const info = backend_util.computeConv2DInfo(
    x.shape as Shape4,
    filterShape,
    strides,
    1,
    pad,
    dimRoundingMode,
  );
  const { top, bottom, left, right } = info.padInfo;
  // The convolution below yields exactly kh x kw outputs only when the forward pass used every
  // padded input row and column; LeNet's stride-1 convolutions always do.
  const usedRows = (info.outHeight - 1) * info.strideHeight + info.filterHeight;
  const usedCols = (info.outWidth - 1) * info.strideWidth + info.filterWidth;
  if (usedRows !== info.inHeight + top + bottom || usedCols !== info.inWidth + left + right) {
    throw new Error('Conv2DBackpropFilter (wasm): strides that skip trailing input rows are not supported');
  }
  const transpose = wasmKernel('Transpose');
  const conv2d = wasmKernel('Conv2D');
  const owned: TensorInfo[] = [];
  try {
    const xT = transpose({ inputs: { x }, backend, attrs: { perm: [3, 1, 2, 0] } }) as TensorInfo;
    owned.push(xT);
    const dyT = transpose({ inputs: { x: dy }, backend, attrs: { perm: [1, 2, 0, 3] } }) as TensorInfo;
    owned.push(dyT);
    const r = conv2d({
      inputs: { x: xT, filter: dyT },
      backend,
      attrs: {
        strides: [1, 1],
        pad: [[0, 0], [top, bottom], [left, right], [0, 0]],
        dataFormat: 'NHWC',
        dilations: [info.strideHeight, info.strideWidth],
      },
    }) as TensorInfo;
    owned.push(r);
    return transpose({ inputs: { x: r }, backend, attrs: { perm: [1, 2, 0, 3] } }) as TensorInfo;
  } finally {
    for (const t of owned) (backend as WasmBackendLike).disposeData(t.dataId);
  }
}

// Conv2DBackpropInput for stride 1: the input gradient is the full correlation of dy with the
// filter rotated by 180 degrees and its channel axes swapped: pad dy by (kh-1-top, kh-1-bottom)
// rows and (kw-1-left, kw-1-right) columns, convolve with W'[i,j,co,ci] = W[kh-1-i,kw-1-j,ci,co].
// Other strides and layouts go to the backend's own kernel.
let stockBackpropInput: KernelFunc | undefined;

function conv2DBackpropInput(args: { inputs: { dy: TensorInfo; filter: TensorInfo }; backend: object; attrs: NamedAttrMap }): TensorInfo {
  const { inputs, backend, attrs } = args;
  const { dy, filter } = inputs;
  const { strides, pad, dataFormat, dimRoundingMode, inputShape } = attrs as unknown as ConvGradAttrs & { inputShape: Shape4 };
  const info = backend_util.computeConv2DInfo(inputShape, filter.shape as Shape4, strides, 1, pad, dimRoundingMode);
  const { top, bottom, left, right } = info.padInfo;
  const kh = info.filterHeight;
  const kw = info.filterWidth;
  const supported =
    dataFormat !== 'NCHW' && info.strideHeight === 1 && info.strideWidth === 1 && top < kh && bottom < kh && left < kw && right < kw;
  if (!supported) return stockBackpropInput!(args as never) as TensorInfo;
  const reverse = wasmKernel('Reverse');
  const transpose = wasmKernel('Transpose');
  const conv2d = wasmKernel('Conv2D');
  const owned: TensorInfo[] = [];
  try {
    const flipped = reverse({ inputs: { x: filter }, backend, attrs: { dims: [0, 1] } }) as TensorInfo;
    owned.push(flipped);
    const swapped = transpose({ inputs: { x: flipped }, backend, attrs: { perm: [0, 1, 3, 2] } }) as TensorInfo;
    owned.push(swapped);
    return conv2d({
      inputs: { x: dy, filter: swapped },
      backend,
      attrs: {
        strides: [1, 1],
        pad: [[0, 0], [kh - 1 - top, kh - 1 - bottom], [kw - 1 - left, kw - 1 - right], [0, 0]],
        dataFormat: 'NHWC',
        dilations: [1, 1],
      },
    }) as TensorInfo;
  } finally {
    for (const t of owned) (backend as WasmBackendLike).disposeData(t.dataId);
  }
}

/** Supplies the kernel the wasm backend lacks for training (idempotent). */
export function registerMissingWasmKernels(): void {
  if (!getKernel('Conv2DBackpropFilter', 'wasm')) {
    registerKernel({ kernelName: 'Conv2DBackpropFilter', backendName: 'wasm', kernelFunc: conv2DBackpropFilter as unknown as KernelFunc });
  }
}

/** Replaces the backend's slow Conv2DBackpropInput (idempotent; results are bit-identical on LeNet's shapes). */
export function registerFasterWasmKernels(): void {
  const stock = getKernel('Conv2DBackpropInput', 'wasm');
  if (!stock || stock.kernelFunc === (conv2DBackpropInput as unknown as KernelFunc)) return;
  stockBackpropInput = stock.kernelFunc;
  unregisterKernel('Conv2DBackpropInput', 'wasm');
  const config: KernelConfig = { ...stock, kernelFunc: conv2DBackpropInput as unknown as KernelFunc };
  registerKernel(config);
}

/** Every training kernel lenet-dist uses on the wasm backend. */
export function registerWasmTrainingKernels(): void {
  registerMissingWasmKernels();
  registerFasterWasmKernels();
}
