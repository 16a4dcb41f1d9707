// `npm run chaos`: a longer fault-injection run. A coordinator (1 local thread) trains with
// remote workers over loopback while this script SIGKILLs workers at random moments, starts
// replacements, and once SIGKILLs the coordinator itself and resumes it. The result is compared
// with an undisturbed run of the same settings.
//
//   npm run chaos -- [--epochs E] [--train-limit N] [--workers W] [--seed S]
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const { values } = parseArgs({
  options: {
    epochs: { type: 'string', default: '3' },
    'train-limit': { type: 'string', default: '12000' },
    workers: { type: 'string', default: '2' },
    seed: { type: 'string', default: '3' },
    help: { type: 'boolean', short: 'h' },
  },
});
if (values.help) {
  console.log('Usage: npm run chaos -- [--epochs E] [--train-limit N] [--workers W] [--seed S]');
  process.exit(0);
}
const work = mkdtempSync(join(tmpdir(), 'lenet-chaos-'));
const port = 21000 + Math.floor(Math.random() * 4000);
const common = ['--epochs', values.epochs, '--train-limit', values['train-limit'], '--test-limit', '2000', '--seed', values.seed, '--quiet', '--threads', '1'];
const children = new Set();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
let rngState = 12345;
const rnd = () => ((rngState = (Math.imul(rngState, 1664525) + 1013904223) >>> 0) / 2 ** 32);

function run(bin, args, onLine) {
  const child = spawn(process.execPath, [join(root, 'bin', bin), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  let out = '';
  child.stdout.on('data', (d) => {
    out += d;
    onLine?.(String(d));
  });
  child.stderr.on('data', (d) => (out += d));
  const done = new Promise((resolve) => child.on('close', (code, signal) => (children.delete(child), resolve({ code, signal, out }))));
  return { child, done };
}
const records = (file) => readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
process.on('exit', () => children.forEach((c) => c.kill('SIGKILL')));

console.log(`chaos: ${values.epochs} epochs of ${values['train-limit']} samples, ${values.workers} workers + 1 local thread, seed ${values.seed}`);
const ref = run('lenet-coord.js', ['start', ...common, '--port', '0', '--checkpoint-dir', join(work, 'ref'), '--metrics-out', join(work, 'ref.jsonl')]);
if ((await ref.done).code !== 0) throw new Error('reference run failed');
const refEpochs = records(join(work, 'ref.jsonl')).filter((r) => r.type === 'epoch');

const faults = [];
const coordArgs = ['start', ...common, '--port', String(port), '--checkpoint-every-steps', '20', '--checkpoint-dir', join(work, 'chaos'), '--metrics-out', join(work, 'chaos.jsonl')];
let coord = run('lenet-coord.js', coordArgs);
const workers = [];
const startWorker = () => workers.push(run('lenet-worker.js', ['join', `ws://127.0.0.1:${port}`, '--threads', '1', '--connect-timeout', '120']));
for (let i = 0; i < Number(values.workers); i++) startWorker();

let coordinatorKilled = false;
let finished = false;
coord.done.then(() => (finished = true));
while (!finished) {
  await sleep(1500 + rnd() * 3000);
  if (finished) break;
  const live = workers.filter((w) => w.child.exitCode === null && w.child.signalCode === null);
  if (!coordinatorKilled && faults.length >= 3) {
    coordinatorKilled = true;
    coord.child.kill('SIGKILL');
    await coord.done;
    faults.push('coordinator SIGKILL');
    console.log('  fault: coordinator SIGKILL; resuming');
    coord = run('lenet-coord.js', [...coordArgs, '--resume']);
    finished = false;
    coord.done.then(() => (finished = true));
    continue;
  }
  if (live.length > 0) {
    const victim = live[Math.floor(rnd() * live.length)];
    victim.child.kill('SIGKILL');
    faults.push('worker SIGKILL');
    console.log(`  fault: worker SIGKILL (pid ${victim.child.pid}); starting a replacement`);
    startWorker();
  }
}
const result = await coord.done;
for (const w of workers) w.child.kill('SIGKILL');
const chaosEpochs = records(join(work, 'chaos.jsonl')).filter((r) => r.type === 'epoch');
const stepsPerEpoch = records(join(work, 'chaos.jsonl')).find((r) => r.type === 'run').stepsPerEpoch;
const samples = Number(values['train-limit']);
// Default batch 64 = 2 microbatches of 32; a short last batch has ceil(rest / 32).
const microbatchesPerEpoch = Math.floor(samples / 64) * 2 + Math.ceil((samples % 64) / 32);
const onceEach = chaosEpochs.length === refEpochs.length && chaosEpochs.every((e, i) => e.trainLoss === refEpochs[i].trainLoss);
const digestEqual = chaosEpochs.length > 0 && chaosEpochs.at(-1).weightsSha256 === refEpochs.at(-1).weightsSha256;
console.log(`faults injected: ${faults.length} (${faults.filter((f) => f.startsWith('worker')).length} workers, ${faults.filter((f) => f.startsWith('coordinator')).length} coordinator)`);
console.log(`coordinator exit: ${result.code}; steps completed: ${chaosEpochs.at(-1)?.globalStep ?? 0} of ${stepsPerEpoch * Number(values.epochs)}`);
console.log(`microbatches computed per epoch: ${chaosEpochs.map((e) => e.participants.reduce((s, p) => s + p.microbatches, 0)).join(', ')} (plan: ${microbatchesPerEpoch}; an epoch interrupted by the coordinator kill counts only what ran after the resume)`);
console.log(`samples per epoch seen exactly once: ${onceEach ? 'yes' : 'no'} (every epoch's summed training loss equals the undisturbed run's, bit for bit)`);
console.log(`final digest equal: ${digestEqual ? 'yes' : 'no'} (${chaosEpochs.at(-1)?.weightsSha256?.slice(0, 16)}... vs ${refEpochs.at(-1).weightsSha256.slice(0, 16)}...)`);
rmSync(work, { recursive: true, force: true });
process.exit(onceEach && digestEqual && result.code === 0 ? 0 : 1);
