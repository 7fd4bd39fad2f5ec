/**
 * The cluster executor: the `Executor` of `--workers N` and `gradhub coordinator`, over sockets;
 * the state machine of one request. (Wiring: cluster.ts `startCluster`.)
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
 *    makespan (measured speeds and bandwidths: worker-estimates.ts); with `adaptiveWorkers`, a
 *    training step uses only the fastest few (`CrewChooser`). Who holds which node is the
 *    request's assignment record (assignments.ts). Each worker gets one Work frame with its
 *    nodes' pixels and labels (protocol.ts `encodeWork`). The bytes the plan moves are logged at
 *    debug level and kept in `stats.assigned`.
 * 3. Results go through the reducer (validation, tree combination per part); as soon as a part's
 *    root is complete, `hooks.onRootPart` gets it, so the trainer updates that part and publishes
 *    it (1.) while others are in flight. A protocol fault kicks the worker (Error + close); a lost
 *    worker's incomplete nodes go to the worker that would finish them first (or to the next
 *    worker that joins, when none is left); a non-finite node is recomputed on another worker,
 *    and a second non-finite answer ends the run with E_DIVERGED. With `speculateAfterMs`, a node
 *    outstanding that long is also given to an idle worker (speculation.ts); the first result wins.
 * 4. When the root is complete, `run` resolves; the gradient (of the parts not taken through
 *    `onRootPart`; null when all were) is the reducer's, valid until the next `run`.
 *
 * Flow control (flow-control.ts): of the workers that owe results, only as many are read as the
 * reducer has room for, in tree order, so memory stays bounded whatever the number of workers.
 *
 * Failure: `close()` (or a run error) fails the pending run once, with a GradhubError.
 */
import type { Logger } from 'pino';
import { gradhub } from '@gradhub/proto';
import { CIFAR_PIXELS, ErrorCode, GradhubError, chunkCount, streamParts, type FlatRange, type ModelSpec, type TreeNode } from '@gradhub/core';
import { Assignments } from './assignments.js';
import type { Executor, StepHooks, StepInput, StepSums, StepTiming } from './executor.js';
import { workersToRead } from './flow-control.js';
import type { ClusterStatusSink, Membership, WorkerConn } from './membership.js';
import { ParamDistribution } from './param-distribution.js';
import { encodeWork, type BodyOf } from './protocol.js';
import { Reducer, resultIn, type ReducerStats, type RequestSpec, type ResultIn, type Verdict } from './reducer.js';
import { CrewChooser, assignChunks, assignedBytes, placeOrphans, type AssignedBytes, type TransferCost } from './scheduler.js';
import { speculationPeriodMs, speculativeCopies } from './speculation.js';
import { WorkerEstimates } from './worker-estimates.js';
import { WorkerRows } from './worker-rows.js';

export interface ClusterExecutorOptions {
  readonly membership: Membership;
  readonly spec: ModelSpec;
  /** Samples per chunk of the reduction tree. */
  readonly chunk: number;
  /** Largest batch `run` will be given. */
  readonly maxBatch: number;
  readonly logger: Logger;
  // Note: `run` inputs must not decrease `version` (a resume from a checkpoint starts a new
  // coordinator incarnation: a new membership and executor). Equal versions mean equal parameters.
  /** Bytes of waiting gradients before reading in tree order. Default 512 MiB (at least 2 gradients). */
  readonly memoryBudgetBytes?: number;
  /** Also give a node outstanding this long (ms) to an idle worker; null: never. Default 30000. */
  readonly speculateAfterMs?: number | null;
  /** Weight of the newest speed measurement in the EWMA. Default 0.5. */
  readonly speedAlpha?: number;
  /** Optional: the workers table and the `late_results` counter (RunStatus fits). */
  readonly status?: ClusterStatusSink;
  /**
   * Let measured step times decide how many of the workers (the fastest) a training step uses
   * (scheduler.ts `CrewChooser`): fewer win when moving the model costs more than their compute
   * saves. Default false: every worker, up to one per chunk.
   */
  readonly adaptiveWorkers?: boolean;
}

