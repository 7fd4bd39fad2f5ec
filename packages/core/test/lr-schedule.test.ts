// The learning-rate schedules against PyTorch 1.13's own schedulers, value by value:
// test/fixtures/reference/lr_schedules.json (scripts/reference/lr_schedules.py).
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { lrSchedule, validateLrSchedule, LR_SCHEDULE_DEFAULTS, type LrScheduleKind, type LrScheduleOptions } from '../src/lr-schedule.js';
import { cos } from '../src/mathdet.js';
import { INTERNAL } from '../../../test/support/errors.js';

interface RefCase {
  name: string;
  settings: { lr: number; schedule: LrScheduleKind; step_size?: number; gamma?: number; lr_min?: number; warmup?: number; start_factor?: number };
  total_steps: number;
  lr: number[];
  cos: [number, number][];
}
const ref = JSON.parse(readFileSync(new URL('../../../test/fixtures/reference/lr_schedules.json', import.meta.url), 'utf8')) as { torch: string; cases: RefCase[] };

function optionsOf(c: RefCase): LrScheduleOptions {
  const s = c.settings;
  return {
    lr: s.lr, lrSchedule: s.schedule,
    lrStepSize: s.step_size ?? LR_SCHEDULE_DEFAULTS.lrStepSize, lrGamma: s.gamma ?? LR_SCHEDULE_DEFAULTS.lrGamma,
    lrMin: s.lr_min ?? LR_SCHEDULE_DEFAULTS.lrMin,
    warmupSteps: s.warmup ?? 0, warmupStartFactor: s.start_factor ?? LR_SCHEDULE_DEFAULTS.warmupStartFactor,
  };
}

/** The C library's cosine of the case's arguments (what PyTorch's math.cos returned); throws for any other argument. */
function glibcCos(c: RefCase): (x: number) => number {
  const table = new Map(c.cos.map(([x, v]) => [x, v]));
  return (x) => {
    const v = table.get(x);
    if (v === undefined) throw new Error(`${c.name}: cos(${x}) not in the reference (an argument PyTorch does not evaluate)`);
    return v;
  };
}

const ulps = (a: number, b: number): number => {
  const f = new Float64Array([a, b]);
  const i = new BigInt64Array(f.buffer);
  return Number(i[0] > i[1] ? i[0] - i[1] : i[1] - i[0]);
};

describe('lr_schedules.json (PyTorch 1.13 schedulers)', () => {
  it('holds the cases, one value per update', () => {
    expect(ref.cases.length).toBeGreaterThanOrEqual(18);
    for (const c of ref.cases) expect(c.lr.length, c.name).toBe(c.total_steps);
  });

  for (const c of ref.cases) {
    const cosine = c.settings.schedule === 'cosine';
    it(`${c.name}: every update's lr is PyTorch's float64, bit for bit${cosine ? ' (with the C library cosine PyTorch used)' : ''}`, () => {
      const lr = lrSchedule(optionsOf(c), { totalSteps: c.total_steps, cosine: cosine ? glibcCos(c) : undefined });
      for (let k = 1; k <= c.total_steps; k++) {
        if (lr(k) !== c.lr[k - 1]) expect.fail(`${c.name}: update ${k}: got ${lr(k)}, PyTorch ${c.lr[k - 1]}`);
      }
    });
    if (cosine) {
      it(`${c.name}: with the core's own cosine, the float32 lr SGD uses is PyTorch's at every update; float64 within a few ulps`, () => {
        const lr = lrSchedule(optionsOf(c), { totalSteps: c.total_steps });
        for (let k = 1; k <= c.total_steps; k++) {
          const mine = lr(k);
          const theirs = c.lr[k - 1];
          if (Math.fround(mine) !== Math.fround(theirs)) expect.fail(`${c.name}: update ${k}: float32 ${Math.fround(mine)} vs ${Math.fround(theirs)}`);
          expect(ulps(mine, theirs), `${c.name} update ${k}`).toBeLessThanOrEqual(16);
        }
      });
    }
  }

  it("the core's cos is within one ulp of the C library's at every argument of the cosine cases", () => {
    let differ = 0;
    let total = 0;
    for (const c of ref.cases) {
      for (const [x, v] of c.cos) {
        total++;
        const d = ulps(cos(x), v);
        expect(d, `cos(${x})`).toBeLessThanOrEqual(1);
        differ += d;
      }
    }
    expect(total).toBeGreaterThan(2000);
    expect(differ / total).toBeLessThan(0.01); // glibc misrounds ~0.1% of them
  });
});

describe('lrSchedule', () => {
  const base: LrScheduleOptions = { lr: 0.01 };
  it('constant without warm-up is the lr itself, whatever k', () => {
    const lr = lrSchedule(base, { totalSteps: 10 });
    expect([lr(1), lr(10), lr(1e6)]).toEqual([0.01, 0.01, 0.01]);
  });
  it('answers in any order (values are remembered, not recomputed differently)', () => {
    const o = { ...base, lrSchedule: 'step' as const, lrStepSize: 2, warmupSteps: 3, warmupStartFactor: 0.5 };
    const inOrder = lrSchedule(o, { totalSteps: 20 });
    const seq = Array.from({ length: 20 }, (_, i) => inOrder(i + 1));
    const jumpy = lrSchedule(o, { totalSteps: 20 });
    expect([jumpy(17), jumpy(3), jumpy(20), jumpy(1)]).toEqual([seq[16], seq[2], seq[19], seq[0]]);
  });
  it('refuses invalid options with the flag name, and a cosine whose warm-up exceeds the run', () => {
    expect(() => validateLrSchedule({ ...base, lrSchedule: 'linear' as LrScheduleKind })).toThrow(/--lr-schedule/);
    expect(() => validateLrSchedule({ ...base, lrStepSize: 0 })).toThrow(/--lr-step-size/);
    expect(() => validateLrSchedule({ ...base, lrGamma: -1 })).toThrow(/--lr-gamma/);
    expect(() => validateLrSchedule({ ...base, lrMin: Number.NaN })).toThrow(/--lr-min/);
    expect(() => validateLrSchedule({ ...base, warmupSteps: 1.5 })).toThrow(/--warmup-steps/);
    expect(() => validateLrSchedule({ ...base, warmupStartFactor: 0 })).toThrow(/--warmup-start-factor/);
    expect(() => lrSchedule({ ...base, lrSchedule: 'cosine', warmupSteps: 11 }, { totalSteps: 10 })).toThrow(/exceeds/);
    expect(() => lrSchedule(base, { totalSteps: 10 })(0)).toThrow(INTERNAL);
  });
});
