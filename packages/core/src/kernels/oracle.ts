/**
 * The reference kernels ('ts'): plain TypeScript, `Math.fround` after every multiply and every add.
 *
 * This is the definition of the arithmetic of docs/design.md "Invariant 3: canonical reduction tree" written as directly as possible;
 * every other backend (wasm.ts) must give the same bits on every input. Each output element is one
 * sequential float32 sum over k in increasing order, from +0, then the bias; products and sums are
 * computed in float64 and rounded to float32 at once (exact for a product of two float32 values, and
 * double rounding is harmless for + and *). The weight gradient sums over samples with `treeSum32`,
 * the reference order of the chunk tree (tree.ts).
 *
 * Speed is not the point (about 1-2 GFLOP/s); clarity is. Storage is plain `Float32Array`s.
 * The `check*Args` functions validate the arguments of the three kernels for every backend.
 */
import { treeSum32 } from '../tree.js';
import type { Backend } from './types.js';
import { internalError } from '../errors.js';

const f = Math.fround;

/** Throw E_INTERNAL unless `v` is an integer in [min, 2^31). */
function checkInt(kernel: string, name: string, v: number, min: number): void {
  if (!Number.isInteger(v) || v < min || v >= 2 ** 31) throw internalError(`${kernel}: ${name} must be an integer >= ${min}, got ${v}`);
}

/** Throw E_INTERNAL unless `a` holds at least `need` floats. */
function checkLength(kernel: string, name: string, a: Float32Array, need: number): void {
  if (a.length < need) throw internalError(`${kernel}: ${name} has ${a.length} floats, needs ${need}`);
}

/** Throw when the first `needOut` floats of `out` and the first `needIn` of `a` share bytes. */
function checkApart(kernel: string, outName: string, out: Float32Array, needOut: number, name: string, a: Float32Array, needIn: number): void {
  if (out.buffer !== a.buffer || needOut === 0 || needIn === 0) return;
  if (out.byteOffset < a.byteOffset + 4 * needIn && a.byteOffset < out.byteOffset + 4 * needOut) {
    throw internalError(`${kernel}: output ${outName} overlaps ${name}`);
  }
}

/** Shapes shared by the three kernels: n >= 0, inF >= 1, outF >= 1 integers. */
function checkShape(kernel: string, n: number, inF: number, outF: number): void {
  checkInt(kernel, 'n', n, 0);
  checkInt(kernel, 'inF', inF, 1);
  checkInt(kernel, 'outF', outF, 1);
}

/*
 * Argument checks shared by every backend: integer shapes, every array long enough for its shape
 * (longer is fine: the kernels use the leading part), and no output overlapping an input or the
 * other output (the result would then depend on an implementation's order of reads and writes).
 * They throw E_INTERNAL and allocate nothing.
 */

/** Check the arguments of `linearForward`. */
export function checkForwardArgs(
  x: Float32Array, w: Float32Array, b: Float32Array, y: Float32Array, n: number, inF: number, outF: number,
): void {
  const k = 'linearForward';
  checkShape(k, n, inF, outF);
  checkLength(k, 'x', x, n * inF);
  checkLength(k, 'w', w, outF * inF);
  checkLength(k, 'b', b, outF);
  checkLength(k, 'y', y, n * outF);
  checkApart(k, 'y', y, n * outF, 'x', x, n * inF);
  checkApart(k, 'y', y, n * outF, 'w', w, outF * inF);
  checkApart(k, 'y', y, n * outF, 'b', b, outF);
}

/** Check the arguments of `linearBackwardInput`. */
export function checkBackwardInputArgs(
  dy: Float32Array, w: Float32Array, dx: Float32Array, n: number, inF: number, outF: number, mask: Float32Array | null,
): void {
  const k = 'linearBackwardInput';
  checkShape(k, n, inF, outF);
  checkLength(k, 'dy', dy, n * outF);
  checkLength(k, 'w', w, outF * inF);
  checkLength(k, 'dx', dx, n * inF);
  checkApart(k, 'dx', dx, n * inF, 'dy', dy, n * outF);
  checkApart(k, 'dx', dx, n * inF, 'w', w, outF * inF);
  if (mask) {
    checkLength(k, 'mask', mask, n * inF);
    checkApart(k, 'dx', dx, n * inF, 'mask', mask, n * inF);
  }
}

