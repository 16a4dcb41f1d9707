// Helpers shared by the measurement scripts (bench, scaling): running a coordinator with remote
// workers as child processes, and reading its epoch record.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';

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
 * starts the workers (child processes), which are killed when the coordinator is done.
 */
export async function runWithWorkers(coordArgs, startWorkers) {
  const coord = spawn(process.execPath, coordArgs, { stdio: ['ignore', 'pipe', 'inherit'] });
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
  await new Promise((r) => coord.on('close', r));
  for (const w of workers) w.kill('SIGKILL');
}
