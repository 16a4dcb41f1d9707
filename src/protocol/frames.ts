// Reused memory for the two frames that cross the wire every step: the coordinator's weights and
// a worker's gradient results, 243 KB each. A fresh buffer per frame costs more than filling it
// (on a 2-vCPU microVM, a first touch of new pages was about 18 us per 4 KB page, measured).
//
// ws sends a frame without copying it and holds it until the socket has taken every byte, so a
// buffer comes back to its pool only from the send callback of each socket it was handed to.
// Until then it is never written again; a pool that runs dry allocates.

/** Buffers of at least the size asked for; a frame handed back makes its buffer free again. */
export class FramePool {
  private readonly free: Uint8Array[] = [];

  /** At most `keep` free buffers are held; the rest are left to the garbage collector. */
  constructor(private readonly keep = 4) {}

  /** A buffer of at least `bytes`: a free one when there is one, else a new one. */
  take(bytes: number): Uint8Array {
    const i = this.free.findIndex((b) => b.length >= bytes);
    if (i >= 0) return this.free.splice(i, 1)[0];
    return new Uint8Array(bytes);
  }

  /** `frame` (a prefix of a buffer from take()) has been sent; its buffer may be reused. */
  give(frame: Uint8Array): void {
    if (this.free.length < this.keep) this.free.push(new Uint8Array(frame.buffer, 0, frame.buffer.byteLength));
  }

  /** Free buffers, for tests. */
  get size(): number {
    return this.free.length;
  }
}

/** One send of a shared frame: `sent` is for ws.send's callback. */
export interface SharedFrame {
  frame: Uint8Array;
  sent: () => void;
}

/**
 * One frame per version, sent to many sockets (the coordinator's weights: encoded once per
 * optimizer step, whoever needs them). A version's buffer returns to the pool once it is no
 * longer the newest and every send of it has completed.
 */
export class VersionedFrame {
  private current: { version: number; frame: Uint8Array; sending: number } | undefined;

  constructor(
    private readonly encode: (version: number, alloc: (bytes: number) => Uint8Array) => Uint8Array,
    private readonly pool = new FramePool(),
  ) {}

  /** The frame of `version`, and the callback to give ws.send for this one send of it. */
  take(version: number): SharedFrame {
    if (this.current?.version !== version) {
      const old = this.current;
      this.current = { version, frame: this.encode(version, (bytes) => this.pool.take(bytes)), sending: 0 };
      if (old && old.sending === 0) this.pool.give(old.frame);
    }
    const entry = this.current;
    entry.sending++;
    let done = false;
    return {
      frame: entry.frame,
      sent: () => {
        if (done) return;
        done = true;
        entry.sending--;
        if (entry.sending === 0 && entry !== this.current) this.pool.give(entry.frame);
      },
    };
  }
}
