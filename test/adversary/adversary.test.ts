/**
 * Workers we do not have to trust (issue 15): real adversary processes (evil-worker.mjs) beside
 * honest `gradhub worker`s, against a real `gradhub coordinator`. Whatever they do, the run ends
 * with weights byte-identical to `--workers 0`, and what they did is counted.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import * as path from 'node:path';
import { runCli, sha256, startCli, tempDir, SMALL_RUN, referenceSha } from '../helpers.js';
import { startCoordinator } from '../cluster-helpers.js';
import { parsePrometheusText, promValue } from '../support/prometheus.js';
import { plansOf, readReport, startEvilWorker } from './evil.js';

const STEPS = 12;
const RUN = [...SMALL_RUN, '--steps', String(STEPS)];
let reference = '';

beforeAll(async () => {
  reference = await referenceSha(RUN, 'adv-ref');
});

/** Kill what a test started, whatever happened. */
function cleanup(...procs: { kill(sig?: NodeJS.Signals): boolean }[]): void {
  for (const p of procs) p.kill('SIGKILL');
}

describe('a stalling worker (takes Work, never answers, keeps heartbeating)', () => {
  it('loses its work past its deadline, holds no later step up, and is dropped after repeated stalls; the run ends promptly and byte-identical', async () => {
    // A longer run than the others (the honest worker sleeps 300 ms a node), so that the staller's
    // repeated stalls (each about 2 s + 4 x its expected time) happen before it ends.
    const steps = 24;
    const run = [...SMALL_RUN, '--steps', String(steps)];
    const dir = tempDir('adv-stall');
    const ref = await runCli(['train', '--workers', '0', ...run, '--export', path.join(dir, 'ref.st')]);
    expect(ref.code, ref.stderr).toBe(0);
    const report = path.join(dir, 'report.html');
    const t0 = Date.now();
    const coord = await startCoordinator([...run, '--min-workers', '2', '--export', path.join(dir, 'w.st'), '--report', report]);
    const honest = startCli(['worker', '--url', coord.url, '--token', coord.token, '--slowdown-ms', '300']);
    const staller = startEvilWorker(coord.url, coord.token, 'stall');
    try {
      const r = await coord.exited;
      const ms = Date.now() - t0;
      expect(r.code, r.stderr).toBe(0);
      expect(sha256(path.join(dir, 'w.st'))).toBe(sha256(path.join(dir, 'ref.st')));
      // Waiting out the 30 s speculation delay at every step would take steps x 30 s: only the
      // first step waits for the staller (its deadline), later ones have it on probation.
      expect(ms).toBeLessThan((steps * 30_000) / 4);
      const { counters } = readReport(report);
      expect(counters.stalls).toBeGreaterThanOrEqual(3);
      // Dropped (Error STALLED) at its third stall; it may rejoin as a new worker, as `gradhub worker` does.
      expect(counters['rejected.STALLED']).toBeGreaterThanOrEqual(1);
      expect(staller.welcomes().length).toBeGreaterThanOrEqual(1);
    } finally {
      cleanup(honest, staller, coord.process);
    }
  }, 300_000);
});

describe('a worker that reports compute_ms = 1', () => {
  it('gets no bigger share for it: a forger slower than an honest worker gets less work than the honest one, and changes no bit', async () => {
    const dir = tempDir('adv-forge');
    const coord = await startCoordinator([...RUN, '--min-workers', '2', '--export', path.join(dir, 'w.st'), '--log-level', 'debug']);
    // The forger is truly slower (it sleeps 100 ms per node) but claims 1 ms per node: trusting
    // compute_ms gave it 4 of the 5 chunks of every step, and every step when the crew shrank to one.
    const honest = startCli(['worker', '--url', coord.url, '--token', coord.token]);
    const forger = startEvilWorker(coord.url, coord.token, 'forge-compute-ms', ['--slowdown-ms', '100']);
    try {
      const r = await coord.exited;
      expect(r.code, r.stderr).toBe(0);
      expect(sha256(path.join(dir, 'w.st'))).toBe(reference);
      const forgerId = forger.welcomes()[0];
      expect(forgerId).toBeGreaterThan(0);
      // Training steps after the first (when nothing is measured yet).
      const plans = plansOf(r.stderr + r.stdout).filter((p) => p.mode === 'train' && p.step > 1);
      expect(plans.length).toBe(STEPS - 1);
      let mine = 0;
      let others = 0;
      for (const p of plans) {
        for (const [id, n] of p.chunks) {
          if (id === forgerId) mine += n;
          else others += n;
        }
      }
      expect(mine * 2).toBeLessThan(others);
    } finally {
      cleanup(honest, forger, coord.process);
    }
  }, 300_000);
});

