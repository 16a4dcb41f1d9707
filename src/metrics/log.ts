// Log lines: human-readable text (the default), or JSON lines with --log-format json for log
// collectors. Lines about a worker carry its id in `worker` (and in the text itself).
export const LOG_FORMATS = ['text', 'json'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];
export type LogFields = Record<string, string | number | boolean | null | undefined>;
export type Log = (msg: string, fields?: LogFields) => void;

export function createLog(format: LogFormat, write: (s: string) => void, component: string): Log {
  if (format === 'text') return (msg) => write(msg + '\n');
  return (msg, fields) => write(JSON.stringify({ time: new Date().toISOString(), level: 'info', component, msg, ...fields }) + '\n');
}
