/**
 * The assignment record of one request: which worker holds which node of its reduction tree.
 * Pure (no I/O, no clocks: the caller passes times in). The one place ownership lives: the
 * executor writes it (give, send, answer, lose), the reducer reads it to judge results (was the
 * node given to this worker, does it still hold it) and marks nodes complete, the scheduler reads
 * it to place orphaned nodes, flow control and speculation read it to pick workers.
 *
 * Nodes are keyed one way everywhere: `key(node)` = lo x (nChunks + 1) + hi, a number unique per
 * tree node of the request's tree; anything that is not a tree node (a malformed Result) has no
 * key (-1) and no record.
 *
 * Per node: its current owners (a node may have several: a speculative copy or a recompute),
 * every worker it was ever given to in this request (a result from one of those that no longer
 * holds it is dropped quietly, from anyone else rejected), whether it is complete, and when it was
 * last sent. Per worker: the nodes sent to it that it still has to answer ("owed"; a node stays
 * owed by each worker it went to until that worker's answer ends its part in it, even after
 * another worker completed it) and the samples they hold ("queued").
 */
import { isTreeNode, leafCount, leafSamples, type TreeNode, internalError } from '@gradhub/core';

/** The key of the chunk range [lo, hi) of a tree over nChunks chunks (0 <= lo < hi <= nChunks): the one node key. */
export function nodeKey(lo: number, hi: number, nChunks: number): number {
  return lo * (nChunks + 1) + hi;
}

interface NodeRec {
  readonly node: TreeNode;
  readonly samples: number;
  /** Workers that currently hold it. */
  readonly owners: Set<number>;
  /** Workers it was ever given to in this request. */
  readonly given: Set<number>;
  complete: boolean;
  /** When it was last sent to a worker (ms, the caller's clock), or null. */
  sentAt: number | null;
}

interface WorkerRec {
  /** Nodes sent and not answered yet: key -> first chunk. */
  readonly owed: Map<number, number>;
  /** Samples of the owed nodes. */
  queued: number;
}

export class Assignments {
  /** Chunks of the request's tree. */
  readonly nChunks: number;
  private readonly recs = new Map<number, NodeRec>();
  private readonly workers = new Map<number, WorkerRec>();

  /**
   * The record of a request of `batch` samples in chunks of `chunk`, or in the leaves `offsets`
   * gives (a round: one leaf per replica; core LeafShape).
   */
  constructor(readonly batch: number, readonly chunk: number, readonly offsets: ArrayLike<number> | null = null) {
    if (!Number.isInteger(batch) || batch < 1 || !Number.isInteger(chunk) || chunk < 1) throw internalError(`Assignments: bad batch ${batch} / chunk ${chunk}`);
    if (offsets && (offsets.length < 2 || offsets[0] !== 0 || offsets[offsets.length - 1] !== batch)) throw internalError(`Assignments: leaf offsets do not span the batch of ${batch}`);
    this.nChunks = leafCount({ batch, chunk, offsets });
  }

  /**
   * The node's key: unique per chunk range inside the request's (so per tree node); -1 for a range
   * outside it. Only tree nodes are ever given, so a range that is not one finds no record.
   */
  key(node: TreeNode): number {
    const { lo, hi } = node;
    return Number.isInteger(lo) && Number.isInteger(hi) && lo >= 0 && lo < hi && hi <= this.nChunks ? nodeKey(lo, hi, this.nChunks) : -1;
  }

  /** Give `node` to `workerId` (initial assignment, takeover, recompute or speculative copy). */
  give(node: TreeNode, workerId: number): void {
    const k = this.key(node);
    if (k < 0 || !isTreeNode(node, this.nChunks)) throw internalError(`Assignments.give: [${node.lo},${node.hi}) is not a node of the tree over ${this.nChunks} chunks`);
    let rec = this.recs.get(k);
    if (!rec) {
      for (const r of this.recs.values()) {
        if (node.lo < r.node.hi && r.node.lo < node.hi) {
          throw internalError(`Assignments.give: [${node.lo},${node.hi}) overlaps the given node [${r.node.lo},${r.node.hi})`);
        }
      }
      rec = { node: { lo: node.lo, hi: node.hi }, samples: this.samplesOf(node), owners: new Set(), given: new Set(), complete: false, sentAt: null };
      this.recs.set(k, rec);
    }
    rec.owners.add(workerId);
    rec.given.add(workerId);
  }

  /** `workerId` no longer holds `node` (lost, or its result was non-finite). */
  revoke(node: TreeNode, workerId: number): void {
    this.recs.get(this.key(node))?.owners.delete(workerId);
  }

