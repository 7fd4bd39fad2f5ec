/**
 * Load inflated from outside (issue 15), as real processes on real sockets: a joined volunteer
 * that floods ParamsRequests, and a storm of 3,000 volunteer sessions that join and leave. The
 * coordinator must send a bounded number of bytes for the requests, keep /api/status small and
 * its memory flat, and end the run with the weights of a run without attack.
 */
import * as path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { SMALL_RUN, sha256, startCli, tempDir, referenceSha } from '../helpers.js';
import { stepsDone, waitFor } from '../cluster-helpers.js';
import {
  JOIN, SMALL_MODEL_BYTES, TRUSTED, attackerAddress, counted, get, metricsOf, reportCounters, startAttacker, startCoordinatorUnder,
} from './adversary-helpers.js';

const STEPS = 16;
const RUN = [...SMALL_RUN, '--steps', String(STEPS)];
let reference = '';

beforeAll(async () => {
  reference = await referenceSha(RUN, 'adv-load-ref');
});

interface ParamsFloodFigures { requests: number; bytesIn: number; paramsBytes: number; versions: number; seen: number; welcomed: boolean }
interface StormFigures { welcomed: number; rejected: number; failed: number }

describe('a ParamsRequest flood from a joined volunteer', () => {
  it('gets each version at most once more per request of it: bytes sent stay bounded, training ends with the same bits', async () => {
    const dir = tempDir('adv-params');
    const metrics = path.join(dir, 'm.jsonl');
    const report = path.join(dir, 'report.html');
    const coord = await startCoordinatorUnder([...RUN, '--min-workers', '1', '--export', path.join(dir, 'w.st'), '--metrics', metrics, '--report', report]);
    const worker = startCli(['worker', '--url', coord.url, '--token', TRUSTED, '--slowdown-ms', '150']);
    try {
      await waitFor(() => stepsDone(metrics) >= 2, 60_000, 'two steps', coord.exited);
      const flood = startAttacker<ParamsFloodFigures>('params-flood.mjs', [coord.url, JOIN, 4, 20]);
      const f = (await flood.done)!;
      expect(f.welcomed).toBe(true);
      expect(f.requests).toBeGreaterThan(1000);
      // Without the fix every request was answered with the whole model: requests x model bytes.
      // Now: a version is resent at most once per connection, on top of the versions sent as
      // training goes (each at most once): at most (requested + seen + 1) versions.
      expect(f.paramsBytes).toBeLessThanOrEqual((f.versions + f.seen + 1) * (SMALL_MODEL_BYTES + 1024));
      expect(f.paramsBytes).toBeLessThan(f.requests * SMALL_MODEL_BYTES / 100);
      const r = await coord.exited;
      expect(r.code, r.stderr.slice(-3000)).toBe(0);
      expect(sha256(path.join(dir, 'w.st'))).toBe(reference);
      const counters = reportCounters(report);
      // Ignored and counted while it stayed connected (a volunteer that never answers its work is
      // later dropped as a staller: its requests after that reach nobody).
      expect(counters.params_requests_ignored).toBeGreaterThan(100);
      process.stdout.write(`params flood: ${f.requests} requests (${f.versions} versions asked, ${f.seen} seen): ${f.paramsBytes} bytes of Params received, ${counters.params_requests_ignored} requests ignored; unbounded it would have been ${f.requests * SMALL_MODEL_BYTES} bytes\n`);
    } finally {
      worker.kill('SIGTERM');
      coord.process.kill('SIGKILL');
    }
  }, 300_000);
});

describe('a join/leave storm of 3,000 volunteer sessions', () => {
  it('keeps /api/status small (departed rows pruned), memory flat, and the final weights the same', async () => {
    const dir = tempDir('adv-storm');
    const metrics = path.join(dir, 'm.jsonl');
    // No honest worker yet: the run cannot end during the storm (volunteers that leave at once
    // compute nothing), so the coordinator is there to be asked afterwards.
    const coord = await startCoordinatorUnder([...RUN, '--min-workers', '1', '--export', path.join(dir, 'w.st'), '--metrics', metrics]);
    let worker: ReturnType<typeof startCli> | null = null;
    try {
      const rss = async () => counted(await metricsOf(coord.port), 'process_resident_memory_bytes');
      const before = await rss();
      // Two halves of 1,500 sessions (4 processes, 4 at a time each): the first warms the process
      // up (buffers, compiled code); the second must not grow it much further.
      const half = async () => {
        const storm = Array.from({ length: 4 }, (_, i) => startAttacker<StormFigures>('join-storm.mjs', [coord.url, JOIN, attackerAddress(i), 375, 4]));
        return Promise.all(storm.map((a) => a.done));
      };
      const figures = await half();
      const middle = await rss();
      figures.push(...await half());
      const welcomed = figures.reduce((n, f) => n + (f?.welcomed ?? 0), 0);
      expect(welcomed, JSON.stringify(figures)).toBeGreaterThanOrEqual(2900);

      const status = await get(coord.port, '/api/status');
      expect(status.status).toBe(200);
      expect(status.body.length).toBeLessThan(64 * 1024);
      const snap = JSON.parse(status.body) as { workers: { state: string }[]; counters: Record<string, number> };
      expect(snap.workers.length).toBeLessThanOrEqual(64 + 16);
      const m = await metricsOf(coord.port);
      expect(counted(m, 'gradhub_worker_sessions_total', { event: 'joined' })).toBeGreaterThanOrEqual(welcomed);
      expect(counted(m, 'gradhub_worker_sessions_total', { event: 'left' })).toBeGreaterThanOrEqual(welcomed - 16);
      const after = await rss();
      expect(after - before, `resident memory ${before} -> ${after} bytes`).toBeLessThan(200 * 1024 * 1024);
      expect(after - middle, `resident memory ${middle} after 1,500 sessions -> ${after} after 3,000`).toBeLessThan(48 * 1024 * 1024);
      process.stdout.write(`join/leave storm: ${welcomed} sessions; /api/status ${status.body.length} bytes, ${snap.workers.length} rows; RSS ${before} -> ${middle} (1,500) -> ${after} bytes (3,000)\n`);

      worker = startCli(['worker', '--url', coord.url, '--token', TRUSTED]);
      const r = await coord.exited;
      expect(r.code, r.stderr.slice(-3000)).toBe(0);
      expect(sha256(path.join(dir, 'w.st'))).toBe(reference);
    } finally {
      worker?.kill('SIGTERM');
      coord.process.kill('SIGKILL');
    }
  }, 400_000);
});
