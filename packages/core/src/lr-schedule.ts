/**
 * Learning-rate schedules as PyTorch 1.13 computes them, counted in optimizer steps (updates).
 *
 *   constant  the lr itself
 *   step      torch.optim.lr_scheduler.StepLR(step_size, gamma)
 *   cosine    CosineAnnealingLR(T_max = total updates - warm-up updates, eta_min)
 *   warm-up   LinearLR(start_factor, end_factor=1, total_iters=N) chained before the schedule
 *             with SequentialLR(milestones=[N]) (for `constant` the schedule after the milestone is
 *             ConstantLR(factor=1, total_iters=0): the lr itself); N = 0 means no warm-up
 *
 * "The lr of update k" (k = 1, 2, ...) is `optimizer.param_groups[0]['lr']` when the k-th
 * `opt.step()` runs in the loop `for k in 1..total: opt.step(); sched.step()`, i.e. after k - 1
 * scheduler steps. Every value is what PyTorch's *recursive* (chainable, `get_lr`) formulas give
 * as a float64, including their rounding: StepLR multiplies the previous lr by gamma
 * (lr*g*g, not lr*g**2), LinearLR and CosineAnnealingLR scale the previous lr, and at the
 * milestone SequentialLR calls the schedule's `step(0)`, which takes the *closed* form at epoch 0
 * (cosine: eta_min + (lr - eta_min) * (1 + cos 0) / 2, not always lr to the bit). The module
 * replays exactly those operations, in Python's evaluation order, so the values equal PyTorch's
 * bit for bit (test/lr-schedule.test.ts against test/fixtures/reference/lr_schedules.json).
 *
 * The one transcendental, cos, is the core's `cos` (mathdet.ts): correctly rounded and the same in
 * every engine. CPython's `math.cos` is the C library's; glibc's differs from the correctly
 * rounded value by one ulp for about 0.1% of the arguments pi*e/T, and the recursive cosine carries
 * such a difference into the later steps (a few ulps of float64; SGD uses the lr rounded to
 * float32, which then almost never differs). With glibc's cosine values injected (`cosine` option)
 * the schedule gives PyTorch's bits exactly.
 *
 * Pure: no I/O. `lrSchedule` returns a function of k that computes the values once, in order,
 * and remembers them (O(k) the first time, O(1) after).
 */
import { cos } from './mathdet.js';
import { internalError } from './errors.js';

export type LrScheduleKind = 'constant' | 'step' | 'cosine';

export const LR_SCHEDULE_KINDS: readonly LrScheduleKind[] = ['constant', 'step', 'cosine'];

/**
 * A schedule's settings (flat, so training settings can extend them). Only `lr` is required;
 * the others default to LR_SCHEDULE_DEFAULTS (a constant lr, no warm-up).
 */
export interface LrScheduleOptions {
  /** The base lr (PyTorch's initial_lr). */
  readonly lr: number;
  /** --lr-schedule: default 'constant'. */
  readonly lrSchedule?: LrScheduleKind;
  /** --lr-step-size: StepLR's step_size in updates (schedule 'step'), an integer >= 1. */
  readonly lrStepSize?: number;
  /** --lr-gamma: StepLR's gamma (schedule 'step'), finite, >= 0. */
  readonly lrGamma?: number;
  /** --lr-min: CosineAnnealingLR's eta_min (schedule 'cosine'), finite, >= 0. */
  readonly lrMin?: number;
  /** --warmup-steps: warm-up updates N (LinearLR's total_iters), an integer >= 0; 0: none. */
  readonly warmupSteps?: number;
  /** --warmup-start-factor: LinearLR's start_factor, in (0, 1] (PyTorch divides by it). */
  readonly warmupStartFactor?: number;
}

/** The defaults: a constant lr, no warm-up (every run before schedules existed). */
export const LR_SCHEDULE_DEFAULTS = {
  lrSchedule: 'constant', lrStepSize: 1, lrGamma: 0.1, lrMin: 0, warmupSteps: 0, warmupStartFactor: 1 / 3,
} as const satisfies Required<Omit<LrScheduleOptions, 'lr'>>;

/** The options with every default filled in. */
export function resolveLrSchedule(o: LrScheduleOptions): Required<LrScheduleOptions> {
  const d = LR_SCHEDULE_DEFAULTS;
  return {
    lr: o.lr,
    lrSchedule: o.lrSchedule ?? d.lrSchedule,
    lrStepSize: o.lrStepSize ?? d.lrStepSize,
    lrGamma: o.lrGamma ?? d.lrGamma,
    lrMin: o.lrMin ?? d.lrMin,
    warmupSteps: o.warmupSteps ?? d.warmupSteps,
    warmupStartFactor: o.warmupStartFactor ?? d.warmupStartFactor,
  };
}

/** True when the options are the constant lr without warm-up (the lr of every update is `lr`). */
export function isConstantLr(o: LrScheduleOptions): boolean {
  return (o.lrSchedule ?? 'constant') === 'constant' && (o.warmupSteps ?? 0) === 0;
}

