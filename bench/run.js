/**
 * `npm run bench`: prints the project's performance figures as a table and writes them as JSON to
 * bench/results/latest.json. Benchmarks measure; they never pass or fail.
 *   node bench/run.js [--quick] [--only NAME[,NAME]] [--data DIR] [--target 0.3] [--h 16,64] [--cap-s 240] [--rows @1G,...]
 *                     [--parts overhead,caught,churn] [--steps S] [--seconds T]
 *   NAME: train-step, kernels, cluster, transport, wan, audits
 * The cluster and wan sections train on the CIFAR-10 binary files in DIR (default: the repository's
 * test/fixtures/cifar10; the wan figures mean most with 1,000 test images, e.g. the official set or a
 * 5,000-image sample of it). wan: time to --target test accuracy per row, --h the rounds rows' H,
 * --cap-s the longest a row trains; it writes bench/results/wan.json and wan.svg. audits (bench/audits.js):
 * [--parts overhead,caught,churn] [--steps S: the overhead runs' steps] [--seconds T: the churn's length].
 * Each section runs in a fresh Node process (this script again, with --only NAME --child-out F, and
 * the Node flags of gradhub's own processes), so that one section's heap and WebAssembly memories
 * never weigh on the next one's figures (a coordinator is measured as the process it is in real use).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { benchTrainStep } from './train-step.js';
import { spawnNodeKernelThread } from '@gradhub/worker';
import { NODE_FLAGS } from '@gradhub/cli';

const SECTIONS = ['train-step', 'kernels', 'cluster', 'transport', 'wan', 'audits'];
const args = process.argv.slice(2);
const quick = args.includes('--quick');
const onlyArg = args.indexOf('--only');
const only = onlyArg >= 0 ? args[onlyArg + 1].split(',') : null;
const childArg = args.indexOf('--child-out');
const childOut = childArg >= 0 ? args[childArg + 1] : null;
const dataArg = args.indexOf('--data');
const data = dataArg >= 0 ? args[dataArg + 1] : undefined;
const argOf = (name, dflt) => (args.indexOf(name) >= 0 ? args[args.indexOf(name) + 1] : dflt);
/** The flags a section child gets again. */
const passOn = [...['--data', '--target', '--h', '--cap-s', '--eval-every', '--rows', '--parts', '--steps', '--seconds'].flatMap((f) => (args.indexOf(f) >= 0 ? [f, args[args.indexOf(f) + 1]] : [])), ...(args.includes('--resume') ? ['--resume'] : [])];
const want = (name) => !only || only.includes(name);
/** The middle element of xs by key (the upper one of an even count). */
const median = (xs, key = (x) => x) => [...xs].sort((a, b) => key(a) - key(b))[Math.floor(xs.length / 2)];
const results = { machine: { node: process.version, cpus: os.cpus().map((c) => c.model)[0] }, benches: {} };

if (childOut === null) {
  // The parent: one child process per section, in order; their figures merged into one file.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gradhub-bench-'));
  for (const name of SECTIONS.filter(want)) {
    const out = path.join(dir, `${name}.json`);
    // With the Node flags gradhub's own processes run with (packages/cli/bin/gradhub.js).
    const r = spawnSync(process.execPath, [...NODE_FLAGS, fileURLToPath(import.meta.url), '--only', name, '--child-out', out, ...(quick ? ['--quick'] : []), ...passOn], { stdio: 'inherit' });
    if (r.status !== 0 || !fs.existsSync(out)) {
      console.log(`\n(${name}: the bench process ended with ${r.status ?? r.signal})`);
      continue;
    }
    Object.assign(results.benches, JSON.parse(fs.readFileSync(out, 'utf8')));
  }
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(new URL('./results/', import.meta.url), { recursive: true });
  fs.writeFileSync(new URL('./results/latest.json', import.meta.url), JSON.stringify(results, null, 2) + '\n');
  console.log('\nwritten: bench/results/latest.json');
  process.exit(0);
}

function table(title, rows) {
  console.log(`\n## ${title}`);
  if (rows.length === 0) return;
  const keys = Object.keys(rows[0]);
  const cell = (v) => (v === undefined || v === null ? '-' : typeof v === 'number' ? (Number.isInteger(v) ? String(v) : v.toFixed(2)) : typeof v === 'object' ? JSON.stringify(v) : String(v));
  const cells = rows.map((r) => keys.map((k) => cell(r[k])));
  const w = keys.map((k, i) => Math.max(k.length, ...cells.map((c) => c[i].length)));
  console.log(keys.map((k, i) => k.padEnd(w[i])).join('  '));
  for (const c of cells) console.log(c.map((v, i) => v.padEnd(w[i])).join('  '));
}

