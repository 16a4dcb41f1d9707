// Turning a PNG of a handwritten digit into a 28x28 MNIST-style input, the way MNIST itself was
// prepared (LeCun et al.): grey levels with ink bright on a dark background, the digit's bounding
// box scaled to fit 20x20 with its aspect ratio kept, then placed in a 28x28 field so that its
// centre of mass is at the centre. A 28x28 image with a dark background is taken as already
// prepared (MNIST's own test images written out as PNG) and used as it is.
import { readFileSync } from 'node:fs';
import { PNG } from 'pngjs';
import { IMAGE_PIXELS, IMAGE_SIDE } from '../constants.js';
import { UsageError } from '../errors.js';

const BOX = 20;
/** Grey level (0..255, after inversion) above which a pixel counts as ink for the bounding box. */
const INK_LEVEL = 32;

/** Grey levels 0..255, ink bright, from a PNG file. */
export function readGrey(path: string): { grey: Float64Array; width: number; height: number } {
  let png: PNG;
  try {
    png = PNG.sync.read(readFileSync(path));
  } catch (err) {
    throw new UsageError(`${path}: not a readable PNG (${(err as Error).message})`);
  }
  const { width, height, data } = png;
  const grey = new Float64Array(width * height);
  for (let i = 0; i < width * height; i++) {
    const a = data[i * 4 + 3] / 255;
    // Transparent pixels count as background (white paper), then luminance (Rec. 601).
    const lum = 0.299 * data[i * 4] + 0.587 * data[i * 4 + 1] + 0.114 * data[i * 4 + 2];
    grey[i] = lum * a + 255 * (1 - a);
  }
  // Dark ink on light paper (the usual photo or drawing) is inverted to MNIST's light on dark.
  let border = 0;
  let n = 0;
  for (let x = 0; x < width; x++) {
    border += grey[x] + grey[(height - 1) * width + x];
    n += 2;
  }
  for (let y = 0; y < height; y++) {
    border += grey[y * width] + grey[y * width + width - 1];
    n += 2;
  }
  if (border / n > 127) for (let i = 0; i < grey.length; i++) grey[i] = 255 - grey[i];
  return { grey, width, height };
}

/** Pixels in [0,1], 784 of them, ready for the model. */
export function mnistInput(path: string): Float32Array {
  const { grey, width, height } = readGrey(path);
  const out = new Float32Array(IMAGE_PIXELS);
  if (width === IMAGE_SIDE && height === IMAGE_SIDE) {
    for (let i = 0; i < IMAGE_PIXELS; i++) out[i] = grey[i] / 255;
    return out;
  }
  // Bounding box of the ink.
  let x0 = width;
  let y0 = height;
  let x1 = -1;
  let y1 = -1;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      if (grey[y * width + x] > INK_LEVEL) {
        x0 = Math.min(x0, x);
        y0 = Math.min(y0, y);
        x1 = Math.max(x1, x);
        y1 = Math.max(y1, y);
      }
    }
  }
  if (x1 < 0) return out; // blank image: all background
  const bw = x1 - x0 + 1;
  const bh = y1 - y0 + 1;
  const scale = BOX / Math.max(bw, bh);
  const tw = Math.max(1, Math.round(bw * scale));
  const th = Math.max(1, Math.round(bh * scale));
  // Area-average the box down (or bilinear up) to tw x th.
  const small = new Float64Array(tw * th);
  for (let ty = 0; ty < th; ty++) {
    for (let tx = 0; tx < tw; tx++) {
      const sx0 = x0 + tx / scale;
      const sy0 = y0 + ty / scale;
      const sx1 = x0 + (tx + 1) / scale;
      const sy1 = y0 + (ty + 1) / scale;
      let sum = 0;
      let weight = 0;
      for (let sy = Math.floor(sy0); sy < Math.ceil(sy1); sy++) {
        for (let sx = Math.floor(sx0); sx < Math.ceil(sx1); sx++) {
          const w = (Math.min(sx + 1, sx1) - Math.max(sx, sx0)) * (Math.min(sy + 1, sy1) - Math.max(sy, sy0));
          if (w <= 0 || sx >= width || sy >= height) continue;
          sum += grey[sy * width + sx] * w;
          weight += w;
        }
      }
      small[ty * tw + tx] = weight > 0 ? sum / weight : 0;
    }
  }
  // Centre of mass to the centre of the 28x28 field.
  let mass = 0;
  let cx = 0;
  let cy = 0;
  for (let y = 0; y < th; y++) {
    for (let x = 0; x < tw; x++) {
      const v = small[y * tw + x];
      mass += v;
      cx += v * (x + 0.5);
      cy += v * (y + 0.5);
    }
  }
  const ox = Math.round(IMAGE_SIDE / 2 - (mass > 0 ? cx / mass : tw / 2));
  const oy = Math.round(IMAGE_SIDE / 2 - (mass > 0 ? cy / mass : th / 2));
  for (let y = 0; y < th; y++) {
    for (let x = 0; x < tw; x++) {
      const X = x + ox;
      const Y = y + oy;
      if (X >= 0 && Y >= 0 && X < IMAGE_SIDE && Y < IMAGE_SIDE) out[Y * IMAGE_SIDE + X] = Math.min(1, small[y * tw + x] / 255);
    }
  }
  return out;
}
