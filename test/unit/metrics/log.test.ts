import { describe, expect, it } from 'vitest';
import { createLog } from '../../../src/metrics/log.js';

describe('createLog', () => {
  it('writes plain lines in text format', () => {
    const out: string[] = [];
    createLog('text', (s) => out.push(s), 'coordinator')('worker-2 (a@b, 1 thread) joined', { worker: 'worker-2' });
    expect(out).toEqual(['worker-2 (a@b, 1 thread) joined\n']);
  });

  it('writes one JSON object per line with the fields, naming the worker', () => {
    const out: string[] = [];
    createLog('json', (s) => out.push(s), 'coordinator')('worker-2 left: closed', { event: 'worker_left', worker: 'worker-2' });
    expect(out).toHaveLength(1);
    expect(out[0].endsWith('\n')).toBe(true);
    const rec = JSON.parse(out[0]) as Record<string, unknown>;
    expect(rec).toMatchObject({ level: 'info', component: 'coordinator', msg: 'worker-2 left: closed', event: 'worker_left', worker: 'worker-2' });
    expect(Number.isNaN(Date.parse(rec.time as string))).toBe(false);
  });
});
