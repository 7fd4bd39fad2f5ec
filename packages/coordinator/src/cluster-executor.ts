/**
 * The cluster executor: the `Executor` of `--workers N` and `gradhub coordinator`, over sockets;
 * here, the state machine of one request (its surface: cluster-executor-api.ts; the wiring of
 * server, membership and executor: cluster.ts `startCluster`).
 *
 * Contract (executor.ts): `run(input)` returns the canonical tree sums of the batch, bit for bit
 * what the in-process executor returns. The trainer is authoritative for parameters and steps;
 * this module only moves them to workers and reduces what comes back. One request at a time.
 *
 * A request (one `run`), and its sync points:
 * 1. Parameters (param-distribution.ts): each part goes out as soon as it is final (`publish`,
 *    from the trainer's `onRootPart`) to the workers of the current request; the parts a worker
 *    lacks go to it just before its Work.
 * 2. Assignment: waits for at least one worker, then `assignChunks` (scheduler) gives each ready
 *    worker a contiguous range of chunks, as canonical nodes, cut to minimise the estimated
 *    makespan (measured speeds and bandwidths: worker-estimates.ts; a worker never measured is on
 *    probation: a copy of a node, no share, work-dispatch.ts `plan`); with `adaptiveWorkers`, a
 *    training step uses only the fastest few (`CrewChooser`). Who holds which node is the
 *    request's assignment record (assignments.ts), which the reducer reads too. Each worker gets
 *    one Work frame (work-dispatch.ts). The bytes the plan moves are in `stats.assigned`.
 * 3. Results go through the reducer (validation, tree combination per part); as soon as a part's
 *    root is complete, `hooks.onRootPart` gets it, so the trainer updates that part and publishes
 *    it (1.) while others are in flight. A protocol fault kicks the worker (Error + close); a lost
 *    worker's incomplete nodes go to the worker that would finish them first (or to the next
 *    worker that joins, when none is left); a non-finite node is recomputed on another worker,
 *    and a second non-finite answer for it, from another worker, ends the run with E_DIVERGED; each
 *    non-finite result is counted (`results_non_finite`), and a worker with `strikes` of them
 *    within the stall window is dropped (Error NON_FINITE_GRADIENT). With `speculateAfterMs`, a
 *    node outstanding that long is also given to an idle worker (speculation.ts); the first
 *    result wins. A worker holding work past its hold deadline (stalls.ts: k x its measured
 *    pace) loses it to the others (counted: `stalls`), and one that stalls `strikes` times
 *    within the window is dropped (Error STALLED), whatever its heartbeats.
 * 4. When the root is complete, `run` resolves; the gradient (of the parts not taken through
 *    `onRootPart`; null when all were) is the reducer's, valid until the next `run`.
 *
 * Flow control (flow-control.ts): of the workers that owe results, only as many are read as the
 * reducer has room for, in tree order, so memory stays bounded whatever the number of workers.
 * Failure: `close()` (or a run error) fails the pending run once, with a GradhubError.
 */
import type { Logger } from 'pino';
import { gradhub } from '@gradhub/proto';
import { ErrorCode, GradhubError, streamParts, type FlatRange, type ModelSpec } from '@gradhub/core';
import { Assignments } from './assignments.js';
import { digestPieces, type DisputeClaim } from './audit.js';
import type { ClusterExecutor, ClusterExecutorOptions, ClusterStats } from './cluster-executor-api.js';
import { carriesTensor, checkStepInput, type StepHooks, type StepInput, type StepSums, type StepTiming } from './executor.js';
import { workersToRead } from './flow-control.js';
import type { Membership, WorkerConn } from './membership.js';
import { ParamDistribution } from './param-distribution.js';
import { RemoteAudits } from './remote-audit.js';
import { WireCode, type BodyOf } from './protocol.js';
import { Reducer, resultIn, type RequestSpec, type ResultIn, type Verdict } from './reducer.js';
import { CrewChooser, type AssignedBytes } from './scheduler.js';
import { speculationPeriodMs } from './speculation.js';
import { HoldWatch, STALL_CHECK_MS, Strikes, stallRules, type StallRules } from './stalls.js';
import { WorkDispatch, showNode, type RequestContext } from './work-dispatch.js';
import { WorkerEstimates } from './worker-estimates.js';
import { WorkerRows } from './worker-rows.js';

