/**
 * Deterministic elementary functions: the core's own `exp`, `log` and `log1p`.
 *
 * `Math.exp` and `Math.log` are implementation-defined: JavaScript engines (even two builds of V8)
 * may return different last bits for the same argument. Every value that feeds a gradient must be
 * the same on every worker (docs/design.md "Invariant 3: canonical reduction tree"), so the core computes these functions itself with
 * IEEE-754-exact operations only: `+ - * /`, comparisons, integer arithmetic on the words of a double
 * (read and written through a module-level Float64Array/Uint32Array pair) and int32 conversions.
 * No `Math.*` transcendental is called, no fused multiply-add can happen (JavaScript has none), so
 * the results are bit-identical in Node, Chromium, Firefox and Safari.
 *
 * `exp`, `log` and `log1p` are ports of FreeBSD msun's (fdlibm's) e_exp.c, e_log.c and s_log1p.c,
 * the algorithms behind V8's own `Math.exp`/`Math.log`/`Math.log1p` (so in Node they agree bit for
 * bit): argument reduction plus a minimax polynomial, error below 1 ulp.
 * Special values follow IEEE / `Math.*`: exp(NaN) = NaN, exp(+Inf) = +Inf, exp(-Inf) = +0,
 * exp(x > 709.78...) = +Inf, exp(x < -745.13...) = +0, subnormal results where they exist;
 * log(NaN) = NaN, log(x < 0) = NaN, log(+-0) = -Inf, log(+Inf) = +Inf, subnormal arguments handled;
 * log1p(-1) = -Inf, log1p(x < -1) = NaN, log1p(+-0) = +-0.
 *
 * No allocation per call; not re-entrant across threads (there are none in JavaScript: each worker
 * or Web Worker has its own module instance).
 */
import { internalError } from './errors.js';

// One double and its two 32-bit words. The word order is the platform's, detected once.
const f64 = new Float64Array(1);
const u32 = new Uint32Array(f64.buffer);
f64[0] = 1; // 0x3FF00000_00000000
const HI = u32[1] === 0x3ff00000 ? 1 : 0;
const LO = 1 - HI;

/** High 32 bits of x, as a signed int32 (like fdlibm's GET_HIGH_WORD into an int32_t). */
function highWord(x: number): number {
  f64[0] = x;
  return u32[HI] | 0;
}

/** Low 32 bits of x, unsigned. Only valid right after highWord(x) with the same x. */
function lowWordOfLast(): number {
  return u32[LO];
}

/** The double whose words are (hi, lo). */
function fromWords(hi: number, lo: number): number {
  u32[HI] = hi >>> 0;
  u32[LO] = lo >>> 0;
  return f64[0];
}

// ---- exp (e_exp.c) ----

const E = 2.718281828459045; // 0x4005BF0A_8B145769, exp(1) correctly rounded
const O_THRESHOLD = 7.09782712893383973096e2; // 0x40862E42_FEFA39EF
const U_THRESHOLD = -7.45133219101941108420e2; // 0xC0874910_D52D3051
const LN2_HI = 6.93147180369123816490e-1; // 0x3FE62E42_FEE00000
const LN2_LO = 1.90821492927058770002e-10; // 0x3DEA39EF_35793C76
const INV_LN2 = 1.44269504088896338700; // 0x3FF71547_652B82FE
const P1 = 1.66666666666666019037e-1; // 0x3FC55555_5555553E
const P2 = -2.77777777770155933842e-3; // 0xBF66C16C_16BEBD93
const P3 = 6.61375632143793436117e-5; // 0x3F11566A_AF25DE2C
const P4 = -1.65339022054652515390e-6; // 0xBEBBBD41_C5D26BF1
const P5 = 4.13813679705723846039e-8; // 0x3E663769_72BEA4D0
const TWO_M1000 = 9.33263618503218878990e-302; // 2^-1000
const TWO_1023 = 8.98846567431157953865e307; // 2^1023

