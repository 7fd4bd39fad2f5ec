/**
 * The local launcher of `gradhub train --workers N`: the coordinator's server in this process and
 * N `gradhub worker` child processes connected to it over loopback, with the run's trusted token
 * (`--trusted-token`, else a random one): they are the operator's own workers. A worker process that dies
 * is started again (at most 3 times per slot); its nodes are recomputed elsewhere meanwhile.
 *
 * The local workers connect over a Unix domain socket in a fresh private directory (0700, removed
 * at stop) rather than TCP: every step moves the whole model through the coordinator twice per
 * worker, and the kernel does that for about two thirds of TCP's CPU (server.ts). The TCP port
 * stays open for the dashboard, browsers and workers on other machines. Where Unix sockets are not
 * available (Windows) or the path would be too long, they use the TCP port.
 *
 * No worker outlives the launcher, however it ends: each is started with an IPC channel and
 * `--exit-with-parent`, and exits when the channel closes, which the operating system does when the
 * launcher dies (even by SIGKILL). Ctrl-C at a terminal reaches every process of the group; the
 * workers leave it to the launcher, which finishes the step with them and then closes the cluster
 * (Bye; the workers exit; any still there after 5 s are killed).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Logger } from 'pino';
import type { Cluster, RunStatus } from '@gradhub/coordinator';
import type { TrainOptions } from './options.js';
import type { PreparedRun } from './run-setup.js';
import type { Progress } from './progress.js';
import { startCoordinatorCluster } from './cluster-setup.js';
import { NODE_FLAGS } from './node-flags.js';
import { privateSocketDir, SOCKET_NAME } from './socket-dir.js';

export interface LocalCluster {
  readonly executor: Cluster['executor'];
  /** Its workers' membership (audits ban proven cheaters there). */
  readonly membership: Cluster['membership'];
  stop(reason: 'done' | 'shutdown'): Promise<void>;
}

const RESTARTS_PER_SLOT = 3;

/**
 * Start the coordinator and the local workers, and wait for them all to join (E_NO_WORKERS after
 * 2 minutes). When `signal` aborts meanwhile, it stops waiting and the run starts no step.
 */
export async function startLocalCluster(
  o: TrainOptions, run: PreparedRun, status: RunStatus, logger: Logger, progress: Progress, signal?: AbortSignal,
): Promise<LocalCluster> {
  const n = o['workers'];
  const log = logger.child({ module: 'launcher' });
  const socketDir = privateSocketDir();
  const removeSocketDir = (): void => {
    if (socketDir !== null) fs.rmSync(socketDir, { recursive: true, force: true });
  };
  let cc;
  try {
    cc = await startCoordinatorCluster(o, run, status, logger, 0, socketDir === null ? undefined : path.join(socketDir, SOCKET_NAME));
  } catch (err) {
    removeSocketDir();
    throw err;
  }
  const workerUrl = cc.socketUrl ?? cc.wsUrl;
  log.debug({ workerUrl }, 'local workers connect here');
  let stopping = false;
  const children = new Set<ChildProcess>();
  const launch = (slot: number, restarts: number): void => {
    const child = spawn(process.execPath, [
      ...NODE_FLAGS, process.argv[1], 'worker', '--url', workerUrl, '--token', cc.trustedToken,
      '--backend', o['backend'], '--threads', String(o['threads'] ?? 1), '--log-level', o['log-level'] ?? 'warn',
      ...(o['log-format'] ? ['--log-format', o['log-format']] : []),
      ...(o['tls-cert'] ? ['--ca', o['tls-cert']] : []),
      '--exit-with-parent',
    ], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'], env: { ...process.env, GRADHUB_TOKEN: '' } });
    // The channel is only there to close when this process dies; it must not keep this one alive.
    child.channel?.unref();
    children.add(child);
    child.on('exit', (code, signal) => {
      children.delete(child);
      if (stopping) return;
      log.warn({ slot, code, signal }, 'local worker exited');
      if (restarts < RESTARTS_PER_SLOT) launch(slot, restarts + 1);
      else progress.message(`local worker ${slot} keeps failing (exit ${code ?? signal}); going on with the others`);
    });
  };
  const stop = async (reason: 'done' | 'shutdown'): Promise<void> => {
    stopping = true;
    await cc.cluster.close(reason);
    removeSocketDir();
    // Workers leave on the coordinator's Bye; make sure none outlives us.
    const deadline = Date.now() + 5000;
    while (children.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    for (const c of children) c.kill('SIGKILL');
  };
  for (let i = 0; i < n; i++) launch(i, 0);
  progress.message(`dashboard: ${cc.httpUrl}/dashboard   (${n} local workers; browsers can help too: ${cc.joinUrl})`);
  try {
    const joined = cc.cluster.executor.waitForWorkers(n, 120_000);
    joined.catch(() => {}); // given up for a stop, it fails when the cluster closes: expected
    await Promise.race([
      joined,
      new Promise<void>((resolve) => (signal?.aborted ? resolve() : signal?.addEventListener('abort', () => resolve(), { once: true }))),
    ]);
  } catch (err) {
    // The workers never all joined: leave nothing behind (processes, socket, port).
    await stop('done');
    throw err;
  }
  return { executor: cc.cluster.executor, membership: cc.cluster.membership, stop };
}
