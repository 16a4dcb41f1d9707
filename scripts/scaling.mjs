// `npm run scaling`: how lenet-dist scales on this machine. Writes results/scaling.csv and SVG
// plots. Real runs: 1 and 2 local threads, 1 to 4 remote worker processes over loopback with the
// star and (2 or more) sharded, and 2 workers in network namespaces on one bridge, each behind a
// link shaped to 1 Gbit/s and 100 Mbit/s, star and sharded (root only). Every row has the
// coordinator's bytes per step, sent and received.
// Load mode: 16, 64 and 256 simulated workers (scripts/sim-workers.mjs) that answer with zero
// gradients after a measured compute time, to measure the coordinator's own per-step cost.
// Runs one after another; each prints its figure as it finishes. Also writes scaling.md: the
// table docs/performance.md links to, headed by the command and the machine.
//
//   npm run scaling -- [--samples N] [--sim 16,64,256] [--out DIR]
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { lastEpochRecord, machineSummary, runWithWorkers } from './lib.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));
const { values } = parseArgs({ options: { samples: { type: 'string', default: '6400' }, sim: { type: 'string', default: '16,64,256' }, out: { type: 'string', default: 'results' }, help: { type: 'boolean', short: 'h' } } });
if (values.help) {
  console.log('Usage: npm run scaling -- [--samples N] [--sim 16,64,256] [--out DIR]');
  process.exit(0);
}
// A relative --out is under the project (as npm runs it); an absolute one is taken as it is.
const out = resolve(root, values.out);
mkdirSync(out, { recursive: true });
const work = mkdtempSync(join(tmpdir(), 'lenet-scaling-'));
const samples = Number(values.samples);
const rows = [];
/** Global batch of every real run: 8 microbatches of 32, so up to 4 workers all get a range. */
const BATCH = 256;

function coordArgs(name, extra, epochs = 1) {
  return [join(root, 'bin/lenet-coord.js'), 'start', '--epochs', String(epochs), '--test-limit', '100', '--quiet', '--port', '0', '--backend', 'wasm',
    '--checkpoint-dir', join(work, `ck-${name}`), '--metrics-out', join(work, `${name}.jsonl`), ...extra];
}
/** The run's last epoch: with more than one epoch, the figures after warm-up. */
function epochRecord(name) {
  return lastEpochRecord(join(work, `${name}.jsonl`));
}
async function withWorkers(name, extra, startWorkers, epochs = 1) {
  await runWithWorkers(coordArgs(name, extra, epochs), startWorkers);
  return epochRecord(name);
}
function record(mode, participants, threads, batch, e) {
  const t = e.stepTimeMs;
  const bytes = e.coordinatorBytesPerStep ?? { sent: 0, received: 0 };
  const row = { mode, participants, threads, batch, samplesPerSecond: e.samplesPerSecond, stepsPerSecond: e.samplesPerSecond / batch, ...Object.fromEntries(Object.entries(t).map(([k, v]) => [`${k}Ms`, v])),
    coordSentKB: bytes.sent / 1024, coordReceivedKB: bytes.received / 1024 };
  rows.push(row);
  console.log(`  ${mode.padEnd(22)} ${String(participants).padStart(3)} participant(s) ${String(threads).padStart(3)} thread(s): ${e.samplesPerSecond.toFixed(0).padStart(6)} samples/s, ${row.stepsPerSecond.toFixed(1).padStart(6)} steps/s; ` +
    `step ${t.step.toFixed(1)} ms = compute ${t.compute.toFixed(1)} + transfer ${t.transfer.toFixed(1)} + reduce ${t.reduce.toFixed(2)} + optimizer ${t.optimizer.toFixed(2)}; ` +
    `coordinator ${row.coordSentKB.toFixed(0)} KB out, ${row.coordReceivedKB.toFixed(0)} KB in per step`);
}

