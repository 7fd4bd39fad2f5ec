import { describe, expect, it } from 'vitest';
import { createGradPool, type GradPool } from '../src/grad-pool.js';
import { wasmSimdSupported } from '../src/kernels/wasm.js';
import { Rng } from '../src/rng.js';

/** Uniform floats in [0, 1) from the core's seeded generator. */
function rng(seed: number): () => number {
  const r = new Rng(seed);
  return () => r.nextFloat();
}

/** Finite float32 values over all magnitudes: signed zeros, subnormals, the largest ones (whose sums overflow). */
function randomGrad(n: number, rand: () => number): Float32Array {
  const special = [0, -0, 1e-45, -1e-45, 1.1754942e-38, -3e-39, 3.4e38, -3.4e38, 3.4028235e38, 1, -1];
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    a[i] = rand() < 0.05 ? special[Math.floor(rand() * special.length)] : (rand() * 2 - 1) * 2 ** Math.floor(rand() * 60 - 30);
  }
  return a;
}

/**
 * The bytes of `g` cut into pieces: odd lengths (1, 3, 5 bytes) and random ones, each piece in its
 * own buffer at a random byte offset (so most pieces are not 4-byte aligned and floats straddle them).
 */
function cutPieces(g: Float32Array, rand: () => number, maxPiece = 1 << 18): Uint8Array[] {
  const bytes = new Uint8Array(g.buffer, g.byteOffset, g.byteLength);
  const out: Uint8Array[] = [];
  for (let at = 0; at < bytes.byteLength;) {
    const r = rand();
    const want = r < 0.3 ? [1, 3, 5][Math.floor(rand() * 3)] : r < 0.4 ? 4 : 1 + Math.floor(rand() * maxPiece);
    const len = Math.min(want, bytes.byteLength - at);
    const off = Math.floor(rand() * 4);
    const buf = new Uint8Array(off + len + Math.floor(rand() * 3));
    buf.set(bytes.subarray(at, at + len), off);
    out.push(buf.subarray(off, off + len));
    at += len;
  }
  return out;
}

/** Same bits, element by element (so -0 and +0 differ, and so do two NaNs with other payloads). */
function sameBits(a: Float32Array, b: Float32Array): boolean {
  if (a.length !== b.length) return false;
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < a.length; i++) if (ua[i] !== ub[i]) return false;
  return true;
}

/** Float32 a + b element by element: the straightforward loop. */
function plus(a: Float32Array, b: Float32Array): Float32Array {
  return a.map((v, i) => Math.fround(v + b[i]));
}

const backends = wasmSimdSupported() ? (['wasm', 'ts'] as const) : (['ts'] as const);
const SIZES = [1, 2, 3, 5, 7, 15, 17, 33, 1001, 16_387, 40_003];

