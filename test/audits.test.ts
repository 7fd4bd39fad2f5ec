/**
 * Audits by recomputation with exact rollback (issue 15), with real processes and sockets: a
 * cheating worker (test/adversary/evil-worker.mjs) beside honest `gradhub worker`s, against a real
 * `gradhub coordinator` at the default --audit-rate. Its corrupted result is applied, caught by an
 * audit, the worker banned and training rolled back and replayed without it: the final weights are
 * byte-identical to `--workers 0`, and the report's counters say what happened.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { referenceSha, runCli, sha256, startCli, tempDir, SMALL_RUN } from './helpers.js';
import { startCoordinator } from './cluster-helpers.js';
import { pollUntil } from './support/poll.js';
import { parsePrometheusText, promValue } from './support/prometheus.js';
import { readReport, startEvilWorker, type EvilMode } from './adversary/evil.js';

const STEPS = 8;
const RUN = [...SMALL_RUN, '--steps', String(STEPS)];
// 4 replicas: each of the 3 workers gets one at least (a round uses every worker, up to one per replica).
const ROUNDS = [...SMALL_RUN, '--steps', '3', '--local-steps', '2', '--replicas', '4'];
const reference: Record<string, string> = {};

beforeAll(async () => {
  for (const [name, run] of [['steps', RUN], ['rounds', ROUNDS]] as const) {
    const dir = tempDir(`audit-ref-${name}`);
    const r = await runCli(['train', '--workers', '0', ...run, '--export', path.join(dir, 'w.st')]);
    expect(r.code, r.stderr).toBe(0);
    reference[name] = sha256(path.join(dir, 'w.st'));
  }
}, 120_000);

/** With `trusted`, one of the two honest workers joins with the operator's token: audits run on it. */
async function cheaterRun(mode: EvilMode, factor: string, run: readonly string[], ref: string, trusted = false): Promise<Record<string, number>> {
  const dir = tempDir(`audit-${mode}`);
  const report = path.join(dir, 'report.html');
  const metrics = path.join(dir, 'm.jsonl');
  const TT = 'operator-token-for-audits';
  const coord = await startCoordinator([...run, '--min-workers', '3', '--export', path.join(dir, 'w.st'), '--report', report, '--metrics', metrics, ...(trusted ? ['--trusted-token', TT] : [])]);
  const honest = [startCli(['worker', '--url', coord.url, '--token', trusted ? TT : coord.token]), startCli(['worker', '--url', coord.url, '--token', coord.token])];
  const cheater = startEvilWorker(coord.url, coord.token, mode, ['--factor', factor]);
  try {
    const r = await coord.exited;
    expect(r.code, r.stderr).toBe(0);
    expect(sha256(path.join(dir, 'w.st'))).toBe(ref);
    const { counters } = readReport(report);
    expect(counters['audits.failed']).toBeGreaterThanOrEqual(1);
    expect(counters.rollbacks).toBeGreaterThanOrEqual(1);
    expect(counters.bans).toBeGreaterThanOrEqual(1);
    expect(counters['rejected.BANNED']).toBeGreaterThanOrEqual(1);
    // Banned by name: it was not let back in (one welcome only).
    expect(cheater.welcomes().length).toBe(1);
    // Each step (or round) once in the metrics file, with the replayed values.
    const lines = fs.readFileSync(metrics, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { kind: string; step?: number; round?: number });
    const updates = lines.filter((l) => l.kind === 'step' || l.kind === 'round').map((l) => l.step ?? l.round);
    expect(updates).toEqual([...new Set(updates)].sort((a, b) => a! - b!));
    return counters;
  } finally {
    for (const p of [...honest, cheater, coord.process]) p.kill('SIGKILL');
  }
}

describe('a cheating worker beside honest ones, at the default audit rate', () => {
  it('scaling its gradients by 1000: caught, banned, rolled back; weights byte-identical to --workers 0', async () => {
    await cheaterRun('scale-grad', '1000', RUN, reference.steps);
  }, 300_000);

  it('forging its denominator: caught by the sums compare; byte-identical', async () => {
    await cheaterRun('forge-denom', '2', RUN, reference.steps);
  }, 300_000);

  it('forging its correct counts (every sample right): caught by the sums compare; byte-identical', async () => {
    await cheaterRun('forge-correct', '2', RUN, reference.steps);
  }, 300_000);

  it('in rounds mode, scaling its pseudo-gradient: caught through the replica runner; byte-identical (tensors packed both ways)', async () => {
    await cheaterRun('scale-grad', '1000', [...ROUNDS, '--wire-compression', 'on'], reference.rounds);
  }, 300_000);
});

