// `npm run scaling`: how lenet-dist scales on this machine. Writes results/scaling.csv and SVG
// plots. Real runs: 1 and 2 local threads, 1 to 4 remote worker processes over loopback.
// Load mode: 16, 64 and 256 simulated workers (scripts/sim-workers.mjs) that answer with zero
// gradients after a measured compute time, to measure the coordinator's own per-step cost.
// Runs one after another; each prints its figure as it finishes.
//
//   npm run scaling -- [--samples N] [--sim 16,64,256] [--out DIR]
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const { values } = parseArgs({ options: { samples: { type: 'string', default: '6400' }, sim: { type: 'string', default: '16,64,256' }, out: { type: 'string', default: 'results' }, help: { type: 'boolean', short: 'h' } } });
if (values.help) {
  console.log('Usage: npm run scaling -- [--samples N] [--sim 16,64,256] [--out DIR]');
  process.exit(0);
}
const out = join(root, values.out);
mkdirSync(out, { recursive: true });
const work = mkdtempSync(join(tmpdir(), 'lenet-scaling-'));
const samples = Number(values.samples);
const rows = [];

function coordArgs(name, extra) {
  return [join(root, 'bin/lenet-coord.js'), 'start', '--epochs', '1', '--test-limit', '100', '--quiet', '--port', '0', '--backend', 'wasm',
    '--checkpoint-dir', join(work, `ck-${name}`), '--metrics-out', join(work, `${name}.jsonl`), ...extra];
}
function epochRecord(name) {
  return readFileSync(join(work, `${name}.jsonl`), 'utf8').trim().split('\n').map((l) => JSON.parse(l)).find((r) => r.type === 'epoch');
}
async function withWorkers(name, extra, startWorkers) {
  const coord = spawn(process.execPath, coordArgs(name, extra), { stdio: ['ignore', 'pipe', 'inherit'] });
  let text = '';
  const url = await new Promise((resolve, reject) => {
    coord.stdout.on('data', (d) => {
      text += d;
      const m = text.match(/listening for workers on (ws:\/\/\S+)/);
      if (m) resolve(m[1]);
    });
    coord.on('exit', () => reject(new Error(`coordinator exited:\n${text}`)));
  });
  const kids = startWorkers(url);
  await new Promise((r) => coord.on('close', r));
  for (const k of kids) k.kill('SIGKILL');
  return epochRecord(name);
}
function record(mode, participants, threads, batch, e) {
  const t = e.stepTimeMs;
  const row = { mode, participants, threads, batch, samplesPerSecond: e.samplesPerSecond, stepsPerSecond: e.samplesPerSecond / batch, ...Object.fromEntries(Object.entries(t).map(([k, v]) => [`${k}Ms`, v])) };
  rows.push(row);
  console.log(`  ${mode.padEnd(8)} ${String(participants).padStart(3)} participant(s) ${String(threads).padStart(3)} thread(s): ${e.samplesPerSecond.toFixed(0).padStart(6)} samples/s, ${row.stepsPerSecond.toFixed(1).padStart(6)} steps/s; ` +
    `step ${t.step.toFixed(1)} ms = compute ${t.compute.toFixed(1)} + transfer ${t.transfer.toFixed(1)} + reduce ${t.reduce.toFixed(2)} + optimizer ${t.optimizer.toFixed(2)}`);
}

console.log(`scaling: ${cpus().length} x ${cpus()[0]?.model.trim()}, Node ${process.version}; ${samples} samples per real run, global batch 64, microbatch 32`);
for (const threads of [1, 2]) {
  const name = `local-${threads}`;
  execFileSync(process.execPath, coordArgs(name, ['--threads', String(threads), '--train-limit', String(samples)]), { stdio: ['ignore', 'ignore', 'inherit'] });
  record('local', 1, threads, 64, epochRecord(name));
}
for (let n = 1; n <= 4; n++) {
  const e = await withWorkers(`remote-${n}`, ['--threads', '0', '--wait-workers', String(n), '--train-limit', String(samples)], (url) =>
    Array.from({ length: n }, () => spawn(process.execPath, [join(root, 'bin/lenet-worker.js'), 'join', url, '--threads', '1', '--backend', 'wasm'], { stdio: 'ignore' })));
  record('remote', n, n, 64, e);
}
console.log('netns: runs across network namespaces shaped with tc are not implemented yet (see the README)');
const perMicrobatchMs = rows.find((r) => r.mode === 'local' && r.threads === 1).computeMs / 2;
for (const n of values.sim.split(',').map(Number)) {
  const batch = 32 * n;
  const limit = Math.min(60000, batch * 20);
  const e = await withWorkers(`sim-${n}`, ['--threads', '0', '--wait-workers', String(n), '--batch-size', String(batch), '--microbatch', '32', '--train-limit', String(limit)], (url) => [
    spawn(process.execPath, [join(root, 'scripts/sim-workers.mjs'), url, String(n), perMicrobatchMs.toFixed(2)], { stdio: 'ignore' }),
  ]);
  record('sim', n, n, batch, e);
}

