/**
 * Audits by recomputation (docs/design.md "Audits and exact rollback"). Every result is a pure
 * function of (parameters, node, samples), so it can be checked exactly: the auditor recomputes a
 * node on trusted compute (a trusted worker that kept the version, through `remote`, when one
 * can; else its own engine in this process, on a backend of its own) and compares
 * what the worker sent, by digest: xxh64 of each gradient part's bytes as it arrived, and the
 * node's loss, denominator and correct sums (Object.is). A mismatch is proof that the worker lied.
 *
 * Contract:
 * - `submit(job)`: a completed request's untrusted contributions (`NodeDigest`s, per worker and
 *   node) with the inputs they were computed on (`params`, which must stay unchanged until the
 *   job is settled: the trainer's snapshot; the batch, copied by the caller). Which ones are
 *   audited is decided here, now, after the results arrived (audit-policy.ts); the others are
 *   recorded as unaudited. Jobs run one node at a time in submission order.
 * - `settledThrough(step)` resolves once no audit of a step <= `step` is queued or running;
 *   `settled()` once none is.
 * - `takeProven()`: the workers proven to cheat since the last call, each with the steps whose
 *   contributions of it are distrusted (not audited and passed: unaudited, pending, or failed).
 *   The caller bans them (`onCheater` is called at once, for that) and rolls back.
 * - `rolledBack(step)`: the trainer went back to the state after `step` updates: jobs and records
 *   of later steps are void (their results are recomputed by the replay and submitted again).
 * Counters go to `count(name)`: audits.passed, audits.failed, audits.skipped.
 */
import {
  CIFAR_PIXELS, createEngine, createReplicaRunner, xxh64Hex,
  type Backend, type Engine, type ModelSpec, type NodeSums, type ReplicaRunner, type TreeNode,
} from '@gradhub/core';
import type { Logger } from 'pino';
import { shouldAudit, type AuditHistory } from './audit-policy.js';
import type { RoundInput } from './executor.js';
import type { RemoteAuditor } from './remote-audit.js';

/** What one worker sent for one node: its gradient parts' digests and the node's sums. */
export interface NodeDigest {
  readonly workerId: number;
  readonly trusted: boolean;
  readonly node: TreeNode;
  /** Each gradient message's part and the xxh64 (hex) of its bytes. */
  readonly parts: readonly { readonly offset: number; readonly length: number; readonly hash: string }[];
  readonly lossSum: number;
  readonly denomSum: number;
  readonly correct: number;
}

/** xxh64 (hex) of a part's bytes, given in pieces as they arrived. */
export function digestPieces(pieces: readonly Uint8Array[]): string {
  if (pieces.length === 1) return xxh64Hex(pieces[0]);
  let n = 0;
  for (const p of pieces) n += p.byteLength;
  const all = new Uint8Array(n);
  let at = 0;
  for (const p of pieces) {
    all.set(p, at);
    at += p.byteLength;
  }
  return xxh64Hex(all);
}

/** One worker's word on a node's sums, in a dispute (reducer.ts 'disputed'). */
export interface DisputeClaim extends NodeSums {
  readonly workerId: number;
  readonly trusted: boolean;
}

export interface AuditJob {
  /** The update the results were for (1-based). */
  readonly step: number;
  /** 'eval': the node's sums on test samples, no gradient (the evaluation after `step` updates). */
  readonly mode: 'train' | 'round' | 'eval';
  /** The parameters the results were computed on; unchanged until the job is settled. */
  readonly params: Float32Array;
  /** Their version (what the Work named): a trusted worker that kept it can recompute (`remote`). */
  readonly version?: number;
  /** The request's samples ((batch, 3072) pixels and (batch) labels; a round: all its inner batches). */
  readonly pixels: Uint8Array;
  readonly labels: Uint8Array;
  readonly batch: number;
  readonly round?: RoundInput;
  readonly nodes: readonly NodeDigest[];
}