describe('audits on a trusted worker (the operator\'s, joined with --trusted-token)', () => {
  // The trusted worker keeps each version aside (Keep) while volunteers are here and recomputes
  // sampled nodes on it (audit Work); the coordinator compares its digests with the volunteers'.
  it('a gradient scaled by 1000 is caught by the trusted worker\'s recompute, banned, rolled back; byte-identical', async () => {
    const counters = await cheaterRun('scale-grad', '1000', RUN, reference.steps, true);
    expect(counters['audits.remote']).toBeGreaterThanOrEqual(1);
    expect(counters['rejected.UNEXPECTED_MESSAGE'] ?? 0).toBe(0);
  }, 300_000);

  it('in rounds mode too (a replica-round recomputed on the kept theta); byte-identical', async () => {
    const counters = await cheaterRun('scale-grad', '1000', ROUNDS, reference.rounds, true);
    expect(counters['audits.remote']).toBeGreaterThanOrEqual(1);
  }, 300_000);
});

describe('a worker that lies only in evaluations', () => {
  it('is caught by the audit of its evaluation answers and banned; the evaluation is replayed: figures and weights as --workers 0', async () => {
    const dir = tempDir('audit-eval');
    const refMetrics = path.join(dir, 'ref.jsonl');
    const ref = await runCli(['train', '--workers', '0', ...RUN, '--metrics', refMetrics, '--export', path.join(dir, 'ref.st')]);
    expect(ref.code, ref.stderr).toBe(0);
    const metrics = path.join(dir, 'm.jsonl');
    const report = path.join(dir, 'report.html');
    // Every result audited, so the test does not wait on chance: the point is that evaluation answers are audited at all.
    const coord = await startCoordinator([...RUN, '--min-workers', '3', '--audit-rate', '1', '--export', path.join(dir, 'w.st'), '--report', report, '--metrics', metrics]);
    const honest = [startCli(['worker', '--url', coord.url, '--token', coord.token]), startCli(['worker', '--url', coord.url, '--token', coord.token])];
    const cheater = startEvilWorker(coord.url, coord.token, 'forge-eval');
    try {
      const r = await coord.exited;
      expect(r.code, r.stderr).toBe(0);
      const { counters } = readReport(report);
      expect(counters.bans).toBe(1);
      expect(counters.rollbacks).toBeGreaterThanOrEqual(1);
      expect(cheater.welcomes()).toHaveLength(1);
      const evals = (f: string) => fs.readFileSync(f, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { kind: string; step: number; test_loss?: number; test_accuracy?: number })
        .filter((l) => l.kind === 'epoch' || l.kind === 'eval').map((l) => [l.kind, l.step, l.test_loss, l.test_accuracy]);
      expect(evals(metrics)).toEqual(evals(refMetrics));
      expect(evals(metrics).length).toBeGreaterThan(0);
      expect(sha256(path.join(dir, 'w.st'))).toBe(sha256(path.join(dir, 'ref.st')));
    } finally {
      for (const p of [...honest, cheater, coord.process]) p.kill('SIGKILL');
    }
  }, 300_000);
});

