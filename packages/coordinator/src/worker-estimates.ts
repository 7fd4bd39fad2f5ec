/**
 * Per-worker speed and bandwidth estimates, from busy periods. Pure (times are passed in).
 *
 * A worker's busy period runs from the Work that finds it owing nothing to the answer that leaves
 * it owing nothing. Over a period: its compute speed is samples accepted / the compute time it
 * reported (wall time when it reports none), and its bandwidth bytes moved (parameters and work
 * down, results up) / the busy time not spent computing; both feed EWMAs (scheduler.ts
 * `SpeedTable`) that the next split and the heartbeat deadline read.
 */
import { SpeedTable } from './scheduler.js';

interface BusyPeriod {
  since: number;
  /** Samples accepted, compute ms reported, bytes moved. */
  done: number;
  computeMs: number;
  bytes: number;
}

export class WorkerEstimates {
  private readonly speeds: SpeedTable;
  private readonly bandwidths: SpeedTable;
  /** The current request's busy periods, by worker. */
  private readonly periods = new Map<number, BusyPeriod>();

  /** `alpha`: weight of the newest measurement in the EWMAs. */
  constructor(alpha: number) {
    this.speeds = new SpeedTable(alpha);
    this.bandwidths = new SpeedTable(alpha);
  }

  /** Compute speed, samples/s (EWMA), or null when never measured. */
  speed(id: number): number | null {
    return this.speeds.get(id);
  }

  /** Bandwidth, bytes/s (EWMA), or null when never measured. */
  bandwidth(id: number): number | null {
    return this.bandwidths.get(id);
  }

  /** A new request: no busy period is open. */
  newRequest(): void {
    this.periods.clear();
  }

  /** Worker `id` (owing nothing) gets work at `now`: a busy period starts. */
  start(id: number, now: number): void {
    this.periods.set(id, { since: now, done: 0, computeMs: 0, bytes: 0 });
  }

  /** `bytes` moved to or from worker `id` in its busy period. */
  moved(id: number, bytes: number): void {
    const p = this.periods.get(id);
    if (p) p.bytes += bytes;
  }

  /** An answer ended worker `id`'s part in a node: `samples` accepted (0 when not), `computeMs` reported. */
  answered(id: number, samples: number, computeMs: number): void {
    const p = this.periods.get(id);
    if (!p) return;
    p.done += samples;
    p.computeMs += computeMs;
  }

  /** Worker `id` owes nothing any more at `now`: measure its busy period. */
  idle(id: number, now: number): void {
    const p = this.periods.get(id);
    if (!p) return;
    const wall = now - p.since;
    if (p.computeMs > 0) {
      this.speeds.observe(id, p.done, p.computeMs);
      this.bandwidths.observe(id, p.bytes, Math.max(1, wall - p.computeMs));
    } else {
      this.speeds.observe(id, p.done, wall);
    }
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
    this.bandwidths.forget(id);
  }
}
