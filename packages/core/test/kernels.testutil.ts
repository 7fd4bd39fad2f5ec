// Helpers shared by the kernel tests, kernels.test.ts, kernels.threads.test.ts and
// kernels.offload.test.ts (not a test file itself): random float32 inputs that stress sums,
// bit-for-bit comparison, guarded outputs, the three kernels run on the oracle and on a backend
// under test, compared bit for bit, and the weight gradient computed in row blocks.
import { expect } from 'vitest';
import { createOracleBackend } from '../src/kernels/oracle.js';
import type { AsyncKernels, Backend, Kernels } from '../src/kernels/types.js';

export const f = Math.fround;

/** Deterministic generator (mulberry32). */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Values that stress float32 summation: uniform, small integers (exact products, cancellations to
 * zero, ties), signed powers of two (ties), +0 and -0, subnormals, large values.
 */
export function interesting(rand: () => number): number {
  const u = rand();
  const sign = rand() < 0.5 ? -1 : 1;
  if (u < 0.4) return f(rand() * 2 - 1);
  if (u < 0.6) return Math.floor(rand() * 9) - 4;
  if (u < 0.72) return sign * 2 ** (Math.floor(rand() * 40) - 20);
  if (u < 0.8) return sign * 0; // +0 or -0
  if (u < 0.86) return sign * Math.floor(1 + rand() * 1000) * 2 ** -149; // subnormal
  if (u < 0.92) return sign * f(2 ** (16 + rand() * 8));
  return f((rand() * 2 - 1) * 1e-3);
}

export function fill(a: Float32Array, rand: () => number): Float32Array {
  for (let i = 0; i < a.length; i++) a[i] = interesting(rand);
  return a;
}

function bits(a: Float32Array): Uint32Array {
  return new Uint32Array(a.buffer, a.byteOffset, a.length);
}

/** Index of the first element whose bits differ, or -1. */
function firstDiff(a: Float32Array, b: Float32Array): number {
  const ua = bits(a);
  const ub = bits(b);
  if (ua.length !== ub.length) return 0;
  for (let i = 0; i < ua.length; i++) if (ua[i] !== ub[i]) return i;
  return -1;
}

export function expectSameBits(actual: Float32Array, expected: Float32Array, what: string): void {
  const i = firstDiff(actual, expected);
  if (i >= 0) {
    throw new Error(`${what}: element ${i} differs: got ${actual[i]} (0x${bits(actual)[i]?.toString(16)}), want ${expected[i]} (0x${bits(expected)[i]?.toString(16)})`);
  }
}

/** Copy `src` into fresh storage of `backend`. */
export function put(backend: Backend, src: Float32Array): Float32Array {
  const a = backend.allocF32(src.length);
  a.set(src);
  return a;
}

/** The reference backend. */
export const oracle = createOracleBackend();

export interface Shape { n: number; inF: number; outF: number }

const GUARD = 8; // floats of sentinel on each side of an output (keeps 16-byte alignment)
const SENTINEL = 12345.5;

/** An output of `len` floats inside a larger allocation whose borders hold a sentinel; pre-filled with NaN. */
export function guardedOutput(backend: Backend, len: number): { out: Float32Array; untouched: () => boolean } {
  const buf = backend.allocF32(len + 2 * GUARD);
  buf.fill(SENTINEL);
  const out = buf.subarray(GUARD, GUARD + len);
  out.fill(Number.NaN); // outputs are overwritten, never read
  const untouched = (): boolean => buf.subarray(0, GUARD).every((v) => v === SENTINEL) && buf.subarray(GUARD + len).every((v) => v === SENTINEL);
  return { out, untouched };
}

/**
 * Run the three kernels on the oracle and on `wasm` (any backend) and compare every output bit for bit; check too that the
 * wasm kernels write nothing outside their outputs and leave their inputs alone.
 */
