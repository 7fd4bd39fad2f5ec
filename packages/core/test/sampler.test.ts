import { describe, it, expect } from 'vitest';
import { Rng } from '../src/rng.js';
import { Sampler, epochOrder, batchesPerEpoch } from '../src/sampler.js';
import { INTERNAL } from '../../../test/support/errors.js';

describe('generator', () => {
  it('is reproducible per (seed, stream) and streams differ', () => {
    const a = new Rng(42, 3);
    const b = new Rng(42, 3);
    const c = new Rng(42, 4);
    const xs = Array.from({ length: 8 }, () => a.nextU32());
    expect(Array.from({ length: 8 }, () => b.nextU32())).toEqual(xs);
    expect(Array.from({ length: 8 }, () => c.nextU32())).not.toEqual(xs);
  });

  it('gives uniform floats in [0, 1)', () => {
    const r = new Rng(7);
    let sum = 0;
    let min = 1;
    let max = 0;
    const n = 100_000;
    for (let i = 0; i < n; i++) {
      const u = r.nextFloat();
      sum += u;
      min = Math.min(min, u);
      max = Math.max(max, u);
    }
    expect(min).toBeGreaterThanOrEqual(0);
    expect(max).toBeLessThan(1);
    expect(Math.abs(sum / n - 0.5)).toBeLessThan(0.01);
  });

  it('rejects seeds outside [0, 2^32)', () => {
    expect(() => new Rng(-1)).toThrow(INTERNAL);
    expect(() => new Rng(1.5)).toThrow(INTERNAL);
  });
});

describe('sampler', () => {
  const opts = { count: 10, batch: 4, seed: 3, shuffle: true };

  it('shuffles each epoch into a permutation that depends on (seed, epoch) only', () => {
    const p0 = [...epochOrder(opts, 0)];
    const p1 = [...epochOrder(opts, 1)];
    expect([...p0].sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(p1).not.toEqual(p0);
    expect([...epochOrder(opts, 0)]).toEqual(p0);
    expect([...epochOrder({ ...opts, shuffle: false }, 5)]).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  });

  it('hands out batches with a short last one (drop_last off) and rolls into the next epoch', () => {
    const s = new Sampler(opts);
    const p0 = [...epochOrder(opts, 0)];
    expect(batchesPerEpoch(10, 4)).toBe(3);
    expect([...s.next().indices]).toEqual(p0.slice(0, 4));
    expect([...s.next().indices]).toEqual(p0.slice(4, 8));
    const last = s.next();
    expect(last.epoch).toBe(0);
    expect([...last.indices]).toEqual(p0.slice(8, 10));
    expect(s.state).toEqual({ epoch: 1, position: 0 });
    const next = s.next();
    expect(next.epoch).toBe(1);
    expect([...next.indices]).toEqual([...epochOrder(opts, 1)].slice(0, 4));
  });

  it('resumes from (epoch, position) exactly', () => {
    const a = new Sampler(opts);
    a.next();
    a.next();
    a.next();
    a.next();
    const saved = a.state;
    const b = new Sampler(opts, saved);
    for (let i = 0; i < 5; i++) expect([...b.next().indices]).toEqual([...a.next().indices]);
  });
});
