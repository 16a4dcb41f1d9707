// The /join page: starts the browser worker (worker.ts) in a Web Worker and shows its state.
// The run's token comes in the URL's fragment (`/join#token=...`), which the browser never
// sends to a server, or from the field on the page.
import type { Report, StartMessage } from './worker.js';

const $ = <T extends HTMLElement>(id: string): T => document.getElementById(id) as T;
const fragment = new URLSearchParams(location.hash.slice(1));
const show = (id: string, text: string): void => void ($(id).textContent = text);

function start(token: string): void {
  $<HTMLFormElement>('join').hidden = true;
  // Test hooks (LENET_TEST_*) go to the worker in its script's query string, as a process's
  // environment would.
  const hooks = new URLSearchParams([...fragment].filter(([k]) => k.startsWith('LENET_TEST_'))).toString();
  const worker = new Worker(`/join/worker.js${hooks ? `?${hooks}` : ''}`);
  const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/`;
  const began = performance.now();
  let firstAt: { t: number; samples: number } | undefined;
  worker.onmessage = function onReport(e: MessageEvent<Report>): void {
    const r = e.data;
    if (r.kind === 'log') {
      const log = $('log');
      log.textContent = `${log.textContent}${r.msg}\n`.split('\n').slice(-200).join('\n');
    } else if (r.kind === 'status') {
      show('phase', r.phase);
      show('ranges', String(r.ranges));
      show('samples', String(r.samples));
      // Samples per second since the first range, so the time to join and prove is not counted.
      const now = performance.now();
      if (!firstAt && r.samples > 0) firstAt = { t: now, samples: r.samples };
      if (firstAt && now > firstAt.t) show('rate', ((r.samples - firstAt.samples) / ((now - firstAt.t) / 1000)).toFixed(0));
    } else {
      show('phase', r.ok ? 'done' : 'stopped');
      show('why', `${r.why} (after ${((performance.now() - began) / 1000).toFixed(1)} s)`);
      document.body.dataset.ended = r.ok ? 'ok' : 'failed';
      worker.terminate();
    }
  };
  const message: StartMessage = { url, token, name: `browser: ${navigator.userAgent}` };
  worker.postMessage(message);
}

const token = fragment.get('token');
if (token !== null || fragment.has('open')) start(token ?? '');
else {
  $<HTMLFormElement>('join').onsubmit = (e) => {
    e.preventDefault();
    start($<HTMLInputElement>('token').value);
  };
}
