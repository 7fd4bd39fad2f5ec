// Losses beyond the per-function reference cases: the distributed "sum" form the training engine
// uses (against PyTorch's mean cases), the tutorial figures, the softmax-regression cost curves, and
// finite-difference checks of every gradient.
import { describe, expect, it } from 'vitest';
import {
  binaryCrossEntropyWithLogits, countCorrect, crossEntropy, crossEntropyProbs, logSoftmax,
  logSoftmaxBackward, multilabelSoftMarginLoss, nllLoss, softmax, softmaxBackward,
  softmaxCrossEntropyRows, type CrossEntropyOptions, type FloatArray,
} from '../src/losses.js';
import { expectClose, loadRef } from './losses.testutil.js';
import { INTERNAL } from '../../../test/support/errors.js';

interface RefCase {
  name: string;
  fn: string;
  kwargs: { weight?: number[]; ignore_index?: number; label_smoothing?: number; reduction?: string };
  inputs: { input: number[][]; target: number[] };
  output: number;
  grads: { input: number[][] };
}
const functional = loadRef<{ cases: RefCase[] }>('functional_losses.json');

function sum(a: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i];
  return s;
}

/** Deterministic pseudo-random numbers in [-1, 1) (a 32-bit LCG; only test data). */
function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 31 - 1;
  };
}

// ---------------------------------------------------------------------------------------------