export interface ClusterStats extends ReducerStats {
  /** Requests completed. */
  requests: number;
  /** Nodes given to another worker after their worker was lost. */
  reassigned: number;
  /** Nodes recomputed after a non-finite result. */
  recomputed: number;
  /** Speculative copies of slow nodes. */
  speculated: number;
  /** Workers kicked for protocol faults. */
  kicked: number;
  /** Bytes the last request's plan moves as assigned (params + work down, results up), or null before the first. */
  assigned: AssignedBytes | null;
}

export interface ClusterExecutor extends Executor {
  /** Resolves when at least `min` workers are ready (E_NO_WORKERS after `timeoutMs`, if given). */
  waitForWorkers(min: number, timeoutMs?: number): Promise<void>;
  /** Ready workers now. */
  workerCount(): number;
  readonly stats: Readonly<ClusterStats>;
  /** Fail a pending run, say Bye (TRAINING_DONE by default: workers exit) and close the sockets. */
  close(reason?: 'done' | 'shutdown'): Promise<void>;
}

/** Bytes of a Result frame besides the gradient (header and sums), and of a Work frame besides pixels and labels, about. */
const RESULT_OVERHEAD_BYTES = 64;

interface Active {
  readonly spec: RequestSpec;
  readonly input: StepInput;
  /** Who holds which node (shared with the reducer). */
  readonly record: Assignments;
  readonly log: Logger;
  readonly startedAt: number;
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
}

