/**
 * The workers table (status rows): one row per worker in the status sink, with what it has
 * done in this coordinator (accepted nodes and samples) and its state.
 */
import type { ClusterStatusSink, WorkerConn } from './membership.js';

export class WorkerRows {
  /** Accepted nodes and samples per worker. */
  private readonly tally = new Map<number, { nodes: number; samples: number }>();

  constructor(private readonly sink: ClusterStatusSink | null) {}

  /** Worker `id` had a node of `samples` accepted. */
  counted(id: number, samples: number): void {
    const t = this.tally.get(id) ?? { nodes: 0, samples: 0 };
    t.nodes++;
    t.samples += samples;
    this.tally.set(id, t);
  }

  /** Update `w`'s row: its measured speed (samples/s, null when never measured) and whether it owes results. */
  report(w: WorkerConn, speed: number | null, busy: boolean): void {
    if (!this.sink || w.gone) return;
    const t = this.tally.get(w.id);
    this.sink.upsertWorker({
      id: String(w.id), runtime: w.runtime, samplesPerS: speed ?? 0, nodesDone: t?.nodes ?? 0, samplesDone: t?.samples ?? 0,
      bytesIn: w.bytesIn, bytesOut: w.bytesOut, lastSeen: w.lastSeen, state: w.paused ? 'paused' : busy ? 'working' : 'idle', address: w.address,
    });
  }

  /** A result came too late (dropped quietly): the `late_results` counter. */
  lateResult(): void {
    this.sink?.count('late_results');
  }

  /** A result was non-finite (its node is recomputed elsewhere): the `results_non_finite` counter. */
  nonFinite(): void {
    this.sink?.count('results_non_finite');
  }

  /** A worker held its work past its deadline (it went to others): the `stalls` counter. */
  stalled(): void {
    this.sink?.count('stalls');
  }

  /** `id` is gone: its row goes. */
  remove(id: number): void {
    this.tally.delete(id);
    this.sink?.removeWorker(String(id));
  }
}
