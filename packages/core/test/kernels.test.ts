/**
 * Kernels: the oracle against the semantics written out independently (float64 math rounded with
 * Math.fround, the tree written as a recursion over treeMid), and the WebAssembly backend against
 * the oracle BIT FOR BIT (Uint32Array views) on many shapes, ragged edges, block boundaries, chunk
 * sizes, signed zeros, ties, subnormals; the weight gradient computed in row blocks against one
 * call over the whole layer; plus the wasm backend's memory and argument contract.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import type { Backend } from '../src/kernels/types.js';
import { MIN_SCRATCH_FLOATS, createWasmBackend, wasmSimdSupported } from '../src/kernels/wasm.js';
import { chunkCount, treeFold, treeMid, treeSum32 } from '../src/tree.js';
import {
  ROW_BLOCK_SHAPES, compareAll, compareRowBlocks, expectRowRangeChecked, expectSameBits, f, fill, interesting, oracle, put, rng, type Shape,
} from './kernels.testutil.js';
import { INTERNAL } from '../../../test/support/errors.js';

const TWO24 = 2 ** 24;

// ---------------------------------------------------------------------------------------------
// The oracle against the semantics written out independently.

/** The tree sum of tree.ts, written as its recursion over treeMid (not via treeSum32). */
function treeRecursive(v: ArrayLike<number>, n: number, chunk: number): number {
  if (n === 0) return 0;
  const leaf = (j: number): number => {
    let s = 0;
    for (let i = j * chunk; i < Math.min((j + 1) * chunk, n); i++) s = f(s + v[i]);
    return s;
  };
  const node = (lo: number, hi: number): number => {
    if (hi - lo === 1) return leaf(lo);
    const mid = treeMid(lo, hi);
    return f(node(lo, mid) + node(mid, hi));
  };
  return node(0, chunkCount(n, chunk));
}