const machine = machineSummary();
console.log(`scaling: ${machine}; ${samples} samples per real run, global batch ${BATCH}, microbatch 32`);
for (const threads of [1, 2]) {
  const name = `local-${threads}`;
  execFileSync(process.execPath, coordArgs(name, ['--threads', String(threads), '--train-limit', String(samples), '--batch-size', String(BATCH)]), { stdio: ['ignore', 'ignore', 'inherit'] });
  record('local', 1, threads, BATCH, epochRecord(name));
}
for (const allreduce of ['star', 'sharded']) {
  for (let n = allreduce === 'star' ? 1 : 2; n <= 4; n++) {
    const e = await withWorkers(`remote-${allreduce}-${n}`, ['--threads', '0', '--wait-workers', String(n), '--train-limit', String(samples), '--batch-size', String(BATCH), '--allreduce', allreduce], (url) =>
      Array.from({ length: n }, () => spawn(process.execPath, [join(root, 'bin/lenet-worker.js'), 'join', url, '--threads', '1', '--backend', 'wasm'], { stdio: 'ignore' })));
    record(`remote-${allreduce}`, n, n, BATCH, e);
  }
}
// Across hosts: each worker in its own network namespace, its veth pair's outer end on one bridge
// with the coordinator (the root namespace), like machines on a switch, so workers reach each
// other too. Both ends of every worker's link are shaped with tc tbf (this kernel has tbf, not
// netem): each host's own link, both directions. The small burst paces every frame at the link
// rate (a large one would let a whole 243 KB frame through at once). Needs root.
const NETNS_WORKERS = 2;
function sh(cmd) {
  execFileSync('sh', ['-c', cmd], { stdio: ['ignore', 'ignore', 'pipe'] });
}
function netnsDown() {
  for (let i = 1; i <= NETNS_WORKERS; i++) {
    try {
      sh(`ip netns del lenet-w${i} 2>/dev/null; ip link del lenet-v${i} 2>/dev/null; true`);
    } catch {
      /* already gone */
    }
  }
  try {
    sh('ip link del lenet-br0 2>/dev/null; true');
  } catch {
    /* already gone */
  }
}
function netnsUp(rate) {
  netnsDown();
  sh('ip link add lenet-br0 type bridge && ip addr add 10.77.0.1/24 dev lenet-br0 && ip link set lenet-br0 up');
  for (let i = 1; i <= NETNS_WORKERS; i++) {
    sh(`ip netns add lenet-w${i}`);
    sh(`ip link add lenet-v${i} type veth peer name eth0 netns lenet-w${i}`);
    sh(`ip link set lenet-v${i} master lenet-br0 && ip link set lenet-v${i} up`);
    sh(`ip netns exec lenet-w${i} sh -c 'ip addr add 10.77.0.${i + 1}/24 dev eth0 && ip link set eth0 up && ip link set lo up'`);
    sh(`tc qdisc add dev lenet-v${i} root tbf rate ${rate} burst 32kb latency 100ms`);
    sh(`ip netns exec lenet-w${i} tc qdisc add dev eth0 root tbf rate ${rate} burst 32kb latency 100ms`);
  }
}
let netnsOk = process.getuid?.() === 0;
if (netnsOk) {
  try {
    netnsUp('1gbit');
  } catch (err) {
    netnsOk = false;
    console.log(`netns: skipped, cannot create network namespaces here (${String(err.stderr ?? err.message).trim()})`);
  }
} else {
  console.log('netns: skipped, creating network namespaces needs root');
}
if (netnsOk) {
  try {
    for (const rate of ['1gbit', '100mbit']) {
      for (const allreduce of ['star', 'sharded']) {
        netnsUp(rate);
        const token = 'scaling-netns-token-0123456789';
        const e = await withWorkers(`netns-${rate}-${allreduce}`, ['--threads', '0', '--wait-workers', String(NETNS_WORKERS), '--train-limit', String(samples), '--batch-size', String(BATCH), '--host', '0.0.0.0', '--token', token, '--allreduce', allreduce], (url) => {
          const port = new URL(url).port;
          return Array.from({ length: NETNS_WORKERS }, (_, i) =>
            spawn('ip', ['netns', 'exec', `lenet-w${i + 1}`, process.execPath, join(root, 'bin/lenet-worker.js'), 'join', `ws://10.77.0.1:${port}`, '--threads', '1', '--backend', 'wasm', '--token', token], { stdio: 'ignore' }),
          );
        });
        record(`netns-${rate}-${allreduce}`, NETNS_WORKERS, NETNS_WORKERS, BATCH, e);
      }
    }
  } finally {
    netnsDown();
  }
}
const perMicrobatchMs = rows.find((r) => r.mode === 'local' && r.threads === 1).computeMs / (BATCH / 32);
for (const n of values.sim.split(',').map(Number)) {
  const batch = 32 * n;
  const limit = Math.min(60000, batch * 20);
  // Two epochs of 20 steps, the second recorded: the first is warm-up (the JIT, and socket buffers
  // that grow only under load) and ran 30% slower at 64 workers.
  const e = await withWorkers(`sim-${n}`, ['--threads', '0', '--wait-workers', String(n), '--batch-size', String(batch), '--microbatch', '32', '--train-limit', String(limit)], (url) => [
    spawn(process.execPath, [join(root, 'scripts/sim-workers.mjs'), url, String(n), perMicrobatchMs.toFixed(2)], { stdio: 'ignore' }),
  ], 2);
  record('sim', n, n, batch, e);
}

