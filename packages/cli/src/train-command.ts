/**
 * `gradhub train`: the whole job on this machine. --workers 0 computes in this process; --workers N
 * starts the coordinator here and N `gradhub worker` child processes over loopback. Same trainer,
 * same tree, same bits. `gradhub coordinator` is the same loop waiting for workers from anywhere.
 */
import type { Logger } from 'pino';
import { runTraining, createInProcessExecutor, type Executor, type RunStatus } from '@gradhub/coordinator';
import { prepareRun, makeBackend, exportWeights, type PreparedRun } from './run-setup.js';
import type { ParsedOptions } from './options.js';
import type { Progress } from './progress.js';
import { startLocalCluster } from './local-cluster.js';
import { startCoordinatorCluster } from './cluster-setup.js';
import { createRunStatus, reportStep, reportEval } from './run-status.js';

export async function trainCommand(o: ParsedOptions, logger: Logger, progress: Progress, signal: AbortSignal): Promise<void> {
  const run = await prepareRun(o, logger, progress);
  const status = createRunStatus(run, 'gradhub train');
  const workers = o['workers'] as number;
  if (workers === 0) {
    const backend = await makeBackend(o['backend'] as string, run.spec, run.settings.batch, o['threads'] as number);
    const executor = createInProcessExecutor({ spec: run.spec, backend, maxBatch: run.settings.batch, chunk: run.settings.chunk, normalize: run.settings.normalize });
    await trainWith(o, run, executor, status, logger, progress, signal, async () => {
      await executor.close();
      backend.close?.();
    });
    return;
  }
  const cluster = await startLocalCluster(o, run, status, logger, progress);
  await trainWith(o, run, cluster.executor, status, logger, progress, signal, (stopped) => cluster.stop(stopped ? 'shutdown' : 'done'));
}

export async function coordinatorCommand(o: ParsedOptions, logger: Logger, progress: Progress, signal: AbortSignal): Promise<void> {
  const run = await prepareRun(o, logger, progress);
  const status = createRunStatus(run, 'gradhub coordinator');
  const cc = await startCoordinatorCluster(o, run, status, logger, 8080);
  const host = (o['host'] as string) === '0.0.0.0' ? '<this-host>' : new URL(cc.httpUrl).hostname;
  const port = cc.cluster.server.port;
  progress.message([
    `coordinator listening on port ${port}: dashboard ${cc.httpUrl}/dashboard`,
    `workers join with: gradhub worker --url ${cc.wsUrl} --token ${cc.token}`,
    `volunteers open:   ${cc.joinUrl}`,
    ...(host === '<this-host>' ? [`(from other machines use this machine's address instead of ${new URL(cc.httpUrl).hostname})`] : []),
  ].join('\n'));
  const min = o['min-workers'] as number;
  if (cc.cluster.executor.workerCount() < min) progress.message(`waiting for ${min} worker${min > 1 ? 's' : ''}...`);
  await Promise.race([
    cc.cluster.executor.waitForWorkers(min),
    new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true })),
  ]);
  await trainWith(o, run, cc.cluster.executor, status, logger, progress, signal, (stopped) => cc.cluster.close(stopped ? 'shutdown' : 'done'));
}

async function trainWith(
  o: ParsedOptions, run: PreparedRun, executor: Executor, status: RunStatus, logger: Logger, progress: Progress,
  signal: AbortSignal, close: (stopped: boolean) => Promise<void>,
): Promise<void> {
  let stopped = true;
  try {
    const result = await runTraining({
      settings: run.settings, train: run.train, test: run.test, executor, logger, start: run.start,
      metrics: run.metrics, checkpoint: run.checkpoint, signal,
      onStep: (r) => {
        progress.step(r);
        reportStep(status, r);
      },
      onEval: (r) => {
        progress.evaluation(r);
        reportEval(status, r);
      },
    });
    stopped = result.stopped;
    status.setState(stopped ? 'stopped' : 'done');
    progress.done();
    const exportFile = o['export'] as string | undefined;
    if (exportFile) {
      exportWeights(exportFile, run.spec, result.params);
      progress.message(`weights written to ${exportFile}`);
    }
    progress.message(stopped ? `stopped at step ${result.step}${run.checkpoint ? ` (resume with --resume --checkpoint-dir ${run.checkpoint.dir})` : ''}` : `done: ${result.step} steps`);
  } catch (err) {
    status.setState('failed');
    throw err;
  } finally {
    run.metrics.close();
    await close(stopped);
  }
}
