/**
 * Getting work to workers: a request's split and Work frames (after the parameters a worker lacks), the
 * takeover of orphaned nodes and speculative copies of slow ones, each first given in the
 * request's assignment record; and the workers' status rows, which follow what they owe.
 */
import type { Logger } from 'pino';
import { CIFAR_PIXELS, ErrorCode, GradhubError, type TreeNode } from '@gradhub/core';
import type { Assignments } from './assignments.js';
import { carriesTensor, type StepInput } from './executor.js';
import type { Membership, WorkerConn } from './membership.js';
import type { ParamDistribution } from './param-distribution.js';
import { RESULT_OVERHEAD_BYTES, encodeWork, leafShapeOf } from './protocol.js';
import type { RequestSpec } from './reducer.js';
import { assignChunks, assignedBytes, placeOrphans, type AssignedBytes, type Assignment, type CrewChooser, type TransferCost } from './scheduler.js';
import { speculativeCopies } from './speculation.js';
import type { HoldWatch } from './stalls.js';
import type { WorkerEstimates } from './worker-estimates.js';
import type { WorkerRows } from './worker-rows.js';

/** The request work goes out for. */
export interface RequestContext {
  readonly spec: RequestSpec;
  readonly input: StepInput;
  /** Who holds which node (shared with the reducer). */
  readonly record: Assignments;
  readonly log: Logger;
  /** When the request began (ms since the epoch). */
  readonly startedAt: number;
}

export const showNode = (n: TreeNode): string => `[${n.lo},${n.hi})`;

export class WorkDispatch {
  /** Workers on probation that no node fitted (their max batch): they take a share of the split instead. */
  private readonly unfit = new Set<number>();

  constructor(
    private readonly membership: Membership,
    private readonly params: ParamDistribution,
    private readonly estimates: WorkerEstimates,
    private readonly rows: WorkerRows,
    /** Hold deadlines (stalls.ts): each hand-out restarts the worker's clock; null: none. */
    private readonly holds: HoldWatch | null = null,
  ) {}

  /**
   * The request's split (scheduler `assignChunks`) over `workers`, from their measured speeds and
   * bandwidths and the bytes a step moves; with `crew`, over the fastest few it chooses. The
   * bytes the plan moves ("as assigned") are logged at debug level.
   *
   * Probation: while some worker has a measured pace, a worker that has none (new, or never
   * answered) takes no share of the split; it is listed in `probation` and gets a copy of a node
   * instead (`probation`), so it cannot hold the step up. Its first answer measures it. One that
   * no node fitted (its max batch) takes a share from the next request on, cut to its size.
   */
  plan(a: RequestContext, all: readonly WorkerConn[], paramCount: number, crew: CrewChooser | null): { assignments: Assignment[]; assigned: AssignedBytes; probation: WorkerConn[] } {
    const onProbation = (w: WorkerConn): boolean => this.estimates.pace(w.id) === null && !this.unfit.has(w.id);
    const measured = all.filter((w) => !onProbation(w));
    const workers = measured.length > 0 ? measured : all;
    const probation = measured.length > 0 ? all.filter(onProbation) : [];
    const { input, spec } = a;
    const nChunks = a.record.nChunks;
    const shape = leafShapeOf(spec);
    const cost: TransferCost = {
      resultBytes: (carriesTensor(input.mode) ? 4 * paramCount : 0) + RESULT_OVERHEAD_BYTES,
      paramsBytes: this.params.versionBytes,
      sampleBytes: CIFAR_PIXELS + 1,
    };
    let speeds = workers.map((w) => ({
      id: w.id, speed: this.estimates.speed(w.id), bandwidth: this.estimates.bandwidth(w.id), maxSamples: input.mode === 'round' ? 0 : w.capabilities.maxBatch, needsParams: w.paramsVersion !== input.version,
    }));
    if (crew) speeds = crew.choose(speeds, nChunks, input.batch, a.startedAt);
    const assignments = assignChunks(nChunks, speeds, shape, cost);
    const assigned = assignedBytes(assignments, speeds, shape, cost);
    a.log.debug({
      mode: input.mode, batch: input.batch, nChunks, assigned,
      plan: assignments.map((p) => ({ worker: p.workerId, lo: p.lo, hi: p.hi, nodes: p.nodes.length, estimateMs: Math.round(p.estimateS * 1000) })),
      probation: probation.map((w) => w.id),
    }, 'request out');
    return { assignments, assigned, probation };
  }

  /**
   * Give each worker on probation that is not still waiting to answer earlier work a copy of the
   * rightmost pending node it can take (first complete copy wins), and send it. The copies made.
   */
  probation(a: RequestContext, workers: readonly WorkerConn[]): number {
    const pending = a.record.pending().reverse();
    let made = 0;
    for (const w of workers) {
      if (this.holds?.waiting(w.id) || a.record.owing(w.id) > 0) continue;
      const max = w.capabilities.maxBatch;
      const node = pending.find((n) => max <= 0 || a.record.samplesOf(n) <= max);
      if (!node) {
        this.unfit.add(w.id); // the next split gives it a share cut to its size
        continue;
      }
      a.log.info({ workerId: w.id, node: showNode(node), owners: a.record.ownersOf(node) }, 'worker on probation: computing a copy');
      a.record.give(node, w.id);
      void this.send(a, w, [node]);
      this.estimates.probe(w.id, a.spec.seq, node, a.record.samplesOf(node), Date.now());
      made++;
    }
    return made;
  }

