// The coordinator's WebSocket endpoint: accepts connections, runs the handshake, and hands
// authenticated workers to the trainer.
//
// Handshake of one connection:
//
//   OPEN --send Challenge(nonce)--> CHALLENGED --Hello ok--> Welcome, RemoteWorker(STARTING: the
//                                                              join probe decides, remote-worker.ts)
//                                       |
//                                       +-- wrong version or token, too many threads, bad frame,
//                                           or no Hello in HANDSHAKE_TIMEOUT_MS --> Reject, close
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from 'node:http';
import { readFileSync } from 'node:fs';
import { WebSocketServer, type WebSocket } from 'ws';
import { CLOSE_FLUSH_MS, HANDSHAKE_TIMEOUT_MS, MAX_FRAME_BYTES, MAX_THREADS } from '../constants.js';
import { UsageError } from '../errors.js';
import { newNonce, verifyProof } from '../protocol/auth.js';
import { decode, encode } from '../protocol/codec.js';
import {
  CLOSE_AUTH_FAILED,
  CLOSE_BAD_MESSAGE,
  CLOSE_VERSION_MISMATCH,
  CLOSE_WRONG_RESULT,
  ProtocolError,
} from '../protocol/errors.js';
import { RejectReason, type HelloMessage, type RunConfigMessage } from '../protocol/messages.js';
import { PACKAGE_VERSION } from '../version.js';
import type { Log } from '../metrics/log.js';

/** listen() failed because another process has the port (the default port may fall back). */
export class PortInUseError extends UsageError {}

export interface ServerOptions {
  host: string;
  port: number;
  token?: string;
  tlsCert?: string;
  tlsKey?: string;
  /** The run configuration sent to every worker; sendPixels is decided per worker. */
  config: Omit<RunConfigMessage, 'sendPixels'>;
  log: Log;
  /** Counts a refused connection by reason (for /metrics). */
  onReject?: (reason: string) => void;
  /** Why a worker that passed the handshake may still not join (a worker ejected from the run), or undefined. */
  refuse?: (hello: HelloMessage, host: string) => string | undefined;
  /** Plain HTTP requests on the same port (dashboard, /metrics). */
  onHttp?: (req: IncomingMessage, res: ServerResponse) => void;
  /** Called for every worker that passed the handshake. */
  onWorker: (ws: WebSocket, hello: HelloMessage, info: { workerId: number; address: string; sendPixels: boolean; browser: boolean }) => void;
}

export class CoordinatorServer {
  private wss: WebSocketServer | undefined;
  private server: HttpServer | HttpsServer | undefined;
  private nextWorkerId = 1;
  /** Rejected handshakes by reason, for logs and metrics. */
  readonly rejections = new Map<string, number>();
  url = '';
  /** The same endpoint as http(s)://, for the dashboard and /metrics. */
  httpUrl = '';

  constructor(private readonly opts: ServerOptions) {}

