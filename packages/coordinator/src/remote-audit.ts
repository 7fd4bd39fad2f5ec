/**
 * Audits on a trusted worker (docs/design.md "Audits and exact rollback"): the auditor (audit.ts)
 * asks here first, and recomputes on its own engine only when no trusted worker can answer.
 *
 * - One trusted worker that offered Capabilities.audits is the keeper: the live one with the
 *   lowest id. While an untrusted worker is connected, the first part of each new version sent to
 *   the keeper follows a Keep{the version it held whole} on its socket (param-distribution.ts
 *   `keeper`), so it copies that version aside before the new one overwrites it. Results are
 *   computed on the version a step's Work named; their audits are decided after the step, once the
 *   next version has streamed out; the kept copy is what they need (an evaluation's audit: the
 *   version held). A worker keeps one copy: an audit whose version went out of both meanwhile is
 *   recomputed here.
 * - `recompute(job, node, parts)` sends the keeper audit Work (Work.audit: the node, its samples,
 *   the slices to hash) and resolves with its AuditResult's sums and digests (hex), or null when
 *   there is no keeper of that version, it answered `held: false`, left, or took longer than
 *   `timeoutMs`: the caller recomputes then.
 * - `answer(w, m)`: an AuditResult. One for an audit this worker was not sent, or of another node,
 *   is a protocol fault (UNEXPECTED_MESSAGE); one with the wrong number or size of digests is
 *   BAD_RESULT (the auditor recomputes that node itself).
 * Counted: `audits.remote` (answered by a trusted worker), `audits.remote_fallback` (asked, no answer).
 */
import { bytesToHex, type TreeNode } from '@gradhub/core';
import type { Logger } from 'pino';
import type { AuditJob } from './audit.js';
import type { Membership, WorkerConn } from './membership.js';
import { WireCode, encode, encodeWork, type BodyOf } from './protocol.js';

/** A trusted worker's recompute of a node: its sums and the xxh64 (hex) of each asked slice. */
export interface RemoteRecompute {
  readonly workerId: number;
  readonly lossSum: number;
  readonly denomSum: number;
  readonly correct: number;
  readonly hashes: readonly string[];
}

/** What the auditor asks of remote audits. */
export interface RemoteAuditor {
  recompute(job: AuditJob, node: TreeNode, parts: readonly { readonly offset: number; readonly length: number }[]): Promise<RemoteRecompute | null>;
}

interface Pending {
  readonly workerId: number;
  readonly node: TreeNode;
  readonly parts: number;
  readonly resolve: (r: RemoteRecompute | null) => void;
  readonly timer: NodeJS.Timeout;
}

/** Audit Work's seq space is its own (the worker neither skips it nor skips for it). */
export class RemoteAudits implements RemoteAuditor {
  private readonly kept = new Map<number, number>();
  private readonly pending = new Map<number, Pending>();
  private seq = 0;
  private readonly log: Logger;

  constructor(
    private readonly membership: Pick<Membership, 'workers'>,
    private readonly chunk: number,
    logger: Logger,
    private readonly count: (name: string) => void = () => {},
    private readonly timeoutMs = 120_000,
  ) {
    this.log = logger.child({ module: 'remote-audit' });
  }

  /** The keeper now: the live trusted worker with the lowest id that offered audits; null when none. */
  private keeper(): WorkerConn | null {
    let best: WorkerConn | null = null;
    for (const w of this.membership.workers()) {
      if (w.trusted && w.capabilities.audits && !w.gone && (best === null || w.id < best.id)) best = w;
    }
    return best;
  }

  /** Whether `w`, about to be sent a new version, should keep the one it holds (a Keep goes first): it is the keeper and a volunteer is here. */
  wantsKeep(w: WorkerConn): boolean {
    if (!w.trusted || !w.capabilities.audits) return false;
    const workers = this.membership.workers();
    return workers.some((x) => !x.trusted) && this.keeper()?.id === w.id;
  }

  /** A Keep{version} went to `w`: it holds a copy of that version from now on (until the next Keep). */
  keeping(w: WorkerConn, version: number): void {
    this.kept.set(w.id, version);
  }

  /** The Keep frame for `version`. */
  keepFrame(version: number): Uint8Array {
    return encode({ keep: { version } });
  }

  recompute(job: AuditJob, node: TreeNode, parts: readonly { readonly offset: number; readonly length: number }[]): Promise<RemoteRecompute | null> {
    const v = job.version;
    if (v === undefined) return Promise.resolve(null);
    // A trusted worker that kept the version, or holds it whole now (an evaluation's).
    const workers = this.membership.workers().filter((x) => x.trusted && x.capabilities.audits && !x.gone);
    const w = workers.find((x) => this.kept.get(x.id) === v) ?? workers.find((x) => x.paramsVersion === v);
    if (!w) return Promise.resolve(null);
    const seq = ++this.seq;
    const { frame } = encodeWork(
      { seq, step: job.step, version: v, mode: job.mode, batch: job.batch, chunk: this.chunk, round: job.round },
      [node], job.pixels, job.labels, parts,
    );
    return new Promise<RemoteRecompute | null>((resolve) => {
      const timer = setTimeout(() => this.settle(seq, null, 'no answer in time'), this.timeoutMs);
      timer.unref();
      this.pending.set(seq, { workerId: w.id, node, parts: parts.length, resolve, timer });
      void w.send(frame).then((ok) => {
        if (!ok) this.settle(seq, null, 'the send failed');
      });
    });
  }

  /** An AuditResult from `w`. */
  answer(w: WorkerConn, m: BodyOf<'auditResult'>): void {
    const seq = m.seq ?? 0;
    const p = this.pending.get(seq);
    const lo = m.node?.lo ?? 0;
    const hi = m.node?.hi ?? 0;
    if (!p || p.workerId !== w.id || p.node.lo !== lo || p.node.hi !== hi) {
      w.kick(WireCode.UNEXPECTED_MESSAGE, `an AuditResult for audit ${seq} node [${lo},${hi}), which this worker was not sent`);
      return;
    }
    if (!m.held) {
      this.settle(seq, null, 'the worker no longer holds that version');
      return;
    }
    const digests = m.digests ?? [];
    if (digests.length !== p.parts || digests.some((d) => d.byteLength !== 8)) {
      this.settle(seq, null, `${digests.length} digests for ${p.parts} parts`);
      w.kick(WireCode.BAD_RESULT, `an AuditResult with ${digests.length} digests for ${p.parts} parts`);
      return;
    }
    this.settle(seq, {
      workerId: w.id, lossSum: m.lossSum ?? 0, denomSum: m.denomSum ?? 0, correct: m.correct ?? 0, hashes: digests.map((d) => bytesToHex(d)),
    });
  }

  /** `w` is gone: its audits are recomputed by the caller. */
  lost(w: WorkerConn): void {
    this.kept.delete(w.id);
    for (const [seq, p] of this.pending) if (p.workerId === w.id) this.settle(seq, null, 'the worker left');
  }

  private settle(seq: number, r: RemoteRecompute | null, why?: string): void {
    const p = this.pending.get(seq);
    if (!p) return;
    this.pending.delete(seq);
    clearTimeout(p.timer);
    if (r) this.count('audits.remote');
    else {
      this.count('audits.remote_fallback');
      this.log.info({ workerId: p.workerId, node: `[${p.node.lo},${p.node.hi})`, why }, 'audit not answered by the trusted worker: recomputed here');
    }
    p.resolve(r);
  }
}
