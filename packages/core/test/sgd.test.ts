import { describe, it, expect } from 'vitest';
import { sgdStep, validateSgd, type SgdState } from '../src/sgd.js';

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
