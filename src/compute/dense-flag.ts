// A worker's dense-weights flag, in shared memory: which weights version's dense layers are in
// place, for computations that start on the convolutions while the dense layers' values of their
// version are still on their way (GradientTask.awaitDense), and how many times such waits were
// let go because their step was given up. Its threads block on it (awaitVersion); its main
// thread waits without blocking (untilVersion). Cell [0] is the version, [1] the let-go count.
import { untilAtLeast } from './atomics.js';

export type DenseFlag = Int32Array;

/** A version no computation waits beyond: the flag of a compute whose weights are always whole. */
export const EVERY_VERSION = 0x7fffffff;

/** A flag that says `version` is in place (none yet: -1), in shared memory. */
export function newDenseFlag(version = -1): DenseFlag {
  const flag = new Int32Array(new SharedArrayBuffer(8));
  flag[0] = version;
  return flag;
}

/** The newest version whose dense layers' weights are in place. */
export function versionInPlace(flag: DenseFlag): number {
  return Atomics.load(flag, 0);
}

/** Says that version `version` is in place, and wakes whoever waits on the flag. */
export function announceVersion(flag: DenseFlag, version: number): void {
  Atomics.store(flag, 0, version);
  Atomics.notify(flag, 0);
}

/**
 * Lets every computation that began before now and waits for dense weights go on without them:
 * the step it computes was given up, and its result is dropped. The version in place stays as
 * it is, so a later computation of the same version still waits for it.
 */
export function letGoWaits(flag: DenseFlag): void {
  Atomics.add(flag, 1, 1);
  Atomics.notify(flag, 0);
}

/** What a computation beginning now records, to know later whether its wait was let go (letGoSince). */
export function letGoCount(flag: DenseFlag): number {
  return Atomics.load(flag, 1);
}

/** Waits were let go since the let-go count was `seen`. */
export function letGoSince(flag: DenseFlag, seen: number | undefined): boolean {
  return seen !== undefined && Atomics.load(flag, 1) !== seen;
}

/** Blocks this thread until `version` (or newer) is in place, or waits were let go since `seen`. */
export function awaitVersion(flag: DenseFlag, version: number, seen?: number): void {
  for (;;) {
    const have = Atomics.load(flag, 0);
    if (have >= version || letGoSince(flag, seen)) return;
    Atomics.wait(flag, 0, have, 1000);
  }
}

/** Resolves once `version` (or newer) is in place, or once waits were let go since `seen`. */
export function untilVersion(flag: DenseFlag, version: number, seen?: number): Promise<void> {
  return untilAtLeast(flag, 0, version, () => letGoSince(flag, seen));
}
