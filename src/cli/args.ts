// Helpers shared by the command-line programs: flag parsing with exact error messages, and the
// top-level error handler that turns user mistakes into one line and an exit code.
import { resolve } from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { LenetError, UsageError } from '../errors.js';

export type Flags = Record<string, string | boolean | undefined>;

export function parseFlags(argv: string[], options: NonNullable<ParseArgsConfig['options']>, allowPositionals = false): { flags: Flags; positionals: string[] } {
  try {
    const { values, positionals } = parseArgs({ args: argv, options, strict: true, allowPositionals });
    return { flags: values as Flags, positionals };
  } catch (err) {
    const message = (err as Error).message.replace(/\s*\n\s*/g, ' ').replace(/\.$/, '');
    throw new UsageError(`${message}; see --help`);
  }
}

function str(flags: Flags, name: string): string | undefined {
  const v = flags[name];
  return typeof v === 'string' ? v : undefined;
}

export function intFlag(flags: Flags, name: string, fallback: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const v = str(flags, name);
  if (v === undefined) return fallback;
  if (!/^-?\d+$/.test(v.trim())) throw new UsageError(`--${name} must be an integer (got '${v}')`);
  const n = Number(v);
  if (n < min || n > max) throw new UsageError(`--${name} must be between ${min} and ${max} (got ${n})`);
  return n;
}

export function optionalIntFlag(flags: Flags, name: string, min: number, max = Number.MAX_SAFE_INTEGER): number | undefined {
  return str(flags, name) === undefined ? undefined : intFlag(flags, name, 0, min, max);
}

/** A number in (0, max]: learning rates, decay factors. */
export function positiveNumberFlag(flags: Flags, name: string, fallback: number, max: number): number {
  const v = str(flags, name);
  if (v === undefined) return fallback;
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n)) throw new UsageError(`--${name} must be a number (got '${v}')`);
  if (n <= 0 || n > max) throw new UsageError(`--${name} must be greater than 0 and at most ${max} (got ${n})`);
  return n;
}

/** A number in [0, 1]: fractions. */
export function fractionFlag(flags: Flags, name: string, fallback: number): number {
  const v = str(flags, name);
  if (v === undefined) return fallback;
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n) || n < 0 || n > 1) throw new UsageError(`--${name} must be a number from 0 to 1 (got '${v}')`);
  return n;
}

export function choiceFlag<T extends string>(flags: Flags, name: string, choices: readonly T[], fallback: T): T {
  const v = str(flags, name);
  if (v === undefined) return fallback;
  if (!(choices as readonly string[]).includes(v)) throw new UsageError(`--${name} must be one of ${choices.join(', ')} (got '${v}')`);
  return v as T;
}

export function stringFlag(flags: Flags, name: string): string | undefined {
  return str(flags, name);
}

/** A path flag made absolute (relative to the working directory), or undefined when not given. */
export function pathFlag(flags: Flags, name: string): string | undefined {
  const path = str(flags, name);
  return path === undefined ? undefined : resolve(path);
}

/** Runs a CLI main function: user errors print one line and exit with their code; bugs print a stack. */
export function runMain(main: () => Promise<number>): void {
  // Output piped into `head` and closed early is not an error.
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw err;
  });
  main().then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      if (err instanceof LenetError) {
        process.stderr.write(`error ${err.code}: ${err.message}\n`);
        process.exitCode = err.exitCode;
      } else {
        process.stderr.write(`internal error (please report it): ${(err as Error)?.stack ?? String(err)}\n`);
        process.exitCode = 1;
      }
    },
  );
}
