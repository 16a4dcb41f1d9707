// `npm run bench`: training throughput of lenet-dist with 1 and 2 threads beside stock tfjs
// `model.fit` (1 thread, wasm) on the same model, batch and samples, each in its own process,
// run one after another so they never share the CPU. Prints the median of --repeats runs.
//
//   npm run bench -- [--samples N] [--repeats R] [--batch-size B] [--microbatch M]
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const { values } = parseArgs({
  options: {
    samples: { type: 'string', default: '12800' },
    repeats: { type: 'string', default: '3' },
    'batch-size': { type: 'string', default: '64' },
    microbatch: { type: 'string', default: '32' },
    help: { type: 'boolean', short: 'h' },
  },
});
if (values.help) {
  console.log('Usage: npm run bench -- [--samples N] [--repeats R] [--batch-size B] [--microbatch M]');
  process.exit(0);
}
const samples = Number(values.samples);
const repeats = Number(values.repeats);
const batch = Number(values['batch-size']);
const microbatch = Number(values.microbatch);
const work = mkdtempSync(join(tmpdir(), 'lenet-bench-'));

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

function lenetDist(threads, i) {
  const metrics = join(work, `t${threads}-${i}.jsonl`);
  execFileSync(process.execPath, [
    join(root, 'bin/lenet-coord.js'), 'start', '--epochs', '1', '--threads', String(threads),
    '--train-limit', String(samples), '--test-limit', '1000', '--batch-size', String(batch), '--microbatch', String(microbatch),
    '--checkpoint-dir', join(work, `ck-${threads}-${i}`), '--metrics-out', metrics, '--quiet', '--backend', 'wasm',
  ], { stdio: ['ignore', 'ignore', 'inherit'] });
  const epoch = readFileSync(metrics, 'utf8').trim().split('\n').map((l) => JSON.parse(l)).find((r) => r.type === 'epoch');
  return epoch.samplesPerSecond;
}

function plainFit() {
  const out = execFileSync(process.execPath, [join(root, 'scripts/bench-fit.mjs'), String(samples), String(batch)], { encoding: 'utf8' });
  return JSON.parse(out.trim().split('\n').pop()).samplesPerSecond;
}

const rows = [
  { name: 'tfjs model.fit, wasm, 1 thread', run: plainFit },
  { name: 'lenet-dist, 1 thread', run: (i) => lenetDist(1, i) },
  { name: 'lenet-dist, 2 threads', run: (i) => lenetDist(2, i) },
];
console.log(`bench: LeNet-5 (lenet5, 60,806 params) training throughput, ${samples} MNIST samples per run, global batch ${batch}, ` +
  `microbatch ${microbatch}, median of ${repeats} run(s)`);
console.log(`machine: ${cpus().length} x ${cpus()[0]?.model.trim()}, Node ${process.version}; training time only (no evaluation or checkpoint)`);
// Rounds interleave the configurations, so a noisy minute on a shared machine hits all of them.
const runs = new Map(rows.map((r) => [r.name, []]));
for (let i = 0; i < repeats; i++) for (const row of rows) runs.get(row.name).push(row.run(i));
const results = {};
for (const row of rows) {
  const r = runs.get(row.name);
  results[row.name] = median(r);
  console.log(`  ${row.name.padEnd(34)} ${median(r).toFixed(0).padStart(6)} samples/s   (runs: ${r.map((x) => x.toFixed(0)).join(', ')})`);
}
const fit = results[rows[0].name];
const one = results[rows[1].name];
const two = results[rows[2].name];
console.log(`ratios: lenet-dist 1 thread / model.fit = ${(one / fit).toFixed(2)}x; 2 threads / 1 thread = ${(two / one).toFixed(2)}x; 2 threads / model.fit = ${(two / fit).toFixed(2)}x`);
rmSync(work, { recursive: true, force: true });
