// Bundles the browser worker (src/browser/) into dist/browser/, which the coordinator serves at
// /join. The worker is lenet-worker's own code (src/worker/remote.ts and what it imports); the
// few Node modules it touches are replaced by the browser's equivalents (src/browser/shims/),
// and the two modules that read a file of this package at start-up get that file's contents.
import { copyFileSync, mkdirSync, readFileSync } from 'node:fs';
import { build } from 'esbuild';

const root = new URL('..', import.meta.url);
const path = (p) => new URL(p, root).pathname;
const out = path('dist/browser/');
mkdirSync(out, { recursive: true });

const shim = (name) => path(`src/browser/shims/${name}.ts`);
const alias = {
  ws: shim('ws'),
  'node:crypto': shim('crypto'),
  'node:os': shim('os'),
  'node:fs': shim('unavailable'),
  'node:url': shim('unavailable'),
  'node:path': shim('unavailable'),
  'node:module': shim('unavailable'),
  'node:http': shim('unavailable'),
  'node:https': shim('unavailable'),
  'node:zlib': shim('unavailable'),
  'node:worker_threads': shim('unavailable'),
  piscina: shim('unavailable'),
};

/** Modules whose Node version reads a file: built with its contents instead. */
const fileContents = {
  name: 'file-contents',
  setup(b) {
    const text = (p) => JSON.stringify(readFileSync(path(p), 'utf8'));
    const version = JSON.stringify(JSON.parse(readFileSync(path('package.json'), 'utf8')).version);
    b.onLoad({ filter: /src[\\/]protocol[\\/]schema\.ts$/ }, () => ({ contents: `export const PROTO_SOURCE = ${text('proto/lenet.proto')};`, loader: 'ts' }));
    b.onLoad({ filter: /src[\\/]version\.ts$/ }, () => ({ contents: `export const PACKAGE_VERSION = ${version};`, loader: 'ts' }));
  },
};

const common = { bundle: true, platform: 'browser', target: 'chrome110', format: 'iife', sourcemap: true, minify: true, logLevel: 'warning', legalComments: 'none' };
await build({
  ...common,
  entryPoints: [path('src/browser/worker.ts')],
  outfile: `${out}worker.js`,
  alias,
  inject: [shim('globals')],
  define: { 'import.meta.url': 'self.location.href' },
  plugins: [fileContents],
  // onnxruntime-node and tfjs-node are loaded by name at run time in Node, never in a tab.
  external: ['onnxruntime-node', '@tensorflow/tfjs-node'],
});
await build({ ...common, entryPoints: [path('src/browser/page.ts')], outfile: `${out}page.js` });
copyFileSync(path('src/browser/join.html'), `${out}join.html`);
// The one WebAssembly build Node workers run too (SIMD, no threads): tabs get no other.
copyFileSync(path('node_modules/@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm-simd.wasm'), `${out}tfjs-backend-wasm-simd.wasm`);