const keys = Object.keys(rows[0]);
writeFileSync(join(out, 'scaling.csv'), [keys.join(','), ...rows.map((r) => keys.map((k) => (typeof r[k] === 'number' ? +r[k].toFixed(3) : r[k])).join(','))].join('\n') + '\n');

// ---- plots (plain SVG, no dependencies) ----
function lineChart(title, xLabel, yLabel, series) {
  const W = 560, H = 320, L = 60, R = 20, T = 40, B = 50;
  const xs = series.flatMap((s) => s.points.map((p) => p[0]));
  const ys = series.flatMap((s) => s.points.map((p) => p[1]));
  const xMax = Math.max(...xs), yMax = Math.max(...ys) * 1.1 || 1;
  const X = (x) => L + ((W - L - R) * x) / xMax;
  const Y = (y) => H - B - ((H - T - B) * y) / yMax;
  const colors = ['#4c78a8', '#f58518', '#54a24b', '#e45756'];
  let svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12"><rect width="100%" height="100%" fill="white"/>`;
  svg += `<text x="${W / 2}" y="20" text-anchor="middle" font-size="14">${title}</text>`;
  svg += `<line x1="${L}" y1="${H - B}" x2="${W - R}" y2="${H - B}" stroke="#333"/><line x1="${L}" y1="${T}" x2="${L}" y2="${H - B}" stroke="#333"/>`;
  for (let i = 0; i <= 4; i++) {
    const y = (yMax * i) / 4;
    svg += `<text x="${L - 6}" y="${Y(y) + 4}" text-anchor="end">${y >= 100 ? y.toFixed(0) : y.toFixed(2)}</text><line x1="${L}" y1="${Y(y)}" x2="${W - R}" y2="${Y(y)}" stroke="#eee"/>`;
  }
  for (const x of [...new Set(xs)]) svg += `<text x="${X(x)}" y="${H - B + 16}" text-anchor="middle">${x}</text>`;
  svg += `<text x="${W / 2}" y="${H - 10}" text-anchor="middle">${xLabel}</text><text x="14" y="${H / 2}" transform="rotate(-90 14 ${H / 2})" text-anchor="middle">${yLabel}</text>`;
  series.forEach((s, i) => {
    svg += `<polyline fill="none" stroke="${colors[i % 4]}" stroke-width="2" points="${s.points.map((p) => `${X(p[0])},${Y(p[1])}`).join(' ')}"/>`;
    for (const p of s.points) svg += `<circle cx="${X(p[0])}" cy="${Y(p[1])}" r="3" fill="${colors[i % 4]}"/>`;
    svg += `<text x="${W - R - 150}" y="${T + 14 * i + 4}" fill="${colors[i % 4]}">${s.name}</text>`;
  });
  return svg + '</svg>\n';
}
const local = rows.filter((r) => r.mode === 'local');
const remote = rows.filter((r) => r.mode === 'remote');
const sim = rows.filter((r) => r.mode === 'sim');
const base = local[0].samplesPerSecond;
writeFileSync(join(out, 'throughput.svg'), lineChart('Training throughput vs compute threads', 'threads (local) / 1-thread workers (remote)', 'samples/s', [
  { name: 'local threads', points: local.map((r) => [r.threads, r.samplesPerSecond]) },
  { name: 'remote workers (loopback)', points: remote.map((r) => [r.threads, r.samplesPerSecond]) },
  { name: 'ideal (linear, 2 cores)', points: [1, 2, 3, 4].map((n) => [n, base * Math.min(n, cpus().length)]) },
]));
writeFileSync(join(out, 'efficiency.svg'), lineChart('Scaling efficiency (throughput / (threads x 1-thread throughput))', 'threads', 'efficiency', [
  { name: 'local threads', points: local.map((r) => [r.threads, r.samplesPerSecond / (r.threads * base)]) },
  { name: 'remote workers', points: remote.map((r) => [r.threads, r.samplesPerSecond / (r.threads * base)]) },
]));
writeFileSync(join(out, 'step-breakdown.svg'), lineChart('Step time by phase (ms), remote workers on loopback', '1-thread workers', 'ms per step', [
  { name: 'step', points: remote.map((r) => [r.threads, r.stepMs]) },
  { name: 'compute', points: remote.map((r) => [r.threads, r.computeMs]) },
  { name: 'transfer', points: remote.map((r) => [r.threads, r.transferMs]) },
  { name: 'reduce + optimizer', points: remote.map((r) => [r.threads, r.reduceMs + r.optimizerMs]) },
]));
if (sim.length > 0) {
  writeFileSync(join(out, 'simulated.svg'), lineChart('Coordinator with simulated workers', 'simulated workers', 'steps/s', [
    { name: 'steps/s', points: sim.map((r) => [r.participants, r.stepsPerSecond]) },
  ]));
}
console.log(`wrote ${join(values.out, 'scaling.csv')} and SVG plots`);
rmSync(work, { recursive: true, force: true });
