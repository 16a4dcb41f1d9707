// How long a hand-off between two threads takes on this machine: the main thread waits on a
// shared flag (Atomics.waitAsync, as the pool waits for a thread's flags) while a worker thread
// either sleeps or computes for --work-ms, then raises the flag (Atomics.notify). Prints the time
// from the notify to the main thread running again, for both cases. On the 2-vCPU microVM of the
// docs/performance.md a waiter wakes about three times later when the notifier has been computing: each
// hand-off in a training step pays that, and a remote step has two more of them than a local one.
//
//   node scripts/bench-wake.mjs [--work-ms 15] [--rounds 120]
import { Worker } from 'node:worker_threads';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    'work-ms': { type: 'string', default: '15' },
    rounds: { type: 'string', default: '120' },
    help: { type: 'boolean', short: 'h' },
  },
});
if (values.help) {
  console.log('Usage: node scripts/bench-wake.mjs [--work-ms 15] [--rounds 120]');
  process.exit(0);
}
const workMs = Number(values['work-ms']);
const rounds = Number(values.rounds);
const WARMUP = 20;

/** The notify-to-awake delays of `rounds` hand-offs, the notifier computing (busy) or sleeping. */
async function measure(busy) {
  const shared = new SharedArrayBuffer(16);
  // flags[0]: the round the thread may start; flags[1]: the round it has finished.
  const flags = new Int32Array(shared, 0, 2);
  // When the thread raised flags[1] (epoch ms).
  const notifiedAt = new Float64Array(shared, 8, 1);
  const thread = new Worker(
    `const { workerData: { shared, busy, workMs, rounds } } = require('node:worker_threads');
    const flags = new Int32Array(shared, 0, 2);
    const notifiedAt = new Float64Array(shared, 8, 1);
    for (let k = 1; k <= rounds; k++) {
      while (Atomics.load(flags, 0) < k) Atomics.wait(flags, 0, k - 1);
      const start = performance.now();
      let x = 0;
      if (busy) while (performance.now() - start < workMs) for (let i = 0; i < 1e4; i++) x += Math.sqrt(i);
      else Atomics.wait(flags, 0, k, workMs);
      notifiedAt[0] = performance.timeOrigin + performance.now();
      Atomics.store(flags, 1, k);
      Atomics.notify(flags, 1);
    }`,
    { eval: true, workerData: { shared, busy, workMs, rounds } },
  );
  const delays = [];
  for (let k = 1; k <= rounds; k++) {
    Atomics.store(flags, 0, k);
    Atomics.notify(flags, 0);
    const wait = Atomics.waitAsync(flags, 1, k - 1);
    if (wait.async) await wait.value;
    if (k > WARMUP) delays.push(performance.timeOrigin + performance.now() - notifiedAt[0]);
  }
  await thread.terminate();
  delays.sort((a, b) => a - b);
  return { median: delays[delays.length >> 1], p90: delays[Math.floor(delays.length * 0.9)] };
}

for (const busy of [false, true]) {
  const { median, p90 } = await measure(busy);
  console.log(`notifier ${busy ? 'computed' : 'slept'} ${workMs} ms: waiter awake after median ${median.toFixed(3)} ms (p90 ${p90.toFixed(3)}), ${rounds - WARMUP} rounds`);
}
