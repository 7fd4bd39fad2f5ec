/**
 * The `wan` bench: time to accuracy across an emulated network (bench/link/proxy.js), the figure
 * a user pooling machines cares about. Each row trains the same model on the same data with the
 * same inner settings (batch, lr, momentum) as real processes: a `gradhub coordinator` and two
 * `gradhub worker`s of one thread each (the box's 2 cores play two machines), each worker behind
 * its own emulated link, all links crossing one shared link for the coordinator's own line; the
 * baseline is one `gradhub train --workers 0 --threads 1` process at the tutorial's settings.
 *
 * Every row evaluates the 1,000-image test set every `evalEvery` training samples (and at epoch
 * ends; rounds mode after each round that crosses such a point): the evaluation's time is recorded
 * apart (metrics `eval_ms`) and taken off the clock, the same way for every row. A row's time to
 * accuracy is the training wall time (from the first update's start, evaluations excluded) until
 * the first evaluation at or above the target; it stops there (SIGINT: the run checkpoints and
 * exits), or at the cap. Also per row: samples/s, bytes on the wire per training sample (both
 * directions, measured at the links), and each process's CPU as a share of the wall time.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { NODE_FLAGS } from '@gradhub/cli';
import { createSharedLink, startLinkProxy } from './link/proxy.js';
import { snapshotCpu } from './proc-cpu.js';

const CLI = fileURLToPath(new URL('../packages/cli/dist/main.js', import.meta.url));

/** The two links of the issue, per worker; the coordinator's own line is 1 Gbit/s both ways. */
export const LINKS = {
  '1G': { label: '1 Gbit/s + 1 ms', bps: 1e9, latencyMs: 1 },
  '100M': { label: '100 Mbit/s + 20 ms', bps: 100e6, latencyMs: 20 },
  /** A home line: 20 Mbit/s up (worker to coordinator), 100 down. */
  home: { label: 'home: 20 up / 100 down Mbit/s + 15 ms', bps: 100e6, upBps: 20e6, latencyMs: 15 },
};
const COORDINATOR_BPS = 1e9;

/** A free TCP port on loopback. */
function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = /** @type {net.AddressInfo} */ (s.address());
      s.close(() => resolve(port));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** The metrics file's lines so far (a torn last line is skipped). */
function readLines(file) {
  if (!fs.existsSync(file)) return [];
  const out = [];
  for (const raw of fs.readFileSync(file, 'utf8').split('\n')) {
    try {
      if (raw) out.push(JSON.parse(raw));
    } catch {
      // torn last line
    }
  }
  return out;
}

/**
 * The accuracy curve of a metrics file against training wall time (evaluations off the clock):
 * [{ ms, samples, accuracy }], the samples trained and the training ms so far.
 */
export function curveOf(lines) {
  const updates = lines.filter((l) => l.kind === 'step' || l.kind === 'round');
  if (updates.length === 0) return { points: [], samples: 0, ms: 0 };
  const first = updates[0];
  const firstSamples = first.kind === 'round' ? first.samples : samplesOfStep(lines, first);
  const t0 = first.time - (firstSamples / first.samples_per_s) * 1000;
  let evalMs = 0;
  const points = [];
  for (const l of lines) {
    if (l.kind !== 'epoch' && l.kind !== 'eval') continue;
    const at = l.time - l.eval_ms - t0 - evalMs;
    evalMs += l.eval_ms;
    points.push({ ms: at, samples: l.samples, accuracy: l.test_accuracy });
  }
  const last = updates[updates.length - 1];
  const lastEvalMs = lines.filter((l) => (l.kind === 'epoch' || l.kind === 'eval') && l.time <= last.time).reduce((a, l) => a + l.eval_ms, 0);
  const samples = lines.filter((l) => l.kind === 'round').reduce((a, l) => a + l.samples, 0)
    + lines.filter((l) => l.kind === 'step').reduce((a, l) => a + samplesOfStep(lines, l), 0);
  return { points, samples, ms: last.time - t0 - lastEvalMs };
}

