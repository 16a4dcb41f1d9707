// A microbatch's loss and gradient, and logits, on ONNX Runtime: the graphs of
// src/backend/onnx/lenet-graph.ts run in one session each, on one intra-op thread. Sessions are
// made when first needed (a thread that only evaluates never builds the gradient graph).
import { NUM_CLASSES } from '../constants.js';
import type { ModelSpec } from '../model/architectures.js';
import { forwardGraph, gradientGraph } from '../backend/onnx/lenet-graph.js';
import { OrtSession } from '../backend/onnx/runtime.js';

export class OnnxLenet {
  private gradientSession: OrtSession | undefined;
  private forwardSession: OrtSession | undefined;

  constructor(private readonly spec: ModelSpec) {}

  private feeds(pixels: Float32Array, oneHot: Float32Array, n: number, params: Float32Array[]): Record<string, { data: Float32Array; dims: readonly number[] }> {
    const feeds: Record<string, { data: Float32Array; dims: readonly number[] }> = {
      x: { data: pixels, dims: [n, 1, 28, 28] },
      y: { data: oneHot, dims: [n, NUM_CLASSES] },
    };
    params.forEach((data, i) => (feeds[`p${i}`] = { data, dims: this.spec.params[i].shape }));
    return feeds;
  }

  /** The summed cross-entropy and each (expanded) parameter's gradient, in ModelSpec order. */
  gradient(pixels: Float32Array, oneHot: Float32Array, n: number, params: Float32Array[]): { loss: number; grads: Float32Array[] } {
    this.gradientSession ??= new OrtSession(gradientGraph(this.spec));
    const out = this.gradientSession.run(this.feeds(pixels, oneHot, n, params));
    return { loss: out.loss.data[0], grads: this.spec.params.map((_, i) => out[`g${i}`].data) };
  }

  /** Logits [n,10] and the summed cross-entropy against `oneHot`. */
  forward(pixels: Float32Array, oneHot: Float32Array, n: number, params: Float32Array[]): { logits: Float32Array; loss: number } {
    this.forwardSession ??= new OrtSession(forwardGraph(this.spec));
    const out = this.forwardSession.run(this.feeds(pixels, oneHot, n, params));
    return { logits: out.logits.data, loss: out.loss.data[0] };
  }

  dispose(): void {
    this.gradientSession?.dispose();
    this.forwardSession?.dispose();
    this.gradientSession = this.forwardSession = undefined;
  }
}
