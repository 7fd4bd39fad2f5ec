/**
 * Training settings shared by `gradhub train` and `gradhub coordinator` (docs/design.md "Contracts").
 * `bitSettings` are the ones that fix the bits of every step: a checkpoint records them and a
 * resume with different values is refused. epochs/steps only say when to stop.
 */
import { isConstantLr, resolveLrSchedule, type LrScheduleOptions, type SgdOptions } from '@gradhub/core';

/** SGD's options plus the lr schedule (core lr-schedule.ts; absent fields: a constant lr). */
export interface TrainSettings extends SgdOptions, LrScheduleOptions {
  readonly sizes: readonly number[];
  readonly batch: number;
  readonly chunk: number;
  readonly seed: number;
  readonly shuffle: boolean;
  readonly normalize: boolean;
  readonly epochs: number;
  /** Stop after this many updates (null: run all epochs). Whichever ends first. Rounds mode: rounds. */
  readonly steps: number | null;
  /** Rounds mode (docs/design.md "Rounds": local SGD with an outer optimizer); null: synchronous SGD. */
  readonly rounds?: RoundSettings | null;
  /** Evaluate the test set every this many training samples as well as at epoch ends (0: only there). */
  readonly evalEvery?: number;
}

/** The round settings: M replicas of H inner steps, and the outer torch.optim.SGD. */
export interface RoundSettings {
  /** H: inner steps per replica and round. */
  readonly localSteps: number;
  /** M: replicas (a setting of the run, never the worker count). */
  readonly replicas: number;
  readonly outerLr: number;
  readonly outerMomentum: number;
  /** Nesterov outer momentum (default: whenever outerMomentum > 0). */
  readonly outerNesterov: boolean;
}

/** The outer optimizer's options (torch.optim.SGD(lr=outer_lr, momentum=outer_momentum, nesterov=...)). */
export function outerSgd(r: RoundSettings): SgdOptions {
  return { lr: r.outerLr, momentum: r.outerMomentum, dampening: 0, weightDecay: 0, nesterov: r.outerNesterov, maximize: false };
}

/** The settings that fix the bits, as stored in a checkpoint (plain JSON-able values). */
export function bitSettings(s: TrainSettings): Record<string, unknown> {
  return {
    model: s.sizes.join(','),
    batch: s.batch,
    chunk: s.chunk,
    seed: s.seed,
    shuffle: s.shuffle,
    normalize: s.normalize,
    lr: s.lr,
    momentum: s.momentum,
    dampening: s.dampening,
    weight_decay: s.weightDecay,
    nesterov: s.nesterov,
    ...lrBitSettings(s),
    ...roundBitSettings(s.rounds ?? null),
  };
}

/** The round keys, only in rounds mode (so synchronous checkpoints and run lines read as before). */
function roundBitSettings(r: RoundSettings | null): Record<string, unknown> {
  if (!r) return {};
  return { local_steps: r.localSteps, replicas: r.replicas, outer_lr: r.outerLr, outer_momentum: r.outerMomentum, outer_nesterov: r.outerNesterov };
}

/**
 * The bit settings `--allow-changed lr` lets a resume change: the lr and its schedule. The
 * schedule's keys are recorded only when it is not the default constant lr, so runs without one
 * keep their checkpoints byte for byte and checkpoints from before schedules read as constant.
 * A cosine schedule's T_max is the run's length, so `epochs` and `steps` then fix bits too.
 */
export const LR_SETTING_KEYS: readonly string[] = [
  'lr', 'lr_schedule', 'lr_step_size', 'lr_gamma', 'lr_min', 'warmup_steps', 'warmup_start_factor', 'epochs', 'steps',
];

function lrBitSettings(s: TrainSettings): Record<string, unknown> {
  if (isConstantLr(s)) return {};
  const o = resolveLrSchedule(s);
  const out: Record<string, unknown> = { lr_schedule: o.lrSchedule };
  if (o.lrSchedule === 'step') Object.assign(out, { lr_step_size: o.lrStepSize, lr_gamma: o.lrGamma });
  if (o.lrSchedule === 'cosine') Object.assign(out, { lr_min: o.lrMin, epochs: s.epochs, ...(s.steps === null ? {} : { steps: s.steps }) });
  if (o.warmupSteps > 0) Object.assign(out, { warmup_steps: o.warmupSteps, warmup_start_factor: o.warmupStartFactor });
  return out;
}

/** What a run is, for people and files: the bitSettings, then when it stops (epochs, steps: null for no limit). */
export function runSettings(s: TrainSettings): Record<string, unknown> {
  return { ...bitSettings(s), epochs: s.epochs, steps: s.steps };
}
