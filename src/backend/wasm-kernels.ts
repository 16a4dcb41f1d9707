// Kernels the tfjs WebAssembly backend lacks for training, built from the kernels it has.
//
// Conv2DBackpropFilter (tfjs#8474): the filter gradient is itself a convolution. With x of shape
// [b,H,W,ci] and dy of shape [b,oh,ow,co]: transpose x to [ci,H,W,b] (ci becomes the batch, b the
// channels) and dy to [oh,ow,b,co] (a filter), convolve with the forward pass's padding and with
// dilation equal to the forward stride, giving [ci,kh,kw,co]; transpose that to [kh,kw,ci,co].
import {
  backend_util,
  getKernel,
  registerKernel,
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

function conv2DBackpropFilter(args: { inputs: { x: TensorInfo; dy: TensorInfo }; backend: object; attrs: NamedAttrMap }): TensorInfo {
  const { inputs, backend, attrs } = args;
  const { x, dy } = inputs;
  const { strides, pad, dataFormat, dimRoundingMode, filterShape } = attrs as unknown as {
    strides: [number, number] | number;
    pad: 'valid' | 'same' | number | backend_util.ExplicitPadding;
    dataFormat: 'NHWC' | 'NCHW';
    dimRoundingMode?: 'floor' | 'round' | 'ceil';
    filterShape: [number, number, number, number];
  };
  if (dataFormat === 'NCHW') throw new Error('Conv2DBackpropFilter (wasm): only NHWC is supported');
  const info = backend_util.computeConv2DInfo(
    x.shape as [number, number, number, number],
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

let registered = false;

/** Registers the missing training kernels on the wasm backend (idempotent). */
export function registerWasmTrainingKernels(): void {
  if (registered || getKernel('Conv2DBackpropFilter', 'wasm')) return;
  const config: KernelConfig = {
    kernelName: 'Conv2DBackpropFilter',
    backendName: 'wasm',
    kernelFunc: conv2DBackpropFilter as unknown as KernelFunc,
  };
  registerKernel(config);
  registered = true;
}