const keys = Object.keys(rows[0]);
writeFileSync(join(out, 'scaling.csv'), [keys.join(','), ...rows.map((r) => keys.map((k) => (typeof r[k] === 'number' ? +r[k].toFixed(3) : r[k])).join(','))].join('\n') + '\n');

const command = ['npm run scaling', ...(process.argv.length > 2 ? ['--', ...process.argv.slice(2)] : [])].join(' ');
const mdRow = (r) => `| ${r.mode} | ${r.participants} | ${r.threads} | ${r.batch} | ${r.samplesPerSecond.toFixed(0)} | ${r.stepsPerSecond.toFixed(1)} | ` +
  `${r.stepMs.toFixed(1)} | ${r.computeMs.toFixed(1)} | ${r.transferMs.toFixed(1)} | ${r.reduceMs.toFixed(2)} | ${r.optimizerMs.toFixed(2)} | ${r.coordSentKB.toFixed(0)} | ${r.coordReceivedKB.toFixed(0)} |`;
writeFileSync(join(out, 'scaling.md'), [
  '# Scaling figures',
  '',
  `Made by \`${command}\` on ${machine}. Training throughput of the last epoch of each run; ` +
    'step times in ms per step (compute and transfer of the slowest range). Modes: `local` threads of one process; `remote-star` and `remote-sharded` 1-thread worker processes on loopback with a ' +
    'coordinator that only coordinates, with `--allreduce star` or `sharded`; `netns-RATE-*` the same with workers in their own network namespaces on one bridge, each link shaped with `tc tbf` both ways; `sim` simulated workers ' +
    '(the real protocol, zero gradients after the measured compute time of one microbatch).',
  '',
  '| mode | participants | threads | global batch | samples/s | steps/s | step | compute | transfer | reduce | optimizer | coordinator KB out per step | KB in |',
  '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
  ...rows.map(mdRow),
  '',
].join('\n'));

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
const remote = rows.filter((r) => r.mode === 'remote-star');
const sharded = rows.filter((r) => r.mode === 'remote-sharded');
const sim = rows.filter((r) => r.mode === 'sim');
const base = local[0].samplesPerSecond;
writeFileSync(join(out, 'throughput.svg'), lineChart('Training throughput vs compute threads', 'threads (local) / 1-thread workers (remote)', 'samples/s', [
  { name: 'local threads', points: local.map((r) => [r.threads, r.samplesPerSecond]) },
  { name: 'remote workers, star', points: remote.map((r) => [r.threads, r.samplesPerSecond]) },
  { name: 'remote workers, sharded', points: sharded.map((r) => [r.threads, r.samplesPerSecond]) },
  { name: 'ideal (linear, 2 cores)', points: [1, 2, 3, 4].map((n) => [n, base * Math.min(n, cpus().length)]) },
]));
writeFileSync(join(out, 'efficiency.svg'), lineChart('Scaling efficiency (throughput / (threads x 1-thread throughput))', 'threads', 'efficiency', [
  { name: 'local threads', points: local.map((r) => [r.threads, r.samplesPerSecond / (r.threads * base)]) },
  { name: 'remote workers, star', points: remote.map((r) => [r.threads, r.samplesPerSecond / (r.threads * base)]) },
  { name: 'remote workers, sharded', points: sharded.map((r) => [r.threads, r.samplesPerSecond / (r.threads * base)]) },
]));
writeFileSync(join(out, 'step-breakdown.svg'), lineChart('Step time by phase (ms), remote workers on loopback', '1-thread workers', 'ms per step', [
  { name: 'step', points: remote.map((r) => [r.threads, r.stepMs]) },
  { name: 'compute', points: remote.map((r) => [r.threads, r.computeMs]) },
  { name: 'transfer', points: remote.map((r) => [r.threads, r.transferMs]) },
  { name: 'reduce + optimizer', points: remote.map((r) => [r.threads, r.reduceMs + r.optimizerMs]) },
]));
writeFileSync(join(out, 'coordinator-bytes.svg'), lineChart("The coordinator's link: KB sent + received per step", '1-thread workers', 'KB per step', [
  { name: 'star', points: remote.map((r) => [r.threads, r.coordSentKB + r.coordReceivedKB]) },
  { name: 'sharded', points: sharded.map((r) => [r.threads, r.coordSentKB + r.coordReceivedKB]) },
]));
if (sim.length > 0) {
  writeFileSync(join(out, 'simulated.svg'), lineChart('Coordinator with simulated workers', 'simulated workers', 'steps/s', [
    { name: 'steps/s', points: sim.map((r) => [r.participants, r.stepsPerSecond]) },
  ]));
}
console.log(`wrote ${join(out, 'scaling.csv')}, scaling.md and SVG plots`);
rmSync(work, { recursive: true, force: true });
