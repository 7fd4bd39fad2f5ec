import { describe, it, expect } from 'vitest';
import { sgdStep, validateSgd, type SgdState } from '../src/sgd.js';
import { createSgdOptimizer } from '../src/sgd-wasm.js';
import { wasmSimdSupported } from '../src/kernels/wasm.js';

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
                const g = randomArray(len);
                const denom = 1 + Math.floor(rand() * 300);
                // The staging buffer in place on odd steps, a copy from outside on even ones.
                if (step % 2 === 1) {
                  opt.grad.set(g);
                  opt.step(opt.grad, denom, o);
                } else opt.step(g, denom, o);
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