describe('oracle', () => {
  it('forward equals the naive fround loop, then relu', () => {
    const rand = rng(1);
    const [n, inF, outF] = [5, 7, 6];
    const x = fill(new Float32Array(n * inF), rand);
    const w = fill(new Float32Array(outF * inF), rand);
    const b = fill(new Float32Array(outF), rand);
    for (const relu of [false, true]) {
      const y = new Float32Array(n * outF);
      oracle.linearForward(x, w, b, y, n, inF, outF, relu);
      const want = new Float32Array(n * outF);
      for (let s = 0; s < n; s++) {
        for (let o = 0; o < outF; o++) {
          let acc = 0;
          for (let k = 0; k < inF; k++) acc = f(acc + f(x[s * inF + k] * w[o * inF + k]));
          const z = f(acc + b[o]);
          want[s * outF + o] = relu && !(z > 0) ? 0 : z;
        }
      }
      expectSameBits(y, want, `relu=${relu}`);
    }
  });

  it('forward: k in increasing order from +0, bias after the sum, +0 not -0', () => {
    const y = new Float32Array(1);
    // ((0 + 2^24) + 1) + 1 = 2^24 in float32; any other order of the k-sum gives 2^24 + 2
    oracle.linearForward(new Float32Array([1, 1, 1]), new Float32Array([TWO24, 1, 1]), new Float32Array([0]), y, 1, 3, 1, false);
    expect(y[0]).toBe(TWO24);
    // (0 + 1 + 1) + 2^24 = 2^24 + 2; the bias first would give 2^24
    oracle.linearForward(new Float32Array([1, 1]), new Float32Array([1, 1]), new Float32Array([TWO24]), y, 1, 2, 1, false);
    expect(y[0]).toBe(TWO24 + 2);
    // the accumulator starts at +0: +0 + (-0 * 1) + (-0) = +0
    oracle.linearForward(new Float32Array([-0]), new Float32Array([1]), new Float32Array([-0]), y, 1, 1, 1, false);
    expect(Object.is(y[0], 0)).toBe(true);
    // relu of a negative value is +0
    oracle.linearForward(new Float32Array([1]), new Float32Array([-3]), new Float32Array([0]), y, 1, 1, 1, true);
    expect(Object.is(y[0], 0)).toBe(true);
  });

  it('backward-input equals the naive fround loop, mask selects (h > 0 ? g : 0)', () => {
    const rand = rng(2);
    const [n, inF, outF] = [4, 9, 5];
    const dy = fill(new Float32Array(n * outF), rand);
    const w = fill(new Float32Array(outF * inF), rand);
    const h = fill(new Float32Array(n * inF), rand);
    h[0] = Number.NaN;
    h[1] = -0;
    for (const mask of [null, h]) {
      const dx = new Float32Array(n * inF).fill(Number.NaN); // overwritten, not accumulated
      oracle.linearBackwardInput(dy, w, dx, n, inF, outF, mask);
      const want = new Float32Array(n * inF);
      for (let s = 0; s < n; s++) {
        for (let i = 0; i < inF; i++) {
          let acc = 0;
          for (let o = 0; o < outF; o++) acc = f(acc + f(dy[s * outF + o] * w[o * inF + i]));
          want[s * inF + i] = mask && !(mask[s * inF + i] > 0) ? 0 : acc;
        }
      }
      expectSameBits(dx, want, `mask=${mask !== null}`);
    }
    // a masked negative gradient is +0 (a multiply by 0 would give -0)
    const dx = new Float32Array(1);
    oracle.linearBackwardInput(new Float32Array([-3]), new Float32Array([1]), dx, 1, 1, 1, new Float32Array([0]));
    expect(Object.is(dx[0], 0)).toBe(true);
  });

  it('weight gradient follows the chunk tree (recursion over treeMid), db too', () => {
    const rand = rng(3);
    const [n, inF, outF] = [23, 4, 3];
    const dy = fill(new Float32Array(n * outF), rand);
    const x = fill(new Float32Array(n * inF), rand);
    for (const chunk of [1, 3, 4, 16, 23, 100]) {
      const dw = new Float32Array(outF * inF).fill(7);
      const db = new Float32Array(outF).fill(7);
      oracle.linearBackwardWeight(dy, x, dw, db, n, inF, outF, chunk);
      for (let o = 0; o < outF; o++) {
        for (let i = 0; i < inF; i++) {
          const prods = Array.from({ length: n }, (_, s) => f(dy[s * outF + o] * x[s * inF + i]));
          expect(Object.is(dw[o * inF + i], treeRecursive(prods, n, chunk))).toBe(true);
        }
        const col = Array.from({ length: n }, (_, s) => dy[s * outF + o]);
        expect(Object.is(db[o], treeRecursive(col, n, chunk))).toBe(true);
      }
    }
  });

  it('weight gradient: the tree order is not the sequential order', () => {
    // values 2^24, 1, 1, 1: sequential gives 2^24, the tree (2^24 + 1) + (1 + 1) gives 2^24 + 2
    const dy = new Float32Array([TWO24, 1, 1, 1]);
    const x = new Float32Array([1, 1, 1, 1]);
    const dw = new Float32Array(1);
    const db = new Float32Array(1);
    oracle.linearBackwardWeight(dy, x, dw, db, 4, 1, 1, 1);
    expect([dw[0], db[0]]).toEqual([TWO24 + 2, TWO24 + 2]);
    oracle.linearBackwardWeight(dy, x, dw, db, 4, 1, 1, 4); // one chunk: sequential
    expect([dw[0], db[0]]).toEqual([TWO24, TWO24]);
  });

  it('n = 0: forward and backward-input write nothing, the gradients are +0', () => {
    const dw = new Float32Array(6).fill(5);
    const db = new Float32Array(2).fill(5);
    oracle.linearBackwardWeight(new Float32Array(0), new Float32Array(0), dw, db, 0, 3, 2, 16);
    expect(Array.from(dw)).toEqual([0, 0, 0, 0, 0, 0]);
    expect(Array.from(db)).toEqual([0, 0]);
  });

  it('weight gradient in row blocks (odd and even bounds, 1-row and empty blocks) = one call, bit for bit', async () => {
    for (const [i, s] of ROW_BLOCK_SHAPES.entries()) {
      for (const chunk of [1, 3, 16]) await compareRowBlocks(oracle, s, 700 + 10 * i + chunk, chunk);
    }
  });

  it('weight gradient: the row range is checked', async () => {
    await expectRowRangeChecked(oracle);
  });

  it('rejects bad shapes, short arrays and outputs that overlap inputs', () => {
    const a = new Float32Array(16);
    expect(() => oracle.linearForward(a, a, a, a.subarray(2, 6), 2, 2, 2, false)).toThrow(/output y overlaps x/);
    expect(() => oracle.linearForward(new Float32Array(3), a, a, new Float32Array(4), 2, 2, 2, false)).toThrow(/x has 3 floats/);
    expect(() => oracle.linearForward(a, a, a, a.subarray(8), 1.5, 2, 2, false)).toThrow(/n must be an integer/);
    expect(() => oracle.linearBackwardWeight(a, a, new Float32Array(4), new Float32Array(2), 2, 2, 2, 0)).toThrow(/chunk/);
    const dwdb = new Float32Array(6);
    expect(() => oracle.linearBackwardWeight(a, a, dwdb.subarray(0, 4), dwdb.subarray(3), 2, 2, 2, 1)).toThrow(/overlaps db/);
  });
});

// ---------------------------------------------------------------------------------------------
// The stack order used by the WebAssembly weight gradient is exactly the tree.

