// `npm run scaling`: how lenet-dist scales on this machine. Writes results/scaling.csv, SVG plots
// and scaling.md (the tables and a fitted cost model, headed by the command and the machine).
// Runs one after another, each printing its figure as it finishes:
// - local: 1 and 2 local threads;
// - loopback: 1 to 4 remote worker processes, star and (2 or more) sharded;
// - hosts (root only): every host, the coordinator included, in its own network namespace on
//   one bridge, each link shaped both ways; 2 and 4 real workers, and 4, 8 and 16 with simulated
//   compute (LENET_SIMULATE_COMPUTE_MS) at fixed per-worker and global batches, star and sharded;
// - sim: 16, 64 and 256 simulated clients in one process (scripts/sim-workers.mjs, the star only),
//   for the coordinator's own per-step cost.
// Every row has the coordinator's bytes per step, sent and received.
//
//   npm run scaling -- [--parts ...] [--rates ...] [--hosts ...] [--sim ...] [--out DIR] [--replot]
import { execFileSync, spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { lastEpochRecord, machineSummary, runWithWorkers } from './lib.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));
/** The --rates value for links left unshaped. */
const UNSHAPED = 'unshaped';
const USAGE = `Usage: npm run scaling -- [options]
  --samples N        samples per real run                                  [6400]
  --parts LIST       which experiments: local,loopback,hosts,sim (local always runs: its
                     microbatch time drives the simulated workers)     [all of them]
  --rates LIST       link rates of the hosts rows, as tc writes them, or unshaped
                     (no tc: the control that shows whether links or cores bound a row)
                                                                           [1gbit,100mbit]
  --hosts LIST       compute-simulated workers of the hosts rows              [4,8,16]
  --sim LIST         simulated workers of the load rows                       [16,64,256]
  --out DIR          where scaling.csv, scaling.md and the plots go           [results]
  --replot           run nothing: rewrite scaling.md and the plots from DIR/scaling.csv`;
const { values } = parseArgs({ options: { samples: { type: 'string', default: '6400' }, parts: { type: 'string', default: 'local,loopback,hosts,sim' }, rates: { type: 'string', default: '1gbit,100mbit' },
  hosts: { type: 'string', default: '4,8,16' }, sim: { type: 'string', default: '16,64,256' }, out: { type: 'string', default: 'results' }, replot: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } } });
if (values.help) {
  console.log(USAGE);
  process.exit(0);
}
const parts = new Set(values.replot ? [] : values.parts.split(','));
try {
  values.rates.split(',').forEach(bitsPerSecond);
} catch (err) {
  console.error(`error: ${err.message}`);
  process.exit(2);
}
/**
 * One run at a time: a second one's load would be in the first's figures, and its hosts rows
 * tear down the network namespaces, the bridge and the port the first's rows are using (their
 * workers vanish mid-row). A lock file holds the running one's pid; one whose owner is gone is
 * taken over.
 */
