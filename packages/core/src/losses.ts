/**
 * Loss functions with PyTorch 1.13 semantics: value and gradient, no autograd.
 *
 * Everything is computed in float64 with the core's deterministic `exp`/`log` (mathdet.ts), never
 * `Math.exp`/`Math.log`, so every engine gives the same bits (docs/design.md "Invariant 3: canonical reduction tree"). Inputs may be
 * Float32Array or Float64Array; outputs are written into caller-provided arrays (overwritten, never
 * accumulated into) and take the precision of the array they are stored in (a Float32Array output
 * rounds each float64 result to float32 once). Scalar reductions are returned as plain numbers.
 * Softmax-based losses subtract the row maximum (log-sum-exp), so logits like 1e4 / -1e4 are fine.
 *
 * Layouts are flat row-major arrays with the shape in the comment. Class-dimension functions take
 * (outer, C, inner): element (o, c, i) sits at (o*C + c)*inner + i and the softmax runs over c.
 * An (N, C) matrix over dim 1 is (N, C, 1); over dim 0 it is (1, N, C); PyTorch's K-dim input
 * (N, C, d1, ..., dk) is (N, C, d1*...*dk) with target (N, d1*...*dk).
 *
 * The training engine uses the distributed "sum" form `softmaxCrossEntropyRows` (docs/design.md
 * "Invariant 1: loss semantics"): per-row losses, per-row mean-denominator contributions and per-row gradients without any
 * 1/N, so the coordinator divides once, by the global denominator. `crossEntropy` (class indices)
 * and `nllLoss` are built on the same row loop, so the formulas exist once.
 *
 * Gradients: for reduction 'mean' or 'sum' the upstream gradient `gradOutput` is a number (default
 * 1); for 'none' it is an array with one value per output element, and the gradient written is
 * d(sum(output * gradOutput)) / d(input), as a PyTorch vector-Jacobian product.
 */

import { exp, log, log1p } from './mathdet.js';
import { internalError } from './errors.js';

/** A dense float tensor. */
export type FloatArray = Float32Array | Float64Array;

/** PyTorch's `reduction`: 'none' (per element), 'mean' (PyTorch's denominator) or 'sum'. */
export type Reduction = 'none' | 'mean' | 'sum';

/** Options of cross-entropy with class-index targets. */
export interface CrossEntropyOptions {
  /** Class weights (C), default none (all 1). */
  weight?: ArrayLike<number> | null;
  /** Target value whose rows are skipped (loss 0, gradient 0, denominator 0); default -100. */
  ignoreIndex?: number;
  /** PyTorch's label_smoothing in [0, 1]; default 0. */
  labelSmoothing?: number;
}

/** Options of `crossEntropy` and `crossEntropyProbs` (ignoreIndex is unused for probabilities). */
export interface CrossEntropyLossOptions extends CrossEntropyOptions {
  /** Default 'mean'. */
  reduction?: Reduction;
}

/** Options of `nllLoss`. */
export interface NllLossOptions {
  weight?: ArrayLike<number> | null;
  ignoreIndex?: number;
  reduction?: Reduction;
}

/** Options of `binaryCrossEntropyWithLogits`. */
export interface BceWithLogitsOptions {
  /** Elementwise weight: n*classes values, or `classes` values broadcast over the rows. */
  weight?: ArrayLike<number> | null;
  /** PyTorch's pos_weight: `classes` values, broadcast over the last dimension. */
  posWeight?: ArrayLike<number> | null;
  reduction?: Reduction;
}

/** Options of `binaryCrossEntropy`. */
export interface BceOptions {
  /** Elementwise weight: n*classes values, or `classes` values broadcast over the rows. */
  weight?: ArrayLike<number> | null;
  reduction?: Reduction;
}

/** Options of `multilabelSoftMarginLoss`. */
export interface MultilabelSoftMarginOptions {
  /** Class weights (C), multiplying each class term before the mean over classes. */
  weight?: ArrayLike<number> | null;
  reduction?: Reduction;
}

/** Where a loss writes its optional outputs. Every array given is overwritten. */
export interface LossOutputs {
  /** Per-element losses, the output of reduction 'none' (required for 'none', optional otherwise). */
  loss?: FloatArray | null;
  /** Gradient w.r.t. the input, same layout as the input. */
  dInput?: FloatArray | null;
  /** Gradient w.r.t. the target (probability targets and BCE only), same layout as the target. */
  dTarget?: FloatArray | null;
  /** Upstream gradient: a number for 'mean'/'sum' (default 1), one value per element for 'none'. */
  gradOutput?: number | ArrayLike<number>;
}

const DEFAULT_IGNORE_INDEX = -100;

// ---------------------------------------------------------------------------------------------
// Validation (once per call, no allocation)

