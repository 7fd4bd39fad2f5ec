/**
 * Logs for people: pino writes JSON lines; on a terminal each one becomes a short line
 *
 *   warn gradhub/launcher: local worker exited slot=0 code=1 signal=null
 *
 * (level, logger name / module, message, the other fields as key=value; strings with spaces or
 * quotes, and objects, as JSON; an error as its message). `--log-format json` keeps pino's lines.
 * The formatter is a pino destination: pino's own serialisation runs first, so the fields are the
 * same in both formats.
 */
import type { DestinationStream } from 'pino';

const LEVEL_NAMES: Readonly<Record<number, string>> = { 10: 'trace', 20: 'debug', 30: 'info', 40: 'warn', 50: 'error', 60: 'fatal' };
/** pino's fields that the text line shows in its own places, or leaves out (time, pid, hostname). */
const SKIPPED = new Set(['level', 'time', 'pid', 'hostname', 'name', 'module', 'msg']);

/** One pino JSON line as a text line (no newline); a line that is not JSON is returned as it is. */
export function formatLogLine(json: string): string {
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(json) as Record<string, unknown>;
  } catch {
    return json.replace(/\n+$/, '');
  }
  const level = typeof o.level === 'number' ? (LEVEL_NAMES[o.level] ?? String(o.level)) : String(o.level ?? '');
  const who = [o.name, o.module].filter((x) => typeof x === 'string' && x !== '').join('/');
  const parts = [level, who ? `${who}:` : '', typeof o.msg === 'string' ? o.msg : ''].filter((p) => p !== '');
  for (const [k, v] of Object.entries(o)) {
    if (SKIPPED.has(k) || v === undefined) continue;
    parts.push(`${k}=${formatValue(v)}`);
  }
  return parts.join(' ');
}

function formatValue(v: unknown): string {
  if (typeof v === 'string') return /^[^\s"=]+$/.test(v) ? v : JSON.stringify(v);
  if (v !== null && typeof v === 'object' && typeof (v as { message?: unknown }).message === 'string') {
    return JSON.stringify((v as { message: string }).message); // a serialised error: its message
  }
  return JSON.stringify(v) ?? String(v);
}

/**
 * A pino destination writing text lines to `out` (stderr). `before` runs before each line (the
 * progress bar clears itself so the line does not land in the middle of it).
 */
export function textLogStream(out: { write(s: string): unknown } = process.stderr, before?: () => void): DestinationStream {
  return {
    write(line: string): void {
      before?.();
      out.write(formatLogLine(line) + '\n');
    },
  };
}