/**
 * Combine chunk values left to right with a stack: pushing chunk c merges it with the ctz(c + 1)
 * newest entries (older + newer); the rest is folded right to left. (assembly/micro.ts)
 */
function stackFold<T>(count: number, leaf: (j: number) => T, combine: (l: T, r: T) => T): T {
  const stack: T[] = [];
  for (let c = 0; c < count; c++) {
    let acc = leaf(c);
    for (let m = Math.clz32(0) - Math.clz32((c + 1) & -(c + 1)) - 1; m > 0; m--) acc = combine(stack.pop() as T, acc);
    stack.push(acc);
  }
  let acc = stack[stack.length - 1];
  for (let d = stack.length - 2; d >= 0; d--) acc = combine(stack[d], acc);
  return acc;
}

describe('stack order = tree order', () => {
  it('builds the same expression as treeFold for 1..300 chunks', () => {
    for (let count = 1; count <= 300; count++) {
      const leaf = (j: number): string => `${j}`;
      const combine = (l: string, r: string): string => `(${l}+${r})`;
      expect(stackFold(count, leaf, combine)).toBe(treeFold(0, count, leaf, combine));
    }
  });

  it('gives treeSum32 bit for bit on float32 values', () => {
    const rand = rng(4);
    for (let count = 1; count <= 70; count++) {
      const v = Array.from({ length: count }, () => interesting(rand));
      expect(Object.is(stackFold(count, (j) => v[j], (l, r) => f(l + r)), treeSum32(v, count, 1))).toBe(true);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// WebAssembly against the oracle, bit for bit.

describe.runIf(wasmSimdSupported())('wasm backend = oracle, bit for bit', () => {
  let wasm: Backend;
  let small: Backend; // minimal scratch: every kernel runs in many blocks
  beforeAll(async () => {
    wasm = await createWasmBackend({ capacityFloats: 1 << 22 });
    small = await createWasmBackend({ capacityFloats: 1 << 21, scratchFloats: MIN_SCRATCH_FLOATS });
  });

  it('tiny and ragged shapes (not multiples of 2, 4, 8, 16), chunks 1, 3, 16 and > n', () => {
    const shapes: Shape[] = [];
    for (const n of [1, 2, 3, 5, 16, 17]) {
      for (const [inF, outF] of [[1, 1], [3, 2], [16, 16], [17, 15], [33, 7], [5, 33]]) shapes.push({ n, inF, outF });
    }
    shapes.forEach((s, i) => compareAll(wasm, s, 100 + i, [1, 3, 16, 1000]));
  });

  it('shapes across the block sizes (128-row and 128-input blocks, odd sizes past 256)', () => {
    const shapes: Shape[] = [
      { n: 34, inF: 257, outF: 131 },
      { n: 19, inF: 129, outF: 258 },
      { n: 64, inF: 300, outF: 20 },
      { n: 7, inF: 520, outF: 263 },
    ];
    shapes.forEach((s, i) => compareAll(wasm, s, 200 + i, [1, 16]));
  });

  it('with minimal scratch (k blocks of 256, sample blocks, many weight-gradient blocks)', () => {
    const shapes: Shape[] = [
      { n: 37, inF: 300, outF: 45 },
      { n: 200, inF: 40, outF: 70 },
      { n: 3, inF: 530, outF: 17 },
      { n: 20, inF: 40, outF: 300 },
    ];
    shapes.forEach((s, i) => compareAll(small, s, 300 + i, [1, 5, 16]));
  });

  it('many random shapes', () => {
    const rand = rng(5);
    for (let t = 0; t < 24; t++) {
      const shape = { n: 1 + Math.floor(rand() * 40), inF: 1 + Math.floor(rand() * 70), outF: 1 + Math.floor(rand() * 70) };
      compareAll(wasm, shape, 400 + t, [1 + Math.floor(rand() * 20)]);
    }
  });

  it('random shapes across the block sizes, minimal and default scratch', () => {
    const rand = rng(6);
    for (let t = 0; t < 8; t++) {
      const shape = { n: 1 + Math.floor(rand() * 120), inF: 1 + Math.floor(rand() * 400), outF: 1 + Math.floor(rand() * 300) };
      compareAll(t % 2 ? small : wasm, shape, 600 + t, [1 + Math.floor(rand() * 20)]);
    }
  });

  it('n = 0', () => {
    compareAll(wasm, { n: 0, inF: 5, outF: 3 }, 500, [16]);
  });

  it('weight gradient in row blocks = one call, bit for bit (default and minimal scratch); the range is checked', async () => {
    for (const [i, s] of ROW_BLOCK_SHAPES.entries()) {
      for (const chunk of [1, 3, 16]) await compareRowBlocks(wasm, s, 800 + 10 * i + chunk, chunk);
    }
    // minimal scratch: 20 rows a packed block for n = 200, so blocks cross block boundaries at odd rows
    await compareRowBlocks(small, { n: 200, inF: 40, outF: 70 }, 890, 16);
    await compareRowBlocks(small, { n: 37, inF: 300, outF: 45 }, 891, 5);
    await expectRowRangeChecked(wasm);
  });

  it('the hand-made order cases', () => {
    const one = (v: number[]): Float32Array => put(wasm, new Float32Array(v));
    const y = wasm.allocF32(1);
    wasm.linearForward(one([1, 1, 1]), one([TWO24, 1, 1]), one([0]), y, 1, 3, 1, false);
    expect(y[0]).toBe(TWO24);
    wasm.linearForward(one([1, 1]), one([1, 1]), one([TWO24]), y, 1, 2, 1, false);
    expect(y[0]).toBe(TWO24 + 2);
    wasm.linearForward(one([-0]), one([1]), one([-0]), y, 1, 1, 1, false);
    expect(Object.is(y[0], 0)).toBe(true);
    const dw = wasm.allocF32(1);
    const db = wasm.allocF32(1);
    wasm.linearBackwardWeight(one([TWO24, 1, 1, 1]), one([1, 1, 1, 1]), dw, db, 4, 1, 1, 1);
    expect([dw[0], db[0]]).toEqual([TWO24 + 2, TWO24 + 2]);
  });
});

// ---------------------------------------------------------------------------------------------
// The wasm backend's memory and argument contract.

describe.runIf(wasmSimdSupported())('wasm backend storage', () => {
  it('allocF32: zeroed, 16-byte aligned views of one memory; capacity enforced', async () => {
    const wasm = await createWasmBackend({ capacityFloats: 64 });
    expect(wasm.name).toBe('wasm');
    const a = wasm.allocF32(5);
    const b = wasm.allocF32(3);
    const c = wasm.allocF32(0);
    expect(a.buffer).toBe(b.buffer);
    for (const v of [a, b, c]) expect(v.byteOffset % 16).toBe(0);
    expect(b.byteOffset - a.byteOffset).toBe(32); // 5 floats rounded up to 8
    expect(Array.from(a)).toEqual([0, 0, 0, 0, 0]);
    wasm.allocF32(52); // 8 + 4 + 0 + 52 = 64
    expect(() => wasm.allocF32(1)).toThrow(INTERNAL);
    expect(() => wasm.allocF32(-1)).toThrow(INTERNAL);
  });

  it('works in place on subarray views, rejects foreign arrays', async () => {
    const wasm = await createWasmBackend({ capacityFloats: 256 });
    const buf = wasm.allocF32(64);
    const x = buf.subarray(1, 7); // (2, 3), not 16-byte aligned
    x.set([1, 2, 3, 4, 5, 6]);
    const w = buf.subarray(10, 16); // (2, 3)
    w.set([1, 0, -1, 2, 2, 2]);
    const bias = buf.subarray(20, 22);
    const y = buf.subarray(30, 34);
    wasm.linearForward(x, w, bias, y, 2, 3, 2, false);
    expect(Array.from(y)).toEqual([-2, 12, -2, 30]);
    expect(() => wasm.linearForward(new Float32Array(6), w, bias, y, 2, 3, 2, false)).toThrow(/not storage of this wasm backend/);
    const other = await createWasmBackend({ capacityFloats: 16 });
    expect(() => wasm.linearForward(x, w, bias, other.allocF32(4), 2, 3, 2, false)).toThrow(TypeError);
    expect(() => wasm.linearForward(x, w, bias, buf.subarray(12, 16), 2, 3, 2, false)).toThrow(/overlaps w/);
  });

  it('weight gradient: a batch larger than the scratch allows is an E_INTERNAL error', async () => {
    const wasm = await createWasmBackend({ capacityFloats: 4096, scratchFloats: MIN_SCRATCH_FLOATS }); // 256 samples at most
    const dy = wasm.allocF32(257);
    const x = wasm.allocF32(257);
    expect(() => wasm.linearBackwardWeight(dy, x, wasm.allocF32(1), wasm.allocF32(1), 257, 1, 1, 16)).toThrow(/scratch/);
    expect(() => wasm.linearBackwardWeight(dy, x, wasm.allocF32(1), wasm.allocF32(1), 256, 1, 1, 16)).not.toThrow();
  });

  it('rejects bad options', async () => {
    await expect(createWasmBackend({ capacityFloats: -1 })).rejects.toThrow(INTERNAL);
    await expect(createWasmBackend({ capacityFloats: 8, scratchFloats: MIN_SCRATCH_FLOATS - 1 })).rejects.toThrow(INTERNAL);
  });
});