export interface AuditorOptions {
  readonly spec: ModelSpec;
  /** The auditor's own backend (not shared with another engine). */
  readonly backend: Backend;
  readonly chunk: number;
  readonly normalize: boolean;
  readonly maxBatch: number;
  /** Base audit rate (audit-policy.ts). */
  readonly rate: number;
  readonly logger: Logger;
  /** Uniform in [0, 1). Default: crypto-grade randomness (a worker cannot predict it). */
  readonly random?: () => number;
  readonly status?: { count(name: string, by?: number): void };
  /** Called once per proven cheater, at once (ban it). */
  readonly onCheater?: (workerId: number, reason: string) => void;
  /** Trusted workers that recompute sampled audits (remote-audit.ts); the engine here when they cannot. */
  readonly remote?: RemoteAuditor;
}

export interface Proven {
  readonly workerId: number;
  /** Steps with contributions of this worker that are distrusted, ascending. */
  readonly steps: readonly number[];
  /** Its distrusted steps already made final (finalThrough): they stay in the model. */
  readonly final?: number;
}

type StepVerdict = 'unaudited' | 'pending' | 'passed' | 'failed';

interface WorkerRecord {
  history: { results: number; audited: number };
  /** Per step: the worst verdict of its contributions there (steps made final are forgotten: finalThrough). */
  readonly steps: Map<number, StepVerdict>;
  proven: boolean;
  /** Its session is still connected (sessionEnded). */
  live: boolean;
  /** Distrusted steps forgotten by finalThrough (older than any rollback can reach). */
  finalDistrusted: number;
}

const worse = (a: StepVerdict | undefined, b: StepVerdict): StepVerdict => {
  const rank = { passed: 0, pending: 1, unaudited: 2, failed: 3 } as const;
  return a === undefined || rank[b] > rank[a] ? b : a;
};

function cryptoRandom(): number {
  const u = new Uint32Array(1);
  globalThis.crypto.getRandomValues(u);
  return u[0] / 4294967296;
}

interface Task {
  readonly job: AuditJob;
  readonly digest: NodeDigest;
  /** A non-finite answer to decide (judgeNonFinite): the workers that gave it, and the verdict's receiver. */
  readonly nonFinite?: { readonly workers: readonly number[]; readonly resolve: (lied: boolean) => void };
  /** Sums in dispute (judgeDispute): the claims, and the receiver of the liars found. */
  readonly dispute?: { readonly claims: readonly DisputeClaim[]; readonly resolve: (liars: DisputeClaim[]) => void; readonly differ: DisputeClaim[] };
}

export class Auditor {
  private readonly engine: Engine;
  private runner: Promise<ReplicaRunner> | null = null;
  private readonly o: AuditorOptions;
  private readonly log: Logger;
  private readonly random: () => number;
  private readonly workers = new Map<number, WorkerRecord>();
  private readonly queue: Task[] = [];
  private running: Task | null = null;
  private engineJob: AuditJob | null = null;
  /** The running audit's step was undone by a rollback: its outcome is ignored (its parameters may be reused meanwhile). */
  private runningVoid = false;
  private proven: number[] = [];
  private waiters: { step: number; resolve: () => void }[] = [];
  readonly stats = { passed: 0, failed: 0, skipped: 0 };

  constructor(o: AuditorOptions) {
    this.o = o;
    this.log = o.logger.child({ module: 'audit' });
    this.random = o.random ?? cryptoRandom;
    this.engine = createEngine({ spec: o.spec, backend: o.backend, maxBatch: o.maxBatch, chunk: o.chunk, normalize: o.normalize });
  }

  submit(job: AuditJob): void {
    for (const d of job.nodes) {
      if (d.trusted) continue;
      const rec = this.recordOf(d.workerId);
      const audit = rec.proven || shouldAudit(rec.history as AuditHistory, false, this.o.rate, this.random());
      rec.history.results++;
      if (rec.proven) {
        // Results of a proven cheater that arrived after the proof: distrusted as they are.
        rec.steps.set(job.step, 'failed');
        if (!this.proven.includes(d.workerId)) this.proven.push(d.workerId);
        continue;
      }
      if (!audit) {
        rec.steps.set(job.step, worse(rec.steps.get(job.step), 'unaudited'));
        this.stats.skipped++;
        this.o.status?.count('audits.skipped');
        continue;
      }
      rec.history.audited++;
      rec.steps.set(job.step, worse(rec.steps.get(job.step), 'pending'));
      this.queue.push({ job, digest: d });
    }
    this.pump();
  }

