// IDX file parsing (the format MNIST ships in), raw or gzip-compressed, with strict validation.
import { gunzipSync } from 'node:zlib';
import { closeSync, existsSync, fstatSync, openSync, readSync } from 'node:fs';
import { DataError } from '../errors.js';

export const IDX_MAGIC_IMAGES = 2051; // unsigned byte, 3 dimensions
export const IDX_MAGIC_LABELS = 2049; // unsigned byte, 1 dimension

export interface IdxArray {
  /** Sizes of every dimension, outermost first. */
  dims: number[];
  /** The payload bytes, without the header. */
  data: Uint8Array;
}

const GZIP_MAGIC_0 = 0x1f;
const GZIP_MAGIC_1 = 0x8b;

/** Decodes an IDX buffer (gunzipping it first if it is gzip), checking the header against `expectedMagic`. */
export function parseIdx(bytes: Uint8Array, expectedMagic: number, fileName: string): IdxArray {
  let buf = bytes;
  if (buf.length >= 2 && buf[0] === GZIP_MAGIC_0 && buf[1] === GZIP_MAGIC_1) {
    try {
      buf = gunzipSync(buf);
    } catch (err) {
      throw new DataError(`${fileName}: gzip data is corrupt or truncated (${(err as Error).message})`);
    }
  }
  if (buf.length < 8) {
    throw new DataError(`${fileName}: file is ${buf.length} bytes, too short for an IDX header`);
  }
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const magic = view.getUint32(0, false);
  if (magic !== expectedMagic) {
    throw new DataError(
      `${fileName}: magic number ${magic} is not ${expectedMagic} ` +
        `(expected an IDX ${expectedMagic === IDX_MAGIC_IMAGES ? 'image' : 'label'} file)`,
    );
  }
  const rank = magic & 0xff;
  const headerBytes = 4 + 4 * rank;
  if (buf.length < headerBytes) {
    throw new DataError(`${fileName}: file is ${buf.length} bytes, too short for its ${rank}-dimension header`);
  }
  const dims: number[] = [];
  for (let i = 0; i < rank; i++) dims.push(view.getUint32(4 + 4 * i, false));
  const payload = dims.reduce((a, b) => a * b, 1);
  const expected = headerBytes + payload;
  if (buf.length !== expected) {
    throw new DataError(
      `${fileName}: file is ${buf.length} bytes but its header (${dims.join('x')}) needs ${expected}` +
        (buf.length < expected ? ' (truncated)' : ' (trailing bytes)'),
    );
  }
  return { dims, data: buf.subarray(headerBytes) };
}

/**
 * Reads a whole file into a SharedArrayBuffer, so that the decoded payload (a view into it) can
 * be handed to compute threads without a second 47 MB copy.
 */
function readShared(path: string): Uint8Array {
  const fd = openSync(path, 'r');
  try {
    const size = fstatSync(fd).size;
    const out = new Uint8Array(new SharedArrayBuffer(size));
    let off = 0;
    while (off < size) {
      const n = readSync(fd, out, off, size - off, off);
      if (n === 0) break;
      off += n;
    }
    return off === size ? out : out.subarray(0, off);
  } finally {
    closeSync(fd);
  }
}

/**
 * Reads `dir/name`, or `dir/name.gz` when only the compressed copy exists, and parses it.
 * Returns the path actually read along with the array.
 */
export function readIdxFile(dir: string, name: string, expectedMagic: number): IdxArray & { path: string } {
  const candidates = [`${dir}/${name}`, `${dir}/${name}.gz`];
  const path = candidates.find((p) => existsSync(p));
  if (path === undefined) {
    throw new DataError(`${candidates[0]}: file not found (nor ${name}.gz); check --data-dir`);
  }
  let bytes: Uint8Array;
  try {
    bytes = readShared(path);
  } catch (err) {
    throw new DataError(`${path}: cannot read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  return { ...parseIdx(bytes, expectedMagic, path), path };
}