const RUN_LOCK = process.env.LENET_SCALING_LOCK ?? join(tmpdir(), 'lenet-scaling.lock');
function takeRunLock() {
  for (;;) {
    try {
      writeFileSync(RUN_LOCK, String(process.pid), { flag: 'wx' });
      process.on('exit', () => rmSync(RUN_LOCK, { force: true }));
      return;
    } catch (err) {
      if (err.code !== 'EEXIST') throw err;
    }
    const owner = Number(readFileSync(RUN_LOCK, 'utf8'));
    if (isScaling(owner)) {
      console.error(`error: another npm run scaling (pid ${owner}) is running; wait for it to finish (its figures would include this one's load)`);
      process.exit(1);
    }
    rmSync(RUN_LOCK, { force: true });
  }
}
/** Whether `pid` is a run of this script (by its command line; where there is no /proc, no). */
function isScaling(pid) {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('scaling.mjs');
  } catch {
    return false;
  }
}
if (parts.size > 0) takeRunLock();
// A relative --out is under the project (as npm runs it); an absolute one is taken as it is.
const out = resolve(root, values.out);
mkdirSync(out, { recursive: true });
const work = mkdtempSync(join(tmpdir(), 'lenet-scaling-'));
const samples = Number(values.samples);
const rows = values.replot ? readRows(join(out, 'scaling.csv')) : [];
/** The rows of an earlier run's scaling.csv. */
function readRows(csv) {
  const [head, ...lines] = readFileSync(csv, 'utf8').trim().split('\n');
  const keys = head.split(',');
  return lines.map((line) => Object.fromEntries(line.split(',').map((v, i) => [keys[i], v === '' ? undefined : keys[i] === 'mode' ? v : Number(v)])));
}
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
function record(mode, participants, threads, batch, e, extra = {}) {
  const t = e.stepTimeMs;
  const bytes = e.coordinatorBytesPerStep ?? { sent: 0, received: 0 };
  const row = { mode, participants, threads, batch, samplesPerSecond: e.samplesPerSecond, stepsPerSecond: e.samplesPerSecond / batch, ...Object.fromEntries(Object.entries(t).map(([k, v]) => [`${k}Ms`, v])),
    coordSentKB: bytes.sent / 1024, coordReceivedKB: bytes.received / 1024, coordLinkKB: extra.coordLinkKB, workerLinkKB: extra.workerLinkKB, workerLinkMaxKB: extra.workerLinkMaxKB,
    simComputeMs: extra.simComputeMs, efficiency: extra.simComputeMs === undefined ? undefined : extra.simComputeMs / t.step, cpuBusy: extra.cpuBusy,
    coordCpuMs: extra.coordCpuMs, workerCpuMs: extra.workerCpuMs };
  rows.push(row);
  console.log(`  ${mode.padEnd(22)} ${String(participants).padStart(3)} participant(s) ${String(threads).padStart(3)} thread(s): ${e.samplesPerSecond.toFixed(0).padStart(6)} samples/s, ${row.stepsPerSecond.toFixed(1).padStart(6)} steps/s; ` +
    `step ${t.step.toFixed(1)} ms = compute ${t.compute.toFixed(1)} + transfer ${t.transfer.toFixed(1)} + reduce ${t.reduce.toFixed(2)} + optimizer ${t.optimizer.toFixed(2)}; ` +
    `coordinator ${row.coordSentKB.toFixed(0)} KB out, ${row.coordReceivedKB.toFixed(0)} KB in per step` +
    (row.coordLinkKB === undefined ? '' : `; links per step: coordinator ${row.coordLinkKB.toFixed(0)} KB, workers ${row.workerLinkKB.toFixed(0)} KB (max ${row.workerLinkMaxKB.toFixed(0)})`) +
    (row.efficiency === undefined ? '' : `; efficiency ${(100 * row.efficiency).toFixed(0)}% (${row.simComputeMs.toFixed(0)} ms simulated compute per step)`) +
    (row.cpuBusy === undefined ? '' : `; this machine's CPU ${(100 * row.cpuBusy).toFixed(0)}% busy`) +
    (row.workerCpuMs === undefined ? '' : `; CPU per step: coordinator ${row.coordCpuMs.toFixed(1)} ms, each worker ${row.workerCpuMs.toFixed(1)} ms`));
}

