// For tests that time a fault to a message: the frames of the worker running in the test's process
// pass through the test first.
import WebSocket from 'ws';
import { decode } from '../../src/protocol/codec.js';
import type { Message } from '../../src/protocol/messages.js';

type Send = (...args: unknown[]) => void;
const realSend = WebSocket.prototype.send as Send;

/**
 * Every WebSocket in this process sends through `intercept` first, with the frame decoded. It
 * returns true when it takes the frame (which is then not sent; `send` sends a frame on that socket
 * later). Call the returned function to undo.
 */
export function interceptSends(intercept: (ws: WebSocket, msg: Message, frame: Uint8Array, send: (frame: Uint8Array) => void) => boolean): () => void {
  WebSocket.prototype.send = function (this: WebSocket, data: unknown, ...rest: unknown[]) {
    if (data instanceof Uint8Array && intercept(this, decode(data), data, (frame) => realSend.call(this, frame, { binary: true }))) return;
    realSend.call(this, data, ...rest);
  } as typeof WebSocket.prototype.send;
  return () => {
    WebSocket.prototype.send = realSend as typeof WebSocket.prototype.send;
  };
}
