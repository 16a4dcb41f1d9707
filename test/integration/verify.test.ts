// Checked results, with real processes: a worker that perturbs one value in 1 of every 20 results
// is caught by recomputation and ejected, and the run ends on an honest run's weights.
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { epochDigests, runCli, startCli, startCoordinator, processesOfThisFile } from './run-cli.js';

const { dir, running } = processesOfThisFile('lenet-verify-');

// Batch 128 = 4 microbatches: the local thread and the worker both get a range every step.
const RUN = ['--epochs', '1', '--train-limit', '4096', '--batch-size', '128', '--test-limit', '300', '--seed', '8', '--quiet', '--port', '0'];

describe('verification by recomputation', () => {
  let reference: string[];

  it('reference: one local thread', async () => {
    const metrics = join(dir.path, 'ref.jsonl');
    const r = await runCli('lenet-coord', ['start', ...RUN, '--threads', '1', '--checkpoint-dir', join(dir.path, 'ref'), '--metrics-out', metrics]);
    expect(r.code, r.stderr).toBe(0);
    reference = epochDigests(metrics);
  });

  // Honest workers are never ejected, whoever recomputes (--threads 0: the coordinator's main
  // thread): a lone worker (not verified: it computes the next step meanwhile) and two star workers.
  for (const workers of [1, 2]) {
    it(`${workers} honest worker(s), --threads 0, every result checked: none ejected, an honest run's weights`, async () => {
      const metrics = join(dir.path, `honest${workers}.jsonl`);
      const { proc: c, url } = await startCoordinator([...RUN, '--threads', '0', '--wait-workers', String(workers), '--allreduce', 'star', '--verify-fraction', '1', '--checkpoint-dir', join(dir.path, `honest${workers}`), '--metrics-out', metrics], running);
      const ws = Array.from({ length: workers }, () => startCli('lenet-worker', ['join', url, '--threads', '1']));
      running.push(...ws);
      const result = await c.done;
      expect(result.code, result.stderr).toBe(0);
      expect(result.stdout).not.toMatch(/ejected/);
      expect(epochDigests(metrics)).toEqual(reference);
    });
  }

  // Every result checked: the first corrupted one is caught before the step uses it, so the
  // weights are an honest run's. With a fraction below 1 a corrupted result may go unchecked
  // before one is caught (the guarantee is (1 - F·q)^k): the worker is still ejected.
  for (const fraction of ['1', '0.5']) {
    it(`a worker corrupting 1 result in 20 is ejected (--verify-fraction ${fraction})${fraction === '1' ? ", and the weights are an honest run's" : ''}`, async () => {
      const metrics = join(dir.path, `v${fraction}.jsonl`);
      // With 0.5, 16,384 samples: 128 steps, about 12 corrupted results; all go unchecked with probability 0.5^12.
      const run = fraction === '1' ? RUN : [...RUN, '--train-limit', '16384'];
      const { proc: c, url } = await startCoordinator([...run, '--threads', '1', '--wait-workers', '1', '--verify-fraction', fraction, '--checkpoint-dir', join(dir.path, `v${fraction}`), '--metrics-out', metrics], running);
      const cheat = startCli('lenet-worker', ['join', url, '--threads', '1', '--name', 'cheat'], { ...process.env, LENET_TEST_CORRUPT_EVERY: '20' });
      running.push(cheat);
      const [, id] = await c.waitFor(/(worker-\d+) \(cheat@\S+\) sent sums for microbatches \[\d+,\d+\) of step \d+ that recomputation does not give; ejected/);
      const result = await c.done;
      expect(result.code, result.stderr).toBe(0);
      expect(result.stdout).toMatch(new RegExp(`${id} \\(cheat@\\S+, 1 thread\\) left: its sums for \\[\\d+,\\d+\\) of step \\d+ are not what recomputation gives`));
      if (fraction !== '1') return;
      expect(epochDigests(metrics)).toEqual(reference);
      // Ejected early in the run, it reconnects at once, and is refused: it was ejected from this run.
      const refused = await cheat.done;
      expect(refused.code).toBe(5);
      expect(refused.stderr).toMatch(/LENET_ERR_REJECTED_EXACTNESS: the coordinator rejected this worker: cheat@127\.0\.0\.1 was ejected from this run/);
    });
  }
});
