// The flat trainable weight vector: seeded initialisation, expansion to the tensors the forward
// pass uses (masked C3 entries become zeros), compaction of gradients back, and the digest.
import { createHash } from 'node:crypto';
import { endianness } from 'node:os';
import { VALUES_DIGEST_BYTES } from '../constants.js';
import { Rng, mixSeed } from '../data/rng.js';
import { paramOffset, type ModelSpec, type ParamSpec } from './architectures.js';

/** Salt that separates the initialisation stream from other uses of the run seed. */
const INIT_SALT = 0x494e_4954;

function fullSize(p: ParamSpec): number {
  return p.shape.reduce((a, b) => a * b, 1);
}

/** Keras-style initialisation: Glorot-uniform kernels, zero biases. */
export function initWeights(spec: ModelSpec, seed: number): Float32Array {
  const flat = new Float32Array(spec.size);
  const rng = new Rng(mixSeed(INIT_SALT, seed));
  let offset = 0;
  for (const p of spec.params) {
    if (p.kind === 'kernel') {
      const limit = Math.sqrt(6 / (p.fanIn + p.fanOut));
      for (let i = 0; i < p.size; i++) flat[offset + i] = rng.uniform(-limit, limit);
    }
    offset += p.size;
  }
  return flat;
}

/** Full-size arrays (one per ParamSpec, in its `shape`) from the flat vector: parameters [first, end). */
export function expandWeights(spec: ModelSpec, flat: Float32Array, first = 0, end = spec.params.length): Float32Array[] {
  const out: Float32Array[] = [];
  let offset = paramOffset(spec, first);
  for (const p of spec.params.slice(first, end)) {
    const slice = flat.subarray(offset, offset + p.size);
    if (!p.mask) {
      out.push(slice);
    } else {
      const full = new Float32Array(fullSize(p));
      let k = 0;
      for (let i = 0; i < full.length; i++) if (p.mask[i]) full[i] = slice[k++];
      out.push(full);
    }
    offset += p.size;
  }
  return out;
}

/**
 * Writes full-size per-parameter arrays (e.g. gradients) into `flat`, dropping masked entries.
 * `full[i]` belongs to parameter `first + i`; the parameters not given are left as they are.
 */
export function compactInto(spec: ModelSpec, full: Float32Array[], flat: Float32Array, first = 0): void {
  let offset = paramOffset(spec, first);
  full.forEach((src, i) => {
    const p = spec.params[first + i];
    if (!p.mask) {
      flat.set(src, offset);
    } else {
      let k = offset;
      for (let j = 0; j < src.length; j++) if (p.mask[j]) flat[k++] = src[j];
    }
    offset += p.size;
  });
}

/** Little-endian bytes of a float32 array (a view when the machine is little-endian). */
export function float32Bytes(a: Float32Array): Buffer {
  const view = Buffer.from(a.buffer, a.byteOffset, a.byteLength);
  if (endianness() === 'LE') return view;
  const copy = Buffer.from(view);
  copy.swap32();
  return copy;
}

/** SHA-256 (hex) of the trainable weights as little-endian float32, in model order. */
export function weightsSha256(flat: Float32Array): string {
  return createHash('sha256').update(float32Bytes(flat)).digest('hex');
}

/** The digest of float32 values as little-endian bytes (a sum or weights as sent): the first 16 bytes of their SHA-256. */
export function valuesDigest(values: Float32Array): Uint8Array {
  return new Uint8Array(createHash('sha256').update(float32Bytes(values)).digest().subarray(0, VALUES_DIGEST_BYTES));
}
