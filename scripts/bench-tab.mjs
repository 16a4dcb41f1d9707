// A browser tab as a worker, for `npm run bench`: opens a coordinator's /join page in headless
// Debian chromium and stays until the page says the worker ended (or it is killed). With
// --profile, it records a CPU profile of the tab's Web Worker (the worker that computes) for
// --seconds, from --after seconds after the page opened; `node scripts/profile-top.mjs FILE`
// summarises it.
//
//   node scripts/bench-tab.mjs <http-url-of-the-coordinator> [--profile FILE] [--after S] [--seconds S]
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { launchChromium } from './lib.mjs';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { profile: { type: 'string' }, after: { type: 'string', default: '2' }, seconds: { type: 'string', default: '3' }, help: { type: 'boolean', short: 'h' } },
});
const [url] = positionals;
if (!url || values.help) {
  console.log('Usage: node scripts/bench-tab.mjs <http-url-of-the-coordinator> [--profile FILE] [--after S] [--seconds S]');
  process.exit(values.help ? 0 : 2);
}
const sleep = (s) => new Promise((resolve) => setTimeout(resolve, s * 1000));

/** The CPU profile of the page's Web Worker over `seconds`, through the DevTools protocol. */
async function profileWorker(browser, seconds) {
  const cdp = await browser.newBrowserCDPSession();
  const { targetInfos } = await cdp.send('Target.getTargets');
  const worker = targetInfos.find((t) => t.type === 'worker');
  if (!worker) throw new Error('the page runs no Web Worker yet; give it more --after');
  const { sessionId } = await cdp.send('Target.attachToTarget', { targetId: worker.targetId, flatten: false });
  let next = 0;
  const waiting = new Map();
  cdp.on('Target.receivedMessageFromTarget', (e) => {
    const m = JSON.parse(e.message);
    waiting.get(m.id)?.(m.result);
    waiting.delete(m.id);
  });
  const call = (method, params = {}) =>
    new Promise((resolve) => {
      const id = ++next;
      waiting.set(id, resolve);
      void cdp.send('Target.sendMessageToTarget', { sessionId, message: JSON.stringify({ id, method, params }) });
    });
  await call('Profiler.enable');
  await call('Profiler.setSamplingInterval', { interval: 200 });
  await call('Profiler.start');
  await sleep(seconds);
  const { profile } = await call('Profiler.stop');
  return profile;
}

const browser = await launchChromium();
try {
  const page = await browser.newPage();
  await page.goto(`${url}/join#open`);
  if (values.profile) {
    await sleep(Number(values.after));
    writeFileSync(values.profile, JSON.stringify(await profileWorker(browser, Number(values.seconds))));
    console.log(`bench-tab: the tab's worker's CPU profile over ${values.seconds} s is in ${values.profile}`);
  }
  await page.waitForFunction(() => document.body.dataset.ended !== undefined, undefined, { timeout: 0 });
} finally {
  await browser.close();
}
