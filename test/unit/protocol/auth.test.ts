import { describe, expect, it } from 'vitest';
import { authProof, newNonce, verifyProof } from '../../../src/protocol/auth.js';

describe('challenge-response', () => {
  it('accepts the proof for the same token and nonce only', () => {
    const nonce = newNonce();
    const proof = authProof('tok', nonce);
    expect(verifyProof('tok', nonce, proof)).toBe(true);
    expect(verifyProof('other', nonce, proof)).toBe(false);
    expect(verifyProof('tok', newNonce(), proof)).toBe(false);
    expect(verifyProof('tok', nonce, proof.subarray(0, 16))).toBe(false);
  });

  it('never contains the token', () => {
    const token = 'a-very-recognisable-token';
    expect(Buffer.from(authProof(token, newNonce())).toString('latin1')).not.toContain(token);
  });
});
