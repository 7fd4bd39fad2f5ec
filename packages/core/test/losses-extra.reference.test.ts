// test/fixtures/reference/losses_extra.json (scripts/reference/losses_extra.py, PyTorch 1.13):
// BCELoss, ignored rows with non-finite inputs, and torch.optim.SGD with maximize, case by case;
// BCELoss also by finite differences.
import { describe, expect, it } from 'vitest';
import { binaryCrossEntropy, crossEntropy, nllLoss, type FloatArray, type LossOutputs, type Reduction } from '../src/losses.js';
import { sgdStep, type SgdOptions, type SgdState } from '../src/sgd.js';
import { createSgdOptimizer } from '../src/sgd-wasm.js';
import { wasmSimdSupported } from '../src/kernels/wasm.js';
import { INTERNAL } from '../../../test/support/errors.js';
import { flat, loadRef, refNumber as num, type Nested } from './losses.testutil.js';

interface LossCase {
  name: string;
  fn: string;
  kwargs: Record<string, Nested | undefined>;
  inputs: Record<string, Nested>;
  output: Nested;
  grad_output: Nested;
  grads: Record<string, Nested>;
}
interface SgdCase {
  name: string;
  options: { lr: number; momentum: number; dampening: number; weight_decay: number; nesterov: boolean; maximize: boolean };
  p0: number[];
  steps: { gsum: number[]; denom: number; params: number[]; momentum_buffer: number[] | null }[];
}
const ref = loadRef<{ cases: LossCase[]; sgd: SgdCase[] }>('losses_extra.json');


/** Close elementwise (1e-12 relative, 1e-15 absolute, the float64 tolerance of the other references); NaN exactly where PyTorch has NaN. */
function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>, what: string): void {
  expect(actual.length, `${what}: length`).toBe(expected.length);
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i];
    const e = expected[i];
    if (Number.isNaN(e) || Number.isNaN(a)) {
      if (Number.isNaN(e) !== Number.isNaN(a)) expect.fail(`${what}[${i}]: got ${a}, PyTorch ${e}`);
      continue;
    }
    if (!(Math.abs(a - e) <= 1e-12 * Math.abs(e) + 1e-15)) expect.fail(`${what}[${i}]: got ${a}, PyTorch ${e} (diff ${a - e})`);
  }
}

function runCase(c: LossCase): { output: number[]; dInput: Float64Array } {
  const x = flat(c.inputs.input);
  const input = Float64Array.from(x.data);
  const t = flat(c.inputs.target).data;
  const reduction = (c.kwargs.reduction as Reduction | undefined) ?? 'mean';
  const go = flat(c.grad_output).data;
  const dInput = new Float64Array(input.length);
  const n = x.shape[0];
  const classes = x.shape[1];
  const count = c.fn === 'F.binary_cross_entropy' ? input.length : n;
  const lossOut = new Float64Array(count);
  const out: LossOutputs = { loss: reduction === 'none' ? lossOut : null, dInput, gradOutput: reduction === 'none' ? go : go[0] };
  const weight = c.kwargs.weight === undefined ? null : flat(c.kwargs.weight).data;
  const ignoreIndex = c.kwargs.ignore_index as number | undefined;
  let value: number;
  if (c.fn === 'F.binary_cross_entropy') value = binaryCrossEntropy(input, Float64Array.from(t), n, classes, { reduction, weight }, out);
  else if (c.fn === 'F.cross_entropy') value = crossEntropy(input, t, n, classes, 1, { reduction, weight, ignoreIndex, labelSmoothing: c.kwargs.label_smoothing as number | undefined }, out);
  else if (c.fn === 'F.nll_loss') value = nllLoss(input, t, n, classes, 1, { reduction, weight, ignoreIndex }, out);
  else throw new Error(`${c.name}: unknown fn ${c.fn}`);
  return { output: reduction === 'none' ? Array.from(lossOut) : [value], dInput };
}

describe('losses_extra.json (PyTorch 1.13 reference)', () => {
  it('holds the BCELoss and ignored-row cases', () => {
    const names = ref.cases.map((c) => c.name);
    expect(names.filter((n) => n.startsWith('bce_')).length).toBe(9);
    expect(names.filter((n) => n.includes('ignored_nonfinite')).length).toBe(5);
  });
  for (const c of ref.cases) {
    it(`${c.name}: output and input gradient`, () => {
      const r = runCase(c);
      expectClose(r.output, flat(c.output).data, `${c.name} output`);
      expectClose(r.dInput, flat(c.grads.input).data, `${c.name} grad input`);
    });
  }
  it('an ignored row of finite logits still gets +0, and NaN only reaches the rows that hold non-finite logits', () => {
    const c = ref.cases.find((k) => k.name === 'ce_ignored_nonfinite_mean')!;
    const g = runCase(c).dInput;
    const rowHasNaN = [0, 1, 2, 3, 4, 5].map((r) => Array.from(g.subarray(r * 4, r * 4 + 4)).some(Number.isNaN));
    expect(rowHasNaN).toEqual([true, true, false, false, true, false]);
    expect(Array.from(g.subarray(8, 12)).map((v) => Object.is(v, 0))).toEqual([true, true, true, true]); // row 2: -inf among finite
  });
});

