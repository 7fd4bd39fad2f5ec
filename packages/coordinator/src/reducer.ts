/**
 * The reducer: validates workers' node results and combines them along the canonical tree.
 * A pure data structure (no I/O, no clocks); the cluster executor drives it.
 *
 * Contract (DESIGN invariants 3, 4, 7):
 * - One request at a time: `begin({seq, ...})` ... `end()`. `seq` increases within a coordinator
 *   incarnation. The executor `give`s tree nodes to workers (a node may have several owners: a
 *   speculative copy or a recompute) and `revoke`s them when a worker is lost.
 * - `accept(workerId, result)` decides, in this order:
 *   - a result for an older or finished request: dropped quietly ('stale'), counted;
 *   - for a request not issued yet: rejected FUTURE_STEP;
 *   - another parameter version than the request's: rejected WRONG_PARAM_VERSION;
 *   - a node that is not a tree node or was never given to this worker: rejected UNKNOWN_NODE;
 *   - gradient bytes that do not match `part` (today: the whole buffer [0, paramCount) for
 *     'train', nothing for 'eval'): rejected BAD_GRADIENT_LENGTH; impossible sums: BAD_RESULT;
 *   - a node already complete, or taken from this worker: dropped quietly ('duplicate' /
 *     'reassigned'), counted; an honest straggler is not punished;
 *   - a NaN or infinity in the gradient or the sums: 'non-finite' (the executor has the node
 *     recomputed on another worker); if the node already came back non-finite once: 'diverged'.
 *   - otherwise the node is accepted and combined with its sibling as soon as both are there,
 *     S(parent) = S(left) + S(right) in float32, up to the root. Loss and denominator sums
 *     combine in the same order in float64 (left + right), correct counts as integers. So the
 *     root is bit for bit what one engine computes on the whole batch, whatever the split, the
 *     arrival order or the reassignments.
 * - The gradient bytes (`ResultIn.grad`) are read where they arrived, in one or more pieces of any
 *   alignment (the socket's fragments; pieces that are not 4-byte aligned, or floats split
 *   between two pieces, go through a 64 KiB scratch buffer), in one pass that checks every value
 *   is finite while it either copies the gradient into a pool buffer (no sibling waiting yet) or
 *   writes incoming + sibling into a pool buffer (the sibling is waiting): the incoming bytes are
 *   never copied first, and a non-finite value leaves the waiting sibling untouched. Float32
 *   addition is commutative (IEEE 754: a + b and b + a are the same bits), so incoming + waiting
 *   is S(left) + S(right) whichever arrived first; higher levels use `addSiblings`.
 * - Memory: a node waiting for its sibling holds one buffer (paramCount floats); combining frees
 *   the waiting sibling's buffer (or the right operand's) into the pool. Buffers are reused
 *   across requests; a request allocates nothing once the pool is warm. The reducer does not refuse results (they are in
 *   memory once received); it reports `held` and `overBudget` (held >= maxHeld) and `frontier()`,
 *   the leftmost incomplete node. The executor keeps the memory bounded independently of the
 *   number of workers: it reads the sockets of at most maxHeld - held workers that owe results
 *   (leftmost nodes first), and while over budget only those of the frontier's owners, pausing
 *   the others, so results arrive in tree order, and in tree order a result waits only when it
 *   is a left child whose right sibling is not complete: at most one per tree level. Held
 *   buffers therefore stay below maxHeld + depth + 1, and results being received below maxHeld
 *   (a socket paused mid-result keeps that part of it until it is read again).
 * - The root buffer returned by `result()` belongs to the reducer: valid until the next `begin`.
 */
import { gradhub } from '@gradhub/proto';
import { addSiblings, chunkCount, isTreeNode, nodeSamples, parentOf, treeMid, type TreeNode } from '@gradhub/core';

type WireCode = gradhub.ErrorCode;
const W = gradhub.ErrorCode;

export interface RequestSpec {
  /** Request number, increasing within an incarnation (Work.seq). */
  readonly seq: number;
  /** Trainer step (for logs). */
  readonly step: number;
  /** Parameter version the results must be computed against. */
  readonly version: number;
  readonly mode: 'train' | 'eval';
  /** Samples in the batch, and per chunk. */
  readonly batch: number;
  readonly chunk: number;
}