function checkCount(value: number, what: string, min: number): void {
  if (!Number.isInteger(value) || value < min) throw internalError(`${what} must be an integer >= ${min}, got ${value}`);
}

function checkLength(a: ArrayLike<number>, need: number, what: string): void {
  if (a.length < need) throw internalError(`${what} has ${a.length} elements, needs at least ${need}`);
}

function checkShape(n: number, classes: number, inner: number): void {
  checkCount(n, 'n (batch size)', 0);
  checkCount(classes, 'classes', 1);
  checkCount(inner, 'inner (product of the extra dimensions)', 1);
}

function reductionOf(r: Reduction | undefined): Reduction {
  if (r === undefined) return 'mean';
  if (r !== 'none' && r !== 'mean' && r !== 'sum') throw new TypeError(`reduction must be 'none', 'mean' or 'sum', got ${String(r)}`);
  return r;
}

function weightOf(weight: ArrayLike<number> | null | undefined, classes: number, what: string): ArrayLike<number> | null {
  if (weight === undefined || weight === null) return null;
  if (weight.length !== classes) throw internalError(`${what} has ${weight.length} elements, expected one per class (${classes})`);
  return weight;
}

function ignoreIndexOf(ignoreIndex: number | undefined): number {
  if (ignoreIndex === undefined) return DEFAULT_IGNORE_INDEX;
  if (!Number.isInteger(ignoreIndex)) throw internalError(`ignoreIndex must be an integer, got ${ignoreIndex}`);
  return ignoreIndex;
}

function smoothingOf(eps: number | undefined): number {
  if (eps === undefined) return 0;
  if (!(eps >= 0 && eps <= 1)) throw internalError(`labelSmoothing must be in [0, 1], got ${eps}`);
  return eps;
}

/** Throws unless every target is ignoreIndex or an integer class in [0, classes). */
function checkTargets(target: ArrayLike<number>, count: number, classes: number, ignoreIndex: number): void {
  for (let s = 0; s < count; s++) {
    const t = target[s];
    if (t === ignoreIndex) continue;
    if (!Number.isInteger(t) || t < 0 || t >= classes) {
      throw internalError(`target[${s}] = ${t} is not a class index in [0, ${classes}) nor ignoreIndex (${ignoreIndex})`);
    }
  }
}

/** The upstream gradient for `count` elements: a number for 'mean'/'sum', an array for 'none'. */
function checkGradOutput(g: number | ArrayLike<number> | undefined, reduction: Reduction, count: number): void {
  if (g === undefined) {
    if (reduction === 'none') throw new TypeError("reduction 'none' with a gradient needs gradOutput, one value per element");
    return;
  }
  if (reduction === 'none') {
    if (typeof g === 'number') throw new TypeError("reduction 'none' needs gradOutput as an array, one value per element");
    checkLength(g, count, 'gradOutput');
  } else if (typeof g !== 'number') {
    throw new TypeError(`reduction '${reduction}' needs gradOutput as a number`);
  }
}

function sumOf(a: ArrayLike<number> | null, count: number): number {
  if (a === null) return count;
  let s = 0;
  for (let c = 0; c < count; c++) s += a[c];
  return s;
}

// ---------------------------------------------------------------------------------------------
// Row primitives. A "row" is the `classes` values x[base + c*stride], c = 0..classes-1.

/** Maximum of a row. */
function rowMax(x: ArrayLike<number>, base: number, stride: number, classes: number): number {
  let m = x[base];
  for (let c = 1; c < classes; c++) {
    const v = x[base + c * stride];
    if (v > m) m = v;
  }
  return m;
}

/** log(sum_c exp(x_c - max)): log_softmax(x)_c = (x_c - max) - this, in PyTorch's order. */
function rowLogSumExp(x: ArrayLike<number>, base: number, stride: number, classes: number, max: number): number {
  let sum = 0;
  for (let c = 0; c < classes; c++) sum += exp(x[base + c * stride] - max);
  return log(sum);
}

/**
 * Cross-entropy of one row of logits with class index t (not ignored), PyTorch's per-element loss:
 *   loss = (1 - eps) * w[t] * (-logp[t]) + eps/C * sum_c w[c] * (-logp[c])
 * (w = 1 when unweighted). When dx is given, writes scale * d loss / d x_c at the row's positions:
 *   (1 - eps) * w[t] * (p_c - [c == t]) + eps/C * (p_c * sum(w) - w[c]).
 */
