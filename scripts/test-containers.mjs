// `npm run test:containers`: the project's own image and compose file, for real. Builds the
// image, runs the compose file with two workers for a short run, kills a worker mid-run, stops
// the coordinator mid-run (SIGTERM: it must checkpoint and exit 8) and starts it again (it must
// resume), and checks that the final weights equal the same run without containers. Skips with
// one line when there is no Docker daemon or no base image (docker/base-image.sh builds one
// offline). Every wait is bounded; the compose project is taken down at the end, whatever happens.
//
//   npm run test:containers
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse, stringify } from 'yaml';

const root = fileURLToPath(new URL('..', import.meta.url));
const IMAGE = 'lenet-dist:test';
const PROJECT = `lenettest${process.pid}`;
// 2 epochs of 160 steps at batch 128 (about a minute on two vCPUs): long enough to kill and
// stop things mid-run.
const RUN = ['--epochs', '2', '--train-limit', '20480', '--test-limit', '500', '--batch-size', '128', '--seed', '9'];

const sh = (cmd, args, opts = {}) => execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], ...opts });
const ok = (cmd, args) => spawnSync(cmd, args, { stdio: 'ignore' }).status === 0;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const step = (msg) => console.log(`test:containers: ${msg}`);

function skip(reason) {
  console.log(`test:containers: skipped: ${reason}`);
  process.exit(0);
}

if (!ok('docker', ['info'])) skip('no Docker daemon answers `docker info` (start dockerd, see docs/operations.md)');
if (!ok('docker-compose', ['version']) && !ok('docker', ['compose', 'version'])) skip('neither docker-compose nor `docker compose` is installed');
const compose = ok('docker-compose', ['version']) ? ['docker-compose'] : ['docker', 'compose'];
if (!ok('docker', ['image', 'inspect', 'node:20-bookworm-slim']) && !ok('docker', ['pull', 'node:20-bookworm-slim'])) {
  skip('no node:20-bookworm-slim image and none can be pulled: build a local one with docker/base-image.sh');
}

const work = mkdtempSync(join(tmpdir(), 'lenet-containers-'));
const freePort = () => new Promise((resolve) => {
  const s = createServer().listen(0, '127.0.0.1', () => {
    const { port } = s.address();
    s.close(() => resolve(port));
  });
});
const failures = [];
const check = (what, cond, detail = '') => {
  console.log(`  ${cond ? 'ok  ' : 'FAIL'} ${what}${detail ? `: ${detail}` : ''}`);
  if (!cond) failures.push(what);
};
const dc = (...args) => sh(compose[0], [...compose.slice(1), '-p', PROJECT, '-f', join(work, 'compose.yaml'), ...args], { cwd: work });
const logs = (service) => dc('logs', '--no-color', service);
const container = (service, index = 1) => sh('docker', ['ps', '-aq', '--filter', `label=com.docker.compose.project=${PROJECT}`, '--filter', `label=com.docker.compose.service=${service}`, '--filter', `label=com.docker.compose.container-number=${index}`]).trim();