  /**
   * Only trusted compute declares divergence: `workers` (untrusted among them) answered `node` of
   * `job` non-finite. Recompute it here, first in line: finite means they lied (proven, as a
   * mismatch: the step is distrusted, so the trainer rolls it back); resolves whether they did.
   */
  judgeNonFinite(job: Omit<AuditJob, 'nodes'>, node: TreeNode, workers: readonly number[]): Promise<boolean> {
    return new Promise<boolean>((resolve) => this.urgent(job, node, { nonFinite: { workers, resolve } }));
  }

  /**
   * Two workers gave `node` of `job` different sums (`claims`). Recompute it here, first in line:
   * each untrusted claim that differs from the recompute is a proven lie (the step is distrusted,
   * so the trainer rolls it back). Resolves with the claims that differ, trusted ones included (a
   * trusted worker that differs is not banned: that is a bug, and the caller says so).
   */
  judgeDispute(job: Omit<AuditJob, 'nodes'>, node: TreeNode, claims: readonly DisputeClaim[]): Promise<DisputeClaim[]> {
    return new Promise<DisputeClaim[]>((resolve) => this.urgent(job, node, { dispute: { claims, resolve, differ: [] } }));
  }

  /** A recompute of `node` that decides something now (`what`): first in line. */
  private urgent(job: Omit<AuditJob, 'nodes'>, node: TreeNode, what: Pick<Task, 'nonFinite' | 'dispute'>): void {
    const digest: NodeDigest = { workerId: -1, trusted: true, node, parts: [], lossSum: NaN, denomSum: NaN, correct: 0 };
    this.queue.unshift({ job: { ...job, nodes: [] }, digest, ...what });
    this.pump();
  }

  settled(): Promise<void> {
    return this.settledThrough(Number.MAX_SAFE_INTEGER);
  }

