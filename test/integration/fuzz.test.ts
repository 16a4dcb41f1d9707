// Hostile input while training runs: at least 10,000 random and mutated frames from a
// misbehaving client. Training completes, the weights equal the undisturbed run's, and the
// coordinator's memory stays bounded.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { attack } from '../fixtures/attacker.js';
import { epochDigests, startCli, startCoordinator, processesOfThisFile } from './run-cli.js';

const { dir, running } = processesOfThisFile('lenet-fuzz-');

// Long enough that training outlasts the attack (about 13 s of it on 2 cores; the training, about 20 s).
const RUN = ['--epochs', '4', '--train-limit', '6144', '--test-limit', '500', '--seed', '5', '--quiet', '--port', '0', '--threads', '1'];

function rssMb(pid: number): number {
  const m = readFileSync(`/proc/${pid}/status`, 'utf8').match(/VmRSS:\s+(\d+) kB/);
  return m ? Number(m[1]) / 1024 : 0;
}


describe('fuzzing the coordinator', () => {
  it('survives 10,000 hostile frames with the model unaffected and memory bounded', async () => {
    // The undisturbed run goes on beside the attacked one: its weights are the same bits however
    // busy the machine is, and the two together take about half the time of one after the other.
    const refMetrics = join(dir.path, 'ref.jsonl');
    const ref = startCli('lenet-coord', ['start', ...RUN, '--checkpoint-dir', join(dir.path, 'ref'), '--metrics-out', refMetrics]);
    running.push(ref);

    const metrics = join(dir.path, 'fuzz.jsonl');
    const { proc: c, url } = await startCoordinator([...RUN, '--checkpoint-dir', join(dir.path, 'fuzz'), '--metrics-out', metrics], running);
    const pid = c.child.pid!;
    const rssBefore = rssMb(pid);
    let rssMax = rssBefore;
    const sampler = setInterval(() => {
      try {
        rssMax = Math.max(rssMax, rssMb(pid));
      } catch {
        /* exited */
      }
    }, 100);
    const stats = await attack(url, 10_000, 42);
    clearInterval(sampler);
    const result = await c.done;
    console.log(`fuzz: ${stats.frames} frames over ${stats.connections} connections, ${stats.welcomed} joined, ${stats.poisoned} poisoned results; coordinator RSS ${rssBefore.toFixed(0)} -> max ${rssMax.toFixed(0)} MB`);
    expect(result.code, result.stderr).toBe(0);
    const refResult = await ref.done;
    expect(refResult.code, refResult.stderr).toBe(0);
    expect(stats.frames).toBeGreaterThanOrEqual(10_000);
    expect(stats.poisoned).toBeGreaterThan(0); // the attacker did get real assignments and answered them with poison
    expect(epochDigests(metrics)).toEqual(epochDigests(refMetrics));
    expect(rssMax - rssBefore).toBeLessThan(300);
    expect(result.stdout).toMatch(/non-finite values|was not assigned|are neither all 60806 values/);
  }, 300_000);
});
