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
 * the reference does. The algorithm itself is xxh64-core.ts (the kernel module hashes with it too).
 */
import { xxhDigest, xxhReset, xxhStripes } from './xxh64-core';

// Keep in sync with HASH_* in src/hash.ts.
const OUT: usize = 0;
const BUF: usize = 1024;
// const CHUNK = 262144; memory = 1024 + 262144 bytes -> 5 pages (build-wasm.js --initialMemory 5)

export function init(seed: u32): void {
  xxhReset(seed);
}

export function stripes(len: i32): void {
  xxhStripes(BUF, <usize>len);
}

export function finish(len: i32, total: f64): void {
  store<u64>(OUT, bswap<u64>(xxhDigest(BUF, <usize>len, <u64>total)));
}