async function until(what, predicate, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (predicate()) return;
    await sleep(500);
  }
  throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}`);
}

try {
  step('building the image (docker build -f docker/Dockerfile)');
  sh('docker', ['build', '-q', '-f', 'docker/Dockerfile', '-t', IMAGE, '.'], { cwd: root });

  step('the reference: the same run without containers');
  const refDir = join(work, 'ref');
  const ref = sh(process.execPath, [join(root, 'bin/lenet-coord.js'), 'start', ...RUN, '--threads', '1', '--checkpoint-dir', refDir, '--quiet', '--port', '0']);
  const reference = ref.match(/done: weights ([0-9a-f]{64})/)[1];

  // The project's compose file, with the test's image, token, host port and a short run.
  const file = parse(readFileSync(join(root, 'docker/compose.yaml'), 'utf8'));
  const coord = file.services.coordinator;
  delete coord.build;
  for (const s of Object.values(file.services)) {
    s.image = IMAGE;
    s.env_file = join(work, 'test.env');
  }
  const at = coord.command.indexOf('--epochs');
  coord.command.splice(at, 2, ...RUN);
  const i = coord.command.indexOf('--checkpoint-every-steps');
  coord.command[i + 1] = '8';
  writeFileSync(join(work, 'compose.yaml'), stringify(file));
  writeFileSync(join(work, 'test.env'), `LENET_TOKEN=${randomBytes(16).toString('hex')}\nLENET_PORT=${await freePort()}\n`);
  process.env.LENET_PORT = readFileSync(join(work, 'test.env'), 'utf8').match(/LENET_PORT=(\d+)/)[1];

  step('compose up with two workers');
  dc('up', '-d', '--scale', 'worker=2');
  await until('two workers to join', () => (logs('coordinator').match(/joined; it takes part/g) ?? []).length >= 2, 120_000);
  await sleep(2000); // steps are running

  check('the run was still in its first epoch then', !/"event":"epoch"/.test(logs('coordinator')));
  step('killing worker 1 mid-run');
  sh('docker', ['kill', container('worker', 1)]);
  await until('the coordinator to see it leave', () => /left: connection closed/.test(logs('coordinator')), 60_000);

  step('stopping the coordinator mid-run (SIGTERM through init)');
  await sleep(1000);
  check('the run was still going then', !/done: weights/.test(logs('coordinator')));
  const stopStarted = Date.now();
  dc('stop', '-t', '30', 'coordinator');
  const stopSeconds = (Date.now() - stopStarted) / 1000;
  const stopCode = Number(sh('docker', ['inspect', '-f', '{{.State.ExitCode}}', container('coordinator')]).trim());
  const stopped = logs('coordinator');
  check('the coordinator stopped gracefully with exit 8', stopCode === 8, `exit ${stopCode} after ${stopSeconds.toFixed(1)} s`);
  // The checkpoint of the step it stopped at: written then, or already by the every-8-steps
  // cadence when the stop came at such a step (then there is no 'stopping: checkpointing' line).
  const stoppedAt = stopped.match(/stopped \(SIGTERM\): continue with the same command and --resume, from ([^\s"]*ckpt-e\d{4}-s\d{6})/)?.[1];
  check('it named the checkpoint of the step boundary it stopped at', stoppedAt !== undefined && (/stopping: checkpointing step \d+/.test(stopped) || Number(stoppedAt.slice(-6)) % 8 === 0), stoppedAt ?? 'no stopped line');
  check('within the grace period', stopSeconds < 10, `${stopSeconds.toFixed(1)} s`);

  step('starting it again: it must resume, and the worker left must rejoin');
  dc('start', 'coordinator');
  const exit = Number(sh('docker', ['wait', container('coordinator')], { timeout: 300_000 }).trim());
  const final = logs('coordinator');
  check('the resumed coordinator finished the run', exit === 0, `exit ${exit}`);
  check('it resumed from that mid-epoch checkpoint', stoppedAt !== undefined && !stoppedAt.endsWith('s000000') && final.includes(`resumed from ${stoppedAt}`), stoppedAt);
  const digest = [...final.matchAll(/done: weights ([0-9a-f]{64})/g)].at(-1)?.[1];
  check('the final weights equal the run without containers', digest === reference, `${digest?.slice(0, 16)}... vs ${reference.slice(0, 16)}...`);
  // compose prefixes every line with `service | `.
  const lines = final.split('\n').map((l) => l.replace(/^[^|]*\|\s?/, '').trim()).filter((l) => l !== '' && !/^Attaching to/.test(l));
  const other = lines.filter((l) => !l.startsWith('{'));
  check('--log-format json logs hold JSON only', other.length === 0, other.slice(0, 2).join(' / '));
} catch (err) {
  failures.push(err.message);
  console.log(`  FAIL ${err.message}`);
  try {
    console.log(logs('coordinator').split('\n').slice(-30).join('\n'));
  } catch {
    /* nothing to show */
  }
} finally {
  try {
    // Nothing to take down when the image build failed before the compose file was written.
    if (existsSync(join(work, 'compose.yaml'))) dc('down', '-v', '--remove-orphans');
  } catch (err) {
    console.log(`test:containers: could not take the compose project down: ${err.message}`);
  }
  rmSync(work, { recursive: true, force: true });
}
console.log(`test:containers: ${failures.length === 0 ? 'passed' : `${failures.length} check(s) failed`}`);
process.exit(failures.length === 0 ? 0 : 1);
