// Choosing and initialising the compute backend: one of tfjs's, or ONNX Runtime (`onnx`, which
// runs lenet-dist's own graphs, src/backend/onnx/). tfjs-node ("tensorflow") and onnxruntime-node
// are optional: each is loaded when asked for (or by `auto`) and never required.
import { createRequire } from 'node:module';
import * as tf from '@tensorflow/tfjs-core';
import { BackendError, UsageError } from '../errors.js';
import { onnxRuntimeAvailable } from './onnx/runtime.js';
import { registerWasmTrainingKernels } from './wasm-kernels.js';

export const BACKEND_CHOICES = ['auto', 'wasm', 'onnx', 'tensorflow', 'cpu'] as const;
export type BackendChoice = (typeof BACKEND_CHOICES)[number];
export type BackendName = Exclude<BackendChoice, 'auto'>;

export function parseBackend(value: string): BackendChoice {
  if ((BACKEND_CHOICES as readonly string[]).includes(value)) return value as BackendChoice;
  throw new UsageError(`--backend must be one of ${BACKEND_CHOICES.join(', ')} (got '${value}')`);
}

async function tryTensorflow(): Promise<boolean> {
  try {
    // A variable specifier keeps TypeScript from requiring the optional package at build time.
    const name = '@tensorflow/tfjs-node';
    await import(name);
    return tf.findBackend('tensorflow') !== null;
  } catch {
    return false;
  }
}

/**
 * The backend `choice` resolves to on this machine, without starting it (a process that only
 * hands work to its threads need not hold a wasm instance of its own).
 */
export async function resolveBackend(choice: BackendChoice, log: (msg: string) => void = () => undefined): Promise<BackendName> {
  if (choice === 'auto') return (await tryTensorflow()) ? 'tensorflow' : 'wasm';
  if (choice === 'onnx' && !onnxRuntimeAvailable()) {
    log('note: the onnx backend needs onnxruntime-node, which is not installed or does not load here; using the wasm backend');
    return 'wasm';
  }
  if (choice === 'tensorflow' && !(await tryTensorflow())) {
    throw new BackendError(
      'the tensorflow backend needs @tensorflow/tfjs-node, which is not installed or does not load here; ' +
        'use --backend wasm (the default), or install tfjs-node where its native library can be downloaded',
    );
  }
  return choice;
}

let active: BackendName | undefined;

/** The backend initBackend() started in this thread (tfjs's cpu backend runs beside onnx). */
export function computeBackend(): BackendName | undefined {
  return active;
}

let opGradients = false;

/**
 * Registers every op's gradient, which tfjs's autodiff (tf.valueAndGrads) needs. tfjs-core's
 * Node bundle registers none; the @tensorflow/tfjs bundle registers all of them (and the cpu
 * backend) into tfjs's global registries, which every tfjs package shares. Only the tape needs
 * them, and loading that bundle takes about half a second and 20 MB, so a process or thread
 * loads it when it first takes the tape path, not at start-up (src/compute/gradients.ts).
 */
export function registerOpGradients(): void {
  if (opGradients) return;
  createRequire(import.meta.url)('@tensorflow/tfjs');
  opGradients = true;
}

/** Loads and activates the backend; returns the name of the one that runs. */
export async function initBackend(choice: BackendChoice, log?: (msg: string) => void): Promise<BackendName> {
  const name = await resolveBackend(choice, log);
  active = name;
  // ONNX Runtime computes everything the thread trains and evaluates; tfjs's cpu backend is
  // there for whatever else touches tfjs (a checkpoint's export).
  const tfjsName = name === 'onnx' ? 'cpu' : name;
  if (tfjsName === 'wasm') {
    await import('@tensorflow/tfjs-backend-wasm');
    registerWasmTrainingKernels();
  } else if (tfjsName === 'cpu') {
    await import('@tensorflow/tfjs-backend-cpu');
    // Production mode quiets the "install tfjs-node" banner the cpu backend prints on first use
    // (tfjs's warnings go through the same switch); lenet-dist says which backend runs itself.
    tf.enableProdMode();
  }
  if (!(await tf.setBackend(tfjsName))) throw new BackendError(`the ${tfjsName} backend failed to initialise`);
  await tf.ready();
  return name;
}

/**
 * Compute threads to use with `backend`. libtensorflow is multi-threaded itself and tfjs-node is
 * fragile in more than one worker thread (tfjs#2079, #8388), so with it one thread is used.
 */
export function threadsFor(backend: BackendName, requested: number, log: (msg: string) => void): number {
  if (backend !== 'tensorflow' || requested <= 1) return requested;
  log(`note: the tensorflow backend runs one compute thread per process (it is multi-threaded itself); using 1 instead of ${requested}`);
  return 1;
}
