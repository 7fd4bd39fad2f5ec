/**
 * `gradhub train`: the whole job on this machine. --workers 0 computes in this process; --workers N
 * starts the coordinator here and N `gradhub worker` child processes over loopback. Same trainer,
 * same tree, same bits. `gradhub coordinator` is the same loop waiting for workers from anywhere.
 *
 * Both check the whole command line before reading any data (planRun), keep their results in a run
 * folder (run-dir.ts), stop cleanly on the first Ctrl-C or SIGTERM (signals.ts: the step in flight
 * finishes or is abandoned after --stop-grace-ms, the last completed step is checkpointed) and end
 * with a summary (summary.ts). Either way the dashboard, /api and /metrics are served on --port, and
 * the run's HTML report (report.html in the run folder, or --report FILE) is written when the run
 * ends, however it ends (done, stopped, failed), once its status exists.
 */
import * as path from 'node:path';
import type { Logger } from 'pino';
import { batchesPerEpoch } from '@gradhub/core';
import {
  Auditor, RollbackAnchor, runTraining, createInProcessExecutor, totalSteps, writeReport, type Executor, type RunStatus, type TrainResult,
  type Cluster,
} from '@gradhub/coordinator';
import { planRun, prepareRun, makeBackend, type Invocation, type PreparedRun } from './run-setup.js';
import type { CoordinatorOptions, TrainOptions } from './options.js';
import type { Progress } from './progress.js';
import type { StopSignals, StopSignalName } from './signals.js';
import { startLocalCluster } from './local-cluster.js';
import { startCoordinatorCluster, startStatusServer } from './cluster-setup.js';
import { createRunStatus, reportStep, reportEval, checkpointLog, guardMetrics } from './run-status.js';
import { exportFinalWeights, endWarnings } from './run-end.js';
import { formatSummary } from './summary.js';
import { joinLines, reachableHosts } from './join-lines.js';

/** What a command gets from the entry point. */
export interface CommandContext {
  readonly logger: Logger;
  readonly progress: Progress;
  readonly stop: StopSignals;
  readonly invocation: Invocation;
}

/** How a training command ended: all its steps, or stopped by a signal. */
export type TrainOutcome = 'done' | 'stopped';

export async function trainCommand(parsed: TrainOptions, ctx: CommandContext): Promise<TrainOutcome> {
  const plan = planRun(parsed, ctx.invocation, ctx.logger);
  const run = await prepareRun(plan, ctx.logger, ctx.progress);
  const o = run.o;
  ctx.stop.graceful(stopNotice(ctx.progress));
  const status = createRunStatus(run, 'gradhub train');
  const report = reportWriter(run, status, ctx);
  return report.around(async () => {
    const workers = o['workers'];
    if (workers === 0) {
      const web = await startStatusServer(o, status, ctx.logger);
      ctx.progress.message(`dashboard: ${web.httpUrl}/dashboard`);
      try {
        const backend = await makeBackend(o['backend'], run.spec, run.settings.batch, o['threads']);
        const executor = createInProcessExecutor({ spec: run.spec, backend, maxBatch: run.settings.batch, chunk: run.settings.chunk, normalize: run.settings.normalize });
        return await trainWith(run, executor, status, ctx, report, async () => {
          await executor.close();
          backend.close?.();
        });
      } finally {
        await web.close();
      }
    }
    const cluster = await startLocalCluster(o, run, status, ctx.logger, ctx.progress, ctx.stop.signal);
    return trainWith(run, cluster.executor, status, ctx, report, (stopped) => cluster.stop(stopped ? 'shutdown' : 'done'), cluster);
  });
}

