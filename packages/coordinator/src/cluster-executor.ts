/**
 * The cluster executor: the `Executor` of `--workers N` and `gradhub coordinator`, over sockets.
 *
 * Contract (executor.ts): `run(input)` returns the canonical tree sums of the batch, bit for bit
 * what the in-process executor returns. The trainer is authoritative for parameters and steps;
 * this module only moves them to workers and reduces what comes back. One request at a time.
 *
 * A request (one `run`), and its sync points:
 * 1. Parameters go out one part at a time (core `streamParts`: a layer, or a block of ~16 MiB of a
 *    big layer's rows; protocol.ts `ParamsEncoder`): each part of a version is copied into a reused
 *    snapshot, hashed (xxHash64) and encoded once, and the same bytes are sent, as fragments, to
 *    every worker. A part is sent as soon as it is final: `publish` (the trainer calls it from
 *    `onRootPart`, once its SGD step has updated that part) sends it to every ready worker while
 *    the rest of the request is still being reduced; the parts not published ahead go to each
 *    worker that lacks them just before its Work. A worker that rejoins holding a version this
 *    executor still has (Hello.held: parts and checksums) is not sent it again (`adoptHeld`).
 * 2. Assignment: waits for at least one worker, then `assignChunks` (scheduler) gives each ready
 *    worker a contiguous range of chunks, as canonical nodes, cut to minimise the estimated
 *    makespan: compute (measured speed) against bytes moved (parameters if the worker lacks
 *    them, its pixels, and one result per node, at its measured bandwidth). Each worker gets one
 *    Work frame with its nodes' pixels and labels (uint8) in node order. The bytes the plan moves
 *    ("as assigned") are logged at debug level and kept in `stats.assigned`.
 * 3. Results go through the reducer (validation, tree combination per part). A worker sends a
 *    node's gradient as one Result per part, each as soon as it is final in its backward pass (or
 *    one Result with the whole gradient); as soon as a part's root is complete, `hooks.onRootPart`
 *    gets it, so the trainer updates that part and publishes it (1.) while others are in flight.
 *    A protocol fault kicks the
 *    worker (Error + close); a lost worker's incomplete nodes go to the worker that would finish
 *    them first (or to the next worker that joins, when none is left); a non-finite node is
 *    recomputed on another worker, and a second non-finite answer ends the run with E_DIVERGED.
 *    With `speculateAfterMs`, a node outstanding that long is also given to an idle worker and
 *    the first result wins (the other is dropped quietly and counted).
 * 4. When the root is complete, `run` resolves; the gradient (of the parts not taken through
 *    `onRootPart`; null when all were) is the reducer's, valid until the next `run`. Per worker
 *    and busy period (from its Work to its last result), its compute speed (samples / the
 *    compute time it reports; wall time when it reports none) and its bandwidth (bytes moved /
 *    the busy time not spent computing) feed EWMAs for the next split.
 *
 * Flow control and memory: sends go through ws's send callbacks (`WorkerConn.send`). Gradients
 * being received count against the memory budget like waiting ones: of the workers that still owe
 * results, only as many are read as the reducer has room for (memoryBudgetBytes / gradient bytes
 * minus the gradients it holds), in tree order of their nodes, and over budget only the owners of
 * the leftmost incomplete node; the others are paused, so results arrive in tree order and memory
 * stays bounded whatever the number of workers (reducer.ts, `flow`).
 *
 * Failure: `close()` (or a run error) fails the pending run once, with a GradhubError.
 */
