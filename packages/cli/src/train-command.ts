/**
 * `gradhub train`: the whole job on this machine. --workers 0 computes in this process; --workers N
 * starts the coordinator here and N `gradhub worker` child processes over loopback. Same trainer,
 * same tree, same bits.
 */
import type { Logger } from 'pino';
import { runTraining, createInProcessExecutor, type Executor } from '@gradhub/coordinator';
import { prepareRun, makeBackend, exportWeights } from './run-setup.js';
import type { ParsedOptions } from './options.js';
import type { Progress } from './progress.js';
import { startLocalCluster } from './local-cluster.js';

export async function trainCommand(o: ParsedOptions, logger: Logger, progress: Progress, signal: AbortSignal): Promise<void> {
  const run = await prepareRun(o, logger, progress);
  const workers = o['workers'] as number;
  let executor: Executor;
  let stopCluster: (() => Promise<void>) | null = null;
  if (workers === 0) {
    const backend = await makeBackend(o['backend'] as string, run.spec, run.settings.batch);
    executor = createInProcessExecutor({ spec: run.spec, backend, maxBatch: run.settings.batch, chunk: run.settings.chunk, normalize: run.settings.normalize });
  } else {
    const cluster = await startLocalCluster(o, run, logger, progress);
    executor = cluster.executor;
    stopCluster = cluster.stop;
  }
  try {
    const result = await runTraining({
      settings: run.settings, train: run.train, test: run.test, executor, logger, start: run.start,
      metrics: run.metrics, checkpoint: run.checkpoint, signal,
      onStep: (r) => progress.step(r), onEval: (r) => progress.evaluation(r),
    });
    progress.done();
    const exportFile = o['export'] as string | undefined;
    if (exportFile) {
      exportWeights(exportFile, run.spec, result.params);
      progress.message(`weights written to ${exportFile}`);
    }
    progress.message(result.stopped ? `stopped at step ${result.step}` : `done: ${result.step} steps`);
  } finally {
    run.metrics.close();
    await executor.close();
    if (stopCluster) await stopCluster();
  }
}