// A replot keeps the machine the figures came from, named in the scaling.md beside the CSV.
function recordedMachine() {
  const md = join(out, 'scaling.md');
  if (existsSync(md)) return readFileSync(md, 'utf8').match(/^Made by `[^`]*` on (.*?)\. Training throughput/m)?.[1];
  console.log(`scaling: no ${md} beside the CSV; naming this machine as the one its figures came from`);
  return undefined;
}
const machine = (values.replot && recordedMachine()) || machineSummary();
console.log(`scaling: ${machine}; ${samples} samples per real run, global batch ${BATCH}, microbatch 32`);
for (const threads of values.replot ? [] : [1, 2]) {
  const name = `local-${threads}`;
  execFileSync(process.execPath, coordArgs(name, ['--threads', String(threads), '--train-limit', String(samples), '--batch-size', String(BATCH)]), { stdio: ['ignore', 'ignore', 'inherit'] });
  record('local', 1, threads, BATCH, epochRecord(name));
}
for (const allreduce of parts.has('loopback') ? ['star', 'sharded'] : []) {
  for (let n = allreduce === 'star' ? 1 : 2; n <= 4; n++) {
    const e = await withWorkers(`remote-${allreduce}-${n}`, ['--threads', '0', '--wait-workers', String(n), '--train-limit', String(samples), '--batch-size', String(BATCH), '--allreduce', allreduce], (url) =>
      Array.from({ length: n }, () => spawn(process.execPath, [join(root, 'bin/lenet-worker.js'), 'join', url, '--threads', '1', '--backend', 'wasm'], { stdio: 'ignore' })));
    record(`remote-${allreduce}`, n, n, BATCH, e);
  }
}
// Across hosts: the coordinator and every worker each in its own network namespace, their veth
// pairs' outer ends on one bridge, like machines on a switch. Both ends of every host's link are
// shaped with tc tbf (this kernel has tbf, not netem): each host's own link, both directions. The
// bucket holds a millisecond of the rate (burstFor), so every frame is paced at the link rate (a
// large one would let a whole 243 KB frame through at once); `unshaped` leaves the links as the
// kernel makes them, as a control. Real-compute rows with 2 and 4 workers; compute-simulated rows with 4, 8 and
// 16 (LENET_SIMULATE_COMPUTE_MS: the real protocol, bytes, reduce and update, a sleep of the
// measured microbatch time instead of the gradient), at 256 samples per worker per step (weak
// scaling) and at a fixed global batch of 1024. Every link's bytes are read off its counters.
// Needs root.
const MAX_HOSTS = 16;
const HOSTS_PORT = 7411;
const HOSTS_TOKEN = 'scaling-netns-token-0123456789';
/**
 * Steps of the compute-simulated rows before the recorded epoch. A simulated worker's own CPU per
 * step falls by half over its first hundred steps and more slowly after (16 sharded workers on
 * loopback: a step of 125 ms at first, 92 ms after 100 steps, and steps 113-196 at 71-81%
 * efficiency against 70-72% at 99-112). It is V8 tiering the per-step code up: with workers
 * run as `node --interrupt-budget=8000` (tier-up 8x sooner) the second epoch of 14 steps was
 * already at the later figures. With one warm-up epoch of 14 steps a row showed mostly
 * start-up, with 100 steps it was still on the curve.
 */
const HOSTS_WARMUP_STEPS = 200;
function sh(cmd) {
  execFileSync('sh', ['-c', cmd], { stdio: ['ignore', 'ignore', 'pipe'] });
}
function netnsDown() {
  const hosts = ['c', ...Array.from({ length: MAX_HOSTS }, (_, i) => String(i + 1))];
  sh(hosts.map((h) => `ip netns del lenet-w${h} 2>/dev/null; ip link del lenet-v${h} 2>/dev/null;`).join(' ') + ' ip link del lenet-br0 2>/dev/null; true');
}
/**
 * The bucket: one millisecond of the rate, and at least 32 KB. From 1 Gbit/s on that exceeds a
 * 64 KB segmentation-offload packet, which tbf would otherwise cut into MTU-sized packets in
 * software: at 16 hosts, that alone kept both cores busy in softirq (a NIC does it in hardware).
 */
function burstFor(rate) {
  return `${Math.max(32, Math.ceil(bitsPerSecond(rate) / 8 / 1000 / 1024))}kb`;
}
/** Host `h` ('c' for the coordinator, at 10.77.0.1; worker i at 10.77.0.(i+1)) on the bridge. */
function hostUp(h, address, rate) {
  sh(`ip netns add lenet-w${h}`);
  sh(`ip link add lenet-v${h} type veth peer name eth0 netns lenet-w${h}`);
  sh(`ip link set lenet-v${h} master lenet-br0 && ip link set lenet-v${h} up`);
  sh(`ip netns exec lenet-w${h} sh -c 'ip addr add ${address}/24 dev eth0 && ip link set eth0 up && ip link set lo up'`);
  if (rate === UNSHAPED) return;
  const burst = burstFor(rate);
  sh(`tc qdisc add dev lenet-v${h} root tbf rate ${rate} burst ${burst} latency 100ms`);
  sh(`ip netns exec lenet-w${h} tc qdisc add dev eth0 root tbf rate ${rate} burst ${burst} latency 100ms`);
}
function netnsUp(workers, rate) {
  netnsDown();
  sh('ip link add lenet-br0 type bridge && ip link set lenet-br0 up');
  hostUp('c', '10.77.0.1', rate);
  for (let i = 1; i <= workers; i++) hostUp(String(i), `10.77.0.${i + 1}`, rate);
}
/** The machine's CPU time so far (/proc/stat, all cores): busy, and in all. */
function cpuTimes() {
  const [, ...fields] = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/);
  const [user, nice, system, idle, iowait, irq, softirq, steal] = fields.map(Number);
  return { busy: user + nice + system + irq + softirq + steal, total: user + nice + system + idle + iowait + irq + softirq + steal };
}
/** Clock ticks per second of /proc/PID/stat's CPU times. */
const CLOCK_TICKS = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
/** The CPU time, user and system, that process `pid` and its threads have used so far, in ms. */
function processCpuMs(pid) {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ').at(-1).split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS;
}
/** Bytes host `h`'s link has carried, both ways. */
function linkBytes(h) {
  const stat = (k) => Number(readFileSync(`/sys/class/net/lenet-v${h}/statistics/${k}`, 'utf8'));
  return stat('rx_bytes') + stat('tx_bytes');
}
/**
 * One run across hosts; returns its last epoch record with the links' bytes per step over that
 * epoch and the compute a worker simulated per step, if any. With `warmupSteps`, epochs of the
 * same size run first, at least that many steps in all, and the last one is recorded.
 */
async function hostsRun(name, { workers, rate, allreduce, batch, simMs, warmupSteps = 0 }) {
  netnsUp(workers, rate);
  const ids = Array.from({ length: workers }, (_, i) => String(i + 1));
  const limit = Math.min(60000, batch * (simMs ? 20 : Math.ceil(samples / batch)));
  const epochs = 1 + Math.ceil(warmupSteps / Math.ceil(limit / batch));
  // The links' counters from the end of the last warm-up epoch (its record is written) to the end
  // of the run: the recorded epoch's bytes, without the joins, their probes and the warm-up.
  // The processes' CPU times over the same span: the coordinator's are read as its last epoch
  // record is written, before it exits.
  const metrics = join(work, `${name}.jsonl`);
  let before;
  let after;
  let procs = [];
  const snapshot = () => ({ c: linkBytes('c'), w: ids.map(linkBytes), cpu: cpuTimes(), procs: procs.map((pid) => { try { return processCpuMs(pid); } catch { return NaN; } }) });
  // Polled every 10 ms through the recorded epoch too: only what was appended since is read.
  let recordsSeen = 0;
  let readTo = 0;
  let partial = '';
  const epochsDone = () => {
    const size = existsSync(metrics) ? statSync(metrics).size : 0;
    if (size <= readTo) return recordsSeen;
    const fd = openSync(metrics, 'r');
    const chunk = Buffer.alloc(size - readTo);
    readSync(fd, chunk, 0, chunk.length, readTo);
    closeSync(fd);
    readTo = size;
    const lines = (partial + chunk.toString('utf8')).split('\n');
    partial = lines.pop();
    recordsSeen += lines.filter((l) => l.includes('"type":"epoch"')).length;
    return recordsSeen;
  };
  const watch = setInterval(() => {
    if (procs.length === 0) return;
    const done = epochsDone();
    if (!before && done >= epochs - 1) before = snapshot();
    if (before && !after && done >= epochs) after = snapshot();
  }, 10);
  if (epochs === 1) before = snapshot();
  const env = simMs ? { ...process.env, LENET_SIMULATE_COMPUTE_MS: simMs.toFixed(2) } : process.env;
  await runWithWorkers(
    coordArgs(name, ['--threads', '0', '--wait-workers', String(workers), '--batch-size', String(batch), '--microbatch', '32', '--train-limit', String(limit),
      '--host', '0.0.0.0', '--port', String(HOSTS_PORT), '--token', HOSTS_TOKEN, '--allreduce', allreduce, '--verify-fraction', '0'], epochs),
    () => ids.map((i) => spawn('ip', ['netns', 'exec', `lenet-w${i}`, process.execPath, join(root, 'bin/lenet-worker.js'), 'join', `ws://10.77.0.1:${HOSTS_PORT}`,
      '--threads', '1', '--backend', 'wasm', '--token', HOSTS_TOKEN, '--name', `host-${i}`], { stdio: 'ignore', env })),
    ['ip', 'netns', 'exec', 'lenet-wc'],
    (coordinator, workerPids) => (procs = [coordinator, ...workerPids]),
  );
  clearInterval(watch);
  const steps = (epochs > 1 ? 1 : epochs) * Math.ceil(limit / batch);
  const e = epochRecord(name);
  const perWorker = ids.map((i, k) => (linkBytes(i) - before.w[k]) / steps / 1024);
  const cpu = cpuTimes();
  // With one epoch the span holds the joins and their probes: no per-step figure.
  const cpuMs = after && epochs > 1 ? after.procs.map((ms, k) => (ms - before.procs[k]) / steps) : [];
  return {
    e,
    extra: {
      coordCpuMs: cpuMs[0],
      workerCpuMs: cpuMs.length > 1 ? cpuMs.slice(1).reduce((a, b) => a + b, 0) / workers : undefined,
      coordLinkKB: (linkBytes('c') - before.c) / steps / 1024,
      workerLinkKB: perWorker.reduce((a, b) => a + b, 0) / workers,
      workerLinkMaxKB: Math.max(...perWorker),
      simComputeMs: simMs ? simMs * (batch / 32 / workers) : undefined,
      cpuBusy: (cpu.busy - before.cpu.busy) / (cpu.total - before.cpu.total),
    },
  };
}
let netnsOk = parts.has('hosts') && process.getuid?.() === 0;
if (netnsOk) {
  try {
    netnsUp(1, '1gbit');
  } catch (err) {
    netnsOk = false;
    console.log(`netns: skipped, cannot create network namespaces here (${String(err.stderr ?? err.message).trim()})`);
  }
} else if (parts.has('hosts')) {
  console.log('netns: skipped, creating network namespaces needs root');
}
/** The measured compute time of one microbatch of 32 on one thread, for the simulated workers. */
const perMicrobatchMs = rows.find((r) => r.mode === 'local' && r.threads === 1).computeMs / (BATCH / 32);
if (netnsOk) {
  try {
    const rates = values.rates.split(',');
    for (const rate of rates) {
      for (const workers of [2, 4]) {
        for (const allreduce of ['star', 'sharded']) {
          const { e, extra } = await hostsRun(`netns-${rate}-${allreduce}-${workers}`, { workers, rate, allreduce, batch: BATCH });
          record(`netns-${rate}-${allreduce}`, workers, workers, BATCH, e, extra);
        }
      }
    }
    for (const rate of rates) {
      for (const [scaling, sizes] of [['weak', values.hosts.split(',').map(Number)], ['strong', values.hosts.split(',').map(Number).filter((n) => n * 256 !== 1024)]]) {
        for (const workers of sizes) {
          for (const allreduce of ['star', 'sharded']) {
            const batch = scaling === 'weak' ? 256 * workers : 1024;
            const { e, extra } = await hostsRun(`hosts-${rate}-${scaling}-${allreduce}-${workers}`, { workers, rate, allreduce, batch, simMs: perMicrobatchMs, warmupSteps: HOSTS_WARMUP_STEPS });
            record(`hosts-${rate}-${scaling}-${allreduce}`, workers, workers, batch, e, extra);
          }
        }
      }
    }
  } finally {
    netnsDown();
  }
}
for (const n of parts.has('sim') ? values.sim.split(',').map(Number) : []) {
  const batch = 32 * n;
  const limit = Math.min(60000, batch * 20);
  // Two epochs of 20 steps, the second recorded: the first is warm-up (the JIT, and socket buffers
  // that grow only under load) and ran 30% slower at 64 workers.
  const e = await withWorkers(`sim-${n}`, ['--threads', '0', '--wait-workers', String(n), '--batch-size', String(batch), '--microbatch', '32', '--train-limit', String(limit)], (url) => [
    spawn(process.execPath, [join(root, 'scripts/sim-workers.mjs'), url, String(n), perMicrobatchMs.toFixed(2)], { stdio: 'ignore' }),
  ], 2);
  record('sim', n, n, batch, e);
}

