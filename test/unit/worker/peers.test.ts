// The peer endpoint's listen: a port in use is an error the worker can report in one line, not
// an unhandled 'error' event that ends the process.
import { createServer, type Server } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { PeerLinks } from '../../../src/worker/peers.js';

let taken: Server | undefined;
afterEach(() => taken?.close());

describe('peer links: listening', () => {
  it('a port in use rejects with a message naming --peer-port, and logs nothing else', async () => {
    taken = createServer();
    await new Promise<void>((resolve) => taken!.listen(0, '127.0.0.1', resolve));
    const port = (taken.address() as { port: number }).port;
    const lines: string[] = [];
    const links = new PeerLinks({ host: '127.0.0.1', port, log: (m) => lines.push(m), onFrame: () => undefined });
    await expect(links.listen()).rejects.toThrow(`port ${port} is already in use; pass another --peer-port`);
    expect(lines).toEqual([]);
    await links.close();
  });

  it('port 0 listens on a free port', async () => {
    const links = new PeerLinks({ host: '127.0.0.1', port: 0, log: () => undefined, onFrame: () => undefined });
    const port = await links.listen();
    expect(port).toBeGreaterThan(0);
    await links.close();
  });
});