describe.each(backends)('GradPool (%s)', (backend) => {
  it('picks the backend asked for', () => {
    expect(createGradPool(3, { backend }).backend).toBe(backend);
  });

  it('copyChecked, addChecked and add are the straightforward float32 loops, bit for bit, for any pieces', () => {
    const rand = rng(1);
    for (const n of SIZES) {
      for (let trial = 0; trial < (n > 1000 ? 3 : 20); trial++) {
        const pool = createGradPool(n, { backend });
        const [a, b, c] = [randomGrad(n, rand), randomGrad(n, rand), randomGrad(n, rand)];
        const ia = pool.acquire();
        expect(pool.copyChecked(ia, cutPieces(a, rand, 4 * n))).toBe(true);
        expect(sameBits(pool.view(ia), a)).toBe(true);
        const ib = pool.acquire();
        expect(pool.addChecked(ib, ia, cutPieces(b, rand, 4 * n))).toBe(true);
        expect(sameBits(pool.view(ib), plus(a, b))).toBe(true);
        expect(sameBits(pool.view(ia), a)).toBe(true); // held is read only
        const ic = pool.acquire();
        expect(pool.copyChecked(ic, [new Uint8Array(c.buffer)])).toBe(true);
        pool.add(ic, ib);
        expect(sameBits(pool.view(ic), plus(c, plus(a, b)))).toBe(true);
        expect(sameBits(pool.view(ib), plus(a, b))).toBe(true);
      }
    }
  });

  it('sums that overflow give infinities, unchecked by add', () => {
    const pool = createGradPool(6, { backend });
    const big = new Float32Array([3.4e38, -3.4e38, 3.4e38, 1, -0, -0]);
    const l = pool.acquire();
    const r = pool.acquire();
    expect(pool.copyChecked(l, [new Uint8Array(big.buffer)])).toBe(true);
    expect(pool.addChecked(r, l, [new Uint8Array(big.slice().buffer)])).toBe(true); // incoming finite: the sum may overflow
    expect([...pool.view(r)]).toEqual([Infinity, -Infinity, Infinity, 2, -0, -0]);
    expect(Object.is(pool.view(r)[5], -0)).toBe(true);
    pool.add(r, l);
    expect([...pool.view(r)]).toEqual([Infinity, -Infinity, Infinity, 3, -0, -0]);
  });

  it('finds NaN and infinities anywhere (first, last, straddling two pieces) and leaves the held buffer intact', () => {
    const rand = rng(2);
    for (const n of SIZES) {
      const held = randomGrad(n, rand);
      for (const bad of [Number.NaN, Infinity, -Infinity]) {
        const spots = [...new Set([0, n - 1, Math.floor(n / 2), Math.floor(rand() * n)])];
        for (const at of spots) {
          const pool = createGradPool(n, { backend });
          const h = pool.acquire();
          expect(pool.copyChecked(h, [new Uint8Array(held.slice().buffer)])).toBe(true);
          const g = randomGrad(n, rand);
          g[at] = bad;
          const bytes = new Uint8Array(g.buffer);
          // The bad float straddles two pieces (cut 1..3 bytes into it), and in random pieces.
          const cut = 4 * at + 1 + Math.floor(rand() * 3);
          for (const pieces of [[bytes.subarray(0, cut), bytes.subarray(cut)], cutPieces(g, rand, 4 * n), [bytes]]) {
            const d = pool.acquire();
            expect(pool.copyChecked(d, pieces)).toBe(false);
            expect(pool.addChecked(d, h, pieces)).toBe(false);
            expect(sameBits(pool.view(h), held)).toBe(true);
            pool.release(d);
          }
          // The same pieces with the value made finite again pass.
          g[at] = 0.5;
          const d = pool.acquire();
          expect(pool.addChecked(d, h, [bytes.subarray(0, cut), bytes.subarray(cut)])).toBe(true);
          expect(sameBits(pool.view(d), plus(held, g))).toBe(true);
        }
      }
    }
  });

  it('growing keeps earlier buffers; released ids are reused first', () => {
    const n = 40_003; // 160 KB a buffer: the memory grows on most acquires
    const pool: GradPool = createGradPool(n, { backend });
    const want: Float32Array[] = [];
    const ids: number[] = [];
    for (let i = 0; i < 12; i++) {
      const id = pool.acquire();
      const g = new Float32Array(n).map((_, j) => i * 1e5 + j);
      expect(pool.copyChecked(id, [new Uint8Array(g.buffer)])).toBe(true);
      ids.push(id);
      want.push(g);
    }
    expect(ids).toEqual([...Array(12).keys()]);
    expect(pool.size).toBe(12);
    for (let i = 0; i < 12; i++) expect(sameBits(pool.view(ids[i]), want[i])).toBe(true);
    pool.release(3);
    pool.release(7);
    expect(pool.acquire()).toBe(7);
    expect(pool.acquire()).toBe(3);
    expect(pool.size).toBe(12);
    expect(pool.acquire()).toBe(12);
    expect(pool.size).toBe(13);
    for (const i of [0, 1, 2, 4, 5, 6, 8, 9, 10, 11]) expect(sameBits(pool.view(ids[i]), want[i])).toBe(true);
  });

  it('refuses misuse', () => {
    const pool = createGradPool(4, { backend });
    const a = pool.acquire();
    expect(() => pool.copyChecked(a, [new Uint8Array(15)])).toThrow(/15 bytes/);
    expect(() => pool.addChecked(a, a, [new Uint8Array(16)])).toThrow(/same buffer/);
    expect(() => pool.add(a, 1)).toThrow(/not an acquired buffer/);
    pool.release(a);
    expect(() => pool.release(a)).toThrow(/not an acquired buffer/);
    expect(() => pool.view(a)).toThrow(/not an acquired buffer/);
    expect(() => createGradPool(0, { backend })).toThrow(/positive integer/);
  });
});

describe.skipIf(!wasmSimdSupported())('GradPool: wasm = ts', () => {
  it('the same bits on the same random inputs, pieces and operations', () => {
    const rand = rng(3);
    for (const n of SIZES) {
      const pools = [createGradPool(n, { backend: 'wasm' }), createGradPool(n, { backend: 'ts' })];
      for (let trial = 0; trial < 5; trial++) {
        const a = randomGrad(n, rand);
        const b = randomGrad(n, rand);
        const c = randomGrad(n, rand);
        const pa = cutPieces(a, rand, 4 * n);
        const pb = cutPieces(b, rand, 4 * n);
        const pc = cutPieces(c, rand, 4 * n);
        const out = pools.map((pool) => {
          const ia = pool.acquire();
          const ib = pool.acquire();
          const ic = pool.acquire();
          expect(pool.copyChecked(ia, pa)).toBe(true);
          expect(pool.addChecked(ib, ia, pb)).toBe(true);
          expect(pool.copyChecked(ic, pc)).toBe(true);
          pool.add(ib, ic);
          const r = pool.view(ib).slice();
          for (const id of [ia, ib, ic]) pool.release(id);
          return r;
        });
        expect(sameBits(out[0], out[1])).toBe(true);
      }
    }
  });

  it('the comparison can fail: a different operand order of a non-associative sum is caught', () => {
    // (a + b) + c against a + (b + c): float32 addition is not associative, so some element differs.
    const rand = rng(4);
    const n = 1000;
    const [a, b, c] = [randomGrad(n, rand), randomGrad(n, rand), randomGrad(n, rand)];
    const pool = createGradPool(n, { backend: 'wasm' });
    const ia = pool.acquire();
    const ib = pool.acquire();
    expect(pool.copyChecked(ia, [new Uint8Array(a.buffer)])).toBe(true);
    expect(pool.addChecked(ib, ia, [new Uint8Array(b.buffer)])).toBe(true);
    const ic = pool.acquire();
    expect(pool.copyChecked(ic, [new Uint8Array(c.buffer)])).toBe(true);
    pool.add(ib, ic);
    expect(sameBits(pool.view(ib), plus(plus(a, b), c))).toBe(true);
    expect(sameBits(pool.view(ib), plus(a, plus(b, c)))).toBe(false);
    expect(sameBits(new Float32Array([0]), new Float32Array([-0]))).toBe(false);
  });
});
