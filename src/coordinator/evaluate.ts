// Test-set evaluation, after each epoch and for `lenet-coord eval`: on the coordinator's threads
// when it has any, else on the calling thread (--threads 0, or the eval command).
import { EVAL_CHUNK_SAMPLES, NUM_CLASSES } from '../constants.js';
import type { ComputePool } from '../compute/pool.js';
import { GradientComputer } from '../compute/gradients.js';
import type { Mnist } from '../data/mnist.js';
import type { ModelSpec } from '../model/architectures.js';

export interface Evaluation {
  correct: number;
  total: number;
  accuracy: number;
  loss: number;
  /** confusion[true * 10 + predicted] */
  confusion: number[];
}

export async function evaluate(pool: ComputePool | undefined, spec: ModelSpec, data: Mnist, weights: Float32Array, version: number): Promise<Evaluation> {
  const testCount = data.test.count;
  const chunks: { from: number; to: number }[] = [];
  for (let from = 0; from < testCount; from += EVAL_CHUNK_SAMPLES) chunks.push({ from, to: Math.min(testCount, from + EVAL_CHUNK_SAMPLES) });
  let replies: { correct: number; lossSum: number; confusion: number[] }[];
  if (pool) {
    replies = await Promise.all(chunks.map((c) => pool.evaluate({ type: 'eval', weightsVersion: version, ...c })));
  } else {
    const computer = new GradientComputer(spec, data.train.images, data.train.labels, 0, false);
    computer.setWeights(weights, version);
    replies = chunks.map((c) => computer.evaluate(data.test.images, data.test.labels, c.from, c.to));
    computer.dispose();
  }
  let correct = 0;
  let loss = 0;
  const confusion = new Array<number>(NUM_CLASSES * NUM_CLASSES).fill(0);
  for (const r of replies) {
    correct += r.correct;
    loss += r.lossSum;
    r.confusion.forEach((c, i) => (confusion[i] += c));
  }
  return { correct, total: testCount, accuracy: correct / testCount, loss: loss / testCount, confusion };
}
