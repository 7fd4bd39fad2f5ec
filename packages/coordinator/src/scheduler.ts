/**
 * Who computes which tree nodes: pure functions and a speed table, no I/O, no clocks.
 *
 * Contract:
 * - `assignChunks` splits the batch's chunks [0, nChunks) into one contiguous range per worker,
 *   sized in proportion to the workers' measured speed (samples/s, an EWMA; a worker never
 *   measured counts as the mean of the measured ones, or 1 when none is), each worker getting at
 *   least one chunk. At most nChunks workers take part (the fastest; ties to the lower id).
 *   Ranges follow worker id order. Each range is decomposed with `coverRange` into canonical tree
 *   nodes (DESIGN invariant 3), and a node with more samples than the worker accepts
 *   (`maxSamples`, 0 = no limit) is split into its children until it fits (a single chunk always
 *   fits: membership rejects workers that cannot take one).
 * - `pickWorker` chooses who takes over one node (a lost worker's, or a non-finite one to be
 *   recomputed): the candidate that would finish it first given its queued samples and speed.
 * - The scheduler only decides *who*; the tree fixes *what* is summed and in which order, so any
 *   decision here gives the same bits.
 */
import { children, coverRange, nodeSamples, type TreeNode } from '@gradhub/core';

export interface WorkerSpeed {
  readonly id: number;
  /** Measured samples per second (EWMA), or null when never measured. */
  readonly speed: number | null;
  /** Most samples per node this worker accepts; 0 or absent: no limit. */
  readonly maxSamples?: number;
}

export interface Assignment {
  readonly workerId: number;
  /** The chunk range [lo, hi) this worker covers. */
  readonly lo: number;
  readonly hi: number;
  /** Canonical tree nodes covering [lo, hi), left to right. */
  readonly nodes: readonly TreeNode[];
}

/** Batch geometry. */
export interface BatchShape {
  /** Samples in the batch. */
  readonly batch: number;
  /** Samples per chunk. */
  readonly chunk: number;
}

/** Speeds with the unknown ones filled in (mean of the known ones, or 1). */
function effectiveSpeeds(workers: readonly WorkerSpeed[]): Map<number, number> {
  const known = workers.filter((w) => w.speed !== null && Number.isFinite(w.speed) && w.speed > 0);
  const mean = known.length ? known.reduce((s, w) => s + (w.speed as number), 0) / known.length : 1;
  const out = new Map<number, number>();
  for (const w of workers) out.set(w.id, w.speed !== null && Number.isFinite(w.speed) && w.speed > 0 ? w.speed : mean);
  return out;
}

/**
 * Chunk counts proportional to `weights`, each >= 1, summing to `total` (weights.length <= total).
 * Each gets floor(quota) (at least 1); the chunks left go to the largest remainders (ties to the
 * earlier entry); chunks given beyond the total by the at-least-one rule come back from the most
 * over-served entries that have more than one.
 */
export function proportionalCounts(weights: readonly number[], total: number): number[] {
  const n = weights.length;
  if (n === 0) return [];
  if (n > total) throw new RangeError(`proportionalCounts: ${n} shares of ${total}`);
  const sum = weights.reduce((s, w) => s + w, 0);
  const quotas = weights.map((w) => (sum > 0 ? (w / sum) * total : total / n));
  const counts = quotas.map((q) => Math.max(1, Math.floor(q)));
  let given = counts.reduce((s, c) => s + c, 0);
  while (given < total) {
    let best = 0;
    for (let i = 1; i < n; i++) if (quotas[i] - counts[i] > quotas[best] - counts[best]) best = i;
    counts[best]++;
    given++;
  }
  while (given > total) {
    let best = -1;
    for (let i = 0; i < n; i++) if (counts[i] > 1 && (best < 0 || quotas[i] - counts[i] <= quotas[best] - counts[best])) best = i;
    counts[best]--;
    given--;
  }
  return counts;
}

