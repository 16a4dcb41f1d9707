// The onnx backend: LeNet-5's gradient and forward graphs (src/backend/onnx/lenet-graph.ts) against
// tfjs's cpu backend under the tape, for both architectures and activations, and the same bits on
// every run. Skipped where onnxruntime-node is not installed (it is an optional dependency).
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../../../src/backend/select.js';
import { onnxRuntimeAvailable } from '../../../src/backend/onnx/runtime.js';
import { GradientComputer } from '../../../src/compute/gradients.js';
import { loadMnist, type Mnist } from '../../../src/data/mnist.js';
import { modelSpec, paramOffset, type Activation, type ArchName, type ModelSpec } from '../../../src/model/architectures.js';
import { initWeights } from '../../../src/model/weights.js';

let mnist: Mnist;
beforeAll(() => {
  mnist = loadMnist({ trainLimit: 256, testLimit: 100 });
});

const microbatch = (size: number, from = 0) => ({
  samples: Array.from({ length: size }, (_, i) => (from + i * 7) % 256),
  positions: Array.from({ length: size }, (_, i) => from + i),
  epoch: 0,
});

/** A computer on `backend`: which one is fixed when it is made (computeBackend()). */
async function computerOn(backend: 'cpu' | 'onnx', spec: ModelSpec, weights: Float32Array): Promise<GradientComputer> {
  await initBackend(backend);
  const computer = new GradientComputer(spec, mnist.train.images, mnist.train.labels, 3, true);
  computer.setWeights(weights, 0);
  return computer;
}

/** Largest difference in each parameter, relative to that parameter's largest entry. */
function worstRelative(spec: ModelSpec, expected: Float32Array, actual: Float32Array): number {
  let worst = 0;
  spec.params.forEach((p, i) => {
    const from = paramOffset(spec, i);
    let diff = 0;
    let scale = 0;
    for (let j = from; j < from + p.size; j++) {
      diff = Math.max(diff, Math.abs(expected[j] - actual[j]));
      scale = Math.max(scale, Math.abs(expected[j]));
    }
    expect(scale, `${p.layer} ${p.kind}`).toBeGreaterThan(0);
    worst = Math.max(worst, diff / scale);
  });
  return worst;
}

describe.skipIf(!onnxRuntimeAvailable())('the onnx backend', () => {
  for (const arch of ['lenet5', 'keras'] as ArchName[]) {
    for (const activation of ['relu', 'tanh'] as Activation[]) {
      // 1, a full 32, and a short last microbatch.
      for (const size of [1, 32, 7]) {
        it(`computes the ${arch} (${activation}) gradient of ${size} sample(s) as the cpu backend does`, async () => {
          const spec = modelSpec(arch, activation);
          const weights = initWeights(spec, 11);
          const results = [];
          for (const backend of ['cpu', 'onnx'] as const) {
            const computer = await computerOn(backend, spec, weights);
            const grad = new Float32Array(spec.size);
            const loss = computer.microbatchGradient(microbatch(size), grad);
            computer.dispose();
            results.push({ grad, loss });
          }
          const [cpu, onnx] = results;
          expect(Math.abs(onnx.loss - cpu.loss) / cpu.loss).toBeLessThan(1e-5);
          expect(worstRelative(spec, cpu.grad, onnx.grad)).toBeLessThan(1e-5);
        });
      }
    }
  }

  // The last microbatch of an `early` task runs the gradient in two halves, to hand the dense
  // layers' part over before the convolutions' backward pass: it must be the whole graph's bits,
  // or results would depend on where a microbatch fell in a participant's range.
  for (const arch of ['lenet5', 'keras'] as ArchName[]) {
    for (const activation of ['relu', 'tanh'] as Activation[]) {
      it(`computes ${arch} (${activation}) in two halves to the whole graph's bits, dense part first`, async () => {
        const spec = modelSpec(arch, activation);
        const denseFrom = paramOffset(spec, 4);
        const computer = await computerOn('onnx', spec, initWeights(spec, 9));
        for (const size of [1, 7, 32]) {
          const whole = new Float32Array(spec.size);
          const wholeLoss = computer.microbatchGradient(microbatch(size, 3), whole);
          const halves = new Float32Array(spec.size);
          let denseAtCall: Float32Array | undefined;
          let lossAtCall = NaN;
          const loss = computer.microbatchGradient(microbatch(size, 3), halves, (l) => {
            lossAtCall = l;
            denseAtCall = halves.slice(denseFrom);
          });
          expect(loss).toBe(wholeLoss);
          expect(lossAtCall).toBe(wholeLoss);
          expect(Buffer.from(halves.buffer).equals(Buffer.from(whole.buffer))).toBe(true);
          expect(Buffer.from(denseAtCall!.buffer).equals(Buffer.from(whole.slice(denseFrom).buffer))).toBe(true);
        }
        computer.dispose();
      });
    }
  }

  it('gives the same bits on every run, and after the weights are loaded again', async () => {
    const spec = modelSpec('lenet5', 'relu');
    const weights = initWeights(spec, 2);
    const runs: Float32Array[] = [];
    for (let r = 0; r < 2; r++) {
      const computer = await computerOn('onnx', spec, weights);
      for (let i = 0; i < 2; i++) {
        computer.setWeights(weights, 0, undefined, i);
        const grad = new Float32Array(spec.size);
        computer.microbatchGradient(microbatch(32, 5), grad);
        runs.push(grad);
      }
      computer.dispose();
    }
    for (const grad of runs.slice(1)) expect(Buffer.from(grad.buffer).equals(Buffer.from(runs[0].buffer))).toBe(true);
  });

  it('waits for pending dense weights before it computes', async () => {
    const spec = modelSpec('lenet5', 'relu');
    const weights = initWeights(spec, 4);
    const reference = new Float32Array(spec.size);
    const computer = await computerOn('onnx', spec, weights);
    computer.microbatchGradient(microbatch(8), reference);
    const arriving = new Float32Array(weights.length);
    arriving.set(weights.subarray(0, paramOffset(spec, 4)));
    let waited = false;
    computer.setWeights(arriving, 1, () => {
      arriving.set(weights);
      waited = true;
    });
    const grad = new Float32Array(spec.size);
    computer.microbatchGradient(microbatch(8), grad);
    expect(waited).toBe(true);
    expect(Buffer.from(grad.buffer).equals(Buffer.from(reference.buffer))).toBe(true);
    computer.dispose();
  });

  for (const arch of ['lenet5', 'keras'] as ArchName[]) {
    it(`evaluates and predicts ${arch} as the cpu backend does`, async () => {
      const spec = modelSpec(arch, 'relu');
      const weights = initWeights(spec, 6);
      const cpu = await computerOn('cpu', spec, weights);
      const onnx = await computerOn('onnx', spec, weights);
      const expected = cpu.evaluate(mnist.test.images, mnist.test.labels, 0, 100);
      const actual = onnx.evaluate(mnist.test.images, mnist.test.labels, 0, 100);
      expect(actual.correct).toBe(expected.correct);
      expect(actual.confusion).toEqual(expected.confusion);
      expect(Math.abs(actual.lossSum - expected.lossSum) / expected.lossSum).toBeLessThan(1e-5);
      const pixels = new Float32Array(3 * 784).map((_, i) => (i % 29) / 28);
      const p = onnx.predict(pixels, 3);
      const q = cpu.predict(pixels, 3);
      for (let i = 0; i < q.length; i++) expect(Math.abs(p[i] - q[i])).toBeLessThan(1e-5);
      cpu.dispose();
      onnx.dispose();
    });
  }
});
