// lenet-worker join's flags for TLS peer links: both files or neither, and files that exist.
import { describe, expect, it } from 'vitest';
import { parseJoinArgs } from '../../../src/cli/worker-args.js';
import { UsageError } from '../../../src/errors.js';
import { tempDir } from '../../helpers.js';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

const URL = 'wss://10.0.0.5:7070';

describe('lenet-worker join --peer-tls-cert/--peer-tls-key', () => {
  it('takes both, and the peer endpoint gets them', () => {
    const d = tempDir('lenet-worker-args-');
    const [cert, key] = [join(d.path, 'cert.pem'), join(d.path, 'key.pem')];
    writeFileSync(cert, 'c');
    writeFileSync(key, 'k');
    const parsed = parseJoinArgs([URL, '--peer-tls-cert', cert, '--peer-tls-key', key]);
    expect(parsed !== 'help' && parsed.peers?.tls).toEqual({ cert, key });
    const plain = parseJoinArgs([URL]);
    expect(plain !== 'help' && plain.peers?.tls).toBeUndefined();
    d.remove();
  });

  it('refuses one without the other, and files that do not exist, as usage errors', () => {
    expect(() => parseJoinArgs([URL, '--peer-tls-cert', '/nonexistent/cert.pem'])).toThrow(new UsageError('give --peer-tls-cert and --peer-tls-key together'));
    expect(() => parseJoinArgs([URL, '--peer-tls-cert', '/nonexistent/c.pem', '--peer-tls-key', '/nonexistent/k.pem'])).toThrow(/--peer-tls-cert \/nonexistent\/c\.pem: file not found/);
    expect(() => parseJoinArgs([URL, '--peer-tls-cert', '/x', '--peer-tls-key', '/y'])).toThrow(UsageError);
  });
});
