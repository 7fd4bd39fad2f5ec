/**
 * The run's observable state, for people and scripts (dashboard, /api/status, /metrics).
 *
 * The trainer and the cluster executor report into it; readers take a snapshot or subscribe to
 * events. It holds only figures (never tensors): the settings, every step's loss and accuracy, every
 * evaluation, the workers table, the current step's time split and counters. Bounded: the step
 * history keeps at most `maxSteps` points (older ones are thinned, never the latest), and the
 * workers table every live worker but only the `maxDepartedRows` most recent departed ones (the
 * counters `workers_joined` and `workers_left` keep the totals), so a join/leave storm cannot
 * grow /api/status or the event streams.
 */

export type WorkerState = 'connected' | 'working' | 'idle' | 'paused' | 'gone';

export interface WorkerRow {
  id: string;
  runtime: 'node' | 'browser';
  /** Measured speed, samples/s (EWMA). */
  samplesPerS: number;
  /** Tree nodes computed and accepted. */
  nodesDone: number;
  /** Samples of accepted nodes. */
  samplesDone: number;
  bytesIn: number;
  bytesOut: number;
  /** ms since the epoch of the last frame from this worker. */
  lastSeen: number;
  state: WorkerState;
  address?: string;
  /** Joined with the trusted token (a worker the operator runs), not the public join token. */
  trusted?: boolean;
}

/** Milliseconds of one step, by phase (cluster; the in-process executor reports compute only). */
export interface StepSplit {
  compute: number;
  upload: number;
  reduce: number;
  sgd: number;
  broadcast: number;
}

export interface StepPoint {
  step: number;
  epoch: number;
  loss: number;
  accuracy: number;
  samplesPerS: number;
  /** The learning rate the update used (absent in points restored from metrics files without it). */
  lr?: number;
}

export interface EvalPoint {
  epoch: number;
  step: number;
  testLoss: number;
  testAccuracy: number;
}

export interface StatusSnapshot {
  runId: string;
  name: string;
  startedAt: number;
  settings: Record<string, unknown>;
  totalSteps: number;
  step: number;
  epoch: number;
  state: 'waiting' | 'training' | 'done' | 'stopped' | 'failed';
  steps: StepPoint[];
  evals: EvalPoint[];
  workers: WorkerRow[];
  split: StepSplit | null;
  /** Every step's split added up since this status began (a resumed run: since the resume), and how many steps. */
  splitTotal: StepSplit & { steps: number };
  counters: Record<string, number>;
}

export type StatusEvent =
  | { type: 'step'; point: StepPoint; split: StepSplit | null; wireBytesPerSample: number | null }
  | { type: 'eval'; point: EvalPoint }
  | { type: 'workers'; workers: WorkerRow[] }
  | { type: 'state'; state: StatusSnapshot['state']; step: number };

/** Bytes on the coordinator's sockets (both ways) per training sample so far; null before the first sample. */
export function wireBytesPerSample(s: Pick<StatusSnapshot, 'counters'>): number | null {
  const samples = s.counters.samples ?? 0;
  return samples > 0 ? ((s.counters.bytes_in ?? 0) + (s.counters.bytes_out ?? 0)) / samples : null;
}

/** Rounds mode's shape from the run's settings (bitSettings keys), or null for synchronous SGD. */
export function roundShape(settings: Record<string, unknown>): { replicas: number; localSteps: number } | null {
  const M = settings.replicas;
  const H = settings.local_steps;
  return typeof M === 'number' && typeof H === 'number' ? { replicas: M, localSteps: H } : null;
}

export class RunStatus {
  private readonly snap: StatusSnapshot;
  private readonly listeners = new Set<(e: StatusEvent) => void>();
  private readonly workerRows = new Map<string, WorkerRow>();
  /** Ids of the departed rows still kept, oldest first. */
  private readonly departed: string[] = [];

