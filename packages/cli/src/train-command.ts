/**
 * `gradhub train`: the whole job on this machine. --workers 0 computes in this process; --workers N
 * starts the coordinator here and N `gradhub worker` child processes over loopback. Same trainer,
 * same tree, same bits, and the same dashboard, /api and /metrics on --port either way.
 * `gradhub coordinator` is the same loop waiting for workers from anywhere.
 *
 * With --report FILE, the run's HTML report is written when the run ends, however it ends (done,
 * stopped, failed), once its status exists.
 */
import type { Logger } from 'pino';
import { runTraining, createInProcessExecutor, writeReport, type Executor, type RunStatus } from '@gradhub/coordinator';
import { prepareRun, makeBackend, exportWeights, type PreparedRun } from './run-setup.js';
import type { ParsedOptions } from './options.js';
import type { Progress } from './progress.js';
import { startLocalCluster } from './local-cluster.js';
import { startCoordinatorCluster, startStatusServer } from './cluster-setup.js';
import { createRunStatus, reportStep, reportEval } from './run-status.js';

export async function trainCommand(o: ParsedOptions, logger: Logger, progress: Progress, signal: AbortSignal): Promise<void> {
  const run = await prepareRun(o, logger, progress);
  const status = createRunStatus(run, 'gradhub train');
  const report = reportWriter(o, status, logger, progress);
  await report.around(async () => {
    const workers = o['workers'] as number;
    if (workers === 0) {
      const web = await startStatusServer(o, status, logger);
      progress.message(`dashboard: ${web.httpUrl}/dashboard`);
      try {
        const backend = await makeBackend(o['backend'] as string, run.spec, run.settings.batch, o['threads'] as number);
        const executor = createInProcessExecutor({ spec: run.spec, backend, maxBatch: run.settings.batch, chunk: run.settings.chunk, normalize: run.settings.normalize });
        await trainWith(o, run, executor, status, report, logger, progress, signal, async () => {
          await executor.close();
          backend.close?.();
        });
      } finally {
        await web.close();
      }
      return;
    }
    const cluster = await startLocalCluster(o, run, status, logger, progress);
    await trainWith(o, run, cluster.executor, status, report, logger, progress, signal, (stopped) => cluster.stop(stopped ? 'shutdown' : 'done'));
  });
}

export async function coordinatorCommand(o: ParsedOptions, logger: Logger, progress: Progress, signal: AbortSignal): Promise<void> {
  const run = await prepareRun(o, logger, progress);
  const status = createRunStatus(run, 'gradhub coordinator');
  const report = reportWriter(o, status, logger, progress);
  await report.around(async () => {
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
    await trainWith(o, run, cc.cluster.executor, status, report, logger, progress, signal, (stopped) => cc.cluster.close(stopped ? 'shutdown' : 'done'));
  });
}

/** --report: writes the run's report once, when the run has ended (see the module's contract). */
interface ReportWriter {
  /** Write it now (once; later calls do nothing). */
  write(): void;
  /** Run `body`; if it fails before the report was written, mark the run failed and write it. */
  around(body: () => Promise<void>): Promise<void>;
}

function reportWriter(o: ParsedOptions, status: RunStatus, logger: Logger, progress: Progress): ReportWriter {
  const file = o['report'] as string | undefined;
  let written = false;
  const write = (): void => {
    if (written || file === undefined) return;
    written = true;
    try {
      writeReport(file, status.snapshot(), { endedAt: Date.now() });
      progress.message(`report written to ${file}`);
    } catch (err) {
      // The run's own outcome matters more than its report: say so and go on.
      logger.error({ err, file }, 'the report could not be written');
      progress.message(`the report could not be written to ${file}: ${(err as Error).message}`);
    }
  };
  return {
    write,
    async around(body) {
      try {
        await body();
      } catch (err) {
        const state = status.snapshot().state;
        if (state === 'waiting' || state === 'training') status.setState('failed');
        throw err;
      } finally {
        write();
      }
    },
  };
}

async function trainWith(
  o: ParsedOptions, run: PreparedRun, executor: Executor, status: RunStatus, report: ReportWriter, logger: Logger, progress: Progress,
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
      exportWeights(exportFile, run.spec, result.params, run.settings.normalize);
      progress.message(`weights written to ${exportFile}`);
    }
    progress.message(stopped ? `stopped at step ${result.step}${run.checkpoint ? ` (resume with --resume --checkpoint-dir ${run.checkpoint.dir})` : ''}` : `done: ${result.step} steps`);
  } catch (err) {
    status.setState('failed');
    throw err;
  } finally {
    run.metrics.close();
    // Before closing: the workers table still shows the workers as they were at the end.
    report.write();
    await close(stopped);
  }
}
