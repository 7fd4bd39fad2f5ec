/**
 * A run the file system or its workers cannot end: real `gradhub` processes, real files.
 *
 * - A checkpoint write that fails (EFBIG under `ulimit -f`, EISDIR where a folder holds the
 *   checkpoint's name) is logged with its code, counted in /metrics
 *   (gradhub_checkpoint_failures_total{code}), tried again at the next checkpoint point, leaves no
 *   temp file, and the run ends with the same weights, byte for byte, as a run without the failure.
 * - A full disk at the end: metrics lines are counted and said once, the final export fails with
 *   E_OUTPUT_UNWRITABLE after the summary (the run itself trained to its end).
 * - SIGTERM stops a coordinator whose step waits for a worker that never answers (stopped with
 *   SIGSTOP, or gone) within the stop grace: exit 143 with a checkpoint of the last completed step.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { CLI, SMALL_RUN, runCli, sha256, startCli, tempDir } from './helpers.js';
import { startCoordinator, waitFor } from './cluster-helpers.js';
import { parsePrometheusText } from './support/prometheus.js';

/** 12 steps with momentum (the checkpoint, params and momentum, is twice the export's size), a checkpoint every 5. */
const RUN = [...SMALL_RUN, '--steps', '12', '--checkpoint-every', '5'];

const tempFiles = (dir: string): string[] => (fs.existsSync(dir) ? fs.readdirSync(dir).filter((n) => n.endsWith('.tmp')) : []);
const checkpointNames = (dir: string): string[] => fs.readdirSync(dir).filter((n) => /^ckpt-\d{9}\.msgpack$/.test(n)).sort();

/** The export of the same run without any failure. */
async function reference(): Promise<string> {
  const dir = tempDir('ck-ref');
  const r = await runCli(['train', ...RUN, '--run-dir', path.join(dir, 'run')]);
  expect(r.code, r.stderr).toBe(0);
  return sha256(path.join(dir, 'run', 'model.safetensors'));
}

describe('a checkpoint that cannot be written does not end the run', () => {
  it('EFBIG on every checkpoint (ulimit -f below its size, above the export\'s): same export, the failures said, no temp file', async () => {
    const want = await reference();
    const dir = tempDir('ck-efbig');
    const run = path.join(dir, 'run');
    // The export of 3072,24,10 is 296 KB, a checkpoint with momentum 592 KB: 400 KiB lets only the export through.
    const r = await runCliThroughBash(`ulimit -f 400; exec "${process.execPath}" "${CLI}" "$@"`, ['train', ...RUN, '--run-dir', run, '--log-format', 'json']);
    expect(r.code, r.stderr).toBe(0);
    const warnings = r.stderr.split('\n').filter((l) => l.includes('not written'));
    expect(warnings.map((l) => (JSON.parse(l) as { step: number; code: string }).step)).toEqual([5, 10, 12]);
    expect(warnings.every((l) => (JSON.parse(l) as { code: string }).code === 'EFBIG')).toBe(true);
    expect(r.stdout).toMatch(/warning: the checkpoint of step 12 could not be written \(EFBIG, also on a retry\): this session saved no checkpoint; the weights are exported/);
    expect(checkpointNames(path.join(run, 'checkpoints'))).toEqual([]);
    expect(tempFiles(path.join(run, 'checkpoints'))).toEqual([]);
    expect(sha256(path.join(run, 'model.safetensors'))).toBe(want);
  }, 180_000);

  it('EISDIR at step 5 (a folder holds its name): later checkpoints are written, same export, and /metrics counts the failure', async () => {
    const want = await reference();
    const dir = tempDir('ck-eisdir');
    const checkpoints = path.join(dir, 'ck');
    fs.mkdirSync(path.join(checkpoints, 'ckpt-000000005.msgpack'), { recursive: true });
    fs.writeFileSync(path.join(checkpoints, 'ckpt-000000005.msgpack', 'keep'), 'x');
    const run = path.join(dir, 'run');
    const r = await runCli(['train', ...RUN, '--run-dir', run, '--checkpoint-dir', checkpoints, '--log-format', 'json']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/"code":"EISDIR".*checkpoint of step 5 not written \(EISDIR\): the run goes on/);
    expect(checkpointNames(checkpoints)).toEqual(['ckpt-000000005.msgpack', 'ckpt-000000010.msgpack', 'ckpt-000000012.msgpack']);
    expect(fs.statSync(path.join(checkpoints, 'ckpt-000000010.msgpack')).isFile()).toBe(true);
    expect(tempFiles(checkpoints)).toEqual([]);
    expect(r.stdout).not.toMatch(/warning:/); // the final checkpoint was written
    expect(sha256(path.join(run, 'model.safetensors'))).toBe(want);

    // The same failure while the run is alive: /metrics counts it.
    const live = tempDir('ck-live');
    const liveCk = path.join(live, 'ck');
    fs.mkdirSync(path.join(liveCk, 'ckpt-000000005.msgpack', 'x'), { recursive: true });
    const child = startCli(['train', ...SMALL_RUN, '--epochs', '100000', '--checkpoint-every', '5', '--run-dir', path.join(live, 'run'),
      '--checkpoint-dir', liveCk, '--log-format', 'json']);
    const exited = new Promise<void>((resolve) => child.on('exit', () => setImmediate(resolve)));
    try {
      const url = (await waitFor(() => /dashboard: (http:\/\/127\.0\.0\.1:\d+)\/dashboard/.exec(child.output().stdout), 60_000, 'the dashboard address'))[1];
      await waitFor(() => child.output().stderr.includes('checkpoint of step 5 not written'), 60_000, 'the failed checkpoint');
      await waitFor(() => fs.existsSync(path.join(liveCk, 'ckpt-000000010.msgpack')), 60_000, 'the next checkpoint');
      const text = await (await fetch(`${url}/metrics`)).text();
      const family = parsePrometheusText(text).get('gradhub_checkpoint_failures_total');
      expect(family?.type).toBe('counter');
      expect(family?.samples).toEqual([{ name: 'gradhub_checkpoint_failures_total', labels: { code: 'EISDIR' }, value: 1 }]);
      child.kill('SIGINT');
      await exited;
    } finally {
      child.kill('SIGKILL');
    }
    expect(child.output().code, child.output().stderr).toBe(130);
  }, 180_000);
});