  /**
   * `resumed` seeds a run that continues from a checkpoint: the step and epoch it starts from, the
   * samples already trained on, and the curves so far (the steps and evaluations up to that step,
   * e.g. from the metrics file), so /api/status, /metrics and the dashboard go on from there.
   */
  constructor(
    init: {
      runId: string; name: string; settings: Record<string, unknown>; totalSteps: number;
      resumed?: { step: number; epoch: number; samples: number; steps?: readonly StepPoint[]; evals?: readonly EvalPoint[] };
    },
    private readonly maxSteps = 20_000,
    private readonly maxDepartedRows = 64,
  ) {
    const { resumed, ...rest } = init;
    this.snap = {
      ...rest, startedAt: Date.now(), step: resumed?.step ?? 0, epoch: resumed?.epoch ?? 0, state: 'waiting',
      steps: [], evals: [...(resumed?.evals ?? [])], workers: [], split: null,
      splitTotal: { compute: 0, upload: 0, reduce: 0, sgd: 0, broadcast: 0, steps: 0 }, counters: resumed ? { samples: resumed.samples } : {},
    };
    for (const p of resumed?.steps ?? []) this.keepStep(p);
  }

  snapshot(): StatusSnapshot {
    return { ...this.snap, splitTotal: { ...this.snap.splitTotal }, steps: [...this.snap.steps], evals: [...this.snap.evals], workers: [...this.workerRows.values()].map((w) => ({ ...w })), counters: { ...this.snap.counters } };
  }

  subscribe(fn: (e: StatusEvent) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  private emit(e: StatusEvent): void {
    for (const fn of this.listeners) fn(e);
  }

  setState(state: StatusSnapshot['state']): void {
    this.snap.state = state;
    this.emit({ type: 'state', state, step: this.snap.step });
  }

  /** Reported by the executor for the step being computed; published with the step. */
  setSplit(split: StepSplit): void {
    this.snap.split = split;
  }

  /** Append to the step history, thinning the older half (every other point) past maxSteps. */
  private keepStep(point: StepPoint): void {
    const s = this.snap.steps;
    s.push(point);
    if (s.length > this.maxSteps) {
      const half = s.length >> 1;
      const kept = s.slice(0, half).filter((_, i) => i % 2 === 0);
      this.snap.steps = [...kept, ...s.slice(half)];
    }
  }

  addStep(point: StepPoint): void {
    this.keepStep(point);
    const split = this.snap.split;
    if (split) {
      const t = this.snap.splitTotal;
      t.compute += split.compute;
      t.upload += split.upload;
      t.reduce += split.reduce;
      t.sgd += split.sgd;
      t.broadcast += split.broadcast;
      t.steps++;
    }
    this.snap.step = point.step;
    this.snap.epoch = point.epoch;
    if (this.snap.state === 'waiting') this.setState('training');
    this.emit({ type: 'step', point, split: this.snap.split, wireBytesPerSample: wireBytesPerSample(this.snap) });
  }

  /**
   * A rollback (docs/design.md "Audits and exact rollback") went back to the state after `step`
   * updates: the step and evaluation points after it are dropped (their replays follow), and the
   * state event tells subscribers the step went back.
   */
  rollBack(step: number): void {
    this.snap.steps = this.snap.steps.filter((p) => p.step <= step);
    this.snap.evals = this.snap.evals.filter((p) => p.step <= step);
    this.snap.step = step;
    this.emit({ type: 'state', state: this.snap.state, step });
  }

  addEval(point: EvalPoint): void {
    this.snap.evals.push(point);
    this.emit({ type: 'eval', point });
  }

  /** Count something (bytes, rejected frames by code, dropped late results...). */
  count(name: string, by = 1): void {
    this.snap.counters[name] = (this.snap.counters[name] ?? 0) + by;
  }

  upsertWorker(row: WorkerRow): void {
    const known = this.workerRows.get(row.id);
    if (known?.state === 'gone') return; // a departed worker's id never comes back (ids are per connection)
    if (!known) this.count('workers_joined');
    this.workerRows.set(row.id, row);
    this.emit({ type: 'workers', workers: [...this.workerRows.values()].map((w) => ({ ...w })) });
  }

  removeWorker(id: string): void {
    const row = this.workerRows.get(id);
    if (!row || row.state === 'gone') return;
    row.state = 'gone';
    this.count('workers_left');
    this.departed.push(id);
    while (this.departed.length > this.maxDepartedRows) this.workerRows.delete(this.departed.shift()!);
    this.emit({ type: 'workers', workers: [...this.workerRows.values()].map((w) => ({ ...w })) });
  }
}
