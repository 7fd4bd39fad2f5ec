import { describe, expect, it } from 'vitest';
import { Assignments } from '../src/assignments.js';
import { DEFAULT_STALL_RULES, HoldWatch, Strikes, holdLimitMs, stallRules } from '../src/stalls.js';
import { INTERNAL } from '../../../test/support/errors.js';

const RULES = stallRules({ k: 4, slackMs: 1000, unmeasuredMs: 5000, strikes: 3, windowMs: 60_000 });

describe('hold deadlines', () => {
  it('are k x the expected time at the measured pace plus the slack; the slowest measured pace for a new worker; flat when none is measured', () => {
    expect(holdLimitMs(100, 50, 10, RULES)).toBe(1000 + 4 * 2000);
    expect(holdLimitMs(100, null, 10, RULES)).toBe(1000 + 4 * 10_000);
    expect(holdLimitMs(100, null, null, RULES)).toBe(5000);
    expect(DEFAULT_STALL_RULES).toEqual({ k: 4, slackMs: 2000, unmeasuredMs: 10_000, strikes: 3, windowMs: 300_000 });
    expect(() => stallRules({ k: 0.5 })).toThrow(INTERNAL);
    expect(() => stallRules({ strikes: 1.5 })).toThrow(INTERNAL);
  });

  it('name the workers holding incomplete nodes past their deadline, counted from their last hand-out', () => {
    const rec = new Assignments(32, 4); // 8 chunks
    const watch = new HoldWatch(RULES);
    const left = { lo: 0, hi: 4 };
    const right = { lo: 4, hi: 8 };
    rec.give(left, 1);
    rec.give(right, 2);
    rec.sent(1, [left], 0);
    rec.sent(2, [right], 0);
    watch.restart(1, 0);
    watch.restart(2, 0);
    const pace = (id: number): number | null => (id === 1 ? 16 : null); // 16 samples in 4 x 1 s + 1 s: 5 s
    expect(watch.overdue(rec, [1, 2], pace, 5000)).toEqual([]);
    // Worker 2 was never measured: the slowest measured pace (16/s) is its too.
    expect(watch.overdue(rec, [1, 2], pace, 5001).map((o) => o.id)).toEqual([1, 2]);
    // A later hand-out restarts the clock; a worker whose node is complete holds nothing.
    watch.restart(1, 3000);
    rec.markComplete(rec.key(right));
    expect(watch.overdue(rec, [1, 2], pace, 6000)).toEqual([]);
    expect(watch.overdue(rec, [1, 2], pace, 8001)).toEqual([{ id: 1, heldMs: 5001, limitMs: 5000 }]);
    // Nothing measured at all: the flat deadline.
    expect(watch.overdue(rec, [1, 2], () => null, 8001)).toEqual([{ id: 1, heldMs: 5001, limitMs: 5000 }]);
  });

  it('count strikes within a sliding window', () => {
    const s = new Strikes(1000);
    expect(s.add(1, 0)).toBe(1);
    expect(s.add(1, 500)).toBe(2);
    expect(s.add(2, 500)).toBe(1);
    expect(s.add(1, 1200)).toBe(2); // the strike at 0 is out of the window
    s.forget(1);
    expect(s.add(1, 1300)).toBe(1);
  });
});