/**
 * e^x, within 1 ulp, the same bits in every JavaScript engine.
 *
 * Method (fdlibm): reduce x = k*ln2 + r with |r| <= 0.5*ln2 (r carried as hi - lo), approximate
 * e^r = 1 + r + r*c(r)/(2 - c(r)) with a degree-5 minimax polynomial in r^2, then scale by 2^k.
 */
export function exp(x: number): number {
  let hx = highWord(x);
  const xsb = hx >>> 31; // sign bit
  hx &= 0x7fffffff; // high word of |x|

  // Non-finite arguments, overflow and underflow.
  if (hx >= 0x40862e42) {
    // |x| >= 709.78...
    if (hx >= 0x7ff00000) {
      if (((hx & 0xfffff) | lowWordOfLast()) !== 0) return x + x; // NaN
      return xsb === 0 ? x : 0; // exp(+Inf) = +Inf, exp(-Inf) = +0
    }
    if (x > O_THRESHOLD) return Infinity;
    if (x < U_THRESHOLD) return 0;
  }

  // Argument reduction: x = k*ln2 + (hi - lo).
  let hi = 0;
  let lo = 0;
  let k = 0;
  if (hx > 0x3fd62e42) {
    // |x| > 0.5 ln2
    if (hx < 0x3ff0a2b2) {
      // and |x| < 1.5 ln2
      if (x === 1) return E; // the general path gets the last bit of e wrong
      if (xsb === 0) {
        hi = x - LN2_HI;
        lo = LN2_LO;
        k = 1;
      } else {
        hi = x + LN2_HI;
        lo = -LN2_LO;
        k = -1;
      }
    } else {
      // int32 truncation toward zero, like C's (int) cast; |value| < 1100 here.
      k = (INV_LN2 * x + (xsb === 0 ? 0.5 : -0.5)) | 0;
      hi = x - k * LN2_HI; // k*LN2_HI is exact: LN2_HI has 32 trailing zero bits
      lo = k * LN2_LO;
    }
    x = hi - lo;
  } else if (hx < 0x3e300000) {
    // |x| < 2^-28: e^x = 1 + x, correctly rounded
    return 1 + x;
  }

  // x is now in the primary range [-0.5 ln2, 0.5 ln2].
  const t = x * x;
  const c = x - t * (P1 + t * (P2 + t * (P3 + t * (P4 + t * P5))));
  if (k === 0) return 1 - ((x * c) / (c - 2) - x);
  const y = 1 - ((lo - (x * c) / (2 - c)) - hi);
  if (k >= -1021) {
    if (k === 1024) return y * 2 * TWO_1023;
    return y * fromWords(0x3ff00000 + (k << 20), 0); // y * 2^k
  }
  return y * fromWords(0x3ff00000 + ((k + 1000) << 20), 0) * TWO_M1000; // y * 2^(k+1000) * 2^-1000
}

// ---- log (e_log.c) ----

const TWO54 = 1.8014398509481984e16; // 2^54
const LG1 = 6.666666666666735130e-1; // 0x3FE55555_55555593
const LG2 = 3.999999999940941908e-1; // 0x3FD99999_9997FA04
const LG3 = 2.857142874366239149e-1; // 0x3FD24924_94229359
const LG4 = 2.222219843214978396e-1; // 0x3FCC71C5_1D8E78AF
const LG5 = 1.818357216161805012e-1; // 0x3FC74664_96CB03DE
const LG6 = 1.531383769920937332e-1; // 0x3FC39A09_D078C69F
const LG7 = 1.479819860511658591e-1; // 0x3FC2F112_DF3E5244