export type { ClusterExecutor, ClusterExecutorOptions, ClusterStats } from './cluster-executor-api.js';

interface Active extends RequestContext {
  readonly resolve: (s: StepSums) => void;
  readonly reject: (e: Error) => void;
  settled: boolean;
  /** Timing (StepTiming): when the first wave of sends was written, compute reported per worker, reducer time. */
  broadcastMs: number | null;
  readonly computeMs: Map<number, number>;
  reduceMs: number;
  lastResultAt: number;
  /** The caller's hooks (onRootPart: every part goes to it, see finish). */
  readonly hooks: StepHooks | null;
  /** Per node ("lo:hi"): the workers that answered it non-finite, and whether each is trusted. */
  readonly nonFinite: Map<string, Map<number, boolean>>;
  /** Per worker and node ("id:lo:hi"): what it sent that was accepted (audits; 'train' and 'round'). */
  readonly digests: Map<string, { workerId: number; trusted: boolean; node: { lo: number; hi: number }; parts: { offset: number; length: number; hash: string }[]; lossSum: number; denomSum: number; correct: number }>;
}

/** Joined with the trusted token (harden-net's `WorkerConn.trusted`); a connection without the field is a volunteer. */
const isTrusted = (w: WorkerConn): boolean => (w as { readonly trusted?: boolean }).trusted === true;

class ClusterExecutorImpl implements ClusterExecutor {
  private readonly membership: Membership;
  private readonly spec: ModelSpec;
  private readonly chunk: number;
  private readonly maxBatch: number;
  private readonly log: Logger;
  private readonly reducer: Reducer;
  private readonly estimates: WorkerEstimates;
  /** How many workers a training step uses (adaptiveWorkers). */
  private readonly crew: CrewChooser | null;
  private readonly speculateAfterMs: number | null;
  /** The parts gradients and parameters stream in (core streamParts: layers, big ones in row blocks). */
  private readonly parts: readonly FlatRange[];
  private readonly params: ParamDistribution;
  /** Audits on a trusted worker (remote-audit.ts), for the auditor. */
  readonly remoteAudits: RemoteAudits;
  private readonly rows: WorkerRows;
  private readonly work: WorkDispatch;
  private assigned: AssignedBytes | null = null;
  private active: Active | null = null;
  private seq = 0;
  private closed = false;
  private specTimer: NodeJS.Timeout | null = null;
  /** Hold deadlines (stalls.ts; null: off), and non-finite results per worker within the same window. */
  private readonly holds: HoldWatch | null;
  private readonly rules: StallRules;
  private readonly nonFiniteStrikes: Strikes;
  private holdTimer: NodeJS.Timeout | null = null;
  private readonly counters = { requests: 0, reassigned: 0, recomputed: 0, speculated: 0, kicked: 0, stalls: 0, stallDrops: 0, nonFiniteDrops: 0, probation: 0 };

