// `lenet-coord`: the coordinator's command line.
import os from 'node:os';
import { STOP_GRACE_MS } from '../constants.js';
import { EXIT_STOPPED, UsageError } from '../errors.js';
import { StopRequest } from '../coordinator/stop.js';
import type { Log } from '../metrics/log.js';
import { train } from '../coordinator/trainer.js';
import { createLog } from '../metrics/log.js';
import { runMain } from './args.js';
import { START_USAGE, parseStartArgs } from './start-args.js';
import { evalCommand, predictCommand } from './use-model.js';
import { COORD_USAGE } from './coord-usage.js';

/**
 * The first SIGTERM or SIGINT asks the run to stop at a step boundary with a checkpoint
 * (EXIT_STOPPED), within STOP_GRACE_MS; a second one, or the grace running out, exits at once.
 * As PID 1 in a container Node has no default SIGTERM action, so without this it would ignore it.
 */
function stopOnSignals(log: Log): StopRequest {
  const stop = new StopRequest();
  const onSignal = (signal: NodeJS.Signals): void => {
    if (stop.requested) {
      log(`${signal} again: exiting now; the newest complete checkpoint is intact`);
      process.exit(128 + (os.constants.signals[signal] ?? 15));
    }
    log(`${signal}: stopping after the current step; a second ${signal} exits at once`, { event: 'stop_requested', signal });
    stop.request(signal);
    setTimeout(() => {
      log(`still not stopped after ${STOP_GRACE_MS / 1000} s: exiting; the newest complete checkpoint is intact`);
      process.exit(EXIT_STOPPED);
    }, STOP_GRACE_MS).unref();
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  return stop;
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case undefined:
    case '-h':
    case '--help':
    case 'help':
      process.stdout.write(COORD_USAGE);
      return command === undefined ? 2 : 0;
    case 'start': {
      const config = parseStartArgs(rest);
      if (config === 'help') {
        process.stdout.write(START_USAGE);
        return 0;
      }
      const log = createLog(config.logFormat, (s) => process.stdout.write(s), 'coordinator');
      const result = await train(config, log, stopOnSignals(log));
      if (result.stopped) return EXIT_STOPPED;
      log(`done: weights ${result.weightsSha256}${result.checkpoint ? `, checkpoint ${result.checkpoint}` : ''}`, { event: 'done', weightsSha256: result.weightsSha256 });
      return 0;
    }
    case 'eval':
      return evalCommand(rest, (s) => process.stdout.write(s));
    case 'predict':
      return predictCommand(rest, (s) => process.stdout.write(s));
    default:
      throw new UsageError(`unknown command '${command}'; commands: start, eval, predict (see lenet-coord --help)`);
  }
}

runMain(() => main(process.argv.slice(2)));
