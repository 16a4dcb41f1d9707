// docs/cli.md is the --help texts, and the README's option tables name only options the
// programs have: one source for both, checked here. UPDATE_DOCS=1 rewrites docs/cli.md.
import { readFileSync, writeFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { COORD_USAGE } from '../../../src/cli/coord-usage.js';
import { START_OPTIONS, START_USAGE } from '../../../src/cli/start-args.js';
import { EVAL_USAGE, PREDICT_USAGE } from '../../../src/cli/use-model.js';
import { JOIN_OPTIONS, WORKER_USAGE } from '../../../src/cli/worker-args.js';

const root = new URL('../../../', import.meta.url);
const CLI_DOC = new URL('docs/cli.md', root);

/** The help texts as docs/cli.md holds them: the machine's core count written as words. */
function cliDoc(): string {
  const block = (title: string, text: string): string => `## ${title}\n\n\`\`\`\n${text.replace(/\[cores: \d+\]/g, '[cores]').trimEnd()}\n\`\`\`\n`;
  return [
    '# Command-line reference\n',
    'Generated from the programs\' `--help` texts (`UPDATE_DOCS=1 npx vitest run test/unit/cli/docs.test.ts`);',
    '`npm test` fails when the two differ. `[cores]` is the number of cores of the machine the',
    'program runs on.\n',
    block('lenet-coord', COORD_USAGE),
    block('lenet-coord start', START_USAGE),
    block('lenet-coord eval', EVAL_USAGE),
    block('lenet-coord predict', PREDICT_USAGE),
    block('lenet-worker join', WORKER_USAGE),
  ].join('\n');
}

/** The `--flag` names in the first column of the README table whose header cell starts with `header`. */
function readmeTableFlags(header: string): string[] {
  const readme = readFileSync(new URL('README.md', root), 'utf8').split('\n');
  const start = readme.findIndex((line) => line.startsWith(`| \`${header}`));
  expect(start, `README has a table headed ${header}`).toBeGreaterThanOrEqual(0);
  const flags: string[] = [];
  for (let i = start + 2; i < readme.length && readme[i].startsWith('|'); i++) {
    const first = readme[i].split('|')[1];
    for (const m of first.matchAll(/--([a-z0-9-]+)/g)) flags.push(m[1]);
  }
  return flags;
}

describe('command-line documentation', () => {
  it('docs/cli.md is the --help texts', () => {
    if (process.env.UPDATE_DOCS) writeFileSync(CLI_DOC, cliDoc());
    expect(readFileSync(CLI_DOC, 'utf8')).toBe(cliDoc());
  });

  it('the README tables name only options the programs have, each in its --help', () => {
    const cases = [
      { flags: readmeTableFlags('lenet-coord start'), options: START_OPTIONS, usage: START_USAGE },
      { flags: readmeTableFlags('lenet-worker join'), options: JOIN_OPTIONS, usage: WORKER_USAGE },
    ];
    for (const { flags, options, usage } of cases) {
      expect(flags.length).toBeGreaterThan(3);
      for (const flag of flags) {
        expect(Object.keys(options), `--${flag}`).toContain(flag);
        expect(usage, `--${flag} in --help`).toContain(`--${flag}`);
      }
    }
  });
});

describe('docs/protocol.md', () => {
  it('names the protocol version the code speaks, in both places', async () => {
    const { PROTOCOL_VERSION } = await import('../../../src/protocol/messages.js');
    const doc = readFileSync(new URL('docs/protocol.md', root), 'utf8');
    expect(doc).toContain(`Protocol version: **${PROTOCOL_VERSION}**.`);
    expect(doc).toContain(`\`protocol_version\` = ${PROTOCOL_VERSION} and`);
  });
});