  constructor(opts: ClusterExecutorOptions) {
    this.membership = opts.membership;
    this.spec = opts.spec;
    this.chunk = opts.chunk;
    this.maxBatch = opts.maxBatch;
    this.log = opts.logger.child({ module: 'cluster-executor' });
    for (const [k, v] of [['chunk', opts.chunk], ['maxBatch', opts.maxBatch]] as const) {
      if (!Number.isInteger(v) || v < 1) throw new GradhubError(ErrorCode.E_USAGE, `${k} must be a positive integer, got ${v}`);
    }
    const budget = opts.memoryBudgetBytes ?? 512 * 1024 * 1024;
    if (!(budget > 0)) throw new GradhubError(ErrorCode.E_USAGE, `memoryBudgetBytes must be positive, got ${budget}`);
    this.parts = streamParts(opts.spec);
    this.estimates = new WorkerEstimates(opts.speedAlpha ?? 0.5);
    this.params = new ParamDistribution(this.parts, (w) => this.estimates.bandwidth(w.id));
    this.remoteAudits = new RemoteAudits(this.membership, this.chunk, this.log, (name) => opts.status?.count(name));
    this.params.keeper = this.remoteAudits;
    this.reducer = new Reducer({ paramCount: opts.spec.paramCount, maxHeld: Math.max(2, Math.floor(budget / (4 * opts.spec.paramCount))), parts: this.parts });
    this.crew = opts.adaptiveWorkers ? new CrewChooser() : null;
    this.rows = new WorkerRows(opts.status ?? null);
    this.rules = stallRules(opts.stall ?? {});
    this.holds = opts.stall === null ? null : new HoldWatch(this.rules);
    this.nonFiniteStrikes = new Strikes(this.rules.windowMs);
    this.work = new WorkDispatch(this.membership, this.params, this.estimates, this.rows, this.holds);
    if (this.holds) {
      // For the executor's life, not per request: steps shorter than the period are checked too.
      this.holdTimer = setInterval(() => this.reclaimOverdue(), STALL_CHECK_MS);
      this.holdTimer.unref();
    }
    this.speculateAfterMs = opts.speculateAfterMs === undefined ? 30000 : opts.speculateAfterMs;
    if (this.speculateAfterMs !== null && !(this.speculateAfterMs > 0)) {
      throw new GradhubError(ErrorCode.E_USAGE, `speculateAfterMs must be positive or null, got ${this.speculateAfterMs}`);
    }
    this.membership.setHandlers({
      joined: (w) => this.onJoined(w),
      lost: (w, reason) => this.onLost(w, reason),
      result: (w, m, grad) => this.onResult(w, m, grad),
      paramsRequest: (w, v) => this.onParamsRequest(w, v),
      auditResult: (w, m) => this.remoteAudits.answer(w, m),
    }, (id) => this.estimates.busyMs(id, this.active?.record.queued(id) ?? 0));
  }

  get stats(): Readonly<ClusterStats> {
    return { ...this.reducer.stats, dropped: { ...this.reducer.stats.dropped }, ...this.counters, assigned: this.assigned };
  }

  workerCount(): number {
    return this.membership.size;
  }

  waitForWorkers(min: number, timeoutMs?: number): Promise<void> {
    return this.membership.waitForWorkers(min, timeoutMs);
  }

  async run(input: StepInput, hooks?: StepHooks): Promise<StepSums> {
    if (this.closed) throw new GradhubError(ErrorCode.E_CLOSED, 'the cluster executor is closed');
    if (this.active) throw new GradhubError(ErrorCode.E_INTERNAL, 'ClusterExecutor.run called while a run is pending');
    checkStepInput(input, { maxBatch: this.maxBatch, paramCount: this.spec.paramCount, fromVersion: this.params.version }, 'ClusterExecutor.run');
    this.params.encodeAll(input.version, input.params); // the parts not published ahead
    if (this.membership.size === 0) {
      this.log.info({ step: input.step }, 'waiting for a worker');
      await this.membership.waitForWorkers(1);
      if (this.closed) throw new GradhubError(ErrorCode.E_CLOSED, 'the cluster executor is closed');
    }
    const seq = ++this.seq;
    const spec: RequestSpec = { seq, step: input.step, version: input.version, mode: input.mode, batch: input.batch, chunk: this.chunk, round: input.round };
    const record = this.reducer.begin(spec, new Assignments(input.batch, this.chunk, input.round?.offsets ?? null));
    this.estimates.newRequest();
    this.holds?.newRequest();
    const log = this.log.child({ step: input.step, seq });
    return new Promise<StepSums>((resolve, reject) => {
      const a: Active = {
        spec, input, record, log, startedAt: Date.now(), resolve, reject, settled: false,
        broadcastMs: null, computeMs: new Map(), reduceMs: 0, lastResultAt: 0, hooks: hooks ?? null, digests: new Map(), nonFinite: new Map(),
      };
      this.active = a;
      const workers = this.membership.workers();
      const plan = this.work.plan(a, workers, this.spec.paramCount, input.mode === 'train' ? this.crew : null);
      this.assigned = plan.assigned;
      const byId = new Map(workers.map((w) => [w.id, w]));
      const sends: Promise<unknown>[] = [];
      for (const p of plan.assignments) {
        for (const n of p.nodes) record.give(n, p.workerId);
        sends.push(this.work.send(a, byId.get(p.workerId)!, p.nodes));
      }
      this.counters.probation += this.work.probation(a, plan.probation);
      void Promise.all(sends).then(() => {
        a.broadcastMs ??= Date.now() - a.startedAt;
      });
      this.flow();
      if (plan.assignments.length === 0) {
        // Every worker left meanwhile: the whole batch waits for the next one to join (onJoined).
        const root = { lo: 0, hi: record.nChunks };
        record.give(root, -1);
        record.revoke(root, -1);
        log.warn('no worker left: the batch waits for one to join');
      }
      if (this.speculateAfterMs !== null) {
        this.specTimer = setInterval(() => this.speculate(), speculationPeriodMs(this.speculateAfterMs));
        this.specTimer.unref();
      }
    });
  }