/** A worker's result, as decoded from the wire (absent messages are null). */
export interface ResultIn {
  readonly seq: number;
  readonly version: number;
  readonly node: { readonly lo: number; readonly hi: number } | null;
  readonly part: { readonly offset: number; readonly length: number } | null;
  /** 4 x part.length bytes, float32 little-endian, whole or in pieces (any alignment; read, never kept). */
  readonly grad: Uint8Array | readonly Uint8Array[];
  readonly lossSum: number;
  readonly denomSum: number;
  readonly correct: number;
}

export type DropReason = 'stale' | 'reassigned' | 'duplicate';

export type Verdict =
  | { readonly kind: 'accepted'; readonly node: TreeNode; readonly done: boolean }
  | { readonly kind: 'dropped'; readonly reason: DropReason }
  | { readonly kind: 'rejected'; readonly code: WireCode; readonly message: string }
  | { readonly kind: 'non-finite'; readonly node: TreeNode }
  | { readonly kind: 'diverged'; readonly node: TreeNode; readonly message: string };

export interface ReducerStats {
  accepted: number;
  dropped: Record<DropReason, number>;
  rejected: number;
  nonFinite: number;
  /** Most gradient buffers in use at once (waiting nodes + the one being accepted), over the reducer's life. */
  peakHeld: number;
  /** Gradient buffers ever allocated (the pool's size). */
  buffers: number;
}

export interface ReducerOptions {
  /** Floats in the flat gradient (ModelSpec.paramCount). */
  readonly paramCount: number;
  /** Buffers of waiting nodes past which the executor reads in tree order. Default 8, at least 2. */
  readonly maxHeld?: number;
}

/** Sums of a (partial) tree node. */
interface Slot {
  readonly lo: number;
  readonly hi: number;
  readonly buf: Float32Array | null;
  readonly lossSum: number;
  readonly denomSum: number;
  readonly correct: number;
}

interface NodeRec {
  readonly node: TreeNode;
  readonly samples: number;
  /** Workers that currently hold it. */
  readonly owners: Set<number>;
  /** Workers it was ever given to in this request. */
  readonly given: Set<number>;
  done: boolean;
  nonFinite: number;
}

export interface RootSums {
  readonly grad: Float32Array | null;
  readonly lossSum: number;
  readonly denomSum: number;
  readonly correct: number;
}

export class Reducer {
  readonly paramCount: number;
  readonly maxHeld: number;
  readonly stats: ReducerStats = {
    accepted: 0, dropped: { stale: 0, reassigned: 0, duplicate: 0 }, rejected: 0, nonFinite: 0, peakHeld: 0, buffers: 0,
  };

  private req: RequestSpec | null = null;
  private nChunks = 0;
  private lastSeq = 0;
  private readonly recs = new Map<number, NodeRec>();
  private readonly slots = new Map<number, Slot>();
  private root: Slot | null = null;
  private readonly free: Float32Array[] = [];
  /** Unaligned gradient bytes pass through here (see the module comment). */
  private readonly scratch = new Float32Array(16 * 1024);

  constructor(opts: ReducerOptions) {
    if (!Number.isInteger(opts.paramCount) || opts.paramCount < 1) throw new RangeError(`Reducer: paramCount must be a positive integer, got ${opts.paramCount}`);
    const maxHeld = opts.maxHeld ?? 8;
    if (!Number.isInteger(maxHeld) || maxHeld < 2) throw new RangeError(`Reducer: maxHeld must be an integer >= 2, got ${maxHeld}`);
    this.paramCount = opts.paramCount;
    this.maxHeld = maxHeld;
  }

  /** The request in progress, or null. */
  get request(): RequestSpec | null {
    return this.req;
  }

  /** Chunks of the request in progress. */
  get chunks(): number {
    return this.nChunks;
  }

  /** Gradient buffers held by nodes waiting for a sibling. */
  get held(): number {
    let n = 0;
    for (const s of this.slots.values()) if (s.buf) n++;
    return n;
  }

  /** True when the executor should read in tree order (see the module comment). */
  get overBudget(): boolean {
    return this.held >= this.maxHeld;
  }

  /** True once the root is complete. */
  get done(): boolean {
    return this.root !== null;
  }

