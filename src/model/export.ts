// The trained model as a standard tfjs layers model, loadable with plain `tf.loadLayersModel`
// and no project code. lenet5's C3 becomes an ordinary Conv2D whose masked weights are zero; its
// padding and input normalisation become ZeroPadding2D and Rescaling layers.
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { IMAGE_SIDE, NUM_CLASSES } from '../constants.js';
import type { ModelSpec } from './architectures.js';
import { LENET5_PAD, RESCALE_OFFSET, RESCALE_SCALE } from './forward.js';
import { expandWeights, float32Bytes } from './weights.js';

export function buildLayersModel(spec: ModelSpec): tfl.LayersModel {
  const activation = spec.activation;
  const layers: tfl.layers.Layer[] = [];
  const [a, b, c, d] = spec.params.filter((p) => p.kind === 'kernel').map((p) => p.layer);
  if (spec.arch === 'lenet5') {
    layers.push(
      tfl.layers.zeroPadding2d({ padding: LENET5_PAD, inputShape: [IMAGE_SIDE, IMAGE_SIDE, 1], name: 'pad' }),
      tfl.layers.rescaling({ scale: RESCALE_SCALE, offset: RESCALE_OFFSET, name: 'normalise' }),
      tfl.layers.conv2d({ filters: 6, kernelSize: 5, activation, name: a }),
      tfl.layers.averagePooling2d({ poolSize: 2, strides: 2, name: 's2' }),
      tfl.layers.conv2d({ filters: 16, kernelSize: 5, activation, name: b }),
      tfl.layers.averagePooling2d({ poolSize: 2, strides: 2, name: 's4' }),
    );
  } else {
    layers.push(
      tfl.layers.conv2d({ filters: 6, kernelSize: 5, activation, name: a, inputShape: [IMAGE_SIDE, IMAGE_SIDE, 1] }),
      tfl.layers.maxPooling2d({ poolSize: 2, strides: 2, name: 'pool1' }),
      tfl.layers.conv2d({ filters: 16, kernelSize: 5, activation, name: b }),
      tfl.layers.maxPooling2d({ poolSize: 2, strides: 2, name: 'pool2' }),
    );
  }
  layers.push(
    tfl.layers.flatten({ name: 'flatten' }),
    tfl.layers.dense({ units: 120, activation, name: c }),
    tfl.layers.dense({ units: 84, activation, name: d }),
    tfl.layers.dense({ units: NUM_CLASSES, activation: 'softmax', name: 'output' }),
  );
  return tfl.sequential({ layers, name: `lenet_dist_${spec.arch}` });
}

export interface ExportedModel {
  /** The content of model.json (tfjs "layers-model" format), pointing at `weightsFile`. */
  modelJson: Record<string, unknown>;
  /** Every weight of the layers model (masked entries as zeros), little-endian float32. */
  weightsBin: Buffer;
}

/** The model.json + weights pair for `flat` weights. */
export async function exportModel(spec: ModelSpec, flat: Float32Array, weightsFile: string): Promise<ExportedModel> {
  const model = buildLayersModel(spec);
  try {
    const full = expandWeights(spec, flat);
    const tensors = full.map((w, i) => tf.tensor(w, spec.params[i].shape, 'float32'));
    model.setWeights(tensors);
    tf.dispose(tensors);
    let artifacts: tf.io.ModelArtifacts | undefined;
    await model.save(tf.io.withSaveHandler(async (a) => {
      artifacts = a;
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
    }));
    if (!artifacts) throw new Error('tfjs did not produce model artifacts');
    const weightsBin = Buffer.concat(full.map((w) => float32Bytes(w)));
    return {
      modelJson: {
        modelTopology: artifacts.modelTopology,
        format: 'layers-model',
        generatedBy: artifacts.generatedBy,
        convertedBy: null,
        weightsManifest: [{ paths: [weightsFile], weights: artifacts.weightSpecs }],
      },
      weightsBin,
    };
  } finally {
    model.dispose();
  }
}
