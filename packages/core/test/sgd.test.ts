import { describe, it, expect } from 'vitest';
import { sgdStep, validateSgd, type SgdState } from '../src/sgd.js';
import { createSgdOptimizer } from '../src/sgd-wasm.js';
import { wasmSimdSupported } from '../src/kernels/wasm.js';
import { INTERNAL } from '../../../test/support/errors.js';

// Values chosen so every float32 operation is exact: the expected numbers are worked by hand from
// torch.optim.SGD's documented update.
const base = { lr: 0.5, momentum: 0, dampening: 0, weightDecay: 0, nesterov: false };

describe('SGD as torch.optim.SGD', () => {
  it('plain: p -= lr * gsum / denom', () => {
    const p = new Float32Array([1, -2]);
    sgdStep(p, new Float32Array([1, 3]), 2, base, { momentumBuffer: null });
    expect([...p]).toEqual([0.75, -2.75]);
  });

  it('momentum: the first step sets buf = g (dampening ignored), later ones buf = m*buf + (1-d)*g; weight decay adds wd*p', () => {
    const o = { ...base, momentum: 0.5, dampening: 0.5, weightDecay: 0.25 };
    const st: SgdState = { momentumBuffer: null };
    const p = new Float32Array([1]);
    sgdStep(p, new Float32Array([0.5]), 1, o, st);
    // g = 0.5 + 0.25*1 = 0.75; buf = 0.75; p = 1 - 0.5*0.75
    expect(st.momentumBuffer![0]).toBe(0.75);
    expect(p[0]).toBe(0.625);
    sgdStep(p, new Float32Array([0.5]), 1, o, st);
    // g = 0.5 + 0.25*0.625 = 0.65625; buf = 0.5*0.75 + 0.5*0.65625 = 0.703125; p = 0.625 - 0.5*0.703125
    expect(st.momentumBuffer![0]).toBe(0.703125);
    expect(p[0]).toBe(0.2734375);
  });

  it('nesterov: g + m*buf', () => {
    const o = { ...base, momentum: 0.5, weightDecay: 0.25, nesterov: true };
    const st: SgdState = { momentumBuffer: null };
    const p = new Float32Array([1]);
    sgdStep(p, new Float32Array([0.5]), 1, o, st);
    // g = 0.75; buf = 0.75; g = 0.75 + 0.5*0.75 = 1.125; p = 1 - 0.5625
    expect(p[0]).toBe(0.4375);
  });

  it('rejects what torch rejects', () => {
    expect(() => validateSgd({ ...base, nesterov: true })).toThrow(/nesterov/);
    expect(() => validateSgd({ ...base, momentum: 0.9, dampening: 0.1, nesterov: true })).toThrow(/nesterov/);
    expect(() => validateSgd({ ...base, lr: -1 })).toThrow(/lr/);
    expect(() => validateSgd({ ...base, lr: Number.NaN })).toThrow(/lr/);
  });
});

/** The straightforward loop (one branchy loop for every case), as the module comment states it. */
function referenceStep(params: Float32Array, gsum: Float32Array, denom: number, o: { lr: number; momentum: number; dampening: number; weightDecay: number; nesterov: boolean }, state: SgdState): void {
  const f = Math.fround;
  const n = params.length;
  const lr = f(o.lr), wd = f(o.weightDecay), mom = f(o.momentum), damp1 = f(1 - o.dampening), d = f(denom);
  let buf = state.momentumBuffer;
  const first = buf === null;
  if (o.momentum !== 0 && buf === null) buf = state.momentumBuffer = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    let g = f(gsum[i] / d);
    if (o.weightDecay !== 0) g = f(g + f(wd * params[i]));
    if (o.momentum !== 0) {
      const b = first ? g : f(f(mom * buf![i]) + f(damp1 * g));
      buf![i] = b;
      g = o.nesterov ? f(g + f(mom * b)) : b;
    }
    params[i] = f(params[i] - f(lr * g));
  }
}

