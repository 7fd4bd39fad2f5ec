/**
 * Packing: copy a block of a row-major float32 matrix into the layout the inner kernel reads
 * contiguously (panels of 16 floats a k, one 64-byte line). Packing only moves values (no
 * arithmetic) and pads with +0; it is done once per block, so its cost is amortised over every
 * tile that reads the block.
 *
 * Pointers are byte addresses; `ld` (leading dimension) is the source row stride in floats.
 */

/**
 * Panels of 16 rows, transposed: dst[p][k][l] = src[(16p + l) * ld + k] for k < kc; +0 where
 * 16p + l >= rows. Each panel is kc * 16 floats. (Forward: x block -> panels of 16 samples.)
 * Full groups of 4 rows x 4 k are moved as 4 x 4 transposes.
 */
export function packRowsT16(src: usize, ld: i32, rows: i32, kc: i32, dst: usize): void {
  const rowBytes = <usize>ld << 2;
  const panelBytes = <usize>kc << 6;
  const k4 = kc & ~3;
  for (let g = 0; g < rows; g += 4) {
    // rows g..g+3 go to panel g >> 4, lanes (g & 15)..(g & 15) + 3
    const d0 = dst + <usize>(g >> 4) * panelBytes + (<usize>(g & 15) << 2);
    const s0 = src + <usize>g * rowBytes;
    if (g + 4 <= rows) {
      const s1 = s0 + rowBytes, s2 = s1 + rowBytes, s3 = s2 + rowBytes;
      for (let k = 0; k < k4; k += 4) {
        const off = <usize>k << 2;
        const r0 = v128.load(s0 + off), r1 = v128.load(s1 + off);
        const r2 = v128.load(s2 + off), r3 = v128.load(s3 + off);
        const t0 = v128.shuffle<i32>(r0, r1, 0, 4, 1, 5); // r0k0 r1k0 r0k1 r1k1
        const t1 = v128.shuffle<i32>(r2, r3, 0, 4, 1, 5); // r2k0 r3k0 r2k1 r3k1
        const t2 = v128.shuffle<i32>(r0, r1, 2, 6, 3, 7); // r0k2 r1k2 r0k3 r1k3
        const t3 = v128.shuffle<i32>(r2, r3, 2, 6, 3, 7); // r2k2 r3k2 r2k3 r3k3
        const d = d0 + (<usize>k << 6);
        v128.store(d, v128.shuffle<i64>(t0, t1, 0, 2), 0);
        v128.store(d, v128.shuffle<i64>(t0, t1, 1, 3), 64);
        v128.store(d, v128.shuffle<i64>(t2, t3, 0, 2), 128);
        v128.store(d, v128.shuffle<i64>(t2, t3, 1, 3), 192);
      }
      for (let k = k4; k < kc; k++) {
        const off = <usize>k << 2;
        const d = d0 + (<usize>k << 6);
        store<f32>(d, load<f32>(s0 + off), 0);
        store<f32>(d, load<f32>(s1 + off), 4);
        store<f32>(d, load<f32>(s2 + off), 8);
        store<f32>(d, load<f32>(s3 + off), 12);
      }
    } else {
      for (let l = 0; l < 4; l++) {
        const s = s0 + <usize>l * rowBytes;
        const live = g + l < rows;
        let d = d0 + (<usize>l << 2);
        for (let k = 0; k < kc; k++) {
          store<f32>(d, live ? load<f32>(s + (<usize>k << 2)) : <f32>0);
          d += 64;
        }
      }
    }
  }
  // lanes of the last panel past the last group of 4 rows
  const rows4 = (rows + 3) & ~3;
  const rows16 = (rows + 15) & ~15;
  for (let l = rows4; l < rows16; l++) {
    let d = dst + <usize>(l >> 4) * panelBytes + (<usize>(l & 15) << 2);
    for (let k = 0; k < kc; k++) {
      store<f32>(d, 0);
      d += 64;
    }
  }
}

/**
 * Panels of 16 columns: dst[p][r][l] = src[r * ld + 16p + l] for r < rows; +0 where
 * 16p + l >= cols. Each panel is rows * 16 floats. (Backward-input: w block; weight gradient: x block.)
 */
export function packCols16(src: usize, ld: i32, rows: i32, cols: i32, dst: usize): void {
  // rows outer, panels inner: the source is read row by row, sequentially (prefetcher friendly)
  const full = cols >> 4;
  const rest = cols & 15;
  const rowBytes = <usize>ld << 2;
  const panelBytes = <usize>rows << 6;
  for (let r = 0; r < rows; r++) {
    let s = src + <usize>r * rowBytes;
    let d = dst + (<usize>r << 6);
    for (let p = 0; p < full; p++) {
      v128.store(d, v128.load(s, 0), 0);
      v128.store(d, v128.load(s, 16), 16);
      v128.store(d, v128.load(s, 32), 32);
      v128.store(d, v128.load(s, 48), 48);
      s += 64; d += panelBytes;
    }
    if (rest != 0) {
      for (let l = 0; l < 16; l++) {
        store<f32>(d + (<usize>l << 2), l < rest ? load<f32>(s + (<usize>l << 2)) : <f32>0);
      }
    }
  }
}

/**
 * Pairs of columns, transposed: dst[q][r][l] = src[r * ld + 2q + l] for r < rows, l < 2; +0 where
 * 2q + l >= cols. Each pair is rows * 2 floats. (Weight gradient: dy block -> pairs of outputs,
 * 8 bytes a sample.)
 */
export function packPairs(src: usize, ld: i32, rows: i32, cols: i32, dst: usize): void {
  const rowBytes = <usize>ld << 2;
  const pairBytes = <usize>rows << 3;
  const full = cols >> 1;
  for (let r = 0; r < rows; r++) {
    const s = src + <usize>r * rowBytes;
    let d = dst + (<usize>r << 3);
    for (let q = 0; q < full; q++) {
      store<u64>(d, load<u64>(s + (<usize>q << 3)));
      d += pairBytes;
    }
    if (cols & 1) {
      store<f32>(d, load<f32>(s + (<usize>full << 3)));
      store<f32>(d, 0, 4);
    }
  }
}