describe('binaryCrossEntropy', () => {
  // Probabilities away from 0 and 1, where the loss is smooth.
  const n = 3;
  const classes = 4;
  const x = Float64Array.from({ length: n * classes }, (_, i) => 0.1 + 0.8 * ((i * 0.618034) % 1));
  const y = Float64Array.from({ length: n * classes }, (_, i) => (i * 0.414214) % 1);
  const w = Float64Array.from({ length: n * classes }, (_, i) => 0.5 + (i % 3));
  for (const reduction of ['mean', 'sum'] as const) {
    for (const weight of [null, w, w.subarray(0, classes)]) {
      it(`gradient = finite differences (${reduction}, weight ${weight === null ? 'none' : weight.length})`, () => {
        const dInput = new Float64Array(x.length);
        binaryCrossEntropy(x, y, n, classes, { reduction, weight }, { dInput, gradOutput: 1.5 });
        const h = 1e-6;
        for (let k = 0; k < x.length; k++) {
          const at = (d: number): number => {
            const xp = x.slice();
            xp[k] += d;
            return 1.5 * binaryCrossEntropy(xp, y, n, classes, { reduction, weight });
          };
          const fd = (at(h) - at(-h)) / (2 * h);
          expect(Math.abs(dInput[k] - fd), `element ${k}`).toBeLessThan(1e-7 * Math.max(1, Math.abs(fd)));
        }
      });
    }
  }
  it("'none' gives the per-element losses and the vector-Jacobian product", () => {
    const loss = new Float64Array(x.length);
    const go = Float64Array.from({ length: x.length }, (_, i) => (i % 2 ? -1 : 0.5));
    const dInput = new Float64Array(x.length);
    const total = binaryCrossEntropy(x, y, n, classes, { reduction: 'none' }, { loss, dInput, gradOutput: go });
    expect(total).toBeCloseTo(binaryCrossEntropy(x, y, n, classes, { reduction: 'sum' }), 12);
    const plain = new Float64Array(x.length);
    binaryCrossEntropy(x, y, n, classes, { reduction: 'sum' }, { dInput: plain });
    for (let k = 0; k < x.length; k++) expect(dInput[k]).toBeCloseTo(plain[k] * go[k], 12);
  });
  it('refuses inputs or targets outside [0, 1], a target gradient, and a weight of the wrong size', () => {
    const bad = x.slice();
    bad[2] = 1.5;
    expect(() => binaryCrossEntropy(bad, y, n, classes)).toThrow(/input\[2\] = 1.5/);
    bad[2] = Number.NaN;
    expect(() => binaryCrossEntropy(bad, y, n, classes)).toThrow(INTERNAL);
    expect(() => binaryCrossEntropy(x, Float64Array.from(y, (v) => v - 1), n, classes)).toThrow(/target/);
    expect(() => binaryCrossEntropy(x, y, n, classes, {}, { dTarget: new Float64Array(x.length) })).toThrow(/target gradient/);
    expect(() => binaryCrossEntropy(x, y, n, classes, { weight: [1, 2] })).toThrow(/weight/);
  });
});

/**
 * torch.optim.SGD as PyTorch 1.13's CPU kernels compute it: every `add(x, alpha=a)` (weight decay,
 * momentum, nesterov, the update p.add_(g, alpha=-lr)) is a fused multiply-add, one rounding
 * (ATen's vectorised add uses vec::fmadd, and its scalar tail is contracted too). The float32
 * product of two float32 values is exact in float64; adding the third in float64 and rounding to
 * float32 gives the fused value (no double-rounding case occurs in these figures).
 */