  /** Starts listening on the configured port, or on `portOverride`; returns the URL workers use. */
  async listen(portOverride?: number): Promise<string> {
    const host = this.opts.host;
    const port = portOverride ?? this.opts.port;
    const tls = this.opts.tlsCert !== undefined && this.opts.tlsKey !== undefined;
    // One HTTP(S) server per port: WebSocket upgrades go to the workers' endpoint, plain
    // requests to the dashboard and /metrics.
    const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
      if (this.opts.onHttp) this.opts.onHttp(req, res);
      else res.writeHead(404).end();
    };
    const server: HttpServer | HttpsServer = tls
      ? createHttpsServer({ cert: readFileSync(this.opts.tlsCert!), key: readFileSync(this.opts.tlsKey!) }, onRequest)
      : createHttpServer(onRequest);
    const wss = new WebSocketServer({ server, maxPayload: MAX_FRAME_BYTES, perMessageDeflate: false });
    // ws re-emits the HTTP server's errors; they are handled on the server below.
    wss.on('error', () => undefined);
    this.wss = wss;
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err: NodeJS.ErrnoException) => {
        reject(err.code === 'EADDRINUSE' ? new PortInUseError(`port ${port} on ${host} is already in use; pass another --port`) : new UsageError(`cannot listen on ${host}:${port} (${err.code ?? err.message})`));
      });
      server.listen(port, host, () => resolve());
    });
    wss.on('connection', (ws, req) => this.onConnection(ws, req));
    const address = server.address();
    const actualPort = typeof address === 'object' && address ? address.port : port;
    const hostPart = `${host.includes(':') ? `[${host}]` : host}:${actualPort}`;
    this.url = `${tls ? 'wss' : 'ws'}://${hostPart}`;
    this.httpUrl = `${tls ? 'https' : 'http'}://${hostPart}`;
    return this.url;
  }

  async close(): Promise<void> {
    const wss = this.wss;
    const server = this.server;
    if (!wss || !server) return;
    // A connection already closing (a goodbye sent, then ws.close) finishes its closing
    // handshake first, so the goodbye reaches the worker: cut off with it unsent, a worker takes
    // the end of the run for a lost link and tries to reconnect until its --connect-timeout.
    // One that does not finish within CLOSE_FLUSH_MS, and every open one, is cut off.
    await Promise.all(
      [...wss.clients].map((client) => {
        if (client.readyState !== client.CLOSING) return client.terminate();
        return new Promise<void>((resolve) => {
          const timer = setTimeout(() => {
            client.terminate();
            resolve();
          }, CLOSE_FLUSH_MS);
          client.once('close', () => {
            clearTimeout(timer);
            resolve();
          });
        });
      }),
    );
    await new Promise<void>((resolve) => wss.close(() => resolve()));
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    this.wss = undefined;
    this.server = undefined;
  }

  private reject(ws: WebSocket, address: string, reason: RejectReason, message: string, closeCode: number): void {
    const key = RejectReason[reason];
    this.rejections.set(key, (this.rejections.get(key) ?? 0) + 1);
    this.opts.onReject?.(`handshake_${key.toLowerCase()}`);
    this.opts.log(`rejected a worker from ${address}: ${message}`, { event: 'worker_rejected', address, reason: RejectReason[reason] });
    if (ws.readyState === ws.OPEN) ws.send(encode({ type: 'reject', reason, message }));
    ws.close(closeCode, message.slice(0, 120));
  }

  private onConnection(ws: WebSocket, req: IncomingMessage): void {
    const address = `${req.socket.remoteAddress ?? '?'}:${req.socket.remotePort ?? '?'}`;
    const origin = req.headers.origin;
    const nonce = newNonce();
    const timer = setTimeout(
      () => this.reject(ws, address, RejectReason.BAD_MESSAGE, `no hello within ${HANDSHAKE_TIMEOUT_MS} ms`, CLOSE_BAD_MESSAGE),
      HANDSHAKE_TIMEOUT_MS,
    );
    ws.once('close', () => clearTimeout(timer));
    ws.once('message', (data, isBinary) => {
      clearTimeout(timer);
      this.onHello(ws, address, nonce, data as Buffer, isBinary, origin !== undefined);
    });
    // ws ends the connection itself on an error: a socket error destroys it, a bad frame starts
    // the closing handshake with the frame's close code (1009 for one over MAX_FRAME_BYTES). A
    // terminate() here would cut that close frame off; the listener only keeps the error handled.
    ws.on('error', () => undefined);
    // A browser says which page opened the socket (lenet-worker sends no Origin). Only this
    // coordinator's own /join page may join: any other site open in a browser that reaches this
    // port (a run without a token listens on loopback, where every local browser does) would
    // otherwise be a worker.
    if (origin !== undefined && !sameHost(origin, req.headers.host)) {
      this.reject(ws, address, RejectReason.AUTH, `a page from ${origin.slice(0, 80)} may not join this run; open the coordinator's own /join page`, CLOSE_AUTH_FAILED);
      return;
    }
    ws.send(encode({ type: 'challenge', nonce, coordinatorVersion: PACKAGE_VERSION }));
  }

  private onHello(ws: WebSocket, address: string, nonce: Uint8Array, data: Buffer, isBinary: boolean, browser: boolean): void {
    let hello: HelloMessage;
    try {
      if (!isBinary) throw new ProtocolError('LENET_ERR_BAD_FRAME', 'text frame; the protocol is binary');
      const msg = decode(data);
      if (msg.type !== 'hello') throw new ProtocolError('LENET_ERR_BAD_FRAME', `expected hello, got ${msg.type}`);
      hello = msg;
    } catch (err) {
      const e = err as ProtocolError;
      const version = e.closeCode === CLOSE_VERSION_MISMATCH;
      this.reject(ws, address, version ? RejectReason.PROTOCOL_VERSION : RejectReason.BAD_MESSAGE, e.message, e.closeCode ?? CLOSE_BAD_MESSAGE);
      return;
    }
    const token = this.opts.token;
    if (token !== undefined && !verifyProof(token, nonce, hello.authProof)) {
      const why = hello.authProof.length === 0 ? 'no token given (pass --token or set LENET_TOKEN)' : 'wrong token';
      this.reject(ws, address, RejectReason.AUTH, `authentication failed: ${why}`, CLOSE_AUTH_FAILED);
      return;
    }
    if (hello.threads < 1 || hello.threads > MAX_THREADS) {
      // Work is shared in proportion to threads: an unbounded claim would take all of it.
      this.reject(ws, address, RejectReason.BAD_MESSAGE, `hello announces ${hello.threads} threads; a worker may have 1 to ${MAX_THREADS}`, CLOSE_BAD_MESSAGE);
      return;
    }
    const refused = this.opts.refuse?.(hello, address.replace(/:\d+$/, ''));
    if (refused !== undefined) {
      this.reject(ws, address, RejectReason.EXACTNESS, refused, CLOSE_WRONG_RESULT);
      return;
    }
    const workerId = this.nextWorkerId++;
    const sendPixels = hello.datasetSha256 !== this.opts.config.datasetSha256;
    ws.send(encode({ type: 'welcome', workerId, config: { ...this.opts.config, sendPixels } }));
    this.opts.onWorker(ws, hello, { workerId, address, sendPixels, browser });
  }
}

/** Whether a page's origin (`http://host:port`) is the host (and port) a request was sent to. */
function sameHost(origin: string, host: string | undefined): boolean {
  try {
    return host !== undefined && new URL(origin).host === new URL(`http://${host}`).host;
  } catch {
    return false;
  }
}
