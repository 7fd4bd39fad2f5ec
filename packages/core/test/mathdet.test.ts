// The core's deterministic exp/log/log1p: against Math.* over the whole range (in ulps of float64),
// against exact values computed with BigInt fixed-point arithmetic, special values and identities.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { cos, exp, log, log1p } from '../src/mathdet.js';
import { INTERNAL } from '../../../test/support/errors.js';

const f64 = new Float64Array(1);
const i64 = new BigInt64Array(f64.buffer);

/** The double's position on the number line of doubles (monotone, -0 and +0 both 0). */
function ordinal(x: number): bigint {
  f64[0] = x;
  const v = i64[0];
  return v < 0n ? -(v & 0x7fffffffffffffffn) : v;
}

/** Distance in ulps between two doubles (0 for equal values or two NaNs, Infinity if one is not finite). */
function ulpDistance(a: number, b: number): number {
  if (Object.is(a, b) || (Number.isNaN(a) && Number.isNaN(b))) return 0;
  if (a === b) return 0; // +0 / -0
  if (!Number.isFinite(a) || !Number.isFinite(b)) return Infinity;
  const d = ordinal(a) - ordinal(b);
  return Number(d < 0n ? -d : d);
}

/** Deterministic uniform numbers in [0, 1) (xorshift32; only test data). */
function uniform(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 2 ** 32;
  };
}

/** 100k arguments per function spread over its whole domain, bands chosen for each. */
function samples(kind: 'exp' | 'log' | 'log1p'): number[] {
  const u = uniform(kind === 'exp' ? 11 : kind === 'log' ? 22 : 33);
  const xs: number[] = [];
  const per = 20_000;
  for (let i = 0; i < per; i++) {
    if (kind === 'exp') {
      xs.push((2 * u() - 1) * 750); // overflow, normal, subnormal and underflow results
      xs.push((2 * u() - 1) * 2); // near 0, the k = 0 and |k| = 1 branches
      xs.push((u() < 0.5 ? -1 : 1) * u() * 2 ** (-20 - 60 * u())); // tiny arguments
      xs.push(-708 - 37.2 * u()); // subnormal results
      xs.push(700 + 9.8 * u()); // near overflow, k = 1024
    } else if (kind === 'log') {
      xs.push(2 ** (2046 * u() - 1022) * (1 + u())); // every normal binade
      xs.push(u() * 2 ** -1022); // subnormal arguments
      xs.push(0.5 + u()); // around 1
      xs.push(1 + (2 * u() - 1) * 2 ** (-20 - 30 * u())); // within 2^-20 of 1
      xs.push(u() * 100); // ordinary values
    } else {
      xs.push(-1 + u() * 2); // [-1, 1)
      xs.push((u() < 0.5 ? -1 : 1) * u() * 2 ** (-60 * u())); // small, both signs
      xs.push(2 ** (1023 * u()) * (1 + u())); // large
      xs.push(-0.3 + 0.72 * u()); // the k = 0 band
      xs.push((2 * u() - 1) * 2 ** -25); // around the |x| < 2^-29 shortcuts
    }
  }
  return xs;
}

describe('exp, log, log1p against Math.exp, Math.log, Math.log1p', () => {
  const cases = [
    ['exp', exp, Math.exp],
    ['log', log, Math.log],
    ['log1p', log1p, Math.log1p],
  ] as const;
  for (const [name, mine, engine] of cases) {
    it(`${name}: 100,000 arguments, at most 1 ulp apart, almost all bit-equal`, () => {
      const xs = samples(name);
      expect(xs.length).toBe(100_000);
      let maxUlp = 0;
      let equal = 0;
      for (const x of xs) {
        const d = ulpDistance(mine(x), engine(x));
        if (d > maxUlp) maxUlp = d;
        if (d === 0) equal++;
      }
      expect(maxUlp).toBeLessThanOrEqual(1);
      // Node's Math.exp/log/log1p are fdlibm too, so they agree everywhere; another engine may not.
      expect(equal / xs.length).toBeGreaterThanOrEqual(0.99);
    });
  }
});

// ---------------------------------------------------------------------------------------------
// Exact references: 320-bit fixed point with BigInt, so errors are measured against the true value.

const P = 320n;
const ONE = 1n << P;

/** ln 2 = sum_k 1 / (k 2^k), to P bits. */
const LN2 = (() => {
  let s = 0n;
  for (let k = 1n; k < P + 16n; k++) s += ONE / (k << k);
  return s;
})();

