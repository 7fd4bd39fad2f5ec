import { describe, expect, it } from 'vitest';
import { coverRange, isTreeNode, nodeSamples } from '@gradhub/core';
import {
  CrewChooser,
  SpeedTable, assignChunks, assignedBytes, ewma, fitNode, nodeCount, pickWorker, proportionalCounts, type Assignment, type TransferCost, type WorkerSpeed,
} from '../src/scheduler.js';
import { INTERNAL } from '../../../test/support/errors.js';

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

  it('gives chunks in proportion to measured speed; an unmeasured worker counts as half the slowest (a conservative share)', () => {
    const plan = assignChunks(16, [{ id: 1, speed: 300 }, { id: 2, speed: 100 }], shape(64, 4));
    expect(plan.map((a) => a.hi - a.lo)).toEqual([12, 4]);
    const mixed = assignChunks(12, [{ id: 1, speed: 100 }, { id: 2, speed: 300 }, { id: 3, speed: null }], shape(48, 4));
    expect(mixed.map((a) => a.hi - a.lo)).toEqual([2, 9, 1]);
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

describe('assignChunks: the cost of moving bytes', () => {
  // The full model: a 42 MB gradient, 42 MB of parameters, 3073 bytes a sample, 400 MB/s.
  const BIG: TransferCost = { resultBytes: 42e6, paramsBytes: 42e6, sampleBytes: 3073 };
  const SMALL: TransferCost = { resultBytes: 3.2e6, paramsBytes: 3.2e6, sampleBytes: 3073 };
  const bw = 400e6;
  const ranges = (plan: Assignment[]) => plan.map((a) => [a.lo, a.hi, a.nodes.length]);
  /** Makespan of a plan under the model, recomputed here. */
  const makespan = (plan: Assignment[], ws: WorkerSpeed[], sh: { batch: number; chunk: number }, cost: TransferCost): number =>
    Math.max(...plan.map((a) => {
      const w = ws.find((x) => x.id === a.workerId)!;
      const b = w.bandwidth ?? bw;
      const samples = Math.min(a.hi * sh.chunk, sh.batch) - a.lo * sh.chunk;
      return (w.needsParams ? cost.paramsBytes / b : 0) + samples / w.speed! + (samples * cost.sampleBytes + a.nodes.length * cost.resultBytes) / b;
    }));

  it('equal speeds on 16 chunks and 2 workers: [0,8) + [8,16), one node each', () => {
    const ws = [{ id: 1, speed: 600, bandwidth: bw, needsParams: true }, { id: 2, speed: 600, bandwidth: bw, needsParams: true }];
    const plan = assignChunks(16, ws, shape(256, 16), BIG);
    expect(ranges(plan)).toEqual([[0, 8, 1], [8, 16, 1]]);
    checkCover(plan, 16);
  });

  it('slightly unequal speeds: one node each instead of five gradients, when a gradient costs more than the imbalance', () => {
    const ws = [{ id: 1, speed: 500, bandwidth: bw }, { id: 2, speed: 620, bandwidth: bw }];
    // Proportional cuts: [0,7) + [7,16), i.e. 3 + 2 nodes.
    expect(ranges(assignChunks(16, ws, shape(256, 16)))).toEqual([[0, 7, 3], [7, 16, 2]]);
    const plan = assignChunks(16, ws, shape(256, 16), BIG);
    expect(ranges(plan)).toEqual([[0, 8, 1], [8, 16, 1]]);
    expect(plan[1].estimateS).toBeCloseTo(128 / 620 + (128 * 3073 + 42e6) / bw, 9);
    // The same speeds with a small model: balance wins.
    expect(ranges(assignChunks(16, ws, shape(256, 16), SMALL)).map((r) => r[1] - r[0])).toEqual([7, 9]);
  });

  it('a 3x faster worker still gets more chunks', () => {
    const ws = [{ id: 1, speed: 900, bandwidth: bw }, { id: 2, speed: 300, bandwidth: bw }];
    const plan = assignChunks(16, ws, shape(256, 16), BIG);
    checkCover(plan, 16);
    expect(plan[0].hi - plan[0].lo).toBeGreaterThan(8);
    expect(plan[0].hi - plan[0].lo).toBeGreaterThan(plan[1].hi - plan[1].lo);
  });

  it('many workers of a small model are not forced into one node each when balance matters more', () => {
    const ws = Array.from({ length: 8 }, (_, i) => ({ id: i + 1, speed: 100 * (i + 1), bandwidth: bw }));
    const sh = shape(1024, 16);
    const plan = assignChunks(64, ws, sh, SMALL);
    checkCover(plan, 64);
    const counts = plan.map((a) => a.hi - a.lo);
    expect(counts).not.toEqual([8, 8, 8, 8, 8, 8, 8, 8]); // the tree-aligned cut: one node each
    for (let i = 1; i < counts.length; i++) expect(counts[i]).toBeGreaterThanOrEqual(counts[i - 1]); // faster: more
    // And with a huge gradient, the same workers take fewer, larger nodes.
    const big = assignChunks(64, ws, sh, { ...SMALL, resultBytes: 4e9 });
    expect(big.reduce((s, a) => s + a.nodes.length, 0)).toBeLessThan(plan.reduce((s, a) => s + a.nodes.length, 0));
  });

  it('a worker that must first download the parameters gets less', () => {
    const ws = [{ id: 1, speed: 600, bandwidth: bw, needsParams: true }, { id: 2, speed: 600, bandwidth: bw, needsParams: false }];
    // Results are small (e.g. EVAL), the parameters are not: worker 1 starts 105 ms late.
    const plan = assignChunks(16, ws, shape(256, 16), { resultBytes: 100, paramsBytes: 42e6, sampleBytes: 3073 });
    expect(plan[0].hi - plan[0].lo).toBeLessThan(plan[1].hi - plan[1].lo);
  });

  it('never estimates worse than the proportional cuts, for any speeds, bandwidths and sizes', () => {
    let seed = 7;
    const rand = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
    for (let t = 0; t < 300; t++) {
      const nChunks = 1 + Math.floor(rand() * (t % 10 === 0 ? 600 : 40));
      const k = 1 + Math.floor(rand() * Math.min(12, nChunks));
      const ws = Array.from({ length: k }, (_, i) => ({ id: i + 1, speed: 50 + rand() * 1000, bandwidth: 1e7 + rand() * 1e9, needsParams: rand() < 0.5, maxSamples: rand() < 0.2 ? 64 : 0 }));
      const sh = shape(nChunks * 16 - Math.floor(rand() * 15), 16);
      const cost = { resultBytes: rand() * 1e8, paramsBytes: rand() * 1e8, sampleBytes: 3073 };
      const plan = assignChunks(nChunks, ws, sh, cost);
      checkCover(plan, nChunks);
      const prop = assignChunks(nChunks, ws, sh); // no cost: the proportional cuts
      expect(makespan(plan, ws, sh, cost)).toBeLessThanOrEqual(makespan(prop, ws, sh, cost) * (1 + 1e-9));
      for (const a of plan) expect(a.estimateS).toBeCloseTo(makespan([a], ws, sh, cost), 9);
    }
  });

  it('nodeCount matches coverRange + fitNode', () => {
    for (const nChunks of [1, 5, 16, 23]) {
      const sh = shape(nChunks * 8 - 3, 8);
      for (let a = 0; a < nChunks; a++) {
        for (let b = a + 1; b <= nChunks; b++) {
          for (const max of [0, 8, 20]) {
            const want = coverRange(a, b, nChunks).flatMap((n) => fitNode(n, sh, max));
            expect(nodeCount(a, b, nChunks, sh, max)).toBe(want.length);
          }
        }
      }
    }
  });

  it('reports the bytes a plan moves per step', () => {
    const ws = [{ id: 1, speed: 500, bandwidth: bw, needsParams: true }, { id: 2, speed: 620, bandwidth: bw }];
    const sh = shape(250, 16);
    const plan = assignChunks(16, ws, sh);
    const b = assignedBytes(plan, ws, sh, BIG);
    expect(b.nodes).toBe(5);
    expect(b.paramsBytes).toBe(42e6);
    expect(b.workBytes).toBe(250 * 3073);
    expect(b.resultBytes).toBe(5 * 42e6);
    expect(b.downBytes).toBe(b.paramsBytes + b.workBytes);
    expect(b.upBytes).toBe(b.resultBytes);
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

describe('CrewChooser: how many workers a training step uses, by measured step times', () => {
  /** Run `steps` steps against a machine whose step takes `ms(k)` with k workers; returns the counts used. */
  function drive(c: CrewChooser, available: number, steps: number, ms: (k: number) => number, clean = (_k: number, _prev: number | null) => true): number[] {
    const used: number[] = [];
    let prev: number | null = null;
    for (let s = 0; s < steps; s++) {
      const k = c.next(available);
      used.push(k);
      c.observe(k, ms(k), clean(k, prev));
      prev = k;
    }
    return used;
  }

  it('candidates are the count and its halvings', () => {
    expect(CrewChooser.candidates(1)).toEqual([1]);
    expect(CrewChooser.candidates(2)).toEqual([2, 1]);
    expect(CrewChooser.candidates(13)).toEqual([13, 6, 3, 1]);
  });

  it('warms up on every worker, tries each count for two steps, then keeps the fastest, exploring now and then', () => {
    const c = new CrewChooser({ warmUp: 3, exploreEvery: 16 });
    const used = drive(c, 2, 40, (k) => (k === 1 ? 175 : 210)); // batch 64 here: one worker is faster
    expect(used.slice(0, 3)).toEqual([2, 2, 2]);
    expect(used.slice(3, 7)).toEqual([2, 2, 1, 1]);
    expect(used.slice(7, 15).every((k) => k === 1)).toBe(true);
    expect(used.slice(15, 17)).toEqual([2, 2]); // step 16: the count measured longest ago, for two steps
    expect(used.slice(17, 31).every((k) => k === 1)).toBe(true);
    // The other way round (batch 256 here): two workers are faster, and stay chosen.
    const d = new CrewChooser();
    const more = drive(d, 2, 40, (k) => (k === 1 ? 430 : 330));
    expect(more.join('').match(/1+/g)).toEqual(['11', '11', '11']); // only the tries: at first, then at steps 16 and 32
    expect(more.slice(-5)).toEqual([2, 2, 2, 2, 2]);
  });

  it('takes fewer workers only when clearly faster, ignores steps that caught up, and starts over when the count changes', () => {
    const c = new CrewChooser({ margin: 0.1 });
    expect(drive(c, 2, 30, (k) => (k === 1 ? 200 : 210)).slice(-3)).toEqual([2, 2, 2]); // 5% is noise
    // A step right after joining the crew pays the catch-up: not measured, so two workers still win.
    const d = new CrewChooser();
    const used = drive(d, 2, 30, (k) => (k === 1 ? 430 : 330), (k, prev) => !(k === 2 && prev === 1));
    expect(used.slice(-3)).toEqual([2, 2, 2]);
    // A new worker: measurements start over, with a warm-up on every worker.
    expect([d.next(3), d.next(3), d.next(3)]).toEqual([3, 3, 3]);
    expect(() => new CrewChooser({ exploreEvery: 1 })).toThrow(INTERNAL);
  });
});
