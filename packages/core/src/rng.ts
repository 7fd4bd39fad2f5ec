/**
 * gradhub's seeded generator (it does not try to match PyTorch's).
 *
 * xoshiro128** (Blackman & Vigna, 2018), 32-bit state words, seeded by running splitmix32 over
 * (seed, stream): every (seed, stream) pair gives an independent, reproducible sequence in every
 * JavaScript engine (only 32-bit integer operations and exact float64 arithmetic are used).
 * `stream` separates uses: parameter initialisation, each epoch's shuffle, ...
 * A float in [0, 1) is built from two outputs as (a >>> 5) * 2^26 + (b >>> 6), times 2^-53.
 */
import { internalError } from './errors.js';
export class Rng {
  private s0 = 0;
  private s1 = 0;
  private s2 = 0;
  private s3 = 0;

  constructor(seed: number, stream = 0) {
    if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) throw internalError(`seed must be an integer in [0, 2^32), got ${seed}`);
    let x = (seed ^ Math.imul(stream | 0, 0x9e3779b9)) >>> 0;
    const next = (): number => {
      // splitmix32
      x = (x + 0x9e3779b9) >>> 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.s0 = next();
    this.s1 = next();
    this.s2 = next();
    this.s3 = next();
    if ((this.s0 | this.s1 | this.s2 | this.s3) === 0) this.s0 = 1;
  }

  /** Next 32-bit unsigned integer. */
  nextU32(): number {
    const result = Math.imul(rotl(Math.imul(this.s1, 5), 7), 9) >>> 0;
    const t = this.s1 << 9;
    this.s2 ^= this.s0;
    this.s3 ^= this.s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = rotl(this.s3, 11);
    return result;
  }

  /** Uniform float64 in [0, 1) with 53 random bits. */
  nextFloat(): number {
    const a = this.nextU32() >>> 5;
    const b = this.nextU32() >>> 6;
    return (a * 67108864 + b) / 9007199254740992;
  }

  /** Uniform integer in [0, n), n <= 2^32 (multiply-shift on 53 bits: bias below 2^-20 for n < 2^32). */
  nextBelow(n: number): number {
    return Math.floor(this.nextFloat() * n);
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

/** Streams of the generator, fixed forever (every hash depends on them). */
export const RngStream = {
  /** Parameter initialisation. */
  init: 1,
  /** Epoch e's shuffle uses stream shuffleBase + e. */
  shuffleBase: 1000,
} as const;
