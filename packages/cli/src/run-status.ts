/** The run's status store, fed by the trainer's reports (dashboard, /api/status, /metrics read it). */
import type { Logger } from 'pino';
import {
  RunStatus, runSettings, totalSteps, CHECKPOINT_FAILURES_PREFIX, METRICS_WRITE_FAILURES_PREFIX,
  type StepReport, type EvalReport, type CheckpointOutcome, type MetricsSink,
} from '@gradhub/coordinator';
import type { PreparedRun } from './run-setup.js';
import { runIdOf } from './cluster-setup.js';

export function createRunStatus(run: PreparedRun, name: string): RunStatus {
  const { step, sampler } = run.start;
  // Samples already trained on: whole epochs plus the position in the current one (the sampler's
  // state); the curves up to the checkpoint from the metrics file (later lines are replayed).
  const stepOf = (l: (typeof run.pastMetrics)[number]): number => (l.kind === 'round' ? l.round : l.step);
  const past = run.pastMetrics.filter((l) => stepOf(l) <= step);
  const resumed = step > 0 ? {
    step, epoch: sampler.epoch + (sampler.position > 0 ? 1 : 0), samples: sampler.epoch * run.train.count + sampler.position,
    steps: past.flatMap((l) => (l.kind === 'step' || l.kind === 'round' ? [{ step: stepOf(l), epoch: l.epoch, loss: l.loss, accuracy: l.accuracy, samplesPerS: l.samples_per_s }] : [])),
    evals: past.flatMap((l) => {
      if (l.kind === 'epoch') return [{ epoch: l.epoch, step: l.step, testLoss: l.test_loss, testAccuracy: l.test_accuracy }];
      if (l.kind === 'eval') return [{ epoch: l.samples / run.train.count, step: l.step, testLoss: l.test_loss, testAccuracy: l.test_accuracy }];
      return [];
    }),
  } : undefined;
  return new RunStatus({
    runId: runIdOf(run), name, resumed,
    settings: runSettings(run.settings),
    totalSteps: totalSteps(run.settings, run.train.count),
  });
}

export function reportStep(status: RunStatus, r: StepReport): void {
  status.count('samples', r.samples);
  status.setSplit(r.split);
  status.addStep({ step: r.step, epoch: r.epoch, loss: r.loss, accuracy: r.accuracy, samplesPerS: r.samplesPerS, lr: r.lr });
}

export function reportEval(status: RunStatus, r: EvalReport): void {
  status.addEval({ epoch: r.epoch, step: r.step, testLoss: r.testLoss, testAccuracy: r.testAccuracy });
}

/**
 * The checkpoints of a run as they go: each failed write is counted (gradhub_checkpoint_failures_total
 * by code; the saver logged it); `last` is the newest outcome, `lastSaved` the newest step written.
 */
export interface CheckpointLog {
  readonly onCheckpoint: (r: CheckpointOutcome) => void;
  last(): CheckpointOutcome | null;
  lastSaved(): number | null;
}

export function checkpointLog(status: RunStatus): CheckpointLog {
  let last: CheckpointOutcome | null = null;
  let saved: number | null = null;
  return {
    onCheckpoint(r) {
      last = r;
      if (r.ok) saved = r.step;
      else status.count(CHECKPOINT_FAILURES_PREFIX + r.code);
    },
    last: () => last,
    lastSaved: () => saved,
  };
}

/**
 * A metrics sink whose failed writes (a full disk, EFBIG, EMFILE...) do not end the run: each is
 * counted (gradhub_metrics_write_failures_total by code) and the first of each code logged once.
 */
export function guardMetrics(sink: MetricsSink, status: RunStatus, logger: Logger, file: string): MetricsSink {
  const told = new Set<string>();
  const guard = (what: string, f: () => void): void => {
    try {
      f();
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? 'EUNKNOWN';
      status.count(METRICS_WRITE_FAILURES_PREFIX + code);
      if (told.has(code)) return;
      told.add(code);
      logger.warn({ file, code, err: (err as Error).message }, `the metrics file could not be ${what} (${code}): the run goes on (further ${code} failures are counted, not logged)`);
    }
  };
  return {
    write: (line) => guard('written', () => sink.write(line)),
    close: () => guard('closed', () => sink.close()),
    // A rollback cuts the file back (audits): passed through as they are.
    ...(sink.mark ? { mark: () => sink.mark!() } : {}),
    ...(sink.truncate ? { truncate: (m: number) => guard('cut back', () => sink.truncate!(m)) } : {}),
  };
}

/** Metrics-file writes that failed so far (every code). */
export function metricsFailures(status: RunStatus): number {
  return Object.entries(status.snapshot().counters)
    .filter(([k]) => k.startsWith(METRICS_WRITE_FAILURES_PREFIX))
    .reduce((n, [, v]) => n + v, 0);
}
