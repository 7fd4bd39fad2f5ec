/** The run's status store, fed by the trainer's reports (dashboard, /api/status, /metrics read it). */
import { RunStatus, runSettings, totalSteps, type StepReport, type EvalReport } from '@gradhub/coordinator';
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
