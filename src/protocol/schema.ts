// The protocol's schema, proto/lenet.proto, as text. The browser worker's bundle carries the
// same file's text in place of this read (scripts/build-browser.mjs).
import { readFileSync } from 'node:fs';

export const PROTO_SOURCE: string = readFileSync(new URL('../../proto/lenet.proto', import.meta.url), 'utf8');
