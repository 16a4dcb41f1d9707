// The two architectures as lists of trainable parameters, in "model order": the order of the flat
// weight vector, of the checkpoint's weights and of weightsSha256.
//
//   lenet5 (LeCun et al. 1998, modern output layer): 28x28 -> pad 2 -> normalise -> C1 6@5x5
//     -> avgpool 2 -> C3 16@5x5 with the paper's partial connection table -> avgpool 2
//     -> C5 dense 400->120 -> F6 dense 120->84 -> output dense 84->10 (softmax). 60,806 parameters.
//   keras (TF2 tutorial): 28x28 -> C 6@5x5 -> maxpool 2 -> C 16@5x5 -> maxpool 2
//     -> dense 256->120 -> dense 120->84 -> dense 84->10 (softmax). 44,426 parameters.
import { UsageError } from '../errors.js';

export const ARCHS = ['lenet5', 'keras'] as const;
export type ArchName = (typeof ARCHS)[number];
export const ACTIVATIONS = ['relu', 'tanh'] as const;
export type Activation = (typeof ACTIVATIONS)[number];

export interface ParamSpec {
  /** Layer name, shared with the exported tfjs layers model. */
  layer: string;
  kind: 'kernel' | 'bias';
  /** Shape of the tensor the forward pass uses. */
  shape: number[];
  /** Trainable entries: the tensor size, or fewer when `mask` hides some. */
  size: number;
  /** 1 where an entry of the full tensor is trainable; masked entries are always zero. */
  mask?: Uint8Array;
  /** Glorot fan-in and fan-out (kernels only). */
  fanIn: number;
  fanOut: number;
}

export interface ModelSpec {
  arch: ArchName;
  activation: Activation;
  params: ParamSpec[];
  /** Total trainable parameters (length of the flat weight vector). */
  size: number;
}

/**
 * The C3 connection table of the paper (Table I): which S2 maps each of the 16 C3 maps sees.
 * Maps 0-5 see 3 consecutive maps, 6-11 see 4 consecutive, 12-14 see 4 non-consecutive, 15 all 6.
 */
export function c3Connections(): number[][] {
  const table: number[][] = [];
  for (let j = 0; j < 6; j++) table.push([j, j + 1, j + 2].map((i) => i % 6));
  for (let j = 0; j < 6; j++) table.push([j, j + 1, j + 2, j + 3].map((i) => i % 6));
  table.push([0, 1, 3, 4], [1, 2, 4, 5], [0, 2, 3, 5], [0, 1, 2, 3, 4, 5]);
  return table;
}

function c3Mask(kernel: number, inMaps: number, outMaps: number): Uint8Array {
  const mask = new Uint8Array(kernel * kernel * inMaps * outMaps);
  c3Connections().forEach((inputs, out) => {
    for (let k = 0; k < kernel * kernel; k++) {
      for (const i of inputs) mask[(k * inMaps + i) * outMaps + out] = 1;
    }
  });
  return mask;
}

function conv(layer: string, k: number, inC: number, outC: number, mask?: Uint8Array): ParamSpec[] {
  const full = k * k * inC * outC;
  const size = mask ? mask.reduce((a, b) => a + b, 0) : full;
  return [
    { layer, kind: 'kernel', shape: [k, k, inC, outC], size, mask, fanIn: k * k * inC, fanOut: k * k * outC },
    { layer, kind: 'bias', shape: [outC], size: outC, fanIn: 0, fanOut: 0 },
  ];
}

function dense(layer: string, inUnits: number, outUnits: number): ParamSpec[] {
  return [
    { layer, kind: 'kernel', shape: [inUnits, outUnits], size: inUnits * outUnits, fanIn: inUnits, fanOut: outUnits },
    { layer, kind: 'bias', shape: [outUnits], size: outUnits, fanIn: 0, fanOut: 0 },
  ];
}

export function modelSpec(arch: ArchName, activation: Activation = 'relu'): ModelSpec {
  let params: ParamSpec[];
  switch (arch) {
    case 'lenet5':
      params = [
        ...conv('c1', 5, 1, 6),
        ...conv('c3', 5, 6, 16, c3Mask(5, 6, 16)),
        ...dense('c5', 400, 120),
        ...dense('f6', 120, 84),
        ...dense('output', 84, 10),
      ];
      break;
    case 'keras':
      params = [
        ...conv('conv1', 5, 1, 6),
        ...conv('conv2', 5, 6, 16),
        ...dense('dense1', 256, 120),
        ...dense('dense2', 120, 84),
        ...dense('output', 84, 10),
      ];
      break;
    default:
      throw new UsageError(`unknown --arch '${arch as string}'; use one of: ${ARCHS.join(', ')}`);
  }
  return { arch, activation, params, size: params.reduce((a, p) => a + p.size, 0) };
}

/** The index of the first dense layer's parameter (a 2-D kernel): the convolutions' come before. */
export function firstDenseParam(spec: ModelSpec): number {
  const i = spec.params.findIndex((p) => p.shape.length === 2);
  return i < 0 ? spec.params.length : i;
}

/** Where parameter `index` starts in the flat weights. */
export function paramOffset(spec: ModelSpec, index: number): number {
  let offset = 0;
  for (let i = 0; i < index; i++) offset += spec.params[i].size;
  return offset;
}

/**
 * Where the dense layers' parameters start in the flat weights (the convolutions' come first).
 * Their gradients are final before the backward pass reaches the convolutions, and they are 97%
 * of LeNet-5's parameters, so a remote worker sends them first (see compute/range.ts).
 */
export function denseOffset(spec: ModelSpec): number {
  return paramOffset(spec, firstDenseParam(spec));
}