import type { Logger } from 'pino';
import { gradhub } from '@gradhub/proto';
import {
  CIFAR_PIXELS, ErrorCode, GradhubError, bytesEqual, chunkCount, modelSpec, nodeSamples, streamParts,
  type FlatRange, type ModelSpec, type TreeNode,
} from '@gradhub/core';
import type { Executor, StepHooks, StepInput, StepSums, StepTiming } from './executor.js';
import { Membership, type ClusterStatusSink, type MembershipOptions, type WorkerConn } from './membership.js';
import { ParamsEncoder, encode, frameLimits, type BodyOf, type ParamsPartFrame } from './protocol.js';
import { Reducer, type ReducerStats, type RequestSpec, type ResultIn, type Verdict } from './reducer.js';
import { CrewChooser, SpeedTable, assignChunks, assignedBytes, pickWorker, type AssignedBytes, type Candidate, type TransferCost } from './scheduler.js';
import { startServer, type GradhubServer } from './server.js';

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
  readonly nChunks: number;
  readonly log: Logger;
  readonly startedAt: number;
  /** Per worker: nodes (keys) it still has to answer, samples queued, and its busy period (start, samples done, compute ms reported, bytes moved). */
  readonly load: Map<number, Load>;
  /** When each node was last given out. */
  readonly givenAt: Map<string, number>;
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

interface Load {
  /** Nodes it still has to answer, by key, with their first chunk. */
  readonly outstanding: Map<string, number>;
  queued: number;
  busySince: number;
  done: number;
  computeMs: number;
  bytes: number;
}

const nodeKey = (n: TreeNode): string => `${n.lo}:${n.hi}`;

