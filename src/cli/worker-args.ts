// `lenet-worker join` flags: parsing and validation (no side effects, so tests and the container
// checks can use the real parser).
import { availableParallelism } from 'node:os';
import { existsSync } from 'node:fs';
import { DEFAULT_CONNECT_TIMEOUT_S, DEFAULT_HOST_NO_TOKEN, DEFAULT_HOST_WITH_TOKEN, MAX_THREADS } from '../constants.js';
import { UsageError } from '../errors.js';
import { BACKEND_CHOICES } from '../backend/select.js';
import { LOG_FORMATS, type LogFormat } from '../metrics/log.js';
import type { WorkerOptions } from '../worker/remote.js';
import { choiceFlag, intFlag, parseFlags, pathFlag, stringFlag } from './args.js';

export const WORKER_USAGE = `Usage: lenet-worker join <ws://HOST:PORT | wss://HOST:PORT> [options]

Joins a running coordinator (lenet-coord start) as a remote gradient worker. The worker computes
the microbatches it is given with its own threads and returns their sums, pre-summed only along
the coordinator's fixed reduction tree, so the run's weights stay bit-for-bit the same. A worker
given every whole step (the only one, beside a coordinator with --threads 0) also applies the
coordinator's update itself and starts each next step without waiting for the weights.

Options:
  --threads N              compute threads                                [cores: ${availableParallelism()}]
  --backend auto|wasm|onnx|tensorflow|cpu   must match the coordinator's  [auto]
  --data-dir DIR           local MNIST copy; without one (or with different data) the
                           coordinator sends the pixels it assigns        [embedded copy]
  --token T                shared secret (or env LENET_TOKEN)
  --connect-timeout S      keep retrying a coordinator that is not up yet, or that went
                           away, for S seconds                            [${DEFAULT_CONNECT_TIMEOUT_S}]
  --ca FILE                CA certificate to trust for wss://
  --name NAME              label in the coordinator's logs                [host name]
  --peer-host ADDR         where it listens for other workers in sharded steps
                                                 [0.0.0.0 with a token, else 127.0.0.1]
  --peer-port N            port for other workers; 0 = any free one       [0]
  --advertise HOST         the address other workers reach it at
                           [the address it reaches the coordinator from]
  --peer-tls-cert FILE     certificate (PEM) for its peer endpoint: peers reach it over
                           wss://, trusting --ca; needed for sharded steps when the
                           coordinator serves wss://
  --peer-tls-key FILE      the certificate's private key (PEM)
  --no-peers               take no part in sharded steps (the coordinator then uses the star)
  --log-format text|json   human-readable lines, or JSON lines            [text]
  -h, --help               show this help

Exit codes: 0 the run completed, 2 bad arguments, 5 rejected by the coordinator (wrong token,
protocol version or backend), 6 no coordinator reachable within --connect-timeout, 8 stopped by
SIGTERM or SIGINT (after a goodbye), 9 its compute failed twice in a row with the same error, 1 bug.
`;

export const JOIN_OPTIONS = {
  threads: { type: 'string' },
  backend: { type: 'string' },
  'data-dir': { type: 'string' },
  token: { type: 'string' },
  'connect-timeout': { type: 'string' },
  ca: { type: 'string' },
  name: { type: 'string' },
  'log-format': { type: 'string' },
  'peer-host': { type: 'string' },
  'peer-port': { type: 'string' },
  advertise: { type: 'string' },
  'peer-tls-cert': { type: 'string' },
  'peer-tls-key': { type: 'string' },
  'no-peers': { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

/** Parses the arguments after `lenet-worker join`. */
export function parseJoinArgs(rest: string[]): (Omit<WorkerOptions, 'log'> & { logFormat: LogFormat }) | 'help' {
  const { flags, positionals } = parseFlags(rest, JOIN_OPTIONS, true);
  if (flags.help) return 'help';
  if (positionals.length !== 1) throw new UsageError('give exactly one coordinator URL, e.g. lenet-worker join ws://10.0.0.5:7070');
  const url = positionals[0];
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new UsageError(`'${url}' is not a URL; expected ws://HOST:PORT or wss://HOST:PORT`);
  }
  if (parsed.protocol !== 'ws:' && parsed.protocol !== 'wss:') throw new UsageError(`'${url}' must start with ws:// or wss://`);
  const ca = stringFlag(flags, 'ca');
  const token = stringFlag(flags, 'token') ?? (process.env.LENET_TOKEN || undefined);
  if (ca !== undefined && !existsSync(ca)) throw new UsageError(`--ca ${ca}: file not found`);
  const tlsCert = stringFlag(flags, 'peer-tls-cert');
  const tlsKey = stringFlag(flags, 'peer-tls-key');
  if ((tlsCert === undefined) !== (tlsKey === undefined)) throw new UsageError('give --peer-tls-cert and --peer-tls-key together');
  for (const [flag, file] of [['--peer-tls-cert', tlsCert], ['--peer-tls-key', tlsKey]] as const) {
    if (file !== undefined && !existsSync(file)) throw new UsageError(`${flag} ${file}: file not found`);
  }
  return {
    url,
    threads: intFlag(flags, 'threads', availableParallelism(), 1, MAX_THREADS),
    backend: choiceFlag(flags, 'backend', BACKEND_CHOICES, 'auto'),
    dataDir: pathFlag(flags, 'data-dir'),
    token,
    connectTimeoutS: intFlag(flags, 'connect-timeout', DEFAULT_CONNECT_TIMEOUT_S, 0, 7 * 24 * 3600),
    ca,
    name: stringFlag(flags, 'name'),
    peers:
      flags['no-peers'] === true
        ? undefined
        : {
            host: stringFlag(flags, 'peer-host') ?? (token === undefined ? DEFAULT_HOST_NO_TOKEN : DEFAULT_HOST_WITH_TOKEN),
            port: intFlag(flags, 'peer-port', 0, 0, 65535),
            advertise: stringFlag(flags, 'advertise'),
            tls: tlsCert !== undefined && tlsKey !== undefined ? { cert: tlsCert, key: tlsKey } : undefined,
          },
    logFormat: choiceFlag(flags, 'log-format', LOG_FORMATS, 'text'),
  };
}
