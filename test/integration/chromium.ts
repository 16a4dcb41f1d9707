// Debian's chromium, headless, driven by playwright-core, for the dashboard's and the browser
// worker's tests: the same launch as the bench scripts' (scripts/lib.mjs), whose flags keep it
// from reaching for the network, which this machine refuses.
import { existsSync } from 'node:fs';
import { CHROMIUM_PATH, launchChromium } from '../../scripts/lib.mjs';

export const HAVE_CHROMIUM = existsSync(CHROMIUM_PATH);
export { launchChromium };
