// node:crypto's hashing as the worker uses it (SHA-256 digests and the HMAC proof), synchronous
// as Node's is, from @noble/hashes; random bytes from the browser's generator.
import { hmac } from '@noble/hashes/hmac.js';
import { sha256 } from '@noble/hashes/sha2.js';

interface Hash {
  update(data: Uint8Array | string): Hash;
  digest(): Uint8Array;
  digest(encoding: 'hex'): string;
}

const bytes = (data: Uint8Array | string): Uint8Array => (typeof data === 'string' ? new TextEncoder().encode(data) : new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
const hex = (b: Uint8Array): string => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');

function wrap(h: { update(b: Uint8Array): unknown; digest(): Uint8Array }): Hash {
  const out: Hash = {
    update(data) {
      h.update(bytes(data));
      return out;
    },
    digest: ((encoding?: 'hex') => (encoding === 'hex' ? hex(h.digest()) : h.digest())) as Hash['digest'],
  };
  return out;
}

function only(algorithm: string): void {
  if (algorithm !== 'sha256') throw new Error(`${algorithm}: only sha256 is available in the browser`);
}

export function createHash(algorithm: string): Hash {
  only(algorithm);
  return wrap(sha256.create());
}

export function createHmac(algorithm: string, key: Uint8Array | string): Hash {
  only(algorithm);
  return wrap(hmac.create(sha256, bytes(key)));
}

export function randomBytes(n: number): Uint8Array {
  return crypto.getRandomValues(new Uint8Array(n));
}

export function timingSafeEqual(a: Uint8Array, b: Uint8Array): boolean {
  let diff = a.length ^ b.length;
  for (let i = 0; i < Math.min(a.length, b.length); i++) diff |= a[i] ^ b[i];
  return diff === 0;
}
