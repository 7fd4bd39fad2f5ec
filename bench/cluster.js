/**
 * The cluster benchmark: the coordinator (in this process, as `gradhub train --workers N` runs it)
 * and N `gradhub worker` child processes on loopback, training the given model on CIFAR-10 (`data`:
 * a folder of the binary files; the repository's test/fixtures/cifar10 when absent). Prints
 * samples/s (median over steps after a warm-up), the step-time split, bytes on the wire per step,
 * the coordinator's peak memory and, on Linux, each process's CPU per step.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { modelSpec, initParams } from '@gradhub/core';
import { startCluster, runTraining, loadCifar10, RunStatus, nullMetrics } from '@gradhub/coordinator';
import { NODE_FLAGS, privateSocketDir, SOCKET_NAME } from '@gradhub/cli';
import { CIFAR10_DIR } from '../test/fixtures/index.js';
import { snapshotCpu, cpuPerStep } from './proc-cpu.js';

const CLI = fileURLToPath(new URL('../packages/cli/dist/main.js', import.meta.url));
/** Extra Node flags for the worker processes, to look inside them (e.g. `--cpu-prof --cpu-prof-dir=/tmp/p` or `--trace-gc`). */
const EXTRA = (process.env.BENCH_WORKER_FLAGS ?? '').split(' ').filter(Boolean);
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/**
 * @param {{ workers: number, sizes?: number[], batch: number, steps: number, warmup?: number, chunk?: number, data?: string }} o
 */
export async function benchCluster(o) {
  const sizes = o.sizes ?? [3072, 2048, 2048, 10];
  const spec = modelSpec(sizes);
  const logger = pino({ level: 'silent' });
  const data = await loadCifar10(o.data ?? CIFAR10_DIR, { download: false, logger });
  const token = 'bench';
  const settings = { sizes, batch: o.batch, chunk: o.chunk ?? 16, seed: 0, shuffle: true, normalize: false, lr: 0.01, momentum: 0, dampening: 0, weightDecay: 0, nesterov: false, epochs: 1000, steps: o.steps };
  const status = new RunStatus({ runId: 'bench', name: 'bench', settings: {}, totalSteps: o.steps });
  // Workers on a Unix socket, as `gradhub train --workers N` connects them (packages/cli/src/local-cluster.ts),
  // or on the TCP port where there is none (Windows, or a TMPDIR too long for a socket path).
  const socketDir = privateSocketDir();
  const cluster = await startCluster({
    host: '127.0.0.1', port: 0, token, sizes, chunk: settings.chunk, normalize: false, maxBatch: o.batch, logger, status,
    socketPath: socketDir === null ? undefined : path.join(socketDir, SOCKET_NAME),
  });
  const children = [];
  for (let i = 0; i < o.workers; i++) {
    children.push(spawn(process.execPath, [...NODE_FLAGS, ...EXTRA, CLI, 'worker', '--url', cluster.socketUrl ?? cluster.url, '--token', token, '--log-level', 'warn'], { stdio: ['ignore', EXTRA.length > 0 ? 'inherit' : 'ignore', 'inherit'] }));
  }
  await cluster.executor.waitForWorkers(o.workers, 60_000);
  const params = new Float32Array(spec.paramCount);
  initParams(spec, 0, params);
  const warmup = o.warmup ?? 2;
  const rows = [];
  let bytesAtWarm = 0;
  // Every process's CPU over the measured steps (Linux): where the 2 cores' time goes.
  const pids = { coordinator: process.pid, ...Object.fromEntries(children.map((c, i) => [`worker ${i + 1}`, c.pid])) };
  let cpuAtWarm = null;
  let cpuAtEnd = null;
  let wallAtWarm = 0;
  let wallAtEnd = 0;
  const bytes = () => (status.snapshot().counters.bytes_in ?? 0) + (status.snapshot().counters.bytes_out ?? 0);
  await runTraining({
    settings, train: data.train, test: null, executor: cluster.executor, logger, metrics: nullMetrics,
    start: { params, step: 0, sampler: { epoch: 0, position: 0 }, momentumBuffer: null },
    onStep: (r) => {
      if (r.step === warmup) {
        bytesAtWarm = bytes();
        cpuAtWarm = snapshotCpu(pids);
        wallAtWarm = performance.now();
      }
      if (r.step > warmup) rows.push(r);
      if (r.step === o.steps) {
        cpuAtEnd = snapshotCpu(pids);
        wallAtEnd = performance.now();
      }
    },
  });
  const measured = rows.length;
  const cpu = cpuPerStep(cpuAtEnd, cpuAtWarm, measured);
  const wireBytes = (bytes() - bytesAtWarm) / Math.max(1, measured);
  await cluster.close('done');
  if (socketDir !== null) fs.rmSync(socketDir, { recursive: true, force: true });
  await Promise.all(children.map((c) => new Promise((r) => (c.exitCode !== null ? r() : c.on('exit', r)))));
  const split = {};
  for (const k of ['compute', 'upload', 'reduce', 'sgd', 'broadcast']) split[k] = median(rows.map((r) => r.split[k]));
  return {
    model: sizes.join(','),
    workers: o.workers,
    batch: o.batch,
    samples_per_s: median(rows.map((r) => r.samplesPerS)),
    split_ms: split,
    wire_mb_per_step: wireBytes / 1e6,
    coordinator_peak_rss_mb: process.resourceUsage().maxRSS / 1024,
    // CPU ms per step of each process (user, sys) and the mean step's wall time; null off Linux.
    cpu_ms_per_step: cpu,
    wall_ms_per_step: cpu ? (wallAtEnd - wallAtWarm) / measured : null,
  };
}

// node bench/cluster.js [WORKERS] [--data DIR]
if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const argv = process.argv.slice(2);
  const at = argv.indexOf('--data');
  const data = at >= 0 ? argv.splice(at, 2)[1] : undefined;
  const workers = Number(argv[0] ?? 2);
  const r = await benchCluster({ workers, batch: 256, steps: 8, data });
  console.log(JSON.stringify(r, null, 2));
}
