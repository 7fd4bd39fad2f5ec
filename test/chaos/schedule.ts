/**
 * Seeded chaos schedules: a pure function of a seed that says, step by step, what goes wrong in a
 * run (test/chaos/chaos.test.ts plays them against real processes). The same seed always gives the
 * same schedule, so a failing one is replayed with CHAOS_SEEDS=<seed>.
 */
import { Rng } from '@gradhub/core';

/** One fault, fired once the run has completed `atStep` steps. */
export type ChaosEvent =
  /** SIGKILL worker `worker`; a new worker process takes its slot `restartAfter` steps later. */
  | { readonly kind: 'kill'; readonly atStep: number; readonly worker: number; readonly restartAfter: number }
  /** SIGSTOP worker `worker` for `ms` (past the heartbeat deadline: the coordinator drops it), then SIGCONT: it reconnects. */
  | { readonly kind: 'pause'; readonly atStep: number; readonly worker: number; readonly ms: number }
  /** SIGKILL the coordinator and start it again with --resume on the same port: the workers reconnect. */
  | { readonly kind: 'restart-coordinator'; readonly atStep: number };

export interface ChaosSchedule {
  readonly seed: number;
  readonly events: readonly ChaosEvent[];
}

/**
 * The schedule of `seed` for a run of `steps` steps with `workers` worker slots: 2 to 4 events at
 * distinct steps in [1, steps - 2], each a kill (the slot refilled 0 to 2 steps later), a pause of
 * `pauseMs`, or a coordinator restart (at most one). Kills never leave the run without a worker for
 * long: a killed slot always comes back.
 */
export function chaosSchedule(seed: number, o: { steps: number; workers: number; pauseMs: number }): ChaosSchedule {
  // gradhub's own seeded generator (core rng.ts, the one of shuffles and initialisation).
  const rng = new Rng(seed);
  const rand = (): number => rng.nextFloat();
  const pick = (n: number): number => rng.nextBelow(n);
  const count = 2 + pick(3);
  const steps = new Set<number>();
  while (steps.size < Math.min(count, o.steps - 2)) steps.add(1 + pick(o.steps - 2));
  let restarted = false;
  const events: ChaosEvent[] = [...steps].sort((a, b) => a - b).map((atStep) => {
    const r = rand();
    if (r < 0.25 && !restarted) {
      restarted = true;
      return { kind: 'restart-coordinator', atStep };
    }
    if (r < 0.6) return { kind: 'pause', atStep, worker: pick(o.workers), ms: o.pauseMs };
    return { kind: 'kill', atStep, worker: pick(o.workers), restartAfter: pick(3) };
  });
  return { seed, events };
}

/** One line per event, for the failure message. */
export function describeSchedule(s: ChaosSchedule): string {
  return s.events.map((e) => {
    if (e.kind === 'kill') return `step ${e.atStep}: kill worker ${e.worker}, back ${e.restartAfter} steps later`;
    if (e.kind === 'pause') return `step ${e.atStep}: pause worker ${e.worker} for ${e.ms} ms`;
    return `step ${e.atStep}: restart the coordinator (--resume)`;
  }).join('; ');
}