if (want('train-step')) {
  const rows = [];
  const threadRatios = [];
  const row = (r, backend) => ({ model: r.model, batch: r.batch, backend, 'samples/s': r.samples_per_s, 'GFLOP/s': r.gflops, 'step ms': r.step_ms, ...Object.fromEntries(Object.entries(r.split_ms).map(([k, v]) => [`${k} ms`, v])) });
  for (const batch of [64, 256]) {
    // threads 1 and 2 alternated (A/B in one run: the machine's load changes), medians of the rounds
    const one = [];
    const two = [];
    for (let round = 0; round < (quick ? 1 : 3); round++) {
      one.push(await benchTrainStep({ batch, reps: quick ? 2 : 5 }));
      two.push(await benchTrainStep({ batch, threads: 2, spawn: spawnNodeKernelThread, reps: quick ? 2 : 5 }));
    }
    const pick = (rs) => rs.find((r) => r.step_ms === median(rs.map((x) => x.step_ms)));
    rows.push(row(pick(one), 'wasm'));
    rows.push(row(pick(two), 'wasm x2 threads'));
    threadRatios.push({
      batch,
      'step ms x1': median(one.map((r) => r.step_ms)),
      'step ms x2': median(two.map((r) => r.step_ms)),
      'step x2/x1': median(one.map((r) => r.step_ms)) / median(two.map((r) => r.step_ms)),
      'compute x2/x1 (no SGD)': median(one.map((r) => r.compute_ms)) / median(two.map((r) => r.compute_ms)),
    });
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
    const t2 = benchPytorchStep({ batch, threads: 2, reps: quick ? 2 : 5 });
    rows.push({ model: '3072,2048,2048,10', batch, backend: 'pytorch (2 threads)', 'samples/s': t2.samples_per_s, 'GFLOP/s': t2.gflops, 'step ms': t2.step_ms });
    const tr = threadRatios.find((r) => r.batch === batch);
    if (tr) tr['pytorch x2/x1'] = t.step_ms / t2.step_ms;
  }
  results.benches['train-step'] = rows;
  results.benches['train-step-threads'] = threadRatios;
  if (ratios.length) results.benches['train-step-ratio'] = ratios;
  table('Train step (forward + loss + backward + SGD; FLOPs = 6 x params x batch; x2 threads: kernels on 2 threads, SGD on 1)', rows);
  table('Threads: 2 vs 1 (speed-up, medians of alternated runs; SGD runs on one thread)', threadRatios);
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
  // Rounds of gradhub then DDP, alternated, so that both see the machine's drift alike: the row
  // is the median round (with its split), the ratio the median of the rounds' ratios.
  const { benchCluster } = await import('./cluster.js');
  const { benchPytorchDdp } = await import('./pytorch.js');
  const rounds = quick ? 1 : 3;
  const ours = [];
  const ddps = [];
  const ratios = [];
  for (let i = 0; i < rounds; i++) {
    const r = await benchCluster({ workers: 2, batch: 256, steps: quick ? 4 : 14, data });
    ours.push(r);
    const d = benchPytorchDdp({ batch: 256, steps: quick ? 3 : 14 });
    if (d) {
      ddps.push(d);
      ratios.push(r.samples_per_s / d.samples_per_s);
    }
  }
  const each = (xs) => xs.map((x) => Math.round(x.samples_per_s)).join(' / ');
  const r = median(ours, (x) => x.samples_per_s);
  const rows = [{
    model: r.model, workers: r.workers, batch: r.batch, 'samples/s': r.samples_per_s, 'rounds samples/s': each(ours),
    ...Object.fromEntries(Object.entries(r.split_ms).map(([k, v]) => [`${k} ms`, v])), 'wire MB/step': r.wire_mb_per_step, 'coord peak RSS MB': r.coordinator_peak_rss_mb,
  }];
  const ddp = ddps.length > 0 ? median(ddps, (x) => x.samples_per_s).samples_per_s : null;
  if (ddp !== null) {
    rows.push({ model: r.model, workers: '2 (PyTorch DDP, gloo)', batch: 256, 'samples/s': ddp, 'rounds samples/s': each(ddps) });
    results.benches['cluster-ratio'] = { 'gradhub/ddp': median(ratios), rounds: ratios.map((x) => x.toFixed(2)).join(' / ') };
  }
  // The bound: the two workers' shares computed at once, with no coordination at all.
  const { benchComputePair } = await import('./compute-pair.js');
  const bound = await benchComputePair({ workers: 2, batch: 256, reps: quick ? 2 : 8 });
  rows.push({ model: r.model, workers: '2 (compute only: no coordinator, sockets, reduction or SGD)', batch: 256, 'samples/s': bound.samples_per_s, 'compute ms': Math.max(...bound.compute_ms) });
  if (ddp !== null) Object.assign(results.benches['cluster-ratio'], { 'compute-only bound/ddp': bound.samples_per_s / ddp });
  results.benches.cluster = rows;
  table(`Cluster: coordinator + 2 worker processes on this machine, Unix socket as gradhub train --workers 2 (CIFAR-10 sample, global batch 256; ${rounds} round(s) alternated with DDP, the median round shown; split = medians of the step critical path)`, rows);
  if (results.benches['cluster-ratio']) table('Ratio to PyTorch DDP (same run; median of the rounds)', [results.benches['cluster-ratio']]);
  const cpu = clusterCpuRows(r, bound);
  if (cpu) {
    results.benches['cluster-cpu'] = cpu;
    table('Cluster CPU per step (median round; /proc user + sys ms per process; "beyond compute" = CPU time spent on anything but the compute-only run\'s share)', cpu);
  }
}

