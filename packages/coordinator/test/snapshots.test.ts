/** The trainer's snapshot ring: its window follows the budget, evicts the oldest, reuses buffers, and drops what a rollback undoes. */
import { describe, expect, it } from 'vitest';
import { SnapshotRing, snapshotBytes } from '../src/snapshots.js';

const params = (v: number): Float32Array => new Float32Array(10).fill(v);

describe('SnapshotRing', () => {
  it('holds budget / snapshot size states, at least one', () => {
    expect(snapshotBytes(10)).toBe(80);
    expect(new SnapshotRing(10, 80 * 3 + 79).capacity).toBe(3);
    expect(new SnapshotRing(10, 0).capacity).toBe(1);
  });

  it('keeps the last W states by step, copies of what was pushed, the momentum buffer or its absence', () => {
    const ring = new SnapshotRing(10, 80 * 3);
    const p = params(0);
    for (let step = 0; step < 5; step++) {
      p.fill(step);
      ring.push(step, p, step % 2 === 1 ? params(-step) : null, { epoch: 0, position: step }, -1, 100 * step);
    }
    p.fill(42); // the ring holds copies
    expect(ring.size).toBe(3);
    expect(ring.oldestStep).toBe(2);
    expect(ring.at(1)).toBeNull();
    const s3 = ring.at(3)!;
    expect([...s3.params]).toEqual(new Array(10).fill(3));
    expect(s3.hasMomentum).toBe(true);
    expect(s3.momentum[0]).toBe(-3);
    expect(ring.at(4)!.hasMomentum).toBe(false);
    expect(s3.sampler).toEqual({ epoch: 0, position: 3 });
    expect(s3.metricsMark).toBe(300);
  });

  it('drops the states a rollback undoes, then takes the replayed steps again, reusing buffers', () => {
    const ring = new SnapshotRing(10, 80 * 3);
    for (let step = 0; step < 3; step++) ring.push(step, params(step), null, { epoch: 0, position: step }, -1, 0);
    const buf = ring.at(1)!.params;
    ring.dropFrom(1);
    expect(ring.size).toBe(1);
    expect(ring.at(1)).toBeNull();
    const again = ring.push(1, params(7), null, { epoch: 0, position: 1 }, -1, 0);
    expect(again.params).toBe(buf); // the dropped snapshot's buffer, not a new one
    expect(again.params[0]).toBe(7);
    expect(() => ring.push(1, params(0), null, { epoch: 0, position: 1 }, -1, 0)).toThrow(/step 1 after 1/);
  });
});
