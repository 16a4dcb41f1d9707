// Browser tabs as workers: the /join page in headless chromium computes with lenet-worker's own
// code (bundled by scripts/build-browser.mjs) and gives the same weights as a local thread, alone,
// beside a local thread and a lenet-worker, and when closed mid-epoch; a tab with a wrong token
// or one that computes other bits is refused at join, and one that alters results later is
// caught by verification.
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { HAVE_CHROMIUM, launchChromium } from './chromium.js';
import { epochDigests, runCli, startCli, startCoordinator, processesOfThisFile, type RunningCli } from './run-cli.js';

const { dir, running } = processesOfThisFile('lenet-browser-');
let browser: Browser | undefined;
// Registered after the helper's hook, so it runs first: the browser closes before its server goes.
afterEach(async () => {
  await browser?.close();
  browser = undefined;
});

// Batch 128 = 4 microbatches, 32 steps: every participant gets a range in every step.
const RUN = ['--epochs', '1', '--train-limit', '4096', '--batch-size', '128', '--test-limit', '300', '--seed', '8', '--quiet', '--port', '0'];

async function coordinator(name: string, args: string[]): Promise<{ proc: RunningCli; url: string; http: string; metrics: string }> {
  const metrics = join(dir.path, `${name}.jsonl`);
  const { proc, url } = await startCoordinator([...RUN, '--checkpoint-dir', join(dir.path, name), '--metrics-out', metrics, ...args], running);
  return { proc, url, http: url.replace(/^ws/, 'http'), metrics };
}

/** Opens the join page; `fragment` is what follows /join# (the token, test hooks). */
async function openTab(http: string, fragment: string): Promise<Page> {
  browser ??= await launchChromium();
  const page = await browser.newPage();
  await page.goto(`${http}/join#${fragment}`);
  return page;
}

const text = (page: Page, id: string): Promise<string> => page.$eval(`#${id}`, (e) => e.textContent ?? '');
const ended = (page: Page): Promise<unknown> => page.waitForFunction(() => document.body.dataset.ended !== undefined, undefined, { timeout: 60_000 });

describe.skipIf(!HAVE_CHROMIUM)('browser tabs as workers', () => {
  let reference: string[];

  beforeAll(async () => {
    const metrics = join(dir.path, 'ref.jsonl');
    const r = await runCli('lenet-coord', ['start', ...RUN, '--threads', '1', '--checkpoint-dir', join(dir.path, 'ref'), '--metrics-out', metrics]);
    expect(r.code, r.stderr).toBe(0);
    reference = epochDigests(metrics);
  });

  it('one tab as the only worker (--threads 0, a token in the fragment): the weights of one local thread', async () => {
    const c = await coordinator('alone', ['--threads', '0', '--wait-workers', '1', '--token', 'tab-secret-0123456789']);
    const page = await openTab(c.http, 'token=tab-secret-0123456789');
    const result = await c.proc.done;
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/worker-1 \(browser: Mozilla\/\S+ .*HeadlessChrome.*@127\.0\.0\.1:\d+, 1 thread\) joined without this dataset/);
    expect(epochDigests(c.metrics)).toEqual(reference);
    await ended(page);
    expect(await page.evaluate(() => document.body.dataset.ended)).toBe('ok');
    expect(await text(page, 'ranges')).toBe('32');
    expect(Number(await text(page, 'samples'))).toBe(4096);
    expect(await text(page, 'why')).toMatch(/^the run is complete/);
  });

  it('a local thread, a lenet-worker and a tab: the same weights', async () => {
    const c = await coordinator('mixed', ['--threads', '1', '--wait-workers', '2']);
    running.push(startCli('lenet-worker', ['join', c.url, '--threads', '1', '--name', 'node']));
    const page = await openTab(c.http, 'open');
    const result = await c.proc.done;
    expect(result.code, result.stderr).toBe(0);
    expect(epochDigests(c.metrics)).toEqual(reference);
    await ended(page);
    expect(Number(await text(page, 'ranges'))).toBeGreaterThan(0);
  });

  it('a tab closed mid-epoch: its range goes to the others, and the weights are the same', async () => {
    const c = await coordinator('closed', ['--threads', '1', '--wait-workers', '1']);
    const page = await openTab(c.http, 'open');
    await page.waitForFunction(() => Number(document.getElementById('ranges')?.textContent) >= 3, undefined, { timeout: 60_000 });
    // The dashboard's feed lists it as its own kind.
    const state = (await (await fetch(`${c.http}/api/state`)).json()) as { participants: { kind: string; name: string }[] };
    expect(state.participants.find((p) => p.kind === 'browser')?.name).toMatch(/^browser: Mozilla\/.*@127\.0\.0\.1:\d+$/);
    await page.close();
    const result = await c.proc.done;
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/worker-1 \(browser: .*\) left/);
    expect(epochDigests(c.metrics)).toEqual(reference);
  });

  it('with a token, /join is served to anyone but joins only with that token', async () => {
    const c = await coordinator('wrong-token', ['--threads', '1', '--wait-workers', '1', '--token', 'tab-secret-0123456789']);
    const page = await openTab(c.http, 'token=a-guess-of-sixteen-chars');
    await ended(page);
    expect(await page.evaluate(() => document.body.dataset.ended)).toBe('failed');
    expect(await text(page, 'why')).toMatch(/the coordinator rejected this worker: authentication failed: wrong token/);
    expect(await text(page, 'ranges')).toBe('0');
  });

  it('a tab whose gradient differs is refused by the join probe, and says why', async () => {
    const c = await coordinator('probe', ['--threads', '1', '--wait-workers', '1']);
    const page = await openTab(c.http, 'open&LENET_TEST_CORRUPT_PROBE=1');
    await ended(page);
    expect(await page.evaluate(() => document.body.dataset.ended)).toBe('failed');
    expect(await text(page, 'why')).toMatch(/the coordinator rejected this worker: .*join probe/);
    await c.proc.waitFor(/worker-1 \(browser: .*\) left: its gradient of the join probe is not this run's bits/);
  });

  it('a tab that alters 1 result in 20 is caught by verification; the weights are an honest run\'s', async () => {
    const c = await coordinator('cheat', ['--threads', '1', '--wait-workers', '1', '--verify-fraction', '1']);
    await openTab(c.http, 'open&LENET_TEST_CORRUPT_EVERY=20');
    await c.proc.waitFor(/worker-\d+ \(browser: .*\) sent sums for microbatches \[\d+,\d+\) of step \d+ that recomputation does not give; ejected/);
    const result = await c.proc.done;
    expect(result.code, result.stderr).toBe(0);
    expect(epochDigests(c.metrics)).toEqual(reference);
  });
});
