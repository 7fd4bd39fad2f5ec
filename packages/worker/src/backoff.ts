/**
 * Reconnect pacing of the worker session (session.ts, shared by the Node and the browser worker):
 * exponential backoff with full jitter, within a grace period that
 * starts when the coordinator is lost (at start, and at each Welcome). Runtime-neutral: no Node or
 * DOM API (the timer comes from the caller).
 *
 * Attempt `a` (0 first) waits a uniformly random time in [0, min(maxMs, initialMs * 2^a)), and
 * never past the end of the grace period; once `graceMs` have passed without a Welcome,
 * `next()` answers null and the caller gives up. `describeSessionEnd` words why a session ended,
 * for the reconnect log and the volunteer page.
 */
import type { SessionEnd } from './client.js';

/** Reconnect pacing options (all in ms). */
export interface BackoffOptions {
  /** Ceiling of the first delay (doubles each failure). */
  readonly initialMs: number;
  /** Largest ceiling. */
  readonly maxMs: number;
  /** Give up when no coordinator welcomes this worker for this long. */
  readonly graceMs: number;
}

/** The delays of successive reconnect attempts (module comment). */
export class Backoff {
  private count = 0;
  private lostAt = Date.now();

  constructor(private readonly opts: BackoffOptions) {}

  /** Attempts counted by `next()` since the last reset. */
  get attempt(): number {
    return this.count;
  }

  /** ms since the coordinator was lost (the last reset, or the start). */
  waited(): number {
    return Date.now() - this.lostAt;
  }

  /** A Welcome: the next failure starts over from `initialMs` and a fresh grace period. */
  reset(): void {
    this.count = 0;
    this.lostAt = Date.now();
  }

  /** The delay before the next attempt, ms (counting that attempt), or null once the grace period is over. */
  next(): number | null {
    const waited = this.waited();
    if (waited >= this.opts.graceMs) return null;
    const ceiling = Math.min(this.opts.maxMs, this.opts.initialMs * 2 ** Math.min(this.count, 30));
    this.count++;
    return Math.min(Math.random() * ceiling, this.opts.graceMs - waited);
  }
}

/** A pause between attempts that `wake()` ends early (a stop, a resume). */
export class WakeableSleep {
  private waker: (() => void) | null = null;

  /** `sleep` is the runtime's timer, e.g. `(ms) => new Promise((r) => setTimeout(r, ms))`. */
  constructor(private readonly sleep: (ms: number) => Promise<void>) {}

  /** Wait `ms`, or until `wake()`. */
  async pause(ms: number): Promise<void> {
    await new Promise<void>((r) => {
      this.waker = r;
      void this.sleep(ms).then(r);
    });
    this.waker = null;
  }

  /** End the pause in progress now, if any. */
  wake(): void {
    this.waker?.();
  }
}

/** Why a session ended, in a few words (e.g. 'closed (1006)', 'BAD_VERSION: ...'). */
export function describeSessionEnd(e: SessionEnd): string {
  switch (e.kind) {
    case 'closed': return `closed (${e.code}${e.reason ? ` ${e.reason}` : ''})`;
    case 'timeout': return e.message;
    case 'bye': return `bye (${e.reason})`;
    case 'rejected':
    case 'error': return `${e.codeName}: ${e.message}`;
    case 'stopped': return 'stopped';
  }
}
