/**
 * The local launcher of `gradhub train --workers N`: the coordinator's server in this process and
 * N `gradhub worker` child processes connected to it over loopback. A worker process that dies
 * is started again (at most 3 times per slot); its nodes are recomputed elsewhere meanwhile.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import type { Logger } from 'pino';
import type { Executor, RunStatus } from '@gradhub/coordinator';
import type { ParsedOptions } from './options.js';
import type { PreparedRun } from './run-setup.js';
import type { Progress } from './progress.js';
import { startCoordinatorCluster } from './cluster-setup.js';

export interface LocalCluster {
  readonly executor: Executor;
  stop(reason: 'done' | 'shutdown'): Promise<void>;
}

const RESTARTS_PER_SLOT = 3;
/** Node flags of the worker processes: see bin/gradhub.js (single-threaded GC: less CPU taken from compute). */
const WORKER_NODE_FLAGS = ['--single-threaded-gc'];

export async function startLocalCluster(o: ParsedOptions, run: PreparedRun, status: RunStatus, logger: Logger, progress: Progress): Promise<LocalCluster> {
  const n = o['workers'] as number;
  const cc = await startCoordinatorCluster(o, run, status, logger, 0);
  const log = logger.child({ module: 'launcher' });
  let stopping = false;
  const children = new Set<ChildProcess>();
  const launch = (slot: number, restarts: number): void => {
    const child = spawn(process.execPath, [
      ...WORKER_NODE_FLAGS, process.argv[1], 'worker', '--url', cc.wsUrl, '--token', cc.token,
      '--backend', o['backend'] as string, '--threads', String(o['threads'] ?? 1), '--log-level', (o['log-level'] as string | undefined) ?? 'warn',
      ...(o['tls-cert'] ? ['--ca', o['tls-cert'] as string] : []),
    ], { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, GRADHUB_TOKEN: '' } });
    children.add(child);
    child.on('exit', (code, signal) => {
      children.delete(child);
      if (stopping) return;
      log.warn({ slot, code, signal }, 'local worker exited');
      if (restarts < RESTARTS_PER_SLOT) launch(slot, restarts + 1);
      else progress.message(`local worker ${slot} keeps failing (exit ${code ?? signal}); going on with the others`);
    });
  };
  for (let i = 0; i < n; i++) launch(i, 0);
  progress.message(`dashboard: ${cc.httpUrl}/dashboard   (${n} local workers; browsers can help too: ${cc.joinUrl})`);
  await cc.cluster.executor.waitForWorkers(n, 120_000);
  return {
    executor: cc.cluster.executor,
    async stop(reason) {
      stopping = true;
      await cc.cluster.close(reason);
      // Workers leave on the coordinator's Bye; make sure none outlives us.
      const deadline = Date.now() + 5000;
      while (children.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      for (const c of children) c.kill('SIGKILL');
    },
  };
}