// ---- across hosts: the table, and the cost model fitted to it ----
/** Bytes of the model (float32 parameters): what a gradient or a copy of the weights weighs. */
const MODEL_BYTES = 4 * 60806;
function bitsPerSecond(rate) {
  if (rate === UNSHAPED) return Infinity;
  const m = rate.match(/^(\d+)(k|m|g)bit$/);
  if (!m) throw new Error(`--rates: '${rate}' is not a rate tc understands here (say 100mbit or 1gbit)`);
  return Number(m[1]) * { k: 1e3, m: 1e6, g: 1e9 }[m[2]];
}
/** Wire time in ms of `bytes` at `rate`. */
const wireMs = (bytes, rate) => (bytes * 8 * 1000) / bitsPerSecond(rate);
/** Least squares of y = sum of k[j] x[j]: the k for points [[x0, x1, ...], y]. */
function leastSquares(points) {
  const d = points[0][0].length;
  const A = Array.from({ length: d }, () => new Array(d + 1).fill(0));
  for (const [x, y] of points) {
    for (let i = 0; i < d; i++) {
      for (let j = 0; j < d; j++) A[i][j] += x[i] * x[j];
      A[i][d] += x[i] * y;
    }
  }
  for (let i = 0; i < d; i++) {
    const pivot = A.slice(i).reduce((best, row, k) => (Math.abs(row[i]) > Math.abs(A[best][i]) ? i + k : best), i);
    [A[i], A[pivot]] = [A[pivot], A[i]];
    for (let k = 0; k < d; k++) {
      if (k === i || A[i][i] === 0) continue;
      const f = A[k][i] / A[i][i];
      for (let j = i; j <= d; j++) A[k][j] -= f * A[i][j];
    }
  }
  return A.map((row, i) => (row[i] === 0 ? 0 : row[d] / row[i]));
}
/**
 * The step's time beyond its compute, fitted as a fixed cost, a cost per frame or per worker,
 * and a share of the busiest link's wire time: for the star the coordinator's link, which carries
 * 2 N models a step (weights out, gradients in) and a cost per worker in its software; sharded,
 * each worker's link, which carries 2 (N-1)/N models each way, and 2 (N-1) frames to and from
 * its peers. The wire share is below 1 where sending overlaps computing (the dense layers' part).
 */
