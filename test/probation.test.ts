/**
 * A worker that joins a running cluster is on probation (docs/design.md "Speeds, stalls and
 * non-finite results"): it computes a copy of a node others hold until it is measured. When the
 * others end the step before its copy is done, the copy's answer arrives after its request and
 * must still measure it; otherwise a worker slower than one step never gets a share and is
 * finally dropped as stalled. Real processes: a coordinator, two workers, a third one joining late.
 */
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { SMALL_RUN, sha256, startCli, tempDir, referenceSha } from './helpers.js';
import { startCoordinator, stepsDone, waitFor } from './cluster-helpers.js';
import { plansOf, readReport, startEvilWorker } from './adversary/evil.js';

const STEPS = 150;

describe('a worker joining a running cluster', () => {
  it('is measured by its probation copy even when the step ends first, then gets a share; the run ends byte-identical', async () => {
    const run = [...SMALL_RUN, '--steps', String(STEPS)];
    const ref = await referenceSha(run, 'probation-ref');
    const dir = tempDir('probation');
    const metrics = path.join(dir, 'm.jsonl');
    const report = path.join(dir, 'report.html');
    const coord = await startCoordinator([...run, '--min-workers', '2', '--export', path.join(dir, 'w.st'), '--metrics', metrics, '--report', report, '--log-level', 'debug', '--log-format', 'json']);
    // The first two set the pace; the late one is as fast, so its copy loses the race to the holder.
    const early = [0, 1].map(() => startCli(['worker', '--url', coord.url, '--token', coord.token, '--slowdown-ms', '15']));
    let late: ReturnType<typeof startEvilWorker> | null = null;
    try {
      await waitFor(() => stepsDone(metrics) >= 5, 60_000, 'five steps', coord.exited);
      late = startEvilWorker(coord.url, coord.token, 'honest', ['--slowdown-ms', '15', '--name', 'late']);
      const r = await coord.exited;
      expect(r.code, r.stderr.slice(-3000)).toBe(0);
      expect(sha256(path.join(dir, 'w.st'))).toBe(ref);
      const lateId = late.welcomes()[0];
      expect(lateId).toBeGreaterThan(0);
      expect(late.welcomes(), 'never dropped').toHaveLength(1);
      const lines = (r.stderr + r.stdout).split('\n');
      expect(lines.some((l) => l.includes('"worker on probation: computing a copy"') && l.includes(`"workerId":${lateId}`))).toBe(true);
      // Measured (by a copy answered in its request, or after it), then in the split.
      const shares = plansOf(r.stderr + r.stdout).filter((p) => p.mode === 'train' && (p.chunks.get(lateId) ?? 0) > 0);
      expect(shares.length, 'steps in which the late worker had a share').toBeGreaterThan(0);
      expect(readReport(report).counters['rejected.STALLED'] ?? 0).toBe(0);
    } finally {
      for (const p of [...early, ...(late ? [late] : []), coord.process]) p.kill('SIGKILL');
    }
  }, 300_000);
});
