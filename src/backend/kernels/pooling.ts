// AvgPoolGrad for windows that tile the input exactly (LeNet-5's 2x2 pools with stride 2): each
// input position lies in one window, so its gradient is that window's dy times 1/(window area).
// The wasm backend's kernel loops over every window for every position instead: 1.5 of 15 ms per
// LeNet-5 microbatch. Bit-identical to it (one product, no sums). Other pools go to the stock kernel.
import { backend_util, type KernelFunc, type TensorInfo } from '@tensorflow/tfjs-core';
import { heapF32, type KernelArgs, type Shape4, type WasmBackend } from './wasm-backend.js';

interface PoolAttrs {
  filterSize: [number, number] | number;
  strides: [number, number] | number;
  pad: 'valid' | 'same' | number;
  dimRoundingMode?: 'floor' | 'round' | 'ceil';
}

export function fasterAvgPoolGrad(stock: KernelFunc) {
  return function avgPoolGrad(args: KernelArgs<{ dy: TensorInfo; input: TensorInfo }>): TensorInfo {
    const { inputs, backend, attrs } = args;
    const { dy, input } = inputs;
    const { filterSize, strides, pad, dimRoundingMode } = attrs as unknown as PoolAttrs;
    const info = backend_util.computePool2DInfo(input.shape as Shape4, filterSize, strides, 1, pad, dimRoundingMode);
    const { top, bottom, left, right } = info.padInfo;
    const tiles =
      dy.dtype === 'float32' &&
      info.filterHeight === info.strideHeight &&
      info.filterWidth === info.strideWidth &&
      top + bottom + left + right === 0 &&
      info.outHeight * info.strideHeight === info.inHeight &&
      info.outWidth * info.strideWidth === info.inWidth;
    if (!tiles) return stock(args as never) as TensorInfo;
    const dx = (backend as WasmBackend).makeOutput(input.shape, 'float32');
    const src = heapF32(backend, dy);
    const dst = heapF32(backend, dx);
    const { batchSize, inChannels: c, outHeight, outWidth, strideHeight: sh, strideWidth: sw } = info;
    // The float32 multiplier the stock kernel uses; a float32 times a float32 is exact in a double,
    // so storing the product rounds once, as float32 multiplication does.
    const multiplier = Math.fround(1 / (sh * sw));
    const outRow = outWidth * c; // one row of dy
    const inRow = outWidth * sw * c; // one row of dx
    // Each dy row fills sh rows of dx, each dy value sw neighbours along the row.
    for (let r = 0; r < batchSize * outHeight; r++) {
      const from = r * outRow;
      const to = r * sh * inRow;
      for (let j = 0; j < outWidth; j++) {
        for (let k = 0; k < c; k++) {
          const v = src[from + j * c + k] * multiplier;
          for (let q = 0; q < sw; q++) dst[to + (j * sw + q) * c + k] = v;
        }
      }
      for (let p = 1; p < sh; p++) dst.copyWithin(to + p * inRow, to, to + inRow);
    }
    return dx;
  };
}
