/**
 * Who computes which tree nodes: pure functions and speed tables, no I/O, no clocks.
 *
 * Contract:
 * - `assignChunks` splits the batch's chunks [0, nChunks) into one contiguous range per worker,
 *   in worker id order, each worker getting at least one chunk. At most nChunks workers take part
 *   (the fastest; ties to the lower id). Each range is decomposed with `coverRange` into
 *   canonical tree nodes (docs/design.md "Invariant 3: canonical reduction tree"), and a node with more samples than the worker
 *   accepts (`maxSamples`, 0 = no limit) is split into its children until it fits (a single
 *   chunk always fits: membership rejects workers that cannot take one).
 * - Where the cuts go is a cost model (`TransferCost`): a worker's estimated finish time is
 *     (params bytes if it lacks the version + its samples x sample bytes + its node count x
 *     result bytes) / its bandwidth  +  its samples / its compute speed,
 *   because each node it holds is one result on the wire (a worker holding one node moves the
 *   model's bytes twice per step: parameters down, gradient up; one holding three non-sibling
 *   nodes uploads three gradients), and a worker sends a node's result before starting the next.
 *   The cuts minimise the estimated makespan (the latest finish); among cuts within 1e-9 of it,
 *   the fewest nodes in all (the fewest bytes), then the cuts nearest the speed-proportional
 *   ones. So with a large gradient, cuts snap to tree boundaries (equal speeds on 16 chunks and
 *   2 workers: [0,8) + [8,16), one node each), and with a small one or very unequal speeds,
 *   balance wins. Without a cost (or with zero bytes), the split is speed-proportional.
 *   For small problems every cut is considered (exact); past ~10^4 evaluations, the candidates
 *   per cut are the proportional cut, its neighbours, and the nearest multiples of each power of
 *   two (tree-aligned) on either side.
 * - Speeds are compute speeds (samples/s) and bandwidths bytes/s, EWMAs of what the coordinator
 *   measured itself (worker-estimates.ts; never what a worker reports, so a worker cannot talk
 *   itself into a bigger share). A worker never measured gets a conservative share: its speed
 *   counts as half the slowest measured one (1 when none is: equal shares), its bandwidth as the
 *   mean of the measured ones (`defaultBandwidth` when none is); its first answer measures it.
 * - `pickWorker` chooses who takes over one node (a lost worker's, or a non-finite one to be
 *   recomputed): the candidate that would finish it first given its queued samples and speed.
 * - The scheduler only decides *who*; the tree fixes *what* is summed and in which order, so any
 *   decision here gives the same bits.
 */
import { children, coverRange, leafSamples, treeMid, type LeafShape, type TreeNode, internalError } from '@gradhub/core';
import type { Assignments } from './assignments.js';

export interface WorkerSpeed {
  readonly id: number;
  /** Measured compute speed, samples per second (EWMA), or null when never measured. */
  readonly speed: number | null;
  /** Most samples per node this worker accepts; 0 or absent: no limit. */
  readonly maxSamples?: number;
  /** Measured transfer bandwidth between this worker and the coordinator, bytes/s (EWMA); null or absent: never measured. */
  readonly bandwidth?: number | null;
  /** True when this worker lacks the request's parameter version (it is sent them first). */
  readonly needsParams?: boolean;
}

/** What moving a request's bytes costs (see the module comment). All sizes in bytes. */
export interface TransferCost {
  /** Bytes of one node's result on the wire (4 x paramCount in TRAIN, a few in EVAL). */
  readonly resultBytes: number;
  /** Bytes of the parameters, sent to each worker that lacks the version. */
  readonly paramsBytes: number;
  /** Bytes of work per sample (pixels and label). */
  readonly sampleBytes: number;
  /** Bandwidth of workers never measured when none is, bytes/s. Default 100e6. */
  readonly defaultBandwidth?: number;
}

export interface Assignment {
  readonly workerId: number;
  /** The chunk range [lo, hi) this worker covers. */
  readonly lo: number;
  readonly hi: number;
  /** Canonical tree nodes covering [lo, hi), left to right. */
  readonly nodes: readonly TreeNode[];
  /** The cost model's estimate of this worker's finish time, seconds. */
  readonly estimateS: number;
}

/** Batch geometry: samples in the batch, per chunk, or per leaf (a round's replicas: core LeafShape). */
export type BatchShape = LeafShape;

