/**
 * Per-worker speed and bandwidth estimates, from what the coordinator itself sees. Pure (times are
 * passed in, ms on one clock).
 *
 * Contract: nothing a worker *says* about itself feeds an estimate (a Result's `compute_ms` is
 * informational: the step-time breakdown reads it clamped to `elapsed`). A worker that lies can
 * only make itself look slower, never faster, because every figure is a time the coordinator
 * measured between two events it saw itself:
 * - A busy period runs from the moment a Work frame is handed to the socket of a worker owing
 *   nothing (`start`) to the moment its answer arrives that leaves it owing nothing (`idle`): the
 *   wall time W, with S samples accepted.
 * - The hand-out that started it (parameters the worker lacked + the Work frame, B bytes) was
 *   taken by the socket D ms after it was handed over (`written`: the ws send callbacks).
 * - Compute speed = S / (W - D) (samples per second of the time not spent taking the hand-out:
 *   computing and sending results back); pace = S / W (samples per second of turnaround, what a
 *   hold deadline needs: stalls.ts); bandwidth = B / D (only when D >= `MIN_WRITE_MS`: a write
 *   the socket took at once says nothing about the link). All three are EWMAs (scheduler.ts
 *   `SpeedTable`) that the next split, the hold deadline and the heartbeat deadline read.
 * - `stalled`: a worker that held work past its deadline: its compute speed becomes no better than
 *   S' samples in the time it has held them (the truth can only be slower), so the next split
 *   gives it little, and its busy period ends (a late answer measures nothing more). Its pace is
 *   left alone: a deadline read from a pace measured on a stall would grow with each stall.
 */
import { SpeedTable } from './scheduler.js';

/** A write shorter than this (ms) measures no bandwidth. */
export const MIN_WRITE_MS = 5;

interface BusyPeriod {
  readonly since: number;
  /** Samples accepted. */
  done: number;
  /** Bytes of the hand-out that started the period, and how long the socket took to take them (null: not yet). */
  bytes: number;
  writeMs: number | null;
}

export class WorkerEstimates {
  private readonly speeds: SpeedTable;
  private readonly paces: SpeedTable;
  private readonly bandwidths: SpeedTable;
  /** The current request's busy periods, by worker. */
  private readonly periods = new Map<number, BusyPeriod>();

  /** `alpha`: weight of the newest measurement in the EWMAs. */
  constructor(alpha: number) {
    this.speeds = new SpeedTable(alpha);
    this.paces = new SpeedTable(alpha);
    this.bandwidths = new SpeedTable(alpha);
  }

  /** Compute speed, samples/s (EWMA), or null when never measured. */
  speed(id: number): number | null {
    return this.speeds.get(id);
  }

  /** Turnaround pace, samples/s of busy wall time (EWMA), or null when never measured. */
  pace(id: number): number | null {
    return this.paces.get(id);
  }

  /** Bandwidth, bytes/s (EWMA), or null when never measured. */
  bandwidth(id: number): number | null {
    return this.bandwidths.get(id);
  }

  /** The slowest measured pace of `ids` (samples/s), or null when none is measured. */
  slowestPace(ids: Iterable<number>): number | null {
    let out: number | null = null;
    for (const id of ids) {
      const p = this.paces.get(id);
      if (p !== null && (out === null || p < out)) out = p;
    }
    return out;
  }

  /** A new request: no busy period is open. */
  newRequest(): void {
    this.periods.clear();
  }

  /** Worker `id` (owing nothing) is handed work at `now`: a busy period starts; its token (to pass to `written`). */
  start(id: number, now: number): number {
    this.periods.set(id, { since: now, done: 0, bytes: 0, writeMs: null });
    return now;
  }

  /**
   * The hand-out that started the busy period `token` of worker `id` (`bytes`: parameters and
   * Work) was taken by its socket at `now`. Ignored when that period is over.
   */
  written(id: number, token: number, bytes: number, now: number): void {
    const p = this.periods.get(id);
    if (!p || p.since !== token || p.writeMs !== null) return;
    p.bytes = bytes;
    p.writeMs = Math.max(0, now - p.since);
  }

  /** An answer ended worker `id`'s part in a node: `samples` accepted (0 when not). */
  answered(id: number, samples: number): void {
    const p = this.periods.get(id);
    if (p) p.done += samples;
  }

  /** Milliseconds since worker `id`'s busy period began, or null when none is open. */
  elapsed(id: number, now: number): number | null {
    const p = this.periods.get(id);
    return p ? Math.max(0, now - p.since) : null;
  }

  /** Worker `id` owes nothing any more at `now`: measure its busy period. */
  idle(id: number, now: number): void {
    const p = this.periods.get(id);
    if (!p) return;
    this.periods.delete(id);
    const wall = Math.max(1, now - p.since);
    const write = Math.min(p.writeMs ?? 0, wall - 1);
    this.paces.observe(id, p.done, wall);
    this.speeds.observe(id, p.done, wall - write);
    if (p.writeMs !== null && p.writeMs >= MIN_WRITE_MS) this.bandwidths.observe(id, p.bytes, p.writeMs);
  }

  /** Worker `id` held `samples` past its deadline at `now`: its speed is bounded by that, and its busy period ends. */
  stalled(id: number, samples: number, now: number): void {
    const p = this.periods.get(id);
    if (!p) return;
    this.periods.delete(id);
    const wall = Math.max(1, now - p.since);
    const held = p.done + samples;
    const s = this.speeds.get(id);
    const bound = (held * 1000) / wall;
    if (s === null || s > bound) this.speeds.observe(id, held, wall);
  }

  /** Expected compute time of `queued` samples on worker `id`, ms x 2 (the heartbeat deadline's slack); 0 when unknown. */
  busyMs(id: number, queued: number): number {
    const speed = this.speeds.get(id);
    return queued > 0 && speed ? (2000 * queued) / speed : 0;
  }

  /** Worker `id` is gone. */
  forget(id: number): void {
    this.periods.delete(id);
    this.speeds.forget(id);
    this.paces.forget(id);
    this.bandwidths.forget(id);
  }
}
