// Protocol errors: a stable code for logs and docs/protocol.md, and the WebSocket close code to send.
import { LenetError } from '../errors.js';

/** WebSocket close codes used by lenet-dist (4000-4999 is the application range). */
export const CLOSE_NORMAL = 1000;
export const CLOSE_GOING_AWAY = 1001;
export const CLOSE_PROTOCOL_ERROR = 1002;
export const CLOSE_TOO_BIG = 1009;
export const CLOSE_AUTH_FAILED = 4001;
export const CLOSE_VERSION_MISMATCH = 4002;
export const CLOSE_BAD_MESSAGE = 4004;
export const CLOSE_HEARTBEAT_TIMEOUT = 4005;
export const CLOSE_SHUTTING_DOWN = 4006;
export const CLOSE_TOO_SLOW = 4007;
/** Its gradient of the join probe is not the coordinator's bits (Reject(EXACTNESS)). */
export const CLOSE_NOT_EXACT = 4008;
/** A result that recomputation did not reproduce (verification): the worker is ejected. */
export const CLOSE_WRONG_RESULT = 4009;

export class ProtocolError extends LenetError {
  readonly closeCode: number;
  constructor(code: string, message: string, closeCode = CLOSE_BAD_MESSAGE) {
    super(code, message, 5);
    this.name = 'ProtocolError';
    this.closeCode = closeCode;
  }
}
