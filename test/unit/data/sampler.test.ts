import { describe, expect, it } from 'vitest';
import { EpochOrder, batchRange, epochPermutation, microbatchCount, stepsPerEpoch } from '../../../src/data/sampler.js';
import { distortImage, copyImage } from '../../../src/data/distort.js';

describe('EpochOrder', () => {
  it('names the samples at positions of any epoch as the permutation has them, in any order of epochs', () => {
    const order = new EpochOrder(7, 1000);
    for (const [epoch, start, count] of [[3, 10, 64], [0, 990, 10], [3, 0, 1000], [1, 500, 1]]) {
      expect(order.at(epoch, start, count)).toEqual(epochPermutation(7, epoch, 1000).subarray(start, start + count));
    }
  });

  it('refuses positions past the epoch\'s end', () => {
    expect(() => new EpochOrder(7, 1000).at(0, 990, 11)).toThrow('positions [990,1001) are outside an epoch of 1000 samples');
  });
});

describe('epochPermutation', () => {
  it('is a permutation, the same for the same seed and epoch', () => {
    const a = epochPermutation(7, 3, 1000);
    expect(Array.from(a).sort((x, y) => x - y)).toEqual(Array.from({ length: 1000 }, (_, i) => i));
    expect(epochPermutation(7, 3, 1000)).toEqual(a);
  });

  it('differs between epochs and between seeds', () => {
    const a = epochPermutation(7, 3, 1000);
    expect(epochPermutation(7, 4, 1000)).not.toEqual(a);
    expect(epochPermutation(8, 3, 1000)).not.toEqual(a);
  });
});

describe('batch plan', () => {
  const plan = { batchSize: 64, microbatch: 32, samples: 1000 };
  it('covers every sample once, the last batch short', () => {
    expect(stepsPerEpoch(plan)).toBe(16);
    let covered = 0;
    for (let s = 0; s < 16; s++) covered += batchRange(plan, s).count;
    expect(covered).toBe(1000);
    expect(batchRange(plan, 15)).toEqual({ start: 960, count: 40 });
    expect(microbatchCount(plan, 40)).toBe(2);
  });
});

describe('distortImage', () => {
  const images = new Uint8Array(784 * 2);
  for (let i = 0; i < images.length; i++) images[i] = (i * 31) % 256;

  it('is a function of (seed, epoch, position) only', () => {
    const a = new Float32Array(784);
    const b = new Float32Array(784);
    distortImage(images, 1, a, 0, 5, 2, 77);
    distortImage(images, 1, b, 0, 5, 2, 77);
    expect(b).toEqual(a);
    distortImage(images, 1, b, 0, 5, 2, 78);
    expect(b).not.toEqual(a);
  });

  it('keeps pixels in [0,1] and changes the image', () => {
    const plain = new Float32Array(784);
    const distorted = new Float32Array(784);
    copyImage(images, 1, plain, 0);
    distortImage(images, 1, distorted, 0, 5, 0, 3);
    expect(Math.min(...distorted)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...distorted)).toBeLessThanOrEqual(1);
    expect(distorted).not.toEqual(plain);
  });
});
