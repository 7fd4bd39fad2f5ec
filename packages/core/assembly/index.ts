/**
 * gradhub's linear-layer GEMMs in WebAssembly SIMD (f32x4), compiled by scripts/build-wasm.js.
 *
 * Contract (docs/design.md "Invariant 3: canonical reduction tree", "one arithmetic for every kernel"), the same as the TypeScript
 * oracle (src/kernels/oracle.ts), bit for bit: float32 values; every multiply and every add rounded
 * to float32 (f32x4.mul then f32x4.add, no fused multiply-add, no relaxed SIMD); each output element
 * is a sum over k in increasing order starting from +0, never split into partial sums; the bias is
 * added after the k-sum; ReLU forward is `z > 0 ? z : 0`, ReLU backward is `h > 0 ? g : 0` (a bit
 * mask, so signed zeros and NaNs agree). The weight-gradient sum over samples follows the chunk
 * tree of tree.ts: sequential inside a chunk of `chunk` samples, chunk partials combined in tree order.
 *
 * Vectorisation is across independent outputs only; the k loop of a tile may be cut into blocks
 * (cache blocking) because a block continues from the float32 value the previous block stored:
 * the order of the additions is unchanged.
 *
 * Memory: imported (env.memory), sized once by the host. All pointers are byte offsets; matrices
 * are row-major float32. The host reserves a scratch region and hands it to `init` once; the
 * kernels never write outside their outputs and that scratch.
 *
 * Organisation (see micro.ts for the 2 x 16 register tile; every loop below is per tile):
 * - forward, y (N, OUT) = x (N, IN) . w^T + b: tile = 2 outputs (rows of w, splatted, read in
 *   place) x 16 samples (x packed transposed once per call: panels of 16 samples, 64 bytes a k);
 *   a tile runs all of IN in one pass.
 * - backward-input, dx (N, IN) = dy (N, OUT) . w: tile = 2 samples (rows of dy, splatted, in place)
 *   x 16 inputs (w block of OUT x 128 inputs packed in panels of 16 inputs); a tile runs all of
 *   OUT in one pass.
 * - weight gradient, dw (OUT, IN) = dy^T . x along the chunk tree: tile = 2 outputs (dy block
 *   packed as pairs) x 16 inputs (x block packed in panels of 16 inputs); each tile walks all N
 *   samples chunk by chunk and combines the chunk partials on a small stack of tiles (below).
 * A ragged edge (an odd row, fewer than 16 columns) runs the same tile on zero-padded panels (or a
 * repeated row) and stores only the elements that exist.
 *
 * Ranges (threads): each kernel computes one contiguous range of its independent outputs, for all
 * of k: forward, outputs [oBegin, oEnd) of every sample; backward-input, inputs [iBegin, iEnd) of
 * every sample; weight gradient, rows [oBegin, oEnd) of dw and db (each row with the whole chunk
 * tree). A single thread passes the full range. Threads that share one memory (each instance with
 * its own scratch, given to its own `init`) split a call into disjoint ranges: an element's
 * arithmetic never depends on the range it falls in, so any split gives the same bits.
 */
import { tile2x16, treeTile2x16 } from './micro';
import { packRowsT16, packCols16, packPairs } from './pack';
import { xxhDigest, xxhReset } from './xxh64-core';

/** The smallest packing buffer, in floats: one panel of 256 k x 16. */
const MIN_PACK: i32 = 256 * 16;
/** Weight gradient: target size of each packed block, in floats (256 KiB: both stay in L2). */
const BLOCK_FLOATS: i32 = 65536;
/** Forward: output pairs per sample panel pass (a block of 128 rows of w). */
const MC_F: i32 = 128;
/** Backward-input: inputs per block (the packed w block is OUT x NB_I: 1 MiB for OUT = 2048). */
const NB_I: i32 = 128;
/** Tree stack entries: the stack holds popcount(chunks so far) <= 31 entries. */
const STACK_DEPTH: i32 = 32;
/** Fixed part of the scratch region, in floats: tile, tile stack, vector stack (1,184). */
const FIXED_FLOATS: i32 = 32 + STACK_DEPTH * 32 + STACK_DEPTH * 4;

