// Plain HTTP on the coordinator's port: the live dashboard, its JSON feed, /metrics, the browser
// worker's page (/join, built into dist/browser/ by scripts/build-browser.mjs), and the probes:
// /healthz (the process serves: 200 while it runs) and /readyz (200 once it listens and until it
// stops or fails: waiting for workers, training or evaluating; 503 otherwise).
// Read-only; everything served comes from this package or its installed dependencies (no CDN).
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Registry } from 'prom-client';
import type { RunState } from '../metrics/state.js';

const DASHBOARD_DIR = fileURLToPath(new URL('../../dashboard/', import.meta.url));
const BROWSER_DIR = fileURLToPath(new URL('../browser/', import.meta.url));
const UPLOT_DIR = join(dirname(createRequire(import.meta.url).resolve('uplot/package.json')), 'dist');

const STATIC: Record<string, { file: string; type: string }> = {
  '/': { file: join(DASHBOARD_DIR, 'index.html'), type: 'text/html; charset=utf-8' },
  '/dashboard.js': { file: join(DASHBOARD_DIR, 'dashboard.js'), type: 'text/javascript; charset=utf-8' },
  '/dashboard.css': { file: join(DASHBOARD_DIR, 'dashboard.css'), type: 'text/css; charset=utf-8' },
  '/vendor/uPlot.iife.min.js': { file: join(UPLOT_DIR, 'uPlot.iife.min.js'), type: 'text/javascript; charset=utf-8' },
  '/vendor/uPlot.min.css': { file: join(UPLOT_DIR, 'uPlot.min.css'), type: 'text/css; charset=utf-8' },
  '/join': { file: join(BROWSER_DIR, 'join.html'), type: 'text/html; charset=utf-8' },
  '/join/page.js': { file: join(BROWSER_DIR, 'page.js'), type: 'text/javascript; charset=utf-8' },
  '/join/worker.js': { file: join(BROWSER_DIR, 'worker.js'), type: 'text/javascript; charset=utf-8' },
  '/join/wasm/tfjs-backend-wasm-simd.wasm': { file: join(BROWSER_DIR, 'tfjs-backend-wasm-simd.wasm'), type: 'application/wasm' },
};

const READY_PHASES = new Set<RunState['phase']>(['waiting', 'training', 'evaluating']);

export function httpHandler(state: RunState, registry: Registry): (req: IncomingMessage, res: ServerResponse) => void {
  const cache = new Map<string, Buffer>();
  return function onHttpRequest(req, res) {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/healthz' || path === '/readyz') {
      const ok = path === '/healthz' || READY_PHASES.has(state.phase);
      res.writeHead(ok ? 200 : 503, { 'content-type': 'text/plain', 'cache-control': 'no-store' }).end(`${ok ? 'ok' : 'not ready'}: ${state.phase}\n`);
      return;
    }
    if (path === '/api/state') {
      res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' }).end(JSON.stringify(state));
      return;
    }
    if (path === '/metrics') {
      registry.metrics().then(
        (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text),
        (err: Error) => res.writeHead(500).end(err.message),
      );
      return;
    }
    const entry = STATIC[path === '/index.html' ? '/' : path];
    if (!entry) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
      return;
    }
    let body = cache.get(entry.file);
    if (!body) {
      try {
        body = readFileSync(entry.file);
      } catch {
        res.writeHead(404, { 'content-type': 'text/plain' }).end(`${path} is not built in this installation (npm run build makes it)\n`);
        return;
      }
      cache.set(entry.file, body);
    }
    res.writeHead(200, { 'content-type': entry.type }).end(req.method === 'HEAD' ? undefined : body);
  };
}
