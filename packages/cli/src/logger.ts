/**
 * The entry point's pino logger, on stderr: JSON lines, or short text lines for people
 * (log-format.ts). Modules receive it and make children.
 */
import { pino, type Logger } from 'pino';
import { GradhubError } from '@gradhub/core';
import { LOG_LEVELS } from './options.js';
import { textLogStream } from './log-format.js';

export type LogFormat = 'text' | 'json';

/** The format when none is asked for: text for a person at a terminal, JSON for a machine. */
export function defaultLogFormat(stderrIsTTY: boolean = process.stderr.isTTY === true): LogFormat {
  return stderrIsTTY ? 'text' : 'json';
}

/** `before` runs before each text line (see textLogStream). */
export function createLogger(level: string, name: string, format: LogFormat = defaultLogFormat(), before?: () => void): Logger {
  if (!(LOG_LEVELS as readonly string[]).includes(level)) throw new GradhubError('E_USAGE', `--log-level must be one of ${LOG_LEVELS.join(', ')}, got "${level}"`);
  if (format !== 'text' && format !== 'json') throw new GradhubError('E_USAGE', `--log-format must be text or json, got "${format as string}"`);
  return pino({ name, level }, format === 'json' ? pino.destination(2) : textLogStream(process.stderr, before));
}