describe('softmaxCrossEntropyRows (distributed sum form)', () => {
  // The class-index mean cases of (N, C) input: sum(lossOut)/sum(denomOut) is PyTorch's mean,
  // gradOut/sum(denomOut) PyTorch's mean gradient.
  const meanCases = functional.cases.filter(
    (c) => c.fn.startsWith('F.cross_entropy') && c.kwargs.reduction === 'mean' &&
      !Array.isArray(c.inputs.target[0]) && c.inputs.input[0].length > 0 && !Array.isArray(c.inputs.input[0][0]),
  );

  it('covers weights, ignore_index, label smoothing and extreme logits', () => {
    const names = meanCases.map((c) => c.name);
    for (const n of ['ce_mean', 'ce_weight_mean', 'ce_ignore_default_mean', 'ce_ignore2_weight_mean', 'ce_label_smoothing_mean',
      'ce_label_smoothing_weight_mean', 'ce_label_smoothing_ignore_mean', 'ce_extreme_mean', 'ce_extreme_float32_mean']) {
      expect(names).toContain(n);
    }
  });

  for (const c of meanCases) {
    it(`${c.name}: sum(loss)/sum(denom) and grad/sum(denom) give PyTorch's mean`, () => {
      const f32 = c.fn.includes('float32');
      const n = c.inputs.input.length;
      const classes = c.inputs.input[0].length;
      const logits = f32 ? Float32Array.from(c.inputs.input.flat()) : Float64Array.from(c.inputs.input.flat());
      const options: CrossEntropyOptions = { weight: c.kwargs.weight ?? null, ignoreIndex: c.kwargs.ignore_index, labelSmoothing: c.kwargs.label_smoothing };
      const lossOut = new Float64Array(n);
      const denomOut = new Float64Array(n);
      const grad64 = new Float64Array(n * classes);
      const correct = softmaxCrossEntropyRows(logits, n, classes, c.inputs.target, lossOut, denomOut, grad64, options);
      const [rtol, atol] = f32 ? [1e-5, 1e-6] : [1e-12, 1e-15];
      const denom = sum(denomOut);
      expectClose([sum(lossOut) / denom], [c.output], rtol, atol, 'mean loss');
      expectClose(grad64.map((g) => g / denom), c.grads.input.flat(), rtol, atol, 'mean grad');

      // The per-row contract: denominators are w[t] (1 unweighted), 0 for ignored rows; ignored rows
      // have loss 0 and gradient 0.
      const ignore = c.kwargs.ignore_index ?? -100;
      c.inputs.target.forEach((t, s) => {
        const d = t === ignore ? 0 : (c.kwargs.weight?.[t] ?? 1);
        expect(denomOut[s]).toBe(d);
        if (t === ignore) {
          expect(lossOut[s]).toBe(0);
          for (let j = 0; j < classes; j++) expect(grad64[s * classes + j]).toBe(0);
        }
      });

      // The correct count: argmax (first maximum) == target over non-ignored rows.
      let expected = 0;
      c.inputs.input.forEach((row, s) => {
        if (c.inputs.target[s] !== ignore && row.indexOf(Math.max(...row)) === c.inputs.target[s]) expected++;
      });
      expect(correct).toBe(expected);

      // A Float32Array gradient is the float64 one rounded once; the evaluation form (no gradient)
      // gives the same losses.
      const grad32 = new Float32Array(n * classes);
      const loss2 = new Float64Array(n);
      softmaxCrossEntropyRows(logits, n, classes, c.inputs.target, loss2, denomOut, grad32, options);
      expect(Array.from(grad32)).toEqual(Array.from(grad64, Math.fround));
      expect(Array.from(loss2)).toEqual(Array.from(lossOut));
      const loss3 = new Float64Array(n);
      expect(softmaxCrossEntropyRows(logits, n, classes, c.inputs.target, loss3, denomOut, null, options)).toBe(correct);
      expect(Array.from(loss3)).toEqual(Array.from(lossOut));
    });
  }

  it('gives the same bits for any split of the rows (each row depends on its own data only)', () => {
    const rnd = lcg(5);
    const n = 37;
    const classes = 10;
    const logits = Float32Array.from({ length: n * classes }, () => 8 * rnd());
    const targets = Int32Array.from({ length: n }, (_, s) => (s % 7 === 3 ? -100 : (s * 3) % classes));
    const full = { loss: new Float64Array(n), denom: new Float64Array(n), grad: new Float32Array(n * classes) };
    const correctAll = softmaxCrossEntropyRows(logits, n, classes, targets, full.loss, full.denom, full.grad);
    const part = { loss: new Float64Array(n), denom: new Float64Array(n), grad: new Float32Array(n * classes) };
    let correct = 0;
    for (const [lo, hi] of [[0, 16], [16, 32], [32, 37]]) {
      correct += softmaxCrossEntropyRows(
        logits.subarray(lo * classes, hi * classes), hi - lo, classes, targets.subarray(lo, hi),
        part.loss.subarray(lo, hi), part.denom.subarray(lo, hi), part.grad.subarray(lo * classes, hi * classes),
      );
    }
    expect(correct).toBe(correctAll);
    expect(Array.from(part.loss)).toEqual(Array.from(full.loss));
    expect(Array.from(part.denom)).toEqual(Array.from(full.denom));
    expect(Array.from(part.grad)).toEqual(Array.from(full.grad));
  });

  it('counts the first maximum on ties', () => {
    const logits = Float64Array.from([1, 3, 3, 0, /* row 2 */ 2, 2, 2, 2]);
    expect(countCorrect(logits, 2, 4, [1, 0])).toBe(2);
    expect(countCorrect(logits, 2, 4, [2, 3])).toBe(0);
    const lossOut = new Float64Array(2);
    const denomOut = new Float64Array(2);
    expect(softmaxCrossEntropyRows(logits, 2, 4, [2, 0], lossOut, denomOut, null)).toBe(1);
  });

  it('throws E_INTERNAL for a target outside [0, classes) before writing anything', () => {
    const logits = new Float64Array(6);
    const lossOut = new Float64Array(2).fill(7);
    const denomOut = new Float64Array(2).fill(7);
    const gradOut = new Float32Array(6).fill(7);
    for (const bad of [3, -1, 1.5, Number.NaN]) {
      expect(() => softmaxCrossEntropyRows(logits, 2, 3, [0, bad], lossOut, denomOut, gradOut)).toThrow(INTERNAL);
    }
    expect(() => softmaxCrossEntropyRows(logits, 2, 3, [0, -100], lossOut, denomOut, gradOut, { ignoreIndex: 2 })).toThrow(INTERNAL);
    expect(Array.from(lossOut)).toEqual([7, 7]);
    expect(Array.from(denomOut)).toEqual([7, 7]);
    expect(Array.from(gradOut)).toEqual([7, 7, 7, 7, 7, 7]);
    // Option and size errors.
    expect(() => softmaxCrossEntropyRows(logits, 2, 3, [0, 1], lossOut, denomOut, gradOut, { weight: [1, 2] })).toThrow(INTERNAL);
    expect(() => softmaxCrossEntropyRows(logits, 2, 3, [0, 1], lossOut, denomOut, gradOut, { labelSmoothing: 1.5 })).toThrow(INTERNAL);
    expect(() => softmaxCrossEntropyRows(logits, 3, 3, [0, 1, 2], lossOut, denomOut, gradOut)).toThrow(INTERNAL);
  });

  it('every target ignored: denominator 0, so the mean is NaN as in PyTorch', () => {
    const logits = Float64Array.from([1, 2, 3, 4, 5, 6]);
    const lossOut = new Float64Array(2);
    const denomOut = new Float64Array(2);
    const gradOut = new Float64Array(6).fill(9);
    expect(softmaxCrossEntropyRows(logits, 2, 3, [-100, -100], lossOut, denomOut, gradOut)).toBe(0);
    expect(sum(denomOut)).toBe(0);
    expect(sum(lossOut) / sum(denomOut)).toBeNaN();
    expect(Array.from(gradOut)).toEqual([0, 0, 0, 0, 0, 0]);
    // The general form: mean is NaN, the gradient 0 (PyTorch skips ignored rows), sum is 0.
    const dInput = new Float64Array(6).fill(9);
    expect(crossEntropy(logits, [-100, -100], 2, 3, 1, {}, { dInput })).toBeNaN();
    expect(Array.from(dInput)).toEqual([0, 0, 0, 0, 0, 0]);
    expect(crossEntropy(logits, [-100, -100], 2, 3, 1, { reduction: 'sum' })).toBe(0);
    expect(crossEntropy(logits, [-100, -100], 2, 3, 1, { labelSmoothing: 0.1 })).toBeNaN();
  });
});