let tileBuf: usize = 0; // 32 floats: one 2 x 16 tile, layout [r][16]
let stackBuf: usize = 0; // STACK_DEPTH tiles of 32 floats: the weight-gradient tree stack
let stackVec: usize = 0; // STACK_DEPTH x 4 floats: the bias-gradient tree stack
let packA: usize = 0; // packFloats floats: packed A block (weight gradient: dy block as pairs)
let packB: usize = 0; // packFloats floats: packed B block
let packFloats: i32 = 0;

/**
 * Lay the scratch region out: `scratch` (16-byte aligned) holds `scratchFloats` floats. Returns the
 * size of each of the two packing buffers in floats (the weight gradient needs 16 * N of them), or
 * 0 when the region is too small (it must hold FIXED_FLOATS + 2 * MIN_PACK floats).
 */
export function init(scratch: usize, scratchFloats: i32): i32 {
  const pack = ((scratchFloats - FIXED_FLOATS) >> 1) & ~3;
  if (pack < MIN_PACK) return 0;
  tileBuf = scratch;
  stackBuf = tileBuf + 128;
  stackVec = stackBuf + (<usize>STACK_DEPTH << 7);
  packA = stackVec + (<usize>STACK_DEPTH << 4);
  packB = packA + (<usize>pack << 2);
  packFloats = pack;
  return pack;
}

// ---------------------------------------------------------------------------------------------
// Tile I/O between the tile buffer ([r][16]) and a matrix m. Natural layout: tile (r, c) is
// m[r * ld + c]; transposed layout: tile (r, c) is m[c * ld + r]. Only rows < `rows` and columns
// < `cols` exist in m. Pure moves and selects: no arithmetic except the forward bias add.

/** tile <- m (natural layout); missing entries +0. */
function loadTileEdge(m: usize, ld: i32, rows: i32, cols: i32): void {
  memory.fill(tileBuf, 0, 128);
  const rb = <usize>ld << 2;
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      store<f32>(tileBuf + (<usize>(r * 16 + c) << 2), load<f32>(m + <usize>r * rb + (<usize>c << 2)));
    }
  }
}

/** m <- tile (natural layout), then `h > 0 ? m : 0` when h != 0 (h has m's layout). */
function storeTileEdge(m: usize, h: usize, ld: i32, rows: i32, cols: i32): void {
  const rb = <usize>ld << 2;
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const off = <usize>r * rb + (<usize>c << 2);
      let v = load<f32>(tileBuf + (<usize>(r * 16 + c) << 2));
      if (h != 0 && !(load<f32>(h + off) > 0)) v = 0;
      store<f32>(m + off, v);
    }
  }
}

/** ReLU backward on a full tile in place: m = h > 0 ? m : 0 (bit select: +0 otherwise). */
function maskTile(m: usize, h: usize, ld: i32): void {
  const zero = f32x4.splat(0);
  for (let r = 0; r < 2; r++) {
    const off = <usize>r * (<usize>ld << 2);
    const p = m + off;
    const q = h + off;
    v128.store(p, v128.and(v128.load(p, 0), f32x4.gt(v128.load(q, 0), zero)), 0);
    v128.store(p, v128.and(v128.load(p, 16), f32x4.gt(v128.load(q, 16), zero)), 16);
    v128.store(p, v128.and(v128.load(p, 32), f32x4.gt(v128.load(q, 32), zero)), 32);
    v128.store(p, v128.and(v128.load(p, 48), f32x4.gt(v128.load(q, 48), zero)), 48);
  }
}

/** tile <- m (transposed layout, ld = m's row stride in floats); missing entries +0. */
function loadTileT(m: usize, ld: i32, rows: i32, cols: i32): void {
  const cb = <usize>ld << 2;
  if (rows == 2 && cols == 16) {
    // m row c holds (tile[0][c], tile[1][c]) as 8 contiguous bytes
    for (let j = 0; j < 4; j++) {
      const p = m + <usize>(4 * j) * cb;
      let u = v128.load64_zero(p);
      u = v128.load64_lane(p + cb, u, 1); // t0c0 t1c0 t0c1 t1c1
      let v = v128.load64_zero(p + 2 * cb);
      v = v128.load64_lane(p + 3 * cb, v, 1); // t0c2 t1c2 t0c3 t1c3
      v128.store(tileBuf + (<usize>j << 4), v128.shuffle<i32>(u, v, 0, 2, 4, 6), 0);
      v128.store(tileBuf + (<usize>j << 4), v128.shuffle<i32>(u, v, 1, 3, 5, 7), 64);
    }
    return;
  }
  memory.fill(tileBuf, 0, 128);
  for (let c = 0; c < cols; c++) {
    const s = m + <usize>c * cb;
    for (let r = 0; r < rows; r++) {
      store<f32>(tileBuf + (<usize>(r * 16 + c) << 2), load<f32>(s + (<usize>r << 2)));
    }
  }
}