  /**
   * Send `w` the parameters if it lacks them, then one Work frame with `nodes` (given to it in the
   * record). Resolves when the socket has taken both (ws send callbacks). A hand-out to a worker
   * owing nothing starts its busy period, and the time its socket takes to take the bytes is
   * measured (worker-estimates.ts); every hand-out restarts its hold clock (stalls.ts).
   */
  send(a: RequestContext, w: WorkerConn, nodes: readonly TreeNode[]): Promise<unknown> {
    if (nodes.length === 0) return Promise.resolve();
    const { input, spec, record } = a;
    const now = Date.now();
    const token = record.owing(w.id) === 0 ? this.estimates.start(w.id, now) : null;
    let samples = 0;
    for (const n of nodes) samples += record.samplesOf(n);
    this.holds?.handedOut(w.id, samples, now);
    let paramsBytes: Promise<number> = Promise.resolve(0);
    let paramsSent: Promise<unknown> | null = null;
    if (w.paramsVersion !== spec.version) {
      // The request's version was encoded when it began (`run`); the trainer may have updated
      // `input.params` part by part since (publish), so its frames are what the worker needs.
      const out = this.params.sendVersion(w, spec.version);
      if (!out) throw new GradhubError(ErrorCode.E_INTERNAL, `parameters v${spec.version} of request ${spec.seq} are no longer encoded`);
      paramsBytes = out.bytes;
      paramsSent = Promise.all(out.sends);
    }
    const work = encodeWork(spec, nodes, input.pixels, input.labels);
    record.sent(w.id, work.nodes, now);
    w.logger.debug({ step: spec.step, seq: spec.seq, nodes: work.nodes.map(showNode), samples: work.samples }, 'work sent');
    // Behind any Params part still being packed for this worker (param-distribution.ts): in order.
    const queued = this.params.whenQueued(w.id);
    const workSent = queued ? queued.then(() => w.send(work.frame)) : w.send(work.frame);
    this.report(w, a);
    const all = paramsSent ? Promise.all([paramsSent, workSent]) : workSent;
    if (token !== null) void Promise.all([all, paramsBytes]).then(([, b]) => this.estimates.written(w.id, token, b + work.frame.byteLength, Date.now()));
    return all;
  }

  /** Give incomplete nodes nobody holds to the workers that would finish them first (scheduler), and send them. */
  placeOrphans(a: RequestContext, exclude?: ReadonlySet<number>): void {
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
      a.log.info({ workerId: id, nodes: nodes.map(showNode) }, 'nodes reassigned');
      void this.send(a, byId.get(id)!, nodes);
    }
  }

  /**
   * Take the incomplete nodes worker `id` holds away from it (it stalled: stalls.ts) and give them
   * to the others (scheduler `placeOrphans`). It still owes them, so its late answer is dropped
   * quietly. The nodes taken; none when no other worker is there to take them (it keeps them).
   */
  reclaim(a: RequestContext, id: number): TreeNode[] {
    if (!this.membership.workers().some((w) => w.id !== id)) return [];
    const nodes = a.record.ownedBy(id);
    for (const n of nodes) a.record.revoke(n, id);
    this.placeOrphans(a, new Set([id]));
    return nodes;
  }

  /** Give nodes outstanding `afterMs` to idle workers as well, the fastest first (first result wins); the copies made. */
  speculate(a: RequestContext, afterMs: number): number {
    const idle = this.membership.workers()
      .filter((w) => a.record.owing(w.id) === 0)
      .sort((x, y) => (this.estimates.speed(y.id) ?? 0) - (this.estimates.speed(x.id) ?? 0) || x.id - y.id);
    const byId = new Map(idle.map((w) => [w.id, w]));
    const copies = speculativeCopies(a.record, idle.map((w) => ({ id: w.id, maxBatch: w.capabilities.maxBatch })), Date.now(), afterMs);
    for (const { node, workerId } of copies) {
      a.log.info({ workerId, node: showNode(node), owner: a.record.ownersOf(node)[0] }, 'slow node: computing a copy on an idle worker');
      a.record.give(node, workerId);
      void this.send(a, byId.get(workerId)!, [node]);
    }
    return copies.length;
  }

  /** Worker `id` is gone. */
  forget(id: number): void {
    this.unfit.delete(id);
  }

  /** Update `w`'s row in the status sink (`a`: the request in progress, or null). */
  report(w: WorkerConn, a: RequestContext | null): void {
    this.rows.report(w, this.estimates.speed(w.id), (a?.record.owing(w.id) ?? 0) > 0);
  }
}
