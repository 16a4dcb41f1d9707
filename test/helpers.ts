// Shared helpers for tests: temporary folders and synthetic IDX files.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export function tempDir(prefix = 'lenet-test-'): { path: string; remove: () => void } {
  const path = mkdtempSync(join(tmpdir(), prefix));
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}

/** An IDX file: big-endian magic (0x0000 08 rank) and dims, then bytes. */
export function idxBytes(dims: number[], payload: Uint8Array): Buffer {
  const header = Buffer.alloc(4 + 4 * dims.length);
  header.writeUInt32BE((0x08 << 8) | dims.length, 0);
  dims.forEach((d, i) => header.writeUInt32BE(d, 4 + 4 * i));
  return Buffer.concat([header, Buffer.from(payload)]);
}

/** Writes a tiny MNIST-shaped dataset (n train, m test images) into `dir`; pixels encode the label. */
export function writeTinyMnist(dir: string, n: number, m: number): void {
  const make = (count: number, prefix: string): void => {
    const labels = new Uint8Array(count);
    const images = new Uint8Array(count * 784);
    for (let i = 0; i < count; i++) {
      labels[i] = i % 10;
      for (let p = 0; p < 784; p++) images[i * 784 + p] = (p * 7 + i * 13 + labels[i] * 29) % 256;
    }
    writeFileSync(join(dir, `${prefix}-images-idx3-ubyte`), idxBytes([count, 28, 28], images));
    writeFileSync(join(dir, `${prefix}-labels-idx1-ubyte`), idxBytes([count], labels));
  };
  make(n, 'train');
  make(m, 't10k');
}