describe('specialised SGD loops = the straightforward loop, bit for bit', () => {
  // Deterministic pseudo-random float32 values over many magnitudes, with signed zeros,
  // subnormals and infinities sprinkled in.
  let seed = 12345;
  const rand = (): number => {
    seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
    return seed / 2 ** 32;
  };
  const special = [0, -0, 1e-42, -1e-42, 3.4e38, Infinity, -Infinity, 1, -1];
  const randomArray = (n: number): Float32Array => {
    const a = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      a[i] = rand() < 0.02 ? special[Math.floor(rand() * special.length)] : (rand() * 2 - 1) * 2 ** Math.floor(rand() * 40 - 20);
    }
    return a;
  };
  /** The same without infinities (a gradient the optimizer accepts: it refuses non-finite ones). */
  const finiteArray = (n: number): Float32Array => randomArray(n).map((v) => (Number.isFinite(v) ? v : 3.4e38));
  const sameBits = (a: Float32Array, b: Float32Array): boolean => {
    const ua = new Uint32Array(a.buffer, a.byteOffset, a.length);
    const ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
    for (let i = 0; i < a.length; i++) {
      if (ua[i] !== ub[i] && !(Number.isNaN(a[i]) && Number.isNaN(b[i]))) return false;
    }
    return true;
  };

  const n = 4099;
  for (const momentum of [0, 0.9]) {
    for (const dampening of [0, 0.3]) {
      for (const weightDecay of [0, 1e-3]) {
        for (const nesterov of [false, true]) {
          const o = { lr: 0.0123, momentum, dampening, weightDecay, nesterov };
          it(`momentum ${momentum}, dampening ${dampening}, weight decay ${weightDecay}, nesterov ${nesterov}`, () => {
            const p0 = randomArray(n);
            const pa = p0.slice(), pb = p0.slice();
            const sa: SgdState = { momentumBuffer: null }, sb: SgdState = { momentumBuffer: null };
            for (let step = 0; step < 4; step++) {
              const g = randomArray(n);
              const denom = 1 + Math.floor(rand() * 300);
              sgdStep(pa, g, denom, o, sa);
              referenceStep(pb, g, denom, o, sb);
              expect(sameBits(pa, pb)).toBe(true);
              expect(sa.momentumBuffer === null).toBe(sb.momentumBuffer === null);
              if (sa.momentumBuffer !== null) expect(sameBits(sa.momentumBuffer, sb.momentumBuffer!)).toBe(true);
            }
          });
          // n = 4099 and 4 + 3: vectors and a scalar tail; n = 2: the tail alone.
          it.skipIf(!wasmSimdSupported())(`wasm: momentum ${momentum}, dampening ${dampening}, weight decay ${weightDecay}, nesterov ${nesterov}`, async () => {
            for (const len of [n, 7, 2]) {
              const p0 = randomArray(len);
              const opt = await createSgdOptimizer(len, { backend: 'wasm', params: p0 });
              expect(opt.backend).toBe('wasm');
              const pb = p0.slice();
              const sb: SgdState = { momentumBuffer: null };
              for (let step = 0; step < 4; step++) {
                const g = finiteArray(len);
                const denom = 1 + Math.floor(rand() * 300);
                // The staging buffer in place on odd steps, a copy from outside on even ones.
                if (step % 2 === 1) {
                  opt.grad.set(g);
                  expect(opt.step(opt.grad, denom, o)).toBe(true);
                } else expect(opt.step(g, denom, o)).toBe(true);
                referenceStep(pb, g, denom, o, sb);
                expect(sameBits(opt.params, pb)).toBe(true);
                expect(opt.state.momentumBuffer === null).toBe(sb.momentumBuffer === null);
                if (sb.momentumBuffer !== null) {
                  expect(opt.state.momentumBuffer!.length).toBe(len);
                  expect(sameBits(opt.state.momentumBuffer!, sb.momentumBuffer)).toBe(true);
                }
              }
            }
          });
        }
      }
    }
  }
});

describe('createSgdOptimizer', () => {
  it('resumes from a momentum buffer and keeps null until the first momentum step', async () => {
    const o = { lr: 0.5, momentum: 0.5, dampening: 0.5, weightDecay: 0.25, nesterov: false };
    for (const backend of wasmSimdSupported() ? (['wasm', 'ts'] as const) : (['ts'] as const)) {
      const opt = await createSgdOptimizer(1, { backend, params: new Float32Array([1]) });
      expect(opt.state.momentumBuffer).toBe(null);
      opt.step(new Float32Array([0.5]), 1, { ...o, momentum: 0 });
      expect(opt.state.momentumBuffer).toBe(null);
      const resumed = await createSgdOptimizer(1, { backend, params: new Float32Array([0.625]), momentumBuffer: new Float32Array([0.75]) });
      resumed.step(new Float32Array([0.5]), 1, o);
      // the worked example above: buf = 0.703125, p = 0.2734375
      expect(resumed.state.momentumBuffer![0]).toBe(0.703125);
      expect(resumed.params[0]).toBe(0.2734375);
      expect(() => resumed.step(new Float32Array(2), 1, o)).toThrow(/gradient has 2 floats/);
    }
  });
});