/** Throws E_INTERNAL naming the flag of the first invalid option. */
export function validateLrSchedule(options: LrScheduleOptions): void {
  const o = resolveLrSchedule(options);
  if (!LR_SCHEDULE_KINDS.includes(o.lrSchedule)) throw internalError(`--lr-schedule must be constant, step or cosine, got "${String(o.lrSchedule)}"`);
  if (!Number.isInteger(o.lrStepSize) || o.lrStepSize < 1) throw internalError(`--lr-step-size must be an integer >= 1, got ${o.lrStepSize}`);
  if (!Number.isFinite(o.lrGamma) || o.lrGamma < 0) throw internalError(`--lr-gamma must be a finite number >= 0, got ${o.lrGamma}`);
  if (!Number.isFinite(o.lrMin) || o.lrMin < 0) throw internalError(`--lr-min must be a finite number >= 0, got ${o.lrMin}`);
  if (!Number.isInteger(o.warmupSteps) || o.warmupSteps < 0) throw internalError(`--warmup-steps must be an integer >= 0, got ${o.warmupSteps}`);
  if (!(o.warmupStartFactor > 0 && o.warmupStartFactor <= 1)) throw internalError(`--warmup-start-factor must be in (0, 1], got ${o.warmupStartFactor}`);
}

/** Options of `lrSchedule`. */
export interface LrScheduleRun {
  /** The run's total updates (cosine: T_max = totalSteps - warmupSteps, which must be >= 0). */
  readonly totalSteps: number;
  /** The cosine used by the cosine schedule; default the core's `cos` (tests inject glibc's values). */
  readonly cosine?: (x: number) => number;
}

/**
 * The lr of update k (k = 1, 2, ...; see the module comment), as a function. Validates the
 * options (E_INTERNAL). Defined for any k >= 1, also past totalSteps (PyTorch's formulas go on).
 */
export function lrSchedule(options: LrScheduleOptions, run: LrScheduleRun): (k: number) => number {
  validateLrSchedule(options);
  const o = resolveLrSchedule(options);
  const { totalSteps } = run;
  if (!Number.isInteger(totalSteps) || totalSteps < 0) throw internalError(`totalSteps must be an integer >= 0, got ${totalSteps}`);
  if (isConstantLr(o)) {
    return (k) => {
      checkK(k);
      return o.lr;
    };
  }
  const cosf = run.cosine ?? cos;
  const base = o.lr;
  const n = o.warmupSteps;
  const tMax = totalSteps - n;
  if (o.lrSchedule === 'cosine' && tMax < 0) {
    throw internalError(`--warmup-steps ${n} exceeds the run's ${totalSteps} updates: the cosine schedule would have T_max ${tMax}`);
  }

  /** The main schedule's recursive step at its epoch e >= 1, from the current lr (get_lr). */
  const mainStep = (lr: number, e: number): number => {
    switch (o.lrSchedule) {
      case 'constant':
        return lr; // ConstantLR(factor=1, total_iters=0) at e != 0
      case 'step':
        return e % o.lrStepSize !== 0 ? lr : lr * o.lrGamma;
      case 'cosine': {
        const etaMin = o.lrMin;
        if (pyMod(e - 1 - tMax, 2 * tMax) === 0) return lr + ((base - etaMin) * (1 - cosf(Math.PI / tMax))) / 2;
        return ((1 + cosf((Math.PI * e) / tMax)) / (1 + cosf((Math.PI * (e - 1)) / tMax))) * (lr - etaMin) + etaMin;
      }
    }
  };
  /** The main schedule's closed form at epoch 0 (SequentialLR's `step(0)` at the milestone). */
  const mainAtMilestone = (): number => {
    switch (o.lrSchedule) {
      case 'constant':
        return base * (1.0 + 1 * (1 - 1.0)); // ConstantLR: base * (factor + (0 >= total_iters) * (1 - factor))
      case 'step':
        return base * o.lrGamma ** 0; // base * gamma ** (0 // step_size)
      case 'cosine':
        return o.lrMin + ((base - o.lrMin) * (1 + cosf((Math.PI * 0) / tMax))) / 2;
    }
  };
  /** LinearLR's recursive step at its epoch e in [1, N) (end_factor 1). */
  const s = o.warmupStartFactor;
  const warmupStep = (lr: number, e: number): number => lr * (1 + (1 - s) / (n * s + (e - 1) * (1 - s)));

  // values[k - 1] = the lr of update k; `lr` and the epochs are the schedulers' state after it.
  const values: number[] = [];
  let lr = n > 0 ? base * s : base; // the constructors' initial step (epoch 0)
  let epoch = 0; // SequentialLR's last_epoch (or the main schedule's, without warm-up)
  values.push(lr);
  return (k) => {
    checkK(k);
    while (values.length < k) {
      epoch++;
      if (n === 0) lr = mainStep(lr, epoch);
      else if (epoch < n) lr = warmupStep(lr, epoch);
      else if (epoch === n) lr = mainAtMilestone();
      else lr = mainStep(lr, epoch - n);
      values.push(lr);
    }
    return values[k - 1];
  };
}

function checkK(k: number): void {
  if (!Number.isInteger(k) || k < 1) throw internalError(`the update index k must be an integer >= 1, got ${k}`);
}

/** Python's a % m for m > 0 (the result has m's sign); NaN for m = 0 as Python would raise. */
function pyMod(a: number, m: number): number {
  return ((a % m) + m) % m;
}
