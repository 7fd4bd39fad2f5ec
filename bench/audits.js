/**
 * The audits bench (docs/design.md "Audits and exact rollback"), with real processes on loopback:
 * a `gradhub coordinator`, `gradhub worker`s joined with the volunteer token (untrusted: their
 * results are audited), and, for the cheater rows, test/adversary/evil-worker.mjs.
 * - overhead: the same run at --audit-rate 0 and at the default rate, alternated: the CPU the
 *   coordinator spends beyond the run without audits (its audits run on a helper thread of its
 *   own) as a share of the workers' CPU, the share of results audited, and the wall-time ratio.
 * - caught: a worker that scales the gradients it sends by 1000 in every node result (from its
 *   first), and one that does so in one node result in 20 (its 20th, 40th, ...: after the 4
 *   results of probation), beside two honest workers: steps from its first corrupted result to
 *   the rollback, steps replayed, the rollback's time (until the run is back where it was), and
 *   whether the final weights equal --workers 0's.
 * - churn: the coordinator's resident memory while 64 workers come and go (some killed and
 *   replaced every second), sampled through the run: it should stay flat.
 */
import { spawn, spawnSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { NODE_FLAGS } from '@gradhub/cli';
import { readCpu } from './proc-cpu.js';

const CLI = fileURLToPath(new URL('../packages/cli/dist/main.js', import.meta.url));
const EVIL = fileURLToPath(new URL('../test/adversary/evil-worker.mjs', import.meta.url));
const VOLUNTEERS = 'audit-bench-volunteers';
export const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** A child process with its output kept (the last `keep` characters) and, with `sample`, its CPU ms sampled until it exits. */
function start(file, args, keep = 4 << 20, sample = true) {
  const p = spawn(process.execPath, [...NODE_FLAGS, file, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  p.out = '';
  p.err = '';
  p.cpuMs = 0;
  p.stdout.setEncoding('utf8').on('data', (d) => (p.out = (p.out + d).slice(-keep)));
  p.stderr.setEncoding('utf8').on('data', (d) => (p.err = (p.err + d).slice(-keep)));
  const t = sample ? setInterval(() => {
    const c = readCpu(p.pid);
    if (c !== null) p.cpuMs = c.user + c.sys;
  }, 50) : null;
  p.exited = new Promise((resolve) => p.on('exit', (code) => {
    if (t) clearInterval(t);
    resolve(code);
  }));
  return p;
}

async function until(probe, ms, what) {
  const end = Date.now() + ms;
  for (;;) {
    const v = probe();
    if (v) return v;
    if (Date.now() > end) throw new Error(`audits bench: no ${what} within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const sha256 = (file) => crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');

function reportCounters(report) {
  const m = /<script type="application\/json" id="gradhub-report-data">([\s\S]*?)<\/script>/.exec(fs.readFileSync(report, 'utf8'));
  return JSON.parse(m[1]).run.counters;
}

/** The weights `gradhub train --workers 0` ends with on `run`'s flags (sha256). */
export function referenceSha(run) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gradhub-audit-ref-'));
  const w = path.join(dir, 'w.st');
  const r = spawnSync(process.execPath, [...NODE_FLAGS, CLI, 'train', '--workers', '0', '--threads', '1', ...run, '--export', w, '--run-dir', path.join(dir, 'run'), '--log-level', 'warn'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`audits bench: the reference run failed: ${r.stderr}`);
  const sha = sha256(w);
  fs.rmSync(dir, { recursive: true, force: true });
  return sha;
}

/**
 * One run: a coordinator on `run`'s flags, `workers` honest volunteers (1 thread each) and, with
 * `cheater` ({ mode, every, factor }), an evil worker. Returns the wall time from the first step
 * line to the last, CPU ms per process, the report's counters, the export's sha256, the
 * coordinator's warn log lines, the metrics lines and the cheater's events.
 */
export async function oneRun(run, { workers = 2, cheater = null } = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gradhub-audit-bench-'));
  const report = path.join(dir, 'report.html');
  const metrics = path.join(dir, 'metrics.jsonl');
  const weights = path.join(dir, 'w.st');
  const c = start(CLI, [
    'coordinator', '--host', '127.0.0.1', '--port', '0', '--token', VOLUNTEERS, '--log-format', 'json', '--log-level', 'warn',
    ...run, '--min-workers', String(workers + (cheater ? 1 : 0)), '--report', report, '--metrics', metrics, '--export', weights,
    '--run-dir', path.join(dir, 'run'), '--checkpoint-every', '1000000',
  ]);
  const procs = [];
  try {
    const m = await until(() => /--url (ws:\/\/\S+)/.exec(c.out) ?? (c.exitCode !== null ? 'dead' : null), 30_000, 'coordinator address');
    if (m === 'dead') throw new Error(`audits bench: the coordinator ended: ${c.err.slice(-2000)}`);
    const url = m[1];
    for (let i = 0; i < workers; i++) procs.push(start(CLI, ['worker', '--url', url, '--token', VOLUNTEERS, '--threads', '1']));
    const evil = cheater
      ? start(EVIL, ['--url', url, '--token', VOLUNTEERS, '--mode', cheater.mode, '--factor', String(cheater.factor ?? 1000), '--every', String(cheater.every ?? 1)])
      : null;
    if (evil) procs.push(evil);
    const code = await c.exited;
    if (code !== 0) throw new Error(`audits bench: the coordinator exited ${code}: ${c.err.slice(-2000)}`);
    const lines = fs.readFileSync(metrics, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    const steps = lines.filter((l) => l.kind === 'step');
    return {
      wallMs: steps.length > 1 ? steps.at(-1).time - steps[0].time : 0,
      cpu: { coordinator: c.cpuMs, workers: procs.filter((p) => p !== evil).map((p) => p.cpuMs), cheater: evil?.cpuMs ?? null },
      counters: reportCounters(report),
      sha: sha256(weights),
      log: c.err.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l)),
      metrics: lines,
      events: evil ? evil.out.split('\n').filter(Boolean).map((l) => JSON.parse(l)) : [],
    };
  } finally {
    for (const p of [c, ...procs]) p.kill('SIGKILL');
    await Promise.all([c, ...procs].map((p) => p.exited));
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** Audit overhead: `reps` pairs of runs at --audit-rate 0 and `rate`, alternated. */
export async function benchOverhead({ run, reps = 3, rate = 0.05, log = () => {} }) {
  const rows = [];
  for (let i = 0; i < reps; i++) {
    for (const r of [0, rate]) {
      const o = await oneRun([...run, '--audit-rate', String(r)]);
      const audited = (o.counters['audits.passed'] ?? 0) + (o.counters['audits.failed'] ?? 0);
      const results = audited + (o.counters['audits.skipped'] ?? 0);
      rows.push({ rate: r, wallMs: o.wallMs, coordinatorCpuMs: o.cpu.coordinator, workersCpuMs: o.cpu.workers.reduce((a, b) => a + b, 0), audited, results });
      log(`  overhead: rate ${r}, run ${i + 1}: ${(o.wallMs / 1000).toFixed(1)} s, coordinator CPU ${(o.cpu.coordinator / 1000).toFixed(1)} s, workers ${(rows.at(-1).workersCpuMs / 1000).toFixed(1)} s, audited ${audited} of ${results}`);
    }
  }
  const at = (r) => rows.filter((x) => x.rate === r);
  const off = at(0);
  const on = at(rate);
  const extraCpu = median(on.map((x) => x.coordinatorCpuMs)) - median(off.map((x) => x.coordinatorCpuMs));
  return {
    rate, reps, rows,
    audited_share: median(on.map((x) => x.audited / Math.max(1, x.results))),
    // Past probation (the first 4 results of each of the 2 sessions are always audited).
    audited_share_after_probation: median(on.map((x) => Math.max(0, x.audited - 8) / Math.max(1, x.results - 8))),
    extra_coordinator_cpu_share_of_workers: extraCpu / median(on.map((x) => x.workersCpuMs)),
    wall_ratio: median(on.map((x) => x.wallMs)) / median(off.map((x) => x.wallMs)),
  };
}

/** Steps until a cheater is caught, and what the rollback costs: `trials` runs per cheater. */
export async function benchCaught({ run, every, trials = 3, ref, log = () => {} }) {
  const out = [];
  for (let i = 0; i < trials; i++) {
    const o = await oneRun(run, { cheater: { mode: 'scale-grad', factor: 1000, every } });
    const firstLie = o.events.find((e) => e.event === 'corrupt');
    const rollback = o.log.find((l) => l.msg?.startsWith('rolled back'));
    const caught = o.log.find((l) => l.msg?.startsWith('audit mismatch'));
    // The rollback's time: from its log line until a step line with the step it left from again.
    let rollbackMs = null;
    if (rollback) {
      const back = o.metrics.find((l) => l.kind === 'step' && l.step === rollback.from && l.time >= rollback.time);
      rollbackMs = back ? back.time - rollback.time : null;
    }
    const row = {
      every, trial: i + 1,
      lies: o.events.filter((e) => e.event === 'corrupt').length,
      first_lie_step: firstLie?.step ?? null,
      caught_at_step: rollback?.from ?? null,
      steps_until_caught: firstLie && rollback ? rollback.from - firstLie.step + 1 : null,
      lie_caught_step: caught?.step ?? null,
      rolled_back_to: rollback?.to ?? null,
      steps_replayed: o.counters.rollback_steps ?? 0,
      rollback_ms: rollbackMs,
      step_ms: o.wallMs / Math.max(1, o.metrics.filter((l) => l.kind === 'step').length - 1),
      byte_identical: o.sha === ref,
    };
    out.push(row);
    log(`  caught (1 in ${every}), trial ${i + 1}: first lie at step ${row.first_lie_step}, rollback at step ${row.caught_at_step} to ${row.rolled_back_to} (${row.steps_replayed} replayed, ${row.rollback_ms} ms), byte-identical ${row.byte_identical}`);
  }
  return out;
}

/** Resident memory of a process, in MiB (Linux /proc), or null. */
function rssMiB(pid) {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : null;
  } catch {
    return null;
  }
}

/**
 * The coordinator's memory while `workers` volunteers churn: every `periodMs`, `perPeriod` of them
 * are killed and as many new ones started, for `seconds`. RSS sampled every second.
 */
export async function benchChurn({ run, workers = 64, seconds = 60, periodMs = 1000, perPeriod = 2, log = () => {} }) {
  // The workers present the trusted token: volunteers from one address are capped (16 by default).
  const trusted = 'audit-bench-churn-trusted';
  const c = start(CLI, ['coordinator', '--host', '127.0.0.1', '--port', '0', '--token', VOLUNTEERS, '--trusted-token', trusted, '--log-format', 'json', '--log-level', 'error',
    ...run, '--min-workers', '1', '--steps', '100000000', '--run-dir', fs.mkdtempSync(path.join(os.tmpdir(), 'gradhub-churn-')), '--checkpoint-every', '1000000']);
  const live = [];
  let sessions = 0;
  const join = (url) => {
    sessions++;
    live.push(start(CLI, ['worker', '--url', url, '--token', trusted, '--threads', '1', '--log-level', 'error'], 4096, false));
  };
  const samples = [];
  try {
    const m = await until(() => /--url (ws:\/\/\S+)/.exec(c.out), 30_000, 'coordinator address');
    const url = m[1];
    for (let i = 0; i < workers; i++) join(url);
    const t0 = Date.now();
    let next = t0;
    while (Date.now() - t0 < seconds * 1000) {
      await new Promise((r) => setTimeout(r, periodMs));
      for (let k = 0; k < perPeriod && live.length > 0; k++) live.splice(Math.floor(Math.random() * live.length), 1)[0].kill('SIGKILL');
      while (live.length < workers) join(url);
      if (Date.now() >= next) {
        const http = url.replace(/^ws/, 'http');
        const status = await fetch(http + '/healthz').then((r) => r.ok).catch(() => false);
        // The JS heap in use, from the coordinator's own /metrics (prom-client's default metrics).
        const text = await fetch(http + '/metrics').then((r) => (r.ok ? r.text() : '')).catch(() => '');
        const heap = /^nodejs_heap_size_used_bytes (\S+)$/m.exec(text);
        const live = /^gradhub_workers_connected (\S+)$/m.exec(text);
        const external = /^nodejs_external_memory_bytes (\S+)$/m.exec(text); // Buffers, ArrayBuffers, WebAssembly memories
        samples.push({ s: Math.round((Date.now() - t0) / 1000), rss_mib: rssMiB(c.pid), heap_used_mib: heap ? Number(heap[1]) / 2 ** 20 : null, external_mib: external ? Number(external[1]) / 2 ** 20 : null, workers: live ? Number(live[1]) : null, sessions, healthy: status });
        next += 5000;
        log(`  churn: ${samples.at(-1).s} s, coordinator RSS ${samples.at(-1).rss_mib?.toFixed(0)} MiB, heap ${samples.at(-1).heap_used_mib?.toFixed(0)} MiB, ${samples.at(-1).workers} workers, ${sessions} sessions so far`);
      }
    }
    if (c.exitCode !== null) throw new Error(`audits bench: the coordinator ended during churn: ${c.err.slice(-2000)}`);
  } finally {
    for (const p of [c, ...live]) p.kill('SIGKILL');
  }
  return { workers, seconds, perSecond: perPeriod * 1000 / periodMs, sessions, samples };
}
