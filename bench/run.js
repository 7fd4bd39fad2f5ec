/**
 * `npm run bench`: prints the project's performance figures as a table and writes them as JSON to
 * bench/results/latest.json. Benchmarks measure; they never pass or fail.
 *   node bench/run.js [--quick] [--only NAME[,NAME]]
 */
import * as fs from 'node:fs';
import { benchTrainStep } from './train-step.js';

const args = process.argv.slice(2);
const quick = args.includes('--quick');
const onlyArg = args.indexOf('--only');
const only = onlyArg >= 0 ? args[onlyArg + 1].split(',') : null;
const want = (name) => !only || only.includes(name);
const results = { machine: { node: process.version, cpus: (await import('node:os')).cpus().map((c) => c.model)[0] }, benches: {} };

function table(title, rows) {
  console.log(`\n## ${title}`);
  if (rows.length === 0) return;
  const keys = Object.keys(rows[0]);
  const cells = rows.map((r) => keys.map((k) => (typeof r[k] === 'number' ? (Number.isInteger(r[k]) ? String(r[k]) : r[k].toFixed(2)) : typeof r[k] === 'object' ? JSON.stringify(r[k]) : String(r[k]))));
  const w = keys.map((k, i) => Math.max(k.length, ...cells.map((c) => c[i].length)));
  console.log(keys.map((k, i) => k.padEnd(w[i])).join('  '));
  for (const c of cells) console.log(c.map((v, i) => v.padEnd(w[i])).join('  '));
}

if (want('train-step')) {
  const rows = [];
  for (const batch of [64, 256]) {
    const r = await benchTrainStep({ batch, reps: quick ? 2 : 5 });
    rows.push({ model: r.model, batch, backend: r.backend, 'samples/s': r.samples_per_s, 'GFLOP/s': r.gflops, 'step ms': r.step_ms, ...Object.fromEntries(Object.entries(r.split_ms).map(([k, v]) => [`${k} ms`, v])) });
  }
  const oracle = await benchTrainStep({ sizes: [3072, 256, 256, 10], batch: 64, backend: 'ts', reps: 2 });
  rows.push({ model: oracle.model, batch: 64, backend: 'ts', 'samples/s': oracle.samples_per_s, 'GFLOP/s': oracle.gflops, 'step ms': oracle.step_ms, ...Object.fromEntries(Object.entries(oracle.split_ms).map(([k, v]) => [`${k} ms`, v])) });
  try {
    const { benchBrowserTrainStep } = await import('./browser.js');
    for (const batch of [64, 256]) {
      const b = await benchBrowserTrainStep({ batch, reps: quick ? 2 : 5 });
      rows.push({ model: b.model, batch, backend: `${b.backend} (chromium tab)`, 'samples/s': b.samples_per_s, 'GFLOP/s': b.gflops, 'step ms': b.step_ms, ...Object.fromEntries(Object.entries(b.split_ms).map(([k, v]) => [`${k} ms`, v])) });
    }
  } catch (e) {
    console.log(`(browser rows unavailable: ${e.message})`);
  }
  const { benchPytorchStep } = await import('./pytorch.js');
  const ratios = [];
  for (const batch of [64, 256]) {
    const t = benchPytorchStep({ batch, threads: 1, reps: quick ? 2 : 5 });
    if (!t) {
      console.log('(PyTorch not present: apt-get install python3-torch libopenblas0-pthread to compare in the same run)');
      break;
    }
    rows.push({ model: '3072,2048,2048,10', batch, backend: 'pytorch (1 thread)', 'samples/s': t.samples_per_s, 'GFLOP/s': t.gflops, 'step ms': t.step_ms });
    const ours = rows.find((r) => r.batch === batch && r.backend === 'wasm');
    if (ours) ratios.push({ batch, 'gradhub/pytorch': ours['samples/s'] / t.samples_per_s });
  }
  results.benches['train-step'] = rows;
  if (ratios.length) results.benches['train-step-ratio'] = ratios;
  table('Single-thread train step (forward + loss + backward + SGD; FLOPs = 6 x params x batch)', rows);
  if (ratios.length) table('Ratio to PyTorch 1-thread (same run)', ratios);
}

if (want('kernels')) {
  try {
    const { benchKernels } = await import('./kernels.js');
    const rows = await benchKernels({ quick });
    results.benches.kernels = rows;
    table('GEMM kernels', rows);
  } catch (e) {
    console.log(`\n## GEMM kernels\n(unavailable: ${e.message})`);
  }
}

if (want('cluster')) {
  const { benchCluster } = await import('./cluster.js');
  const rows = [];
  const r = await benchCluster({ workers: 2, batch: 256, steps: quick ? 4 : 8 });
  rows.push({ model: r.model, workers: r.workers, batch: r.batch, 'samples/s': r.samples_per_s, ...Object.fromEntries(Object.entries(r.split_ms).map(([k, v]) => [`${k} ms`, v])), 'wire MB/step': r.wire_mb_per_step, 'coord peak RSS MB': r.coordinator_peak_rss_mb });
  results.benches.cluster = rows;
  table('Cluster: coordinator + 2 worker processes on loopback (CIFAR-10 sample, global batch 256; split = medians of the step critical path)', rows);
}

fs.mkdirSync(new URL('./results/', import.meta.url), { recursive: true });
fs.writeFileSync(new URL('./results/latest.json', import.meta.url), JSON.stringify(results, null, 2) + '\n');
console.log('\nwritten: bench/results/latest.json');
