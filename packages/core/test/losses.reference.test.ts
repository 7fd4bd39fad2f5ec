// Every case of test/fixtures/reference/functional_losses.json (PyTorch 1.13, float64), checked by name:
// the output and every gradient (vector-Jacobian product with the case's grad_output).
import { describe, expect, it } from 'vitest';
import {
  binaryCrossEntropyWithLogits, crossEntropy, crossEntropyProbs, logSoftmax, logSoftmaxBackward,
  multilabelSoftMarginLoss, nllLoss, softmax, softmaxBackward, type LossOutputs, type Reduction,
} from '../src/losses.js';
import { expectClose, flat, loadRef, type Nested } from './losses.testutil.js';

interface RefCase {
  name: string;
  fn: string;
  kwargs: Record<string, Nested | string | undefined>;
  inputs: Record<string, Nested>;
  output: Nested;
  grad_output: Nested;
  grads: Record<string, Nested>;
  note?: string;
}

const ref = loadRef<{ cases: RefCase[] }>('functional_losses.json');


interface Result {
  output: number[];
  grads: Record<string, ArrayLike<number>>;
}

/** Runs one reference case with gradients, with the input in the given precision. */
function runCase(c: RefCase): Result {
  const f32 = c.fn.includes('float32');
  const x = flat(c.inputs.input);
  const input = f32 ? Float32Array.from(x.data) : Float64Array.from(x.data);
  const reduction = (c.kwargs.reduction as Reduction | undefined) ?? 'mean';
  const go = flat(c.grad_output).data;
  const gradOutput = reduction === 'none' ? go : go[0];
  const dInput = new Float64Array(input.length);
  const grads: Record<string, ArrayLike<number>> = { input: dInput };
  const weight = c.kwargs.weight === undefined ? null : flat(c.kwargs.weight as Nested).data;
  const n = x.shape[0];
  const classes = x.shape[1];
  const inner = x.shape.slice(2).reduce((a, b) => a * b, 1);
  const fn = c.fn.split(' ')[0];

  if (fn === 'F.log_softmax' || fn === 'F.softmax') {
    const dim = c.kwargs.dim as number;
    // (N, C) over dim 1 is (outer N, C, inner 1); over dim 0 it is (outer 1, N, inner C).
    const [outer, cls, inn] = dim === 1 ? [n, classes, 1] : [1, n, classes];
    const y = new Float64Array(input.length);
    const dy = Float64Array.from(go);
    if (fn === 'F.log_softmax') {
      logSoftmax(input, y, outer, cls, inn);
      logSoftmaxBackward(dy, y, dInput, outer, cls, inn);
    } else {
      softmax(input, y, outer, cls, inn);
      softmaxBackward(dy, y, dInput, outer, cls, inn);
    }
    return { output: Array.from(y), grads };
  }

  const t = flat(c.inputs.target);
  const count = reduction === 'none' ? (fn === 'F.binary_cross_entropy_with_logits' ? input.length : n * inner) : 0;
  const lossOut = new Float64Array(count);
  const out: LossOutputs = { loss: reduction === 'none' ? lossOut : null, dInput, gradOutput };
  let value: number;
  if (fn === 'F.cross_entropy') {
    const options = {
      reduction, weight,
      ignoreIndex: c.kwargs.ignore_index as number | undefined,
      labelSmoothing: c.kwargs.label_smoothing as number | undefined,
    };
    const probs = t.shape.length === x.shape.length;
    if (probs) {
      const dTarget = new Float64Array(input.length);
      grads.target = dTarget;
      value = crossEntropyProbs(input, Float64Array.from(t.data), n, classes, inner, options, { ...out, dTarget });
    } else {
      value = crossEntropy(input, t.data, n, classes, inner, options, out);
    }
  } else if (fn === 'F.nll_loss') {
    value = nllLoss(input, t.data, n, classes, inner, { reduction, weight, ignoreIndex: c.kwargs.ignore_index as number | undefined }, out);
  } else if (fn === 'F.binary_cross_entropy_with_logits') {
    const dTarget = new Float64Array(input.length);
    grads.target = dTarget;
    const posWeight = c.kwargs.pos_weight === undefined ? null : flat(c.kwargs.pos_weight as Nested).data;
    value = binaryCrossEntropyWithLogits(input, Float64Array.from(t.data), n, classes * inner, { reduction, weight, posWeight }, { ...out, dTarget });
  } else if (fn === 'F.multilabel_soft_margin_loss') {
    value = multilabelSoftMarginLoss(input, Float64Array.from(t.data), n, classes, { reduction, weight }, out);
  } else {
    throw new Error(`reference case ${c.name}: unknown fn ${c.fn}`);
  }
  return { output: reduction === 'none' ? Array.from(lossOut) : [value], grads };
}

describe('functional_losses.json (PyTorch 1.13 reference)', () => {
  it('holds the 46 cases the README lists', () => {
    expect(ref.cases.length).toBe(46);
    expect(new Set(ref.cases.map((c) => c.name)).size).toBe(46);
  });

  for (const c of ref.cases) {
    it(`${c.name}: output and gradients`, () => {
      const f32 = c.fn.includes('float32');
      // float64 ports: 1e-12 relative; atol for values that are (near) zero. float32 cases were
      // computed by PyTorch in float32: 1e-5 relative / 1e-6 absolute (README).
      const [rtol, atol] = f32 ? [1e-5, 1e-6] : [1e-12, 1e-15];
      const r = runCase(c);
      expectClose(r.output, flat(c.output).data, rtol, atol, `${c.name} output`);
      const names = Object.keys(c.grads);
      expect(names.length).toBeGreaterThan(0);
      for (const g of names) {
        expect(r.grads[g], `${c.name}: gradient w.r.t. ${g} computed`).toBeDefined();
        expectClose(r.grads[g], flat(c.grads[g]).data, rtol, atol, `${c.name} grad ${g}`);
      }
    });
  }
});
