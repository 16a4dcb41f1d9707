// The rendezvous of a whole step's threads on the coordinator's pool before they update their
// shards: each adds its arrival once its sums are in the slab and waits until the step's last
// has (pool.ts gives every task the count to wait for). A thread that fails instead raises the
// count given up on, so that the others do not wait for sums that will not come.

/** barrier[0]: arrivals over the run; barrier[1]: the highest arrival count given up on. */
export type StepBarrier = Int32Array;

/** Another thread of the step failed: its sums will not come. */
export class StepAbandoned extends Error {}

/** Adds this thread's arrival, then blocks until `arrivals` is reached; throws StepAbandoned if given up on. */
export function arriveAndWait(barrier: StepBarrier, arrivals: number): void {
  Atomics.add(barrier, 0, 1);
  Atomics.notify(barrier, 0);
  for (;;) {
    const arrived = Atomics.load(barrier, 0);
    if (arrived >= arrivals) return;
    if (Atomics.load(barrier, 1) >= arrivals) throw new StepAbandoned('another thread of the step failed');
    Atomics.wait(barrier, 0, arrived, 1000);
  }
}

/** Wakes the threads waiting for `arrivals`, which then throw StepAbandoned. */
export function giveUp(barrier: StepBarrier, arrivals: number): void {
  for (let had = Atomics.load(barrier, 1); had < arrivals; had = Atomics.load(barrier, 1)) {
    if (Atomics.compareExchange(barrier, 1, had, arrivals) === had) break;
  }
  Atomics.notify(barrier, 0);
}
