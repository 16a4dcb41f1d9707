// Links between workers, for sharded steps: each worker listens for its peers, and dials a peer
// the first time it has something to send it. A link carries frames one way, from dialer to
// listener: partial sums for the listener's shard (GradientResult) and the dialer's updated
// shard (Weights). The same framing as the coordinator's links; the dialer proves the run's token
// with the same HMAC challenge-response, and names the run (RunConfig.run_id) and itself.
//
//   listener: connection --send Challenge(nonce)--> AWAIT_HELLO --PeerHello ok--> OPEN (frames
//             go to onFrame) ; bad proof, other run, bad frame, no hello in time --> closed
//   dialer:   CONNECTING --Challenge--> send PeerHello, then every queued frame --> OPEN
import { createServer as createHttpServer } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { WebSocket, WebSocketServer } from 'ws';
import { HANDSHAKE_TIMEOUT_MS, MAX_FRAME_BYTES } from '../constants.js';
import { authProof, newNonce, verifyProof } from '../protocol/auth.js';
import { decode, encode } from '../protocol/codec.js';
import { CLOSE_AUTH_FAILED, CLOSE_BAD_MESSAGE, CLOSE_NORMAL } from '../protocol/errors.js';
import type { Message } from '../protocol/messages.js';
import { PACKAGE_VERSION } from '../version.js';

export interface PeerLinksOptions {
  host: string;
  /** 0: any free port. */
  port: number;
  token?: string;
  /** A certificate and key (PEM): the endpoint serves wss://. */
  tls?: { cert: Buffer; key: Buffer };
  /** CA certificate to trust when dialling wss:// peers (else the system's). */
  ca?: Buffer;
  log: (msg: string) => void;
  /** A frame from an authenticated peer, with the worker id it proved. */
  onFrame: (msg: Message, from: number) => void;
}

/** Who this worker is in the current run: what its hellos say and what it accepts. */
export interface PeerIdentity {
  runId: string;
  workerId: number;
}

interface Outgoing {
  ws: WebSocket;
  open: boolean;
  queue: Uint8Array[];
}

export class PeerLinks {
  private server: WebSocketServer | undefined;
  private identity: PeerIdentity | undefined;
  private readonly outgoing = new Map<string, Outgoing>();
  port = 0;

  constructor(private readonly opts: PeerLinksOptions) {}

  /** Starts listening; resolves with the port. */
  async listen(): Promise<number> {
    const o = this.opts;
    // One HTTP(S) server under the WebSocket endpoint, so that TLS or not is only its kind.
    const http = o.tls ? createHttpsServer({ cert: o.tls.cert, key: o.tls.key }) : createHttpServer();
    const server = new WebSocketServer({ server: http, maxPayload: MAX_FRAME_BYTES, perMessageDeflate: false });
    // ws re-emits the HTTP server's errors, a failed listen's too: without a listener from the
    // start, a port in use ended the process with a stack trace. That one is the rejection below.
    let listening = false;
    server.on('error', (err) => listening && this.opts.log(`worker: peer endpoint error (${err.message})`));
    await new Promise<void>((resolve, reject) => {
      http.once('error', (err: NodeJS.ErrnoException) =>
        reject(new Error(err.code === 'EADDRINUSE' ? `port ${o.port} is already in use; pass another --peer-port` : (err.code ?? err.message))),
      );
      http.listen(o.port, o.host, resolve);
    });
    listening = true;
    server.on('close', () => http.close());
    server.on('connection', (ws, req) => this.onConnection(ws, `${req.socket.remoteAddress}:${req.socket.remotePort}`));
    this.server = server;
    const address = server.address();
    this.port = typeof address === 'object' && address ? address.port : this.opts.port;
    return this.port;
  }

  /** A new run (a new welcome): links of the last one are closed. */
  join(identity: PeerIdentity): void {
    this.identity = identity;
    this.closeOutgoing();
  }

  /** Sends `frame` to the peer at `url`, dialling it first if needed. */
  send(url: string, frame: Uint8Array): void {
    let link = this.outgoing.get(url);
    if (!link || link.ws.readyState === WebSocket.CLOSED || link.ws.readyState === WebSocket.CLOSING) link = this.dial(url);
    if (link.open) link.ws.send(frame, { binary: true });
    else link.queue.push(frame);
  }