  /** Start a request. The previous request's root buffer returns to the pool. */
  begin(spec: RequestSpec): void {
    if (this.req) throw new RangeError(`Reducer.begin: request ${this.req.seq} is still open`);
    if (!Number.isInteger(spec.seq) || spec.seq <= this.lastSeq) throw new RangeError(`Reducer.begin: seq ${spec.seq} does not follow ${this.lastSeq}`);
    if (!Number.isInteger(spec.batch) || spec.batch < 1 || !Number.isInteger(spec.chunk) || spec.chunk < 1) {
      throw new RangeError(`Reducer.begin: bad batch ${spec.batch} / chunk ${spec.chunk}`);
    }
    if (this.root?.buf) this.release(this.root.buf);
    this.root = null;
    this.req = spec;
    this.lastSeq = spec.seq;
    this.nChunks = chunkCount(spec.batch, spec.chunk);
  }

  /** Close the request: later results for it are stale. Buffers of unfinished nodes return to the pool. */
  end(): void {
    for (const s of this.slots.values()) if (s.buf) this.release(s.buf);
    this.slots.clear();
    this.recs.clear();
    this.req = null;
  }

  /** Give `node` to `workerId` (initial assignment, takeover, recompute or speculative copy). */
  give(node: TreeNode, workerId: number): void {
    const req = this.mustBeOpen('give');
    if (!isTreeNode(node, this.nChunks)) throw new RangeError(`Reducer.give: [${node.lo},${node.hi}) is not a node of the tree over ${this.nChunks} chunks`);
    const k = this.key(node.lo, node.hi);
    let rec = this.recs.get(k);
    if (!rec) {
      for (const r of this.recs.values()) {
        if (node.lo < r.node.hi && r.node.lo < node.hi) {
          throw new RangeError(`Reducer.give: [${node.lo},${node.hi}) overlaps the given node [${r.node.lo},${r.node.hi})`);
        }
      }
      const { start, end } = nodeSamples(node, req.batch, req.chunk);
      rec = { node: { lo: node.lo, hi: node.hi }, samples: end - start, owners: new Set(), given: new Set(), done: false, nonFinite: 0 };
      this.recs.set(k, rec);
    }
    rec.owners.add(workerId);
    rec.given.add(workerId);
  }

  /** `workerId` no longer holds `node` (lost, or its result was non-finite). */
  revoke(node: TreeNode, workerId: number): void {
    this.recs.get(this.key(node.lo, node.hi))?.owners.delete(workerId);
  }

  /** Incomplete nodes held by `workerId`. */
  ownedBy(workerId: number): TreeNode[] {
    const out: TreeNode[] = [];
    for (const r of this.recs.values()) if (!r.done && r.owners.has(workerId)) out.push(r.node);
    return out;
  }

  /** Incomplete nodes nobody holds (they need a worker). */
  orphans(): TreeNode[] {
    const out: TreeNode[] = [];
    for (const r of this.recs.values()) if (!r.done && r.owners.size === 0) out.push(r.node);
    return out.sort((a, b) => a.lo - b.lo);
  }

  /** Incomplete given nodes, left to right. */
  pending(): TreeNode[] {
    const out: TreeNode[] = [];
    for (const r of this.recs.values()) if (!r.done) out.push(r.node);
    return out.sort((a, b) => a.lo - b.lo);
  }

  /** Current owners of a node. */
  ownersOf(node: TreeNode): number[] {
    return [...(this.recs.get(this.key(node.lo, node.hi))?.owners ?? [])];
  }

  /** Samples of a given node. */
  samplesOf(node: TreeNode): number {
    const req = this.mustBeOpen('samplesOf');
    const { start, end } = nodeSamples(node, req.batch, req.chunk);
    return end - start;
  }

  /** The leftmost incomplete given node (the one reading in tree order waits for), or null. */
  frontier(): TreeNode | null {
    let best: NodeRec | null = null;
    for (const r of this.recs.values()) if (!r.done && (best === null || r.node.lo < best.node.lo)) best = r;
    return best ? best.node : null;
  }

