/**
 * Train step of an MLP (forward + loss + backward + SGD) through the core's engine: samples/s,
 * GFLOP/s by the 6 x parameters x batch convention, and how the step's time splits. `threads` > 1
 * runs the wasm kernels on that many threads, started by `spawn` (Node: @gradhub/worker's
 * spawnNodeKernelThread; this file is also bundled for a browser tab by browser.js, so it imports
 * nothing Node-only). The SGD step stays on one thread (it runs on the coordinator): the trainer's
 * path, createSgdOptimizer (WebAssembly SIMD), with the gradient copied into its memory (counted in
 * the sgd column) and the new parameters copied back to the engine (not counted: the executor's copy).
 */
import { createEngine, createOracleBackend, createSgdOptimizer, createThreadedWasmBackend, engineFloats, modelSpec, initParams } from '@gradhub/core';

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/**
 * @param {{ sizes?: number[], batch: number, backend?: 'wasm'|'ts', threads?: number, spawn?: import('@gradhub/core').KernelThreadSpawner, reps?: number, chunk?: number }} o
 */
export async function benchTrainStep(o) {
  const sizes = o.sizes ?? [3072, 2048, 2048, 10];
  const spec = modelSpec(sizes);
  const threads = o.threads ?? 1;
  const backend = o.backend === 'ts' ? createOracleBackend() : await createThreadedWasmBackend({ capacityFloats: engineFloats(spec, o.batch), threads, spawn: o.spawn });
  try {
    return await measure(o, sizes, spec, backend, threads);
  } finally {
    backend.close?.();
  }
}

async function measure(o, sizes, spec, backend, threads) {
  const engine = createEngine({ spec, backend, maxBatch: o.batch, chunk: o.chunk ?? 16, normalize: false });
  initParams(spec, 0, engine.params);
  const pixels = new Uint8Array(o.batch * 3072);
  const labels = new Uint8Array(o.batch);
  for (let i = 0; i < pixels.length; i++) pixels[i] = (i * 2654435761) >>> 24;
  for (let i = 0; i < labels.length; i++) labels[i] = i % 10;
  const sgd = { lr: 1e-3, momentum: 0.9, dampening: 0, weightDecay: 0, nesterov: false };
  const opt = await createSgdOptimizer(spec.paramCount, { params: engine.params });
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
    opt.step(engine.grads, sums.denomSum, sgd);
    const ts = performance.now() - t;
    engine.params.set(opt.params);
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
    threads,
    samples_per_s: (o.batch / step) * 1000,
    gflops: flops / (step / 1000) / 1e9,
    step_ms: step,
    /** forward + loss + backward: the worker's share of a step */
    compute_ms: median(full),
    split_ms: { forward_and_loss: median(fwd), backward: median(full) - median(fwd), sgd: median(upd) },
  };
}