/**
 * Natural logarithm, within 1 ulp, the same bits in every JavaScript engine.
 *
 * Method (fdlibm): x = 2^k * (1 + f) with sqrt(2)/2 < 1 + f < sqrt(2); log(1 + f) = f - hfsq +
 * s*(hfsq + R(s^2)) with s = f/(2 + f), hfsq = f*f/2 and R a degree-7 minimax polynomial; then
 * log(x) = k*ln2_hi + (log(1 + f) + k*ln2_lo).
 */
export function log(x: number): number {
  let hx = highWord(x);
  const lx = lowWordOfLast();
  let k = 0;
  if (hx < 0x00100000) {
    // x < 2^-1022: zero, negative or subnormal
    if (((hx & 0x7fffffff) | lx) === 0) return -Infinity; // log(+-0) = -Inf
    if (hx < 0) return NaN; // log(negative) = NaN (also -Inf and negative NaNs)
    k -= 54;
    x *= TWO54; // scale a subnormal up
    hx = highWord(x);
  }
  if (hx >= 0x7ff00000) return x + x; // +Inf or NaN
  k += (hx >> 20) - 1023;
  hx &= 0x000fffff;
  const i0 = (hx + 0x95f64) & 0x100000;
  f64[0] = x;
  u32[HI] = (hx | (i0 ^ 0x3ff00000)) >>> 0; // normalise x or x/2 into [sqrt(2)/2, sqrt(2))
  x = f64[0];
  k += i0 >> 20;
  const f = x - 1;
  if ((0x000fffff & (2 + hx)) < 3) {
    // -2^-20 <= f < 2^-20
    if (f === 0) {
      if (k === 0) return 0;
      return k * LN2_HI + k * LN2_LO;
    }
    const r = f * f * (0.5 - 0.33333333333333333 * f);
    if (k === 0) return f - r;
    return k * LN2_HI - (r - k * LN2_LO - f);
  }
  const s = f / (2 + f);
  const z = s * s;
  const w = z * z;
  const t1 = w * (LG2 + w * (LG4 + w * LG6));
  const t2 = z * (LG1 + w * (LG3 + w * (LG5 + w * LG7)));
  const i = (hx - 0x6147a) | (0x6b851 - hx);
  const r = t2 + t1;
  if (i > 0) {
    const hfsq = 0.5 * f * f;
    if (k === 0) return f - (hfsq - s * (hfsq + r));
    return k * LN2_HI - (hfsq - (s * (hfsq + r) + k * LN2_LO) - f);
  }
  if (k === 0) return f - s * (f - r);
  return k * LN2_HI - (s * (f - r) - k * LN2_LO - f);
}

// ---- log1p (s_log1p.c) ----

const LP1 = 6.666666666666735130e-1; // 0x3FE55555_55555593
const LP2 = 3.999999999940941908e-1; // 0x3FD99999_9997FA04
const LP3 = 2.857142874366239149e-1; // 0x3FD24924_94229359
const LP4 = 2.222219843214978396e-1; // 0x3FCC71C5_1D8E78AF
const LP5 = 1.818357216161805012e-1; // 0x3FC74664_96CB03DE
const LP6 = 1.531383769920937332e-1; // 0x3FC39A09_D078C69F
const LP7 = 1.479819860511658591e-1; // 0x3FC2F112_DF3E5244

/**
 * log(1 + x), within 1 ulp also for tiny x, the same bits in every JavaScript engine.
 *
 * Method (fdlibm): 1 + x = 2^k * (1 + f) with sqrt(2)/2 < 1 + f < sqrt(2), keeping the rounding
 * error of 1 + x as a correction term c; then log(1 + f) as in `log`. log1p(-1) = -Inf,
 * log1p(x < -1) = NaN, log1p(+Inf) = +Inf, log1p(+-0) = +-0.
 */