function ceRow(
  x: FloatArray, base: number, stride: number, classes: number, t: number,
  weight: ArrayLike<number> | null, weightSum: number, eps: number,
  dx: FloatArray | null, scale: number,
): number {
  const max = rowMax(x, base, stride, classes);
  const lse = rowLogSumExp(x, base, stride, classes, max);
  const wt = weight === null ? 1 : weight[t];
  let loss = wt * -((x[base + t * stride] - max) - lse);
  if (eps > 0) {
    let smooth = 0;
    for (let c = 0; c < classes; c++) {
      const logp = (x[base + c * stride] - max) - lse;
      smooth += weight === null ? logp : logp * weight[c];
    }
    loss = (1 - eps) * loss + -smooth * (eps / classes);
  }
  if (dx !== null) {
    const a = (1 - eps) * wt * scale;
    const b = (eps / classes) * scale;
    for (let c = 0; c < classes; c++) {
      const i = base + c * stride;
      const p = exp((x[i] - max) - lse);
      let g = a * (c === t ? p - 1 : p);
      if (eps > 0) g += b * (p * weightSum - (weight === null ? 1 : weight[c]));
      dx[i] = g;
    }
  }
  return loss;
}

/**
 * The input gradient of an ignored row of logits, as PyTorch computes it: cross_entropy is
 * log_softmax then nll_loss, whose gradient on an ignored row is dy = 0, and log_softmax's backward
 * gives dx_c = 0 - exp(logp_c) * 0. That is +0 while the row's log-softmax is finite or -inf (all
 * logits finite, or some -inf among finite ones), and NaN where it is NaN (a NaN or +inf logit,
 * or every logit -inf). The finite case, the only one training meets, skips the exp.
 */
function ignoredLogitsRow(x: FloatArray, base: number, stride: number, classes: number, dx: FloatArray): void {
  let finite = true;
  for (let c = 0; c < classes; c++) if (!Number.isFinite(x[base + c * stride])) finite = false;
  if (finite) {
    for (let c = 0; c < classes; c++) dx[base + c * stride] = 0;
    return;
  }
  const max = rowMax(x, base, stride, classes);
  const lse = rowLogSumExp(x, base, stride, classes, max);
  for (let c = 0; c < classes; c++) {
    const i = base + c * stride;
    dx[i] = 0 - exp((x[i] - max) - lse) * 0;
  }
}

/**
 * NLL of one row of log-probabilities with class index t (not ignored): loss = -w[t] * x[t].
 * When dx is given, writes the row's gradient times scale: -w[t] * scale at t, 0 elsewhere.
 */
function nllRow(
  x: FloatArray, base: number, stride: number, classes: number, t: number,
  weight: ArrayLike<number> | null, dx: FloatArray | null, scale: number,
): number {
  const wt = weight === null ? 1 : weight[t];
  if (dx !== null) {
    for (let c = 0; c < classes; c++) dx[base + c * stride] = 0;
    dx[base + t * stride] = -wt * scale;
  }
  return -wt * x[base + t * stride];
}

/**
 * Class-index loss over x (N, C, inner) with target (N, inner): the one loop behind
 * `softmaxCrossEntropyRows`, `crossEntropy` (nll false: x are logits) and `nllLoss` (nll true: x
 * are log-probabilities). Targets must be validated. For element e = (o, i):
 * lossOut[e] = per-element loss (0 when ignored), denomOut[e] = w[t] (1 unweighted, 0 ignored),
 * dx row e = scale_e * d lossOut[e] / dx (when ignored: 0, or NaN for logits whose log-softmax is
 * NaN, as PyTorch; see ignoredLogitsRow) with scale_e = scales[e] when given,
 * else `scale`. Returns the sum of the per-element losses in element order.
 */
function classIndexRows(
  nll: boolean, x: FloatArray, n: number, classes: number, inner: number, target: ArrayLike<number>,
  weight: ArrayLike<number> | null, ignoreIndex: number, eps: number,
  lossOut: FloatArray | null, denomOut: FloatArray | null, dx: FloatArray | null,
  scale: number, scales: ArrayLike<number> | null,
): number {
  const weightSum = sumOf(weight, classes);
  let total = 0;
  for (let o = 0; o < n; o++) {
    for (let i = 0; i < inner; i++) {
      const e = o * inner + i;
      const base = o * classes * inner + i;
      const t = target[e];
      let loss = 0;
      if (t === ignoreIndex) {
        if (dx !== null) {
          if (nll) for (let c = 0; c < classes; c++) dx[base + c * inner] = 0;
          else ignoredLogitsRow(x, base, inner, classes, dx);
        }
        if (denomOut !== null) denomOut[e] = 0;
      } else {
        const g = scales === null ? scale : scales[e];
        loss = nll ? nllRow(x, base, inner, classes, t, weight, dx, g) : ceRow(x, base, inner, classes, t, weight, weightSum, eps, dx, g);
        if (denomOut !== null) denomOut[e] = weight === null ? 1 : weight[t];
      }
      if (lossOut !== null) lossOut[e] = loss;
      total += loss;
    }
  }
  return total;
}

