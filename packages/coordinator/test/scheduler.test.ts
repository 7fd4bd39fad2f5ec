import { describe, expect, it } from 'vitest';
import { coverRange, isTreeNode, nodeSamples } from '@gradhub/core';
import { SpeedTable, assignChunks, ewma, fitNode, pickWorker, proportionalCounts, type Assignment } from '../src/scheduler.js';

/** The assignment covers [0, nChunks) with contiguous ranges, decomposed into tree nodes. */
function checkCover(plan: Assignment[], nChunks: number): void {
  let at = 0;
  for (const a of plan) {
    expect(a.lo).toBe(at);
    expect(a.hi).toBeGreaterThan(a.lo);
    let nat = a.lo;
    for (const n of a.nodes) {
      expect(isTreeNode(n, nChunks)).toBe(true);
      expect(n.lo).toBe(nat);
      nat = n.hi;
    }
    expect(nat).toBe(a.hi);
    at = a.hi;
  }
  expect(at).toBe(nChunks);
}

const shape = (batch: number, chunk: number) => ({ batch, chunk });

describe('proportionalCounts', () => {
  it('sums to the total, gives each at least one, follows the weights', () => {
    expect(proportionalCounts([1, 1, 1], 6)).toEqual([2, 2, 2]);
    expect(proportionalCounts([3, 1], 8)).toEqual([6, 2]);
    expect(proportionalCounts([100, 1, 1], 5)).toEqual([3, 1, 1]);
    expect(proportionalCounts([1, 1, 1], 4)).toEqual([2, 1, 1]);
    expect(proportionalCounts([5], 9)).toEqual([9]);
    expect(() => proportionalCounts([1, 1, 1], 2)).toThrow();
    for (let t = 0; t < 200; t++) {
      const n = 1 + (t % 9);
      const total = n + ((t * 7) % 50);
      const w = Array.from({ length: n }, (_, i) => 1 + ((i * 31 + t) % 17));
      const c = proportionalCounts(w, total);
      expect(c.reduce((s, x) => s + x, 0)).toBe(total);
      expect(Math.min(...c)).toBeGreaterThanOrEqual(1);
    }
  });
});

describe('assignChunks', () => {
  it('splits evenly between unmeasured workers, in id order, as canonical nodes', () => {
    const plan = assignChunks(6, [{ id: 3, speed: null }, { id: 1, speed: null }, { id: 2, speed: null }], shape(24, 4));
    expect(plan.map((a) => [a.workerId, a.lo, a.hi])).toEqual([[1, 0, 2], [2, 2, 4], [3, 4, 6]]);
    checkCover(plan, 6);
    expect(plan[1].nodes).toEqual(coverRange(2, 4, 6));
  });

  it('gives chunks in proportion to measured speed; unmeasured workers count as the mean', () => {
    const plan = assignChunks(16, [{ id: 1, speed: 300 }, { id: 2, speed: 100 }], shape(64, 4));
    expect(plan.map((a) => a.hi - a.lo)).toEqual([12, 4]);
    const mixed = assignChunks(12, [{ id: 1, speed: 100 }, { id: 2, speed: 300 }, { id: 3, speed: null }], shape(48, 4));
    expect(mixed.map((a) => a.hi - a.lo)).toEqual([2, 6, 4]);
    checkCover(mixed, 12);
  });

  it('uses at most as many workers as chunks, the fastest', () => {
    const plan = assignChunks(2, [{ id: 1, speed: 10 }, { id: 2, speed: 50 }, { id: 3, speed: 40 }], shape(8, 4));
    expect(plan.map((a) => a.workerId)).toEqual([2, 3]);
    checkCover(plan, 2);
    expect(assignChunks(1, [{ id: 4, speed: null }, { id: 2, speed: null }], shape(3, 4)).map((a) => a.workerId)).toEqual([2]);
    expect(assignChunks(5, [], shape(20, 4))).toEqual([]);
  });

  it('covers the tree for any worker count and speeds', () => {
    for (let nChunks = 1; nChunks <= 40; nChunks++) {
      for (let k = 1; k <= 7; k++) {
        const ws = Array.from({ length: k }, (_, i) => ({ id: i + 1, speed: i % 3 === 0 ? null : 10 + ((i * 13 + nChunks) % 50) }));
        const plan = assignChunks(nChunks, ws, shape(nChunks * 4 - 1, 4));
        expect(plan.length).toBe(Math.min(k, nChunks));
        checkCover(plan, nChunks);
      }
    }
  });

  it('splits nodes larger than a worker takes', () => {
    const plan = assignChunks(8, [{ id: 1, speed: null, maxSamples: 8 }], shape(32, 4));
    checkCover(plan, 8);
    for (const n of plan[0].nodes) {
      const { start, end } = nodeSamples(n, 32, 4);
      expect(end - start).toBeLessThanOrEqual(8);
    }
    expect(fitNode({ lo: 0, hi: 8 }, shape(32, 4), 3)).toHaveLength(8); // down to single chunks
    expect(fitNode({ lo: 0, hi: 8 }, shape(32, 4), 0)).toEqual([{ lo: 0, hi: 8 }]);
  });
});

describe('pickWorker', () => {
  it('picks who finishes first given queue and speed, honours exclusions', () => {
    const c = [
      { id: 1, speed: 100, queuedSamples: 50 },
      { id: 2, speed: 100, queuedSamples: 0 },
      { id: 3, speed: 10, queuedSamples: 0 },
    ];
    expect(pickWorker(10, c)).toBe(2);
    expect(pickWorker(10, c, new Set([2]))).toBe(1);
    expect(pickWorker(10, [c[0]], new Set([1]))).toBeNull();
    expect(pickWorker(10, [c[0]], new Set([1]), true)).toBe(1);
    expect(pickWorker(10, [])).toBeNull();
    expect(pickWorker(10, [{ id: 5, speed: null, queuedSamples: 0 }, { id: 4, speed: null, queuedSamples: 0 }])).toBe(4);
  });
});

describe('SpeedTable', () => {
  it('keeps an EWMA of samples per second', () => {
    const t = new SpeedTable(0.5);
    expect(t.get(1)).toBeNull();
    t.observe(1, 100, 1000);
    expect(t.get(1)).toBe(100);
    t.observe(1, 300, 1000);
    expect(t.get(1)).toBe(200);
    t.observe(1, 0, 1000);
    t.observe(1, 10, 0);
    expect(t.get(1)).toBe(200);
    t.forget(1);
    expect(t.get(1)).toBeNull();
    expect(ewma(null, 5, 0.1)).toBe(5);
    expect(() => new SpeedTable(0)).toThrow();
  });
});
