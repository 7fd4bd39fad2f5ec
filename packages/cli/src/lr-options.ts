/**
 * The learning-rate flags (--lr-schedule, --lr-step-size, --lr-gamma, --lr-min, --warmup-steps,
 * --warmup-start-factor) and --allow-changed, turned into settings. A flag that only one schedule
 * uses is a usage error with any other (E_USAGE; the schedule's name is one of the option table's choices); the values are
 * then checked by core's validateLrSchedule (flag names in its messages).
 */
import { GradhubError, validateLrSchedule, type LrScheduleKind, type LrScheduleOptions } from '@gradhub/core';
import { LR_SETTING_KEYS } from '@gradhub/coordinator';
import type { RunOptions } from './options.js';

/** The schedule settings of the parsed flags (lr not included: --lr is SGD's). */
export function lrScheduleFrom(o: RunOptions): Omit<LrScheduleOptions, 'lr'> {
  const kind: LrScheduleKind = o['lr-schedule']; // one of the table's choices (core's LR_SCHEDULE_KINDS)
  const only = (flag: 'lr-step-size' | 'lr-gamma' | 'lr-min', needs: LrScheduleKind): void => {
    if (o[flag] !== undefined && kind !== needs) throw new GradhubError('E_USAGE', `--${flag} needs --lr-schedule ${needs} (the schedule is ${kind})`);
  };
  only('lr-step-size', 'step');
  only('lr-gamma', 'step');
  only('lr-min', 'cosine');
  if (kind === 'step' && o['lr-step-size'] === undefined) throw new GradhubError('E_USAGE', '--lr-schedule step needs --lr-step-size N (updates between two multiplications by --lr-gamma)');
  const warmupSteps = o['warmup-steps'];
  if (o['warmup-start-factor'] !== undefined && warmupSteps === 0) throw new GradhubError('E_USAGE', '--warmup-start-factor needs --warmup-steps N > 0');
  const out = {
    lrSchedule: kind,
    lrStepSize: o['lr-step-size'],
    lrGamma: o['lr-gamma'],
    lrMin: o['lr-min'],
    warmupSteps,
    warmupStartFactor: o['warmup-start-factor'],
  };
  try {
    validateLrSchedule({ lr: 0, ...out });
  } catch (e) {
    throw new GradhubError('E_USAGE', (e as Error).message);
  }
  return out;
}

/**
 * The checkpoint settings keys a resume may change (--allow-changed, comma-separated groups;
 * "lr": LR_SETTING_KEYS). Without --resume the flag is a usage error.
 */
export function allowedChangesFrom(o: RunOptions): string[] {
  const raw = o['allow-changed'];
  if (raw === undefined) return [];
  if (!o['resume']) throw new GradhubError('E_USAGE', '--allow-changed only applies with --resume');
  const keys: string[] = [];
  for (const group of raw.split(',').map((g) => g.trim())) {
    if (group === 'lr') keys.push(...LR_SETTING_KEYS);
    else throw new GradhubError('E_USAGE', `--allow-changed accepts "lr", got "${group}"`);
  }
  return keys;
}
