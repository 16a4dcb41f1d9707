// ONNX Runtime through onnxruntime-node's native binding, synchronously. The package's public
// InferenceSession.run() is the same native call deferred by a setImmediate and wrapped in a
// promise; calling the binding directly keeps a microbatch's gradient a plain function call, as
// it is on the tfjs backends, so the compute path needs no second, asynchronous shape. The
// binding is not a public API: the package is pinned to an exact version (package.json), and
// a test runs every graph through it.
import { createRequire } from 'node:module';

/** A tensor as the binding takes and returns it. */
export interface OrtTensor {
  type: 'float32';
  dims: readonly number[];
  data: Float32Array;
}

interface BindingSession {
  loadModel(buffer: ArrayBuffer, byteOffset: number, byteLength: number, options: object): void;
  run(feeds: Record<string, unknown>, fetches: Record<string, unknown>, options: object): Record<string, OrtTensor>;
  endProfiling(): string;
  dispose(): void;
  readonly inputMetadata: { name: string }[];
  readonly outputMetadata: { name: string }[];
}

interface Binding {
  InferenceSession: new () => BindingSession;
}

interface Loaded {
  binding: Binding;
  Tensor: new (type: string, data: Float32Array, dims: readonly number[]) => unknown;
}

let loaded: Loaded | null | undefined;

/** The binding, or undefined when onnxruntime-node is not installed or does not load here. */
function load(): Loaded | undefined {
  if (loaded !== undefined) return loaded ?? undefined;
  try {
    // Tests of the fallback: behave as on a machine without the package.
    if (process.env.LENET_TEST_NO_ONNX === '1') throw new Error('hidden for a test');
    const require = createRequire(import.meta.url);
    const { binding, initOrt } = require('onnxruntime-node/dist/binding.js') as { binding: Binding; initOrt: () => void };
    initOrt();
    const { Tensor } = require('onnxruntime-common') as Pick<Loaded, 'Tensor'>;
    loaded = { binding, Tensor };
  } catch {
    loaded = null;
  }
  return loaded ?? undefined;
}

/** Whether ONNX Runtime loads in this process. */
export function onnxRuntimeAvailable(): boolean {
  return load() !== undefined;
}

/**
 * One session on one intra-op thread, sequential, every graph optimisation on: its outputs are
 * the same bits on every run, in every thread and process, on machines of one CPU type.
 */
const SESSION_OPTIONS = {
  intraOpNumThreads: 1,
  interOpNumThreads: 1,
  executionMode: 'sequential',
  graphOptimizationLevel: 'all',
  executionProviders: ['cpu'],
};

export class OrtSession {
  private readonly session: BindingSession;
  private readonly Tensor: Loaded['Tensor'];
  /** Every output, by name: what each run asks for. */
  private readonly fetches: Record<string, null> = {};

  /** `profilePrefix`: record ONNX Runtime's profile of every run (scripts/profile-onnx.mjs). */
  constructor(model: Uint8Array, profilePrefix?: string) {
    const ort = load();
    if (!ort) throw new Error('onnxruntime-node is not installed or does not load here');
    this.Tensor = ort.Tensor;
    this.session = new ort.binding.InferenceSession();
    const options = profilePrefix ? { ...SESSION_OPTIONS, enableProfiling: true, profileFilePrefix: profilePrefix } : SESSION_OPTIONS;
    this.session.loadModel(model.buffer as ArrayBuffer, model.byteOffset, model.byteLength, options);
    for (const m of this.session.outputMetadata) this.fetches[m.name] = null;
  }

  /** Runs the graph on float32 inputs; returns every output by name. */
  run(inputs: Record<string, { data: Float32Array; dims: readonly number[] }>): Record<string, OrtTensor> {
    const feeds: Record<string, unknown> = {};
    for (const [name, t] of Object.entries(inputs)) feeds[name] = new this.Tensor('float32', t.data, t.dims);
    return this.session.run(feeds, this.fetches, {});
  }

  /** Ends a profiled session's profile; returns the JSON file it wrote. */
  endProfiling(): string {
    return this.session.endProfiling();
  }

  dispose(): void {
    this.session.dispose();
  }
}
