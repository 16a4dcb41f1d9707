// Challenge-response authentication: the coordinator sends a fresh random nonce, the worker
// answers HMAC-SHA256(token, nonce). The token never crosses the wire, and a recorded answer is
// useless on another connection because the nonce differs.
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { AUTH_NONCE_BYTES } from '../constants.js';

export function newNonce(): Uint8Array {
  return randomBytes(AUTH_NONCE_BYTES);
}

export function authProof(token: string, nonce: Uint8Array): Uint8Array {
  return createHmac('sha256', token).update(nonce).digest();
}

export function verifyProof(token: string, nonce: Uint8Array, proof: Uint8Array): boolean {
  const expected = authProof(token, nonce);
  return proof.length === expected.length && timingSafeEqual(expected, proof);
}
