/**
 * xxHash64 (XXH64, the reference algorithm by Yann Collet): the parameter checksum of the wire
 * protocol (docs/design.md "Invariant 4: replicas agree", proto `Params.checksum`), hashed 42 MB a step on the coordinator
 * and on every worker.
 *
 * Two implementations with the same results:
 *   `xxh64`           our own small WebAssembly module (assembly/xxh64.ts, built by
 *                     scripts/build-wasm.js into src/hash-wasm-bytes.ts, ~1 KB, no imports, its own
 *                     5-page memory), instantiated synchronously on first use (fine in Node, pages
 *                     and workers: the module is tiny). The input is streamed through the module's
 *                     memory in HASH_CHUNK-byte copies (a multiple of 32, so the XXH64 state between
 *                     chunks is just the four accumulators; the tail is the end of the last chunk).
 *                     Native i64 multiply/rotate: several GB/s. Falls back to the reference when
 *                     WebAssembly is unavailable or the module fails to instantiate.
 *   `xxh64Reference`  plain TypeScript, from 32-bit integer arithmetic that every JavaScript
 *                     engine performs exactly (64-bit values are (hi, lo) pairs of uint32; the hot
 *                     loop keeps its four lanes in locals and allocates nothing). ~0.4 GB/s; the
 *                     oracle of the tests.
 * Why not a WASM package: no maintained xxHash WASM package is installed in this workspace.
 *
 * Output: 8 bytes, big-endian (the canonical XXH64 byte order, as `xxhsum` prints it), or hex.
 * Input: any bytes; a Float32Array is hashed as its little-endian bytes (the wire layout).
 * Checked against libxxhash's XXH64 (test/hash.test.ts). Assumes a little-endian platform for the
 * fast aligned path (every platform gradhub runs on); other inputs go through a DataView.
 */

import { HASH_WASM_BASE64 } from './hash-wasm-bytes.js';
import { internalError } from './errors.js';

// The five 64-bit primes, as (hi, lo) uint32 halves, and the 16-bit limbs of the lo halves.
const P1H = 0x9e3779b1, P1L = 0x85ebca87;
const P2H = 0xc2b2ae3d, P2L = 0x27d4eb4f;
const P3H = 0x165667b1, P3L = 0x9e3779f9;
const P4H = 0x85ebca77, P4L = 0xc2b2ae63;
const P5H = 0x27d4eb2f, P5L = 0x165667c5;

const TWO32 = 4294967296;

// Result registers of the 64-bit helpers (module-level so the helpers allocate nothing).
let rh = 0;
let rl = 0;

/** (rh, rl) = (ah, al) * (bh, bl) mod 2^64. */
function mul(ah: number, al: number, bh: number, bl: number): void {
  const a0 = al & 0xffff, a1 = al >>> 16;
  const b0 = bl & 0xffff, b1 = bl >>> 16;
  const mid = a0 * b1 + a1 * b0; // < 2^33, exact
  const t = a0 * b0 + (mid & 0xffff) * 65536; // < 2^33, exact
  const lo = t >>> 0;
  const carry = (t - lo) / TWO32;
  rh = (a1 * b1 + Math.floor(mid / 65536) + carry + Math.imul(ah, bl) + Math.imul(al, bh)) >>> 0;
  rl = lo;
}

/** (rh, rl) = (ah, al) + (bh, bl) mod 2^64. */
function add(ah: number, al: number, bh: number, bl: number): void {
  const s = al + bl;
  rl = s >>> 0;
  rh = (ah + bh + (s > 0xffffffff ? 1 : 0)) >>> 0;
}

/** (rh, rl) = rotl((h, l), r), 0 < r < 32. */
function rotl(h: number, l: number, r: number): void {
  rh = ((h << r) | (l >>> (32 - r))) >>> 0;
  rl = ((l << r) | (h >>> (32 - r))) >>> 0;
}

/** XXH64_round: acc = rotl(acc + input * P2, 31) * P1. Result in (rh, rl). */
function round(acch: number, accl: number, inh: number, inl: number): void {
  mul(inh, inl, P2H, P2L);
  add(acch, accl, rh, rl);
  rotl(rh, rl, 31);
  mul(rh, rl, P1H, P1L);
}