  /** Judge one result (see the module comment). */
  accept(workerId: number, r: ResultIn): Verdict {
    const req = this.req;
    if (r.seq > this.lastSeq) return this.reject(W.FUTURE_STEP, `result for request ${r.seq}, the latest issued is ${this.lastSeq}`);
    if (req === null || r.seq < req.seq || this.root !== null) return this.drop('stale');
    if (r.version !== req.version) return this.reject(W.WRONG_PARAM_VERSION, `result computed on parameters v${r.version}, request ${req.seq} is on v${req.version}`);
    const node = r.node;
    const rec = node && Number.isInteger(node.lo) && Number.isInteger(node.hi) ? this.recs.get(this.key(node.lo, node.hi)) : undefined;
    if (!node || !rec || !rec.given.has(workerId)) {
      return this.reject(W.UNKNOWN_NODE, node ? `node [${node.lo},${node.hi}) was not given to this worker in request ${req.seq}` : 'result without a node');
    }
    const train = req.mode === 'train';
    const partLength = r.part?.length ?? 0;
    const partOffset = r.part?.offset ?? 0;
    const wantLength = train ? this.paramCount : 0;
    const pieces: readonly Uint8Array[] = r.grad instanceof Uint8Array ? [r.grad] : r.grad;
    let gradBytes = 0;
    for (const p of pieces) gradBytes += p.byteLength;
    if (partOffset !== 0 || partLength !== wantLength || gradBytes !== 4 * wantLength) {
      return this.reject(W.BAD_GRADIENT_LENGTH, `part [${partOffset}, +${partLength}) with ${gradBytes} gradient bytes; ${req.mode} results carry ${4 * wantLength} bytes (part [0, +${wantLength}))`);
    }
    if (!Number.isInteger(r.correct) || r.correct < 0 || r.correct > rec.samples || r.denomSum < 0) {
      return this.reject(W.BAD_RESULT, `correct ${r.correct} / denominator ${r.denomSum} impossible for ${rec.samples} samples`);
    }
    if (rec.done) return this.drop(rec.owners.has(workerId) ? 'duplicate' : 'reassigned');
    if (!rec.owners.has(workerId)) return this.drop('reassigned');

    let buf: Float32Array | null = null;
    let withSibling = false;
    let finite = Number.isFinite(r.lossSum) && Number.isFinite(r.denomSum);
    if (train && finite) {
      const sib = this.slots.get(this.siblingKey(rec.node));
      buf = this.acquire();
      if (sib?.buf) {
        finite = addChecked(buf, sib.buf, pieces, this.scratch);
        withSibling = true;
      } else {
        finite = copyChecked(buf, pieces, this.scratch);
      }
    }
    if (!finite) {
      if (buf) this.release(buf);
      rec.nonFinite++;
      rec.owners.delete(workerId);
      this.stats.nonFinite++;
      if (rec.nonFinite >= 2) {
        return { kind: 'diverged', node: rec.node, message: `node [${rec.node.lo},${rec.node.hi}) of step ${req.step} is non-finite on two workers: the model has diverged` };
      }
      return { kind: 'non-finite', node: rec.node };
    }
    rec.done = true;
    this.stats.accepted++;
    // The peak is now: the waiting buffers plus this one, before combining frees any.
    if (buf) this.stats.peakHeld = Math.max(this.stats.peakHeld, this.held + 1);
    this.insert({ lo: rec.node.lo, hi: rec.node.hi, buf, lossSum: r.lossSum, denomSum: r.denomSum, correct: r.correct }, withSibling);
    return { kind: 'accepted', node: rec.node, done: this.done };
  }

  /** The root's sums, once `done`. The gradient buffer is valid until the next `begin`. */
  result(): RootSums {
    if (!this.root) throw new RangeError('Reducer.result: the root is not complete');
    return { grad: this.root.buf, lossSum: this.root.lossSum, denomSum: this.root.denomSum, correct: this.root.correct };
  }

  /** Key of the sibling of `node` (which is not the root). */
  private siblingKey(node: TreeNode): number {
    const parent = parentOf(node, this.nChunks);
    if (!parent) return -1;
    const mid = treeMid(parent.lo, parent.hi);
    return node.lo === parent.lo ? this.key(mid, parent.hi) : this.key(parent.lo, mid);
  }

