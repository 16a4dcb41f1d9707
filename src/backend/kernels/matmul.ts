// BatchMatMul with a transposed operand. The wasm backend multiplies untransposed operands with
// XNNPACK but transposed ones with a slow direct loop, and a dense layer's two gradients are
// exactly those (dy x W^T and x^T x dy): 2.3 of 15 ms per LeNet-5 microbatch. Transposing the
// operand first (a cheap copy) and multiplying untransposed takes a quarter of that.
import type { KernelFunc, TensorInfo } from '@tensorflow/tfjs-core';
import { wasmKernel, withScratch, type KernelArgs } from './wasm-backend.js';

function swapLastTwo(rank: number): number[] {
  const perm = Array.from({ length: rank }, (_, i) => i);
  [perm[rank - 2], perm[rank - 1]] = [perm[rank - 1], perm[rank - 2]];
  return perm;
}

export function fasterBatchMatMul(stock: KernelFunc) {
  return function batchMatMul(args: KernelArgs<{ a: TensorInfo; b: TensorInfo }>): TensorInfo {
    const { inputs, backend, attrs } = args;
    const { transposeA, transposeB } = attrs as { transposeA: boolean; transposeB: boolean };
    const { a, b } = inputs;
    if ((!transposeA && !transposeB) || a.dtype !== 'float32' || b.dtype !== 'float32') return stock(args as never) as TensorInfo;
    const transpose = wasmKernel('Transpose');
    return withScratch(backend, (scratch) => {
      const plain = (t: TensorInfo, transposed: boolean): TensorInfo => {
        if (!transposed) return t;
        const r = transpose({ inputs: { x: t }, backend, attrs: { perm: swapLastTwo(t.shape.length) } }) as TensorInfo;
        scratch.push(r);
        return r;
      };
      const inputs = { a: plain(a, transposeA), b: plain(b, transposeB) };
      return stock({ inputs, backend, attrs: { ...attrs, transposeA: false, transposeB: false } } as never) as TensorInfo;
    });
  };
}