/** A step line's samples: the run's batch (an epoch's short last batch counts in full: bytes per sample is within 1/batches-per-epoch). */
function samplesOfStep(lines, _l) {
  const run = lines.find((x) => x.kind === 'run');
  return run ? run.batch : 0;
}

/**
 * One row. `mode`: 'single' (train --workers 0) or 'cluster' (coordinator + 2 workers behind
 * links). `flags`: the run's training flags. Resolves to the row's figures.
 */
export async function runRow(o) {
  // A free port can be taken between the probe and the coordinator's listen: try again on another.
  for (let attempt = 1; ; attempt++) {
    try {
      return await runRowOnce(o);
    } catch (e) {
      if (attempt >= 3 || !/E_LISTEN/.test(String(e))) throw e;
      (o.log ?? (() => {}))(`(${o.name}: ${String(e).split('\n')[0]}; again)`);
    }
  }
}

async function runRowOnce({ name, mode, link, flags, data, target, capMs, evalEvery, workers = 2, log = () => {} }) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gradhub-wan-'));
  const metrics = path.join(dir, 'metrics.jsonl');
  const common = [
    '--data', data, '--no-download', '--metrics', metrics, '--run-dir', path.join(dir, 'run'), '--checkpoint-every', '1000000',
    '--eval-every', String(evalEvery), '--epochs', '1000', '--log-level', 'warn', '--log-format', 'json', ...flags,
  ];
  const procs = [];
  const proxies = [];
  const start = (args) => {
    const p = spawn(process.execPath, [...NODE_FLAGS, CLI, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    p.stderr.on('data', (d) => {
      err = (err + d).slice(-4000);
    });
    p.tail = () => err;
    procs.push(p);
    return p;
  };
  let main;
  if (mode === 'single') {
    main = start(['train', '--workers', '0', '--threads', '1', ...common]);
  } else {
    const port = await freePort();
    // The operator's own machines: workers with the trusted token (volunteers would be audited by
    // recomputation on the coordinator's cores: docs/design.md "Audits and exact rollback").
    const token = 'wan-bench-trusted';
    main = start(['coordinator', '--host', '127.0.0.1', '--port', String(port), '--token', 'wan-bench-volunteers', '--trusted-token', token, '--min-workers', String(workers), ...common]);
    const shared = createSharedLink({ upBps: COORDINATOR_BPS, downBps: COORDINATOR_BPS });
    for (let i = 0; i < workers; i++) {
      const p = await startLinkProxy({ target: { host: '127.0.0.1', port }, upBps: link.upBps ?? link.bps, downBps: link.bps, latencyMs: link.latencyMs, shared });
      proxies.push(p);
      start(['worker', '--url', p.url(), '--token', token, '--threads', '1', '--log-level', 'warn', '--grace-ms', '5000']);
    }
  }
  const exited = new Promise((resolve) => main.once('exit', (code, signal) => resolve({ code, signal })));
  let done = null;
  void exited.then((e) => {
    done = e;
  });
  const pids = Object.fromEntries(procs.map((p, i) => [i === 0 ? (mode === 'single' ? 'process' : 'coordinator') : `worker ${i}`, p.pid]));
  let cpu0 = null;
  let linkCpu0 = null;
  let wall0 = 0;
  let crossed = null;
  let began = null;
  for (;;) {
    await sleep(200);
    const lines = readLines(metrics);
    const updates = lines.some((l) => l.kind === 'step' || l.kind === 'round');
    if (updates && began === null) {
      began = performance.now();
      cpu0 = snapshotCpu(pids);
      linkCpu0 = process.cpuUsage();
      wall0 = performance.now();
    }
    const c = curveOf(lines);
    crossed = c.points.find((p) => p.accuracy >= target) ?? null;
    if (crossed || done || (began !== null && c.ms > capMs)) break;
  }
  const cpu1 = snapshotCpu(pids);
  const linkCpu = linkCpu0 ? process.cpuUsage(linkCpu0) : null;
  const wall = performance.now() - wall0;
  const linkStats = proxies.map((p) => p.stats());
  const stoppedAt = done ? null : Date.now();
  if (!done) main.kill('SIGINT');
  const ended = await Promise.race([exited, sleep(30_000).then(() => null)]);
  for (const p of procs) if (p.exitCode === null) p.kill('SIGKILL');
  for (const p of proxies) await p.close();
  const lines = readLines(metrics);
  const c = curveOf(lines);
  const finalCrossed = c.points.find((p) => p.accuracy >= target) ?? null;
  if (!ended && !finalCrossed) log(`(${name}: the run did not stop on SIGINT: killed)`);
  if (c.points.length === 0 && stoppedAt === null && done && done.code !== 0) throw new Error(`${name}: the run failed (${done.code}): ${main.tail()}`);
  const bytes = linkStats.reduce((a, s) => a + s.upBytes + s.downBytes, 0);
  const samplesAtStop = c.samples;
  const share = {};
  if (cpu0 && cpu1) for (const k of Object.keys(cpu1)) share[k] = (cpu1[k].user + cpu1[k].sys - cpu0[k].user - cpu0[k].sys) / wall;
  // The emulated links run in this process: their CPU is the network's, on the same 2 cores.
  if (linkCpu && mode !== 'single') share.links = (linkCpu.user + linkCpu.system) / 1000 / wall;
  fs.rmSync(dir, { recursive: true, force: true });
  return {
    name,
    link: link ? link.label : 'none (one process)',
    flags: flags.join(' '),
    target,
    reached: finalCrossed !== null,
    seconds_to_target: finalCrossed ? finalCrossed.ms / 1000 : null,
    samples_to_target: finalCrossed ? finalCrossed.samples : null,
    best_accuracy: Math.max(0, ...c.points.map((p) => p.accuracy)),
    // From the last evaluation (exact samples; an epoch's short last batch included).
    samples_per_s: c.points.length > 0 ? c.points[c.points.length - 1].samples / (c.points[c.points.length - 1].ms / 1000) : null,
    wire_bytes_per_sample: mode === 'single' ? 0 : samplesAtStop > 0 ? bytes / samplesAtStop : null,
    cpu_share: share,
    curve: c.points.map((p) => ({ s: +(p.ms / 1000).toFixed(2), samples: p.samples, accuracy: p.accuracy })),
  };
}

/** The plot: test accuracy against training wall time, one line per row; the target dashed. */
export function plotSvg(rows, target) {
  const W = 760;
  const H = 420;
  const L = 56;
  const R = 230;
  const T = 20;
  const B = 44;
  const maxS = Math.max(1, ...rows.flatMap((r) => r.curve.map((p) => p.s)));
  const maxA = Math.max(target + 0.05, ...rows.flatMap((r) => r.curve.map((p) => p.accuracy)));
  const x = (s) => L + (s / maxS) * (W - L - R);
  const y = (a) => T + (1 - a / maxA) * (H - T - B);
  const colors = ['#000000', '#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf'];
  const esc = (s) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;');
  const parts = [`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="11">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<line x1="${L}" y1="${H - B}" x2="${W - R}" y2="${H - B}" stroke="black"/><line x1="${L}" y1="${T}" x2="${L}" y2="${H - B}" stroke="black"/>`,
    `<text x="${(L + W - R) / 2}" y="${H - 8}" text-anchor="middle">training wall time, s (evaluations off the clock)</text>`,
    `<text x="14" y="${(T + H - B) / 2}" transform="rotate(-90 14 ${(T + H - B) / 2})" text-anchor="middle">test accuracy</text>`,
    `<line x1="${L}" y1="${y(target)}" x2="${W - R}" y2="${y(target)}" stroke="#888" stroke-dasharray="4 3"/>`,
    `<text x="${W - R - 2}" y="${y(target) - 3}" text-anchor="end" fill="#666">target ${(target * 100).toFixed(0)}%</text>`];
  for (let i = 0; i <= 4; i++) {
    const s = (maxS * i) / 4;
    parts.push(`<text x="${x(s)}" y="${H - B + 14}" text-anchor="middle">${s.toFixed(0)}</text>`);
    const a = (maxA * i) / 4;
    parts.push(`<text x="${L - 4}" y="${y(a) + 4}" text-anchor="end">${(a * 100).toFixed(0)}%</text>`);
  }
  rows.forEach((r, i) => {
    const c = colors[i % colors.length];
    const pts = r.curve.map((p) => `${x(p.s).toFixed(1)},${y(p.accuracy).toFixed(1)}`).join(' ');
    if (pts) parts.push(`<polyline fill="none" stroke="${c}" stroke-width="1.5" points="${pts}"/>`);
    parts.push(`<line x1="${W - R + 10}" y1="${T + 8 + i * 16}" x2="${W - R + 28}" y2="${T + 8 + i * 16}" stroke="${c}" stroke-width="2"/>`);
    parts.push(`<text x="${W - R + 32}" y="${T + 12 + i * 16}">${esc(r.name)}</text>`);
  });
  parts.push('</svg>');
  return parts.join('\n') + '\n';
}

/**
 * The rows of the issue: the 1-thread baseline (batch 64, lr 0.01); `--workers 2` synchronous at
 * batch 64 and at batch 256 with the lr scaled (x4); `--workers 2` in rounds (M = 2) for each H;
 * the cluster rows at each link.
 */
export function wanRows({ quick, hs }) {
  const inner = ['--batch-size', '64', '--lr', '0.01'];
  // The rows before packed tensors existed sent every tensor raw: they say so.
  const raw = ['--wire-compression', 'off'];
  const rows = [{ name: 'one process, 1 thread', mode: 'single', link: null, flags: inner }];
  for (const key of quick ? ['1G'] : ['1G', '100M']) {
    const link = LINKS[key];
    rows.push({ name: `sync b64 @${key}`, mode: 'cluster', link, flags: [...inner, ...raw] });
    rows.push({ name: `sync b256 lr0.04 @${key}`, mode: 'cluster', link, flags: ['--batch-size', '256', '--lr', '0.04', ...raw] });
    for (const h of hs) rows.push({ name: `rounds H${h} M2 @${key}`, mode: 'cluster', link, flags: [...inner, '--local-steps', String(h), '--replicas', '2', ...raw] });
    // The one tuned row: the outer lr 1.0 instead of DiLoCo's 0.7 (inner settings unchanged).
    if (!quick) rows.push({ name: `rounds H${hs[0]} M2 outer-lr 1 @${key}`, mode: 'cluster', link, flags: [...inner, '--local-steps', String(hs[0]), '--replicas', '2', '--outer-lr', '1', ...raw] });
    // Packed tensors (lossless: the same bits): `auto`, the default, packs while a link measures
    // slower than 250 Mbit/s; `on` always (what packing costs where it does not pay).
    for (const [tag, when] of quick ? [] : [['auto', 'auto'], ['packed', 'on']]) {
      for (const outer of tag === 'auto' ? [[], ['--outer-lr', '1']] : [['--outer-lr', '1']]) {
        rows.push({
          name: `rounds H${hs[0]} M2${outer.length ? ' outer-lr 1' : ''} ${tag} @${key}`, mode: 'cluster', link,
          flags: [...inner, '--local-steps', String(hs[0]), '--replicas', '2', ...outer, '--wire-compression', when],
        });
      }
    }
  }
  // Home lines: a synchronous step moves 84 MB through each 20 Mbit/s uplink (34 s a step): only rounds rows.
  if (!quick) {
    for (const h of hs.slice(-1)) rows.push({ name: `rounds H${h} M2 @home`, mode: 'cluster', link: LINKS.home, flags: [...inner, '--local-steps', String(h), '--replicas', '2', ...raw] });
    rows.push({ name: `rounds H${hs[hs.length - 1]} M2 auto @home`, mode: 'cluster', link: LINKS.home, flags: [...inner, '--local-steps', String(hs[hs.length - 1]), '--replicas', '2', '--wire-compression', 'auto'] });
  }
  return rows;
}