  /**
   * Store a node's sums, combining with siblings up the tree while they are there. With
   * `gradSummed`, `slot.buf` already holds the gradient plus its waiting sibling's (accept).
   */
  private insert(slot: Slot, gradSummed = false): void {
    let cur = slot;
    let summed = gradSummed;
    for (;;) {
      if (cur.lo === 0 && cur.hi === this.nChunks) {
        this.root = cur;
        return;
      }
      const parent = parentOf(cur, this.nChunks)!;
      const mid = treeMid(parent.lo, parent.hi);
      const isLeft = cur.lo === parent.lo;
      const sibKey = isLeft ? this.key(mid, parent.hi) : this.key(parent.lo, mid);
      const sib = this.slots.get(sibKey);
      if (!sib) {
        this.slots.set(this.key(cur.lo, cur.hi), cur);
        return;
      }
      this.slots.delete(sibKey);
      const l = isLeft ? cur : sib;
      const r = isLeft ? sib : cur;
      let buf = l.buf;
      if (summed) {
        buf = cur.buf;
        if (sib.buf) this.release(sib.buf);
        summed = false;
      } else if (l.buf && r.buf) {
        addSiblings(l.buf, l.buf, r.buf);
        this.release(r.buf);
      }
      cur = { lo: parent.lo, hi: parent.hi, buf, lossSum: l.lossSum + r.lossSum, denomSum: l.denomSum + r.denomSum, correct: l.correct + r.correct };
    }
  }

  private key(lo: number, hi: number): number {
    return lo * (this.nChunks + 1) + hi;
  }

  private mustBeOpen(what: string): RequestSpec {
    if (!this.req) throw new RangeError(`Reducer.${what}: no request is open`);
    return this.req;
  }

  private drop(reason: DropReason): Verdict {
    this.stats.dropped[reason]++;
    return { kind: 'dropped', reason };
  }

  private reject(code: WireCode, message: string): Verdict {
    this.stats.rejected++;
    return { kind: 'rejected', code, message };
  }

  private acquire(): Float32Array {
    const b = this.free.pop();
    if (b) return b;
    this.stats.buffers++;
    return new Float32Array(this.paramCount);
  }

  private release(b: Float32Array): void {
    this.free.push(b);
  }
}

/**
 * Call `fn(src, at)` over the float32 values of `pieces` in order, as aligned Float32Arrays (views of
 * the pieces where they are 4-byte aligned, else blocks of `scratch`); `at` is the index of
 * src[0]. Stops and returns false when `fn` does. The pieces' total length is a multiple of 4.
 */
function eachBlock(pieces: readonly Uint8Array[], scratch: Float32Array, fn: (src: Float32Array, at: number) => boolean): boolean {
  const s8 = new Uint8Array(scratch.buffer, scratch.byteOffset, scratch.byteLength);
  let fill = 0; // bytes waiting in scratch
  let at = 0;
  for (const p of pieces) {
    const len = p.byteLength;
    let off = 0;
    while (off < len) {
      if (fill === 0 && ((p.byteOffset + off) & 3) === 0 && len - off >= 4) {
        const n = (len - off) >>> 2;
        if (!fn(new Float32Array(p.buffer, p.byteOffset + off, n), at)) return false;
        at += n;
        off += 4 * n;
        continue;
      }
      const take = Math.min(s8.byteLength - fill, len - off);
      s8.set(p.subarray(off, off + take), fill);
      fill += take;
      off += take;
      if (fill % 4 === 0) {
        const n = fill >>> 2;
        if (!fn(n === scratch.length ? scratch : scratch.subarray(0, n), at)) return false;
        at += n;
        fill = 0;
      }
    }
  }
  return true;
}

// The checks below accumulate v - v, which is +0 for every finite v and NaN once any v is NaN or
// infinite: no branch per value; a block with a non-finite value is reported after it is written
// to `dst`, which the caller then discards.

/** dst = the gradient in `pieces`, checking every value is finite (false if one is not; dst is then garbage). */
function copyChecked(dst: Float32Array, pieces: readonly Uint8Array[], scratch: Float32Array): boolean {
  return eachBlock(pieces, scratch, (src, at) => {
    const n = src.length;
    let acc = 0;
    for (let i = 0; i < n; i++) {
      const v = src[i];
      acc += v - v;
      dst[at + i] = v;
    }
    return acc === 0;
  });
}

/** dst = held + the gradient in `pieces` (float32), checking every incoming value is finite (false if one is not; dst is then garbage, `held` is never written). */
function addChecked(dst: Float32Array, held: Float32Array, pieces: readonly Uint8Array[], scratch: Float32Array): boolean {
  return eachBlock(pieces, scratch, (src, at) => {
    const n = src.length;
    let acc = 0;
    for (let i = 0; i < n; i++) {
      const v = src[i];
      acc += v - v;
      dst[at + i] = held[at + i] + v;
    }
    return acc === 0;
  });
}
