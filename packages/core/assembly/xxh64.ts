/**
 * XXH64 (xxHash64, Yann Collet's reference algorithm) as its own small WebAssembly module: the
 * parameter checksum of the wire protocol (packages/core/src/hash.ts is the host and keeps the
 * plain TypeScript version as the oracle). Built by scripts/build-wasm.js, separately from the
 * kernel modules: this one owns (and exports) a fixed memory of HASH_PAGES pages and imports
 * nothing.
 *
 * Memory layout (fixed addresses, no allocator):
 *   [OUT, OUT + 8)          the digest, big-endian (canonical XXH64 byte order);
 *   [BUF, BUF + CHUNK)      the input chunk the host copies in before each call.
 *
 * Streaming protocol (the standard XXH64 state: four accumulators, total length, tail):
 *   init(seed)              reset the accumulators;
 *   stripes(len)            consume len bytes at BUF, len a multiple of 32 (no tail is left);
 *   finish(len, total)      consume the last len bytes at BUF (any length <= CHUNK: its whole
 *                           stripes, then the < 32-byte tail), given the input's total length;
 *                           writes the digest at OUT.
 * The host keeps every chunk but the last a multiple of 32 bytes, so the tail only ever sits at
 * the end of the last chunk. Inputs of fewer than 32 bytes in total use the seed + P5 start, as
 * the reference does.
 */

// Keep in sync with HASH_* in src/hash.ts.
const OUT: usize = 0;
const BUF: usize = 1024;
// const CHUNK = 262144; memory = 1024 + 262144 bytes -> 5 pages (build-wasm.js --initialMemory 5)

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

export function init(seed: u32): void {
  seed64 = <u64>seed;
  v1 = seed64 + P1 + P2;
  v2 = seed64 + P2;
  v3 = seed64;
  v4 = seed64 - P1;
}

export function stripes(len: i32): void {
  let a = v1, b = v2, c = v3, d = v4;
  let p = BUF;
  const end = BUF + <usize>len;
  while (p < end) {
    a = round(a, load<u64>(p));
    b = round(b, load<u64>(p, 8));
    c = round(c, load<u64>(p, 16));
    d = round(d, load<u64>(p, 24));
    p += 32;
  }
  v1 = a; v2 = b; v3 = c; v4 = d;
}

export function finish(len: i32, total: f64): void {
  const whole = len & ~31;
  stripes(whole);
  const n = <u64>total;
  let h: u64;
  if (n >= 32) {
    h = rotl<u64>(v1, 1) + rotl<u64>(v2, 7) + rotl<u64>(v3, 12) + rotl<u64>(v4, 18);
    h = mergeRound(h, v1);
    h = mergeRound(h, v2);
    h = mergeRound(h, v3);
    h = mergeRound(h, v4);
  } else {
    h = seed64 + P5;
  }
  h += n;
  let p = BUF + <usize>whole;
  const end = BUF + <usize>len;
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
  store<u64>(OUT, bswap<u64>(h));
}