/** XXH64_mergeRound: acc = (acc ^ round(0, val)) * P1 + P4. Result in (rh, rl). */
function mergeRound(acch: number, accl: number, vh: number, vl: number): void {
  round(0, 0, vh, vl);
  const xh = (acch ^ rh) >>> 0, xl = (accl ^ rl) >>> 0;
  mul(xh, xl, P1H, P1L);
  add(rh, rl, P4H, P4L);
}

const P1L0 = P1L & 0xffff, P1L1 = P1L >>> 16;
const P2L0 = P2L & 0xffff, P2L1 = P2L >>> 16;

/**
 * XXH64_round over lane k of `stripes` 32-byte stripes of aligned little-endian words, state
 * (hi, lo) in st[2k], st[2k + 1]. The same arithmetic as `round`, inlined, all in locals.
 */
function laneRounds(words: Uint32Array, stripes: number, st: Uint32Array, k: number): void {
  let h = st[2 * k], l = st[2 * k + 1];
  const end = stripes * 8;
  for (let i = 2 * k; i < end; i += 8) {
    const il = words[i], ih = words[i + 1];
    // (th, tl) = input * P2
    let a0 = il & 0xffff, a1 = il >>> 16;
    let mid = a0 * P2L1 + a1 * P2L0;
    let t = a0 * P2L0 + (mid & 0xffff) * 65536;
    const tl = t >>> 0;
    const th = (a1 * P2L1 + Math.floor(mid / 65536) + (t - tl) / TWO32 + Math.imul(ih, P2L) + Math.imul(il, P2H)) >>> 0;
    // acc += t
    const s = l + tl;
    l = s >>> 0;
    h = (h + th + (s > 0xffffffff ? 1 : 0)) >>> 0;
    // rotl 31
    const nh = ((h << 31) | (l >>> 1)) >>> 0;
    const nl = ((l << 31) | (h >>> 1)) >>> 0;
    // acc = n * P1
    a0 = nl & 0xffff; a1 = nl >>> 16;
    mid = a0 * P1L1 + a1 * P1L0;
    t = a0 * P1L0 + (mid & 0xffff) * 65536;
    l = t >>> 0;
    h = (a1 * P1L1 + Math.floor(mid / 65536) + (t - l) / TWO32 + Math.imul(nh, P1L) + Math.imul(nl, P1H)) >>> 0;
  }
  st[2 * k] = h;
  st[2 * k + 1] = l;
}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/**
 * XXH64 of `data` with a 32-bit `seed` (default 0): 8 bytes, big-endian. The plain TypeScript
 * reference (the oracle of `xxh64`, and its fallback without WebAssembly).
 */