const show = (n: TreeNode): string => `[${n.lo},${n.hi})`;

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
  private readonly rows: WorkerRows;
  private assigned: AssignedBytes | null = null;
  private active: Active | null = null;
  private seq = 0;
  private closed = false;
  private specTimer: NodeJS.Timeout | null = null;
  private readonly counters = { requests: 0, reassigned: 0, recomputed: 0, speculated: 0, kicked: 0 };

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
    this.params = new ParamDistribution(this.parts);
    this.reducer = new Reducer({ paramCount: opts.spec.paramCount, maxHeld: Math.max(2, Math.floor(budget / (4 * opts.spec.paramCount))), parts: this.parts });
    this.estimates = new WorkerEstimates(opts.speedAlpha ?? 0.5);
    this.crew = opts.adaptiveWorkers ? new CrewChooser() : null;
    this.rows = new WorkerRows(opts.status ?? null);
    this.speculateAfterMs = opts.speculateAfterMs === undefined ? 30000 : opts.speculateAfterMs;
    if (this.speculateAfterMs !== null && !(this.speculateAfterMs > 0)) {
      throw new GradhubError(ErrorCode.E_USAGE, `speculateAfterMs must be positive or null, got ${this.speculateAfterMs}`);
    }
    this.membership.setHandlers({
      joined: (w) => this.onJoined(w),
      lost: (w, reason) => this.onLost(w, reason),
      result: (w, m, grad) => this.onResult(w, m, grad),
      paramsRequest: (w, v) => this.onParamsRequest(w, v),
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
    this.checkInput(input);
    this.params.encodeAll(input.version, input.params); // the parts not published ahead
    if (this.membership.size === 0) {
      this.log.info({ step: input.step }, 'waiting for a worker');
      await this.membership.waitForWorkers(1);
      if (this.closed) throw new GradhubError(ErrorCode.E_CLOSED, 'the cluster executor is closed');
    }
    const seq = ++this.seq;
    const spec: RequestSpec = { seq, step: input.step, version: input.version, mode: input.mode, batch: input.batch, chunk: this.chunk };
    const nChunks = chunkCount(input.batch, this.chunk);
    const record = this.reducer.begin(spec, new Assignments(input.batch, this.chunk));
    this.estimates.newRequest();
    const log = this.log.child({ step: input.step, seq });
    return new Promise<StepSums>((resolve, reject) => {
      const a: Active = {
        spec, input, record, log, startedAt: Date.now(), resolve, reject, settled: false,
        broadcastMs: null, computeMs: new Map(), reduceMs: 0, lastResultAt: 0, hooks: hooks ?? null,
      };
      this.active = a;
      const workers = this.membership.workers();
      const shape = { batch: input.batch, chunk: this.chunk };
      const cost: TransferCost = {
        resultBytes: (input.mode === 'train' ? 4 * this.spec.paramCount : 0) + RESULT_OVERHEAD_BYTES,
        paramsBytes: this.params.versionBytes,
        sampleBytes: CIFAR_PIXELS + 1,
      };
      let speeds = workers.map((w) => ({
        id: w.id, speed: this.estimates.speed(w.id), bandwidth: this.estimates.bandwidth(w.id), maxSamples: w.capabilities.maxBatch, needsParams: w.paramsVersion !== input.version,
      }));
      if (input.mode === 'train' && this.crew) speeds = this.crew.choose(speeds, nChunks, input.batch, a.startedAt);
      const plan = assignChunks(nChunks, speeds, shape, cost);
      this.assigned = assignedBytes(plan, speeds, shape, cost);
      log.debug({
        mode: input.mode, batch: input.batch, nChunks, assigned: this.assigned,
        plan: plan.map((p) => ({ worker: p.workerId, lo: p.lo, hi: p.hi, nodes: p.nodes.length, estimateMs: Math.round(p.estimateS * 1000) })),
      }, 'request out');
      const byId = new Map(workers.map((w) => [w.id, w]));
      const sends: Promise<unknown>[] = [];
      for (const p of plan) {
        for (const n of p.nodes) record.give(n, p.workerId);
        sends.push(this.dispatch(byId.get(p.workerId)!, p.nodes));
      }
      void Promise.all(sends).then(() => {
        a.broadcastMs ??= Date.now() - a.startedAt;
      });
      this.flow();
      if (plan.length === 0) {
        // Every worker left meanwhile: the whole batch waits for the next one to join (onJoined).
        const root = { lo: 0, hi: nChunks };
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

  private checkInput(input: StepInput): void {
    const bad = (msg: string): never => {
      throw new GradhubError(ErrorCode.E_INTERNAL, `ClusterExecutor.run: ${msg}`);
    };
    if (input.mode !== 'train' && input.mode !== 'eval') bad(`mode ${String(input.mode)}`);
    if (!Number.isInteger(input.batch) || input.batch < 1 || input.batch > this.maxBatch) bad(`batch ${input.batch} outside 1..${this.maxBatch}`);
    if (input.pixels.length < input.batch * CIFAR_PIXELS || input.labels.length < input.batch) bad(`batch of ${input.batch} needs ${input.batch * CIFAR_PIXELS} pixel bytes and ${input.batch} labels`);
    if (input.params.length !== this.spec.paramCount) bad(`params hold ${input.params.length} floats, the model ${this.spec.paramCount}`);
    if (!Number.isInteger(input.version) || input.version < 0 || input.version > 0xffffffff) bad(`version ${input.version}`);
    // Workers refuse older parameters from the same coordinator incarnation (a resume is a new one).
    const held = this.params.version;
    if (held !== null && input.version < held) bad(`version ${input.version} after ${held}: versions never go back within one executor`);
    if (!Number.isInteger(input.step) || input.step < 0 || input.step > 0xffffffff) bad(`step ${input.step}`);
  }

  /**
   * Send `w` the parameters if it lacks them, then one Work frame with `nodes` (given to it in the
   * record). Resolves when the socket has taken both (ws send callbacks).
   */
  private dispatch(w: WorkerConn, nodes: readonly TreeNode[]): Promise<unknown> {
    const a = this.active;
    if (!a || nodes.length === 0) return Promise.resolve();
    const { input, spec, record } = a;
    if (record.owing(w.id) === 0) this.estimates.start(w.id, Date.now());
    let paramsSent: Promise<unknown> | null = null;
    if (w.paramsVersion !== spec.version) {
      // The request's version was encoded when it began (`run`); the trainer may have updated
      // `input.params` part by part since (publish), so its frames are what the worker needs.
      const out = this.params.sendVersion(w, spec.version);
      if (!out) throw new GradhubError(ErrorCode.E_INTERNAL, `parameters v${spec.version} of request ${spec.seq} are no longer encoded`);
      this.estimates.moved(w.id, out.bytes);
      paramsSent = Promise.all(out.sends);
    }
    const work = encodeWork(spec, nodes, input.pixels, input.labels);
    record.sent(w.id, work.nodes, Date.now());
    w.logger.debug({ step: spec.step, seq: spec.seq, nodes: work.nodes.map(show), samples: work.samples }, 'work sent');
    this.estimates.moved(w.id, work.frame.byteLength);
    const workSent = w.send(work.frame);
    this.report(w);
    return paramsSent ? Promise.all([paramsSent, workSent]) : workSent;
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

  /** Update the worker's row in the status sink. */
  private report(w: WorkerConn): void {
    this.rows.report(w, this.estimates.speed(w.id), (this.active?.record.owing(w.id) ?? 0) > 0);
  }

  /** Give incomplete nodes nobody holds to the workers that would finish them first (scheduler). */
  private placeOrphans(exclude?: ReadonlySet<number>): void {
    const a = this.active;
    if (!a) return;
    const orphans = a.record.orphans().length;
    if (orphans === 0) return;
    const workers = this.membership.workers();
    if (workers.length === 0) {
      a.log.warn({ nodes: orphans }, 'no worker left: the nodes wait for one to join');
      return;
    }
    const placed = placeOrphans(a.record, workers.map((w) => ({ id: w.id, speed: this.estimates.speed(w.id) })), exclude);
    const byId = new Map(workers.map((w) => [w.id, w]));
    for (const [id, nodes] of placed) for (const n of nodes) a.record.give(n, id);
    for (const [id, nodes] of placed) {
      a.log.info({ workerId: id, nodes: nodes.map(show) }, 'nodes reassigned');
      void this.dispatch(byId.get(id)!, nodes);
    }
  }

  private onJoined(w: WorkerConn): void {
    if (this.params.adoptHeld(w, this.membership.incarnation)) {
      w.logger.debug({ version: w.paramsVersion }, 'worker still holds these parameters: not sent again');
    }
    this.report(w);
    // A newcomer takes nodes waiting for a worker now; otherwise it joins the next request's split.
    this.placeOrphans();
    this.flow();
  }

  private onLost(w: WorkerConn, reason: string): void {
    this.params.forget(w.id);
    this.estimates.forget(w.id);
    this.rows.remove(w.id);
    const a = this.active;
    if (!a) return;
    const nodes = a.record.lose(w.id);
    if (nodes.length > 0) {
      this.counters.reassigned += a.record.orphans().length;
      a.log.warn({ workerId: w.id, reason, nodes: nodes.map(show) }, 'worker lost mid-request');
    }
    this.placeOrphans();
    this.flow();
  }

  private onParamsRequest(w: WorkerConn, version: number): void {
    if (!this.params.resend(w, version)) w.logger.debug({ version, current: this.params.version }, 'params requested for a version not held');
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
      if (v.kind === 'accepted' && v.nodeDone) a.computeMs.set(w.id, (a.computeMs.get(w.id) ?? 0) + (m.computeMs ?? 0));
      this.account(a, w.id, r, grad, v.kind === 'accepted', nodeOver, m.computeMs ?? 0);
    }
    if (v.kind === 'accepted' && v.rootParts.length > 0 && a?.hooks?.onRootPart && a.spec.mode === 'train') {
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
    if (v.kind === 'accepted' && nodeOver && !v.done) this.report(w);
    (this.verdicts[v.kind] as (w: WorkerConn, v: Verdict) => void)(w, v);
  }

  /** A result of this request for a node `id` owes: its bytes, and whether it ends its part in the node (estimates, rows). */
  private account(a: Active, id: number, r: ResultIn, grad: readonly Uint8Array[], accepted: boolean, nodeOver: boolean, computeMs: number): void {
    if (!r.node || r.seq !== a.spec.seq || !a.record.owes(id, r.node)) return;
    let gradBytes = 0;
    for (const g of grad) gradBytes += g.byteLength;
    this.estimates.moved(id, gradBytes + RESULT_OVERHEAD_BYTES);
    if (!nodeOver) return;
    const samples = a.record.answered(id, r.node);
    this.estimates.answered(id, accepted ? samples : 0, computeMs);
    if (accepted) this.rows.counted(id, samples);
    if (a.record.owing(id) === 0) this.estimates.idle(id, Date.now());
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
      this.counters.recomputed++;
      this.active?.log.warn({ workerId: w.id, node: show(v.node) }, 'non-finite result: recomputing the node on another worker');
      if (this.active?.record.ownersOf(v.node).length === 0) this.placeOrphans(new Set([w.id]));
      this.flow();
    },
    diverged: (_w, v) => {
      this.fail(new GradhubError(ErrorCode.E_DIVERGED, v.message));
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
      if (w.paused !== was) this.report(w);
    }
  }

  /** Give long-outstanding nodes to idle workers as well (speculation.ts; first result wins). */
  private speculate(): void {
    const a = this.active;
    if (!a || this.speculateAfterMs === null) return;
    const idle = this.membership.workers()
      .filter((w) => a.record.owing(w.id) === 0)
      .sort((x, y) => (this.estimates.speed(y.id) ?? 0) - (this.estimates.speed(x.id) ?? 0) || x.id - y.id);
    const byId = new Map(idle.map((w) => [w.id, w]));
    const copies = speculativeCopies(a.record, idle.map((w) => ({ id: w.id, maxBatch: w.capabilities.maxBatch })), Date.now(), this.speculateAfterMs);
    for (const { node, workerId } of copies) {
      this.counters.speculated++;
      a.log.info({ workerId, node: show(node), owner: a.record.ownersOf(node)[0] }, 'slow node: computing a copy on an idle worker');
      a.record.give(node, workerId);
      void this.dispatch(byId.get(workerId)!, [node]);
    }
  }

  private finish(): void {
    const a = this.active;
    if (!a || a.settled) return;
    // Parts the caller took through onRootPart are not joined into one gradient again. With the
    // hook, every part went to it: each part's root is reported once (reducer), and a hook that
    // throws fails the run, so it never gets here.
    const taken = a.spec.mode === 'train' && Boolean(a.hooks?.onRootPart);
    const sums = taken ? { ...this.reducer.rootSums()!, grad: null } : this.reducer.result();
    this.settle();
    this.counters.requests++;
    a.log.debug({ ms: Date.now() - a.startedAt, workers: a.record.workerCount }, 'request done');
    const total = a.lastResultAt - a.startedAt;
    const broadcastMs = a.broadcastMs ?? total;
    const computeMs = Math.max(0, ...a.computeMs.values());
    const timing: StepTiming = { broadcastMs, computeMs, uploadMs: Math.max(0, total - broadcastMs - computeMs), reduceMs: a.reduceMs };
    a.resolve({ grad: a.spec.mode === 'train' ? sums.grad : null, lossSum: sums.lossSum, denomSum: sums.denomSum, correct: sums.correct, timing });
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
    this.fail(new GradhubError(ErrorCode.E_CLOSED, 'the cluster executor was closed during a step'));
    await this.membership.close(reason === 'done' ? gradhub.ByeReason.TRAINING_DONE : gradhub.ByeReason.SHUTDOWN, reason === 'done' ? 'training is over' : 'coordinator shutting down');
  }
}

/** An executor over an existing membership (see cluster.ts `startCluster` for the usual wiring). */
export function createClusterExecutor(opts: ClusterExecutorOptions): ClusterExecutor {
  return new ClusterExecutorImpl(opts);
}
