// The dashboard in a real headless browser (Debian's chromium driven by playwright-core), and
// /metrics scraped twice during a run. Saves a screenshot; with UPDATE_SCREENSHOTS=1 into
// docs/dashboard.png, the one the README shows.
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser } from 'playwright-core';
import { afterEach, describe, expect, it } from 'vitest';
import { HAVE_CHROMIUM, launchChromium } from './chromium.js';
import { startCli, type RunningCli, processesOfThisFile } from './run-cli.js';

const DOCS = fileURLToPath(new URL('../../docs/', import.meta.url));
const { dir, running } = processesOfThisFile('lenet-dash-');
let browser: Browser | undefined;
// Registered after the helper's hook, so it runs first: the browser closes before its server goes.
afterEach(async () => {
  await browser?.close();
  browser = undefined;
});

async function startRun(name: string): Promise<{ coord: RunningCli; http: string }> {
  const coord = startCli('lenet-coord', ['start', '--epochs', '3', '--train-limit', '6000', '--test-limit', '1000', '--threads', '1', '--quiet', '--port', '0', '--checkpoint-dir', join(dir.path, name)]);
  running.push(coord);
  const [, http] = await coord.waitFor(/dashboard: (http:\/\/\S+?)\/\s/);
  const [, ws] = await coord.waitFor(/listening for workers on (ws:\/\/\S+)/);
  running.push(startCli('lenet-worker', ['join', ws, '--threads', '1', '--name', 'dash-worker']));
  await coord.waitFor(/worker-1 .* joined/);
  return { coord, http };
}

describe('operator endpoints', () => {
  it('/metrics is Prometheus text that changes between scrapes', async () => {
    const { coord, http } = await startRun('metrics');
    await coord.waitFor(/epoch 1\/3/);
    const first = await (await fetch(`${http}/metrics`)).text();
    await new Promise((r) => setTimeout(r, 1500));
    const second = await (await fetch(`${http}/metrics`)).text();
    for (const name of ['lenet_steps_total', 'lenet_samples_per_second', 'lenet_step_phase_seconds{phase="compute"}', 'lenet_participants{kind="remote"} 1', 'lenet_train_loss', 'lenet_test_accuracy']) {
      expect(first).toContain(name);
    }
    const steps = (t: string): number => Number(t.match(/^lenet_steps_total (\d+)/m)![1]);
    expect(steps(second)).toBeGreaterThan(steps(first));
    expect((await fetch(`${http}/nope`)).status).toBe(404);
  });

  it('/healthz answers while the process runs; /readyz only once it trains or waits for workers', async () => {
    const { coord, http } = await startRun('probes');
    await coord.waitFor(/epoch 1\/3/);
    const health = await fetch(`${http}/healthz`);
    expect(health.status).toBe(200);
    const ready = await fetch(`${http}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.text()).toMatch(/^ok: (training|evaluating)/);
  });

  it.skipIf(!HAVE_CHROMIUM)('the dashboard shows live charts and the worker table in a real browser', async () => {
    const { coord, http } = await startRun('browser');
    await coord.waitFor(/epoch 1\/3/);
    browser = await launchChromium();
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    await page.goto(`${http}/`);
    await page.waitForFunction(() => document.querySelectorAll('#participants tbody tr').length >= 2, undefined, { timeout: 30_000 });
    await page.waitForFunction(() => /%$/.test(document.getElementById('accuracy')?.textContent ?? ''), undefined, { timeout: 30_000 });
    // The worker takes part from the step after it joined; on a loaded machine that can be after
    // the first refresh, so wait for its count to move rather than read it once.
    await page.waitForFunction(
      () => Array.from(document.querySelectorAll('#participants tbody tr')).some((tr) => {
        const td = tr.querySelectorAll('td');
        return td[0]?.textContent === 'worker-1' && Number(td[4]?.textContent) > 0;
      }),
      undefined,
      { timeout: 30_000 },
    );
    // The table as it is now: its counts are per epoch, and an epoch may end during the wait below.
    const rows = await page.$$eval('#participants tbody tr', (trs) => trs.map((tr) => Array.from(tr.querySelectorAll('td')).map((td) => td.textContent ?? '')));
    await page.waitForTimeout(2500); // a few more refreshes, so the step charts have history
    const remote = rows.find((r) => r[0] === 'worker-1');
    expect(remote).toBeDefined();
    expect(remote![1]).toMatch(/dash-worker@127\.0\.0\.1:\d+/);
    expect(Number(remote![4])).toBeGreaterThan(0); // microbatches done
    expect(remote![5]).toMatch(/s ago/);
    expect(rows.find((r) => r[0] === 'local')).toBeDefined();
    const accuracy = await page.textContent('#accuracy');
    expect(Number(accuracy!.replace('%', ''))).toBeGreaterThan(50);
    for (const id of ['chart-epochs', 'chart-loss', 'chart-throughput']) {
      expect(await page.$$eval(`#${id} canvas`, (c) => c.length)).toBe(1);
    }
    const throughput = Number(await page.textContent('#throughput'));
    expect(throughput).toBeGreaterThan(0);
    const computeMs = await page.textContent('#breakdown [data-phase="compute"] .ms');
    expect(Number(computeMs!.replace(' ms', ''))).toBeGreaterThan(0);
    const target = process.env.UPDATE_SCREENSHOTS === '1' ? DOCS : dir.path;
    mkdirSync(target, { recursive: true });
    await page.screenshot({ path: join(target, 'dashboard.png'), fullPage: true });
    expect(existsSync(join(target, 'dashboard.png'))).toBe(true);
  });
});
