// The browser worker: lenet-worker's own worker (src/worker/remote.ts) in a Web Worker, bundled
// for the browser by scripts/build-browser.mjs. It computes on tfjs's WebAssembly backend with
// the same binary as a Node worker (SIMD, without threads), on one thread, with the pixels the
// coordinator sends (a tab has no MNIST files). The page (page.ts) starts it and shows what it
// reports.
import * as tf from '@tensorflow/tfjs-core';
import { setWasmPaths } from '@tensorflow/tfjs-backend-wasm';
import { DEFAULT_CONNECT_TIMEOUT_S, TAB_STATUS_INTERVAL_MS } from '../constants.js';
import { RemoteWorkerProcess } from '../worker/remote.js';

/** What the page sends to start the worker. */
export interface StartMessage {
  url: string;
  token: string;
  name: string;
}

/** What the worker reports to the page. */
export type Report =
  | { kind: 'log'; msg: string }
  | { kind: 'status'; phase: RemoteWorkerProcess['phase']; ranges: number; samples: number }
  | { kind: 'end'; ok: boolean; why: string };

const post = (r: Report): void => (self as unknown as Worker).postMessage(r);

async function onStart(e: MessageEvent<StartMessage>): Promise<void> {
  // Node runs the SIMD build without threads; a different build may compute different bits (the
  // coordinator's join probe checks them).
  tf.env().set('WASM_HAS_MULTITHREAD_SUPPORT', false);
  setWasmPaths(new URL('./wasm/', self.location.href).href);
  const { url, token, name } = e.data;
  const worker = new RemoteWorkerProcess({ url, threads: 1, backend: 'wasm', pixelsOnly: true, token: token || undefined, connectTimeoutS: DEFAULT_CONNECT_TIMEOUT_S, name, log: (msg) => post({ kind: 'log', msg }) });
  const status = (): void => post({ kind: 'status', phase: worker.phase, ranges: worker.stats.ranges, samples: worker.stats.samples });
  const timer = setInterval(status, TAB_STATUS_INTERVAL_MS);
  try {
    await worker.run();
    status();
    post({ kind: 'end', ok: true, why: 'the run is complete' });
  } catch (err) {
    status();
    post({ kind: 'end', ok: false, why: (err as Error).message });
  } finally {
    clearInterval(timer);
  }
}

self.onmessage = onStart;
