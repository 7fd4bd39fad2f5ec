/**
 * The register-tiled inner kernels: one 2 x 16 output tile in 8 accumulators of f32x4.
 *
 * A tile is 2 "A rows" (r = 0, 1) by 16 "B columns" (c = 0..15), held as acc[r][j] = columns
 * 4j..4j+3. Per k step: the 16 B values of the packed panel are four v128 loads (one 64-byte line),
 * each A value is a load32_splat, and each accumulator does `acc = acc + a * b` as an f32x4.mul
 * then an f32x4.add (float32 rounding after each, never fused). k runs in increasing order, so each
 * output element is the sequential float32 sum of its products: vectorised across outputs only.
 *
 * Why 2 x 16: V8 keeps the 8 accumulators, 4 B vectors, the splat and one product in 14 of its 15
 * usable xmm registers with no spill, and the loop body is 6 loads + 16 arithmetic ops + a few
 * integer ops, which runs at the machine's f32x4 mul + add throughput (measured 47 GFLOP/s on an
 * L1-resident panel). The k loop is deliberately not unrolled: V8's scheduler hoists the loads of
 * an unrolled body and then spills the accumulators. The tiles are inlined into the kernels' loop
 * nests (@inline): a wasm call costs V8 a frame and the spill of every live value, about 10% here.
 *
 * A is read in place through 2 row pointers advancing 4 bytes per k (rows of w in the forward
 * pass, rows of dy in backward-input) or, in the weight gradient, from pairs packed 8 bytes a
 * sample. B is always a packed panel of 16 floats per k (64 bytes per k, contiguous).
 */

/** acc + a * b, rounded after the multiply and after the add. */
@inline function madd(acc: v128, a: v128, b: v128): v128 {
  return f32x4.add(acc, f32x4.mul(a, b));
}

/**
 * C (2, 16) (+)= A (2, kc) . B (kc, 16), k in increasing order.
 * a0, a1: A rows (4 bytes a k); bp: packed B panel (64 bytes a k); c: the tile, row r at
 * c + r * ldc (bytes), 16 contiguous floats; starts from +0 when `zero`, else from c's values.
 */
@inline export function tile2x16(a0: usize, a1: usize, bp: usize, kc: i32, c: usize, ldc: usize, zero: bool): void {
  let c00: v128, c01: v128, c02: v128, c03: v128, c10: v128, c11: v128, c12: v128, c13: v128;
  const c1 = c + ldc;
  if (zero) {
    c00 = f32x4.splat(0); c01 = c00; c02 = c00; c03 = c00;
    c10 = c00; c11 = c00; c12 = c00; c13 = c00;
  } else {
    c00 = v128.load(c, 0); c01 = v128.load(c, 16); c02 = v128.load(c, 32); c03 = v128.load(c, 48);
    c10 = v128.load(c1, 0); c11 = v128.load(c1, 16); c12 = v128.load(c1, 32); c13 = v128.load(c1, 48);
  }
  const end = bp + (<usize>kc << 6);
  while (bp < end) {
    const b0 = v128.load(bp, 0);
    const b1 = v128.load(bp, 16);
    const b2 = v128.load(bp, 32);
    const b3 = v128.load(bp, 48);
    let a = v128.load32_splat(a0);
    c00 = madd(c00, a, b0); c01 = madd(c01, a, b1); c02 = madd(c02, a, b2); c03 = madd(c03, a, b3);
    a = v128.load32_splat(a1);
    c10 = madd(c10, a, b0); c11 = madd(c11, a, b1); c12 = madd(c12, a, b2); c13 = madd(c13, a, b3);
    a0 += 4; a1 += 4; bp += 64;
  }
  v128.store(c, c00, 0); v128.store(c, c01, 16); v128.store(c, c02, 32); v128.store(c, c03, 48);
  v128.store(c1, c10, 0); v128.store(c1, c11, 16); v128.store(c1, c12, 32); v128.store(c1, c13, 48);
}

/**
 * The weight-gradient tile: dst (2, 16) = tree sum over samples s < n of A[s][r] * B[s][c].
 *
 * ap: A packed as pairs, 8 bytes a sample (A[s][0], A[s][1]); bp: packed B panel, 64 bytes a
 * sample. Samples are cut into chunks of `chunk`: each chunk's partial is a sequential sum from +0
 * in registers; then, pushing chunk c (0-based), it is merged with the ctz(c + 1) newest entries of
 * the tile stack `stack` (128-byte entries, layout [r][16]) as `older + newer`, and stored on top.
 * At the end the stack is folded right to left (s[0] + (s[1] + ...)) into dst (row r at
 * dst + r * ldb bytes). See index.ts for why that is the tree order of tree.ts.
 */
@inline export function treeTile2x16(ap: usize, bp: usize, n: i32, chunk: i32, stack: usize, dst: usize, ldb: usize): void {
  let depth = 0;
  let c = 0;
  for (let s0 = 0; s0 < n; s0 += chunk) {
    let c00 = f32x4.splat(0);
    let c01 = c00, c02 = c00, c03 = c00, c10 = c00, c11 = c00, c12 = c00, c13 = c00;
    const end = bp + (<usize>min<i32>(chunk, n - s0) << 6);
    while (bp < end) {
      const b0 = v128.load(bp, 0);
      const b1 = v128.load(bp, 16);
      const b2 = v128.load(bp, 32);
      const b3 = v128.load(bp, 48);
      let a = v128.load32_splat(ap, 0);
      c00 = madd(c00, a, b0); c01 = madd(c01, a, b1); c02 = madd(c02, a, b2); c03 = madd(c03, a, b3);
      a = v128.load32_splat(ap, 4);
      c10 = madd(c10, a, b0); c11 = madd(c11, a, b1); c12 = madd(c12, a, b2); c13 = madd(c13, a, b3);
      ap += 8; bp += 64;
    }
    const merges = ctz<i32>(c + 1);
    depth -= merges;
    const slot = stack + (<usize>depth << 7);
    for (let j = merges - 1; j >= 0; j--) {
      const e = slot + (<usize>j << 7);
      c00 = f32x4.add(v128.load(e, 0), c00);
      c01 = f32x4.add(v128.load(e, 16), c01);
      c02 = f32x4.add(v128.load(e, 32), c02);
      c03 = f32x4.add(v128.load(e, 48), c03);
      c10 = f32x4.add(v128.load(e, 64), c10);
      c11 = f32x4.add(v128.load(e, 80), c11);
      c12 = f32x4.add(v128.load(e, 96), c12);
      c13 = f32x4.add(v128.load(e, 112), c13);
    }
    v128.store(slot, c00, 0); v128.store(slot, c01, 16); v128.store(slot, c02, 32); v128.store(slot, c03, 48);
    v128.store(slot, c10, 64); v128.store(slot, c11, 80); v128.store(slot, c12, 96); v128.store(slot, c13, 112);
    depth++;
    c++;
  }
  // fold right to left: acc = s[depth-1]; acc = s[d] + acc for d = depth-2 .. 0
  for (let v = 0; v < 8; v++) {
    const lane = <usize>v << 4;
    let acc = v128.load(stack + (<usize>(depth - 1) << 7) + lane);
    for (let d = depth - 2; d >= 0; d--) acc = f32x4.add(v128.load(stack + (<usize>d << 7) + lane), acc);
    v128.store(dst + <usize>(v >> 2) * ldb + (<usize>(v & 3) << 4), acc);
  }
}
