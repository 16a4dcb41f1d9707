import { gzipSync } from 'node:zlib';
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { IDX_MAGIC_IMAGES, IDX_MAGIC_LABELS, parseIdx } from '../../../src/data/idx.js';
import { MNIST_FILES, embeddedMnistDir, loadMnist } from '../../../src/data/mnist.js';
import { DataError } from '../../../src/errors.js';
import { idxBytes, tempDir, writeTinyMnist } from '../../helpers.js';

describe('parseIdx', () => {
  const good = idxBytes([2, 28, 28], new Uint8Array(2 * 784).fill(7));

  it('reads dims and payload of a raw file', () => {
    const r = parseIdx(good, IDX_MAGIC_IMAGES, 'x');
    expect(r.dims).toEqual([2, 28, 28]);
    expect(r.data.length).toBe(2 * 784);
    expect(r.data[0]).toBe(7);
  });

  it('reads the same content from a gzipped copy', () => {
    const r = parseIdx(gzipSync(good), IDX_MAGIC_IMAGES, 'x');
    expect(r.dims).toEqual([2, 28, 28]);
    expect(Buffer.from(r.data)).toEqual(Buffer.from(parseIdx(good, IDX_MAGIC_IMAGES, 'x').data));
  });

  it('rejects a foreign magic number, naming the file', () => {
    expect(() => parseIdx(good, IDX_MAGIC_LABELS, 'labels.idx')).toThrow(/labels\.idx: magic number 2051 is not 2049/);
  });

  it('rejects a truncated file', () => {
    expect(() => parseIdx(good.subarray(0, good.length - 1), IDX_MAGIC_IMAGES, 'f')).toThrow(/truncated/);
  });

  it('rejects trailing bytes', () => {
    expect(() => parseIdx(Buffer.concat([good, Buffer.from([1])]), IDX_MAGIC_IMAGES, 'f')).toThrow(/trailing/);
  });

  it('rejects a file too short for a header', () => {
    expect(() => parseIdx(Buffer.from([0, 0, 8]), IDX_MAGIC_IMAGES, 'f')).toThrow(DataError);
  });

  it('rejects corrupt gzip data', () => {
    expect(() => parseIdx(gzipSync(good).subarray(0, 30), IDX_MAGIC_IMAGES, 'f.gz')).toThrow(/gzip data is corrupt/);
  });
});

describe('loadMnist', () => {
  const dirs: { remove: () => void }[] = [];
  afterEach(() => dirs.splice(0).forEach((d) => d.remove()));

  it('loads the embedded MNIST with the known labels, into shared memory', () => {
    const m = loadMnist({ trainLimit: 100, testLimit: 10 });
    expect(m.train.count).toBe(100);
    expect(m.test.count).toBe(10);
    expect(m.train.images.length).toBe(100 * 784);
    expect(Array.from(m.train.labels.slice(0, 8))).toEqual([5, 0, 4, 1, 9, 2, 1, 3]);
    expect(m.train.images.buffer).toBeInstanceOf(SharedArrayBuffer);
    expect(m.sha256).toMatch(/^[0-9a-f]{64}$/);
  });

  it('gives gzipped and raw copies of the same files the same identity', () => {
    const d = tempDir();
    dirs.push(d);
    const src = embeddedMnistDir();
    for (const name of Object.values(MNIST_FILES)) {
      if (name.startsWith('train')) copyFileSync(join(src, name), join(d.path, name));
      else writeFileSync(join(d.path, `${name}.gz`), gzipSync(readFileSync(join(src, name))));
    }
    const a = loadMnist({ trainLimit: 10, testLimit: 10 });
    const b = loadMnist({ dataDir: d.path, trainLimit: 10, testLimit: 10 });
    expect(b.sha256).toBe(a.sha256);
    expect(Buffer.from(b.test.images)).toEqual(Buffer.from(a.test.images));
  });

  it('gives different data a different identity', () => {
    const d = tempDir();
    dirs.push(d);
    writeTinyMnist(d.path, 20, 10);
    expect(loadMnist({ dataDir: d.path }).sha256).not.toBe(loadMnist({ trainLimit: 1, testLimit: 1 }).sha256);
  });

  it('names a missing file', () => {
    const d = tempDir();
    dirs.push(d);
    expect(() => loadMnist({ dataDir: d.path })).toThrow(/train-images-idx3-ubyte: file not found/);
  });

  it('rejects labels that do not match the images', () => {
    const d = tempDir();
    dirs.push(d);
    writeTinyMnist(d.path, 20, 10);
    writeFileSync(join(d.path, 'train-labels-idx1-ubyte'), idxBytes([19], new Uint8Array(19)));
    expect(() => loadMnist({ dataDir: d.path })).toThrow(/19 labels for 20 images/);
  });

  it('rejects images of the wrong size', () => {
    const d = tempDir();
    dirs.push(d);
    writeTinyMnist(d.path, 20, 10);
    writeFileSync(join(d.path, 't10k-images-idx3-ubyte'), idxBytes([10, 32, 32], new Uint8Array(10 * 1024)));
    expect(() => loadMnist({ dataDir: d.path })).toThrow(/images are 32x32, expected 28x28/);
  });
});
