/**
 * `--threads`: the kernels split over threads give the same bits as one thread, end to end. The
 * small CIFAR run of helpers.ts (SMALL_RUN) ends with byte-identical weights whether it is computed
 * in-process on one thread, in-process on two, or by two local worker processes on two threads each
 * (whose Hello reports the thread count to the coordinator).
 */
import { describe, it, expect } from 'vitest';
import * as path from 'node:path';
import { runCli, sha256, tempDir, SMALL_RUN } from './helpers.js';

describe('gradhub train --threads', () => {
  it('--workers 0 --threads 2 and --workers 2 with 2 threads each end byte-identical to --workers 0 --threads 1', async () => {
    const dir = tempDir('threads');
    const common = ['train', ...SMALL_RUN, '--steps', '6'];
    const one = await runCli([...common, '--workers', '0', '--threads', '1', '--export', path.join(dir, 'one.st')]);
    expect(one.code, one.stderr).toBe(0);
    const inProcess = await runCli([...common, '--workers', '0', '--threads', '2', '--export', path.join(dir, 'in-process.st')]);
    expect(inProcess.code, inProcess.stderr).toBe(0);
    const cluster = await runCli([...common, '--workers', '2', '--threads', '2', '--log-level', 'info', '--export', path.join(dir, 'cluster.st')]);
    expect(cluster.code, cluster.stderr).toBe(0);

    const want = sha256(path.join(dir, 'one.st'));
    expect(sha256(path.join(dir, 'in-process.st'))).toBe(want);
    expect(sha256(path.join(dir, 'cluster.st'))).toBe(want);

    // Both workers joined saying they compute on 2 threads.
    const joined = cluster.stderr.split('\n').filter((l) => l.includes('"worker joined"')).map((l) => JSON.parse(l) as { capabilities: { threads: number } });
    expect(joined.length).toBeGreaterThanOrEqual(2);
    for (const j of joined) expect(j.capabilities.threads).toBe(2);
  }, 240_000);

  it('refuses --threads with the ts backend, and --threads 0', async () => {
    const ts = await runCli(['train', ...SMALL_RUN, '--steps', '1', '--workers', '0', '--backend', 'ts', '--threads', '2']);
    expect(ts.code).not.toBe(0);
    expect(ts.stderr).toMatch(/--threads 2 needs --backend wasm/);
    const zero = await runCli(['worker', '--url', 'ws://127.0.0.1:9', '--token', 't', '--threads', '0']);
    expect(zero.code).not.toBe(0);
    expect(zero.stderr).toMatch(/--threads must be >= 1/);
  });
});
