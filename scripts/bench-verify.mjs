// `npm run bench:verify`: what verification by recomputation costs. A coordinator with one local
// thread and one 1-thread remote worker over loopback (the worker computes half of every step),
// at --verify-fraction 0, 0.02 and 0.1, in interleaved rounds; prints training samples/s (median
// of the rounds) and each fraction's ratio to no verification (median of the per-round ratios).
//
//   npm run bench:verify -- [--samples N] [--repeats R]
import { mkdtempSync, rmSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { firstEpochRecord, machineSummary, runWithWorkers } from './lib.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));
const { values } = parseArgs({ options: { samples: { type: 'string', default: '12800' }, repeats: { type: 'string', default: '3' }, help: { type: 'boolean', short: 'h' } } });
if (values.help) {
  console.log('Usage: npm run bench:verify -- [--samples N] [--repeats R]');
  process.exit(0);
}
const FRACTIONS = ['0', '0.02', '0.1'];
const work = mkdtempSync(join(tmpdir(), 'lenet-bench-verify-'));
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function run(fraction, i) {
  const name = `f${fraction}-${i}`;
  const args = [join(root, 'bin/lenet-coord.js'), 'start', '--epochs', '1', '--threads', '1', '--wait-workers', '1', '--train-limit', values.samples, '--test-limit', '500',
    '--verify-fraction', fraction, '--checkpoint-dir', join(work, name), '--metrics-out', join(work, `${name}.jsonl`), '--quiet', '--port', '0', '--backend', 'wasm'];
  await runWithWorkers(args, (url) => [spawn(process.execPath, [join(root, 'bin/lenet-worker.js'), 'join', url, '--threads', '1', '--backend', 'wasm'], { stdio: 'ignore' })]);
  return firstEpochRecord(join(work, `${name}.jsonl`)).samplesPerSecond;
}

console.log(`bench:verify: ${values.samples} samples per run, global batch 64 (one local thread, one 1-thread remote worker), median of ${values.repeats} rounds`);
console.log(`machine: ${machineSummary()}`);
const runs = new Map(FRACTIONS.map((f) => [f, []]));
for (let i = 0; i < Number(values.repeats); i++) for (const f of FRACTIONS) runs.get(f).push(await run(f, i));
for (const f of FRACTIONS) {
  const r = runs.get(f);
  const ratio = median(r.map((x, i) => x / runs.get('0')[i]));
  console.log(`  --verify-fraction ${f.padEnd(5)} ${median(r).toFixed(0).padStart(6)} samples/s (runs: ${r.map((x) => x.toFixed(0)).join(', ')}); ${ratio.toFixed(3)}x of no verification`);
}
rmSync(work, { recursive: true, force: true });