// ---------------------------------------------------------------------------------------------

describe('cross_entropy_tutorial.json', () => {
  interface TutorialCase {
    name: string;
    logits: number[][];
    target: number[];
    loss_float64: number;
    loss_float32: number;
    grad_logits_float64: number[][];
    grad_logits_float32: number[][];
    loss_closed_form: number;
  }
  const tutorial = loadRef<{ cases: TutorialCase[] }>('cross_entropy_tutorial.json');
  const figures: Record<string, string> = { one_row: '2.1438', two_rows: '2.3519' };

  for (const c of tutorial.cases) {
    for (const dtype of ['float64', 'float32'] as const) {
      it(`${c.name} in ${dtype}: loss ${figures[c.name]} and its gradient`, () => {
        const n = c.logits.length;
        const classes = c.logits[0].length;
        const input: FloatArray = dtype === 'float64' ? Float64Array.from(c.logits.flat()) : Float32Array.from(c.logits.flat());
        const dInput: FloatArray = dtype === 'float64' ? new Float64Array(n * classes) : new Float32Array(n * classes);
        const loss = crossEntropy(input, c.target, n, classes, 1, {}, { dInput });
        expect(loss.toFixed(4)).toBe(figures[c.name]);
        if (dtype === 'float64') {
          expectClose([loss], [c.loss_float64], 1e-12, 0, 'loss');
          expectClose([loss], [c.loss_closed_form], 1e-12, 0, 'closed form');
          expectClose(dInput, c.grad_logits_float64.flat(), 1e-12, 1e-15, 'grad');
        } else {
          expectClose([Math.fround(loss)], [c.loss_float32], 1e-6, 0, 'loss');
          expectClose(dInput, c.grad_logits_float32.flat(), 1e-5, 1e-7, 'grad');
        }
      });
    }
  }
});

