// Atomics.waitAsync and Atomics.notify for memory that one thread uses alone (a tab's worker;
// see globals.ts): a wait is a promise that a notify on the same element resolves.

interface Waiter {
  element: number;
  resolve: (outcome: 'ok') => void;
}

export function oneThreadAtomics(): {
  waitAsync(a: Int32Array, index: number, value: number): { async: false; value: 'not-equal' } | { async: true; value: Promise<'ok'> };
  notify(a: Int32Array, index: number): number;
} {
  const waiting = new Map<ArrayBufferLike, Waiter[]>();
  return {
    waitAsync(a, index, value) {
      if (a[index] !== value) return { async: false, value: 'not-equal' };
      const element = a.byteOffset / 4 + index;
      return { async: true, value: new Promise<'ok'>((resolve) => waiting.set(a.buffer, [...(waiting.get(a.buffer) ?? []), { element, resolve }])) };
    },
    notify(a, index) {
      const element = a.byteOffset / 4 + index;
      const all = waiting.get(a.buffer) ?? [];
      const woken = all.filter((w) => w.element === element);
      waiting.set(a.buffer, all.filter((w) => w.element !== element));
      for (const w of woken) w.resolve('ok');
      return woken.length;
    },
  };
}