/** PyTorch's mean denominator for class indices: sum of w[t] over non-ignored targets. */
function classIndexDenominator(target: ArrayLike<number>, count: number, weight: ArrayLike<number> | null, ignoreIndex: number): number {
  let d = 0;
  for (let e = 0; e < count; e++) {
    const t = target[e];
    if (t !== ignoreIndex) d += weight === null ? 1 : weight[t];
  }
  return d;
}

// ---------------------------------------------------------------------------------------------
// Distributed form (docs/design.md "Invariant 1: loss semantics")

/**
 * Fused softmax cross-entropy over n rows of `classes` logits, class-index targets, "sum" form.
 * logits is (n, classes), targets (n), lossOut (n), denomOut (n), gradOut (n, classes).
 * For each row s with target t = targets[s]:
 *   lossOut[s]  = the per-sample loss of PyTorch's reduction='none' (weighted, label-smoothed as PyTorch), 0 when t == ignoreIndex
 *   denomOut[s] = PyTorch's mean-denominator contribution of this row: weight[t] (1 when unweighted), 0 when ignored
 *   gradOut[s*classes + j] = d lossOut[s] / d logits[s*classes + j], rounded to gradOut's element type
 *                 (float32 for a Float32Array, e.g. (softmax - onehot) when unweighted, no 1/N); 0 when ignored
 *                 (NaN on an ignored row whose logits hold a NaN or +inf, or are all -inf: PyTorch's value)
 * so that mean loss = sum(lossOut)/sum(denomOut) and mean grad = gradOut/sum(denomOut).
 * Returns how many non-ignored rows have argmax(logits row) (first maximum) == t.
 * float64 arithmetic with mathdet exp/log, no allocation, deterministic: each row depends only on
 * its own logits and target, so any split of the rows gives the same bits. gradOut may be null.
 * Throws E_INTERNAL for a target outside [0, classes) that is not ignoreIndex (before writing anything).
 */
export function softmaxCrossEntropyRows(
  logits: Float32Array | Float64Array, n: number, classes: number, targets: ArrayLike<number>,
  lossOut: Float64Array, denomOut: Float64Array, gradOut: Float32Array | Float64Array | null,
  options?: CrossEntropyOptions,
): number {
  checkShape(n, classes, 1);
  checkLength(logits, n * classes, 'logits');
  checkLength(targets, n, 'targets');
  checkLength(lossOut, n, 'lossOut');
  checkLength(denomOut, n, 'denomOut');
  if (gradOut !== null) checkLength(gradOut, n * classes, 'gradOut');
  const weight = weightOf(options?.weight, classes, 'weight');
  const ignoreIndex = ignoreIndexOf(options?.ignoreIndex);
  const eps = smoothingOf(options?.labelSmoothing);
  checkTargets(targets, n, classes, ignoreIndex);
  classIndexRows(false, logits, n, classes, 1, targets, weight, ignoreIndex, eps, lossOut, denomOut, gradOut, 1, null);
  return countCorrect(logits, n, classes, targets, ignoreIndex);
}

/**
 * Number of rows of logits (n, classes) whose first maximum is at targets[s], rows with
 * targets[s] == ignoreIndex (default -100) not counted. Targets are not validated here.
 */
export function countCorrect(
  logits: ArrayLike<number>, n: number, classes: number, targets: ArrayLike<number>, ignoreIndex = DEFAULT_IGNORE_INDEX,
): number {
  let correct = 0;
  for (let s = 0; s < n; s++) {
    const t = targets[s];
    if (t === ignoreIndex) continue;
    const base = s * classes;
    let best = 0;
    let bestV = logits[base];
    for (let c = 1; c < classes; c++) {
      const v = logits[base + c];
      if (v > bestV) {
        bestV = v;
        best = c;
      }
    }
    if (best === t) correct++;
  }
  return correct;
}

// ---------------------------------------------------------------------------------------------
// Softmax and log-softmax over the class dimension of (outer, C, inner)

/** Forward of softmax (isLog false) or log_softmax (isLog true) over C of (outer, C, inner). */
function softmaxForward(x: FloatArray, y: FloatArray, outer: number, classes: number, inner: number, isLog: boolean): void {
  checkShape(outer, classes, inner);
  checkLength(x, outer * classes * inner, 'x');
  checkLength(y, outer * classes * inner, 'y');
  for (let o = 0; o < outer; o++) {
    for (let i = 0; i < inner; i++) {
      const base = o * classes * inner + i;
      const max = rowMax(x, base, inner, classes);
      if (isLog) {
        const lse = rowLogSumExp(x, base, inner, classes, max);
        for (let c = 0; c < classes; c++) y[base + c * inner] = (x[base + c * inner] - max) - lse;
        continue;
      }
      let sum = 0;
      for (let c = 0; c < classes; c++) {
        const v = exp(x[base + c * inner] - max);
        y[base + c * inner] = v;
        sum += v;
      }
      for (let c = 0; c < classes; c++) y[base + c * inner] /= sum;
    }
  }
}