export function log1p(x: number): number {
  const hx = highWord(x);
  const ax = hx & 0x7fffffff;
  let k = 1;
  let f = 0;
  let c = 0;
  let hu = 0;
  if (hx < 0x3fda827a) {
    // 1 + x < sqrt(2)+ (includes every negative x)
    if (ax >= 0x3ff00000) {
      // x <= -1 (or -Inf, or a negative NaN)
      if (x === -1) return -Infinity;
      return NaN;
    }
    if (ax < 0x3e200000) {
      // |x| < 2^-29
      if (ax < 0x3c900000) return x; // |x| < 2^-54
      return x - x * x * 0.5;
    }
    if (hx > 0 || hx <= (0xbfd2bec4 | 0)) {
      // sqrt(2)/2- <= 1 + x < sqrt(2)+
      k = 0;
      f = x;
      hu = 1;
    }
  }
  if (hx >= 0x7ff00000) return x + x; // +Inf or NaN
  if (k !== 0) {
    let u: number;
    if (hx < 0x43400000) {
      u = 1 + x;
      hu = highWord(u);
      k = (hu >> 20) - 1023;
      c = k > 0 ? 1 - (u - x) : x - (u - 1); // rounding error of 1 + x
      c /= u;
    } else {
      u = x;
      hu = highWord(u);
      k = (hu >> 20) - 1023;
      c = 0;
    }
    hu &= 0x000fffff;
    f64[0] = u;
    if (hu < 0x6a09e) {
      u32[HI] = hu | 0x3ff00000; // normalise u
    } else {
      k += 1;
      u32[HI] = hu | 0x3fe00000; // normalise u/2
      hu = (0x00100000 - hu) >> 2;
    }
    f = f64[0] - 1;
  }
  const hfsq = 0.5 * f * f;
  if (hu === 0) {
    // |f| < 2^-20
    if (f === 0) {
      if (k === 0) return 0;
      c += k * LN2_LO;
      return k * LN2_HI + c;
    }
    const r = hfsq * (1 - 0.66666666666666666 * f);
    if (k === 0) return f - r;
    return k * LN2_HI - ((r - (k * LN2_LO + c)) - f);
  }
  const s = f / (2 + f);
  const z = s * s;
  const r = z * (LP1 + z * (LP2 + z * (LP3 + z * (LP4 + z * (LP5 + z * (LP6 + z * LP7))))));
  if (k === 0) return f - (hfsq - s * (hfsq + r));
  return k * LN2_HI - ((hfsq - (s * (hfsq + r) + (k * LN2_LO + c))) - f);
}

// ---- cos (double-double, correctly rounded in practice) ----

/*
 * Unlike exp/log above, `cos` is not an fdlibm port: it serves the learning-rate schedules, whose
 * float64 values must equal what CPython's `math.cos` (glibc's `cos`, which rounds correctly but
 * for astronomically rare arguments) gives PyTorch's CosineAnnealingLR, and V8's fdlibm `cos` differs
 * from glibc's in the last bit for about 3% of the arguments pi*e/T. So the value is computed to
 * about 100 bits in double-double arithmetic (exact `+ - * /` only: Dekker's product, Knuth's sum)
 * and rounded once: the correctly rounded cosine unless the true value lies within ~2^-100
 * relative of a rounding boundary.
 */

const SPLITTER = 134217729; // 2^27 + 1, Dekker's split
// pi/2 in four parts of 33 bits (fdlibm's e_rem_pio2.c): k * PIO2_n is exact for k < 2^20.
const PIO2_1 = 1.57079632673412561417e0; // 0x3FF921FB_54400000
const PIO2_2 = 6.07710050630396597660e-11; // 0x3DD0B461_1A600000
const PIO2_3 = 2.02226624871116645580e-21; // 0x3BA3198A_2E000000
const PIO2_3T = 8.47842766036889956997e-32; // 0x397B839A_252049C1
const INV_PIO2 = 6.36619772367581382433e-1; // 0x3FE45F30_6DC9C883

// A double-double is (hi, lo) with |lo| <= ulp(hi)/2; results go through these two slots.
let ddHi = 0;
let ddLo = 0;

