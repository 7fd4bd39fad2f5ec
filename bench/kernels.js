/**
 * GEMM kernel throughput (single thread): GFLOP/s of the three kernels of a linear layer
 * (forward with ReLU, backward-input with the ReLU mask, weight gradient along the chunk tree) for
 * each layer shape of an MLP, and for a whole train step's GEMMs (the 'step' row: each kernel
 * summed over the layers, and the total with FLOPs counted as 6 x params x batch), on the
 * WebAssembly SIMD backend; the TypeScript oracle only on a small shape (it runs at about
 * 1 GFLOP/s), next to the wasm backend on the same shape. Each figure is the median of several timed runs after a warm-up
 * that lets V8 tier the module up to its optimising compiler. Run after `npm run build`:
 *
 *   node bench/kernels.js [--quick] [--model 3072,2048,2048,10] [--batch 64,256] [--chunk 16]
 *
 * `benchKernels(options)` returns the rows (bench/run.js prints them with the other benchmarks).
 */
import { pathToFileURL } from 'node:url';
import { createOracleBackend, createWasmBackend, modelSpec } from '@gradhub/core';

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Median milliseconds of `fn()` over `reps` runs, after a warm-up (V8 tiers wasm up in the background). */
async function timeMs(fn, reps) {
  for (let i = 0; i < 3; i++) fn();
  await pause(20);
  fn();
  const ms = [];
  for (let i = 0; i < reps; i++) {
    const t = performance.now();
    fn();
    ms.push(performance.now() - t);
  }
  return median(ms);
}

function fillUniform(a, seed) {
  let s = seed >>> 0;
  for (let i = 0; i < a.length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    a[i] = s / 2 ** 31 - 1;
  }
  return a;
}

/** Storage of one layer (x (N, IN), w (OUT, IN), b, y (N, OUT), dy, dx, dw, db) in `backend`. */
function layerArrays(backend, n, inF, outF, seed) {
  const alloc = (len) => backend.allocF32(len);
  return {
    x: fillUniform(alloc(n * inF), seed),
    w: fillUniform(alloc(outF * inF), seed + 1),
    b: fillUniform(alloc(outF), seed + 2),
    y: alloc(n * outF),
    dy: fillUniform(alloc(n * outF), seed + 3),
    dx: alloc(n * inF),
    dw: alloc(outF * inF),
    db: alloc(outF),
  };
}

function layerFloats(n, inF, outF) {
  return 2 * n * inF + 2 * n * outF + 2 * inF * outF + 2 * outF + 8 * 4; // + alignment slack
}

/** Time the three kernels on one shape; returns milliseconds for each. */
async function timeLayer(backend, a, n, inF, outF, chunk, reps) {
  return {
    fwd: await timeMs(() => backend.linearForward(a.x, a.w, a.b, a.y, n, inF, outF, true), reps),
    bwdInput: await timeMs(() => backend.linearBackwardInput(a.dy, a.w, a.dx, n, inF, outF, a.x), reps),
    bwdWeight: await timeMs(() => backend.linearBackwardWeight(a.dy, a.x, a.dw, a.db, n, inF, outF, chunk), reps),
  };
}

const gflops = (flops, ms) => flops / (ms / 1000) / 1e9;

function row(backend, shape, batch, ms, flops) {
  return {
    backend,
    gemm: shape,
    batch,
    'fwd GFLOP/s': gflops(flops, ms.fwd),
    'bwd-input GFLOP/s': gflops(flops, ms.bwdInput),
    'bwd-weight GFLOP/s': gflops(flops, ms.bwdWeight),
    'total ms': ms.fwd + ms.bwdInput + ms.bwdWeight,
    'total GFLOP/s': gflops(3 * flops, ms.fwd + ms.bwdInput + ms.bwdWeight),
  };
}

/**
 * @param {{ quick?: boolean, sizes?: number[], batches?: number[], chunk?: number,
 *   oracleShape?: { n: number, inF: number, outF: number } }} [options]
 * @returns {Promise<object[]>} one row per (batch, layer), one 'step' row per batch, and the
 *   oracle-vs-wasm rows on the small shape.
 */
export async function benchKernels(options = {}) {
  const sizes = options.sizes ?? [3072, 2048, 2048, 10];
  const batches = options.batches ?? [64, 256];
  const chunk = options.chunk ?? 16;
  const reps = options.quick ? 3 : 7;
  const spec = modelSpec(sizes);
  const rows = [];

  for (const n of batches) {
    let capacity = 0;
    for (const l of spec.layers) capacity += layerFloats(n, l.inF, l.outF);
    const wasm = await createWasmBackend({ capacityFloats: capacity });
    const sum = { fwd: 0, bwdInput: 0, bwdWeight: 0 };
    let gemmFlops = 0;
    for (const l of spec.layers) {
      const a = layerArrays(wasm, n, l.inF, l.outF, 17 * l.index + n);
      const ms = await timeLayer(wasm, a, n, l.inF, l.outF, chunk, reps);
      rows.push(row('wasm', `${l.inF}->${l.outF}`, n, ms, 2 * n * l.inF * l.outF));
      for (const k of Object.keys(sum)) sum[k] += ms[k];
      gemmFlops += 2 * n * l.inF * l.outF;
    }
    // the whole step: each kernel summed over the layers; the total by the 6 x params x batch convention
    const step = row('wasm', `step ${sizes.join(',')}`, n, sum, gemmFlops);
    step['total GFLOP/s'] = gflops(6 * spec.paramCount * n, step['total ms']);
    rows.push(step);
  }

  const { n, inF, outF } = options.oracleShape ?? { n: 16, inF: 256, outF: 128 };
  const flops = 2 * n * inF * outF;
  const oracle = createOracleBackend();
  rows.push(row('ts', `${inF}->${outF}`, n, await timeLayer(oracle, layerArrays(oracle, n, inF, outF, 1), n, inF, outF, chunk, reps), flops));
  const wasm = await createWasmBackend({ capacityFloats: layerFloats(n, inF, outF) });
  rows.push(row('wasm', `${inF}->${outF}`, n, await timeLayer(wasm, layerArrays(wasm, n, inF, outF, 1), n, inF, outF, chunk, reps), flops));
  return rows;
}

function printTable(rows) {
  const keys = [...new Set(rows.flatMap((r) => Object.keys(r)))];
  const cell = (v) => (v === undefined ? '' : typeof v === 'number' && !Number.isInteger(v) ? v.toFixed(1) : String(v));
  const cells = rows.map((r) => keys.map((k) => cell(r[k])));
  const width = keys.map((k, i) => Math.max(k.length, ...cells.map((c) => c[i].length)));
  console.log(keys.map((k, i) => k.padEnd(width[i])).join('  '));
  for (const c of cells) console.log(c.map((v, i) => v.padEnd(width[i])).join('  '));
}

function argValue(args, name) {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const args = process.argv.slice(2);
  const model = argValue(args, '--model');
  const batch = argValue(args, '--batch');
  const chunk = argValue(args, '--chunk');
  const rows = await benchKernels({
    quick: args.includes('--quick'),
    sizes: model ? model.split(',').map(Number) : undefined,
    batches: batch ? batch.split(',').map(Number) : undefined,
    chunk: chunk ? Number(chunk) : undefined,
  });
  console.log('GEMM kernels, single thread (GFLOP/s = 2 x N x IN x OUT per kernel; step = 6 x params x batch over the 3 kernels of every layer)');
  printTable(rows);
}
