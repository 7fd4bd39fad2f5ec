/**
 * The cluster with real processes on loopback: `gradhub train --workers N`, and `gradhub
 * coordinator` + `gradhub worker` started by hand, with slow, killed, late-joining workers and a
 * coordinator killed and resumed. Every run must end with weights byte-identical to --workers 0.
 */
import { describe, it, expect, beforeAll } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { runCli, startCli, sha256, tempDir, readJsonl, SMALL_RUN, referenceSha } from './helpers.js';
import { startCoordinator, waitFor, stepsDone } from './cluster-helpers.js';

const STEPS = 12;
const RUN = [...SMALL_RUN, '--steps', String(STEPS)];
let reference = '';

beforeAll(async () => {
  reference = await referenceSha(RUN, 'ref');
});

describe('gradhub train --workers N', () => {
  for (const n of [1, 2, 3, 4]) {
    it(`--workers ${n} ends byte-identical to --workers 0`, async () => {
      const dir = tempDir(`w${n}`);
      const r = await runCli(['train', '--workers', String(n), ...RUN, '--export', path.join(dir, 'w.st'), '--metrics', path.join(dir, 'm.jsonl')]);
      expect(r.code, r.stderr).toBe(0);
      expect(sha256(path.join(dir, 'w.st'))).toBe(reference);
      expect(readJsonl(path.join(dir, 'm.jsonl')).filter((l) => l.kind === 'step').length).toBe(STEPS);
    });
  }
});

describe('gradhub coordinator + gradhub worker', () => {
  it('uneven speeds, a worker joining mid-run and a worker killed mid-step change nothing', async () => {
    const dir = tempDir('faults');
    const metrics = path.join(dir, 'm.jsonl');
    const coord = await startCoordinator([...RUN, '--min-workers', '2', '--export', path.join(dir, 'w.st'), '--metrics', metrics]);
    const slow = startCli(['worker', '--url', coord.url, '--token', coord.token, '--slowdown-ms', '40']);
    const victim = startCli(['worker', '--url', coord.url, '--token', coord.token]);
    await waitFor(() => stepsDone(metrics) >= 3, 60_000, 'three steps');
    victim.kill('SIGKILL');
    const late = startCli(['worker', '--url', coord.url, '--token', coord.token]);
    const r = await coord.exited;
    expect(r.code, r.stderr).toBe(0);
    expect(sha256(path.join(dir, 'w.st'))).toBe(reference);
    for (const w of [slow, late]) w.kill('SIGTERM');
  });

  it('a coordinator killed with SIGKILL and restarted with --resume: workers reconnect, weights byte-identical', async () => {
    const dir = tempDir('coordkill');
    const metrics = path.join(dir, 'm.jsonl');
    const ck = path.join(dir, 'ck');
    const args = [...RUN, '--min-workers', '2', '--checkpoint-dir', ck, '--checkpoint-every', '3', '--export', path.join(dir, 'w.st'), '--metrics', metrics];
    const first = await startCoordinator(args);
    const workers = [0, 1].map(() => startCli(['worker', '--url', first.url, '--token', first.token, '--slowdown-ms', '20', '--grace-ms', '60000']));
    await waitFor(() => stepsDone(metrics) >= 5, 60_000, 'five steps');
    first.process.kill('SIGKILL');
    await first.exited;
    const second = await startCoordinator([...args, '--resume', '--port', String(first.port), '--token', first.token]);
    const r = await second.exited;
    expect(r.code, r.stderr).toBe(0);
    expect(sha256(path.join(dir, 'w.st'))).toBe(reference);
    const steps = readJsonl<{ kind: string; step: number }>(metrics).filter((l) => l.kind === 'step').map((l) => l.step);
    expect(steps).toEqual(Array.from({ length: STEPS }, (_, i) => i + 1));
    for (const w of workers) w.kill('SIGTERM');
  });

  it('a worker whose coordinator never comes back exits after its grace period', async () => {
    const coord = await startCoordinator([...RUN, '--min-workers', '5']);
    const w = startCli(['worker', '--url', coord.url, '--token', coord.token, '--grace-ms', '1500']);
    await waitFor(() => coord.output().stdout.includes('joined') || coord.output().stderr.includes('joined'), 20_000, 'worker joined').catch(() => {});
    coord.process.kill('SIGKILL');
    const code = await new Promise<number | null>((resolve) => w.on('exit', (c) => resolve(c)));
    expect(code).not.toBe(0);
    expect(w.output().stderr).toMatch(/E_COORDINATOR_GONE|gave up|unreachable/i);
  });
});

describe('cluster edge cases', () => {
  it('the metrics of a cluster run (local workers on a Unix socket) are the same as in-process (losses and accuracies bit for bit)', async () => {
    const dir = tempDir('metrics');
    // The local workers connect over a Unix socket in a private directory under TMPDIR, gone at the end.
    const tmp = path.join(dir, 'tmp');
    fs.mkdirSync(tmp);
    const [a, b] = await Promise.all([
      runCli(['train', '--workers', '0', ...RUN, '--metrics', path.join(dir, 'a.jsonl')]),
      runCli(['train', '--workers', '3', ...RUN, '--metrics', path.join(dir, 'b.jsonl'), '--log-level', 'debug'], { TMPDIR: tmp }),
    ]);
    expect(a.code, a.stderr).toBe(0);
    expect(b.code, b.stderr).toBe(0);
    expect(b.stderr).toContain(`"workerUrl":"ws+unix://${tmp}/gradhub-`);
    expect(fs.readdirSync(tmp)).toEqual([]);
    const strip = (f: string) => readJsonl<Record<string, unknown>>(path.join(dir, f)).map(({ samples_per_s: _s, time: _t, eval_ms: _e, ...rest }) => rest);
    expect(strip('b.jsonl')).toEqual(strip('a.jsonl'));
    expect(fs.existsSync(path.join(dir, 'a.jsonl'))).toBe(true);
  });
});
