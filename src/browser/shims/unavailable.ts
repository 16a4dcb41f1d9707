// What a browser tab does not have: files, servers, native modules, thread pools. A call fails
// the way a missing file does in Node, so the worker's own fallbacks apply (no MNIST here: the
// coordinator sends pixels; no onnxruntime-node: wasm). Only the names the bundle imports.
const missing = (what: string): never => {
  const err = new Error(`${what}: not available in the browser`) as Error & { code: string };
  err.code = 'ENOENT';
  throw err;
};
export const readFileSync = (path: unknown): never => missing(String(path));
export const existsSync = (): boolean => false;
export const openSync = (path: unknown): never => missing(String(path));
export const fstatSync = openSync;
export const readSync = openSync;
export const closeSync = (): void => undefined;
export const fileURLToPath = (url: URL | string): string => String(url);
export const join = (...parts: string[]): string => parts.join('/');
export const dirname = (path: string): string => path.replace(/\/[^/]*$/, '');
export const createRequire = (): ((id: string) => never) & { resolve(id: string): never } => Object.assign((id: string) => missing(id), { resolve: (id: string) => missing(id) });
export const createServer = (): never => missing('a server');
export const gunzipSync = (): never => missing('gzip');
export const receiveMessageOnPort = (): never => missing('a pool of compute threads');
export const { MessageChannel } = globalThis;
export class Piscina {
  constructor() {
    missing('a pool of compute threads');
  }
}