const positive = (x: number | null | undefined): x is number => x !== null && x !== undefined && Number.isFinite(x) && x > 0;

/** Values with the unknown ones filled in (mean of the known ones, or `fallback`). */
function filled<T extends { readonly id: number }>(items: readonly T[], get: (t: T) => number | null | undefined, fallback: number): Map<number, number> {
  const known = items.map(get).filter(positive);
  const mean = known.length ? known.reduce((s, v) => s + v, 0) / known.length : fallback;
  const out = new Map<number, number>();
  for (const t of items) {
    const v = get(t);
    out.set(t.id, positive(v) ? v : mean);
  }
  return out;
}

/** Speeds with the unknown ones filled in: half the slowest known one (conservative), or 1 when none is known. */
function effectiveSpeeds(workers: readonly WorkerSpeed[]): Map<number, number> {
  const known = workers.map((w) => w.speed).filter(positive);
  const unknown = known.length ? Math.min(...known) / 2 : 1;
  return new Map(workers.map((w) => [w.id, positive(w.speed) ? w.speed : unknown]));
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
  if (n > total) throw internalError(`proportionalCounts: ${n} shares of ${total}`);
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

/** Samples of the leaves [a, b) of `shape`. */
function samplesIn(a: number, b: number, shape: BatchShape): number {
  const { start, end } = leafSamples({ lo: a, hi: b }, shape);
  return end - start;
}

/** Split `node` into children until each piece holds at most `maxSamples` samples (or is one chunk). */
export function fitNode(node: TreeNode, shape: BatchShape, maxSamples: number, out: TreeNode[] = []): TreeNode[] {
  const { start, end } = leafSamples(node, shape);
  const kids = children(node);
  if (maxSamples <= 0 || end - start <= maxSamples || kids === null) {
    out.push(node);
    return out;
  }
  fitNode(kids[0], shape, maxSamples, out);
  fitNode(kids[1], shape, maxSamples, out);
  return out;
}

/** How many pieces `fitNode` makes of [lo, hi) (no allocation). */
function fitCount(lo: number, hi: number, shape: BatchShape, maxSamples: number): number {
  if (maxSamples <= 0 || hi - lo < 2 || samplesIn(lo, hi, shape) <= maxSamples) return 1;
  const mid = treeMid(lo, hi);
  return fitCount(lo, mid, shape, maxSamples) + fitCount(mid, hi, shape, maxSamples);
}

/** How many nodes `assignChunks` gives a worker holding chunks [a, b): coverRange, then fitNode (no allocation). */
export function nodeCount(a: number, b: number, nChunks: number, shape: BatchShape, maxSamples = 0): number {
  const visit = (lo: number, hi: number): number => {
    if (hi <= a || lo >= b) return 0;
    if (a <= lo && hi <= b) return fitCount(lo, hi, shape, maxSamples);
    const mid = treeMid(lo, hi);
    return visit(lo, mid) + visit(mid, hi);
  };
  return a < b ? visit(0, nChunks) : 0;
}

/** Evaluations of the cost model past which the cut candidates are narrowed (module comment). */
const EXACT_LIMIT = 1 << 13;

/** Assign the chunks of one batch to workers (see the module comment). */
export function assignChunks(nChunks: number, workers: readonly WorkerSpeed[], shape: BatchShape, cost?: TransferCost): Assignment[] {
  if (!Number.isInteger(nChunks) || nChunks < 1) throw internalError(`assignChunks: nChunks must be a positive integer, got ${nChunks}`);
  if (workers.length === 0) return [];
  const speeds = effectiveSpeeds(workers);
  let chosen = [...workers];
  if (chosen.length > nChunks) {
    chosen.sort((a, b) => speeds.get(b.id)! - speeds.get(a.id)! || a.id - b.id);
    chosen = chosen.slice(0, nChunks);
  }
  chosen.sort((a, b) => a.id - b.id);
  const k = chosen.length;
  const bws = filled(chosen, (w) => w.bandwidth, cost?.defaultBandwidth ?? 100e6);
  const resultBytes = cost?.resultBytes ?? 0;
  const paramsBytes = cost?.paramsBytes ?? 0;
  const sampleBytes = cost?.sampleBytes ?? 0;
  for (const [name, v] of [['resultBytes', resultBytes], ['paramsBytes', paramsBytes], ['sampleBytes', sampleBytes]] as const) {
    if (!(v >= 0 && Number.isFinite(v))) throw internalError(`assignChunks: ${name} must be a finite number >= 0, got ${v}`);
  }
  // Per worker: fixed seconds, seconds per sample, seconds per node.
  const fixed = chosen.map((w) => (w.needsParams ? paramsBytes / bws.get(w.id)! : 0));
  const perSample = chosen.map((w) => 1 / speeds.get(w.id)! + sampleBytes / bws.get(w.id)!);
  const perNode = chosen.map((w) => resultBytes / bws.get(w.id)!);
  const nodesOf = (i: number, a: number, b: number): number => nodeCount(a, b, nChunks, shape, chosen[i].maxSamples ?? 0);
  const memo = new Map<number, number>();
  const costOf = (i: number, a: number, b: number): number => {
    const key = (i * (nChunks + 1) + a) * (nChunks + 1) + b;
    let c = memo.get(key);
    if (c === undefined) {
      c = fixed[i] + samplesIn(a, b, shape) * perSample[i] + (perNode[i] > 0 ? nodesOf(i, a, b) * perNode[i] : 0);
      memo.set(key, c);
    }
    return c;
  };

  // The speed-proportional cuts (the tie-breaker, and always a candidate).
  const counts = proportionalCounts(chosen.map((w) => speeds.get(w.id)!), nChunks);
  const prop = [0];
  for (const c of counts) prop.push(prop[prop.length - 1] + c);

  // Candidate positions of each cut i (1..k-1), within [i, nChunks - (k - i)].
  const cand: number[][] = [[0]];
  const exact = (k - 1) * nChunks * nChunks <= EXACT_LIMIT;
  for (let i = 1; i < k; i++) {
    const lo = i;
    const hi = nChunks - (k - i);
    const set = new Set<number>();
    if (exact) {
      for (let c = lo; c <= hi; c++) set.add(c);
    } else {
      const p = prop[i];
      for (const c of [p - 1, p, p + 1]) set.add(c);
      for (let step = 2; step < nChunks; step *= 2) {
        set.add(Math.floor(p / step) * step);
        set.add(Math.ceil(p / step) * step);
      }
    }
    cand.push([...set].filter((c) => c >= lo && c <= hi).sort((x, y) => x - y));
  }
  cand.push([nChunks]);

  // Pass 1: the least makespan over the candidates (min over paths of the max worker cost).
  let prev = new Map<number, number>([[0, 0]]);
  for (let i = 1; i <= k; i++) {
    const next = new Map<number, number>();
    for (const c of cand[i]) {
      let best = Infinity;
      for (const [pc, m] of prev) if (pc < c) best = Math.min(best, Math.max(m, costOf(i - 1, pc, c)));
      if (best < Infinity) next.set(c, best);
    }
    prev = next;
  }
  const makespan = prev.get(nChunks)!;
  const limit = makespan * (1 + 1e-9) + 1e-12;

  // Pass 2: among cuts within the makespan, the fewest nodes, then the nearest to proportional.
  type Best = { nodes: number; dist: number; from: number };
  const table: Map<number, Best>[] = [new Map([[0, { nodes: 0, dist: 0, from: -1 }]])];
  for (let i = 1; i <= k; i++) {
    const next = new Map<number, Best>();
    for (const c of cand[i]) {
      let best: Best | null = null;
      for (const [pc, b] of table[i - 1]) {
        if (pc >= c || costOf(i - 1, pc, c) > limit) continue;
        const nodes = b.nodes + nodesOf(i - 1, pc, c);
        const dist = b.dist + Math.abs(c - prop[i]);
        if (best === null || nodes < best.nodes || (nodes === best.nodes && dist < best.dist)) best = { nodes, dist, from: pc };
      }
      if (best) next.set(c, best);
    }
    table.push(next);
  }
  const cuts = [nChunks];
  for (let i = k; i > 0; i--) cuts.unshift(table[i].get(cuts[0])!.from);

  return chosen.map((w, i) => {
    const lo = cuts[i];
    const hi = cuts[i + 1];
    const nodes: TreeNode[] = [];
    for (const n of coverRange(lo, hi, nChunks)) fitNode(n, shape, w.maxSamples ?? 0, nodes);
    return { workerId: w.id, lo, hi, nodes, estimateS: fixed[i] + samplesIn(lo, hi, shape) * perSample[i] + nodes.length * perNode[i] };
  });
}

/** Bytes one request moves as assigned (see `assignedBytes`). */
export interface AssignedBytes {
  /** Parameters sent to workers that lack the version. */
  readonly paramsBytes: number;
  /** Work (pixels and labels) sent. */
  readonly workBytes: number;
  /** Results (one per node) coming back. */
  readonly resultBytes: number;
  /** Coordinator to workers: params + work. */
  readonly downBytes: number;
  /** Workers to coordinator: results. */
  readonly upBytes: number;
  /** Nodes (results) in all. */
  readonly nodes: number;
}

/** The bytes a plan moves per step under `cost` (needsParams as given to assignChunks). */
export function assignedBytes(plan: readonly Assignment[], workers: readonly WorkerSpeed[], shape: BatchShape, cost: TransferCost): AssignedBytes {
  const needs = new Map(workers.map((w) => [w.id, w.needsParams === true]));
  let paramsBytes = 0;
  let workBytes = 0;
  let resultBytes = 0;
  let nodes = 0;
  for (const a of plan) {
    if (needs.get(a.workerId)) paramsBytes += cost.paramsBytes;
    workBytes += samplesIn(a.lo, a.hi, shape) * cost.sampleBytes;
    resultBytes += a.nodes.length * cost.resultBytes;
    nodes += a.nodes.length;
  }
  return { paramsBytes, workBytes, resultBytes, downBytes: paramsBytes + workBytes, upBytes: resultBytes, nodes };
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

/**
 * Who takes the record's orphans (incomplete nodes nobody holds), left to right: each goes to the
 * worker of `workers` (ids and speeds) that would finish it first given what it already has queued
 * in the record and what this placement gave it (`pickWorker`, `exclude` only when no other is
 * left). Nodes per worker id, in placement order; the caller gives and sends them.
 */
export function placeOrphans(record: Assignments, workers: readonly WorkerSpeed[], exclude: ReadonlySet<number> = new Set()): Map<number, TreeNode[]> {
  const out = new Map<number, TreeNode[]>();
  const queued = new Map(workers.map((w) => [w.id, record.queued(w.id)]));
  for (const n of record.orphans()) {
    const samples = record.samplesOf(n);
    const cands: Candidate[] = workers.map((w) => ({ id: w.id, speed: w.speed, queuedSamples: queued.get(w.id)! }));
    const id = pickWorker(samples, cands, exclude, true)!;
    queued.set(id, queued.get(id)! + samples);
    const list = out.get(id) ?? [];
    list.push(n);
    out.set(id, list);
  }
  return out;
}

/** One EWMA step: the first sample is taken as it is. */
export function ewma(prev: number | null, sample: number, alpha: number): number {
  return prev === null ? sample : alpha * sample + (1 - alpha) * prev;
}

/** Measured rates of workers (units per second: samples for compute speed, bytes for bandwidth), smoothed by an EWMA. */
export class SpeedTable {
  private readonly speeds = new Map<number, number>();

  /** alpha: weight of the newest measurement, in (0, 1]. Default 0.5. */
  constructor(private readonly alpha = 0.5) {
    if (!(alpha > 0 && alpha <= 1)) throw internalError(`SpeedTable: alpha must be in (0, 1], got ${alpha}`);
  }

  /** Record that `units` units (samples, bytes) took `ms` milliseconds (ignored when either is not positive). */
  observe(id: number, units: number, ms: number): void {
    if (!(units > 0) || !(ms > 0)) return;
    this.speeds.set(id, ewma(this.speeds.get(id) ?? null, (units * 1000) / ms, this.alpha));
  }

  get(id: number): number | null {
    return this.speeds.get(id) ?? null;
  }

  forget(id: number): void {
    this.speeds.delete(id);
  }
}

/**
 * How many workers a training step uses, chosen by measuring rather than modelling: every worker
 * that takes part moves the whole model twice through the coordinator, so on a shared link (one
 * machine, or the coordinator's NIC) a small batch can train faster on fewer workers, and the
 * per-worker figures above, measured while the workers share the link and the cores, cannot show
 * it. The candidates are the `available` count and its halvings down to 1. The first `warmUp`
 * steps use every worker (cold figures, and every worker measured once); then each candidate not
 * yet measured is tried for two steps (the caller reports a step as not `clean` when a worker had
 * to catch up on parameters first, e.g. on joining the crew; only clean steps are measured);
 * then the one with the least step time (a smaller count only when
 * faster by `margin`, 10% by default: step times are noisy), and
 * every `exploreEvery`-th step the candidate measured longest ago, so that a change (a worker's
 * speed, the network) is seen. A change in `available` starts the measurements over. Pure: the
 * caller feeds it step times (`observe`); any choice gives the same bits.
 */
export class CrewChooser {
  private readonly warmUp: number;
  private readonly exploreEvery: number;
  private readonly alpha: number;
  private readonly margin: number;
  private available = -1;
  private steps = 0;
  /** A count being tried, and for how many more steps (a try lasts two: the first may catch up). */
  private probe: { k: number; left: number } | null = null;
  /** Per candidate count: smoothed step ms, and the step it was last measured at. */
  private readonly measured = new Map<number, { ms: number; at: number }>();

  constructor(opts: { warmUp?: number; exploreEvery?: number; alpha?: number; margin?: number } = {}) {
    this.warmUp = opts.warmUp ?? 3;
    this.exploreEvery = opts.exploreEvery ?? 16;
    this.alpha = opts.alpha ?? 0.5;
    this.margin = opts.margin ?? 0.1;
    if (!(Number.isInteger(this.warmUp) && this.warmUp >= 0 && Number.isInteger(this.exploreEvery) && this.exploreEvery >= 2 && this.alpha > 0 && this.alpha <= 1 && this.margin >= 0 && this.margin < 1)) {
      throw internalError('CrewChooser: warmUp >= 0, exploreEvery >= 2 (integers), alpha in (0, 1], margin in [0, 1)');
    }
  }

  /** The last training step `choose` planned (for its timing). */
  private lastStep: { startedAt: number; batch: number; k: number; clean: boolean } | null = null;

  /**
   * The fastest of `workers` that the training step starting at `now` uses, after telling the
   * chooser how long the previous step took (from its start to this one's, same batch size only).
   * A worker new to the crew first gets the whole model (`needsParams`): that step is not clean.
   */
  choose<T extends { readonly id: number; readonly speed: number | null; readonly needsParams?: boolean }>(workers: T[], nChunks: number, batch: number, now: number): T[] {
    const last = this.lastStep;
    if (last && last.batch === batch) this.observe(last.k, now - last.startedAt, last.clean);
    const k = this.next(Math.min(workers.length, nChunks));
    const chosen = k >= workers.length ? workers : [...workers].sort((x, y) => (y.speed ?? 0) - (x.speed ?? 0) || x.id - y.id).slice(0, k);
    this.lastStep = { startedAt: now, batch, k, clean: chosen.every((w) => !w.needsParams) };
    return chosen;
  }

  /** The candidate counts for `available` workers: it and its halvings, largest first. */
  static candidates(available: number): number[] {
    const out: number[] = [];
    for (let k = available; k >= 1; k = Math.floor(k / 2)) if (!out.includes(k)) out.push(k);
    return out;
  }

  /** How many of `available` workers (the fastest) the next training step uses. */
  next(available: number): number {
    if (available < 1) return available;
    if (available !== this.available) {
      this.available = available;
      this.measured.clear();
      this.steps = 0;
      this.probe = null;
    }
    this.steps++;
    const cands = CrewChooser.candidates(available);
    if (this.steps <= this.warmUp || cands.length === 1) return available;
    if (this.probe && this.probe.left > 0) {
      this.probe.left--;
      return this.probe.k;
    }
    const untried = cands.find((k) => !this.measured.has(k));
    const explore = untried ?? (this.steps % this.exploreEvery === 0
      ? cands.reduce((a, b) => (this.measured.get(b)!.at < this.measured.get(a)!.at ? b : a))
      : undefined);
    if (explore !== undefined) {
      this.probe = { k: explore, left: 1 };
      return explore;
    }
    // Fewer workers only when clearly faster (step times are noisy; more workers share the work).
    let best = cands[0];
    for (const k of cands.slice(1)) if (this.measured.get(k)!.ms < this.measured.get(best)!.ms * (1 - this.margin)) best = k;
    return best;
  }

  /**
   * The step that used `k` workers (of the current `available`) took `ms`; `clean` false when a
   * worker first had to catch up on parameters (not measured). Call before the next `next`.
   */
  observe(k: number, ms: number, clean = true): void {
    if (!clean || !(ms > 0) || this.steps <= this.warmUp || !CrewChooser.candidates(this.available).includes(k)) return;
    const m = this.measured.get(k);
    this.measured.set(k, { ms: m ? ewma(m.ms, ms, this.alpha) : ms, at: this.steps });
  }
}
