// The `ws` client API the worker uses (src/worker/remote.ts), over the browser's WebSocket. Only
// what the worker calls: the constructor (its options are Node-only and ignored: a browser masks
// its frames and cannot skip TLS checks), send with a completion callback, close, terminate, and
// the 'message' (binary, as bytes), 'close' and 'error' events.
type Listener = (...args: never[]) => void;

export default class WebSocketShim {
  static readonly CONNECTING = 0;
  static readonly OPEN = 1;
  static readonly CLOSING = 2;
  static readonly CLOSED = 3;
  private readonly socket: WebSocket;
  private readonly listeners = new Map<string, Listener[]>();

  constructor(url: string, _options?: unknown) {
    this.socket = new WebSocket(url);
    this.socket.binaryType = 'arraybuffer';
    this.socket.onopen = () => this.emit('open');
    this.socket.onmessage = (e: MessageEvent) => {
      const binary = e.data instanceof ArrayBuffer;
      this.emit('message', binary ? new Uint8Array(e.data as ArrayBuffer) : new TextEncoder().encode(String(e.data)), binary);
    };
    this.socket.onerror = () => this.emit('error', new Error(`WebSocket error on ${url}`));
    this.socket.onclose = (e: CloseEvent) => this.emit('close', e.code, { length: e.reason.length, toString: () => e.reason });
  }

  get readyState(): number {
    return this.socket.readyState;
  }

  /** The browser queues what it cannot send yet; `done` runs once it has left this page. */
  send(data: Uint8Array, _options?: unknown, done?: () => void): void {
    this.socket.send(data);
    if (!done) return;
    const check = (): void => {
      if (this.socket.bufferedAmount === 0 || this.socket.readyState !== WebSocket.OPEN) done();
      else setTimeout(check, 1);
    };
    check();
  }

  close(code?: number, reason?: string): void {
    this.socket.close(code === undefined || code === 1000 || (code >= 3000 && code <= 4999) ? code : 1000, reason);
  }

  terminate(): void {
    this.socket.close();
  }

  on(event: string, fn: Listener): this {
    this.listeners.set(event, [...(this.listeners.get(event) ?? []), fn]);
    return this;
  }

  private emit(event: string, ...args: unknown[]): void {
    for (const fn of this.listeners.get(event) ?? []) (fn as (...a: unknown[]) => void)(...args);
  }
}

export { WebSocketShim as WebSocket };

/** A tab cannot listen: it takes no part in sharded steps (the worker is given no peers option). */
export class WebSocketServer {
  constructor() {
    throw new Error('a browser tab cannot listen for peers');
  }
}