describe('non-finite results', () => {
  it('a NaN-only worker beside honest ones: training completes byte-identical, the non-finite results are counted in /metrics', async () => {
    const dir = tempDir('adv-nan');
    const report = path.join(dir, 'report.html');
    const coord = await startCoordinator([...RUN, '--min-workers', '3', '--export', path.join(dir, 'w.st'), '--report', report]);
    // The honest workers sleep per node so that the run lasts long enough to scrape /metrics during it.
    const honest = [0, 1].map(() => startCli(['worker', '--url', coord.url, '--token', coord.token, '--slowdown-ms', '150']));
    const nan = startEvilWorker(coord.url, coord.token, 'nan');
    let scraped = 0;
    const scrape = (async () => {
      while (coord.process.exitCode === null && coord.process.signalCode === null) {
        try {
          const res = await fetch(`http://127.0.0.1:${coord.port}/metrics`);
          scraped = Math.max(scraped, promValue(parsePrometheusText(await res.text()), 'gradhub_results_non_finite_total'));
        } catch {
          // not up yet, or gone
        }
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
    try {
      const r = await coord.exited;
      await scrape;
      expect(r.code, r.stderr).toBe(0);
      expect(sha256(path.join(dir, 'w.st'))).toBe(reference);
      expect(scraped).toBeGreaterThanOrEqual(1);
      const { counters } = readReport(report);
      expect(counters.results_non_finite).toBeGreaterThanOrEqual(scraped);
      // Three non-finite results within the window drop it (it rejoins and keeps trying).
      expect(counters['rejected.NON_FINITE_GRADIENT']).toBeGreaterThanOrEqual(1);
    } finally {
      cleanup(...honest, nan, coord.process);
    }
  }, 300_000);

  it('a worker whose first result is NaN: that node is recomputed elsewhere, counted once, and the run ends byte-identical', async () => {
    const dir = tempDir('adv-nan-once');
    const report = path.join(dir, 'report.html');
    const coord = await startCoordinator([...RUN, '--min-workers', '2', '--export', path.join(dir, 'w.st'), '--report', report]);
    const honest = startCli(['worker', '--url', coord.url, '--token', coord.token]);
    const once = startEvilWorker(coord.url, coord.token, 'nan-once');
    try {
      const r = await coord.exited;
      expect(r.code, r.stderr).toBe(0);
      expect(sha256(path.join(dir, 'w.st'))).toBe(reference);
      const { counters } = readReport(report);
      expect(counters.results_non_finite).toBe(1);
      expect(counters['rejected.NON_FINITE_GRADIENT'] ?? 0).toBe(0);
      expect(once.welcomes()).toHaveLength(1); // never dropped
    } finally {
      cleanup(honest, once, coord.process);
    }
  }, 300_000);

  // Untrusted answers never declare divergence: even with sampled audits off, the coordinator
  // recomputes the node and bans both (test/audits.test.ts, at the default rate). Two trusted
  // workers' answers are final.
  it('two trusted NaN-only workers alone, audits off: the run ends with E_DIVERGED (two different workers answered non-finite for one node)', async () => {
    const coord = await startCoordinator([...RUN, '--min-workers', '2', '--audit-rate', '0', '--trusted-token', 'tt-nan']);
    const nans = [startEvilWorker(coord.url, 'tt-nan', 'nan'), startEvilWorker(coord.url, 'tt-nan', 'nan')];
    try {
      const r = await coord.exited;
      expect(r.code).not.toBe(0);
      expect(r.stderr + r.stdout).toContain('E_DIVERGED');
    } finally {
      cleanup(...nans, coord.process);
    }
  }, 300_000);
});
