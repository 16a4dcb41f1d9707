// Turning MNIST bytes into model inputs: pixels scaled to [0,1], optionally through a seeded random
// affine distortion (rotation, scale, shear, shift), the way LeCun et al. reached 0.8% error.
// Only + - * / and Math.floor are used (no Math.sin), so the result is bit-identical everywhere.
import { IMAGE_SIDE, IMAGE_PIXELS } from '../constants.js';
import { Rng, mixSeed } from './rng.js';

/** Salt that separates the distortion stream from the shuffle stream of the same run seed. */
const DISTORT_SALT = 0x4449_5354;

/** Limits of the random affine distortion (radians, ratios, pixels). */
export const DISTORT_MAX_ROTATION_RAD = 0.2;
export const DISTORT_MAX_SCALE = 0.1;
export const DISTORT_MAX_SHEAR = 0.15;
export const DISTORT_MAX_SHIFT_PX = 2;

const CENTER = (IMAGE_SIDE - 1) / 2;

/** Copies image `index` into `dst[offset..offset+784)` as floats in [0,1]. */
export function copyImage(images: Uint8Array, index: number, dst: Float32Array, offset: number): void {
  const base = index * IMAGE_PIXELS;
  for (let p = 0; p < IMAGE_PIXELS; p++) dst[offset + p] = images[base + p] / 255;
}

/** sin and cos by Taylor series: exact enough for |a| <= 0.2 and reproducible bit for bit. */
function sinCos(a: number): [number, number] {
  const a2 = a * a;
  const sin = a * (1 - (a2 / 6) * (1 - (a2 / 20) * (1 - a2 / 42)));
  const cos = 1 - (a2 / 2) * (1 - (a2 / 12) * (1 - a2 / 30));
  return [sin, cos];
}

/**
 * Writes a distorted copy of image `index` into `dst`. The distortion is drawn from
 * (seed, epoch, position), so a sample gets the same distortion wherever it is computed.
 */
export function distortImage(
  images: Uint8Array,
  index: number,
  dst: Float32Array,
  offset: number,
  seed: number,
  epoch: number,
  position: number,
): void {
  const rng = new Rng(mixSeed(DISTORT_SALT, seed, epoch, position));
  const [sin, cos] = sinCos(rng.uniform(-DISTORT_MAX_ROTATION_RAD, DISTORT_MAX_ROTATION_RAD));
  const sx = 1 + rng.uniform(-DISTORT_MAX_SCALE, DISTORT_MAX_SCALE);
  const sy = 1 + rng.uniform(-DISTORT_MAX_SCALE, DISTORT_MAX_SCALE);
  const shear = rng.uniform(-DISTORT_MAX_SHEAR, DISTORT_MAX_SHEAR);
  const tx = rng.uniform(-DISTORT_MAX_SHIFT_PX, DISTORT_MAX_SHIFT_PX);
  const ty = rng.uniform(-DISTORT_MAX_SHIFT_PX, DISTORT_MAX_SHIFT_PX);
  // Output pixel (u, v) samples the source at M * (u - c, v - c) + c + t, M = R * [[sx, shear], [0, sy]].
  const m00 = cos * sx;
  const m01 = cos * shear - sin * sy;
  const m10 = sin * sx;
  const m11 = sin * shear + cos * sy;
  const base = index * IMAGE_PIXELS;
  for (let v = 0; v < IMAGE_SIDE; v++) {
    for (let u = 0; u < IMAGE_SIDE; u++) {
      const du = u - CENTER;
      const dv = v - CENTER;
      const x = m00 * du + m01 * dv + CENTER + tx;
      const y = m10 * du + m11 * dv + CENTER + ty;
      dst[offset + v * IMAGE_SIDE + u] = bilinear(images, base, x, y) / 255;
    }
  }
}

function pixel(images: Uint8Array, base: number, x: number, y: number): number {
  if (x < 0 || y < 0 || x >= IMAGE_SIDE || y >= IMAGE_SIDE) return 0;
  return images[base + y * IMAGE_SIDE + x];
}

function bilinear(images: Uint8Array, base: number, x: number, y: number): number {
  const x0 = Math.floor(x);
  const y0 = Math.floor(y);
  const fx = x - x0;
  const fy = y - y0;
  const top = pixel(images, base, x0, y0) * (1 - fx) + pixel(images, base, x0 + 1, y0) * fx;
  const bottom = pixel(images, base, x0, y0 + 1) * (1 - fx) + pixel(images, base, x0 + 1, y0 + 1) * fx;
  return top * (1 - fy) + bottom * fy;
}
