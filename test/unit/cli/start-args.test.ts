// lenet-coord start's flags: a missing TLS file is named with its flag.
import { describe, expect, it } from 'vitest';
import { parseStartArgs } from '../../../src/cli/start-args.js';
import { UsageError } from '../../../src/errors.js';

describe('lenet-coord start --tls-cert/--tls-key', () => {
  it('go together, and a missing file is named with its flag', () => {
    expect(() => parseStartArgs(['--tls-cert', '/nonexistent/c.pem'])).toThrow(new UsageError('--tls-cert and --tls-key go together'));
    expect(() => parseStartArgs(['--tls-cert', '/nonexistent/c.pem', '--tls-key', '/nonexistent/k.pem'])).toThrow(new UsageError('--tls-cert /nonexistent/c.pem: file not found'));
    expect(() => parseStartArgs(['--tls-cert', import.meta.filename, '--tls-key', '/nonexistent/k.pem'])).toThrow(new UsageError('--tls-key /nonexistent/k.pem: file not found'));
  });
});
