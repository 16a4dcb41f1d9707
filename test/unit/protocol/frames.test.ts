import { describe, expect, it } from 'vitest';
import { FramePool, VersionedFrame } from '../../../src/protocol/frames.js';

describe('FramePool', () => {
  it('hands a buffer out again only after it was given back, and allocates when none fits', () => {
    const pool = new FramePool(2);
    const a = pool.take(100);
    expect(pool.take(100)).not.toBe(a); // a is still out
    pool.give(a.subarray(0, 60)); // a frame is a prefix of its buffer
    const again = pool.take(80);
    expect(again.buffer).toBe(a.buffer);
    expect(again.length).toBe(100);
    pool.give(again);
    expect(pool.take(101).buffer).not.toBe(a.buffer); // too small
    expect(pool.size).toBe(1);
  });

  it('keeps at most `keep` free buffers', () => {
    const pool = new FramePool(2);
    for (const b of [pool.take(8), pool.take(8), pool.take(8)]) pool.give(b);
    expect(pool.size).toBe(2);
  });
});

describe('VersionedFrame', () => {
  const counting = (): { frames: VersionedFrame; encoded: number[] } => {
    const encoded: number[] = [];
    const frames = new VersionedFrame((version, alloc) => {
      encoded.push(version);
      const f = alloc(16).subarray(0, 16);
      f.fill(version);
      return f;
    });
    return { frames, encoded };
  };

  it('encodes each version once for all its sends', () => {
    const { frames, encoded } = counting();
    const a = frames.take(1);
    const b = frames.take(1);
    expect(b.frame).toBe(a.frame);
    expect(encoded).toEqual([1]);
  });

  it('never rewrites a frame that a socket may still be sending', () => {
    const { frames } = counting();
    const v1 = frames.take(1);
    const v2 = frames.take(2); // v1 is still being sent: v2 must not reuse its memory
    expect(v2.frame.buffer).not.toBe(v1.frame.buffer);
    const v3 = frames.take(3);
    expect(v3.frame.buffer).not.toBe(v1.frame.buffer);
    expect(Array.from(v1.frame)).toEqual(new Array(16).fill(1));
    v1.sent();
    v1.sent(); // a second call is ignored
    v2.sent();
    // v1 and v2 are done and no longer newest: their buffers are reused, v3's is not.
    const v4 = frames.take(4);
    expect([v1.frame.buffer, v2.frame.buffer]).toContain(v4.frame.buffer);
    expect(v4.frame.buffer).not.toBe(v3.frame.buffer);
  });

  it('reuses the newest frame only once a newer version replaces it', () => {
    const { frames } = counting();
    const v1 = frames.take(1);
    v1.sent();
    const v1again = frames.take(1); // still newest: same frame, not recycled
    expect(v1again.frame).toBe(v1.frame);
    v1again.sent();
    const v2 = frames.take(2);
    v2.sent();
    const v3 = frames.take(3);
    expect(v3.frame.buffer).toBe(v1.frame.buffer);
  });
});
