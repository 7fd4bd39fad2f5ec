import { describe, expect, it, vi } from 'vitest';
import { HASH_CHUNK, bytesToHex, xxh64, xxh64Hex, xxh64Reference, xxh64UsesWasm } from '../src/hash.js';
import { INTERNAL } from '../../../test/support/errors.js';

// Reference values from libxxhash 0.8.1's XXH64 (via ctypes), seed 0 and seed 2654435761.
const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
const pattern = (n: number): Uint8Array => {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (i * 131 + (i >> 8) * 7) & 255;
  return b;
};
/** Deterministic pseudo-random bytes (LCG), so a failure reproduces. */
const randomBytes = (n: number, seed: number): Uint8Array => {
  const b = new Uint8Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    b[i] = s >>> 24;
  }
  return b;
};
const SEEDS = [0, 2654435761];

const IMPLS: [string, (d: Uint8Array | Float32Array, seed?: number) => Uint8Array][] = [
  ['xxh64 (WebAssembly)', xxh64],
  ['xxh64Reference (TypeScript)', xxh64Reference],
];

describe.each(IMPLS)('%s', (_name, hash) => {
  const hex = (d: Uint8Array | Float32Array, seed?: number): string => bytesToHex(hash(d, seed));

  it('matches libxxhash on short strings, both seeds', () => {
    const cases: [string, string, string][] = [
      ['', 'ef46db3751d8e999', 'ac75fda2929b17ef'],
      ['a', 'd24ec4f1a98c6e5b', '393da8b78992279b'],
      ['abc', '44bc2cf5ad770999', '1318df30094a85fd'],
      ['The quick brown fox jumps over the lazy dog', '0b242d361fda71bc', 'b31b9019ec176b0c'],
    ];
    for (const [s, h0, h1] of cases) {
      expect(hex(enc(s))).toBe(h0);
      expect(hex(enc(s), 2654435761)).toBe(h1);
    }
  });

  it('matches libxxhash around the stripe boundaries and on 1 MB', () => {
    const data = pattern(1000003);
    const want: [number, string][] = [
      [31, '1add2d10328c4897'], [32, '333288d992cf3b16'], [33, '379b60150f2cfc7f'], [63, '230f593878fe3703'],
      [64, '60a3644ca073e2cb'], [65, '8a8d527218171f2e'], [100, 'acd07a6400e07def'], [1000, '431c786fd2427bf1'],
      [1000003, '7f286ae35b946b45'],
    ];
    for (const [n, h] of want) expect(hex(data.subarray(0, n))).toBe(h);
  });

  it('gives the same hash for aligned and unaligned views of the same bytes', () => {
    const data = pattern(4099);
    const shifted = new Uint8Array(4100);
    shifted.set(data, 1);
    expect(hex(shifted.subarray(1))).toBe(hex(data));
  });

  it('hashes a Float32Array as its little-endian bytes', () => {
    const f = new Float32Array([1, -2.5, 3e-8, Number.NaN]);
    expect(hex(f)).toBe(hex(new Uint8Array(f.buffer)));
    expect(hash(f)).toHaveLength(8);
  });

  it('rejects a seed that is not a uint32', () => {
    for (const s of [-1, 1.5, 2 ** 32, Number.NaN]) expect(() => hash(enc('a'), s)).toThrow(INTERNAL);
  });
});

describe('xxh64 (WebAssembly) against the TypeScript reference', () => {
  it('runs on WebAssembly here (not the fallback)', () => {
    expect(xxh64UsesWasm()).toBe(true);
  });

  it('agrees on every length 0..5000 and on random lengths, both seeds, odd-offset views', () => {
    const buf = randomBytes(5000 + 8, 12345);
    for (let n = 0; n <= 5000; n++) {
      const off = n % 8; // aligned and odd byte offsets
      const view = buf.subarray(off, off + n);
      const seed = SEEDS[n & 1];
      expect(xxh64Hex(view, seed), `n=${n} off=${off} seed=${seed}`).toBe(bytesToHex(xxh64Reference(view, seed)));
    }
    let s = 777;
    for (let i = 0; i < 200; i++) {
      s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
      const n = s % 5001, off = (s >>> 16) % 7;
      for (const seed of SEEDS) {
        const view = buf.subarray(off, off + n);
        expect(xxh64Hex(view, seed), `n=${n} off=${off} seed=${seed}`).toBe(bytesToHex(xxh64Reference(view, seed)));
      }
    }
  });

  it('agrees around the chunk boundaries (the streaming state), both seeds, odd offsets', () => {
    const max = 3 * HASH_CHUNK + 100;
    const buf = randomBytes(max + 3, 987);
    const lengths: number[] = [];
    for (const k of [1, 2, 3]) for (let d = -33; d <= 33; d += d > -3 && d < 3 ? 1 : 10) lengths.push(k * HASH_CHUNK + d);
    for (const n of lengths) {
      for (const seed of SEEDS) {
        for (const off of [0, 3]) {
          const view = buf.subarray(off, off + n);
          expect(xxh64Hex(view, seed), `n=${n} off=${off} seed=${seed}`).toBe(bytesToHex(xxh64Reference(view, seed)));
        }
      }
    }
  });

  it('agrees on Float32Array inputs and Float32Array views at an offset', () => {
    const f = new Float32Array(HASH_CHUNK / 4 * 2 + 1001);
    const b = randomBytes(f.byteLength, 42);
    new Uint8Array(f.buffer).set(b);
    for (const seed of SEEDS) {
      expect(xxh64Hex(f, seed)).toBe(bytesToHex(xxh64Reference(f, seed)));
      const view = f.subarray(3, 3 + HASH_CHUNK / 4 + 17);
      expect(xxh64Hex(view, seed)).toBe(bytesToHex(xxh64Reference(view, seed)));
      expect(xxh64Hex(view, seed)).toBe(xxh64Hex(new Uint8Array(view.buffer, view.byteOffset, view.byteLength), seed));
    }
  });

  it('does not depend on a previous call (state is reset per call)', () => {
    const a = randomBytes(HASH_CHUNK + 77, 5);
    const first = xxh64Hex(a, 1);
    xxh64(randomBytes(3 * HASH_CHUNK + 5, 6), 2);
    xxh64(new Uint8Array(0));
    expect(xxh64Hex(a, 1)).toBe(first);
  });
});

describe('xxh64 without WebAssembly', () => {
  it('falls back to the TypeScript reference', async () => {
    vi.resetModules();
    vi.stubGlobal('WebAssembly', undefined);
    try {
      const fresh = await import('../src/hash.js');
      expect(fresh.xxh64UsesWasm()).toBe(false);
      expect(fresh.xxh64Hex(enc('abc'))).toBe('44bc2cf5ad770999');
      const d = randomBytes(HASH_CHUNK + 3, 9);
      expect(fresh.xxh64Hex(d, 7)).toBe(bytesToHex(xxh64Reference(d, 7)));
    } finally {
      vi.unstubAllGlobals();
      vi.resetModules();
    }
  });
});