export function xxh64Reference(data: Uint8Array | Float32Array, seed = 0): Uint8Array {
  checkSeed(seed);
  const len = data.byteLength;
  const aligned = LITTLE_ENDIAN && data.byteOffset % 4 === 0;
  const words = aligned ? new Uint32Array(data.buffer, data.byteOffset, len >>> 2) : null;
  const dv = aligned ? null : new DataView(data.buffer, data.byteOffset, len);
  const bytes = new Uint8Array(data.buffer, data.byteOffset, len);
  // 32-bit little-endian word at byte offset `off` (a multiple of 4).
  const w = (off: number): number => (words !== null ? words[off >>> 2] : dv!.getUint32(off, true));

  let hh: number, hl: number;
  let p = 0;
  if (len >= 32) {
    add(0, seed, P1H, P1L); add(rh, rl, P2H, P2L);
    let v1h = rh, v1l = rl;
    add(0, seed, P2H, P2L);
    let v2h = rh, v2l = rl;
    let v3h = 0, v3l = seed;
    // seed - P1 = seed + (2^64 - P1)
    add(0, seed, ~P1H >>> 0, -P1L >>> 0); // P1L != 0, so no borrow into the high half
    let v4h = rh, v4l = rl;
    const limit = len - 32;
    if (words !== null) {
      // Fast path: aligned words. The four lanes are independent, so each runs its own loop
      // with its state in locals (strided reads; the loops are compute-bound).
      const stripes = (limit >>> 5) + 1;
      const st = new Uint32Array([v1h, v1l, v2h, v2l, v3h, v3l, v4h, v4l]);
      for (let k = 0; k < 4; k++) laneRounds(words, stripes, st, k);
      v1h = st[0]; v1l = st[1]; v2h = st[2]; v2l = st[3]; v3h = st[4]; v3l = st[5]; v4h = st[6]; v4l = st[7];
      p = stripes * 32;
    } else {
      for (; p <= limit; p += 32) {
        round(v1h, v1l, w(p + 4), w(p)); v1h = rh; v1l = rl;
        round(v2h, v2l, w(p + 12), w(p + 8)); v2h = rh; v2l = rl;
        round(v3h, v3l, w(p + 20), w(p + 16)); v3h = rh; v3l = rl;
        round(v4h, v4l, w(p + 28), w(p + 24)); v4h = rh; v4l = rl;
      }
    }
    rotl(v1h, v1l, 1); let ah = rh, al = rl;
    rotl(v2h, v2l, 7); add(ah, al, rh, rl); ah = rh; al = rl;
    rotl(v3h, v3l, 12); add(ah, al, rh, rl); ah = rh; al = rl;
    rotl(v4h, v4l, 18); add(ah, al, rh, rl); ah = rh; al = rl;
    mergeRound(ah, al, v1h, v1l);
    mergeRound(rh, rl, v2h, v2l);
    mergeRound(rh, rl, v3h, v3l);
    mergeRound(rh, rl, v4h, v4l);
    hh = rh; hl = rl;
  } else {
    add(0, seed, P5H, P5L);
    hh = rh; hl = rl;
  }
  // h += len (len < 2^53: split into halves)
  add(hh, hl, Math.floor(len / TWO32) >>> 0, len >>> 0);
  hh = rh; hl = rl;

  for (; p + 8 <= len; p += 8) {
    round(0, 0, w(p + 4), w(p));
    hh = (hh ^ rh) >>> 0; hl = (hl ^ rl) >>> 0;
    rotl(hh, hl, 27);
    mul(rh, rl, P1H, P1L);
    add(rh, rl, P4H, P4L);
    hh = rh; hl = rl;
  }
  if (p + 4 <= len) {
    mul(0, w(p), P1H, P1L);
    hh = (hh ^ rh) >>> 0; hl = (hl ^ rl) >>> 0;
    rotl(hh, hl, 23);
    mul(rh, rl, P2H, P2L);
    add(rh, rl, P3H, P3L);
    hh = rh; hl = rl;
    p += 4;
  }
  for (; p < len; p++) {
    mul(0, bytes[p], P5H, P5L);
    hh = (hh ^ rh) >>> 0; hl = (hl ^ rl) >>> 0;
    rotl(hh, hl, 11);
    mul(rh, rl, P1H, P1L);
    hh = rh; hl = rl;
  }
  // avalanche
  hl = (hl ^ (hh >>> 1)) >>> 0; // h ^= h >> 33
  mul(hh, hl, P2H, P2L); hh = rh; hl = rl;
  hl = (hl ^ ((hl >>> 29) | (hh << 3))) >>> 0; hh = (hh ^ (hh >>> 29)) >>> 0; // h ^= h >> 29
  mul(hh, hl, P3H, P3L); hh = rh; hl = rl;
  hl = (hl ^ hh) >>> 0; // h ^= h >> 32

  const out = new Uint8Array(8);
  const odv = new DataView(out.buffer);
  odv.setUint32(0, hh, false);
  odv.setUint32(4, hl, false);
  return out;
}

function checkSeed(seed: number): void {
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) throw internalError(`xxh64 seed must be a uint32, got ${seed}`);
}

// ---- WebAssembly implementation --------------------------------------------------------------