/** Rows of where the cluster's CPU went per step, against the compute-only bound; null off Linux. */
function clusterCpuRows(r, bound) {
  if (!r.cpu_ms_per_step) return null;
  const share = Math.max(...bound.compute_ms);
  const rows = Object.entries(r.cpu_ms_per_step).map(([name, c]) => ({
    process: name, 'user ms': c.user, 'sys ms': c.sys, 'CPU ms': c.user + c.sys,
    'beyond compute ms': name === 'coordinator' ? c.user + c.sys : c.user + c.sys - share,
  }));
  const total = rows.reduce((a, x) => a + x['CPU ms'], 0);
  rows.push({
    process: `all (wall ${r.wall_ms_per_step.toFixed(0)} ms/step: ${(total / r.wall_ms_per_step).toFixed(2)} of ${os.cpus().length} cores busy)`,
    'user ms': rows.reduce((a, x) => a + x['user ms'], 0), 'sys ms': rows.reduce((a, x) => a + x['sys ms'], 0), 'CPU ms': total,
    'beyond compute ms': rows.reduce((a, x) => a + x['beyond compute ms'], 0),
  });
  return rows;
}

if (want('transport')) {
  const { benchTransport } = await import('./transport.js');
  const t = await benchTransport(quick ? { reps: 2 } : {});
  results.benches.transport = t;
  table('Transport: gradient round trip on loopback (2 x model bytes / round-trip time)', t.roundTrip);
  table('Coordinator memory vs workers (small model)', t.memory);
}

if (want('wan')) {
  const { runRow, wanRows, plotSvg } = await import('./wan.js');
  const { CIFAR10_DIR } = await import('../test/fixtures/index.js');
  const target = Number(argOf('--target', '0.3'));
  const hs = argOf('--h', quick ? '16' : '16,64').split(',').map(Number);
  const capMs = Number(argOf('--cap-s', quick ? '60' : '240')) * 1000;
  const evalEvery = Number(argOf('--eval-every', '2000'));
  // --resume: keep the rows of bench/results/wan-partial.json (an interrupted run) and run the others.
  const partial = new URL('./results/wan-partial.json', import.meta.url);
  const rows = args.includes('--resume') && fs.existsSync(partial) ? JSON.parse(fs.readFileSync(partial, 'utf8')).rows : [];
  const done = new Set(rows.map((r) => r.name));
  // --rows A,B: only the rows whose name holds one of these (e.g. @100M,@home).
  const pick = argOf('--rows', null)?.split(',') ?? null;
  for (const r of wanRows({ quick, hs }).filter((x) => !done.has(x.name) && (!pick || pick.some((p) => x.name.includes(p))))) {
    process.stdout.write(`wan: ${r.name} ... `);
    const out = await runRow({ ...r, data: data ?? CIFAR10_DIR, target, capMs, evalEvery, log: (m) => console.log(m) });
    console.log(out.reached ? `${out.seconds_to_target.toFixed(1)} s` : `not reached in ${capMs / 1000} s (best ${(out.best_accuracy * 100).toFixed(1)}%)`);
    rows.push(out);
    // Kept as they come: a later row's failure loses nothing.
    fs.mkdirSync(new URL('./results/', import.meta.url), { recursive: true });
    fs.writeFileSync(partial, JSON.stringify({ target, rows }, null, 2) + '\n');
  }
  const base = rows[0].seconds_to_target;
  const syncB64 = Object.fromEntries(rows.filter((r) => r.name.startsWith('sync b64')).map((r) => [r.link, r.wire_bytes_per_sample]));
  const table_ = rows.map((r) => ({
    row: r.name,
    link: r.link,
    [`s to ${(target * 100).toFixed(0)}%`]: r.seconds_to_target,
    'x baseline': base && r.seconds_to_target ? r.seconds_to_target / base : null,
    'samples to target': r.samples_to_target,
    'best acc %': r.best_accuracy * 100,
    'samples/s': r.samples_per_s,
    'wire KB/sample': r.wire_bytes_per_sample === null ? null : r.wire_bytes_per_sample / 1024,
    'sync b64 / this (bytes)': r.wire_bytes_per_sample && syncB64[r.link] ? syncB64[r.link] / r.wire_bytes_per_sample : null,
    'CPU share': Object.entries(r.cpu_share).map(([k, v]) => `${k} ${v.toFixed(2)}`).join(', '),
  }));
  results.benches.wan = { target, eval_every: evalEvery, cap_s: capMs / 1000, rows, table: table_ };
  table(`Time to ${(target * 100).toFixed(0)}% test accuracy across an emulated network (2 workers of 1 thread, each behind its link, the coordinator's line 1 Gbit/s; evaluations every ${evalEvery} samples, off the clock; inner settings batch 64, lr 0.01 unless the row says; rounds: outer lr 0.7, Nesterov momentum 0.9, untuned)`, table_);
  fs.mkdirSync(new URL('./results/', import.meta.url), { recursive: true });
  fs.writeFileSync(new URL('./results/wan.json', import.meta.url), JSON.stringify(results.benches.wan, null, 2) + '\n');
  fs.writeFileSync(new URL('./results/wan.svg', import.meta.url), plotSvg(rows, target));
  console.log('written: bench/results/wan.json, bench/results/wan.svg');
}

