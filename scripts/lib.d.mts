// Types of what the TypeScript tests take from lib.mjs; its other exports serve the scripts only.
import type { Browser } from 'playwright-core';

/** Debian's chromium, or where $CHROMIUM_PATH says. */
export declare const CHROMIUM_PATH: string;
/** Debian's chromium, headless, with the flags that keep it off the network. */
export declare function launchChromium(): Promise<Browser>;