// ---------------------------------------------------------------------------------------------

describe('softmax_regression.json: 1001 full-batch SGD updates', () => {
  interface Run {
    cost_at_epoch: Record<string, number>;
    final_W: number[][];
    final_b: number[];
    cost_after_final_step: number;
    argmax_predictions_after: number[];
  }
  const reg = loadRef<{ x_train: number[][]; y_train: number[]; runs: Record<string, Run> }>('softmax_regression.json');
  const N = reg.x_train.length; // 8
  const F = reg.x_train[0].length; // 4
  const C = 3;

  /**
   * One run. W is (F, C), b one scalar broadcast over the classes, z = x . W + b (N, C).
   * float32 rounds every multiply and add to float32, as PyTorch's float32 tensors do.
   */
  function train(variant: 'cross_entropy' | 'double_softmax', f32: boolean) {
    const r = f32 ? Math.fround : (v: number) => v;
    const make = (len: number): FloatArray => (f32 ? new Float32Array(len) : new Float64Array(len));
    const x = reg.x_train.flat();
    const W = make(F * C);
    const b = make(1);
    const z = make(N * C);
    const h = make(N * C);
    const dh = make(N * C);
    const dz = make(N * C);
    const costs: Record<string, number> = {};
    // cost and dz = d cost / dz at the current parameters.
    const cost = (): number => {
      for (let s = 0; s < N; s++) {
        for (let c = 0; c < C; c++) {
          let acc = 0;
          for (let k = 0; k < F; k++) acc = r(acc + r(x[s * F + k] * W[k * C + c]));
          z[s * C + c] = r(acc + b[0]);
        }
      }
      if (variant === 'cross_entropy') return crossEntropy(z, reg.y_train, N, C, 1, {}, { dInput: dz });
      // h = softmax(z); cost = mean_s(-log softmax(h)[y_s]) = cross_entropy(h, y).
      softmax(z, h, N, C);
      const v = crossEntropy(h, reg.y_train, N, C, 1, {}, { dInput: dh });
      softmaxBackward(dh, h, dz, N, C);
      return v;
    };
    for (let epoch = 0; epoch <= 1000; epoch++) {
      const v = cost();
      if (epoch % 100 === 0) costs[String(epoch)] = f32 ? Math.fround(v) : v;
      const lr = 0.1;
      for (let k = 0; k < F; k++) {
        for (let c = 0; c < C; c++) {
          let g = 0;
          for (let s = 0; s < N; s++) g = r(g + r(x[s * F + k] * dz[s * C + c]));
          W[k * C + c] = r(W[k * C + c] - r(lr * g));
        }
      }
      let gb = 0;
      for (let i = 0; i < N * C; i++) gb = r(gb + dz[i]);
      b[0] = r(b[0] - r(lr * gb));
    }
    const after = cost();
    const predictions = Array.from({ length: N }, (_, s) => {
      const row = Array.from(z.subarray(s * C, s * C + C));
      return row.indexOf(Math.max(...row));
    });
    return { costs, W: Array.from(W), b: b[0], after, predictions };
  }

  for (const variant of ['cross_entropy', 'double_softmax'] as const) {
    for (const dtype of ['float64', 'float32'] as const) {
      it(`${variant} ${dtype}`, () => {
        const run = reg.runs[`${variant}_${dtype}`];
        const f32 = dtype === 'float32';
        const got = train(variant, f32);
        const rtol = f32 ? 1e-5 : 1e-12;
        expect(Object.keys(got.costs)).toEqual(Object.keys(run.cost_at_epoch));
        for (const [epoch, v] of Object.entries(run.cost_at_epoch)) expectClose([got.costs[epoch]], [v], rtol, 0, `cost at epoch ${epoch}`);
        expectClose([got.after], [run.cost_after_final_step], rtol, 0, 'cost after the final step');
        expectClose(got.W, run.final_W.flat(), f32 ? 1e-5 : 1e-10, f32 ? 1e-5 : 1e-12, 'final W');
        // The bias gradient is 0 in exact arithmetic: final_b is rounding noise, compared absolutely.
        expect(Math.abs(got.b - run.final_b[0])).toBeLessThan(f32 ? 1e-6 : 1e-14);
        expect(got.predictions).toEqual(run.argmax_predictions_after);
      });
    }
  }

  it('the double softmax plateaus at the tutorial\'s ~0.739, the plain cross-entropy goes below 0.4', () => {
    expect(train('double_softmax', false).costs['1000'].toFixed(3)).toBe('0.739');
    expect(train('cross_entropy', false).costs['1000']).toBeLessThan(0.4);
  });
});

