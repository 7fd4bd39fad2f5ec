/**
 * Single-thread train step of an MLP (forward + loss + backward + SGD) through the core's engine:
 * samples/s, GFLOP/s by the 6 x parameters x batch convention, and how the step's time splits.
 */
import { createEngine, createWasmBackend, createOracleBackend, engineFloats, modelSpec, sgdStep, initParams } from '@gradhub/core';

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/**
 * @param {{ sizes?: number[], batch: number, backend?: 'wasm'|'ts', reps?: number, chunk?: number }} o
 */
export async function benchTrainStep(o) {
  const sizes = o.sizes ?? [3072, 2048, 2048, 10];
  const spec = modelSpec(sizes);
  const backend = o.backend === 'ts' ? createOracleBackend() : await createWasmBackend({ capacityFloats: engineFloats(spec, o.batch) });
  const engine = createEngine({ spec, backend, maxBatch: o.batch, chunk: o.chunk ?? 16, normalize: false });
  initParams(spec, 0, engine.params);
  const pixels = new Uint8Array(o.batch * 3072);
  const labels = new Uint8Array(o.batch);
  for (let i = 0; i < pixels.length; i++) pixels[i] = (i * 2654435761) >>> 24;
  for (let i = 0; i < labels.length; i++) labels[i] = i % 10;
  const sgd = { lr: 1e-3, momentum: 0.9, dampening: 0, weightDecay: 0, nesterov: false };
  const state = { momentumBuffer: null };
  const reps = o.reps ?? 5;
  const fwd = [];
  const full = [];
  const upd = [];
  for (let r = 0; r <= reps; r++) {
    let t = performance.now();
    engine.computeSums(pixels, labels, o.batch, false);
    const tf = performance.now() - t;
    t = performance.now();
    const sums = engine.computeSums(pixels, labels, o.batch, true);
    const tb = performance.now() - t;
    t = performance.now();
    sgdStep(engine.params, engine.grads, sums.denomSum, sgd, state);
    const ts = performance.now() - t;
    if (r === 0) continue; // warm-up
    fwd.push(tf);
    full.push(tb);
    upd.push(ts);
  }
  const step = median(full) + median(upd);
  const flops = 6 * spec.paramCount * o.batch;
  return {
    model: sizes.join(','),
    batch: o.batch,
    backend: backend.name,
    samples_per_s: (o.batch / step) * 1000,
    gflops: flops / (step / 1000) / 1e9,
    step_ms: step,
    split_ms: { forward_and_loss: median(fwd), backward: median(full) - median(fwd), sgd: median(upd) },
  };
}
