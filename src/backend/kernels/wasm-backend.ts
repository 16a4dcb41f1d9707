// What lenet-dist's wasm kernels need from the tfjs WebAssembly backend: its registered kernels
// (called directly, as kernels call each other), its tensor data, and scratch tensors that are
// freed however the kernel exits.
import { getKernel, type DataType, type KernelFunc, type NamedAttrMap, type TensorInfo } from '@tensorflow/tfjs-core';

/** The parts of tfjs-backend-wasm's BackendWasm the kernels use. */
export interface WasmBackend {
  makeOutput(shape: number[], dtype: DataType, memoryOffset?: number, values?: Float32Array): TensorInfo;
  /** A view of the tensor's bytes in wasm memory; invalid after any later allocation. */
  typedArrayFromHeap(t: TensorInfo): Float32Array | Int32Array | Uint8Array;
  /** A copy of the tensor's values. */
  readSync(dataId: object): Float32Array | Int32Array | Uint8Array;
  disposeData(dataId: object): boolean;
}

export interface KernelArgs<I> {
  inputs: I;
  backend: object;
  attrs: NamedAttrMap;
}

/** A kernel the wasm backend registers, to call from another kernel. */
export function wasmKernel(name: string): KernelFunc {
  const config = getKernel(name, 'wasm');
  if (!config) throw new Error(`the wasm backend has no ${name} kernel; is it registered?`);
  return config.kernelFunc;
}

/**
 * Runs `body` with a scratch list: every tensor pushed to it is freed when body returns or
 * throws. The tensor body returns is the kernel's output and must not be in the list.
 */
export function withScratch(backend: object, body: (scratch: TensorInfo[]) => TensorInfo): TensorInfo {
  const scratch: TensorInfo[] = [];
  try {
    return body(scratch);
  } finally {
    for (const t of scratch) (backend as WasmBackend).disposeData(t.dataId);
  }
}

/** A float32 scalar tensor on the wasm backend (the caller frees it). */
export function scalar(backend: object, value: number): TensorInfo {
  return (backend as WasmBackend).makeOutput([], 'float32', undefined, Float32Array.of(value));
}

/** The float32 contents of `t`, as a view of wasm memory (see WasmBackend.typedArrayFromHeap). */
export function heapF32(backend: object, t: TensorInfo): Float32Array {
  return (backend as WasmBackend).typedArrayFromHeap(t) as Float32Array;
}

export type Shape4 = [number, number, number, number];