/** The double as mantissa * 2^exponent (mantissa an integer, subnormals included; finite x). */
function decompose(x: number): { m: bigint; e: number } {
  f64[0] = x;
  const bits = i64[0] & 0x7fffffffffffffffn;
  const field = Number(bits >> 52n);
  const frac = bits & ((1n << 52n) - 1n);
  const m = field === 0 ? frac : frac | (1n << 52n);
  return { m: x < 0 ? -m : m, e: field === 0 ? -1074 : field - 1075 };
}

/** a * 2^s for a BigInt a and an integer s (floor when s < 0). */
function shift(a: bigint, s: number): bigint {
  return s >= 0 ? a << BigInt(s) : a >> BigInt(-s);
}

/** |y - v * 2^(scale - P)| in ulps of the double y (normal or subnormal y, v fixed point). */
function ulpError(y: number, v: bigint, scale: number): number {
  const F = 40; // fractional bits of the error
  const { m, e } = decompose(y);
  const d = (m << BigInt(F)) - shift(v, scale - Number(P) - e + F);
  return Number(d < 0n ? -d : d) / 2 ** F;
}

/** e^x as a P-bit fixed-point mantissa and a power of two: e^x = v * 2^(k - P). */
function exactExp(x: number): { v: bigint; k: number } {
  const { m, e } = decompose(x);
  const X = shift(m, e + Number(P));
  const k = Math.round(x / Math.LN2);
  const r = X - BigInt(k) * LN2; // |r| <= 0.35 (fixed point)
  let term = ONE;
  let sum = ONE;
  for (let i = 1n; term !== 0n; i++) {
    term = (term * r) / (i * ONE);
    sum += term;
  }
  return { v: sum, k };
}

/** log x for finite x > 0, fixed point with P fractional bits. */
function exactLog(x: number): bigint {
  const { m, e } = decompose(x);
  const bits = m.toString(2).length;
  const M = m << (P - BigInt(bits - 1)); // mantissa in [1, 2), fixed point
  const u = ((M - ONE) * ONE) / (M + ONE); // log M = 2 atanh(u), 0 <= u < 1/3
  const u2 = (u * u) / ONE;
  let pow = u;
  let s = 0n;
  for (let j = 1n; pow !== 0n; j += 2n) {
    s += pow / j;
    pow = (pow * u2) / ONE;
  }
  return BigInt(e + bits - 1) * LN2 + 2n * s;
}

describe('accuracy against exact values (BigInt, 320 bits)', () => {
  it('exp is within 1 ulp of the true value (normal and subnormal results)', () => {
    const u = uniform(7);
    let worst = 0;
    for (let i = 0; i < 3000; i++) {
      const x = i % 3 === 0 ? (2 * u() - 1) * 4 : -744 + 1453 * u();
      const y = exp(x);
      if (y === 0 || y === Infinity || Math.abs(x) < 2 ** -200) continue;
      const { v, k } = exactExp(x);
      worst = Math.max(worst, ulpError(y, v, k));
    }
    expect(worst).toBeLessThan(1);
  });

  it('log is within 1 ulp of the true value (normal and subnormal arguments)', () => {
    const u = uniform(8);
    let worst = 0;
    for (let i = 0; i < 3000; i++) {
      const x = i % 3 === 0 ? 0.5 + 1.5 * u() : i % 3 === 1 ? 2 ** (2090 * u() - 1070) * (1 + u()) : 1 + (2 * u() - 1) * 2 ** -30;
      const y = log(x);
      if (y === 0) continue;
      worst = Math.max(worst, ulpError(y, exactLog(x), 0));
    }
    expect(worst).toBeLessThan(1);
  });
});

// ---------------------------------------------------------------------------------------------