export async function coordinatorCommand(parsed: CoordinatorOptions, ctx: CommandContext): Promise<TrainOutcome> {
  const { progress } = ctx;
  const plan = planRun(parsed, ctx.invocation, ctx.logger);
  const run = await prepareRun(plan, ctx.logger, progress);
  const o = run.o;
  ctx.stop.graceful(stopNotice(progress));
  const status = createRunStatus(run, 'gradhub coordinator');
  const report = reportWriter(run, status, ctx);
  return report.around(async () => {
    const cc = await startCoordinatorCluster(o, run, status, ctx.logger, 8080);
    const host = o['host'];
    progress.message(joinLines({
      listenHost: host, port: cc.cluster.server.port, tls: cc.wsUrl.startsWith('wss:'), token: cc.token, hosts: reachableHosts(host),
      trustedToken: cc.trustedTokenGenerated ? cc.trustedToken : undefined,
    }).join('\n'));
    progress.message(`run folder: ${run.paths.dir}`);
    const min = o['min-workers'];
    if (cc.cluster.executor.workerCount() < min) progress.message(`waiting for ${min} worker${min > 1 ? 's' : ''}...`);
    const signal = ctx.stop.signal;
    const joined = cc.cluster.executor.waitForWorkers(min);
    joined.catch(() => {}); // given up for a stop, it fails when the cluster closes: expected
    await Promise.race([
      joined,
      new Promise<void>((resolve) => (signal.aborted ? resolve() : signal.addEventListener('abort', () => resolve(), { once: true }))),
    ]);
    return trainWith(run, cc.cluster.executor, status, ctx, report, (stopped) => cc.cluster.close(stopped ? 'shutdown' : 'done'), cc.cluster);
  });
}

/** The run's HTML report: written once, when the run has ended (see the module's contract). */
interface ReportWriter {
  /** Write it now (once; later calls do nothing). */
  write(): void;
  /** Run `body`; if it fails before the report was written, mark the run failed and write it. */
  around<T>(body: () => Promise<T>): Promise<T>;
}

