/**
 * The learning rate of each update of a run: core's `lrSchedule` over the run's total updates
 * (a cosine schedule's T_max = total - warm-up), with an invalid schedule reported as a usage
 * error (E_USAGE) naming the flag. Update k (1-based) uses lrOf(k); a run resumed at step j
 * (possibly with other lr settings, `--allow-changed lr`) asks for k = j + 1, ... only: the
 * updates before it keep the bits they had.
 */
import { GradhubError, lrSchedule, type LrScheduleOptions } from '@gradhub/core';

export function lrOfRun(s: LrScheduleOptions, totalSteps: number): (k: number) => number {
  try {
    return lrSchedule(s, { totalSteps });
  } catch (e) {
    throw new GradhubError('E_USAGE', (e as Error).message);
  }
}
