// lenet-coord start's flags: a missing TLS file is named with its flag; the step deadline's bounds.
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

describe('lenet-coord start --step-deadline', () => {
  it('is seconds, 10 by default, within (0, 60]', () => {
    const config = (argv: string[]) => parseStartArgs(argv) as Exclude<ReturnType<typeof parseStartArgs>, 'help'>;
    expect(config([]).stepDeadlineS).toBe(10);
    expect(config(['--step-deadline', '1.5']).stepDeadlineS).toBe(1.5);
    expect(() => parseStartArgs(['--step-deadline', '0'])).toThrow(new UsageError('--step-deadline must be greater than 0 and at most 60 (got 0)'));
    expect(() => parseStartArgs(['--step-deadline', 'soon'])).toThrow(new UsageError("--step-deadline must be a number (got 'soon')"));
  });
});