  /** The given node with key `k` (as first given), or null. */
  nodeAt(k: number): TreeNode | null {
    return this.recs.get(k)?.node ?? null;
  }

  /** True when node `k` was ever given to `workerId` in this request. */
  wasGiven(k: number, workerId: number): boolean {
    return this.recs.get(k)?.given.has(workerId) ?? false;
  }

  /** True when `workerId` holds node `k` now. */
  holds(k: number, workerId: number): boolean {
    return this.recs.get(k)?.owners.has(workerId) ?? false;
  }

  /** Node `k` is complete (the reducer has all of it). */
  markComplete(k: number): void {
    const rec = this.recs.get(k);
    if (rec) rec.complete = true;
  }

  isComplete(k: number): boolean {
    return this.recs.get(k)?.complete ?? false;
  }

  /** Samples of a node of this request. */
  samplesOf(node: TreeNode): number {
    const { start, end } = leafSamples(node, this);
    return end - start;
  }

  /** Current owners of a node. */
  ownersOf(node: TreeNode): number[] {
    return [...(this.recs.get(this.key(node))?.owners ?? [])];
  }

  /** Incomplete nodes held by `workerId`. */
  ownedBy(workerId: number): TreeNode[] {
    return this.incomplete((r) => r.owners.has(workerId), false);
  }

  /** Incomplete nodes nobody holds (they need a worker), left to right. */
  orphans(): TreeNode[] {
    return this.incomplete((r) => r.owners.size === 0, true);
  }

  /** Incomplete given nodes, left to right. */
  pending(): TreeNode[] {
    return this.incomplete(() => true, true);
  }

  /** The leftmost incomplete given node (the one reading in tree order waits for), or null. */
  frontier(): TreeNode | null {
    let best: NodeRec | null = null;
    for (const r of this.recs.values()) if (!r.complete && (best === null || r.node.lo < best.node.lo)) best = r;
    return best ? best.node : null;
  }

  /** `nodes` went out to `workerId` at `now`: it owes an answer for each. */
  sent(workerId: number, nodes: readonly TreeNode[], now: number): void {
    let w = this.workers.get(workerId);
    if (!w) this.workers.set(workerId, (w = { owed: new Map(), queued: 0 }));
    for (const n of nodes) {
      const k = this.key(n);
      if (!w.owed.has(k)) w.queued += this.samplesOf(n); // sent again (a node given back): owed once
      w.owed.set(k, n.lo);
      const rec = this.recs.get(k);
      if (rec) rec.sentAt = now;
    }
  }

  /** True when `workerId` owes an answer for `node`. */
  owes(workerId: number, node: TreeNode): boolean {
    return this.workers.get(workerId)?.owed.has(this.key(node)) ?? false;
  }

  /** `workerId`'s answer ended its part in `node`: it no longer owes it. The node's samples, or -1 when it did not owe it. */
  answered(workerId: number, node: TreeNode): number {
    const w = this.workers.get(workerId);
    if (!w || !w.owed.delete(this.key(node))) return -1;
    const samples = this.samplesOf(node);
    w.queued -= samples;
    return samples;
  }

  /** Nodes `workerId` owes answers for. */
  owing(workerId: number): number {
    return this.workers.get(workerId)?.owed.size ?? 0;
  }

  /** The first chunk of the leftmost node `workerId` owes (Infinity when none). */
  firstOwed(workerId: number): number {
    return Math.min(...(this.workers.get(workerId)?.owed.values() ?? []));
  }

  /** Samples of the nodes `workerId` owes. */
  queued(workerId: number): number {
    return this.workers.get(workerId)?.queued ?? 0;
  }

  /** True when `workerId` was sent work in this request (and was not lost since). */
  hasWorker(workerId: number): boolean {
    return this.workers.has(workerId);
  }

  /** Workers sent work in this request (and not lost since). */
  get workerCount(): number {
    return this.workers.size;
  }

  /** When `node` was last sent, or null. */
  sentAt(node: TreeNode): number | null {
    return this.recs.get(this.key(node))?.sentAt ?? null;
  }

  /** `workerId` is lost: it owes nothing and holds nothing. The incomplete nodes it held. */
  lose(workerId: number): TreeNode[] {
    this.workers.delete(workerId);
    const nodes = this.ownedBy(workerId);
    for (const n of nodes) this.revoke(n, workerId);
    return nodes;
  }

  private incomplete(keep: (r: NodeRec) => boolean, sorted: boolean): TreeNode[] {
    const out: TreeNode[] = [];
    for (const r of this.recs.values()) if (!r.complete && keep(r)) out.push(r.node);
    return sorted ? out.sort((a, b) => a.lo - b.lo) : out;
  }
}
