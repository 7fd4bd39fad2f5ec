/**
 * Issue 15's floods, as real processes on real sockets: a coordinator (`gradhub coordinator`, a
 * child process under `ulimit -n 1024`) trains with honest workers while attackers, each a child
 * process on a loopback address of its own, open thousands of raw TCP connections without any
 * token (some sending half a request head), or hold volunteer WebSockets with the public join
 * token. The coordinator must stay up, answer /healthz, write its checkpoints, count the refusals
 * in /metrics, let a trusted worker in at once, and end with the weights of a run without attack.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { SMALL_RUN, sha256, startCli, tempDir, referenceSha } from '../helpers.js';
import { stepsDone, waitFor } from '../cluster-helpers.js';
import { pollUntil } from '../support/poll.js';
import { JOIN, TRUSTED, attackerAddress, counted, get, metricsOf, reportCounters, startAttacker, startCoordinatorUnder } from './adversary-helpers.js';

const STEPS = 8;
const RUN = [...SMALL_RUN, '--steps', String(STEPS)];
let reference = '';

beforeAll(async () => {
  reference = await referenceSha(RUN, 'adv-ref');
});

interface TcpFigures { opened: number; closed: number; failed: number; open: number }
interface WsFigures { accepted: number; refused: Record<string, number>; errors: number; open: number }

describe('a connection flood without any token, under ulimit -n 1024', () => {
  it('leaves the coordinator up: /healthz answers, checkpoints are written, honest workers finish with the same bits, refusals are counted', async () => {
    const dir = tempDir('adv-flood');
    const metrics = path.join(dir, 'm.jsonl');
    const ck = path.join(dir, 'ck');
    const coord = await startCoordinatorUnder([
      ...RUN, '--min-workers', '2', '--checkpoint-dir', ck, '--checkpoint-every', '2', '--headers-timeout-ms', '2000',
      '--export', path.join(dir, 'w.st'), '--metrics', metrics,
    ], 1024);
    // Six processes, 342 silent connections each (2,052), and one sending half a request head.
    const flood = Array.from({ length: 6 }, (_, i) => startAttacker<TcpFigures>('tcp-flood.mjs', ['127.0.0.1', coord.port, attackerAddress(i), 342]));
    const slow = startAttacker<TcpFigures>('tcp-flood.mjs', ['127.0.0.1', coord.port, attackerAddress(6), 40, 'half']);
    const attackers = [...flood, slow];
    const workers: ReturnType<typeof startCli>[] = [];
    try {
      const opened = () => flood.reduce((n, a) => n + (a.last()?.opened ?? 0), 0);
      await waitFor(() => opened() >= 2048, 60_000, 'the flood to open 2,048 connections', coord.exited);

      // Under the flood, before training: /healthz answers (and says nothing about the run), the
      // refusals are counted by reason, and a half-sent request head is timed out.
      const health = await get(coord.port, '/healthz');
      expect(health.status).toBe(200);
      expect(JSON.parse(health.body)).toEqual({ status: 'ok' });
      const refusedBy = await pollUntil(async () => {
        const m = await metricsOf(coord.port);
        const r = { perAddress: counted(m, 'gradhub_refused_total', { reason: 'sockets_per_address' }), timeout: counted(m, 'gradhub_refused_total', { reason: 'timeout' }) };
        return r.perAddress > 0 && r.timeout > 0 ? r : null;
      }, 60_000, 'refusals counted in /metrics', { abort: coord.exited });
      expect(refusedBy.perAddress).toBeGreaterThan(0);

      // While they train, /healthz is asked every 200 ms (until the run ends and the port closes).
      let healthy = 0;
      let training = true;
      const probe = (async () => {
        while (training) {
          if (stepsDone(metrics) >= 1) healthy += await get(coord.port, '/healthz').then((h) => (h.status === 200 ? 1 : 0), () => 0);
          await new Promise((res) => setTimeout(res, 200));
        }
      })();
      workers.push(...[0, 1].map(() => startCli(['worker', '--url', coord.url, '--token', JOIN, '--slowdown-ms', '60'])));
      const r = await coord.exited;
      training = false;
      await probe;
      expect(healthy, '/healthz answered during training').toBeGreaterThan(0);
      expect(r.code, r.stderr.slice(-3000)).toBe(0);
      expect(r.stderr).not.toMatch(/EMFILE/);
      // The flood was on to the end.
      expect(flood.some((a) => (a.last()?.open ?? 0) > 0)).toBe(true);
      expect(sha256(path.join(dir, 'w.st'))).toBe(reference);
      expect(fs.readdirSync(ck).filter((f) => f.startsWith('ckpt-')).length).toBeGreaterThan(0);
      // The log says each reason at most once per 5 s window (with a count), not once per refusal.
      const refusalLines = r.stderr.split('\n').filter((l) => l.includes('refused'));
      expect(refusalLines.length).toBeLessThan(200);
    } finally {
      for (const w of workers) w.kill('SIGTERM');
      coord.process.kill('SIGKILL');
      await Promise.all(attackers.map((a) => a.stop()));
    }
  }, 300_000);
});

describe('1,100 idle WebSockets with the public join token', () => {
  it('cannot lock out a worker with the trusted token: it joins at once (no 503) and trains to the same bits', async () => {
    const dir = tempDir('adv-idle');
    const metrics = path.join(dir, 'm.jsonl');
    const report = path.join(dir, 'report.html');
    const coord = await startCoordinatorUnder([...RUN, '--min-workers', '1', '--export', path.join(dir, 'w.st'), '--metrics', metrics, '--report', report]);
    const idle = Array.from({ length: 8 }, (_, i) => startAttacker<WsFigures>('ws-idle.mjs', [coord.url, JOIN, attackerAddress(i), 138]));
    let worker: ReturnType<typeof startCli> | null = null;
    try {
      // The volunteers' slots are taken: every attacker holds WebSockets and is refused more.
      const state = () => idle.map((a) => a.last());
      await waitFor(() => state().every((f) => f !== null && f.open > 0 && (f.refused['503'] ?? 0) > 0), 60_000, 'the idle WebSockets to fill the volunteer slots', coord.exited);
      const held = state().reduce((n, f) => n + f!.open, 0);
      expect(held).toBeGreaterThanOrEqual(8);

      const spawnedAt = Date.now();
      worker = startCli(['worker', '--url', coord.url, '--token', TRUSTED, '--slowdown-ms', '30', '--log-format', 'json']);
      const r = await coord.exited;
      expect(r.code, r.stderr.slice(-3000)).toBe(0);
      const counters = reportCounters(report);
      // Thousands of refused upgrades and Hello timeouts: a few summary lines, not one each.
      const warnings = r.stderr.split('\n').filter((l) => l.includes('"level":40'));
      expect(warnings.length, warnings.slice(0, 5).join('\n')).toBeLessThan(100);
      expect(counters['refused.trusted_full'] ?? 0).toBe(0);
      expect(counters['refused.volunteers_per_address']).toBeGreaterThan(0);
      expect(sha256(path.join(dir, 'w.st'))).toBe(reference);
      // It was never turned away (a 503 or a Reject FULL would be a warning and a retry): one
      // session, joined on its first attempt, promptly.
      const lines = worker.output().stderr.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { level: number; msg: string; time: number });
      expect(lines.filter((l) => l.level >= 40), 'warnings of the trusted worker').toEqual([]);
      const joined = lines.filter((l) => l.msg === 'joined');
      expect(joined).toHaveLength(1);
      expect(joined[0].time - spawnedAt).toBeLessThan(30_000);
    } finally {
      worker?.kill('SIGTERM');
      coord.process.kill('SIGKILL');
      await Promise.all(idle.map((a) => a.stop()));
    }
  }, 300_000);
});
