import { describe, expect, it } from 'vitest';
import { xxh64, xxh64Hex } from '../src/hash.js';

// Reference values from libxxhash 0.8.1's XXH64 (via ctypes), seed 0 and seed 2654435761.
const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
const pattern = (n: number): Uint8Array => {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (i * 131 + (i >> 8) * 7) & 255;
  return b;
};

describe('xxh64', () => {
  it('matches libxxhash on short strings, both seeds', () => {
    const cases: [string, string, string][] = [
      ['', 'ef46db3751d8e999', 'ac75fda2929b17ef'],
      ['a', 'd24ec4f1a98c6e5b', '393da8b78992279b'],
      ['abc', '44bc2cf5ad770999', '1318df30094a85fd'],
      ['The quick brown fox jumps over the lazy dog', '0b242d361fda71bc', 'b31b9019ec176b0c'],
    ];
    for (const [s, h0, h1] of cases) {
      expect(xxh64Hex(enc(s))).toBe(h0);
      expect(xxh64Hex(enc(s), 2654435761)).toBe(h1);
    }
  });

  it('matches libxxhash around the stripe boundaries and on 1 MB', () => {
    const data = pattern(1000003);
    const want: [number, string][] = [
      [31, '1add2d10328c4897'], [32, '333288d992cf3b16'], [33, '379b60150f2cfc7f'], [63, '230f593878fe3703'],
      [64, '60a3644ca073e2cb'], [65, '8a8d527218171f2e'], [100, 'acd07a6400e07def'], [1000, '431c786fd2427bf1'],
      [1000003, '7f286ae35b946b45'],
    ];
    for (const [n, h] of want) expect(xxh64Hex(data.subarray(0, n))).toBe(h);
  });

  it('gives the same hash for aligned and unaligned views of the same bytes', () => {
    const data = pattern(4099);
    const shifted = new Uint8Array(4100);
    shifted.set(data, 1);
    expect(xxh64Hex(shifted.subarray(1))).toBe(xxh64Hex(data));
  });

  it('hashes a Float32Array as its little-endian bytes', () => {
    const f = new Float32Array([1, -2.5, 3e-8, Number.NaN]);
    expect(xxh64Hex(f)).toBe(xxh64Hex(new Uint8Array(f.buffer)));
    expect(xxh64(f)).toHaveLength(8);
  });
});