  /**
   * Part `index` of `version` is final (the trainer updated that part): send it now to the workers
   * of the current request (the likely ones of the next); others get it with their Work.
   */
  publish(version: number, params: Float32Array, index: number): void {
    if (this.closed) return;
    const a = this.active;
    this.params.publish(version, params, index, this.membership.workers().filter((w) => !a || a.record.hasWorker(w.id)));
  }

  private report(w: WorkerConn): void {
    this.work.report(w, this.active);
  }

  private onJoined(w: WorkerConn): void {
    if (this.params.adoptHeld(w, this.membership.incarnation)) {
      w.logger.debug({ version: w.paramsVersion }, 'worker still holds these parameters: not sent again');
    }
    this.report(w);
    // A newcomer takes nodes waiting for a worker now; otherwise it joins the next request's split.
    if (this.active) this.work.placeOrphans(this.active);
    this.flow();
  }

  private onLost(w: WorkerConn, reason: string): void {
    this.params.forget(w.id);
    this.remoteAudits.lost(w);
    this.estimates.forget(w.id);
    this.holds?.forget(w.id);
    this.work.forget(w.id);
    this.nonFiniteStrikes.forget(w.id);
    this.rows.remove(w.id);
    const a = this.active;
    if (!a) return;
    const nodes = a.record.lose(w.id);
    if (nodes.length > 0) {
      this.counters.reassigned += a.record.orphans().length;
      a.log.warn({ workerId: w.id, reason, nodes: nodes.map(showNode) }, 'worker lost mid-request');
    }
    this.work.placeOrphans(a);
    this.flow();
  }

  private onParamsRequest(w: WorkerConn, version: number): void {
    const verdict = this.params.resend(w, version);
    if (verdict === 'ignored') this.rows.ignoredParamsRequest();
    else if (verdict === 'not-held') w.logger.debug({ version, current: this.params.version }, 'params requested for a version not held');
  }

