/**
 * The trainer's memory of recent states, for exact rollback (docs/design.md "Audits and exact
 * rollback"): the state after each of the last W updates, W = budget / snapshot size (at least
 * 1). A snapshot is everything the loop needs to go on from there as if nothing came after:
 * parameters and the optimizer's momentum buffer (null: none yet, which differs from zeros),
 * the sampler state, the step, the evaluation mark, and where the metrics file ended.
 *
 * Buffers of evicted snapshots are reused, so a run allocates W of them once. The parameters of
 * a snapshot are the parameters its next step's results were computed on: an audit of step k + 1
 * reads `at(k).params` and must be done before that snapshot is evicted (the trainer waits).
 */
import { internalError, type SamplerState } from '@gradhub/core';

export interface Snapshot {
  /** Updates applied (the state before update step + 1). */
  step: number;
  /** (paramCount) float32: the parameters after `step` updates. Read-only to others. */
  readonly params: Float32Array;
  /** (paramCount) float32 when `hasMomentum`; the optimizer had no buffer yet otherwise. */
  readonly momentum: Float32Array;
  hasMomentum: boolean;
  sampler: SamplerState;
  /** The step at which the last evaluation ran (-1: none yet). */
  evaluatedAt: number;
  /** The metrics file's mark (MetricsSink.mark) at this state. */
  metricsMark: number;
}

/** Default memory for snapshots, MiB (`--rollback-memory-mb`). */
export const DEFAULT_ROLLBACK_MEMORY_MB = 256;

/** Bytes of one snapshot of `paramCount` parameters (parameters and momentum buffer). */
export const snapshotBytes = (paramCount: number): number => 8 * paramCount;

export class SnapshotRing {
  /** W: snapshots kept. */
  readonly capacity: number;
  private readonly paramCount: number;
  /** Oldest first. */
  private readonly held: Snapshot[] = [];
  private readonly spare: Snapshot[] = [];

  constructor(paramCount: number, budgetBytes: number) {
    if (!Number.isInteger(paramCount) || paramCount < 1 || !(budgetBytes >= 0)) throw internalError(`SnapshotRing: ${paramCount} parameters, budget ${budgetBytes}`);
    this.paramCount = paramCount;
    this.capacity = Math.max(1, Math.floor(budgetBytes / snapshotBytes(paramCount)));
  }

  get size(): number {
    return this.held.length;
  }

  get full(): boolean {
    return this.held.length >= this.capacity;
  }

  /** The oldest snapshot's step, or null when empty. */
  get oldestStep(): number | null {
    return this.held.length > 0 ? this.held[0].step : null;
  }

  /** The oldest snapshot held (the next one `push` evicts when full), or null. */
  oldest(): Snapshot | null {
    return this.held[0] ?? null;
  }

  /** The snapshot after `step` updates, if held. */
  at(step: number): Snapshot | null {
    return this.held.find((s) => s.step === step) ?? null;
  }

  /**
   * Keep the state after `step` updates (copies `params` and `momentum`), evicting the oldest when
   * full. Steps must increase (after `dropFrom`, they may repeat what was dropped).
   */
  push(step: number, params: Float32Array, momentum: Float32Array | null, sampler: SamplerState, evaluatedAt: number, metricsMark: number): Snapshot {
    if (params.length !== this.paramCount || (momentum && momentum.length !== this.paramCount)) throw internalError('SnapshotRing.push: wrong sizes');
    const last = this.held[this.held.length - 1];
    if (last && last.step >= step) throw internalError(`SnapshotRing.push: step ${step} after ${last.step}`);
    if (this.full) this.spare.push(this.held.shift()!);
    const s = this.spare.pop() ?? { step, params: new Float32Array(this.paramCount), momentum: new Float32Array(this.paramCount), hasMomentum: false, sampler, evaluatedAt, metricsMark };
    s.step = step;
    s.params.set(params);
    s.hasMomentum = momentum !== null;
    if (momentum) s.momentum.set(momentum);
    s.sampler = { ...sampler };
    s.evaluatedAt = evaluatedAt;
    s.metricsMark = metricsMark;
    this.held.push(s);
    return s;
  }

  /** Forget the snapshots of `step` updates and later (their buffers are reused). */
  dropFrom(step: number): void {
    while (this.held.length > 0 && this.held[this.held.length - 1].step >= step) this.spare.push(this.held.pop()!);
  }
}