/**
 * Backward of softmax (isLog false): dx = y * (dy - sum_c(dy * y)); of log_softmax (isLog true):
 * dx = dy - exp(y) * sum_c(dy). y is the forward output; all (outer, C, inner).
 */
function softmaxBackwardOf(dy: FloatArray, y: FloatArray, dx: FloatArray, outer: number, classes: number, inner: number, isLog: boolean): void {
  checkShape(outer, classes, inner);
  const len = outer * classes * inner;
  checkLength(dy, len, 'dy');
  checkLength(y, len, 'y');
  checkLength(dx, len, 'dx');
  for (let o = 0; o < outer; o++) {
    for (let i = 0; i < inner; i++) {
      const base = o * classes * inner + i;
      let sum = 0;
      for (let c = 0; c < classes; c++) sum += isLog ? dy[base + c * inner] : dy[base + c * inner] * y[base + c * inner];
      for (let c = 0; c < classes; c++) {
        const k = base + c * inner;
        dx[k] = isLog ? dy[k] - exp(y[k]) * sum : y[k] * (dy[k] - sum);
      }
    }
  }
}

/** y = log_softmax(x) over C: (x - max) - log(sum exp(x - max)); x, y are (outer, C, inner); y may be x. */
export function logSoftmax(x: FloatArray, y: FloatArray, outer: number, classes: number, inner = 1): void {
  softmaxForward(x, y, outer, classes, inner, true);
}

/** y = softmax(x) over C: exp(x - max) / sum; x, y are (outer, C, inner); y may be x. */
export function softmax(x: FloatArray, y: FloatArray, outer: number, classes: number, inner = 1): void {
  softmaxForward(x, y, outer, classes, inner, false);
}

/**
 * Backward of log_softmax: dx = dy - exp(y) * sum_c(dy), with y = logSoftmax(x) (the forward
 * output). dy, y, dx are (outer, C, inner); dx is overwritten and may be dy.
 */
export function logSoftmaxBackward(dy: FloatArray, y: FloatArray, dx: FloatArray, outer: number, classes: number, inner = 1): void {
  softmaxBackwardOf(dy, y, dx, outer, classes, inner, true);
}

/**
 * Backward of softmax: dx = y * (dy - sum_c(dy * y)), with y = softmax(x) (the forward output).
 * dy, y, dx are (outer, C, inner); dx is overwritten and may be dy.
 */
export function softmaxBackward(dy: FloatArray, y: FloatArray, dx: FloatArray, outer: number, classes: number, inner = 1): void {
  softmaxBackwardOf(dy, y, dx, outer, classes, inner, false);
}

// ---------------------------------------------------------------------------------------------
// Reductions shared by the losses below

/**
 * Common checks of a loss call with `count` output elements and inputs of `len` elements:
 * `out.loss` (required for 'none'), `out.dInput` and `out.dTarget` lengths, and gradOutput when a
 * gradient is asked for.
 */
function checkOutputs(out: LossOutputs, reduction: Reduction, count: number, len: number): void {
  if (out.loss !== undefined && out.loss !== null) checkLength(out.loss, count, 'out.loss');
  else if (reduction === 'none') throw new TypeError("reduction 'none' needs out.loss for the per-element losses");
  const dx = out.dInput ?? null;
  const dt = out.dTarget ?? null;
  if (dx !== null) checkLength(dx, len, 'out.dInput');
  if (dt !== null) checkLength(dt, len, 'out.dTarget');
  if (dx !== null || dt !== null) checkGradOutput(out.gradOutput, reduction, count);
}

/** The gradient scale of a scalar reduction: gradOutput / denominator ('mean') or gradOutput. */
function scalarScale(out: LossOutputs, reduction: Reduction, denominator: number): number {
  const g = typeof out.gradOutput === 'number' ? out.gradOutput : 1;
  return reduction === 'mean' ? g / denominator : g;
}

/** Per-element upstream gradients for 'none' (null when no gradient is asked for), else null. */
function elementScales(out: LossOutputs, reduction: Reduction): ArrayLike<number> | null {
  const g = out.gradOutput;
  return reduction === 'none' && g !== undefined && typeof g !== 'number' ? g : null;
}

/** The returned value: total / denominator for 'mean', the total for 'sum' and 'none'. */
function reduced(total: number, reduction: Reduction, denominator: number): number {
  return reduction === 'mean' ? total / denominator : total;
}

// ---------------------------------------------------------------------------------------------
// Cross-entropy