/**
 * m <- tile (transposed layout). When `bias` != 0 (the last k block): m = tile + bias[r], then
 * `z > 0 ? z : 0` when relu (a bit select, so -0 and NaN give +0).
 */
function storeTileT(m: usize, ld: i32, rows: i32, cols: i32, bias: usize, relu: bool): void {
  const cb = <usize>ld << 2;
  if (rows == 2 && cols == 16) {
    const zero = f32x4.splat(0);
    const bv = bias != 0 ? v128.load64_splat(bias) : zero; // b0 b1 b0 b1
    for (let j = 0; j < 4; j++) {
      const t0 = v128.load(tileBuf + (<usize>j << 4), 0);
      const t1 = v128.load(tileBuf + (<usize>j << 4), 64);
      let u = v128.shuffle<i32>(t0, t1, 0, 4, 1, 5); // columns 4j, 4j+1: (r0, r1) each
      let v = v128.shuffle<i32>(t0, t1, 2, 6, 3, 7); // columns 4j+2, 4j+3
      if (bias != 0) {
        u = f32x4.add(u, bv);
        v = f32x4.add(v, bv);
        if (relu) {
          u = v128.and(u, f32x4.gt(u, zero));
          v = v128.and(v, f32x4.gt(v, zero));
        }
      }
      const p = m + <usize>(4 * j) * cb;
      v128.store64_lane(p, u, 0);
      v128.store64_lane(p + cb, u, 1);
      v128.store64_lane(p + 2 * cb, v, 0);
      v128.store64_lane(p + 3 * cb, v, 1);
    }
    return;
  }
  for (let r = 0; r < rows; r++) {
    const t = tileBuf + (<usize>r << 6);
    let d = m + (<usize>r << 2);
    const br: f32 = bias != 0 ? load<f32>(bias + (<usize>r << 2)) : 0;
    for (let c = 0; c < cols; c++) {
      let z = load<f32>(t + (<usize>c << 2));
      if (bias != 0) {
        z = z + br;
        if (relu && !(z > 0)) z = 0;
      }
      store<f32>(d, z);
      d += cb;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Forward: y (N, OUT) = x (N, IN) . w^T + b, then ReLU when relu != 0.
//
// Tile: 2 outputs (A = rows of w, in place) x 16 samples (B = x packed transposed, panels of 16
// samples, 64 bytes an input). x is packed once per call for a block of samples and a block of
// inputs that is all of IN unless the packing buffer is smaller than 16 x IN floats. Each tile then
// runs the whole input block in one pass (no k blocking: measured faster than blocks of 256-1024
// inputs, since a tile's partial sums never leave the registers): block of MC_F rows of w >
// panel of 16 samples (its k x 16 slice stays in L2) > pair of outputs (2 rows of w, streamed).
// Only when IN is cut into blocks do partial sums go through y between them.

export function linearForward(x: usize, w: usize, b: usize, y: usize, n: i32, inF: i32, outF: i32, relu: i32, oBegin: i32, oEnd: i32): void {
  const kMax = min<i32>(inF, packFloats >> 4); // inputs a block (all of IN, normally)
  const wb = <usize>inF << 2;
  for (let k0 = 0; k0 < inF; k0 += kMax) {
    const kc = min<i32>(kMax, inF - k0);
    const first = k0 == 0;
    const last = k0 + kc == inF;
    const nbMax = max<i32>(16, (packFloats / kc) & ~15); // samples a packed block
    for (let s0 = 0; s0 < n; s0 += nbMax) {
      const nb = min<i32>(nbMax, n - s0);
      packRowsT16(x + ((<usize>s0 * <usize>inF + <usize>k0) << 2), inF, nb, kc, packB);
      for (let ob = oBegin; ob < oEnd; ob += MC_F) {
        const oe = min<i32>(ob + MC_F, oEnd);
        for (let c0 = 0; c0 < nb; c0 += 16) {
          const cols = min<i32>(16, nb - c0);
          const bp = packB + ((<usize>c0 * <usize>kc) << 2);
          for (let o0 = ob; o0 < oe; o0 += 2) {
            const rows = min<i32>(2, oEnd - o0);
            const a0 = w + ((<usize>o0 * <usize>inF + <usize>k0) << 2);
            const a1 = rows > 1 ? a0 + wb : a0; // a padding row repeats row 0: computed, never stored
            const yt = y + ((<usize>(s0 + c0) * <usize>outF + <usize>o0) << 2);
            if (!first) loadTileT(yt, outF, rows, cols);
            tile2x16(a0, a1, bp, kc, tileBuf, 64, first);
            storeTileT(yt, outF, rows, cols, last ? b + (<usize>o0 << 2) : 0, relu != 0);
          }
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Backward-input: dx (N, IN) = dy (N, OUT) . w (OUT, IN), then dx = h > 0 ? dx : 0 when mask != 0.
//
// Tile: 2 samples (A = rows of dy, in place) x 16 inputs (B = w block packed in panels of 16
// inputs, 64 bytes an output). Loops: block of NB_I inputs (the w block OUT x NB_I is packed,
// reading w row by row; every w element is read once) > panel of 16 inputs (its OUT x 16 slice
// stays in L2) > pair of samples, each tile running all of OUT in one pass. OUT is cut into k
// blocks only when the packing buffer is smaller than 16 x OUT floats; the partial sums then go
// through dx between blocks.

export function linearBackwardInput(dy: usize, w: usize, dx: usize, n: i32, inF: i32, outF: i32, mask: usize, iBegin: i32, iEnd: i32): void {
  const kMax = min<i32>(outF, packFloats >> 4); // outputs a k block (all of OUT, normally)
  const nbMax = min<i32>(NB_I, (packFloats / kMax) & ~15); // inputs a block: kMax x nbMax fits the buffer
  const dyb = <usize>outF << 2;
  const dxb = <usize>inF << 2;
  for (let i0 = iBegin; i0 < iEnd; i0 += nbMax) {
    const nb = min<i32>(nbMax, iEnd - i0);
    for (let o0 = 0; o0 < outF; o0 += kMax) {
      const kc = min<i32>(kMax, outF - o0);
      const first = o0 == 0;
      const last = o0 + kc == outF;
      packCols16(w + ((<usize>o0 * <usize>inF + <usize>i0) << 2), inF, kc, nb, packB);
      for (let c0 = 0; c0 < nb; c0 += 16) {
        const cols = min<i32>(16, nb - c0);
        const bp = packB + ((<usize>c0 * <usize>kc) << 2);
        for (let s0 = 0; s0 < n; s0 += 2) {
          const rows = min<i32>(2, n - s0);
          const a0 = dy + ((<usize>s0 * <usize>outF + <usize>o0) << 2);
          const a1 = rows > 1 ? a0 + dyb : a0; // a padding row: computed, never stored
          const off = (<usize>s0 * <usize>inF + <usize>(i0 + c0)) << 2;
          const h = last && mask != 0 ? mask + off : 0;
          const full2 = rows == 2 && cols == 16;
          const c = full2 ? dx + off : tileBuf;
          const ldc = full2 ? dxb : 64;
          if (!full2 && !first) loadTileEdge(dx + off, inF, rows, cols);
          tile2x16(a0, a1, bp, kc, c, ldc, first);
          if (full2) {
            if (h != 0) maskTile(dx + off, h, inF);
          } else {
            storeTileEdge(dx + off, h, inF, rows, cols);
          }
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Weight gradient along the chunk tree.
//
// Tree order with a stack: chunk partials are pushed left to right; pushing chunk c (0-based) first
// merges it with the ctz(c + 1) newest entries (each merge is `older + newer`: two perfect subtrees
// of equal power-of-two size), and what remains at the end (perfect subtrees of decreasing size,
// one per set bit of the chunk count) is folded right to left: s[0] + (s[1] + (... + s[d-1])).
// That is exactly S(0, chunks) with mid = lo + largest power of two < hi - lo (tree.ts).
//
// Tile: 2 outputs (A = dy block packed as pairs of outputs, 8 bytes a sample) x 16 inputs (B = x
// block packed in panels of 16 inputs, 64 bytes a sample). Each tile walks all N samples, chunk by
// chunk, and combines the chunk partials on a stack of tiles in scratch (micro.ts: treeTile2x16):
// nothing of the size of dw is ever materialised per chunk. Loops: output block (dy pairs, L2) >
// input block (x, packed) > panel of 16 inputs (N x 16, L1) > pair of outputs.

/** db (OUT) = tree sum over samples of dy (N, OUT); vectorised over 4 outputs, scalar tail. */
function biasGrad(dy: usize, n: i32, outF: i32, chunk: i32, db: usize, oBegin: i32, oEnd: i32): void {
  const rb = <usize>outF << 2;
  let o = oBegin;
  for (; o + 4 <= oEnd; o += 4) {
    let depth = 0;
    let c = 0;
    for (let s0 = 0; s0 < n; s0 += chunk) {
      const len = min<i32>(chunk, n - s0);
      let p = dy + ((<usize>s0 * <usize>outF + <usize>o) << 2);
      let acc = f32x4.splat(0);
      for (let k = 0; k < len; k++) {
        acc = f32x4.add(acc, v128.load(p));
        p += rb;
      }
      for (let m = ctz<i32>(c + 1); m > 0; m--) {
        depth--;
        acc = f32x4.add(v128.load(stackVec + (<usize>depth << 4)), acc);
      }
      v128.store(stackVec + (<usize>depth << 4), acc);
      depth++;
      c++;
    }
    let acc = v128.load(stackVec + (<usize>(depth - 1) << 4));
    for (let d = depth - 2; d >= 0; d--) acc = f32x4.add(v128.load(stackVec + (<usize>d << 4)), acc);
    v128.store(db + (<usize>o << 2), acc);
  }
  for (; o < oEnd; o++) {
    let depth = 0;
    let c = 0;
    for (let s0 = 0; s0 < n; s0 += chunk) {
      const len = min<i32>(chunk, n - s0);
      let p = dy + ((<usize>s0 * <usize>outF + <usize>o) << 2);
      let acc: f32 = 0;
      for (let k = 0; k < len; k++) {
        acc = acc + load<f32>(p);
        p += rb;
      }
      for (let m = ctz<i32>(c + 1); m > 0; m--) {
        depth--;
        acc = load<f32>(stackVec + (<usize>depth << 2)) + acc;
      }
      store<f32>(stackVec + (<usize>depth << 2), acc);
      depth++;
      c++;
    }
    let acc = load<f32>(stackVec + (<usize>(depth - 1) << 2));
    for (let d = depth - 2; d >= 0; d--) acc = load<f32>(stackVec + (<usize>d << 2)) + acc;
    store<f32>(db + (<usize>o << 2), acc);
  }
}

/**
 * dw (OUT, IN) = tree sum over samples of dy[s, o] * x[s, i]; db (OUT) = tree sum of dy[s, o].
 * Requires 16 * n <= the packing size returned by init (the host checks).
 */
export function linearBackwardWeight(dy: usize, x: usize, dw: usize, db: usize, n: i32, inF: i32, outF: i32, chunk: i32, oBegin: i32, oEnd: i32): void {
  if (oEnd <= oBegin) return;
  if (n <= 0) {
    memory.fill(dw + ((<usize>oBegin * <usize>inF) << 2), 0, (<usize>inF * <usize>(oEnd - oBegin)) << 2);
    memory.fill(db + (<usize>oBegin << 2), 0, <usize>(oEnd - oBegin) << 2);
    return;
  }
  if (chunk > n) chunk = n;
  biasGrad(dy, n, outF, chunk, db, oBegin, oEnd);
  const perSample = min<i32>(BLOCK_FLOATS, packFloats) / n;
  const mc = max<i32>(2, perSample & ~1); // outputs a block: dy block packed as pairs, mc x n
  const nbMax = max<i32>(16, perSample & ~15); // inputs a block: x block of n x nbMax
  const pairBytes = <usize>n << 3; // one packed pair of outputs: 8 bytes a sample
  const dwb = <usize>inF << 2;
  for (let o0 = oBegin; o0 < oEnd; o0 += mc) {
    const m = min<i32>(mc, oEnd - o0);
    packPairs(dy + (<usize>o0 << 2), outF, n, m, packA);
    for (let i0 = 0; i0 < inF; i0 += nbMax) {
      const nb = min<i32>(nbMax, inF - i0);
      packCols16(x + (<usize>i0 << 2), inF, n, nb, packB);
      for (let c0 = 0; c0 < nb; c0 += 16) {
        const cols = min<i32>(16, nb - c0);
        const bp = packB + ((<usize>c0 * <usize>n) << 2);
        for (let r0 = 0; r0 < m; r0 += 2) {
          const rows = min<i32>(2, m - r0);
          const ap = packA + <usize>(r0 >> 1) * pairBytes;
          const dst = dw + ((<usize>(o0 + r0) * <usize>inF + <usize>(i0 + c0)) << 2);
          const full = rows == 2 && cols == 16;
          treeTile2x16(ap, bp, n, chunk, stackBuf, full ? dst : tileBuf, full ? dwb : 64);
          if (!full) storeTileEdge(dst, 0, inF, rows, cols);
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// SGD (src/sgd.ts, docs/design.md "Invariant 5: SGD is torch.optim.SGD"): torch.optim.SGD fused with the division by the loss
// denominator, elementwise, float32 throughout, in sgd.ts's order of operations (f32x4.div/mul/
// add/sub are correctly rounded single operations, like Math.fround of the double result; no
// fused multiply-add). 4 elements a vector, a scalar tail for n % 4.

/**
 * One SGD step in place on p (n floats); gs (the gradient sum) is read only; buf is the momentum
 * buffer (written when `useMomentum`; read unless `first`). The scalars are float32 values as
 * sgd.ts rounds them (damp1 = fround(1 - dampening)); the flags are 0/1 and decide the case, as
 * sgd.ts decides it from the unrounded options (weightDecay !== 0, momentum !== 0).
 */
export function sgdStep(
  p: usize, gs: usize, buf: usize, n: i32, d: f32, lr: f32, wd: f32, mom: f32, damp1: f32,
  decay: i32, useMomentum: i32, first: i32, nesterov: i32,
): void {
  // One specialised loop per case: the flags are constants after inlining, so no per-element branch.
  if (useMomentum == 0) {
    if (decay != 0) sgdLoop(p, gs, buf, n, d, lr, wd, mom, damp1, true, false, false, false);
    else sgdLoop(p, gs, buf, n, d, lr, wd, mom, damp1, false, false, false, false);
  } else if (first != 0) {
    if (nesterov != 0) {
      if (decay != 0) sgdLoop(p, gs, buf, n, d, lr, wd, mom, damp1, true, true, true, true);
      else sgdLoop(p, gs, buf, n, d, lr, wd, mom, damp1, false, true, true, true);
    } else if (decay != 0) sgdLoop(p, gs, buf, n, d, lr, wd, mom, damp1, true, true, true, false);
    else sgdLoop(p, gs, buf, n, d, lr, wd, mom, damp1, false, true, true, false);
  } else if (nesterov != 0) {
    if (decay != 0) sgdLoop(p, gs, buf, n, d, lr, wd, mom, damp1, true, true, false, true);
    else sgdLoop(p, gs, buf, n, d, lr, wd, mom, damp1, false, true, false, true);
  } else if (decay != 0) sgdLoop(p, gs, buf, n, d, lr, wd, mom, damp1, true, true, false, false);
  else sgdLoop(p, gs, buf, n, d, lr, wd, mom, damp1, false, true, false, false);
}

/**
 *   g = gs / d;  if decay: g = g + wd * p
 *   if useMomentum: b = first ? g : mom * buf + damp1 * g;  buf = b;  g = nesterov ? g + mom * b : b
 *   p = p - lr * g
 */
// @ts-ignore: decorator
@inline
function sgdLoop(
  p: usize, gs: usize, buf: usize, n: i32, d: f32, lr: f32, wd: f32, mom: f32, damp1: f32,
  decay: bool, useMomentum: bool, first: bool, nesterov: bool,
): void {
  const vd = f32x4.splat(d);
  const vlr = f32x4.splat(lr);
  const vwd = f32x4.splat(wd);
  const vmom = f32x4.splat(mom);
  const vdamp1 = f32x4.splat(damp1);
  const n4 = n & ~3;
  let i = 0;
  for (; i < n4; i += 4) {
    const off = <usize>i << 2;
    const pi = v128.load(p + off);
    let g = f32x4.div(v128.load(gs + off), vd);
    if (decay) g = f32x4.add(g, f32x4.mul(vwd, pi));
    if (useMomentum) {
      const b = first ? g : f32x4.add(f32x4.mul(vmom, v128.load(buf + off)), f32x4.mul(vdamp1, g));
      v128.store(buf + off, b);
      g = nesterov ? f32x4.add(g, f32x4.mul(vmom, b)) : b;
    }
    v128.store(p + off, f32x4.sub(pi, f32x4.mul(vlr, g)));
  }
  for (; i < n; i++) {
    const off = <usize>i << 2;
    const pi = load<f32>(p + off);
    let g: f32 = load<f32>(gs + off) / d;
    if (decay) g = g + wd * pi;
    if (useMomentum) {
      const b: f32 = first ? g : mom * load<f32>(buf + off) + damp1 * g;
      store<f32>(buf + off, b);
      g = nesterov ? g + mom * b : b;
    }
    store<f32>(p + off, pi - lr * g);
  }
}

// ---------------------------------------------------------------------------------------------
// Gradient buffers (src/grad-pool.ts: the coordinator's reducer; src/sgd-wasm.ts: the finiteness
// check before a step). Elementwise over n floats at any 4-byte aligned address, 4 a vector (16 an
// iteration, four independent accumulators), a scalar tail for n % 16.
//
// The check accumulates v - v, which is +0 for every finite v and NaN once any v is NaN or
// infinite (NaN stays NaN through later additions): no branch per value. The sums are plain
// f32x4.add (one rounding, no fused multiply-add), so a + b here is the bits of TypeScript's
// Float32Array a[i] + b[i].

/** All lanes of the four check accumulators still +0 (every value seen was finite)? */
// @ts-ignore: decorator
@inline
function checkLanes(a0: v128, a1: v128, a2: v128, a3: v128, tail: f32): i32 {
  const acc = f32x4.add(f32x4.add(a0, a1), f32x4.add(a2, a3));
  return i32(i32x4.all_true(f32x4.eq(acc, f32x4.splat(0))) && tail == 0);
}

/** 1 when the n floats at p are all finite, else 0. Reads only. */
export function f32Check(p: usize, n: i32): i32 {
  let a0 = f32x4.splat(0);
  let a1 = a0;
  let a2 = a0;
  let a3 = a0;
  const n16 = n & ~15;
  let i = 0;
  for (; i < n16; i += 16) {
    const q = p + (<usize>i << 2);
    const v0 = v128.load(q, 0);
    const v1 = v128.load(q, 16);
    const v2 = v128.load(q, 32);
    const v3 = v128.load(q, 48);
    a0 = f32x4.add(a0, f32x4.sub(v0, v0));
    a1 = f32x4.add(a1, f32x4.sub(v1, v1));
    a2 = f32x4.add(a2, f32x4.sub(v2, v2));
    a3 = f32x4.add(a3, f32x4.sub(v3, v3));
  }
  let t: f32 = 0;
  for (; i < n; i++) {
    const v = load<f32>(p + (<usize>i << 2));
    t = t + (v - v);
  }
  return checkLanes(a0, a1, a2, a3, t);
}

/** l = l + r over n floats (no check: sums of finite values may overflow to infinity). */
export function f32Add(l: usize, r: usize, n: i32): void {
  const n16 = n & ~15;
  let i = 0;
  for (; i < n16; i += 16) {
    const off = <usize>i << 2;
    const p = l + off;
    const q = r + off;
    v128.store(p, f32x4.add(v128.load(p, 0), v128.load(q, 0)), 0);
    v128.store(p, f32x4.add(v128.load(p, 16), v128.load(q, 16)), 16);
    v128.store(p, f32x4.add(v128.load(p, 32), v128.load(q, 32)), 32);
    v128.store(p, f32x4.add(v128.load(p, 48), v128.load(q, 48)), 48);
  }
  for (; i < n; i++) {
    const off = <usize>i << 2;
    store<f32>(l + off, load<f32>(l + off) + load<f32>(r + off));
  }
}

// ---------------------------------------------------------------------------------------------
/**
 * XXH64 of the `len` bytes at `p` with a 32-bit `seed`, where they lie (xxh64-core.ts): the
 * parameter checksum (docs/design.md "Invariant 4: replicas agree") of parameters already in this memory, with no copy into
 * the hash module. The digest as a u64 (little-endian value; the canonical bytes are its
 * big-endian encoding). Scalar i64 arithmetic: no SIMD, the same result everywhere.
 */
export function xxh64(p: usize, len: i32, seed: u32): u64 {
  xxhReset(seed);
  return xxhDigest(p, <usize>len, <u64>len);
}
