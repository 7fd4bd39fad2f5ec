import { describe, expect, it } from 'vitest';
import { WorkerEstimates } from '../src/worker-estimates.js';

describe('worker estimates: only what the coordinator measured', () => {
  it('speed from the busy time less the hand-out write, pace from the whole busy time, bandwidth from the write', () => {
    const e = new WorkerEstimates(1);
    const t = e.start(1, 1000);
    e.written(1, t, 1_000_000, 1100); // 1 MB taken by the socket in 100 ms
    e.answered(1, 40);
    expect(e.elapsed(1, 1500)).toBe(500);
    e.idle(1, 1500);
    expect(e.pace(1)).toBe(80); // 40 samples in 500 ms
    expect(e.speed(1)).toBe(100); // 40 samples in 400 ms
    expect(e.bandwidth(1)).toBe(10_000_000);
    expect(e.elapsed(1, 1600)).toBeNull();
    // A write the socket took at once measures no bandwidth; a late `written` of another period is ignored.
    const t2 = e.start(2, 0);
    e.written(2, t2 - 1, 5, 3);
    e.written(2, t2, 5000, 2);
    e.answered(2, 10);
    e.idle(2, 100);
    expect(e.bandwidth(2)).toBeNull();
    expect(e.speed(2)).toBeCloseTo(10_000 / 98, 9);
    expect(e.slowestPace([1, 2, 3])).toBe(80);
  });

  it('a stall bounds the speed by what was held over the hold, leaves the pace, and ends the busy period', () => {
    const e = new WorkerEstimates(1);
    e.start(1, 0);
    e.answered(1, 8);
    e.idle(1, 100); // 80 samples/s
    e.start(1, 1000);
    e.stalled(1, 16, 3000); // 16 samples held 2 s: at most 8/s
    expect(e.speed(1)).toBe(8);
    expect(e.pace(1)).toBe(80);
    e.answered(1, 16);
    e.idle(1, 9000); // the late answer measures nothing
    expect(e.speed(1)).toBe(8);
    expect(e.busyMs(1, 8)).toBe(2000);
  });
});