  /** Everything sent to peers so far is in the kernel's hands (see flushed()). */
  async flushed(): Promise<void> {
    await Promise.all([...this.outgoing.values()].filter((l) => l.open).map((l) => flushed(l.ws)));
  }

  async close(): Promise<void> {
    this.closeOutgoing();
    const server = this.server;
    this.server = undefined;
    if (!server) return;
    for (const client of server.clients) client.terminate();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private closeOutgoing(): void {
    for (const link of this.outgoing.values()) link.ws.terminate();
    this.outgoing.clear();
  }

  private dial(url: string): Outgoing {
    const ws = new WebSocket(url, { maxPayload: MAX_FRAME_BYTES, perMessageDeflate: false, generateMask: (mask: Buffer) => mask.fill(0), ca: this.opts.ca });
    const link: Outgoing = { ws, open: false, queue: [] };
    this.outgoing.set(url, link);
    ws.on('error', (err) => this.opts.log(`worker: peer link to ${url} failed (${err.message})`));
    ws.on('close', () => {
      if (this.outgoing.get(url) === link) this.outgoing.delete(url);
    });
    ws.once('message', (data) => {
      const id = this.identity;
      let nonce: Uint8Array;
      try {
        const msg = decode(data as Buffer);
        if (msg.type !== 'challenge') throw new Error(`expected a challenge, got ${msg.type}`);
        nonce = msg.nonce;
      } catch (err) {
        this.opts.log(`worker: peer ${url} did not open the link properly (${(err as Error).message})`);
        ws.close(CLOSE_BAD_MESSAGE);
        return;
      }
      if (!id) return void ws.close(CLOSE_NORMAL);
      const proof = this.opts.token ? authProof(this.opts.token, nonce) : new Uint8Array(0);
      ws.send(encode({ type: 'peer_hello', runId: id.runId, workerId: id.workerId, authProof: proof }), { binary: true });
      link.open = true;
      for (const frame of link.queue.splice(0)) ws.send(frame, { binary: true });
    });
    return link;
  }

  private onConnection(ws: WebSocket, address: string): void {
    const nonce = newNonce();
    let from: number | undefined;
    const timer = setTimeout(() => ws.close(CLOSE_BAD_MESSAGE, 'no peer hello in time'), HANDSHAKE_TIMEOUT_MS);
    ws.on('close', () => clearTimeout(timer));
    ws.on('error', () => ws.terminate());
    ws.on('message', (data, isBinary) => {
      let msg: Message;
      try {
        if (!isBinary) throw new Error('text frame');
        msg = decode(data as Buffer);
      } catch (err) {
        this.opts.log(`worker: bad frame from peer ${address} (${(err as Error).message}); link closed`);
        ws.close(CLOSE_BAD_MESSAGE);
        return;
      }
      if (from !== undefined) {
        this.opts.onFrame(msg, from);
        return;
      }
      clearTimeout(timer);
      const id = this.identity;
      const token = this.opts.token;
      if (msg.type !== 'peer_hello' || !id || msg.runId !== id.runId) {
        this.opts.log(`worker: refused a peer link from ${address}: ${msg.type === 'peer_hello' ? 'another run' : `expected peer_hello, got ${msg.type}`}`);
        ws.close(CLOSE_BAD_MESSAGE);
        return;
      }
      if (token !== undefined && !verifyProof(token, nonce, msg.authProof)) {
        this.opts.log(`worker: refused a peer link from ${address}: authentication failed`);
        ws.close(CLOSE_AUTH_FAILED);
        return;
      }
      from = msg.workerId;
    });
    ws.send(encode({ type: 'challenge', nonce, coordinatorVersion: PACKAGE_VERSION }), { binary: true });
  }
}

/**
 * Resolves once everything sent on `ws` so far has been handed to the kernel: its socket has
 * emptied its buffer. A worker computing on its main thread waits for this before it computes,
 * or what it sent last (a shard's new values its peers need to start) would sit in that buffer
 * until the computation yields.
 */
export function flushed(ws: WebSocket): Promise<void> {
  const socket = (ws as unknown as { _socket?: { writableLength: number; once(event: 'drain' | 'close', fn: () => void): void } })._socket;
  if (!socket || socket.writableLength === 0) return Promise.resolve();
  return new Promise((resolve) => {
    socket.once('drain', resolve);
    socket.once('close', resolve);
  });
}
