// `lenet-coord`: the coordinator's command line.
import { UsageError } from '../errors.js';
import { train } from '../coordinator/trainer.js';
import { createLog } from '../metrics/log.js';
import { runMain } from './args.js';
import { START_USAGE, parseStartArgs } from './start-args.js';
import { evalCommand, predictCommand } from './use-model.js';
import { COORD_USAGE } from './coord-usage.js';

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
      const result = await train(config, log);
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