if (want('audits')) {
  const { benchOverhead, benchCaught, benchChurn, referenceSha, median: mid } = await import('./audits.js');
  const { CIFAR10_DIR } = await import('../test/fixtures/index.js');
  const dataDir = data ?? CIFAR10_DIR;
  const log = (m) => console.log(m);
  const common = ['--data', dataDir, '--no-download', '--epochs', '100000', '--seed', '3'];
  // Overhead: the default model (10.5 M parameters), 2 volunteers of 1 thread.
  // --parts overhead,caught,churn: only these; --steps S the overhead runs' length; --seconds T the churn's.
  const parts = argOf('--parts', 'overhead,caught,churn').split(',');
  const overhead = parts.includes('overhead')
    ? await benchOverhead({ run: [...common, '--batch-size', '64', '--lr', '0.01', '--steps', argOf('--steps', quick ? '30' : '400')], reps: quick ? 1 : 3, log })
    : null;
  // Caught: a small model, so that many steps run (a patient cheater needs hundreds).
  const small = [...common, '--model', '3072,64,10', '--batch-size', '64', '--chunk', '8', '--lr', '0.01', '--momentum', '0.9', '--steps', quick ? '400' : '2000'];
  const caught = [];
  if (parts.includes('caught')) {
    const ref = referenceSha(small);
    for (const every of [1, 20]) caught.push(...await benchCaught({ run: small, every, trials: quick ? 1 : 3, ref, log }));
  }
  const churn = parts.includes('churn')
    ? await benchChurn({ run: [...common, '--model', '3072,64,10', '--batch-size', '64', '--chunk', '4'], workers: 64, seconds: Number(argOf('--seconds', quick ? '20' : '180')), log })
    : null;
  results.benches.audits = { overhead, caught, churn };
  if (overhead) table(`Audit overhead at --audit-rate ${overhead.rate} (default model, batch 64, 2 volunteers of 1 thread; medians of ${overhead.reps} runs each)`, [{
    'results audited': overhead.audited_share,
    'after probation': overhead.audited_share_after_probation,
    'extra coordinator CPU / workers CPU': overhead.extra_coordinator_cpu_share_of_workers,
    'wall time, audits on / off': overhead.wall_ratio,
  }]);
  const byEvery = (e) => caught.filter((r) => r.every === e);
  if (caught.length > 0) table('A cheater scaling its gradients by 1000 beside 2 honest workers (model 3072-64-10, batch 64 in 8 chunks; per trial)', caught.map((r) => ({
    'corrupts': r.every === 1 ? 'every result' : `1 result in ${r.every}`, trial: r.trial, 'first lie at step': r.first_lie_step, 'rolled back at step': r.caught_at_step,
    'steps until caught': r.steps_until_caught, 'steps replayed': r.steps_replayed, 'rollback ms': r.rollback_ms, 'step ms': r.step_ms, 'byte-identical': r.byte_identical,
  })));
  for (const e of [1, 20]) {
    const rows = byEvery(e).filter((r) => r.steps_until_caught !== null);
    if (rows.length > 0) console.log(`1 in ${e}: median steps until caught ${mid(rows.map((r) => r.steps_until_caught))}, median rollback ${mid(rows.map((r) => r.rollback_ms ?? 0))} ms`);
  }
  if (churn) table(`Coordinator memory while ${churn.workers} workers churn (${churn.perSecond} killed and replaced a second; ${churn.sessions} sessions)`, churn.samples);
}

fs.writeFileSync(childOut, JSON.stringify(results.benches));
