// Runs the built command-line programs as child processes (tests need `npm run build` first,
// which `npm test` does).
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach } from 'vitest';
import { tempDir } from '../helpers.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a program to completion; a child still running after `timeoutMs` is killed (never left behind). */
export function runCli(program: 'lenet-coord' | 'lenet-worker', args: string[], timeoutMs = 110_000, env: NodeJS.ProcessEnv = process.env): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [`${ROOT}/bin/${program}.js`, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env });
    let stdout = '';
    let stderr = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

export function readJsonLines(path: string): Record<string, unknown>[] {
  return readFileSync(path, 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** The `epoch` records of a --metrics-out file. */
export function epochRecords(path: string): Record<string, unknown>[] {
  return readJsonLines(path).filter((r) => r.type === 'epoch');
}

/** The weights' digest after each epoch of a --metrics-out file. */
export function epochDigests(path: string): string[] {
  return epochRecords(path).map((r) => r.weightsSha256 as string);
}

/** A small, fast training configuration: 700 samples = 5 full batches of 128 and one of 60. */
export const SMALL_RUN = ['--train-limit', '700', '--test-limit', '200', '--batch-size', '128', '--microbatch', '16', '--quiet', '--port', '0'];

export interface RunningCli {
  child: ChildProcess;
  /** Resolves with the first match of `re` in stdout (already printed or yet to come). */
  waitFor(re: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  done: Promise<CliResult>;
  kill(signal?: NodeJS.Signals): void;
}

/** Starts a program in the background; the caller must kill or await it. */
export function startCli(program: 'lenet-coord' | 'lenet-worker', args: string[], env: NodeJS.ProcessEnv = process.env): RunningCli {
  const child = spawn(process.execPath, [`${ROOT}/bin/${program}.js`, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env });
  let stdout = '';
  let stderr = '';
  const listeners = new Set<() => void>();
  child.stdout!.on('data', (d: Buffer) => {
    stdout += d.toString();
    for (const l of [...listeners]) l();
  });
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const done = new Promise<CliResult>((resolve) => child.on('close', (code) => resolve({ code, stdout, stderr })));
  return {
    child,
    done,
    kill: (signal = 'SIGKILL') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    },
    waitFor: (re, timeoutMs = 60_000) =>
      new Promise((resolve, reject) => {
        const check = (): boolean => {
          const m = stdout.match(re);
          if (m) {
            listeners.delete(onData);
            clearTimeout(timer);
            resolve(m);
          }
          return m !== null;
        };
        const onData = (): void => void check();
        const timer = setTimeout(() => {
          listeners.delete(onData);
          reject(new Error(`${program} did not print ${re} within ${timeoutMs} ms; stdout:\n${stdout}\nstderr:\n${stderr}`));
        }, timeoutMs);
        if (!check()) listeners.add(onData);
      }),
  };
}

/**
 * Starts `lenet-coord start ARGS` in the background, adds it to `running` (the test kills what is
 * left there), and resolves once it listens for workers, with the URL they join (ws:// or wss://).
 */
export async function startCoordinator(args: string[], running: RunningCli[]): Promise<{ proc: RunningCli; url: string }> {
  const proc = startCli('lenet-coord', ['start', ...args]);
  running.push(proc);
  const [, url] = await proc.waitFor(/listening for workers on (wss?:\/\/\S+)/);
  return { proc, url };
}

/**
 * What a test file of real processes shares: a temporary folder, removed after the file, and the
 * processes it starts, each killed after its test (none is ever left behind).
 */
export function processesOfThisFile(prefix: string): { dir: ReturnType<typeof tempDir>; running: RunningCli[] } {
  const dir = tempDir(prefix);
  const running: RunningCli[] = [];
  afterEach(() => running.splice(0).forEach((p) => p.kill()));
  afterAll(() => dir.remove());
  return { dir, running };
}