/** Split `node` into children until each piece holds at most `maxSamples` samples (or is one chunk). */
export function fitNode(node: TreeNode, shape: BatchShape, maxSamples: number, out: TreeNode[] = []): TreeNode[] {
  const { start, end } = nodeSamples(node, shape.batch, shape.chunk);
  const kids = children(node);
  if (maxSamples <= 0 || end - start <= maxSamples || kids === null) {
    out.push(node);
    return out;
  }
  fitNode(kids[0], shape, maxSamples, out);
  fitNode(kids[1], shape, maxSamples, out);
  return out;
}

/** Assign the chunks of one batch to workers (see the module comment). */
export function assignChunks(nChunks: number, workers: readonly WorkerSpeed[], shape: BatchShape): Assignment[] {
  if (!Number.isInteger(nChunks) || nChunks < 1) throw new RangeError(`assignChunks: nChunks must be a positive integer, got ${nChunks}`);
  if (workers.length === 0) return [];
  const speeds = effectiveSpeeds(workers);
  let chosen = [...workers];
  if (chosen.length > nChunks) {
    chosen.sort((a, b) => speeds.get(b.id)! - speeds.get(a.id)! || a.id - b.id);
    chosen = chosen.slice(0, nChunks);
  }
  chosen.sort((a, b) => a.id - b.id);
  const counts = proportionalCounts(chosen.map((w) => speeds.get(w.id)!), nChunks);
  const out: Assignment[] = [];
  let lo = 0;
  chosen.forEach((w, i) => {
    const hi = lo + counts[i];
    const nodes: TreeNode[] = [];
    for (const n of coverRange(lo, hi, nChunks)) fitNode(n, shape, w.maxSamples ?? 0, nodes);
    out.push({ workerId: w.id, lo, hi, nodes });
    lo = hi;
  });
  return out;
}

export interface Candidate extends WorkerSpeed {
  /** Samples already queued on this worker in the current request. */
  readonly queuedSamples: number;
}

/**
 * The candidate that would finish `samples` more samples first: min (queued + samples) / speed,
 * ties to the lower id. Candidates in `exclude` are skipped unless no other exists and
 * `allowExcludedIfAlone` is set. Null when there is no candidate.
 */
export function pickWorker(samples: number, candidates: readonly Candidate[], exclude: ReadonlySet<number> = new Set(), allowExcludedIfAlone = false): number | null {
  const speeds = effectiveSpeeds(candidates);
  let pool = candidates.filter((c) => !exclude.has(c.id));
  if (pool.length === 0 && allowExcludedIfAlone) pool = [...candidates];
  let best: number | null = null;
  let bestTime = Infinity;
  for (const c of [...pool].sort((a, b) => a.id - b.id)) {
    const t = (c.queuedSamples + samples) / speeds.get(c.id)!;
    if (t < bestTime) {
      bestTime = t;
      best = c.id;
    }
  }
  return best;
}

/** One EWMA step: the first sample is taken as it is. */
export function ewma(prev: number | null, sample: number, alpha: number): number {
  return prev === null ? sample : alpha * sample + (1 - alpha) * prev;
}

/** Measured speeds of workers (samples/s), smoothed by an EWMA. */
export class SpeedTable {
  private readonly speeds = new Map<number, number>();

  /** alpha: weight of the newest measurement, in (0, 1]. Default 0.5. */
  constructor(private readonly alpha = 0.5) {
    if (!(alpha > 0 && alpha <= 1)) throw new RangeError(`SpeedTable: alpha must be in (0, 1], got ${alpha}`);
  }

  /** Record that `samples` samples took `ms` milliseconds (ignored when either is not positive). */
  observe(id: number, samples: number, ms: number): void {
    if (!(samples > 0) || !(ms > 0)) return;
    this.speeds.set(id, ewma(this.speeds.get(id) ?? null, (samples * 1000) / ms, this.alpha));
  }

  get(id: number): number | null {
    return this.speeds.get(id) ?? null;
  }

  forget(id: number): void {
    this.speeds.delete(id);
  }
}
