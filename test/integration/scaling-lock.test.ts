// `npm run scaling` runs one at a time: a second one, started while the first holds the lock,
// stops at once with an error naming the first, and leaves the first's lock alone.
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { tempDir } from '../helpers.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const dir = tempDir('lenet-scaling-lock-');
afterAll(() => dir.remove());

describe.runIf(process.platform === 'linux')('npm run scaling', () => {
  it('refuses to start while another run holds the lock', async () => {
    // Stands in for a running `npm run scaling`: the lock tells its owner by its command line.
    const owner = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)', 'scaling.mjs'], { stdio: 'ignore' });
    try {
      await once(owner, 'spawn');
      const lock = join(dir.path, 'scaling.lock');
      writeFileSync(lock, String(owner.pid));
      const run = spawnSync(process.execPath, [join(root, 'scripts/scaling.mjs'), '--parts', 'sim', '--out', join(dir.path, 'out')], {
        encoding: 'utf8',
        env: { ...process.env, LENET_SCALING_LOCK: lock },
        timeout: 30_000,
      });
      expect(run.status).toBe(1);
      expect(run.stderr).toContain(`another npm run scaling (pid ${owner.pid}) is running`);
      expect(run.stdout).not.toContain('scaling:'); // nothing ran
      expect(readFileSync(lock, 'utf8')).toBe(String(owner.pid));
    } finally {
      owner.kill('SIGKILL');
    }
  });
});
