// The rendezvous of a whole step's threads before their shards' updates (barrier.ts), on one
// thread: arrivals counted over the run, and a step given up on.
import { describe, expect, it } from 'vitest';
import { StepAbandoned, arriveAndWait, giveUp } from '../../../src/compute/barrier.js';

describe('the step barrier', () => {
  it('lets the last arrival of a step through at once, and counts arrivals over the run', () => {
    const barrier = new Int32Array(new SharedArrayBuffer(8));
    Atomics.store(barrier, 0, 1); // the step's other thread is in
    arriveAndWait(barrier, 2);
    arriveAndWait(barrier, 3); // the next step, one thread
    expect(Atomics.load(barrier, 0)).toBe(3);
  });

  it('a step given up on throws instead of waiting for sums that will not come', () => {
    const barrier = new Int32Array(new SharedArrayBuffer(8));
    giveUp(barrier, 2);
    expect(() => arriveAndWait(barrier, 2)).toThrow(StepAbandoned);
    // A later step waits for its own count, not for the one given up on.
    Atomics.store(barrier, 0, 3);
    arriveAndWait(barrier, 4);
    giveUp(barrier, 1); // an older count changes nothing
    expect(Atomics.load(barrier, 1)).toBe(2);
  });
});
