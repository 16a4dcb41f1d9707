// The forward pass of each architecture as plain tfjs ops over a list of parameter tensors (in
// ModelSpec order, masked kernels expanded). It computes the same function as the exported layers
// model (see export.ts); a test holds the two together.
import * as tf from '@tensorflow/tfjs-core';
import { MNIST_PIXEL_MEAN, MNIST_PIXEL_STD } from '../constants.js';
import type { ModelSpec } from './architectures.js';

/** Input scaling inside lenet5: x * RESCALE_SCALE + RESCALE_OFFSET maps [0,1] pixels to zero mean, unit variance. */
export const RESCALE_SCALE = 1 / MNIST_PIXEL_STD;
export const RESCALE_OFFSET = -MNIST_PIXEL_MEAN / MNIST_PIXEL_STD;
/** lenet5 pads 28x28 MNIST to the paper's 32x32 input. */
export const LENET5_PAD = 2;

function act(spec: ModelSpec, x: tf.Tensor): tf.Tensor {
  return spec.activation === 'relu' ? tf.relu(x) : tf.tanh(x);
}

function convLayer(spec: ModelSpec, x: tf.Tensor4D, kernel: tf.Tensor, bias: tf.Tensor): tf.Tensor4D {
  return act(spec, tf.add(tf.conv2d(x, kernel as tf.Tensor4D, 1, 'valid'), bias)) as tf.Tensor4D;
}

function denseLayer(x: tf.Tensor2D, kernel: tf.Tensor, bias: tf.Tensor): tf.Tensor2D {
  return tf.add(tf.matMul(x, kernel as tf.Tensor2D), bias) as tf.Tensor2D;
}

/** Logits [n,10] for pixels [n,28,28,1] scaled to [0,1]. */
export function forward(spec: ModelSpec, params: tf.Tensor[], x: tf.Tensor4D): tf.Tensor2D {
  const [k1, b1, k2, b2, k3, b3, k4, b4, k5, b5] = params;
  let h: tf.Tensor4D;
  if (spec.arch === 'lenet5') {
    const padded = tf.pad(x, [[0, 0], [LENET5_PAD, LENET5_PAD], [LENET5_PAD, LENET5_PAD], [0, 0]]);
    const scaled = tf.add(tf.mul(padded, RESCALE_SCALE), RESCALE_OFFSET) as tf.Tensor4D;
    h = tf.avgPool(convLayer(spec, scaled, k1, b1), 2, 2, 'valid');
    h = tf.avgPool(convLayer(spec, h, k2, b2), 2, 2, 'valid');
  } else {
    h = tf.maxPool(convLayer(spec, x, k1, b1), 2, 2, 'valid');
    h = tf.maxPool(convLayer(spec, h, k2, b2), 2, 2, 'valid');
  }
  const flat = tf.reshape(h, [h.shape[0], -1]) as tf.Tensor2D;
  const d1 = act(spec, denseLayer(flat, k3, b3)) as tf.Tensor2D;
  const d2 = act(spec, denseLayer(d1, k4, b4)) as tf.Tensor2D;
  return denseLayer(d2, k5, b5);
}

/** Summed (not mean) softmax cross-entropy of logits [n,10] against one-hot labels [n,10]. */
export function summedCrossEntropy(logits: tf.Tensor2D, oneHot: tf.Tensor2D): tf.Scalar {
  return tf.neg(tf.sum(tf.mul(tf.logSoftmax(logits), oneHot))) as tf.Scalar;
}
