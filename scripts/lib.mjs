// Helpers shared by the measurement scripts (bench, scaling): running a coordinator with remote
// workers as child processes, and reading its epoch record.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cpus } from 'node:os';

function epochRecords(metricsFile) {
  return readFileSync(metricsFile, 'utf8').trim().split('\n').map((l) => JSON.parse(l)).filter((r) => r.type === 'epoch');
}

/** The first `epoch` record of a --metrics-out file. */
export function firstEpochRecord(metricsFile) {
  return epochRecords(metricsFile)[0];
}

/** The last `epoch` record of a --metrics-out file. */
export function lastEpochRecord(metricsFile) {
  return epochRecords(metricsFile).at(-1);
}

/**
 * Runs `node <coordArgs>` until it exits; once it prints its workers' URL, `startWorkers(url)`
 * starts the workers (child processes), which are killed when the coordinator is done. With
 * `prefix` (say ip netns exec NS), the coordinator runs under that command (which must exec
 * it: `pids` is told the coordinator's and the workers' process ids once they are started).
 */
export async function runWithWorkers(coordArgs, startWorkers, prefix = [], pids = () => {}) {
  const coord = spawn(prefix[0] ?? process.execPath, [...prefix.slice(1), ...(prefix.length > 0 ? [process.execPath] : []), ...coordArgs], { stdio: ['ignore', 'pipe', 'inherit'] });
  let text = '';
  const url = await new Promise((resolve, reject) => {
    coord.stdout.on('data', (d) => {
      text += d;
      const m = text.match(/listening for workers on (ws:\/\/\S+)/);
      if (m) resolve(m[1]);
    });
    coord.on('exit', () => reject(new Error(`coordinator exited early:\n${text}`)));
  });
  const workers = startWorkers(url);
  pids(coord.pid, workers.map((w) => w.pid));
  await new Promise((r) => coord.on('close', r));
  for (const w of workers) w.kill('SIGKILL');
}

/**
 * The machine a figure came from, as `lscpu` names it: CPU model, vCPUs, and the widest SIMD it
 * has (AVX-512 or AVX2 matter to native code; wasm SIMD is 128 bits everywhere), and Node.
 */
export function machineSummary() {
  const flags = (cpus().length > 0 && readCpuFlags()) || [];
  const simd = flags.includes('avx512f') ? `AVX-512 (${flags.filter((f) => /^avx512/.test(f)).join(' ')})` : flags.includes('avx2') ? 'AVX2, no AVX-512' : 'no AVX2';
  return `${cpus().length} vCPU x ${cpus()[0]?.model.trim()}, ${simd}; Node ${process.version}`;
}

function readCpuFlags() {
  try {
    const line = readFileSync('/proc/cpuinfo', 'utf8').split('\n').find((l) => l.startsWith('flags'));
    return line ? line.split(':')[1].trim().split(/\s+/) : undefined;
  } catch {
    return undefined; // not Linux: the model name alone
  }
}

/** Debian's chromium, or where $CHROMIUM_PATH says. */
export const CHROMIUM_PATH = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

/**
 * Debian's chromium, headless, through playwright-core (a dev dependency), with the flags that
 * keep it from reaching for the network, which these machines refuse.
 */
export async function launchChromium() {
  const { chromium } = await import('playwright-core');
  return chromium.launch({
    executablePath: CHROMIUM_PATH,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}