describe('SgdOptimizer.step refuses a non-finite gradient, changing nothing', () => {
  const o = { lr: 0.1, momentum: 0.9, dampening: 0.1, weightDecay: 1e-3, nesterov: false };
  const bitsOf = (a: Float32Array | null): number[] | null => (a ? [...new Uint32Array(a.slice().buffer)] : null);
  for (const backend of wasmSimdSupported() ? (['wasm', 'ts'] as const) : (['ts'] as const)) {
    it(`${backend}: NaN, +inf or -inf anywhere (vectors and the scalar tail), before and after the first momentum step`, async () => {
      for (const n of [1, 3, 4, 17, 4099]) {
        const p0 = Float32Array.from({ length: n }, (_, i) => Math.sin(i + 1));
        const opt = await createSgdOptimizer(n, { backend, params: p0 });
        const good = Float32Array.from({ length: n }, (_, i) => Math.cos(i) * 100);
        for (const firstDone of [false, true]) {
          if (firstDone) expect(opt.step(good, 7, o)).toBe(true);
          const before = { params: bitsOf(opt.params), momentum: bitsOf(opt.state.momentumBuffer), buf: opt.state.momentumBuffer };
          for (const bad of [Number.NaN, Infinity, -Infinity]) {
            for (const at of new Set([0, n - 1, n >> 1, Math.max(0, n - 3)])) {
              const g = good.slice();
              g[at] = bad;
              expect(opt.step(g, 7, o)).toBe(false);
              // the staging buffer in place, too
              opt.grad.set(g);
              expect(opt.step(opt.grad, 7, o)).toBe(false);
              expect(bitsOf(opt.params)).toEqual(before.params);
              expect(opt.state.momentumBuffer).toBe(before.buf);
              expect(bitsOf(opt.state.momentumBuffer)).toEqual(before.momentum);
            }
          }
        }
        // Still usable, with the bits of a reference that never saw the bad gradients.
        const ref = await createSgdOptimizer(n, { backend: 'ts', params: p0 });
        ref.step(good, 7, o);
        ref.step(good, 7, o);
        expect(opt.step(good, 7, o)).toBe(true);
        expect(bitsOf(opt.params)).toEqual(bitsOf(ref.params));
        expect(bitsOf(opt.state.momentumBuffer)).toEqual(bitsOf(ref.state.momentumBuffer));
      }
    });
  }

  it.skipIf(!wasmSimdSupported())('wasm: a momentum buffer replaced from outside is not taken over by a refused step', async () => {
    const opt = await createSgdOptimizer(2, { backend: 'wasm', params: new Float32Array([1, 2]) });
    const mine = new Float32Array([0.5, 0.25]);
    opt.state.momentumBuffer = mine;
    expect(opt.step(new Float32Array([1, Number.NaN]), 1, o)).toBe(false);
    expect(opt.state.momentumBuffer).toBe(mine);
    expect([...opt.params]).toEqual([1, 2]);
  });
});

describe('SgdOptimizer.beginStep: a step slice by slice = one step over the whole buffer', () => {
  const backends: ('ts' | 'wasm')[] = wasmSimdSupported() ? ['ts', 'wasm'] : ['ts'];
  // Slices of odd sizes and offsets (the scalar tails and unaligned starts of the SIMD loop).
  const n = 1037;
  const ranges = [{ offset: 0, length: 401 }, { offset: 401, length: 3 }, { offset: 404, length: 633 }];
  const rnd = (seed: number, len: number): Float32Array => {
    let x = seed;
    return Float32Array.from({ length: len }, () => {
      x = (x * 1103515245 + 12345) % 2 ** 31;
      return x / 2 ** 31 - 0.5;
    });
  };
  for (const backend of backends) {
    for (const momentum of [0, 0.9]) {
      for (const nesterov of momentum > 0 ? [false, true] : [false]) {
        for (const weightDecay of [0, 0.01]) {
          it(`${backend}: momentum ${momentum}, nesterov ${nesterov}, weight decay ${weightDecay}, three steps, slices in any order`, async () => {
            const o = { lr: 0.05, momentum, dampening: 0.1, weightDecay, nesterov };
            const p0 = rnd(1, n);
            const whole = await createSgdOptimizer(n, { backend, params: p0 });
            const parts = await createSgdOptimizer(n, { backend, params: p0 });
            for (let s = 0; s < 3; s++) {
              const g = rnd(10 + s, n);
              expect(whole.step(g, 7, o)).toBe(true);
              const st = parts.beginStep(7, o);
              for (const r of [ranges[2], ranges[0], ranges[1]]) expect(st.part(r, g.slice(r.offset, r.offset + r.length))).toBe(true);
              if (momentum > 0 && s === 0) expect(parts.state.momentumBuffer).toBeNull(); // the step is not over yet
              st.end();
              expect(Buffer.from(parts.params.buffer, parts.params.byteOffset, 4 * n).equals(Buffer.from(whole.params.buffer, whole.params.byteOffset, 4 * n))).toBe(true);
              if (momentum > 0) expect([...parts.state.momentumBuffer!]).toEqual([...whole.state.momentumBuffer!]);
              else expect(parts.state.momentumBuffer).toBeNull();
            }
          });
        }
      }
    }
    it(`${backend}: a non-finite slice changes nothing; a slice outside the buffer or of the wrong length throws`, async () => {
      const o = { lr: 0.05, momentum: 0.9, dampening: 0, weightDecay: 0, nesterov: false };
      const opt = await createSgdOptimizer(n, { backend, params: rnd(2, n) });
      const before = opt.params.slice();
      const st = opt.beginStep(3, o);
      const g = rnd(3, 3);
      g[1] = Number.NaN;
      expect(st.part(ranges[1], g)).toBe(false);
      expect([...opt.params]).toEqual([...before]);
      expect(() => st.part({ offset: n - 2, length: 3 }, new Float32Array(3))).toThrow(INTERNAL);
      expect(() => st.part(ranges[1], new Float32Array(4))).toThrow(INTERNAL);
    });
  }
});