function fitModel(simRows) {
  const fit = (mode, features) => {
    const k = leastSquares(simRows.filter((r) => r.mode.endsWith(mode)).map((r) => [features(r.participants, r.rate), r.stepMs - r.simComputeMs]));
    return { k, overhead: (n, rate) => features(n, rate).reduce((sum, x, j) => sum + Math.max(0, k[j]) * x, 0) };
  };
  return {
    star: fit('-star', (n, rate) => [1, n, wireMs(2 * n * MODEL_BYTES, rate)]),
    sharded: fit('-sharded', (n, rate) => [1, 2 * (n - 1), wireMs((2 * MODEL_BYTES * (n - 1)) / n, rate)]),
  };
}
function hostsSection() {
  const hosts = rows.filter((r) => r.mode.startsWith('hosts-') || r.mode.startsWith('netns-'));
  if (hosts.length === 0) return [];
  const pct = (x) => (x === undefined ? '' : `${(100 * x).toFixed(0)}%`);
  const kb = (x) => (x === undefined ? '' : x.toFixed(0));
  const lines = [
    '## Across hosts',
    '',
    'Every host (the coordinator and each worker) in its own network namespace on one bridge, each link shaped with `tc tbf` both ways, or not at all in the `unshaped` rows (`netns-*`: real compute, global batch 256; `hosts-RATE-weak-*`: ' +
      'compute-simulated workers, 256 samples per worker per step; `hosts-RATE-strong-*`: the same at a global batch of 1024). `--verify-fraction 0` in every row. ' +
      "Link figures are each link's own counters (both directions) over the recorded epoch, divided by its steps; the coordinator's are its link's, the workers' the mean (and the busiest) of theirs. " +
      'Efficiency is the compute a worker simulated per step over the step time. CPU is how busy this machine was meanwhile: every host shares its cores, so near 100% the row measures them, not the links; ' +
      'CPU ms per step is what the coordinator and each worker (the mean) used of it, user and system, from /proc/PID/stat over the recorded epoch (rows with a warm-up only).',
    '',
    '| mode | workers | global batch | samples/s | step ms | simulated compute ms | efficiency | coordinator link KB/step | worker link KB/step (max) | CPU busy | CPU ms/step, coordinator / worker |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
    ...hosts.map((r) => `| ${r.mode} | ${r.participants} | ${r.batch} | ${r.samplesPerSecond.toFixed(0)} | ${r.stepMs.toFixed(1)} | ${r.simComputeMs === undefined ? '' : r.simComputeMs.toFixed(1)} | ${pct(r.efficiency)} | ` +
      `${kb(r.coordLinkKB)} | ${kb(r.workerLinkKB)} (${kb(r.workerLinkMaxKB)}) | ${pct(r.cpuBusy)} | ${r.workerCpuMs === undefined ? '' : `${r.coordCpuMs.toFixed(1)} / ${r.workerCpuMs.toFixed(1)}`} |`),
    '',
  ];
  const pairs = [];
  for (const r of hosts.filter((x) => x.mode.endsWith('-sharded'))) {
    const star = hosts.find((x) => x.mode === r.mode.replace(/-sharded$/, '-star') && x.participants === r.participants && x.batch === r.batch);
    if (star) pairs.push(`${r.mode.replace(/-sharded$/, '')} ${r.participants}: ${(r.samplesPerSecond / star.samplesPerSecond).toFixed(2)}x`);
  }
  if (pairs.length > 0) lines.push(`Sharded throughput over the star's: ${pairs.join('; ')}.`, '');
  // The model has a wire term; unshaped rows have no rate to fit it to.
  const sim = hosts.filter((r) => r.simComputeMs !== undefined).map((r) => ({ ...r, rate: r.mode.split('-')[1] })).filter((r) => r.rate !== UNSHAPED);
  // Fitted twice: to every simulated row, and to those with at most 8 workers, where this
  // machine's two cores were mostly idle; at 16 the per-frame term also holds the hosts'
  // contention for them. Each model has three constants: a fit needs three rows of each mode.
  const fittable = (rows) => ['-star', '-sharded'].every((mode) => rows.filter((r) => r.mode.endsWith(mode)).length >= 3);
  const fits = [
    { name: 'every simulated row', rows: sim },
    { name: 'the rows with at most 8 workers', rows: sim.filter((r) => r.participants <= 8) },
  ]
    .filter((f) => fittable(f.rows))
    .map((f) => ({ name: f.name, ...fitModel(f.rows) }));
  if (fits.length > 0) {
    const c = 8 * perMicrobatchMs;
    const k = (fit, j) => Math.max(0, fit.k[j]).toFixed(2);
    lines.push(
      '### The cost model, fitted to the simulated rows',
      '',
      `c is a worker's compute per step, M the model (${(MODEL_BYTES / 1024).toFixed(0)} KB), wire(B) the time B bytes take on one link. The constants are least-squares fits (negative ones taken as 0) of each row's step time less its simulated compute, ` +
        'once to every simulated row and once to those with at most 8 workers, where this machine\'s two cores were mostly idle. Where every host shares two cores the per-frame term holds their contention for them too; on hosts of their own it would be their CPU\'s and the network\'s latency.',
      '',
    );
    for (const f of fits) {
      let half = 2;
      while (half < 100000 && c / (c + f.sharded.overhead(half, '1gbit')) >= 0.5) half++;
      lines.push(
        `Fitted to ${f.name}:`,
        '',
        '```',
        `T_star(N)    = c + ${k(f.star, 0)} ms + ${k(f.star, 1)} ms x N       + ${k(f.star, 2)} x wire(2 N M)`,
        `T_sharded(N) = c + ${k(f.sharded, 0)} ms + ${k(f.sharded, 1)} ms x 2(N-1) + ${k(f.sharded, 2)} x wire(2 M (N-1)/N)`,
        '```',
        '',
        `Predicted for 256 samples per worker per step (c = 8 microbatches = ${c.toFixed(0)} ms, measured above):`,
        '',
        '| workers | link | star step ms | star efficiency | sharded step ms | sharded efficiency |',
        '| --- | --- | --- | --- | --- | --- |',
        ...[16, 64, 256].flatMap((n) => ['1gbit', '10gbit'].map((rate) => {
          const tStar = c + f.star.overhead(n, rate);
          const tSharded = c + f.sharded.overhead(n, rate);
          return `| ${n} | ${rate} | ${tStar.toFixed(0)} | ${pct(c / tStar)} | ${tSharded.toFixed(0)} | ${pct(c / tSharded)} |`;
        })),
        '',
        `Sharded efficiency falls below 50% at about ${half} workers on 1 Gbit/s: its frames per step grow with N (each worker exchanges with every other), its bytes do not.`,
        '',
      );
    }
  }
  return lines;
}

