/**
 * XXH64 (xxHash64, Yann Collet's reference algorithm) over bytes in this module's memory: the
 * standard streaming state (four accumulators and the seed) and its two steps, for the two modules
 * that hash: the small hash module (xxh64.ts: the host copies the input into its own memory, chunk
 * by chunk) and the kernel module (index.ts `xxh64`: parameters hashed where they lie, in the
 * engine's memory). One copy of the algorithm; src/hash.ts keeps the TypeScript oracle.
 *
 *   xxhReset(seed)             reset the accumulators;
 *   xxhStripes(p, len)         consume len bytes at p, len a multiple of 32;
 *   xxhDigest(p, len, total)   consume the last len bytes at p (their whole stripes, then the
 *                              < 32-byte tail), given the input's total length; the digest as a
 *                              u64 (byte-swap it for the canonical big-endian byte order).
 * Inputs of fewer than 32 bytes in total use the seed + P5 start, as the reference does.
 */

const P1: u64 = 0x9e3779b185ebca87;
const P2: u64 = 0xc2b2ae3d27d4eb4f;
const P3: u64 = 0x165667b19e3779f9;
const P4: u64 = 0x85ebca77c2b2ae63;
const P5: u64 = 0x27d4eb2f165667c5;

let v1: u64 = 0;
let v2: u64 = 0;
let v3: u64 = 0;
let v4: u64 = 0;
let seed64: u64 = 0;

// @ts-ignore: decorator
@inline function round(acc: u64, input: u64): u64 {
  return rotl<u64>(acc + input * P2, 31) * P1;
}

// @ts-ignore: decorator
@inline function mergeRound(acc: u64, val: u64): u64 {
  return (acc ^ round(0, val)) * P1 + P4;
}

export function xxhReset(seed: u32): void {
  seed64 = <u64>seed;
  v1 = seed64 + P1 + P2;
  v2 = seed64 + P2;
  v3 = seed64;
  v4 = seed64 - P1;
}

export function xxhStripes(p: usize, len: usize): void {
  let a = v1, b = v2, c = v3, d = v4;
  const end = p + len;
  while (p < end) {
    a = round(a, load<u64>(p));
    b = round(b, load<u64>(p, 8));
    c = round(c, load<u64>(p, 16));
    d = round(d, load<u64>(p, 24));
    p += 32;
  }
  v1 = a; v2 = b; v3 = c; v4 = d;
}

export function xxhDigest(p: usize, len: usize, total: u64): u64 {
  const whole = len & ~(<usize>31);
  xxhStripes(p, whole);
  let h: u64;
  if (total >= 32) {
    h = rotl<u64>(v1, 1) + rotl<u64>(v2, 7) + rotl<u64>(v3, 12) + rotl<u64>(v4, 18);
    h = mergeRound(h, v1);
    h = mergeRound(h, v2);
    h = mergeRound(h, v3);
    h = mergeRound(h, v4);
  } else {
    h = seed64 + P5;
  }
  h += total;
  const end = p + len;
  p += whole;
  while (p + 8 <= end) {
    h ^= round(0, load<u64>(p));
    h = rotl<u64>(h, 27) * P1 + P4;
    p += 8;
  }
  if (p + 4 <= end) {
    h ^= <u64>load<u32>(p) * P1;
    h = rotl<u64>(h, 23) * P2 + P3;
    p += 4;
  }
  while (p < end) {
    h ^= <u64>load<u8>(p) * P5;
    h = rotl<u64>(h, 11) * P1;
    p++;
  }
  h ^= h >> 33;
  h *= P2;
  h ^= h >> 29;
  h *= P3;
  h ^= h >> 32;
  return h;
}
