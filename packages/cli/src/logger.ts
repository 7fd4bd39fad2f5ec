/** The entry point's pino logger (JSON lines on stderr); modules receive it and make children. */
import { pino, type Logger } from 'pino';

export function createLogger(level: string, name: string): Logger {
  const levels = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];
  if (!levels.includes(level)) throw new Error(`--log-level must be one of ${levels.join(', ')}, got "${level}"`);
  return pino({ name, level }, pino.destination(2));
}