describe('a patient cheater caught after its lies left the memory window', () => {
  it('is undone from the rollback anchor on disk: byte-identical to --workers 0, nothing final', async () => {
    // One snapshot in memory (--rollback-memory-mb 1 holds 1 state of this 74 k-parameter model).
    // The cheater is honest for its first 12 training results, then lies in every one until it
    // is caught (80 steps give it dozens of results); half of the results after the 4 of
    // probation are audited. Every
    // unaudited result of a proven cheater is distrusted, so the rollback goes back to its first
    // unaudited one, out of memory when a lie is caught (that needs one of its results 5..12
    // unaudited: 1 - 2^-8).
    const run = [...SMALL_RUN, '--steps', '80'];
    const ref = await referenceSha(run, 'audit-anchor-ref');
    const dir = tempDir('audit-anchor');
    const report = path.join(dir, 'report.html');
    const coord = await startCoordinator([...run, '--min-workers', '3', '--audit-rate', '0.5', '--rollback-memory-mb', '1', '--run-dir', path.join(dir, 'run'),
      '--export', path.join(dir, 'w.st'), '--report', report, '--log-format', 'json']);
    const honest = [startCli(['worker', '--url', coord.url, '--token', coord.token]), startCli(['worker', '--url', coord.url, '--token', coord.token])];
    const cheater = startEvilWorker(coord.url, coord.token, 'scale-grad', ['--factor', '1000', '--honest-first', '12']);
    try {
      const r = await coord.exited;
      expect(r.code, r.stderr).toBe(0);
      const lies = cheater.output().stdout.split('\n').filter((l) => l.includes('"corrupt"')).length;
      expect(lies, 'the cheater lied').toBeGreaterThan(0);
      const { counters } = readReport(report);
      expect(counters.bans, `caught (it lied ${lies} times)`).toBe(1);
      expect(counters.rollback_steps, 'the rollback went back past the 1-state window').toBeGreaterThan(1);
      expect(counters.rollbacks_beyond_window ?? 0).toBe(0);
      const lines = r.stderr.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { msg: string; step?: number });
      expect(lines.some((l) => l.msg.startsWith('rollback anchor: the state before the oldest unaudited result kept on disk'))).toBe(true);
      expect(sha256(path.join(dir, 'w.st'))).toBe(ref);
      expect(fs.existsSync(path.join(dir, 'run', 'rollback-anchor.bin')), 'the anchor is removed at the end').toBe(false);
    } finally {
      for (const p of [...honest, cheater, coord.process]) p.kill('SIGKILL');
    }
  }, 300_000);
});

describe('a worker that answers only NaN', () => {
  it('beside honest workers: its answers are counted and recomputed, no divergence is declared, byte-identical', async () => {
    const dir = tempDir('audit-nan');
    const report = path.join(dir, 'report.html');
    const coord = await startCoordinator([...RUN, '--min-workers', '3', '--export', path.join(dir, 'w.st'), '--report', report]);
    const honest = [startCli(['worker', '--url', coord.url, '--token', coord.token]), startCli(['worker', '--url', coord.url, '--token', coord.token])];
    const nan = startEvilWorker(coord.url, coord.token, 'nan');
    try {
      const r = await coord.exited;
      expect(r.code, r.stderr).toBe(0);
      expect(sha256(path.join(dir, 'w.st'))).toBe(reference.steps);
      const { counters } = readReport(report);
      expect(counters.results_non_finite).toBeGreaterThanOrEqual(1);
      expect(counters.rollbacks ?? 0).toBe(0); // nothing of it was applied
    } finally {
      for (const p of [...honest, nan, coord.process]) p.kill('SIGKILL');
    }
  }, 300_000);

  it('two alone: their answers declare no divergence; the coordinator recomputes, finds the node finite, bans both; an honest worker then ends the run byte-identical', async () => {
    const dir = tempDir('audit-nan-alone');
    const report = path.join(dir, 'report.html');
    const coord = await startCoordinator([...RUN, '--min-workers', '2', '--export', path.join(dir, 'w.st'), '--report', report]);
    const nans = [startEvilWorker(coord.url, coord.token, 'nan', ['--name', 'nan-a']), startEvilWorker(coord.url, coord.token, 'nan', ['--name', 'nan-b'])];
    const started: { kill(sig?: NodeJS.Signals): boolean }[] = [...nans, coord.process];
    try {
      await pollUntil(async () => {
        try {
          const res = await fetch(`http://127.0.0.1:${coord.port}/metrics`);
          return promValue(parsePrometheusText(await res.text()), 'gradhub_bans_total') >= 2;
        } catch {
          return false;
        }
      }, 120_000, 'both NaN workers banned', { everyMs: 100, abort: coord.exited });
      started.push(startCli(['worker', '--url', coord.url, '--token', coord.token]));
      const r = await coord.exited;
      expect(r.code, r.stderr).toBe(0);
      expect(sha256(path.join(dir, 'w.st'))).toBe(reference.steps);
      const { counters } = readReport(report);
      expect(counters.results_non_finite).toBeGreaterThanOrEqual(2);
      expect(counters.bans).toBe(2);
    } finally {
      for (const p of started) p.kill('SIGKILL');
    }
  }, 300_000);
});

describe('--audit-rate', () => {
  it('outside 0..1 is a usage error, before any data is read', async () => {
    const r = await runCli(['train', '--workers', '1', ...RUN, '--audit-rate', '1.5', '--data', '/nonexistent-gradhub-data']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--audit-rate must be a number from 0 to 1, got 1.5/);
  });
});