function torchSgdStep(p: Float32Array, gsum: Float32Array, denom: number, o: SgdOptions, state: SgdState): void {
  const f = Math.fround;
  const fma = (a: number, b: number, c: number): number => f(a * b + c);
  const lr = f(o.lr), wd = f(o.weightDecay), m = f(o.momentum), d1 = f(1 - o.dampening);
  const first = state.momentumBuffer === null;
  if (o.momentum !== 0 && first) state.momentumBuffer = new Float32Array(p.length);
  const buf = state.momentumBuffer;
  for (let i = 0; i < p.length; i++) {
    let g = f(gsum[i] / f(denom));
    if (o.maximize) g = -g;
    if (o.weightDecay !== 0) g = fma(p[i], wd, g);
    if (o.momentum !== 0) {
      buf![i] = first ? g : fma(g, d1, f(buf![i] * m));
      g = o.nesterov ? fma(buf![i], m, g) : buf![i];
    }
    p[i] = fma(g, -lr, p[i]);
  }
}

describe('torch.optim.SGD(maximize) (losses_extra.json "sgd")', () => {
  const bits = (a: ArrayLike<number>): string => Buffer.from(Float32Array.from(a).buffer).toString('hex');
  const optionsOf = (c: SgdCase): SgdOptions => ({
    lr: c.options.lr, momentum: c.options.momentum, dampening: c.options.dampening, weightDecay: c.options.weight_decay,
    nesterov: c.options.nesterov, maximize: c.options.maximize,
  });
  /** Largest |a - e| / max(1, |e|): the roundings FMA saves, carried through three steps, stay near float32's 6e-8. */
  const worst = (a: ArrayLike<number>, e: ArrayLike<number>): number => {
    let w = 0;
    for (let i = 0; i < e.length; i++) w = Math.max(w, Math.abs(a[i] - e[i]) / Math.max(1, Math.abs(e[i])));
    return w;
  };
  it('holds each optimizer case with and without maximize', () => {
    expect(ref.sgd.length).toBe(8);
    expect(ref.sgd.filter((c) => c.options.maximize).length).toBe(4);
  });
  for (const c of ref.sgd) {
    it(`${c.name}: PyTorch's bits are the fused-multiply-add form of the update, every step`, () => {
      const p = Float32Array.from(c.p0);
      const state: SgdState = { momentumBuffer: null };
      c.steps.forEach((s, i) => {
        torchSgdStep(p, Float32Array.from(s.gsum), s.denom, optionsOf(c), state);
        expect(bits(p), `${c.name} step ${i + 1} params`).toBe(bits(s.params));
        if (s.momentum_buffer !== null) expect(bits(state.momentumBuffer!), `${c.name} step ${i + 1} momentum`).toBe(bits(s.momentum_buffer));
      });
    });
    it(`${c.name}: sgd.ts (one rounding per operation, no FMA) stays within 1e-6 of PyTorch; the wasm optimizer gives sgd.ts's bits`, async () => {
      const p = Float32Array.from(c.p0);
      const state: SgdState = { momentumBuffer: null };
      const wasm = wasmSimdSupported() ? await createSgdOptimizer(c.p0.length, { backend: 'wasm', params: Float32Array.from(c.p0) }) : null;
      c.steps.forEach((s, i) => {
        sgdStep(p, Float32Array.from(s.gsum), s.denom, optionsOf(c), state);
        expect(worst(p, s.params), `${c.name} step ${i + 1} params`).toBeLessThan(1e-6);
        if (s.momentum_buffer === null) expect(state.momentumBuffer).toBeNull();
        else expect(worst(state.momentumBuffer!, s.momentum_buffer), `${c.name} step ${i + 1} momentum`).toBeLessThan(1e-6);
        if (wasm) {
          expect(wasm.step(Float32Array.from(s.gsum), s.denom, optionsOf(c))).toBe(true);
          expect(bits(wasm.params), `${c.name} step ${i + 1} wasm`).toBe(bits(p));
        }
      });
    });
  }
  it('maximize = minimizing with the gradient negated, bit for bit (signed zeros included)', () => {
    const g = Float32Array.from([0, -0, 1e-42, -3.5, 7.25, 3.4e38, -1e-30]);
    const p0 = Float32Array.from([1, -1, 0, -0, 0.5, 2, -3]);
    for (const momentum of [0, 0.9]) {
      const o = { lr: 0.1, momentum, dampening: 0, weightDecay: 0.01, nesterov: momentum > 0 };
      const a = p0.slice();
      const b = p0.slice();
      const sa: SgdState = { momentumBuffer: null };
      const sb: SgdState = { momentumBuffer: null };
      for (let step = 0; step < 3; step++) {
        sgdStep(a, g, 7, { ...o, maximize: true }, sa);
        sgdStep(b, g.map((v) => -v), 7, o, sb);
        expect(bits(a)).toBe(bits(b));
      }
    }
  });
});
