/** The stop signals' state machine, driven by an EventEmitter standing in for the process. */
import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import { installStopSignals } from '../src/signals.js';

function setup(ignoreInterrupt = false) {
  const target = new EventEmitter();
  const exits: number[] = [];
  const lines: string[] = [];
  const notices: string[] = [];
  const stop = installStopSignals({ target: target as never, exit: (c) => exits.push(c), write: (l) => lines.push(l), ignoreInterrupt });
  return { target, exits, lines, notices, stop };
}

describe('installStopSignals', () => {
  it('before a command can stop cleanly, a signal exits at once with its code', () => {
    const t = setup();
    t.target.emit('SIGTERM');
    expect(t.exits).toEqual([143]);
    expect(t.lines).toEqual(['gradhub: SIGTERM: stopped']);
  });

  it('once graceful: the first signal aborts (one notice), the second exits at once', () => {
    const t = setup();
    t.stop.graceful((name) => t.notices.push(name));
    t.target.emit('SIGINT');
    expect(t.stop.signal.aborted).toBe(true);
    expect(t.stop.exitCode()).toBe(130);
    expect(t.notices).toEqual(['SIGINT']);
    expect(t.exits).toEqual([]);
    t.target.emit('SIGINT');
    expect(t.exits).toEqual([130]);
    expect(t.lines).toEqual([]);
    t.stop.dispose();
    expect(t.target.listenerCount('SIGINT')).toBe(0);
  });

  it("a launcher's worker leaves SIGINT to the launcher, but not SIGTERM", () => {
    const t = setup(true);
    t.stop.graceful((name) => t.notices.push(name));
    t.target.emit('SIGINT');
    expect(t.stop.signal.aborted).toBe(false);
    t.target.emit('SIGTERM');
    expect(t.stop.exitCode()).toBe(143);
  });
});