/** Check the arguments of `linearBackwardWeight`, its row range [oBegin, oEnd) included. */
export function checkBackwardWeightArgs(
  dy: Float32Array, x: Float32Array, dw: Float32Array, db: Float32Array, n: number, inF: number, outF: number, chunk: number,
  oBegin = 0, oEnd = outF,
): void {
  const k = 'linearBackwardWeight';
  checkShape(k, n, inF, outF);
  checkInt(k, 'chunk', chunk, 1);
  if (!Number.isInteger(oBegin) || oBegin < 0 || oBegin > outF) throw internalError(`${k}: oBegin must be an integer in 0..outF (${outF}), got ${oBegin}`);
  if (!Number.isInteger(oEnd) || oEnd < oBegin || oEnd > outF) throw internalError(`${k}: oEnd must be an integer in oBegin..outF (${oBegin}..${outF}), got ${oEnd}`);
  checkLength(k, 'dy', dy, n * outF);
  checkLength(k, 'x', x, n * inF);
  checkLength(k, 'dw', dw, outF * inF);
  checkLength(k, 'db', db, outF);
  checkApart(k, 'dw', dw, outF * inF, 'dy', dy, n * outF);
  checkApart(k, 'dw', dw, outF * inF, 'x', x, n * inF);
  checkApart(k, 'db', db, outF, 'dy', dy, n * outF);
  checkApart(k, 'db', db, outF, 'x', x, n * inF);
  checkApart(k, 'dw', dw, outF * inF, 'db', db, outF);
}

/** y (N, OUT) = x (N, IN) . w^T + b, then ReLU (`z > 0 ? z : 0`) when relu. w is (OUT, IN). */
function linearForward(
  x: Float32Array, w: Float32Array, b: Float32Array, y: Float32Array,
  n: number, inF: number, outF: number, relu: boolean,
): void {
  checkForwardArgs(x, w, b, y, n, inF, outF);
  for (let s = 0; s < n; s++) {
    for (let o = 0; o < outF; o++) {
      let acc = 0;
      for (let k = 0; k < inF; k++) acc = f(acc + f(x[s * inF + k] * w[o * inF + k]));
      const z = f(acc + b[o]);
      y[s * outF + o] = relu ? (z > 0 ? z : 0) : z;
    }
  }
}

/**
 * dx (N, IN) = dy (N, OUT) . w (OUT, IN), the sum over o increasing; then dx = h > 0 ? dx : 0 when
 * `mask` (h, (N, IN)) is given. The row of dx is its own accumulator: dx[s, i] goes through
 * +0, + dy[s,0]*w[0,i], + dy[s,1]*w[1,i], ... in that order, rounded to float32 at every step.
 */
function linearBackwardInput(
  dy: Float32Array, w: Float32Array, dx: Float32Array,
  n: number, inF: number, outF: number, mask: Float32Array | null,
): void {
  checkBackwardInputArgs(dy, w, dx, n, inF, outF, mask);
  for (let s = 0; s < n; s++) {
    const row = s * inF;
    for (let i = 0; i < inF; i++) dx[row + i] = 0;
    for (let o = 0; o < outF; o++) {
      const g = dy[s * outF + o];
      for (let i = 0; i < inF; i++) dx[row + i] = f(dx[row + i] + f(g * w[o * inF + i]));
    }
    if (mask) for (let i = 0; i < inF; i++) dx[row + i] = mask[row + i] > 0 ? dx[row + i] : 0;
  }
}

/** The oracle backend: Float32Array storage and the kernels above. */
export function createOracleBackend(): Backend {
  let column = new Float32Array(0); // one column of products, reused across calls (grows only)

  /**
   * dw (OUT, IN) = treeSum32 over samples of dy[s, o] * x[s, i]; db (OUT) = treeSum32 of dy[s, o];
   * rows [oBegin, oEnd) only.
   */
  function linearBackwardWeight(
    dy: Float32Array, x: Float32Array, dw: Float32Array, db: Float32Array,
    n: number, inF: number, outF: number, chunk: number, oBegin = 0, oEnd = outF,
  ): void {
    checkBackwardWeightArgs(dy, x, dw, db, n, inF, outF, chunk, oBegin, oEnd);
    if (column.length < n) column = new Float32Array(n);
    for (let o = oBegin; o < oEnd; o++) {
      for (let i = 0; i < inF; i++) {
        for (let s = 0; s < n; s++) column[s] = f(dy[s * outF + o] * x[s * inF + i]);
        dw[o * inF + i] = treeSum32(column, n, chunk);
      }
      for (let s = 0; s < n; s++) column[s] = dy[s * outF + o];
      db[o] = treeSum32(column, n, chunk);
    }
  }

  return {
    name: 'ts',
    allocF32: (length: number) => new Float32Array(length),
    linearForward,
    linearBackwardInput,
    linearBackwardWeight,
  };
}