describe('special values and identities', () => {
  it('exp matches Math.exp on special values, thresholds and extremes', () => {
    const xs = [0, -0, 1, -1, Number.NaN, Infinity, -Infinity, 709.782712893384, 709.7827128933841, 709.78, 710,
      -745.1332191019411, -745.1332191019412, -745, -746, -708.4, 5e-324, -5e-324, 2 ** -28, -(2 ** -28), 2 ** -1022,
      Number.MAX_VALUE, -Number.MAX_VALUE, 0.5 * Math.LN2, 1.5 * Math.LN2, -1.5 * Math.LN2];
    for (const x of xs) expect(Object.is(exp(x), Math.exp(x)), `exp(${x})`).toBe(true);
    expect(exp(0)).toBe(1);
    expect(exp(-0)).toBe(1);
    expect(exp(1)).toBe(Math.E);
    expect(exp(Infinity)).toBe(Infinity);
    expect(Object.is(exp(-Infinity), 0)).toBe(true);
    expect(exp(710)).toBe(Infinity);
    expect(Object.is(exp(-746), 0)).toBe(true);
    expect(exp(-745)).toBe(5e-324); // the smallest subnormal
    expect(exp(Number.NaN)).toBeNaN();
  });

  it('log matches Math.log on special values and extremes', () => {
    const xs = [0, -0, 1, -1, 2, 0.5, Math.E, Number.NaN, Infinity, -Infinity, 5e-324, 2 ** -1022, 2 ** -1022 - 5e-324,
      Number.MAX_VALUE, 1 + 2 ** -52, 1 - 2 ** -53, 10, 1e-300];
    for (const x of xs) expect(Object.is(log(x), Math.log(x)), `log(${x})`).toBe(true);
    expect(Object.is(log(1), 0)).toBe(true);
    expect(log(0)).toBe(-Infinity);
    expect(log(-0)).toBe(-Infinity);
    expect(log(-1)).toBeNaN();
    expect(log(Infinity)).toBe(Infinity);
    expect(log(2)).toBe(Math.LN2);
    expect(log(10)).toBe(Math.LN10);
    // log(2^k) = k ln 2 to within an ulp, over every exponent.
    for (let k = -1074; k <= 1023; k++) expect(ulpDistance(log(2 ** k), k * Math.LN2), `log(2^${k})`).toBeLessThanOrEqual(1);
  });

  it('log1p matches Math.log1p on special values', () => {
    const xs = [0, -0, -1, -2, 1, Number.NaN, Infinity, -Infinity, 5e-324, -5e-324, 2 ** -29, 2 ** -54, 2 ** 53, Number.MAX_VALUE, -0.2929, 0.4142];
    for (const x of xs) expect(Object.is(log1p(x), Math.log1p(x)), `log1p(${x})`).toBe(true);
    expect(Object.is(log1p(-0), -0)).toBe(true);
    expect(log1p(-1)).toBe(-Infinity);
  });

  it('exp and log are near-inverses: log(exp(x)) within a few ulps of x', () => {
    const u = uniform(3);
    for (let i = 0; i < 2000; i++) {
      const x = (2 * u() - 1) * 700;
      const back = log(exp(x));
      expect(Math.abs(back - x)).toBeLessThanOrEqual(4 * Number.EPSILON * Math.max(1, Math.abs(x)));
    }
  });

  it('the numerics modules never call an engine-defined Math function', () => {
    for (const file of ['mathdet.ts', 'losses.ts']) {
      const src = readFileSync(new URL(`../src/${file}`, import.meta.url), 'utf8').replace(/\/\*[\s\S]*?\*\/|\/\/.*$/gm, '');
      expect(src, file).not.toMatch(/Math\.(exp|expm1|log|log1p|log2|log10|pow|sqrt|cbrt|sin|cos|tan|tanh|sinh|cosh|atan|atan2|asin|acos|hypot)\b/);
      expect(src, file).not.toMatch(/\*\*/);
    }
  });
});

describe('cos (double-double, rounded once)', () => {
  it('gives the correctly rounded value where a 1-ulp algorithm may not (values checked with mpmath at 300 bits)', () => {
    // cos(fl(pi/2 + 2^-52)) = -1.60812264967663649223...e-16: the nearer double is ...66e-16 (glibc says ...64e-16).
    expect(cos(1.5707963267948968)).toBe(-1.6081226496766366e-16);
    expect(cos(3.7860219158646227)).toBe(-0.7994427634035012); // -0.79944276340350112215...
    expect(cos(3.737411949960271)).toBe(-0.8276889981568906); // -0.82768899815689062070...
  });
  it('special values, symmetry, and the argument bound', () => {
    expect(cos(0)).toBe(1);
    expect(cos(-0)).toBe(1);
    expect(cos(Math.PI)).toBe(-1);
    expect(cos(-2.5)).toBe(cos(2.5));
    expect(Number.isNaN(cos(Number.NaN))).toBe(true);
    expect(Number.isNaN(cos(Infinity))).toBe(true);
    expect(() => cos(1e7)).toThrow(INTERNAL);
  });
  it('agrees with Math.cos to within one ulp on a grid of pi*e/T', () => {
    const f = new Float64Array(2);
    const bits = new BigInt64Array(f.buffer);
    for (let t = 1; t <= 60; t++) {
      for (let e = 0; e <= 2 * t; e++) {
        const x = (Math.PI * e) / t;
        f[0] = cos(x);
        f[1] = Math.cos(x);
        const d = bits[0] > bits[1] ? bits[0] - bits[1] : bits[1] - bits[0];
        if (d > 1n && Math.abs(f[0] - f[1]) > 1e-300) expect.fail(`cos(${x}): ${f[0]} vs Math.cos ${f[1]}`);
      }
    }
  });
});
