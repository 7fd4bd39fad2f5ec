/**
 * Hold deadlines: a worker that holds work past a deadline derived from its measured pace loses
 * it, and one that does so too often is dropped, whatever its heartbeats. Pure (times are passed
 * in, ms on one clock); the executor acts on the answers (docs/design.md "Stalls").
 *
 * Contract:
 * - A worker's clock starts when work is handed to it (`restart`: each hand-out, and when its
 *   socket is read again after flow control paused it, since a paused socket cannot answer).
 * - Its deadline (`holdLimitMs`) is `slackMs + k x queued / pace`: queued = the samples it owes,
 *   pace = its measured turnaround (worker-estimates.ts: samples per second from the hand-out to
 *   its last answer, as the coordinator saw them). A worker never measured is given the slowest
 *   measured pace of the others; when none is measured, `unmeasuredMs` flat.
 * - `overdue(now)`: the workers past their deadline that still hold incomplete nodes (a worker
 *   that holds nothing delays nobody). The executor takes their nodes away (revoked in the
 *   record, placed on others, first complete copy wins, so the bits do not change) and counts a
 *   stall; a worker that has no one to hand its nodes to keeps them and its clock restarts.
 * - `strike(id, now)`: one stall of `id`; the stalls within the last `windowMs`, this one
 *   included. At `strikes` the executor drops the worker (Error STALLED).
 */
import { internalError } from '@gradhub/core';
import type { Assignments } from './assignments.js';

export interface StallRules {
  /** A deadline is k x the expected time of what the worker holds. */
  readonly k: number;
  /** Added to every deadline, ms (jitter, GC, a loaded machine). */
  readonly slackMs: number;
  /** The deadline when no worker has a measured pace yet, ms. */
  readonly unmeasuredMs: number;
  /** Stalls within `windowMs` that lose the worker. */
  readonly strikes: number;
  readonly windowMs: number;
}

export const DEFAULT_STALL_RULES: StallRules = { k: 4, slackMs: 2000, unmeasuredMs: 10_000, strikes: 3, windowMs: 5 * 60_000 };

/** How often the executor looks for overdue workers, ms. */
export const STALL_CHECK_MS = 250;

/** The deadline (ms after the hand-out) of `queued` samples at `pace` (samples/s; null: `slowest`, else unmeasured). */
export function holdLimitMs(queued: number, pace: number | null, slowest: number | null, rules: StallRules): number {
  const p = pace ?? slowest;
  return p !== null && p > 0 ? rules.slackMs + (rules.k * queued * 1000) / p : rules.unmeasuredMs;
}

/** Rules with `over` applied, checked (an internal error names a bad one). */
export function stallRules(over: Partial<StallRules> = {}): StallRules {
  const r = { ...DEFAULT_STALL_RULES, ...over };
  const ok = r.k >= 1 && Number.isFinite(r.k) && r.slackMs >= 0 && Number.isFinite(r.slackMs) && r.unmeasuredMs > 0 && Number.isFinite(r.unmeasuredMs)
    && Number.isInteger(r.strikes) && r.strikes >= 1 && r.windowMs > 0;
  if (!ok) throw internalError(`stall rules: k >= 1, slackMs >= 0, unmeasuredMs > 0, strikes >= 1 (an integer), windowMs > 0; got ${JSON.stringify(r)}`);
  return r;
}

export interface Overdue {
  readonly id: number;
  /** How long it has held its work, and its deadline, ms. */
  readonly heldMs: number;
  readonly limitMs: number;
}

/** Strikes per worker within a sliding window (stalls; non-finite results). */
export class Strikes {
  private readonly times = new Map<number, number[]>();

  constructor(readonly windowMs: number) {}

  /** One strike of `id` at `now`: its strikes within the window, this one included. */
  add(id: number, now: number): number {
    const list = (this.times.get(id) ?? []).filter((t) => now - t < this.windowMs);
    list.push(now);
    this.times.set(id, list);
    return list.length;
  }

  forget(id: number): void {
    this.times.delete(id);
  }
}

export class HoldWatch {
  private readonly since = new Map<number, number>();
  private readonly stalls: Strikes;

  constructor(readonly rules: StallRules) {
    this.stalls = new Strikes(rules.windowMs);
  }

  /** Work went out to `id` at `now`, or its socket is read again after a pause: its deadline counts from now. */
  restart(id: number, now: number): void {
    this.since.set(id, now);
  }

  /** A new request: nobody holds anything yet. */
  newRequest(): void {
    this.since.clear();
  }

  /**
   * The workers of `ids` holding incomplete nodes of `record` past their deadline at `now`
   * (`pace`: measured paces, null when never measured).
   */
  overdue(record: Assignments, ids: readonly number[], pace: (id: number) => number | null, now: number): Overdue[] {
    let slowest: number | null = null;
    for (const id of ids) {
      const p = pace(id);
      if (p !== null && (slowest === null || p < slowest)) slowest = p;
    }
    const out: Overdue[] = [];
    for (const id of ids) {
      const since = this.since.get(id);
      if (since === undefined || record.ownedBy(id).length === 0) continue;
      const limitMs = holdLimitMs(record.queued(id), pace(id), slowest, this.rules);
      const heldMs = now - since;
      if (heldMs > limitMs) out.push({ id, heldMs, limitMs });
    }
    return out;
  }

  /** One stall of `id` at `now`: the stalls within the window, this one included. */
  strike(id: number, now: number): number {
    return this.stalls.add(id, now);
  }

  /** `id` is gone. */
  forget(id: number): void {
    this.since.delete(id);
    this.stalls.forget(id);
  }
}