  settledThrough(step: number): Promise<void> {
    if (!this.busyThrough(step)) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push({ step, resolve }));
  }

  takeProven(): Proven[] {
    const out = this.proven.map((workerId) => {
      const rec = this.workers.get(workerId)!;
      const steps = [...rec.steps].filter(([, v]) => v !== 'passed').map(([s]) => s).sort((a, b) => a - b);
      return rec.finalDistrusted > 0 ? { workerId, steps, final: rec.finalDistrusted } : { workerId, steps };
    });
    this.proven = [];
    return out;
  }

  /** The session of `workerId` ended: once its audits are decided it cannot be proven any more (oldestOpenStep). */
  sessionEnded(workerId: number): void {
    const rec = this.workers.get(workerId);
    if (rec) rec.live = false;
  }

  /**
   * The oldest step with a result that may still prove a lie: an unaudited or pending result of an
   * unproven untrusted worker whose session is live or has audits pending; null when none. The
   * rollback anchor (anchor.ts) keeps the state before it.
   */
  oldestOpenStep(): number | null {
    let oldest: number | null = null;
    for (const rec of this.workers.values()) {
      if (rec.proven) continue;
      let pending = false;
      let first = Infinity;
      for (const [step, v] of rec.steps) {
        if (v === 'pending') pending = true;
        if ((v === 'pending' || v === 'unaudited') && step < first) first = step;
      }
      if (!rec.live && !pending) continue;
      if (first !== Infinity && (oldest === null || first < oldest)) oldest = first;
    }
    return oldest;
  }

  /**
   * Steps <= `step` can no longer be rolled back (older than the window and the anchor): their
   * records are forgotten (counted per worker when distrusted), and ended sessions with nothing
   * left are dropped, so the auditor's memory follows the window, not the run's length.
   */
  finalThrough(step: number): void {
    for (const [id, rec] of this.workers) {
      for (const [s, v] of rec.steps) {
        if (s > step) continue;
        if (v !== 'passed') rec.finalDistrusted++;
        rec.steps.delete(s);
      }
      if (!rec.live && !rec.proven && rec.steps.size === 0 && !this.queued(id)) this.workers.delete(id);
    }
  }

  private queued(workerId: number): boolean {
    return this.running?.digest.workerId === workerId || this.queue.some((t) => t.digest.workerId === workerId);
  }

  /** The trainer is back at the state after `step` updates: later jobs and records are void. */
  rolledBack(step: number): void {
    for (let i = this.queue.length - 1; i >= 0; i--) if (this.queue[i].job.step > step) this.queue.splice(i, 1);
    if (this.running && this.running.job.step > step) this.runningVoid = true;
    this.engineJob = null;
    for (const rec of this.workers.values()) for (const s of [...rec.steps.keys()]) if (s > step) rec.steps.delete(s);
    this.wake();
  }

  /**
   * `id` is proven to cheat at `step`: its contribution there is distrusted (unless `mark` is
   * false: a step a rollback voided meanwhile stays void); banned once (onCheater).
   */
  private prove(id: number, step: number, reason: string, mark = true): void {
    const rec = this.recordOf(id);
    if (mark) rec.steps.set(step, 'failed');
    this.stats.failed++;
    this.o.status?.count('audits.failed');
    if (rec.proven) return;
    rec.proven = true;
    this.proven.push(id);
    this.o.onCheater?.(id, reason);
  }

  private recordOf(id: number): WorkerRecord {
    let r = this.workers.get(id);
    if (!r) this.workers.set(id, (r = { history: { results: 0, audited: 0 }, steps: new Map(), proven: false, live: true, finalDistrusted: 0 }));
    return r;
  }

  private busyThrough(step: number): boolean {
    return (this.running !== null && this.running.job.step <= step) || this.queue.some((t) => t.job.step <= step);
  }

  private wake(): void {
    this.waiters = this.waiters.filter((w) => {
      if (this.busyThrough(w.step)) return true;
      w.resolve();
      return false;
    });
  }

  private pump(): void {
    if (this.running || this.queue.length === 0) return;
    const t = (this.running = this.queue.shift()!);
    void this.recompute(t).then(
      (problem) => this.judge(t, problem),
      (err: unknown) => this.judge(t, null, err),
    );
  }

  private judge(t: Task, problem: string | null, err?: unknown): void {
    this.running = null;
    if (t.nonFinite) {
      const lied = err === undefined && problem === null;
      if (err !== undefined) this.log.error({ err, step: t.job.step }, 'the recompute of a non-finite answer failed');
      if (lied) {
        for (const id of t.nonFinite.workers) this.prove(id, t.job.step, `answered non-finite for node [${t.digest.node.lo},${t.digest.node.hi}) of step ${t.job.step}, which is finite`);
      }
      t.nonFinite.resolve(lied);
      this.wake();
      this.pump();
      return;
    }
    if (t.dispute) {
      // The claims that differ from the recompute (recompute below); none when it failed.
      if (err !== undefined) this.log.error({ err, step: t.job.step }, 'the recompute of a disputed node failed');
      const liars = err === undefined ? t.dispute.differ : [];
      for (const c of liars) {
        if (c.trusted) continue;
        this.prove(c.workerId, t.job.step, `sent sums (${c.lossSum}, ${c.denomSum}, ${c.correct}) for node [${t.digest.node.lo},${t.digest.node.hi}) of step ${t.job.step}, which the coordinator recomputed otherwise`);
      }
      t.dispute.resolve(liars);
      this.wake();
      this.pump();
      return;
    }
    if (this.runningVoid) {
      this.runningVoid = false;
      this.wake();
      this.pump();
      return;
    }
    const rec = this.recordOf(t.digest.workerId);
    const step = t.job.step;
    // A step voided by a rollback meanwhile has no record left; a mismatch still proves the lie.
    const pending = rec.steps.get(step) === 'pending';
    if (err !== undefined) {
      // Our own failure proves nothing about the worker: its result stays unaudited.
      this.log.error({ err, step }, 'audit failed to run');
      if (pending) rec.steps.set(step, 'unaudited');
    } else if (problem) {
      this.log.warn({ workerId: t.digest.workerId, step, node: `[${t.digest.node.lo},${t.digest.node.hi})`, problem }, 'audit mismatch: the worker is proven to cheat');
      this.prove(t.digest.workerId, step, problem, rec.steps.has(step));
    } else {
      this.stats.passed++;
      this.o.status?.count('audits.passed');
      // Another contribution of the same step may still be pending: passed only once none is.
      if (pending && !this.queue.some((q) => q.job.step === step && q.digest.workerId === t.digest.workerId)) rec.steps.set(step, 'passed');
    }
    this.wake();
    this.pump();
  }

  /** Recompute the node and compare; returns what differs, or null. */
  private async recompute(t: Task): Promise<string | null> {
    const { job, digest: d } = t;
    // A sampled audit goes to a trusted worker that kept the version, when there is one.
    const far = !t.nonFinite && !t.dispute && this.o.remote ? await this.o.remote.recompute(job, d.node, d.parts) : null;
    if (far) return differs(d, far, far.hashes);
    await new Promise<void>((resolve) => setImmediate(resolve));
    // Per job, not per params array: a snapshot's buffer is reused for a later state.
    if (this.engineJob !== job) {
      this.engine.params.set(job.params);
      this.engineJob = job;
    }
    let sums: NodeSums | null;
    let grad: Float32Array;
    const r = job.round;
    if (job.mode === 'round' && r) {
      const runner = await (this.runner ??= createReplicaRunner(this.engine));
      const a = r.offsets[d.node.lo];
      const b = r.offsets[d.node.hi];
      sums = await runner.run(d.node, {
        localSteps: r.localSteps, sgd: r.sgd,
        pixels: job.pixels.subarray(a * CIFAR_PIXELS, b * CIFAR_PIXELS), labels: job.labels.subarray(a, b),
        innerBatches: r.innerBatches.subarray(d.node.lo * r.localSteps, d.node.hi * r.localSteps),
      }, { between: () => new Promise<void>((resolve) => setImmediate(resolve)) });
      grad = runner.delta;
    } else {
      const a = d.node.lo * this.o.chunk;
      const b = Math.min(d.node.hi * this.o.chunk, job.batch);
      sums = await this.engine.computeSumsAsync(job.pixels.subarray(a * CIFAR_PIXELS, b * CIFAR_PIXELS), job.labels.subarray(a, b), b - a, job.mode !== 'eval');
      grad = this.engine.grads; // unused for 'eval' (no parts to compare)
    }
    if (!sums) throw new Error('the recompute was cancelled');
    if (t.dispute) {
      for (const c of t.dispute.claims) {
        if (!(Object.is(sums.lossSum, c.lossSum) && Object.is(sums.denomSum, c.denomSum) && sums.correct === c.correct)) t.dispute.differ.push(c);
      }
      return null;
    }
    if (t.nonFinite) {
      let finite = Number.isFinite(sums.lossSum) && Number.isFinite(sums.denomSum);
      for (let i = 0; finite && i < grad.length; i++) finite = Number.isFinite(grad[i]);
      return finite ? null : 'non-finite here too';
    }
    return differs(d, sums, d.parts.map((p) => xxh64Hex(grad.subarray(p.offset, p.offset + p.length))));
  }
}

/** What a worker's `d` has that differs from the recompute (its sums, the xxh64 of each of d's parts), or null. */
function differs(d: NodeDigest, sums: NodeSums, hashes: readonly string[]): string | null {
  if (!Object.is(sums.lossSum, d.lossSum) || !Object.is(sums.denomSum, d.denomSum) || sums.correct !== d.correct) {
    return `sums (${d.lossSum}, ${d.denomSum}, ${d.correct}) sent, (${sums.lossSum}, ${sums.denomSum}, ${sums.correct}) recomputed`;
  }
  for (let i = 0; i < d.parts.length; i++) {
    const p = d.parts[i];
    if (hashes[i] !== p.hash) return `gradient part [${p.offset}, +${p.length}) hashes ${p.hash}, recomputed ${hashes[i]}`;
  }
  return null;
}