// ---------------------------------------------------------------------------------------------

/**
 * Central differences in float64: checks that grad[i] = d f / d x[i] for every i, with
 * step h = 1e-6 * max(1, |x_i|) and tolerance 1e-6 relative + 1e-8 absolute.
 */
function checkGradient(f: (x: Float64Array) => number, x0: ArrayLike<number>, grad: ArrayLike<number>, what: string): void {
  const x = Float64Array.from(x0);
  for (let i = 0; i < x.length; i++) {
    const h = 1e-6 * Math.max(1, Math.abs(x[i]));
    const v = x[i];
    x[i] = v + h;
    const up = f(x);
    x[i] = v - h;
    const down = f(x);
    x[i] = v;
    const fd = (up - down) / (2 * h);
    if (!(Math.abs(fd - grad[i]) <= 1e-6 * Math.abs(fd) + 1e-8)) expect.fail(`${what}: d/dx[${i}] analytic ${grad[i]}, finite difference ${fd}`);
  }
}

describe('finite-difference gradient checks (float64)', () => {
  const rnd = lcg(42);
  const N = 4;
  const C = 5;
  const K = 3; // inner (K-dim) size
  const logits = Float64Array.from({ length: N * C * K }, () => 3 * rnd());
  const probs = (() => {
    // rows of (N, C, K) probabilities over C
    const q = Float64Array.from({ length: N * C * K }, () => rnd() + 1.5);
    for (let o = 0; o < N; o++) {
      for (let i = 0; i < K; i++) {
        let s = 0;
        for (let c = 0; c < C; c++) s += q[(o * C + c) * K + i];
        for (let c = 0; c < C; c++) q[(o * C + c) * K + i] /= s;
      }
    }
    return q;
  })();
  const weight = Float64Array.from({ length: C }, () => rnd() + 1.2);
  const targets = [0, 4, -100, 2, 1, 3, 2, 2, -100, 0, 1, 4]; // (N, K)
  const gradOut = Float64Array.from({ length: N * C * K }, () => rnd());
  const dot = (a: ArrayLike<number>, b: ArrayLike<number>): number => {
    let s = 0;
    for (let i = 0; i < a.length; i++) s += a[i] * b[i];
    return s;
  };

  it('logSoftmax and softmax, over C of (N, C, K)', () => {
    const y = new Float64Array(N * C * K);
    const dx = new Float64Array(N * C * K);
    const f = (fwd: typeof softmax) => (x: Float64Array): number => {
      fwd(x, y, N, C, K);
      return dot(y, gradOut);
    };
    logSoftmax(logits, y, N, C, K);
    logSoftmaxBackward(gradOut, y, dx, N, C, K);
    checkGradient(f(logSoftmax), logits, dx, 'logSoftmax');
    softmax(logits, y, N, C, K);
    softmaxBackward(gradOut, y, dx, N, C, K);
    checkGradient(f(softmax), logits, dx, 'softmax');
  });

  for (const reduction of ['mean', 'sum', 'none'] as const) {
    it(`crossEntropy (class indices, K-dim, weight + ignore_index + label smoothing), ${reduction}`, () => {
      const options = { weight, labelSmoothing: 0.15, reduction };
      const go = reduction === 'none' ? gradOut.subarray(0, N * K) : 0.7;
      const loss = new Float64Array(N * K);
      const f = (x: Float64Array): number => {
        const v = crossEntropy(x, targets, N, C, K, options, { loss });
        return reduction === 'none' ? dot(loss, go as Float64Array) : v * (go as number);
      };
      const dInput = new Float64Array(N * C * K);
      crossEntropy(logits, targets, N, C, K, options, { loss, dInput, gradOutput: go });
      checkGradient(f, logits, dInput, 'crossEntropy');
    });

    it(`crossEntropyProbs (weight + label smoothing), input and target, ${reduction}`, () => {
      const options = { weight, labelSmoothing: 0.1, reduction };
      const go = reduction === 'none' ? gradOut.subarray(0, N * K) : 1.3;
      const loss = new Float64Array(N * K);
      const value = (x: Float64Array, q: Float64Array): number => {
        const v = crossEntropyProbs(x, q, N, C, K, options, { loss });
        return reduction === 'none' ? dot(loss, go as Float64Array) : v * (go as number);
      };
      const dInput = new Float64Array(N * C * K);
      const dTarget = new Float64Array(N * C * K);
      crossEntropyProbs(logits, probs, N, C, K, options, { loss, dInput, dTarget, gradOutput: go });
      checkGradient((x) => value(x, probs), logits, dInput, 'crossEntropyProbs d input');
      checkGradient((q) => value(logits, q), probs, dTarget, 'crossEntropyProbs d target');
    });

    it(`nllLoss (weight + ignore_index), ${reduction}`, () => {
      const options = { weight, ignoreIndex: 2, reduction };
      const t2 = targets.map((t) => (t === -100 ? 3 : t)); // ignores the targets equal to 2
      const go = reduction === 'none' ? gradOut.subarray(0, N * K) : 0.9;
      const loss = new Float64Array(N * K);
      const f = (x: Float64Array): number => {
        const v = nllLoss(x, t2, N, C, K, options, { loss });
        return reduction === 'none' ? dot(loss, go as Float64Array) : v * (go as number);
      };
      const dInput = new Float64Array(N * C * K);
      nllLoss(logits, t2, N, C, K, options, { loss, dInput, gradOutput: go });
      checkGradient(f, logits, dInput, 'nllLoss');
    });

    it(`binaryCrossEntropyWithLogits (weight + pos_weight, soft targets), input and target, ${reduction}`, () => {
      const rows = N * K;
      const x0 = logits.map((v) => v * 2);
      const y0 = probs.map((v) => v * 2.5);
      const w = Float64Array.from({ length: rows * C }, () => rnd() + 1);
      for (const weightArg of [w, weight, null]) {
        for (const posWeight of [weight, null]) {
          const options = { weight: weightArg, posWeight, reduction };
          const go = reduction === 'none' ? gradOut : 0.8;
          const loss = new Float64Array(rows * C);
          const value = (x: Float64Array, y: Float64Array): number => {
            const v = binaryCrossEntropyWithLogits(x, y, rows, C, options, { loss });
            return reduction === 'none' ? dot(loss, go as Float64Array) : v * (go as number);
          };
          const dInput = new Float64Array(rows * C);
          const dTarget = new Float64Array(rows * C);
          binaryCrossEntropyWithLogits(x0, y0, rows, C, options, { loss, dInput, dTarget, gradOutput: go });
          checkGradient((x) => value(x, y0), x0, dInput, 'bce d input');
          checkGradient((y) => value(x0, y), y0, dTarget, 'bce d target');
        }
      }
    });

    it(`multilabelSoftMarginLoss (weight), ${reduction}`, () => {
      const rows = N * K;
      const y0 = probs.map((v) => (v > 0.2 ? 1 : 0));
      for (const w of [weight, null]) {
        const options = { weight: w, reduction };
        const go = reduction === 'none' ? gradOut.subarray(0, rows) : 1.1;
        const loss = new Float64Array(rows);
        const f = (x: Float64Array): number => {
          const v = multilabelSoftMarginLoss(x, y0, rows, C, options, { loss });
          return reduction === 'none' ? dot(loss, go as Float64Array) : v * (go as number);
        };
        const dInput = new Float64Array(rows * C);
        multilabelSoftMarginLoss(logits, y0, rows, C, options, { loss, dInput, gradOutput: go });
        checkGradient(f, logits, dInput, 'multilabelSoftMarginLoss');
      }
    });
  }

  it('softmaxCrossEntropyRows: gradOut is d lossOut[s] / d logits row s', () => {
    const n = 6;
    const x0 = logits.subarray(0, n * C);
    const t = [3, 0, -100, 4, 1, 1];
    const options = { weight, labelSmoothing: 0.2 };
    const lossOut = new Float64Array(n);
    const denomOut = new Float64Array(n);
    const gradOut = new Float64Array(n * C);
    softmaxCrossEntropyRows(x0, n, C, t, lossOut, denomOut, gradOut, options);
    const probe = new Float64Array(n);
    checkGradient((x) => {
      softmaxCrossEntropyRows(x, n, C, t, probe, denomOut, null, options);
      return sum(probe);
    }, x0, gradOut, 'softmaxCrossEntropyRows');
  });
});