function reportWriter(run: PreparedRun, status: RunStatus, ctx: CommandContext): ReportWriter {
  const file = run.files.report;
  let written = false;
  const write = (): void => {
    if (written) return;
    written = true;
    try {
      writeReport(file, status.snapshot(), { endedAt: Date.now() });
    } catch (err) {
      // The run's own outcome matters more than its report: say so and go on.
      ctx.logger.error({ err, file }, 'the report could not be written');
      ctx.progress.message(`the report could not be written to ${file}: ${(err as Error).message}`);
    }
  };
  return {
    write,
    async around(body) {
      try {
        return await body();
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

/** The one line a stop signal prints at once (the summary follows when the run has stopped). */
function stopNotice(progress: Progress): (name: StopSignalName) => void {
  return (name) => progress.notice(`gradhub: ${name}: stopping: the step in flight finishes, then a checkpoint is saved (${name === 'SIGINT' ? 'Ctrl-C' : 'the signal'} again quits at once)`);
}

/** The epochs a run will reach: fewer than --epochs when --steps ends it first. */
export function epochsReached(run: PreparedRun): number {
  const r = run.settings.rounds;
  const batchesPerUpdate = r ? r.replicas * r.localSteps : 1;
  return Math.ceil((totalSteps(run.settings, run.train.count) * batchesPerUpdate) / batchesPerEpoch(run.train.count, run.settings.batch));
}

async function trainWith(
  run: PreparedRun, executor: Executor, status: RunStatus, ctx: CommandContext, report: ReportWriter,
  close: (stopped: boolean) => Promise<void>,
  cluster?: Pick<Cluster, 'membership' | 'executor'>,
): Promise<TrainOutcome> {
  const membership = cluster?.membership;
  const { progress, logger, stop } = ctx;
  const o = run.o;
  // Audits of untrusted workers' results (a cluster only): recomputed here, on a backend of their
  // own. With --audit-rate 0 none is sampled, but the auditor still decides what no worker's word
  // can: two workers' different sums for one node, and non-finite answers; it then keeps only the
  // current step's snapshot (to undo that step's streamed parts).
  const rate = (o as { readonly 'audit-rate'?: number })['audit-rate'] ?? 0;
  const auditBackend = membership ? await makeBackend(o['backend'], run.spec, run.settings.batch, o['threads']) : null;
  const auditor = cluster && membership && auditBackend
    ? new Auditor({
      spec: run.spec, backend: auditBackend, chunk: run.settings.chunk, normalize: run.settings.normalize, maxBatch: run.settings.batch, rate, logger, status,
      onCheater: (id, reason) => membership.ban(id, reason), remote: cluster.executor.remoteAudits,
    })
    : null;
  if (auditor) membership!.onLeft((id) => auditor.sessionEnded(id));
  // Sampled audits reach past the memory window through one state on disk (anchor.ts).
  const anchor = auditor && rate > 0 ? new RollbackAnchor(path.join(run.paths.dir, 'rollback-anchor.bin'), run.spec.paramCount) : null;
  const epochs = epochsReached(run);
  let result: TrainResult | null = null;
  let stopped = true;
  // Failed checkpoint and metrics writes are counted and reported; they never end the run.
  const checkpoints = checkpointLog(status);
  const metrics = guardMetrics(run.metrics, status, logger, run.files.metrics);
  try {
    progress.start(epochs, run.settings.rounds ? 'round' : 'step');
    if (!stop.signal.aborted) {
      result = await runTraining({
        settings: run.settings, train: run.train, test: run.test, executor, logger, start: run.start,
        metrics, checkpoint: run.checkpoint, signal: stop.signal, abandonAfterMs: o['stop-grace-ms'], onCheckpoint: checkpoints.onCheckpoint,
        audits: auditor, rollbackAnchor: anchor, rollbackMemoryBytes: rate > 0 ? ((o as { readonly 'rollback-memory-mb'?: number })['rollback-memory-mb'] ?? 256) * 1024 * 1024 : 0,
        count: (name, by) => status.count(name, by),
        onRollback: (r) => {
          status.rollBack(r.to);
          progress.message(`rolled back from step ${r.from} to ${r.to}: worker ${r.workers.join(', ')} was proven to cheat (banned); replaying`);
        },
        onStep: (r) => {
          progress.step({ ...r, epochs });
          reportStep(status, r);
        },
        onEval: (r) => {
          progress.evaluation(r);
          reportEval(status, r);
        },
      });
      stopped = result.stopped || result.abandoned;
    }
    status.setState(stopped ? 'stopped' : 'done');
    progress.done();
    const saved = result !== null && result.consistent;
    const exportFailure = saved ? exportFinalWeights(run, result!.params, checkpoints) : null;
    const warnings = endWarnings(run, status, checkpoints, saved && !exportFailure, exportFailure);
    const pastEval = [...run.pastMetrics].reverse().find((l) => l.kind === 'epoch');
    const lastEval = progress.figures()?.lastEval
      ?? (pastEval?.kind === 'epoch' ? { testLoss: pastEval.test_loss, testAccuracy: pastEval.test_accuracy, step: pastEval.step } : null);
    const step = result?.step ?? run.start.step;
    const command = ctx.invocation.command;
    progress.message(formatSummary({
      outcome: result?.abandoned ? 'abandoned' : stopped ? 'stopped' : 'done',
      step,
      totalSteps: totalSteps(run.settings, run.train.count),
      figures: progress.figures(),
      lastEval,
      runDir: run.paths.dir,
      files: [
        ['metrics', run.files.metrics],
        ['checkpoints', run.files.checkpoints],
        ['weights', saved && !exportFailure ? run.files.model : null],
        ['report', run.files.report],
      ],
      saved,
      resumeCommand: `gradhub ${command} --resume --run-dir ${run.paths.dir}`,
      unit: run.settings.rounds ? 'round' : 'step',
      warnings,
    }).join('\n'));
    if (exportFailure) throw exportFailure;
  } catch (err) {
    status.setState('failed');
    throw err;
  } finally {
    metrics.close();
    // Before closing: the workers table still shows the workers as they were at the end.
    report.write();
    await close(stopped);
    auditBackend?.close?.();
    anchor?.remove();
  }
  return stopped ? 'stopped' : 'done';
}