/** crossEntropy (nll false) and nllLoss (nll true): checks, then the shared class-index loop. */
function classIndexLoss(
  nll: boolean, input: FloatArray, target: ArrayLike<number>, n: number, classes: number, inner: number,
  options: CrossEntropyLossOptions, out: LossOutputs,
): number {
  checkShape(n, classes, inner);
  const count = n * inner;
  checkLength(input, count * classes, 'input');
  checkLength(target, count, 'target');
  const reduction = reductionOf(options.reduction);
  const weight = weightOf(options.weight, classes, 'weight');
  const ignoreIndex = ignoreIndexOf(options.ignoreIndex);
  const eps = smoothingOf(options.labelSmoothing);
  checkOutputs(out, reduction, count, count * classes);
  checkTargets(target, count, classes, ignoreIndex);
  const denominator = reduction === 'mean' ? classIndexDenominator(target, count, weight, ignoreIndex) : 1;
  const total = classIndexRows(
    nll, input, n, classes, inner, target, weight, ignoreIndex, eps, out.loss ?? null, null, out.dInput ?? null,
    scalarScale(out, reduction, denominator), elementScales(out, reduction),
  );
  return reduced(total, reduction, denominator);
}

/**
 * F.cross_entropy with class-index targets. input is (N, C, inner) logits, target (N, inner).
 * Per element: (1 - eps) * w[t] * (-logp[t]) + eps/C * sum_c w[c] * (-logp[c]), 0 when ignored.
 * 'mean' divides the sum by sum of w[t] over non-ignored targets (their count when unweighted; NaN
 * when every target is ignored, like PyTorch, with a zero gradient). Writes out.loss (N, inner)
 * and out.dInput (N, C, inner) when given. Returns the reduced loss ('none': the sum).
 */
export function crossEntropy(
  input: FloatArray, target: ArrayLike<number>, n: number, classes: number, inner = 1,
  options: CrossEntropyLossOptions = {}, out: LossOutputs = {},
): number {
  return classIndexLoss(false, input, target, n, classes, inner, options, out);
}

/**
 * F.cross_entropy with probability targets q (N, C, inner), input (N, C, inner) logits.
 * With label smoothing q' = q * (1 - eps) + eps/C; per element -sum_c w[c] * q'[c] * logp[c].
 * 'mean' divides by N*inner (the number of elements), weights or not. Writes out.loss (N, inner),
 * out.dInput and out.dTarget (both (N, C, inner)) when given. Returns the reduced loss.
 */
export function crossEntropyProbs(
  input: FloatArray, target: FloatArray, n: number, classes: number, inner = 1,
  options: CrossEntropyLossOptions = {}, out: LossOutputs = {},
): number {
  checkShape(n, classes, inner);
  const count = n * inner;
  const len = count * classes;
  checkLength(input, len, 'input');
  checkLength(target, len, 'target');
  const reduction = reductionOf(options.reduction);
  const weight = weightOf(options.weight, classes, 'weight');
  const eps = smoothingOf(options.labelSmoothing);
  checkOutputs(out, reduction, count, len);
  const dx = out.dInput ?? null;
  const dq = out.dTarget ?? null;
  const lossOut = out.loss ?? null;
  const scale = scalarScale(out, reduction, count);
  const scales = elementScales(out, reduction);
  let total = 0;
  for (let o = 0; o < n; o++) {
    for (let i = 0; i < inner; i++) {
      const e = o * inner + i;
      const base = o * classes * inner + i;
      const max = rowMax(input, base, inner, classes);
      const lse = rowLogSumExp(input, base, inner, classes, max);
      let acc = 0; // sum_c logp * q' * w
      let wq = 0; // sum_c w * q'
      for (let c = 0; c < classes; c++) {
        const k = base + c * inner;
        const q = eps > 0 ? target[k] * (1 - eps) + eps / classes : target[k];
        const w = weight === null ? 1 : weight[c];
        acc += ((input[k] - max) - lse) * q * w;
        wq += w * q;
      }
      const loss = -acc;
      if (lossOut !== null) lossOut[e] = loss;
      total += loss;
      const g = scales === null ? scale : scales[e];
      for (let c = 0; c < classes; c++) {
        const k = base + c * inner;
        const w = weight === null ? 1 : weight[c];
        const logp = (input[k] - max) - lse;
        if (dx !== null) {
          const q = eps > 0 ? target[k] * (1 - eps) + eps / classes : target[k];
          dx[k] = g * (exp(logp) * wq - w * q);
        }
        if (dq !== null) dq[k] = -g * (w * logp) * (1 - eps);
      }
    }
  }
  return reduced(total, reduction, count);
}