  private onResult(w: WorkerConn, m: BodyOf<'result'>, grad: readonly Uint8Array[]): void {
    const r = resultIn(m, grad);
    const t0 = performance.now();
    const v = this.reducer.accept(w.id, r);
    const a = this.active;
    // A node's parts may come in several Results: the one that completes it carries the node's
    // whole compute time. Any other verdict also ends this worker's part in the node.
    const nodeOver = v.kind !== 'accepted' || v.nodeDone;
    if (a) {
      a.reduceMs += performance.now() - t0;
      a.lastResultAt = Date.now();
      // compute_ms is the worker's word: informational (the step-time breakdown), clamped to the
      // busy time the coordinator measured; the scheduler never reads it (worker-estimates.ts).
      const measured = this.estimates.elapsed(w.id, a.lastResultAt) ?? 0;
      if (v.kind === 'accepted' && v.nodeDone) a.computeMs.set(w.id, Math.min(measured, (a.computeMs.get(w.id) ?? 0) + (m.computeMs ?? 0)));
      this.account(a, w.id, r, v.kind, nodeOver);
      if (v.kind === 'accepted' && r.node) this.digest(a, w, r, grad);
    }
    if (v.kind === 'accepted' && v.rootParts.length > 0 && a?.hooks?.onRootPart && carriesTensor(a.spec.mode)) {
      const sums = this.reducer.rootSums()!;
      for (const i of v.rootParts) {
        try {
          a.hooks.onRootPart(i, this.parts[i], this.reducer.rootPart(i), sums);
        } catch (err) {
          this.fail(err instanceof Error ? err : new Error(String(err)));
        }
        if (this.active !== a) return; // the run ended meanwhile
      }
    }
    if (v.kind === 'dropped' && v.reason === 'stale' && r.node && this.estimates.lateAnswer(w.id, r.seq, r.node, Date.now())) {
      // Its probation copy, answered after its request ended: it is measured now (worker-estimates.ts).
      this.holds?.answered(w.id);
      w.logger.info({ seq: r.seq, node: showNode(r.node), pace: this.estimates.pace(w.id) }, 'worker on probation measured by its late copy');
    }
    if (v.kind === 'accepted' && nodeOver && !v.done) this.report(w);
    (this.verdicts[v.kind] as (w: WorkerConn, v: Verdict) => void)(w, v);
  }

  /** A result of this request for a node `id` owes: whether it ends its part in the node (estimates, rows). */
  private account(a: Active, id: number, r: ResultIn, verdict: Verdict['kind'], nodeOver: boolean): void {
    if (!r.node || r.seq !== a.spec.seq || !a.record.owes(id, r.node) || !nodeOver) return;
    const accepted = verdict === 'accepted';
    const samples = a.record.answered(id, r.node);
    this.holds?.answered(id);
    this.estimates.answered(id, samples, accepted, verdict === 'dropped');
    if (accepted) this.rows.counted(id, samples);
    if (a.record.owing(id) === 0) this.estimates.idle(id, Date.now());
  }

  /** Keep what `w` sent in an accepted result (its part's xxh64 and the node's sums; an eval result: the sums), for audits. */
  private digest(a: Active, w: WorkerConn, r: ResultIn, grad: readonly Uint8Array[]): void {
    const node = r.node!;
    const key = `${w.id}:${node.lo}:${node.hi}`;
    let d = a.digests.get(key);
    if (!d) a.digests.set(key, (d = { workerId: w.id, trusted: isTrusted(w), node: { lo: node.lo, hi: node.hi }, parts: [], lossSum: r.lossSum, denomSum: r.denomSum, correct: r.correct }));
    // Trusted workers are never audited: their bytes are not hashed.
    if (r.part && r.part.length > 0 && !d.trusted) d.parts.push({ offset: r.part.offset, length: r.part.length, hash: digestPieces(grad) });
  }

