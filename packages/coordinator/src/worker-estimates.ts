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
 *   wall time W, with S samples accepted and A samples answered (accepted, or dropped quietly
 *   because the node was taken from it or done elsewhere meanwhile).
 * - The hand-out that started it (parameters the worker lacked + the Work frame, B bytes) was
 *   taken by the socket D ms after it was handed over (`written`: the ws send callbacks).
 * - Compute speed = S / (W - D) (samples per second of the time not spent taking the hand-out:
 *   computing and sending results back); pace = A / W (samples per second of turnaround, what a
 *   hold deadline needs: stalls.ts; a late answer still measures how slow the worker is); bandwidth = B / D (only when D >= `MIN_WRITE_MS`: a write
 *   the socket took at once says nothing about the link). All three are EWMAs (scheduler.ts
 *   `SpeedTable`) that the next split, the hold deadline and the heartbeat deadline read.
 * - `stalled`: a worker that held work past its deadline: its compute speed becomes no better than
 *   the samples it held over the time it has held them (the truth can only be slower), so the
 *   next split gives it little. Its busy period goes on: its late answer measures its pace (so an
 *   honest slow worker gets a deadline it can meet), but no speed. A worker that never answers is
 *   never given a pace: its deadline stays the others' (a pace guessed at a stall would grow the
 *   deadline with each stall).
 * - A probation copy (work-dispatch.ts `probation`: a worker never measured computes a copy of a
 *   node others hold) is registered as a `probe`, which outlives its request: when the others
 *   finish the request first, the copy's answer arrives after it (dropped as stale by the
 *   reducer), and `lateAnswer` still measures the worker's pace and speed from the hand-out. Without
 *   this a worker slower than one step never got measured, never got work, and was dropped as
 *   stalled (found by the container fault test).
 */
import { SpeedTable } from './scheduler.js';

/** A write shorter than this (ms) measures no bandwidth. */
export const MIN_WRITE_MS = 5;

interface BusyPeriod {
  readonly since: number;
  /** Samples accepted; samples answered (accepted or dropped quietly). */
  done: number;
  answered: number;
  /** It held work past its deadline in this period. */
  stalled: boolean;
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
  /** Probation copies out, by worker (across requests). */
  private readonly probes = new Map<number, { readonly seq: number; readonly lo: number; readonly hi: number; readonly samples: number; readonly since: number }>();

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
    this.periods.set(id, { since: now, done: 0, answered: 0, stalled: false, bytes: 0, writeMs: null });
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

  /**
   * An answer ended worker `id`'s part in a node of `samples` samples: `accepted`, or else
   * `counts` (dropped quietly: the node was taken from it or done elsewhere) or not (non-finite).
   */
  answered(id: number, samples: number, accepted: boolean, counts = accepted): void {
    const p = this.periods.get(id);
    if (!p) return;
    if (accepted) p.done += samples;
    if (accepted || counts) p.answered += samples;
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
    this.probes.delete(id); // measured now: a probation copy's late answer measures nothing more
    const wall = Math.max(1, now - p.since);
    const write = Math.min(p.writeMs ?? 0, wall - 1);
    this.paces.observe(id, p.answered, wall);
    if (!p.stalled) this.speeds.observe(id, p.done, wall - write);
    if (p.writeMs !== null && p.writeMs >= MIN_WRITE_MS) this.bandwidths.observe(id, p.bytes, p.writeMs);
  }

  /** Worker `id` held `samples` past its deadline at `now`: its speed is bounded by that (see the module comment). */
  stalled(id: number, samples: number, now: number): void {
    const p = this.periods.get(id);
    if (!p) return;
    p.stalled = true;
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
  /** Worker `id` (never measured) was handed a copy of `node` (`samples`) of request `seq` at `now`. */
  probe(id: number, seq: number, node: { readonly lo: number; readonly hi: number }, samples: number, now: number): void {
    this.probes.set(id, { seq, lo: node.lo, hi: node.hi, samples, since: now });
  }

  /**
   * An answer of worker `id` for `node` of request `seq`, which is over: when it is the worker's
   * probation copy, its pace and speed are measured from the hand-out (true); otherwise false.
   */
  lateAnswer(id: number, seq: number, node: { readonly lo: number; readonly hi: number }, now: number): boolean {
    const p = this.probes.get(id);
    if (!p || p.seq !== seq || p.lo !== node.lo || p.hi !== node.hi) return false;
    this.probes.delete(id);
    const wall = Math.max(1, now - p.since);
    this.paces.observe(id, p.samples, wall);
    this.speeds.observe(id, p.samples, wall);
    return true;
  }

  forget(id: number): void {
    this.probes.delete(id);
    this.periods.delete(id);
    this.speeds.forget(id);
    this.paces.forget(id);
    this.bandwidths.forget(id);
  }
}