const keys = Object.keys(rows[0]);
writeFileSync(join(out, 'scaling.csv'), [keys.join(','), ...rows.map((r) => keys.map((k) => (typeof r[k] === 'number' ? +r[k].toFixed(3) : (r[k] ?? ''))).join(','))].join('\n') + '\n');

const args = process.argv.slice(2).filter((a) => a !== '--replot');
const command = ['npm run scaling', ...(args.length > 0 ? ['--', ...args] : [])].join(' ');
const mdRow = (r) => `| ${r.mode} | ${r.participants} | ${r.threads} | ${r.batch} | ${r.samplesPerSecond.toFixed(0)} | ${r.stepsPerSecond.toFixed(1)} | ` +
  `${r.stepMs.toFixed(1)} | ${r.computeMs.toFixed(1)} | ${r.transferMs.toFixed(1)} | ${r.reduceMs.toFixed(2)} | ${r.optimizerMs.toFixed(2)} | ${r.coordSentKB.toFixed(0)} | ${r.coordReceivedKB.toFixed(0)} |`;
writeFileSync(join(out, 'scaling.md'), [
  '# Scaling figures',
  '',
  `Made by \`${command}\` on ${machine}. Training throughput of the last epoch of each run; ` +
    'step times in ms per step (compute and transfer of the slowest range). Modes: `local` threads of one process; `remote-star` and `remote-sharded` 1-thread worker processes on loopback with a ' +
    'coordinator that only coordinates, with `--allreduce star` or `sharded`; `netns-RATE-*` and `hosts-RATE-*` hosts on a switch (below); `sim` simulated clients in one process, the star only ' +
    '(the real protocol, zero gradients after the measured compute time of one microbatch).',
  '',
  '| mode | participants | threads | global batch | samples/s | steps/s | step | compute | transfer | reduce | optimizer | coordinator KB out per step | KB in |',
  '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
  ...rows.map(mdRow),
  '',
  ...hostsSection(),
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
const weak = (rate, mode) => rows.filter((r) => r.mode === `hosts-${rate}-weak-${mode}`).map((r) => [r.participants, r.samplesPerSecond]);
if (rows.some((r) => r.mode.startsWith('hosts-'))) {
  writeFileSync(join(out, 'hosts-throughput.svg'), lineChart('Hosts on a switch, 256 samples per worker per step', 'compute-simulated workers', 'samples/s', [
    { name: 'sharded, 1 Gbit/s', points: weak('1gbit', 'sharded') },
    { name: 'star, 1 Gbit/s', points: weak('1gbit', 'star') },
    { name: 'sharded, 100 Mbit/s', points: weak('100mbit', 'sharded') },
    { name: 'star, 100 Mbit/s', points: weak('100mbit', 'star') },
  ].filter((s) => s.points.length > 0)));
  const link = (mode) => rows.filter((r) => r.mode === `hosts-1gbit-weak-${mode}`).map((r) => [r.participants, r.coordLinkKB]);
  writeFileSync(join(out, 'hosts-coordinator-link.svg'), lineChart("The coordinator's link per step, 1 Gbit/s hosts", 'compute-simulated workers', 'KB per step, both ways', [
    { name: 'star', points: link('star') },
    { name: 'sharded', points: link('sharded') },
  ].filter((s) => s.points.length > 0)));
}
if (sim.length > 0) {
  writeFileSync(join(out, 'simulated.svg'), lineChart('Coordinator with simulated workers', 'simulated workers', 'steps/s', [
    { name: 'steps/s', points: sim.map((r) => [r.participants, r.stepsPerSecond]) },
  ]));
}
console.log(`wrote ${join(out, 'scaling.csv')}, scaling.md and SVG plots`);
rmSync(work, { recursive: true, force: true });