// ---------------------------------------------------------------------------------------------

describe('stability and argument checks', () => {
  it('logits of +-1e4 give finite losses and gradients, float32 and float64', () => {
    for (const input of [Float64Array.from([1e4, -1e4, 0, -1e4, -1e4, -1e4]), Float32Array.from([1e4, -1e4, 0, -1e4, -1e4, -1e4])]) {
      const dInput = new Float64Array(6);
      const v = crossEntropy(input, [1, 2], 2, 3, 1, { reduction: 'sum' }, { dInput });
      // Row 0: -log_softmax at -1e4 is 2e4 exactly in float64; row 1: three equal logits, log 3.
      expect(v).toBe(2e4 + crossEntropy(Float64Array.from([0, 0, 0]), [0], 1, 3));
      expect(Array.from(dInput).every(Number.isFinite)).toBe(true);
    }
  });

  it('rejects bad shapes, options and gradOutput', () => {
    const x = new Float64Array(6);
    expect(() => crossEntropy(x, [0, 1], 2, 3, 1, { reduction: 'avg' as never })).toThrow(TypeError);
    expect(() => crossEntropy(x, [0, 1], 2, 3, 1, { reduction: 'none' })).toThrow(TypeError);
    expect(() => crossEntropy(x, [0, 1], 2, 3, 1, { reduction: 'none' }, { loss: new Float64Array(2), dInput: new Float64Array(6), gradOutput: 1 })).toThrow(TypeError);
    expect(() => crossEntropy(x, [0, 1], 2, 3, 1, {}, { dInput: new Float64Array(6), gradOutput: [1, 1] })).toThrow(TypeError);
    expect(() => crossEntropy(x, [0, 3], 2, 3)).toThrow(INTERNAL);
    expect(() => crossEntropy(x, [0, 1], 2, 4)).toThrow(INTERNAL);
    expect(() => crossEntropy(x, [0, 1], 2, 3, 1, { ignoreIndex: 0.5 })).toThrow(INTERNAL);
    expect(() => crossEntropy(x, [0, 1], 2, 3, 1, { labelSmoothing: -0.1 })).toThrow(INTERNAL);
    expect(() => crossEntropy(x, [0, 1], -1, 3)).toThrow(INTERNAL);
    expect(() => nllLoss(x, [0, 1], 2, 3, 1, { weight: [1] })).toThrow(INTERNAL);
    expect(() => binaryCrossEntropyWithLogits(x, x, 2, 3, { weight: [1, 2] })).toThrow(INTERNAL);
    expect(() => binaryCrossEntropyWithLogits(x, x, 2, 3, { posWeight: [1, 2] })).toThrow(INTERNAL);
    expect(() => multilabelSoftMarginLoss(x, x, 2, 3, { weight: [1] })).toThrow(INTERNAL);
    expect(() => softmax(x, new Float64Array(5), 2, 3)).toThrow(INTERNAL);
  });
});