export function compareAll(wasm: Backend, shape: Shape, seed: number, chunks: readonly number[]): void {
  const { n, inF, outF } = shape;
  const rand = rng(seed);
  const x = fill(new Float32Array(n * inF), rand);
  const w = fill(new Float32Array(outF * inF), rand);
  const b = fill(new Float32Array(outF), rand);
  const dy = fill(new Float32Array(n * outF), rand);
  const h = fill(new Float32Array(n * inF), rand);
  if (h.length > 2) h[2] = Number.NaN; // a NaN activation masks to +0 in both
  const X = put(wasm, x);
  const W = put(wasm, w);
  const B = put(wasm, b);
  const DY = put(wasm, dy);
  const H = put(wasm, h);
  const tag = `n=${n} in=${inF} out=${outF}`;

  for (const relu of [false, true]) {
    const y = new Float32Array(n * outF);
    const Y = guardedOutput(wasm, n * outF);
    oracle.linearForward(x, w, b, y, n, inF, outF, relu);
    wasm.linearForward(X, W, B, Y.out, n, inF, outF, relu);
    expectSameBits(Y.out, y, `forward ${tag} relu=${relu}`);
    expect(Y.untouched(), `forward ${tag} wrote outside y`).toBe(true);
  }
  for (const masked of [false, true]) {
    const dx = new Float32Array(n * inF);
    const DX = guardedOutput(wasm, n * inF);
    oracle.linearBackwardInput(dy, w, dx, n, inF, outF, masked ? h : null);
    wasm.linearBackwardInput(DY, W, DX.out, n, inF, outF, masked ? H : null);
    expectSameBits(DX.out, dx, `backward-input ${tag} mask=${masked}`);
    expect(DX.untouched(), `backward-input ${tag} wrote outside dx`).toBe(true);
  }
  for (const chunk of chunks) {
    const dw = new Float32Array(outF * inF);
    const db = new Float32Array(outF);
    const DW = guardedOutput(wasm, outF * inF);
    const DB = guardedOutput(wasm, outF);
    oracle.linearBackwardWeight(dy, x, dw, db, n, inF, outF, chunk);
    wasm.linearBackwardWeight(DY, X, DW.out, DB.out, n, inF, outF, chunk);
    expectSameBits(DW.out, dw, `weight gradient ${tag} chunk=${chunk}`);
    expectSameBits(DB.out, db, `bias gradient ${tag} chunk=${chunk}`);
    expect(DW.untouched() && DB.untouched(), `weight gradient ${tag} wrote outside dw, db`).toBe(true);
  }
  for (const [name, copy, original] of [['x', X, x], ['w', W, w], ['b', B, b], ['dy', DY, dy], ['h', H, h]] as const) {
    expectSameBits(copy, original, `input ${name} ${tag}`);
  }
}

/**
 * Random row blocks [oBegin, oEnd) that cover [0, outF): lengths of 1, 2 and up to outF / 3 rows,
 * so blocks start and end on odd and even rows; then one empty block, all in a shuffled order.
 */
export function rowBlocks(outF: number, rand: () => number): [number, number][] {
  const blocks: [number, number][] = [];
  for (let r = 0; r < outF;) {
    const u = rand();
    const len = u < 0.25 ? 1 : u < 0.4 ? 2 : 1 + Math.floor(rand() * Math.max(1, outF / 3));
    blocks.push([r, Math.min(outF, r + len)]);
    r += len;
  }
  const e = Math.floor(rand() * (outF + 1));
  blocks.push([e, e]);
  for (let i = blocks.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [blocks[i], blocks[j]] = [blocks[j], blocks[i]];
  }
  return blocks;
}

/** One weight-gradient call, blocking or async. */
export type WeightGradCall = Kernels['linearBackwardWeight'] | AsyncKernels['linearBackwardWeight'];

/**
 * The weight gradient in row blocks (rowBlocks, one `call` each on `backend`'s storage; by default
 * its blocking kernel) against one oracle call over the whole layer, bit for bit: after each block
 * its rows of dw and db hold the final bits and every row not computed yet is untouched (NaN);
 * nothing is written outside dw and db, and the inputs are left alone.
 */
