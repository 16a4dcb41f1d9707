// The two convolution gradients, built from the wasm backend's fast (XNNPACK) Conv2D: one kernel
// the backend lacks (Conv2DBackpropFilter) and one it has only as a slow direct loop
// (Conv2DBackpropInput, a third of a LeNet-5 training step before this replacement).
//
// Conv2DBackpropFilter (tfjs#8474): the filter gradient is itself a convolution. With x of shape
// [b,H,W,ci] and dy of shape [b,oh,ow,co]: transpose x to [ci,H,W,b] (ci becomes the batch, b the
// channels) and dy to [oh,ow,b,co] (a filter), convolve with the forward pass's padding and with
// dilation equal to the forward stride, giving [ci,kh,kw,co]; transpose that to [kh,kw,ci,co].
import { backend_util, type KernelFunc, type TensorInfo } from '@tensorflow/tfjs-core';
import { wasmKernel, withScratch, type KernelArgs, type Shape4 } from './wasm-backend.js';

/** The attributes both convolution gradient kernels receive (besides the shape they produce). */
interface ConvGradAttrs {
  strides: [number, number] | number;
  pad: 'valid' | 'same' | number | backend_util.ExplicitPadding;
  dataFormat: 'NHWC' | 'NCHW';
  dimRoundingMode?: 'floor' | 'round' | 'ceil';
}

export function conv2DBackpropFilter(args: KernelArgs<{ x: TensorInfo; dy: TensorInfo }>): TensorInfo {
  const { inputs, backend, attrs } = args;
  const { x, dy } = inputs;
  const { strides, pad, dataFormat, dimRoundingMode, filterShape } = attrs as unknown as ConvGradAttrs & { filterShape: Shape4 };
  if (dataFormat === 'NCHW') throw new Error('Conv2DBackpropFilter (wasm): only NHWC is supported');
  const info = backend_util.computeConv2DInfo(x.shape as Shape4, filterShape, strides, 1, pad, dimRoundingMode);
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
  return withScratch(backend, (scratch) => {
    const xT = transpose({ inputs: { x }, backend, attrs: { perm: [3, 1, 2, 0] } }) as TensorInfo;
    scratch.push(xT);
    const dyT = transpose({ inputs: { x: dy }, backend, attrs: { perm: [1, 2, 0, 3] } }) as TensorInfo;
    scratch.push(dyT);
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
    scratch.push(r);
    return transpose({ inputs: { x: r }, backend, attrs: { perm: [1, 2, 0, 3] } }) as TensorInfo;
  });
}

// Conv2DBackpropInput for stride 1: the input gradient is the full correlation of dy with the
// filter rotated by 180 degrees and its channel axes swapped: pad dy by (kh-1-top, kh-1-bottom)
// rows and (kw-1-left, kw-1-right) columns, convolve with W'[i,j,co,ci] = W[kh-1-i,kw-1-j,ci,co].
// Other strides and layouts go to the backend's own kernel. Bit-identical to it on LeNet's shapes.
export function fasterConv2DBackpropInput(stock: KernelFunc) {
  return function conv2DBackpropInput(args: KernelArgs<{ dy: TensorInfo; filter: TensorInfo }>): TensorInfo {
    const { inputs, backend, attrs } = args;
    const { dy, filter } = inputs;
    const { strides, pad, dataFormat, dimRoundingMode, inputShape } = attrs as unknown as ConvGradAttrs & { inputShape: Shape4 };
    const info = backend_util.computeConv2DInfo(inputShape, filter.shape as Shape4, strides, 1, pad, dimRoundingMode);
    const { top, bottom, left, right } = info.padInfo;
    const kh = info.filterHeight;
    const kw = info.filterWidth;
    const supported =
      dataFormat !== 'NCHW' && info.strideHeight === 1 && info.strideWidth === 1 && top < kh && bottom < kh && left < kw && right < kw;
    if (!supported) return stock(args as never) as TensorInfo;
    const reverse = wasmKernel('Reverse');
    const transpose = wasmKernel('Transpose');
    const conv2d = wasmKernel('Conv2D');
    return withScratch(backend, (scratch) => {
      const flipped = reverse({ inputs: { x: filter }, backend, attrs: { dims: [0, 1] } }) as TensorInfo;
      scratch.push(flipped);
      const swapped = transpose({ inputs: { x: flipped }, backend, attrs: { perm: [0, 1, 3, 2] } }) as TensorInfo;
      scratch.push(swapped);
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
    });
  };
}
