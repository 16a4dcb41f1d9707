// Node globals the shared worker code uses, for a Web Worker: Buffer (from the `buffer`
// package), setImmediate (a message-channel task, as prompt as Node's), process.env, read from
// the worker script's query string (the page's test hooks travel that way), and shared memory.
//
// Shared memory: the worker computes on its one thread, so nothing is shared, but its code
// allocates SharedArrayBuffers and waits on weights versions with Atomics.waitAsync. A page has
// SharedArrayBuffer only when cross-origin isolated, which a browser grants only to a trustworthy
// origin (https, or localhost), never to a coordinator on http://host:port. So a tab always uses
// plain memory, one code path wherever it is served from: ArrayBuffer for SharedArrayBuffer, and
// waitAsync / notify over it as the one thread's promises.
import { Buffer } from 'buffer';
import { oneThreadAtomics } from './memory.js';

const g = globalThis as Record<string, unknown>;
g.Buffer = Buffer;
g.SharedArrayBuffer = ArrayBuffer;
Object.assign(Atomics, oneThreadAtomics());
if (typeof g.setImmediate !== 'function') {
  const channel = new MessageChannel();
  const queue: (() => void)[] = [];
  channel.port1.onmessage = () => queue.shift()?.();
  g.setImmediate = (fn: () => void) => {
    queue.push(fn);
    channel.port2.postMessage(0);
  };
}
const env: Record<string, string> = {};
for (const [k, v] of new URL(self.location.href).searchParams) if (k.startsWith('LENET_TEST_')) env[k] = v;
g.process = { env, platform: 'browser', versions: {}, on: () => undefined };