export async function compareRowBlocks(backend: Backend, shape: Shape, seed: number, chunk: number, call: WeightGradCall = backend.linearBackwardWeight.bind(backend)): Promise<void> {
  const { n, inF, outF } = shape;
  const rand = rng(seed);
  const x = fill(new Float32Array(n * inF), rand);
  const dy = fill(new Float32Array(n * outF), rand);
  const dw = new Float32Array(outF * inF);
  const db = new Float32Array(outF);
  oracle.linearBackwardWeight(dy, x, dw, db, n, inF, outF, chunk);
  const X = put(backend, x);
  const DY = put(backend, dy);
  const DW = guardedOutput(backend, outF * inF);
  const DB = guardedOutput(backend, outF);
  const done = new Uint8Array(outF);
  const blocks = rowBlocks(outF, rand);
  const tag = `${backend.name} n=${n} in=${inF} out=${outF} chunk=${chunk}`;
  for (const [b, e] of blocks) {
    await call(DY, X, DW.out, DB.out, n, inF, outF, chunk, b, e);
    done.fill(1, b, e);
    for (let o = 0; o < outF; o++) {
      const row = DW.out.subarray(o * inF, (o + 1) * inF);
      if (done[o]) {
        expectSameBits(row, dw.subarray(o * inF, (o + 1) * inF), `${tag} dw row ${o} after block [${b}, ${e})`);
        expectSameBits(DB.out.subarray(o, o + 1), db.subarray(o, o + 1), `${tag} db row ${o} after block [${b}, ${e})`);
      } else {
        expect(row.every(Number.isNaN) && Number.isNaN(DB.out[o]), `${tag}: block [${b}, ${e}) wrote row ${o}`).toBe(true);
      }
    }
  }
  expectSameBits(DW.out, dw, `${tag} dw`);
  expectSameBits(DB.out, db, `${tag} db`);
  expect(DW.untouched() && DB.untouched(), `${tag} wrote outside dw, db`).toBe(true);
  expectSameBits(X, x, `${tag} input x`);
  expectSameBits(DY, dy, `${tag} input dy`);
}

/** Shapes for compareRowBlocks: ragged (odd rows, inputs not multiples of 16), tiny, one row. */
export const ROW_BLOCK_SHAPES: readonly Shape[] = [
  { n: 5, inF: 17, outF: 15 },
  { n: 17, inF: 33, outF: 7 },
  { n: 3, inF: 1, outF: 5 },
  { n: 1, inF: 16, outF: 1 },
  { n: 60, inF: 90, outF: 64 },
  { n: 34, inF: 257, outF: 131 },
  { n: 0, inF: 5, outF: 9 },
];

/**
 * The row range is checked like the other arguments: integers with 0 <= oBegin <= oEnd <= outF,
 * else an E_INTERNAL error naming it (a rejection for an async call).
 */
export async function expectRowRangeChecked(backend: Backend, call: WeightGradCall = backend.linearBackwardWeight.bind(backend)): Promise<void> {
  const [n, inF, outF] = [2, 3, 4];
  const dy = backend.allocF32(n * outF);
  const x = backend.allocF32(n * inF);
  const dw = backend.allocF32(outF * inF);
  const db = backend.allocF32(outF);
  const bad: [number, number, RegExp][] = [
    [-1, 2, /oBegin must be an integer in 0\.\.outF \(4\), got -1/],
    [5, 5, /oBegin must be an integer in 0\.\.outF \(4\), got 5/],
    [1.5, 3, /oBegin must be an integer/],
    [Number.NaN, 3, /oBegin must be an integer/],
    [3, 2, /oEnd must be an integer in oBegin\.\.outF \(3\.\.4\), got 2/],
    [0, 5, /oEnd must be an integer in oBegin\.\.outF \(0\.\.4\), got 5/],
    [0, 2.5, /oEnd must be an integer/],
  ];
  for (const [b, e, msg] of bad) {
    let err: unknown = null;
    try {
      await call(dy, x, dw, db, n, inF, outF, 1, b, e);
    } catch (caught) {
      err = caught;
    }
    expect(err, `[${b}, ${e})`).toMatchObject({ code: 'E_INTERNAL' });
    expect((err as Error).message).toMatch(msg);
  }
  // The whole range by default, and the empty ranges at both ends
  for (const [b, e] of [[0, 0], [4, 4], [undefined, undefined], [2, undefined]] as const) await call(dy, x, dw, db, n, inF, outF, 1, b, e);
}