/** ddHi + ddLo = a + b exactly (Knuth's two-sum). */
function twoSum(a: number, b: number): void {
  const s = a + b;
  const bb = s - a;
  ddLo = (a - (s - bb)) + (b - bb);
  ddHi = s;
}

/** (ddHi, ddLo) = (ah, al) + (bh, bl), normalised. */
function ddAdd(ah: number, al: number, bh: number, bl: number): void {
  twoSum(ah, bh);
  const hi = ddHi;
  const lo = ddLo + al + bl;
  twoSum(hi, lo);
}

/** (ddHi, ddLo) = (ah, al) * (bh, bl), normalised (Dekker's exact product of the high parts). */
function ddMul(ah: number, al: number, bh: number, bl: number): void {
  const p = ah * bh;
  let t = SPLITTER * ah;
  const a1 = t - (t - ah);
  const a2 = ah - a1;
  t = SPLITTER * bh;
  const b1 = t - (t - bh);
  const b2 = bh - b1;
  const e = ((a1 * b1 - p) + a1 * b2 + a2 * b1) + a2 * b2;
  twoSum(p, e + (ah * bl + al * bh));
}

/** (ddHi, ddLo) = (ah, al) / b for a double b (one correction step). */
function ddDiv(ah: number, al: number, b: number): void {
  const q1 = ah / b;
  ddMul(q1, 0, b, 0);
  const r = ((ah - ddHi) - ddLo + al) / b;
  twoSum(q1, r);
}

/**
 * Taylor series of cos (odd false) or sin (odd true) of the double-double r (|r| <= pi/4), in
 * Horner form: 1 - r^2/(1*2) * (1 - r^2/(3*4) * (...)) for cos, r * (1 - r^2/(2*3) * (...)) for sin.
 * 16 terms leave an error below 2^-110 (r^32/32! < 2^-118). Result in (ddHi, ddLo).
 */
function ddSinCos(rh: number, rl: number, odd: boolean): void {
  ddMul(rh, rl, rh, rl);
  const zh = ddHi;
  const zl = ddLo;
  let sh = 1;
  let sl = 0;
  for (let n = 16; n >= 1; n--) {
    const a = odd ? 2 * n : 2 * n - 1;
    ddMul(sh, sl, zh, zl);
    ddDiv(ddHi, ddLo, a * (a + 1));
    ddAdd(1, 0, -ddHi, -ddLo);
    sh = ddHi;
    sl = ddLo;
  }
  if (odd) ddMul(sh, sl, rh, rl);
}

/**
 * cos(x) rounded once from a ~100-bit double-double value: the same bits in every engine, and
 * those of a correctly rounded cosine (glibc's, so CPython's `math.cos`) for every argument the
 * schedules use. |x| must be below 2^19 * pi/2 (824,000; larger arguments throw E_INTERNAL);
 * cos(NaN) = cos(+-Inf) = NaN.
 */
export function cos(x: number): number {
  if (Number.isNaN(x) || x === Infinity || x === -Infinity) return NaN;
  if (x < 0) x = -x;
  const k = Math.floor(x * INV_PIO2 + 0.5); // nearest multiple of pi/2 (floor is exact)
  if (k >= 524288) throw internalError(`cos: |x| must be below 2^19 * pi/2, got ${x}`); // 2^19
  // r = x - k*pi/2 in double-double, each k * PIO2_n exact, each cancelling sum exact (two-sum).
  twoSum(x, -k * PIO2_1);
  ddAdd(ddHi, ddLo, -k * PIO2_2, 0);
  ddAdd(ddHi, ddLo, -k * PIO2_3, -k * PIO2_3T);
  const q = k % 4; // cos(r + q*pi/2) = cos r, -sin r, -cos r, sin r
  ddSinCos(ddHi, ddLo, q === 1 || q === 3);
  const v = ddHi + ddLo;
  return q === 1 || q === 2 ? -v : v;
}
