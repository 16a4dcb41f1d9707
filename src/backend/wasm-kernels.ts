// Training kernels for the tfjs WebAssembly backend (src/backend/kernels/): the one it lacks
// (Conv2DBackpropFilter) and faster replacements for the slow paths a step profile shows
// (`node scripts/profile-step.mjs`; see docs/backends.md). Each replacement handles the
// cases it is built for and hands every other case to the backend's own kernel; each is tested
// against the cpu backend.
import { getKernel, registerKernel, unregisterKernel, type KernelFunc } from '@tensorflow/tfjs-core';
import { conv2DBackpropFilter, fasterConv2DBackpropInput } from './kernels/convolution.js';
import { fasterIdentity } from './kernels/identity.js';
import { fasterBatchMatMul } from './kernels/matmul.js';
import { fasterPadV2 } from './kernels/pad.js';
import { fasterAvgPoolGrad } from './kernels/pooling.js';
import { fasterTanh } from './kernels/tanh.js';

/** Kernel name -> a replacement built around the backend's own kernel. */
const REPLACEMENTS: Record<string, (stock: KernelFunc) => (args: never) => unknown> = {
  Conv2DBackpropInput: fasterConv2DBackpropInput,
  BatchMatMul: fasterBatchMatMul,
  AvgPoolGrad: fasterAvgPoolGrad,
  PadV2: fasterPadV2,
  Tanh: fasterTanh,
  Identity: fasterIdentity,
};
const replaced = new WeakSet<KernelFunc>();

/** Supplies the kernel the wasm backend lacks for training (idempotent). */
export function registerMissingWasmKernels(): void {
  if (!getKernel('Conv2DBackpropFilter', 'wasm')) {
    registerKernel({ kernelName: 'Conv2DBackpropFilter', backendName: 'wasm', kernelFunc: conv2DBackpropFilter as unknown as KernelFunc });
  }
}

/** Replaces the backend's slow kernels that a training step uses (idempotent). */
export function registerFasterWasmKernels(): void {
  for (const [name, replacement] of Object.entries(REPLACEMENTS)) {
    const stock = getKernel(name, 'wasm');
    if (!stock || replaced.has(stock.kernelFunc)) continue;
    const kernelFunc = replacement(stock.kernelFunc) as unknown as KernelFunc;
    replaced.add(kernelFunc);
    unregisterKernel(name, 'wasm');
    // The stock config's setupFunc stays: it binds the wasm function the stock kernel calls.
    registerKernel({ ...stock, kernelFunc });
  }
}

/** Every training kernel lenet-dist uses on the wasm backend. */
export function registerWasmTrainingKernels(): void {
  registerMissingWasmKernels();
  registerFasterWasmKernels();
}
