// `lenet-worker`: a remote gradient worker. The WebSocket protocol arrives with issue #3; until
// then this command only explains itself.
import { UsageError } from '../errors.js';
import { runMain } from './args.js';

const USAGE = `Usage: lenet-worker join <ws://HOST:PORT> [options]

Joins a running coordinator as a remote gradient worker.
Not available yet: remote workers arrive with the WebSocket protocol (issue #3). Today,
'lenet-coord start --threads N' trains on all local cores.
`;

async function main(argv: string[]): Promise<number> {
  const [command] = argv;
  if (command === undefined || command === '--help' || command === '-h' || argv.includes('--help')) {
    process.stdout.write(USAGE);
    return command === undefined ? 2 : 0;
  }
  throw new UsageError(`'lenet-worker ${command}' is not available yet: remote workers arrive with the WebSocket protocol; see lenet-worker --help`);
}

runMain(() => main(process.argv.slice(2)));
