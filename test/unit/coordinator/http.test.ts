// The probes a container platform asks: /healthz while the process serves, /readyz only while
// the run can take workers (waiting, training, evaluating).
import { describe, expect, it } from 'vitest';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { httpHandler } from '../../../src/coordinator/http.js';
import { RunState } from '../../../src/metrics/state.js';
import { prometheusRegistry } from '../../../src/metrics/prometheus.js';

function get(handler: ReturnType<typeof httpHandler>, url: string): { status: number; body: string } {
  const out = { status: 0, body: '' };
  const res = {
    writeHead(status: number) {
      out.status = status;
      return this;
    },
    end(body?: string) {
      out.body = body ?? '';
    },
  };
  handler({ method: 'GET', url } as IncomingMessage, res as unknown as ServerResponse);
  return out;
}

describe('probes', () => {
  it('/readyz follows the run phase; /healthz is always ok', () => {
    const state = new RunState();
    const handler = httpHandler(state, prometheusRegistry(state));
    const ready: Record<string, number> = {};
    for (const phase of ['starting', 'waiting', 'training', 'evaluating', 'stopping', 'stopped', 'done', 'failed'] as const) {
      state.phase = phase;
      ready[phase] = get(handler, '/readyz').status;
      expect(get(handler, '/healthz').status).toBe(200);
    }
    expect(ready).toEqual({ starting: 503, waiting: 200, training: 200, evaluating: 200, stopping: 503, stopped: 503, done: 503, failed: 503 });
    state.phase = 'stopping';
    expect(get(handler, '/readyz').body).toBe('not ready: stopping\n');
  });
});
