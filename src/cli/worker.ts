// `lenet-worker`: the remote worker's command line.
import os from 'node:os';
import { EXIT_STOPPED, UsageError } from '../errors.js';
import { RemoteWorkerProcess } from '../worker/remote.js';
import { createLog } from '../metrics/log.js';
import { runMain } from './args.js';
import { WORKER_USAGE, parseJoinArgs } from './worker-args.js';

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
    process.stdout.write(WORKER_USAGE);
    return command === undefined ? 2 : 0;
  }
  if (command !== 'join') throw new UsageError(`unknown command '${command}'; usage: lenet-worker join <ws-url> (see --help)`);
  const options = parseJoinArgs(rest);
  if (options === 'help') {
    process.stdout.write(WORKER_USAGE);
    return 0;
  }
  const log = createLog(options.logFormat, (s) => process.stdout.write(s), 'worker');
  const worker = new RemoteWorkerProcess({ ...options, log });
  // The first SIGTERM or SIGINT says goodbye (its range goes to someone else at once) and exits
  // EXIT_STOPPED: not the run's end, so a Kubernetes Job starts another worker in its place; a
  // second signal exits at once. As PID 1 in a container Node would otherwise ignore SIGTERM.
  const onSignal = (signal: NodeJS.Signals): void => {
    if (stopping) process.exit(128 + (os.constants.signals[signal] ?? 15));
    stopping = true;
    log(`worker: ${signal}: saying goodbye to the coordinator and exiting`, { event: 'stop_requested', signal });
    worker.stop(signal);
  };
  let stopping = false;
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  const code = await worker.run();
  const { ranges, applied, sharded } = worker.stats;
  const how = [`${applied} of them whole steps whose update was applied here`, ...(sharded > 0 ? [`${sharded} sharded steps whose shard was reduced and updated here`] : [])];
  log(`worker: ${stopping ? 'stopped' : 'run complete'}; ${ranges} range(s) computed, ${how.join(', ')}`, { event: 'done', ranges, applied, sharded });
  return stopping ? EXIT_STOPPED : code;
}

runMain(() => main(process.argv.slice(2)));