/**
 * F.nll_loss: input (N, C, inner) log-probabilities, target (N, inner) class indices.
 * Per element -w[t] * input[t], 0 when ignored; 'mean' divides by the sum of w[t] over
 * non-ignored targets. Writes out.loss and out.dInput when given. Returns the reduced loss.
 */
export function nllLoss(
  input: FloatArray, target: ArrayLike<number>, n: number, classes: number, inner = 1,
  options: NllLossOptions = {}, out: LossOutputs = {},
): number {
  return classIndexLoss(true, input, target, n, classes, inner, options, out);
}

// ---------------------------------------------------------------------------------------------
// Sigmoid-based losses

/** sigmoid(x) = 1 / (1 + exp(-x)) (PyTorch's CPU formula; 0 and 1 at the extremes, no NaN). */
function sigmoid(x: number): number {
  return 1 / (1 + exp(-x));
}

/** log(sigmoid(x)) = min(x, 0) - log1p(exp(-|x|)), stable for any x (PyTorch's log_sigmoid). */
function logSigmoid(x: number): number {
  return (x < 0 ? x : 0) - log1p(exp(x < 0 ? x : -x));
}

/**
 * The checks both binary cross-entropies start with: input and target of (N, C), the reduction,
 * and a weight that is elementwise (N*C) or per class (C).
 */
function binaryInputs(
  input: FloatArray, target: FloatArray, n: number, classes: number, options: { reduction?: Reduction; weight?: ArrayLike<number> | null },
): { count: number; reduction: Reduction; weight: ArrayLike<number> | null } {
  checkShape(n, classes, 1);
  const count = n * classes;
  checkLength(input, count, 'input');
  checkLength(target, count, 'target');
  const reduction = reductionOf(options.reduction);
  const weight = options.weight ?? null;
  if (weight !== null && weight.length !== count && weight.length !== classes) {
    throw internalError(`weight has ${weight.length} elements, expected ${count} (elementwise) or ${classes} (per class)`);
  }
  return { count, reduction, weight };
}

/**
 * F.binary_cross_entropy_with_logits over input (N, C) logits and target (N, C) probabilities
 * (any shape, flattened so that C is the last dimension). PyTorch's formula with m = max(-x, 0):
 *   l = (1 - y) * x + lw * (log(exp(-m) + exp(-x - m)) + m),  lw = (pos_weight[c] - 1) * y + 1
 * (lw = 1 without pos_weight), times the elementwise weight. 'mean' divides by N*C.
 * Gradients: dx = ((pw*y + 1 - y) * sigmoid(x) - pw*y) * w, dy = (logsigmoid(-x) - pw*logsigmoid(x)) * w
 * (pw = 1 without pos_weight: dx = sigmoid(x) - y, dy = -x), each times the upstream gradient.
 * Writes out.loss, out.dInput, out.dTarget (all (N, C)) when given. Returns the reduced loss.
 */
export function binaryCrossEntropyWithLogits(
  input: FloatArray, target: FloatArray, n: number, classes: number,
  options: BceWithLogitsOptions = {}, out: LossOutputs = {},
): number {
  const { count, reduction, weight } = binaryInputs(input, target, n, classes, options);
  const posWeight = weightOf(options.posWeight, classes, 'posWeight');
  checkOutputs(out, reduction, count, count);
  const dx = out.dInput ?? null;
  const dy = out.dTarget ?? null;
  const lossOut = out.loss ?? null;
  const scale = scalarScale(out, reduction, count);
  const scales = elementScales(out, reduction);
  let total = 0;
  for (let k = 0; k < count; k++) {
    const c = k % classes;
    const x = input[k];
    const y = target[k];
    const m = x < 0 ? -x : 0; // max(-x, 0)
    const w = weight === null ? 1 : weight[weight.length === count ? k : c];
    const softplus = log(exp(-m) + exp(-x - m)) + m; // log(1 + exp(-x))
    let loss = posWeight === null ? (1 - y) * x + softplus : (1 - y) * x + ((posWeight[c] - 1) * y + 1) * softplus;
    if (weight !== null) loss *= w;
    if (lossOut !== null) lossOut[k] = loss;
    total += loss;
    const g = (scales === null ? scale : scales[k]) * w;
    if (posWeight === null) {
      if (dx !== null) dx[k] = (sigmoid(x) - y) * g;
      if (dy !== null) dy[k] = -x * g;
    } else {
      const py = posWeight[c] * y;
      if (dx !== null) dx[k] = ((py + 1 - y) * sigmoid(x) - py) * g;
      if (dy !== null) dy[k] = (logSigmoid(-x) - logSigmoid(x) * posWeight[c]) * g;
    }
  }
  return reduced(total, reduction, count);
}

