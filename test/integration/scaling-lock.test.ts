// `npm run scaling` runs one at a time: a second one, started while the first holds the lock,
// stops at once with an error naming the first, and leaves the first's lock alone.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('../..', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'lenet-scaling-lock-'));
// Stands in for a running `npm run scaling`: the lock is told apart by the owner's command line.
const owner = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)', 'scaling.mjs'], { stdio: 'ignore' });

afterAll(() => {
  owner.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

describe.runIf(process.platform === 'linux')('npm run scaling', () => {
  it('refuses to start while another run holds the lock', async () => {
    await new Promise((r) => setTimeout(r, 200));
    const lock = join(dir, 'scaling.lock');
    writeFileSync(lock, String(owner.pid));
    const run = spawnSync(process.execPath, [join(root, 'scripts/scaling.mjs'), '--parts', 'sim', '--out', join(dir, 'out')], {
      encoding: 'utf8',
      env: { ...process.env, LENET_SCALING_LOCK: lock },
      timeout: 30_000,
    });
    expect(run.status).toBe(1);
    expect(run.stderr).toContain(`another npm run scaling (pid ${owner.pid}) is running`);
    expect(run.stdout).not.toContain('scaling:'); // nothing ran
    expect(readFileSync(lock, 'utf8')).toBe(String(owner.pid));
  });
});
