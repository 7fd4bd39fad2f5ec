/** Text log lines, from what pino really writes. */
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { formatLogLine, textLogStream } from '../src/log-format.js';

describe('text logs', () => {
  it('turn pino lines into "level name/module: msg key=value"', () => {
    const lines: string[] = [];
    let before = 0;
    const log = pino({ name: 'gradhub', level: 'debug' }, textLogStream({ write: (s: string) => lines.push(s) }, () => before++));
    log.child({ module: 'launcher' }).warn({ slot: 0, code: 1, signal: null, dir: 'a b', list: [1, 2] }, 'local worker exited');
    log.info('plain');
    log.error({ err: new Error('boom here') }, 'failed');
    expect(lines).toEqual([
      'warn gradhub/launcher: local worker exited slot=0 code=1 signal=null dir="a b" list=[1,2]\n',
      'info gradhub: plain\n',
      'error gradhub: failed err="boom here"\n',
    ]);
    expect(before).toBe(3);
  });
  it('pass a line that is not JSON through', () => {
    expect(formatLogLine('not json\n')).toBe('not json');
  });
});
