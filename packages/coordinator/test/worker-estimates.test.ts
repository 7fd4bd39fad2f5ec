import { describe, expect, it } from 'vitest';
import { WorkerEstimates } from '../src/worker-estimates.js';

describe('worker estimates: only what the coordinator measured', () => {
  it('speed from the busy time less the hand-out write, pace from the whole busy time, bandwidth from the write', () => {
    const e = new WorkerEstimates(1);
    const t = e.start(1, 1000);
    e.written(1, t, 1_000_000, 1100); // 1 MB taken by the socket in 100 ms
    e.answered(1, 40, true);
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
    e.answered(2, 10, true);
    e.idle(2, 100);
    expect(e.bandwidth(2)).toBeNull();
    expect(e.speed(2)).toBeCloseTo(10_000 / 98, 9);
    expect(e.slowestPace([1, 2, 3])).toBe(80);
  });

  it('a probation copy answered after its request ended measures the worker once, from the hand-out; other late answers measure nothing', () => {
    const e = new WorkerEstimates(1);
    e.start(7, 1000);
    e.probe(7, 3, { lo: 2, hi: 4 }, 16, 1000);
    e.newRequest(); // the others finished request 3: its busy period is gone
    expect(e.lateAnswer(7, 3, { lo: 2, hi: 3 }, 1200)).toBe(false); // another node
    expect(e.lateAnswer(7, 2, { lo: 2, hi: 4 }, 1200)).toBe(false); // another request
    expect(e.lateAnswer(8, 3, { lo: 2, hi: 4 }, 1200)).toBe(false); // another worker
    expect(e.pace(7)).toBeNull();
    expect(e.lateAnswer(7, 3, { lo: 2, hi: 4 }, 1400)).toBe(true);
    expect(e.pace(7)).toBe(40); // 16 samples in 400 ms
    expect(e.speed(7)).toBe(40);
    expect(e.lateAnswer(7, 3, { lo: 2, hi: 4 }, 1500)).toBe(false); // the rest of its parts: once only
    // Measured in its request instead: the probe is spent.
    e.start(9, 0);
    e.probe(9, 5, { lo: 0, hi: 1 }, 8, 0);
    e.answered(9, 8, true);
    e.idle(9, 100);
    expect(e.lateAnswer(9, 5, { lo: 0, hi: 1 }, 150)).toBe(false);
    expect(e.pace(9)).toBe(80);
  });

  it('answers dropped quietly count for the pace, not the speed; non-finite ones for neither', () => {
    const e = new WorkerEstimates(1);
    e.start(1, 0);
    e.answered(1, 10, true);
    e.answered(1, 10, false, true); // its node was done elsewhere meanwhile
    e.answered(1, 20, false); // non-finite
    e.idle(1, 1000);
    expect(e.speed(1)).toBe(10);
    expect(e.pace(1)).toBe(20);
  });

  it('a stall bounds the speed by what was held over the hold; a late answer then measures the pace only', () => {
    const e = new WorkerEstimates(1);
    e.start(1, 0);
    e.answered(1, 8, true);
    e.idle(1, 100); // 80 samples/s
    e.start(1, 1000);
    e.stalled(1, 16, 3000); // 16 samples held 2 s: at most 8/s
    expect(e.speed(1)).toBe(8);
    expect(e.pace(1)).toBe(80);
    e.answered(1, 16, false, true); // late: its node was taken from it
    e.idle(1, 5000);
    expect(e.pace(1)).toBe(4); // 16 samples in 4 s
    expect(e.speed(1)).toBe(8);
    expect(e.busyMs(1, 8)).toBe(2000);
    // A worker that never answers is never given a pace.
    e.start(2, 0);
    e.stalled(2, 16, 2000);
    expect(e.pace(2)).toBeNull();
    expect(e.speed(2)).toBe(8);
  });
});
