// A microbatch's loss and gradient, and logits, on ONNX Runtime: the graphs of
// src/backend/onnx/lenet-graph.ts run in one session each, on one intra-op thread. Sessions are
// made when first needed (a thread that only evaluates never builds the gradient graph).
import { NUM_CLASSES } from '../constants.js';
import { firstDenseParam, type ModelSpec } from '../model/architectures.js';
import { CARRIED, forwardGraph, gradientGraph, splitGradientGraphs } from '../backend/onnx/lenet-graph.js';
import { OrtSession } from '../backend/onnx/runtime.js';

export class OnnxLenet {
  private gradientSession: OrtSession | undefined;
  private forwardSession: OrtSession | undefined;
  private split: { dense: OrtSession; convs: OrtSession } | undefined;
  private readonly firstDense: number;

  constructor(private readonly spec: ModelSpec) {
    this.firstDense = firstDenseParam(spec);
  }

  private feeds(pixels: Float32Array, oneHot: Float32Array, n: number, params: Float32Array[]): Record<string, { data: Float32Array; dims: readonly number[] }> {
    const feeds: Record<string, { data: Float32Array; dims: readonly number[] }> = {
      x: { data: pixels, dims: [n, 1, 28, 28] },
      y: { data: oneHot, dims: [n, NUM_CLASSES] },
    };
    params.forEach((data, i) => (feeds[`p${i}`] = { data, dims: this.spec.params[i].shape }));
    return feeds;
  }

  /**
   * The summed cross-entropy and each (expanded) parameter's gradient, in ModelSpec order. With
   * `early`, the gradient runs as its two halves (splitGradientGraphs, the same bits) and
   * `early(loss, denseGrads)` is called between them, before the convolutions' backward pass.
   */
  gradient(pixels: Float32Array, oneHot: Float32Array, n: number, params: Float32Array[], early?: (loss: number, denseGrads: Float32Array[]) => void): { loss: number; grads: Float32Array[] } {
    const feeds = this.feeds(pixels, oneHot, n, params);
    const grad = (out: Record<string, { data: Float32Array }>, from: number, to: number): Float32Array[] =>
      this.spec.params.slice(from, to).map((_, i) => out[`g${from + i}`].data);
    const size = this.spec.params.length;
    if (!early) {
      this.gradientSession ??= new OrtSession(gradientGraph(this.spec));
      const out = this.gradientSession.run(feeds);
      return { loss: out.loss.data[0], grads: grad(out, 0, size) };
    }
    if (!this.split) {
      const { dense, convs } = splitGradientGraphs(this.spec);
      this.split = { dense: new OrtSession(dense), convs: new OrtSession(convs) };
    }
    const front = this.split.dense.run(feeds);
    const loss = front.loss.data[0];
    const denseGrads = grad(front, this.firstDense, size);
    early(loss, denseGrads);
    const carried: Record<string, { data: Float32Array; dims: readonly number[] }> = { p2: feeds.p2 };
    for (const name of CARRIED) carried[name] = front[name];
    const back = this.split.convs.run(carried);
    return { loss, grads: [...grad(back, 0, this.firstDense), ...denseGrads] };
  }

  /** Logits [n,10] and the summed cross-entropy against `oneHot`. */
  forward(pixels: Float32Array, oneHot: Float32Array, n: number, params: Float32Array[]): { logits: Float32Array; loss: number } {
    this.forwardSession ??= new OrtSession(forwardGraph(this.spec));
    const out = this.forwardSession.run(this.feeds(pixels, oneHot, n, params));
    return { logits: out.logits.data, loss: out.loss.data[0] };
  }

  dispose(): void {
    for (const session of [this.gradientSession, this.forwardSession, this.split?.dense, this.split?.convs]) session?.dispose();
    this.gradientSession = this.forwardSession = this.split = undefined;
  }
}
