// The scripted side of a conformance test: one WebSocket connection, either dialled to a real
// coordinator or a real worker's peer listener (a URL), or accepted from a real worker by a test
// that plays the coordinator (a socket). It decodes every frame it receives and records how the
// connection was closed; the test writes each frame it sends.
import WebSocket from 'ws';
import { authProof } from '../../src/protocol/auth.js';
import { decode, encode } from '../../src/protocol/codec.js';
import type { Message, RunConfigMessage } from '../../src/protocol/messages.js';
import { probeAnswer } from '../fixtures/probe-answer.js';

/** The token of every conformance run. */
export const TOKEN = 'conformance-token-0123456789';

export class Client {
  readonly ws: WebSocket;
  readonly frames: Message[] = [];
  closed: Promise<{ code: number; reason: string }>;
  private waiters: (() => void)[] = [];

  constructor(target: string | WebSocket) {
    this.ws = typeof target === 'string' ? new WebSocket(target, { maxPayload: 64 * 1024 * 1024 }) : target;
    this.ws.on('error', () => undefined);
    this.closed = new Promise((resolve) => this.ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() })));
    this.ws.on('message', (data) => {
      this.frames.push(decode(data as Buffer));
      this.waiters.splice(0).forEach((w) => w());
    });
  }

  /** The first frame of type `type` that `match` accepts (already here or yet to come), within `ms`. */
  async next<T extends Message['type']>(type: T, ms = 20_000, match: (f: Extract<Message, { type: T }>) => boolean = () => true): Promise<Extract<Message, { type: T }>> {
    const deadline = Date.now() + ms;
    for (;;) {
      const found = this.all(type).find(match);
      if (found) return found;
      if (Date.now() > deadline) throw new Error(`no ${type} within ${ms} ms; got ${this.frames.map((f) => f.type).join(', ')}`);
      await this.anything();
    }
  }

  /** The first `n` frames of type `type`, once they are here (within `ms`). */
  async first<T extends Message['type']>(type: T, n: number, ms = 20_000): Promise<Extract<Message, { type: T }>[]> {
    const deadline = Date.now() + ms;
    while (this.all(type).length < n) {
      if (Date.now() > deadline) throw new Error(`fewer than ${n} ${type} within ${ms} ms; got ${this.frames.map((f) => f.type).join(', ')}`);
      await this.anything();
    }
    return this.all(type).slice(0, n);
  }

  /** A frame came, or 200 ms passed. */
  private anything(): Promise<void> {
    return new Promise<void>((resolve) => {
      this.waiters.push(resolve);
      setTimeout(resolve, 200);
    });
  }

  /** Every frame of type `type` received so far. */
  all<T extends Message['type']>(type: T): Extract<Message, { type: T }>[] {
    return this.frames.filter((f) => f.type === type) as Extract<Message, { type: T }>[];
  }

  /** The weights of `version`, put together from the Weights frames received for it. */
  weightsOf(version: number, params = 60806): Float32Array {
    const w = new Float32Array(params);
    for (const f of this.all('weights')) if (f.version === version) w.set(f.values, f.offset);
    return w;
  }

  send(msg: Message | Uint8Array | string): void {
    this.ws.send(typeof msg === 'string' || msg instanceof Uint8Array ? msg : encode(msg));
  }

  hello(overrides: Partial<Extract<Message, { type: 'hello' }>> = {}, nonce?: Uint8Array): void {
    const proof = nonce ? authProof(TOKEN, nonce) : new Uint8Array(0);
    this.send({ type: 'hello', packageVersion: 'conformance', backend: 'scripted', threads: 1, datasetSha256: '', authProof: proof, name: 'conformance', peerUrl: '', ...overrides });
  }

  /** Challenge, Hello with the right proof, Welcome: the run's config. */
  async join(overrides: Partial<Extract<Message, { type: 'hello' }>> = {}): Promise<RunConfigMessage> {
    const challenge = await this.next('challenge');
    this.hello(overrides, challenge.nonce);
    return (await this.next('welcome')).config;
  }

  /** join(), then Ready and the honest probe answer: a member from the next step. */
  async admitted(overrides: Partial<Extract<Message, { type: 'hello' }>> = {}): Promise<RunConfigMessage> {
    const config = await this.join(overrides);
    this.send({ type: 'ready', threads: 1 });
    const probe = await this.next('probe');
    this.send({ type: 'probe_result', digest: await probeAnswer(probe, config) });
    return config;
  }

  /** Still open after `ms`: what a rule that ignores a frame promises. */
  async staysOpen(ms = 500): Promise<boolean> {
    await new Promise((r) => setTimeout(r, ms));
    return this.ws.readyState === WebSocket.OPEN;
  }

  close(): void {
    this.ws.terminate();
  }
}
