/**
 * The engine (forward, fused loss, backward) and SGD against PyTorch's tiny MLP
 * (test/fixtures/reference/tiny_mlp.json): logits, loss and every parameter's gradient, tensor by
 * tensor, for 3 SGD steps, plus a finite-difference check of the engine's gradient.
 */
import { describe, it, expect } from 'vitest';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { REFERENCE_DIR } from '../../../test/fixtures/index.js';
import { createEngine } from '../src/engine.js';
import { modelSpec, namedViews } from '../src/model.js';
import { createOracleBackend } from '../src/kernels/oracle.js';
import { sgdStep } from '../src/sgd.js';

const ref = JSON.parse(readFileSync(path.join(REFERENCE_DIR, 'tiny_mlp.json'), 'utf8'));
const names: Record<string, string> = {
  'fc1.weight': 'layers.0.weight', 'fc1.bias': 'layers.0.bias',
  'fc2.weight': 'layers.1.weight', 'fc2.bias': 'layers.1.bias',
  'fc3.weight': 'layers.2.weight', 'fc3.bias': 'layers.2.bias',
};
const flat = (v: unknown): number[] => (Array.isArray(v) ? (v as unknown[]).flatMap(flat) : [v as number]);

function expectClose(got: ArrayLike<number>, want: number[], what: string, rtol = 1e-5, atol = 1e-6): void {
  expect(got.length, what).toBe(want.length);
  for (let i = 0; i < want.length; i++) {
    const tol = atol + rtol * Math.abs(want[i]);
    if (!(Math.abs(got[i] - want[i]) <= tol)) throw new Error(`${what}[${i}]: got ${got[i]}, want ${want[i]} (tol ${tol})`);
  }
}

describe('engine vs PyTorch tiny MLP (12-8-8-3, CE mean, SGD lr 0.1)', () => {
  const spec = modelSpec([12, 8, 8, 3]);
  const x = flat(ref.x);
  const y: number[] = ref.y;
  const n = y.length;

  function setup(chunk: number) {
    const engine = createEngine({ spec, backend: createOracleBackend(), maxBatch: n, chunk, normalize: false });
    const views = namedViews(spec, engine.params);
    for (const [tn, gn] of Object.entries(names)) views.get(gn)!.set(flat(ref.init_params[tn]));
    return engine;
  }

  for (const chunk of [1, 4, 16]) {
    it(`matches logits, loss and gradients of 3 steps, and the final params (chunk ${chunk})`, () => {
      const engine = setup(chunk);
      for (let k = 0; k < 3; k++) {
        const st = ref.steps[k];
        engine.input(n).set(x);
        const sums = engine.forwardBackward(y, n, true);
        expectClose(engine.logits(n), flat(st.logits), `step ${k} logits`);
        expect(sums.denomSum).toBe(n);
        expectClose([sums.lossSum / sums.denomSum], [st.loss], `step ${k} loss`);
        const g = namedViews(spec, engine.grads);
        for (const [tn, gn] of Object.entries(names)) {
          expectClose(g.get(gn)!.map((v) => v / n), flat(st.grads[tn]), `step ${k} grad ${gn}`);
        }
        sgdStep(engine.params, engine.grads, sums.denomSum, { lr: ref.lr, momentum: 0, dampening: 0, weightDecay: 0, nesterov: false }, { momentumBuffer: null });
      }
      const p = namedViews(spec, engine.params);
      for (const [tn, gn] of Object.entries(names)) expectClose(p.get(gn)!, flat(ref.params_after_3_steps[tn]), `final ${gn}`);
      engine.input(n).set(x);
      const last = engine.forwardBackward(y, n, false);
      expectClose([last.lossSum / n], [ref.loss_after_3_steps], 'loss after 3 steps');
    });
  }

  it('gradient agrees with central finite differences of the loss sum', () => {
    const engine = setup(4);
    engine.input(n).set(x);
    engine.forwardBackward(y, n, true);
    const grads = Float64Array.from(engine.grads);
    const lossAt = (): number => {
      engine.input(n).set(x);
      return engine.forwardBackward(y, n, false).lossSum;
    };
    // float32 forward: a step of 1e-3 keeps rounding noise (~2e-4) under the tolerance and no pre-activation (min |z| 0.0034) crosses a kink.
    const h = 1e-3;
    let checked = 0;
    for (let i = 0; i < spec.paramCount; i += 3) {
      const p0 = engine.params[i];
      engine.params[i] = p0 + h;
      const up = lossAt();
      engine.params[i] = p0 - h;
      const down = lossAt();
      engine.params[i] = p0;
      const fd = (up - down) / (2 * h);
      expect(Math.abs(fd - grads[i])).toBeLessThan(2e-3 + 2e-2 * Math.abs(grads[i]));
      checked++;
    }
    expect(checked).toBeGreaterThan(40);
  });
});