/** PyTorch's floor of each log in binary_cross_entropy. */
const BCE_LOG_FLOOR = -100;
/** PyTorch's floor of (1 - x) * x in binary_cross_entropy's gradient: 1e-12 as a float32 constant (ATen's EPSILON), 9.99999996e-13. */
const BCE_EPSILON = Math.fround(1e-12);

/**
 * F.binary_cross_entropy (nn.BCELoss) over input (N, C) probabilities and target (N, C) in [0, 1]
 * (any shape, flattened so that C is the last dimension). PyTorch's formula, each log clamped:
 *   l = ((y - 1) * max(log1p(-x), -100) - y * max(log(x), -100)) * w
 * so inputs of exactly 0 or 1 give finite losses. 'mean' divides by N*C. Gradient (PyTorch's,
 * which ignores the clamp): dx = (x - y) / max((1 - x) * x, eps) * w, times the upstream
 * gradient, with eps = float32(1e-12) as in ATen. No target gradient (out.dTarget throws). Throws E_INTERNAL for an input or target
 * outside [0, 1] (PyTorch: "all elements of input should be between 0 and 1").
 * Writes out.loss and out.dInput (both (N, C)) when given. Returns the reduced loss.
 */
export function binaryCrossEntropy(
  input: FloatArray, target: FloatArray, n: number, classes: number,
  options: BceOptions = {}, out: LossOutputs = {},
): number {
  const { count, reduction, weight } = binaryInputs(input, target, n, classes, options);
  if (out.dTarget !== undefined && out.dTarget !== null) throw new TypeError('binaryCrossEntropy computes no target gradient (out.dTarget)');
  checkOutputs(out, reduction, count, count);
  for (let k = 0; k < count; k++) {
    if (!(input[k] >= 0 && input[k] <= 1)) throw internalError(`input[${k}] = ${input[k]} is not a probability in [0, 1]`);
    if (!(target[k] >= 0 && target[k] <= 1)) throw internalError(`target[${k}] = ${target[k]} is not in [0, 1]`);
  }
  const dx = out.dInput ?? null;
  const lossOut = out.loss ?? null;
  const scale = scalarScale(out, reduction, count);
  const scales = elementScales(out, reduction);
  let total = 0;
  for (let k = 0; k < count; k++) {
    const x = input[k];
    const y = target[k];
    const w = weight === null ? 1 : weight[weight.length === count ? k : k % classes];
    const log1mx = log1p(-x);
    const logx = log(x);
    let loss = (y - 1) * (log1mx > BCE_LOG_FLOOR ? log1mx : BCE_LOG_FLOOR) - y * (logx > BCE_LOG_FLOOR ? logx : BCE_LOG_FLOOR);
    if (weight !== null) loss *= w;
    if (lossOut !== null) lossOut[k] = loss;
    total += loss;
    if (dx !== null) {
      const v = (1 - x) * x;
      dx[k] = ((x - y) / (v > BCE_EPSILON ? v : BCE_EPSILON)) * w * (scales === null ? scale : scales[k]);
    }
  }
  return reduced(total, reduction, count);
}

/**
 * F.multilabel_soft_margin_loss: input (N, C) logits, target (N, C) in [0, 1].
 * Per sample: -(1/C) * sum_c w[c] * (y * logsigmoid(x) + (1 - y) * logsigmoid(-x)); 'mean'
 * divides by N. d/dx = w[c]/C * (sigmoid(x) - y) times the upstream gradient.
 * Writes out.loss (N) and out.dInput (N, C) when given. Returns the reduced loss.
 */
export function multilabelSoftMarginLoss(
  input: FloatArray, target: FloatArray, n: number, classes: number,
  options: MultilabelSoftMarginOptions = {}, out: LossOutputs = {},
): number {
  checkShape(n, classes, 1);
  checkLength(input, n * classes, 'input');
  checkLength(target, n * classes, 'target');
  const reduction = reductionOf(options.reduction);
  const weight = weightOf(options.weight, classes, 'weight');
  checkOutputs(out, reduction, n, n * classes);
  const dx = out.dInput ?? null;
  const lossOut = out.loss ?? null;
  const scale = scalarScale(out, reduction, n);
  const scales = elementScales(out, reduction);
  let total = 0;
  for (let s = 0; s < n; s++) {
    let sum = 0;
    const g = (scales === null ? scale : scales[s]) / classes;
    for (let c = 0; c < classes; c++) {
      const k = s * classes + c;
      const x = input[k];
      const y = target[k];
      const w = weight === null ? 1 : weight[c];
      sum += -(y * logSigmoid(x) + (1 - y) * logSigmoid(-x)) * w;
      if (dx !== null) dx[k] = (sigmoid(x) - y) * w * g;
    }
    const loss = sum / classes;
    if (lossOut !== null) lossOut[s] = loss;
    total += loss;
  }
  return reduced(total, reduction, n);
}