// Memory layout of assembly/xxh64.ts (keep in sync): digest at HASH_OUT, input chunk at HASH_BUF.
const HASH_OUT = 0;
const HASH_BUF = 1024;
/** Bytes copied into the module per call: a multiple of 32 (whole stripes), fits its 5 pages. */
export const HASH_CHUNK = 262144;

interface HashModule {
  mem: Uint8Array;
  init(seed: number): void;
  stripes(len: number): void;
  finish(len: number, total: number): void;
}

const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';

/** Decode standard base64 (no Buffer, no atob: the same code in Node, pages and workers). */
function decodeBase64(text: string): Uint8Array {
  const clean = text.replace(/=+$/, '');
  const out = new Uint8Array((clean.length * 3) >> 2);
  let acc = 0, bits = 0, j = 0;
  for (let i = 0; i < clean.length; i++) {
    const v = B64.indexOf(clean[i]);
    if (v < 0) throw new Error(`xxh64 module: bad base64 character at ${i}`);
    acc = ((acc << 6) | v) & 0xffffff;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[j++] = (acc >> bits) & 0xff;
    }
  }
  return out;
}

/** undefined: not tried yet; null: unavailable (use the reference). */
let hashModule: HashModule | null | undefined;

// The few WebAssembly JS API members used here (the package compiles with lib ES2022 only, which
// declares no WebAssembly; the same approach as kernels/wasm.ts).
interface HashWasmApi {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { exports: Record<string, unknown> };
}
interface HashExports {
  memory: { buffer: ArrayBuffer };
  init(seed: number): void;
  stripes(len: number): void;
  finish(len: number, total: number): void;
}

function loadHashModule(): HashModule | null {
  if (hashModule !== undefined) return hashModule;
  hashModule = null;
  try {
    const api = (globalThis as unknown as { WebAssembly?: HashWasmApi }).WebAssembly;
    if (typeof api !== 'object' || api === null) return null;
    const mod = new api.Module(decodeBase64(HASH_WASM_BASE64));
    const ex = new api.Instance(mod, {}).exports as unknown as HashExports;
    const mem = new Uint8Array(ex.memory.buffer); // fixed size (maximum = initial): never detached
    if (mem.length < HASH_BUF + HASH_CHUNK) return null;
    hashModule = { mem, init: ex.init, stripes: ex.stripes, finish: ex.finish };
  } catch {
    hashModule = null;
  }
  return hashModule;
}

/** True when `xxh64` runs on WebAssembly (false: it falls back to `xxh64Reference`). */
export function xxh64UsesWasm(): boolean {
  return loadHashModule() !== null;
}

/**
 * XXH64 of `data` with a 32-bit `seed` (default 0): 8 bytes, big-endian (WebAssembly; the same
 * result as `xxh64Reference` for every input and seed).
 */
export function xxh64(data: Uint8Array | Float32Array, seed = 0): Uint8Array {
  checkSeed(seed);
  const m = loadHashModule();
  if (m === null) return xxh64Reference(data, seed);
  const len = data.byteLength;
  const bytes = new Uint8Array(data.buffer, data.byteOffset, len);
  const mem = m.mem;
  m.init(seed);
  let p = 0;
  // Every chunk but the last is a whole HASH_CHUNK (whole stripes); the last may be 0..HASH_CHUNK.
  while (len - p > HASH_CHUNK) {
    mem.set(bytes.subarray(p, p + HASH_CHUNK), HASH_BUF);
    m.stripes(HASH_CHUNK);
    p += HASH_CHUNK;
  }
  mem.set(bytes.subarray(p, len), HASH_BUF);
  m.finish(len - p, len);
  return mem.slice(HASH_OUT, HASH_OUT + 8);
}

/** XXH64 as 16 lowercase hex digits (as `xxhsum` prints it). */
export function xxh64Hex(data: Uint8Array | Float32Array, seed = 0): string {
  return bytesToHex(xxh64(data, seed));
}

/** Lowercase hex of some bytes. */
export function bytesToHex(b: Uint8Array): string {
  let s = '';
  for (let i = 0; i < b.length; i++) s += b[i].toString(16).padStart(2, '0');
  return s;
}

/** True when two byte strings are equal (not constant-time; for checksums, not secrets). */
export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