  /** What to do with each reducer verdict. */
  private readonly verdicts: { [K in Verdict['kind']]: (w: WorkerConn, v: Extract<Verdict, { kind: K }>) => void } = {
    accepted: (_w, v) => {
      if (v.done) this.finish();
      else this.flow();
    },
    dropped: (w, v) => {
      w.logger.debug({ reason: v.reason }, 'result dropped');
      this.rows.lateResult();
      this.flow();
    },
    rejected: (w, v) => {
      this.counters.kicked++;
      w.kick(v.code, v.message); // lost follows at once and reassigns its nodes
    },
    'non-finite': (w, v) => {
      // Not a fault (proto NON_FINITE_GRADIENT): counted, logged, the node recomputed elsewhere,
      // the connection kept; only a worker that does it `strikes` times within the window goes.
      this.counters.recomputed++;
      this.rows.nonFinite();
      const nk = `${v.node.lo}:${v.node.hi}`;
      if (this.active) this.active.nonFinite.set(nk, (this.active.nonFinite.get(nk) ?? new Map()).set(w.id, isTrusted(w)));
      const strikes = this.nonFiniteStrikes.add(w.id, Date.now());
      this.active?.log.warn({ workerId: w.id, node: showNode(v.node), strikes }, 'non-finite result: recomputing the node on another worker');
      if (strikes >= this.rules.strikes) {
        this.counters.nonFiniteDrops++;
        w.kick(WireCode.NON_FINITE_GRADIENT, `${strikes} non-finite results within ${this.rules.windowMs} ms`); // lost places its nodes
        return;
      }
      if (this.active && this.active.record.ownersOf(v.node).length === 0) this.work.placeOrphans(this.active, new Set([w.id]));
      this.flow();
    },
    diverged: (w, v) => {
      // Two workers answered the node non-finite. If one of them is untrusted, its word does not
      // end the run: the error says so (`untrusted`), and the trainer has trusted compute decide.
      const a = this.active;
      const from = new Map(a?.nonFinite.get(`${v.node.lo}:${v.node.hi}`) ?? []);
      from.set(w.id, isTrusted(w));
      const err = new GradhubError(ErrorCode.E_DIVERGED, v.message);
      if ([...from.values()].some((t) => !t)) Object.assign(err, { untrusted: { node: v.node, workers: [...from.keys()] } });
      this.fail(err);
    },
    disputed: (w, v) => {
      // Two workers' sums for one node differ: the request cannot finish on either word. It ends
      // here (E_DISPUTED, with the claims); the trainer has trusted compute decide who lied.
      const a = this.active;
      const claims: DisputeClaim[] = v.claims.map((c) => ({ ...c, trusted: c.workerId === w.id ? isTrusted(w) : a?.digests.get(`${c.workerId}:${v.node.lo}:${v.node.hi}`)?.trusted ?? false }));
      a?.log.warn({ node: showNode(v.node), claims }, 'two workers sent different sums for one node: the coordinator recomputes it');
      this.fail(Object.assign(new GradhubError(ErrorCode.E_DISPUTED, v.message), { disputed: { node: v.node, claims } }));
    },
  };

  /** Read or pause each worker's socket (flow-control.ts). */
  private flow(): void {
    const a = this.active;
    const workers = this.membership.workers();
    const read = workersToRead(a?.record ?? null, a?.spec.mode ?? null, this.reducer, workers.map((w) => w.id));
    for (const w of workers) {
      const was = w.paused;
      if (read === null || read.has(w.id)) w.resume();
      else w.pause();
      if (w.paused !== was) {
        this.report(w);
        if (!w.paused) this.holds?.restart(w.id, Date.now()); // a paused socket could not answer
      }
    }
  }

  /** Give long-outstanding nodes to idle workers as well (speculation.ts; first result wins). */
  private speculate(): void {
    if (this.active && this.speculateAfterMs !== null) this.counters.speculated += this.work.speculate(this.active, this.speculateAfterMs);
  }

