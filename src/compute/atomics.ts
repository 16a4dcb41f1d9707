// Waiting on shared counters from an event loop, without blocking it (threads block with
// Atomics.wait instead).

// Atomics.waitAsync (Node 16+): TypeScript types it only from lib es2024 on.
export const waitAsync = (Atomics as unknown as { waitAsync(a: Int32Array, index: number, value: number): { async: boolean; value: unknown } }).waitAsync;

/**
 * Resolves once `flag[index]` (raised with Atomics.notify) is at least `value`, or once
 * `stop()` says to stop waiting (checked on every wake-up).
 */
export async function untilAtLeast(flag: Int32Array, index: number, value: number, stop: () => boolean = () => false): Promise<void> {
  for (;;) {
    const have = Atomics.load(flag, index);
    if (have >= value || stop()) return;
    const wait = waitAsync(flag, index, have);
    if (wait.async) await wait.value;
  }
}