class ClusterExecutorImpl implements ClusterExecutor {
  private readonly membership: Membership;
  private readonly spec: ModelSpec;
  private readonly chunk: number;
  private readonly maxBatch: number;
  private readonly log: Logger;
  private readonly reducer: Reducer;
  private readonly speeds: SpeedTable;
  /** How many workers a training step uses (adaptiveWorkers), and the last training step for its timing. */
  private readonly crew: CrewChooser | null;
  private lastTrain: { startedAt: number; batch: number; k: number; clean: boolean } | null = null;
  private readonly bandwidths: SpeedTable;
  private readonly speculateAfterMs: number | null;
  /** The parts gradients and parameters stream in (core streamParts: layers, big ones in row blocks). */
  private readonly parts: readonly FlatRange[];
  private readonly paramsEncoder: ParamsEncoder;
  /** Per worker: the version whose Params parts it is being sent, which parts went out (1) and how many. */
  private readonly sentParts = new Map<number, { version: number; sent: Uint8Array; count: number }>();
  private assigned: AssignedBytes | null = null;
  private active: Active | null = null;
  private seq = 0;
  private closed = false;
  private specTimer: NodeJS.Timeout | null = null;
  private readonly counters = { requests: 0, reassigned: 0, recomputed: 0, speculated: 0, kicked: 0 };
  private readonly status: ClusterStatusSink | null;
  /** Accepted nodes and samples per worker, for the workers table. */
  private readonly tally = new Map<number, { nodes: number; samples: number }>();

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
    this.paramsEncoder = new ParamsEncoder(this.parts);
    this.reducer = new Reducer({ paramCount: opts.spec.paramCount, maxHeld: Math.max(2, Math.floor(budget / (4 * opts.spec.paramCount))), parts: this.parts });
    this.speeds = new SpeedTable(opts.speedAlpha ?? 0.5);
    this.bandwidths = new SpeedTable(opts.speedAlpha ?? 0.5);
    this.crew = opts.adaptiveWorkers ? new CrewChooser() : null;
    this.status = opts.status ?? null;
    this.speculateAfterMs = opts.speculateAfterMs === undefined ? 30000 : opts.speculateAfterMs;
    if (this.speculateAfterMs !== null && !(this.speculateAfterMs > 0)) {
      throw new GradhubError(ErrorCode.E_USAGE, `speculateAfterMs must be positive or null, got ${this.speculateAfterMs}`);
    }
    this.membership.setHandlers({
      joined: (w) => this.onJoined(w),
      lost: (w, reason) => this.onLost(w, reason),
      result: (w, m, grad) => this.onResult(w, m, grad),
      paramsRequest: (w, v) => this.onParamsRequest(w, v),
    }, (id) => this.busyMs(id));
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
    this.paramsEncoder.encodeAll(input.version, input.params); // the parts not published ahead
    if (this.membership.size === 0) {
      this.log.info({ step: input.step }, 'waiting for a worker');
      await this.membership.waitForWorkers(1);
      if (this.closed) throw new GradhubError(ErrorCode.E_CLOSED, 'the cluster executor is closed');
    }
    const seq = ++this.seq;
    const spec: RequestSpec = { seq, step: input.step, version: input.version, mode: input.mode, batch: input.batch, chunk: this.chunk };
    const nChunks = chunkCount(input.batch, this.chunk);
    this.reducer.begin(spec);
    const log = this.log.child({ step: input.step, seq });
    return new Promise<StepSums>((resolve, reject) => {
      const a: Active = {
        spec, input, nChunks, log, startedAt: Date.now(), load: new Map(), givenAt: new Map(), resolve, reject, settled: false,
        broadcastMs: null, computeMs: new Map(), reduceMs: 0, lastResultAt: 0, hooks: hooks ?? null,
      };
      this.active = a;
      const workers = this.membership.workers();
      const shape = { batch: input.batch, chunk: this.chunk };
      const cost: TransferCost = {
        resultBytes: (input.mode === 'train' ? 4 * this.spec.paramCount : 0) + RESULT_OVERHEAD_BYTES,
        paramsBytes: this.paramsEncoder.versionBytes,
        sampleBytes: CIFAR_PIXELS + 1,
      };
      let speeds = workers.map((w) => ({
        id: w.id, speed: this.speeds.get(w.id), bandwidth: this.bandwidths.get(w.id), maxSamples: w.capabilities.maxBatch, needsParams: w.paramsVersion !== input.version,
      }));
      if (input.mode === 'train' && this.crew) speeds = this.crewOf(speeds, nChunks, input.batch, a.startedAt);
      const plan = assignChunks(nChunks, speeds, shape, cost);
      this.assigned = assignedBytes(plan, speeds, shape, cost);
      log.debug({
        mode: input.mode, batch: input.batch, nChunks, assigned: this.assigned,
        plan: plan.map((p) => ({ worker: p.workerId, lo: p.lo, hi: p.hi, nodes: p.nodes.length, estimateMs: Math.round(p.estimateS * 1000) })),
      }, 'request out');
      const byId = new Map(workers.map((w) => [w.id, w]));
      const sends: Promise<unknown>[] = [];
      for (const p of plan) {
        for (const n of p.nodes) this.reducer.give(n, p.workerId);
        sends.push(this.dispatch(byId.get(p.workerId)!, p.nodes));
      }
      void Promise.all(sends).then(() => {
        a.broadcastMs ??= Date.now() - a.startedAt;
      });
      this.flow();
      if (plan.length === 0) {
        // Every worker left meanwhile: the whole batch waits for the next one to join (onJoined).
        const root = { lo: 0, hi: nChunks };
        this.reducer.give(root, -1);
        this.reducer.revoke(root, -1);
        log.warn('no worker left: the batch waits for one to join');
      }
      if (this.speculateAfterMs !== null) {
        const every = Math.max(20, Math.min(1000, Math.floor(this.speculateAfterMs / 2)));
        this.specTimer = setInterval(() => this.speculate(), every);
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
    const held = this.paramsEncoder.version;
    if (held !== null && input.version < held) bad(`version ${input.version} after ${held}: versions never go back within one executor`);
    if (!Number.isInteger(input.step) || input.step < 0 || input.step > 0xffffffff) bad(`step ${input.step}`);
  }

  /**
   * Send `w` the parameters if it lacks them, then one Work frame with `nodes`. Resolves when the
   * socket has taken both (ws send callbacks).
   */
  private dispatch(w: WorkerConn, nodes: readonly TreeNode[]): Promise<unknown> {
    const a = this.active;
    if (!a || nodes.length === 0) return Promise.resolve();
    const { input, spec } = a;
    let load = a.load.get(w.id);
    if (!load) {
      load = { outstanding: new Map(), queued: 0, busySince: Date.now(), done: 0, computeMs: 0, bytes: 0 };
      a.load.set(w.id, load);
    }
    if (load.outstanding.size === 0) {
      load.busySince = Date.now();
      load.done = 0;
      load.computeMs = 0;
      load.bytes = 0;
    }
    let paramsSent: Promise<unknown> | null = null;
    if (w.paramsVersion !== spec.version) {
      // The request's version was encoded when it began (`run`); the trainer may have updated
      // `input.params` part by part since (publish), so its frames are what the worker needs.
      const frames = this.paramsEncoder.frames(spec.version);
      if (!frames) throw new GradhubError(ErrorCode.E_INTERNAL, `parameters v${spec.version} of request ${spec.seq} are no longer encoded`);
      const sends: Promise<boolean>[] = [];
      for (const f of frames) {
        const sent = this.sendParams(w, f);
        if (!sent) continue;
        load.bytes += f.byteLength;
        sends.push(sent);
      }
      paramsSent = Promise.all(sends);
    }
    const sorted = [...nodes].sort((x, y) => x.lo - y.lo);
    const wire: gradhub.IWorkNode[] = [];
    const pix: Uint8Array[] = [];
    const lab: Uint8Array[] = [];
    let total = 0;
    for (const n of sorted) {
      const { start, end } = nodeSamples(n, input.batch, this.chunk);
      wire.push({ lo: n.lo, hi: n.hi, sampleStart: start, sampleCount: end - start });
      const last = pix.length - 1;
      const prev = last >= 0 ? wire[wire.length - 2] : null;
      if (prev && prev.sampleStart! + prev.sampleCount! === start) {
        // Contiguous with the previous node: widen the same view (no copy).
        const p0 = pix[last], l0 = lab[last];
        pix[last] = new Uint8Array(p0.buffer, p0.byteOffset, p0.byteLength + (end - start) * CIFAR_PIXELS);
        lab[last] = new Uint8Array(l0.buffer, l0.byteOffset, l0.byteLength + (end - start));
      } else {
        pix.push(input.pixels.subarray(start * CIFAR_PIXELS, end * CIFAR_PIXELS));
        lab.push(input.labels.subarray(start, end));
      }
      total += end - start;
      load.outstanding.set(nodeKey(n), n.lo);
      load.queued += end - start;
      a.givenAt.set(nodeKey(n), Date.now());
    }
    const frame = encode({
      work: {
        seq: spec.seq, step: spec.step, version: spec.version,
        mode: spec.mode === 'train' ? gradhub.Mode.TRAIN : gradhub.Mode.EVAL,
        nodes: wire,
        pixels: pix.length === 1 ? pix[0] : Buffer.concat(pix),
        labels: lab.length === 1 ? lab[0] : Buffer.concat(lab),
        batch: input.batch,
      },
    });
    w.logger.debug({ step: spec.step, seq: spec.seq, nodes: sorted.map((n) => `[${n.lo},${n.hi})`), samples: total }, 'work sent');
    load.bytes += frame.byteLength;
    const workSent = w.send(frame);
    this.report(w);
    return paramsSent ? Promise.all([paramsSent, workSent]) : workSent;
  }

  /**
   * The fastest of `speeds` that this training step uses (CrewChooser), after telling the chooser
   * how long the previous step took (from its start to this one's, same batch size only).
   */
  private crewOf<T extends { readonly id: number; readonly speed: number | null; readonly needsParams?: boolean }>(speeds: T[], nChunks: number, batch: number, now: number): T[] {
    const crew = this.crew!;
    const last = this.lastTrain;
    if (last && last.batch === batch) crew.observe(last.k, now - last.startedAt, last.clean);
    const k = crew.next(Math.min(speeds.length, nChunks));
    const chosen = k >= speeds.length ? speeds : [...speeds].sort((x, y) => (y.speed ?? 0) - (x.speed ?? 0) || x.id - y.id).slice(0, k);
    // A worker new to the crew first gets the whole model: that step does not measure the crew.
    this.lastTrain = { startedAt: now, batch, k, clean: chosen.every((w) => !w.needsParams) };
    return chosen;
  }

  /**
   * Send `w` one Params part unless it was sent that part of that version already (null then);
   * the part's snapshot is not overwritten until the socket has taken it. Once every part of a
   * version went out, `w.paramsVersion` is that version.
   */
  private sendParams(w: WorkerConn, f: ParamsPartFrame): Promise<boolean> | null {
    let rec = this.sentParts.get(w.id);
    if (!rec) {
      rec = { version: f.version, sent: new Uint8Array(this.parts.length), count: 0 };
      this.sentParts.set(w.id, rec);
    } else if (rec.version !== f.version) {
      rec.version = f.version;
      rec.sent.fill(0);
      rec.count = 0;
    }
    if (rec.sent[f.index]) return null;
    rec.sent[f.index] = 1;
    rec.count++;
    if (rec.count === this.parts.length) w.paramsVersion = f.version;
    else if (w.paramsVersion !== f.version) w.paramsVersion = -1; // it holds a mix while parts arrive
    f.snapshot.sends++;
    const sent = w.send(f.parts);
    void sent.finally(() => {
      f.snapshot.sends--;
    });
    return sent;
  }

  /**
   * Part `index` of `version` is final (the trainer updated that part): encode it and send it to
   * every ready worker now, ahead of the request that will need it, so that parameters stream down
   * while other parts are still being reduced. `params` must hold that part's final values.
   */
  publish(version: number, params: Float32Array, index: number): void {
    if (this.closed) return;
    const held = this.paramsEncoder.version;
    if (held !== null && version < held) return;
    const f = this.paramsEncoder.encodePart(version, params, index);
    // To the workers of the current request (the likely ones of the next); others get it with their Work.
    const a = this.active;
    for (const w of this.membership.workers()) if (!a || a.load.has(w.id)) this.sendParams(w, f);
  }

  /** Update the worker's row in the status sink. */
  private report(w: WorkerConn): void {
    if (!this.status || w.gone) return;
    const t = this.tally.get(w.id);
    const busy = (this.active?.load.get(w.id)?.outstanding.size ?? 0) > 0;
    this.status.upsertWorker({
      id: String(w.id), runtime: w.runtime, samplesPerS: this.speeds.get(w.id) ?? 0, nodesDone: t?.nodes ?? 0, samplesDone: t?.samples ?? 0,
      bytesIn: w.bytesIn, bytesOut: w.bytesOut, lastSeen: w.lastSeen, state: w.paused ? 'paused' : busy ? 'working' : 'idle', address: w.address,
    });
  }

  /** Give incomplete nodes nobody holds to the workers that would finish them first. */
  private placeOrphans(exclude: ReadonlySet<number> = new Set()): void {
    const a = this.active;
    if (!a) return;
    const orphans = this.reducer.orphans();
    if (orphans.length === 0) return;
    const workers = this.membership.workers();
    if (workers.length === 0) {
      a.log.warn({ nodes: orphans.length }, 'no worker left: the nodes wait for one to join');
      return;
    }
    const queued = new Map(workers.map((w) => [w.id, a.load.get(w.id)?.queued ?? 0]));
    const batches = new Map<number, TreeNode[]>();
    for (const n of orphans) {
      const samples = this.reducer.samplesOf(n);
      const cands: Candidate[] = workers.map((w) => ({ id: w.id, speed: this.speeds.get(w.id), queuedSamples: queued.get(w.id)! }));
      const id = pickWorker(samples, cands, exclude, true)!;
      queued.set(id, queued.get(id)! + samples);
      this.reducer.give(n, id);
      const list = batches.get(id) ?? [];
      list.push(n);
      batches.set(id, list);
    }
    const byId = new Map(workers.map((w) => [w.id, w]));
    for (const [id, nodes] of batches) {
      a.log.info({ workerId: id, nodes: nodes.map((n) => `[${n.lo},${n.hi})`) }, 'nodes reassigned');
      void this.dispatch(byId.get(id)!, nodes);
    }
  }

  private onJoined(w: WorkerConn): void {
    this.adoptHeld(w);
    this.report(w);
    // A newcomer takes nodes waiting for a worker now; otherwise it joins the next request's split.
    this.placeOrphans();
    this.flow();
  }

  /**
   * A worker that says it still holds a version this executor has (the current or the previous
   * one), part for part with equal checksums, is not sent those parameters again: a worker that
   * lost its connection rejoins without moving the model twice.
   */
  private adoptHeld(w: WorkerConn): void {
    const h = w.held;
    if (!h || h.incarnation !== this.membership.incarnation) return;
    const frames = this.paramsEncoder.frames(h.version);
    const same = frames !== null && frames.length === h.parts.length && frames.every((f, i) => {
      const p = h.parts[i];
      return f.range.offset === p.offset && f.range.length === p.length && bytesEqual(f.checksum, p.checksum);
    });
    if (!same) return;
    w.paramsVersion = h.version;
    this.sentParts.set(w.id, { version: h.version, sent: new Uint8Array(frames.length).fill(1), count: frames.length });
    w.logger.debug({ version: h.version }, 'worker still holds these parameters: not sent again');
  }

  private onLost(w: WorkerConn, reason: string): void {
    this.sentParts.delete(w.id);
    this.speeds.forget(w.id);
    this.bandwidths.forget(w.id);
    this.tally.delete(w.id);
    this.status?.removeWorker(String(w.id));
    const a = this.active;
    if (!a) return;
    a.load.delete(w.id);
    const nodes = this.reducer.ownedBy(w.id);
    for (const n of nodes) this.reducer.revoke(n, w.id);
    if (nodes.length > 0) {
      this.counters.reassigned += this.reducer.orphans().length;
      a.log.warn({ workerId: w.id, reason, nodes: nodes.map((n) => `[${n.lo},${n.hi})`) }, 'worker lost mid-request');
    }
    this.placeOrphans();
    this.flow();
  }

  private onParamsRequest(w: WorkerConn, version: number): void {
    const frames = this.paramsEncoder.frames(version);
    if (frames) {
      this.sentParts.delete(w.id); // send them all again
      for (const f of frames) this.sendParams(w, f);
    } else {
      w.logger.debug({ version, current: this.paramsEncoder.version }, 'params requested for a version not held');
    }
  }

  private onResult(w: WorkerConn, m: BodyOf<'result'>, grad: readonly Uint8Array[]): void {
    const r: ResultIn = {
      seq: m.seq ?? 0,
      version: m.version ?? 0,
      node: m.node ? { lo: m.node.lo ?? 0, hi: m.node.hi ?? 0 } : null,
      part: m.part ? { offset: m.part.offset ?? 0, length: m.part.length ?? 0 } : null,
      grad,
      lossSum: m.lossSum ?? 0,
      denomSum: m.denomSum ?? 0,
      correct: m.correct ?? 0,
    };
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
    }
    let gradBytes = 0;
    for (const g of grad) gradBytes += g.byteLength;
    if (a && r.node && r.seq === a.spec.seq) {
      const load = a.load.get(w.id);
      const k = nodeKey(r.node);
      if (load?.outstanding.has(k)) load.bytes += gradBytes + RESULT_OVERHEAD_BYTES;
      if (nodeOver && load?.outstanding.delete(k)) {
        const samples = this.reducer.samplesOf(r.node);
        load.queued -= samples;
        load.computeMs += m.computeMs ?? 0;
        if (v.kind === 'accepted') {
          load.done += samples;
          const t = this.tally.get(w.id) ?? { nodes: 0, samples: 0 };
          t.nodes++;
          t.samples += samples;
          this.tally.set(w.id, t);
        }
        if (load.outstanding.size === 0) {
          const wall = Date.now() - load.busySince;
          if (load.computeMs > 0) {
            this.speeds.observe(w.id, load.done, load.computeMs);
            this.bandwidths.observe(w.id, load.bytes, Math.max(1, wall - load.computeMs));
          } else {
            this.speeds.observe(w.id, load.done, wall);
          }
        }
      }
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

  /** What to do with each reducer verdict. */
  private readonly verdicts: { [K in Verdict['kind']]: (w: WorkerConn, v: Extract<Verdict, { kind: K }>) => void } = {
    accepted: (_w, v) => {
      if (v.done) this.finish();
      else this.flow();
    },
    dropped: (w, v) => {
      w.logger.debug({ reason: v.reason }, 'result dropped');
      this.status?.count('late_results');
      this.flow();
    },
    rejected: (w, v) => {
      this.counters.kicked++;
      w.kick(v.code, v.message); // lost follows at once and reassigns its nodes
    },
    'non-finite': (w, v) => {
      this.counters.recomputed++;
      this.active?.log.warn({ workerId: w.id, node: `[${v.node.lo},${v.node.hi})` }, 'non-finite result: recomputing the node on another worker');
      if (this.reducer.ownersOf(v.node).length === 0) this.placeOrphans(new Set([w.id]));
      this.flow();
    },
    diverged: (_w, v) => {
      this.fail(new GradhubError(ErrorCode.E_DIVERGED, v.message));
    },
  };

  /**
   * Memory budget (reducer.ts): results being received count too. Of the workers that still owe
   * results, only as many as the reducer has room for (maxHeld - held, at least 1) are read, the
   * ones whose leftmost outstanding node comes first in tree order; over budget, only the
   * frontier's owners. The others are paused: their results wait in their sockets. So held and
   * in-flight gradients together stay within the budget plus the tree depth, whatever the
   * number of workers. Workers that owe nothing are always read.
   */
  private flow(): void {
    const a = this.active;
    const workers = this.membership.workers();
    const owing = a ? workers.filter((w) => (a.load.get(w.id)?.outstanding.size ?? 0) > 0) : [];
    const room = this.reducer.overBudget ? 0 : Math.max(1, this.reducer.maxHeld - this.reducer.held);
    let read: Set<number> | null = null; // null: everyone
    if (a && a.spec.mode === 'train' && owing.length > room) {
      const f = this.reducer.frontier();
      read = new Set(f ? this.reducer.ownersOf(f) : []);
      const first = (w: WorkerConn): number => Math.min(...a.load.get(w.id)!.outstanding.values());
      const ordered = owing.map((w) => ({ id: w.id, lo: first(w) })).sort((x, y) => x.lo - y.lo || x.id - y.id);
      for (let i = 0; i < room && i < ordered.length; i++) read.add(ordered[i].id);
    }
    const owes = new Set(owing.map((w) => w.id));
    for (const w of workers) {
      const was = w.paused;
      if (read === null || read.has(w.id) || !owes.has(w.id)) w.resume();
      else w.pause();
      if (w.paused !== was) this.report(w);
    }
  }

  /** Give long-outstanding nodes to idle workers as well (first result wins). */
  private speculate(): void {
    const a = this.active;
    if (!a || this.speculateAfterMs === null) return;
    const now = Date.now();
    const idle = this.membership.workers()
      .filter((w) => (a.load.get(w.id)?.outstanding.size ?? 0) === 0)
      .sort((x, y) => (this.speeds.get(y.id) ?? 0) - (this.speeds.get(x.id) ?? 0) || x.id - y.id);
    if (idle.length === 0) return;
    const slow = this.reducer.pending()
      .filter((n) => this.reducer.ownersOf(n).length === 1 && now - (a.givenAt.get(nodeKey(n)) ?? now) >= this.speculateAfterMs!)
      .sort((x, y) => a.givenAt.get(nodeKey(x))! - a.givenAt.get(nodeKey(y))!);
    for (let i = 0; i < slow.length && i < idle.length; i++) {
      const n = slow[i];
      const w = idle[i];
      if (w.capabilities.maxBatch > 0 && this.reducer.samplesOf(n) > w.capabilities.maxBatch) continue;
      this.counters.speculated++;
      a.log.info({ workerId: w.id, node: `[${n.lo},${n.hi})`, owner: this.reducer.ownersOf(n)[0] }, 'slow node: computing a copy on an idle worker');
      this.reducer.give(n, w.id);
      void this.dispatch(w, [n]);
    }
  }

  /** Expected compute time of a worker's queued samples, for the heartbeat deadline. */
  private busyMs(id: number): number {
    const queued = this.active?.load.get(id)?.queued ?? 0;
    const speed = this.speeds.get(id);
    return queued > 0 && speed ? (2000 * queued) / speed : 0;
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
    a.log.debug({ ms: Date.now() - a.startedAt, workers: a.load.size }, 'request done');
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

/** An executor over an existing membership (see startCluster for the usual wiring). */
export function createClusterExecutor(opts: ClusterExecutorOptions): ClusterExecutor {
  return new ClusterExecutorImpl(opts);
}

/** Membership settings a cluster passes through unchanged (documented on MembershipOptions). */
type MembershipPassThrough = Pick<MembershipOptions,
  'runId' | 'incarnation' | 'heartbeatIntervalMs' | 'heartbeatTimeoutMs' | 'helloTimeoutMs' | 'maxWorkers'>;

export interface ClusterOptions extends MembershipPassThrough {
  /** Listen address. Default '0.0.0.0'. */
  readonly host?: string;
  /** TCP port. Default 8080; 0 picks a free one. */
  readonly port?: number;
  /** Join token workers must present. Required, non-empty. */
  readonly token: string;
  /** Model sizes, e.g. [3072, 2048, 2048, 10]. */
  readonly sizes: readonly number[];
  readonly chunk: number;
  readonly normalize: boolean;
  /** The run's batch size (largest batch `run` gets). */
  readonly maxBatch: number;
  readonly logger: Logger;
  readonly memoryBudgetBytes?: number;
  readonly speculateAfterMs?: number | null;
  /** Optional: where the workers table and counters go (RunStatus fits). */
  readonly status?: ClusterStatusSink;
  /** Serve https/wss (see ServerOptions.tls). */
  readonly tls?: { readonly cert: string | Buffer; readonly key: string | Buffer };
  /** See ClusterExecutorOptions.adaptiveWorkers. Default false. */
  readonly adaptiveWorkers?: boolean;
  /** Also listen on this Unix domain socket, for workers on this machine (see ServerOptions.socketPath). */
  readonly socketPath?: string;
}

export interface Cluster {
  readonly executor: ClusterExecutor;
  readonly server: GradhubServer;
  readonly membership: Membership;
  /** ws:// URL workers connect to (without the token). */
  readonly url: string;
  /** ws+unix:// URL of the Unix socket (ClusterOptions.socketPath), else null. */
  readonly socketUrl: string | null;
  /** Close the executor (Bye: 'done' makes workers exit, 'shutdown' lets them wait to reconnect) and the server. */
  close(reason?: 'done' | 'shutdown'): Promise<void>;
}

/** Start the server, membership and executor of a coordinator. */
export async function startCluster(opts: ClusterOptions): Promise<Cluster> {
  const spec = modelSpec(opts.sizes);
  const limits = frameLimits(spec.paramCount, opts.maxBatch);
  const membership = new Membership({
    logger: opts.logger, token: opts.token, spec, chunk: opts.chunk, normalize: opts.normalize, maxBatch: opts.maxBatch,
    maxFrameBytes: limits.fromWorker, runId: opts.runId, incarnation: opts.incarnation,
    heartbeatIntervalMs: opts.heartbeatIntervalMs, heartbeatTimeoutMs: opts.heartbeatTimeoutMs,
    helloTimeoutMs: opts.helloTimeoutMs, maxWorkers: opts.maxWorkers, status: opts.status,
  });
  let executor: ClusterExecutor;
  let server: GradhubServer;
  try {
    executor = createClusterExecutor({
      membership, spec, chunk: opts.chunk, maxBatch: opts.maxBatch, logger: opts.logger,
      memoryBudgetBytes: opts.memoryBudgetBytes, speculateAfterMs: opts.speculateAfterMs, status: opts.status, adaptiveWorkers: opts.adaptiveWorkers,
    });
    // ws's hard cap is twice the protocol limit: frames in between get a clear OVERSIZE_FRAME error.
    server = await startServer({ host: opts.host, port: opts.port, token: opts.token, maxPayloadBytes: 2 * limits.fromWorker, logger: opts.logger, tls: opts.tls, socketPath: opts.socketPath });
  } catch (err) {
    await membership.close();
    throw err;
  }
  server.onConnection((ws, req) => membership.attach(ws, req));
  server.setHealth(() => ({ workers: membership.size, runId: membership.runId, incarnation: membership.incarnation, requests: executor.stats.requests }));
  let closing: Promise<void> | null = null;
  return {
    executor, server, membership, url: server.url, socketUrl: server.socketUrl,
    close(reason = 'done') {
      closing ??= (async () => {
        await executor.close(reason);
        await server.close();
      })();
      return closing;
    },
  };
}