  /**
   * Take the work of workers past their hold deadline (stalls.ts) and give it to the others; drop
   * a worker at its `strikes`-th stall within the window. Paused sockets are not timed.
   */
  private reclaimOverdue(): void {
    const a = this.active;
    if (!a || !this.holds) return;
    const now = Date.now();
    const live = this.membership.workers().filter((w) => !w.paused);
    const byId = new Map(live.map((w) => [w.id, w]));
    const ids = live.map((w) => w.id);
    const pace = (id: number): number | null => this.estimates.pace(id);
    const holding = (id: number): boolean => a.record.ownedBy(id).length > 0;
    // Never-measured workers silent past their deadline across requests (probation: they hold
    // nothing the step waits for, but one that never answers must go).
    for (const o of this.holds.silent(ids, pace, now, holding)) {
      const w = byId.get(o.id)!;
      const strikes = this.holds.strike(o.id, now);
      this.counters.stalls++;
      this.rows.stalled();
      a.log.warn({ workerId: o.id, heldMs: o.heldMs, limitMs: Math.round(o.limitMs), strikes }, 'worker on probation silent past its deadline');
      if (strikes >= this.holds.rules.strikes) {
        this.counters.stallDrops++;
        w.kick(WireCode.STALLED, `no answer past its deadline ${strikes} times within ${this.holds.rules.windowMs} ms`);
      }
    }
    for (const o of this.holds.overdue(a.record, ids.filter((id) => byId.get(id)!.gone === false), pace, now)) {
      const w = byId.get(o.id)!;
      if (w.gone || this.active !== a) continue;
      this.estimates.stalled(o.id, a.record.queued(o.id), now);
      const strikes = this.holds.strike(o.id, now);
      this.counters.stalls++;
      this.rows.stalled();
      const nodes = this.work.reclaim(a, o.id);
      this.holds.restart(o.id, now); // kept nodes (no one else to take them) get a fresh deadline
      a.log.warn({ workerId: o.id, heldMs: o.heldMs, limitMs: Math.round(o.limitMs), strikes, nodes: nodes.map(showNode) }, 'worker held its work past its deadline: given to others');
      if (strikes >= this.holds.rules.strikes) {
        this.counters.stallDrops++;
        w.kick(WireCode.STALLED, `held work past its deadline ${strikes} times within ${this.holds.rules.windowMs} ms`);
      }
    }
    this.flow();
  }

  private finish(): void {
    const a = this.active;
    if (!a || a.settled) return;
    // Parts the caller took through onRootPart are not joined into one gradient again. With the
    // hook, every part went to it: each part's root is reported once (reducer), and a hook that
    // throws fails the run, so it never gets here.
    const taken = carriesTensor(a.spec.mode) && Boolean(a.hooks?.onRootPart);
    const sums = taken ? { ...this.reducer.rootSums()!, grad: null } : this.reducer.result();
    this.settle();
    this.counters.requests++;
    a.log.debug({ ms: Date.now() - a.startedAt, workers: a.record.workerCount }, 'request done');
    const total = a.lastResultAt - a.startedAt;
    const broadcastMs = a.broadcastMs ?? total;
    const computeMs = Math.max(0, ...a.computeMs.values());
    const timing: StepTiming = { broadcastMs, computeMs, uploadMs: Math.max(0, total - broadcastMs - computeMs), reduceMs: a.reduceMs };
    const contributions = [...a.digests.values()];
    a.resolve({ grad: carriesTensor(a.spec.mode) ? sums.grad : null, lossSum: sums.lossSum, denomSum: sums.denomSum, correct: sums.correct, timing, contributions });
  }

  private fail(err: Error): void {
    const a = this.active;
    if (!a || a.settled) return;
    this.settle();
    a.log.error({ err: { code: (err as GradhubError).code, message: err.message } }, 'request failed');
    a.reject(err);
  }

  private settle(): void {
    const a = this.active!;
    a.settled = true;
    this.reducer.end();
    this.active = null;
    if (this.specTimer) clearInterval(this.specTimer);
    this.specTimer = null;

    for (const w of this.membership.workers()) {
      w.resume();
      this.report(w);
    }
  }

  async close(reason: 'done' | 'shutdown' = 'done'): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.holdTimer) clearInterval(this.holdTimer);
    this.holdTimer = null;
    this.fail(new GradhubError(ErrorCode.E_CLOSED, 'the cluster executor was closed during a step'));
    await this.membership.close(reason === 'done' ? gradhub.ByeReason.TRAINING_DONE : gradhub.ByeReason.SHUTDOWN, reason === 'done' ? 'training is over' : 'coordinator shutting down');
  }
}

/** An executor over an existing membership (see cluster.ts `startCluster` for the usual wiring). */
export function createClusterExecutor(opts: ClusterExecutorOptions): ClusterExecutor {
  return new ClusterExecutorImpl(opts);
}