describe('a full disk at the end of a run (ulimit -f 4: 4 KiB a file)', () => {
  it('metrics lines past the limit are counted and said once; the export fails after the summary with E_OUTPUT_UNWRITABLE; no temp file', async () => {
    const dir = tempDir('efbig-all');
    const run = path.join(dir, 'run');
    const r = await runCliThroughBash(`ulimit -f 4; exec "${process.execPath}" "${CLI}" "$@"`,
      ['train', ...SMALL_RUN, '--steps', '40', '--checkpoint-every', '100', '--run-dir', run, '--log-format', 'json']);
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr.split('\n')).toContain(`gradhub: E_OUTPUT_UNWRITABLE: the weights could not be written to ${path.join(run, 'model.safetensors')} (EFBIG)`);
    expect(r.stdout).toMatch(/^done: 40 steps/m);
    expect(r.stdout).toMatch(/warning: the checkpoint of step 40 could not be written \(EFBIG, also on a retry\)/);
    expect(r.stdout).toMatch(/warning: \d+ metrics lines? could not be written to /);
    expect(r.stdout).not.toMatch(/weights: /);
    const metricsWarnings = r.stderr.split('\n').filter((l) => l.includes('the metrics file could not be written'));
    expect(metricsWarnings).toHaveLength(1);
    expect(JSON.parse(metricsWarnings[0])).toMatchObject({ code: 'EFBIG' });
    expect(fs.statSync(path.join(run, 'metrics.jsonl')).size).toBe(4096);
    expect(tempFiles(run)).toEqual([]);
    expect(tempFiles(path.join(run, 'checkpoints'))).toEqual([]);
  }, 120_000);
});

describe('a full disk at the start (ulimit -f 1: run.json does not fit)', () => {
  it('is E_OUTPUT_UNWRITABLE naming the file, not an unexpected error', async () => {
    const run = path.join(tempDir('efbig-start'), 'run');
    const r = await runCliThroughBash(`ulimit -f 1; exec "${process.execPath}" "${CLI}" "$@"`, ['train', ...SMALL_RUN, '--steps', '2', '--run-dir', run]);
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toMatch(/^gradhub: E_OUTPUT_UNWRITABLE: the run record .*run\.json could not be written \(EFBIG: file too large, write\)/);
    expect(tempFiles(run)).toEqual([]);
  }, 60_000);
});

/** `bash -c SCRIPT gradhub ARGS...` to the end (the script execs node with "$@"), in the tests' temp folder as runCli. */
function runCliThroughBash(script: string, args: readonly string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn('bash', ['-c', script, 'gradhub', ...args], { cwd: os.tmpdir(), stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('SIGTERM always stops a coordinator', () => {
  for (const how of ['stopped (SIGSTOP: holds its work, silent)', 'gone (SIGKILL: no worker left)'] as const) {
    it(`while a step waits for a worker that is ${how}: exit 143 within the grace, step 0 checkpointed`, async () => {
      const dir = tempDir('term');
      const run = path.join(dir, 'run');
      const c = await startCoordinator([...SMALL_RUN, '--run-dir', run, '--stop-grace-ms', '1000', '--log-level', 'debug', '--log-format', 'json']);
      const worker = startCli(['worker', '--url', c.url, '--token', c.token, '--slowdown-ms', '600000', '--log-level', 'warn']);
      try {
        await waitFor(() => c.output().stderr.includes('"msg":"request out"'), 60_000, 'work sent to the worker', c.exited);
        worker.kill(how.startsWith('stopped') ? 'SIGSTOP' : 'SIGKILL');
        const t0 = Date.now();
        c.process.kill('SIGTERM');
        const r = await c.exited;
        expect(r.code, r.stderr).toBe(143);
        // The grace is 1 s; the worker would answer in 10 minutes, a WebSocket close handshake waits 30 s.
        expect(Date.now() - t0).toBeLessThan(20_000);
        expect(r.stdout).toMatch(/abandoned; step 0 is saved/);
        expect(checkpointNames(path.join(run, 'checkpoints'))).toEqual(['ckpt-000000000.msgpack']);
      } finally {
        worker.kill('SIGKILL');
        c.process.kill('SIGKILL');
      }
    }, 120_000);
  }

  it('with no worker connected yet: exit 143 at once', async () => {
    const dir = tempDir('term-none');
    const c = await startCoordinator([...SMALL_RUN, '--run-dir', path.join(dir, 'run'), '--min-workers', '2']);
    try {
      await waitFor(() => c.output().stdout.includes('waiting for 2 workers'), 30_000, 'the wait for workers', c.exited);
      c.process.kill('SIGTERM');
      const r = await c.exited;
      expect(r.code, r.stderr).toBe(143);
      expect(r.stdout).toMatch(/stopped at step 0/);
    } finally {
      c.process.kill('SIGKILL');
    }
  }, 60_000);
});
