/**
 * The reducer: validates workers' node results and combines them along the canonical tree.
 * A pure data structure (no I/O, no clocks); the cluster executor drives it.
 *
 * Contract (docs/design.md invariants 3 (canonical reduction tree), 4 (replicas agree), 7 (nothing from a bad peer reaches the model)):
 * - One request at a time: `begin({seq, ...})` ... `end()`. `seq` increases within a coordinator
 *   incarnation. Who holds which node is the request's assignment record (assignments.ts): the
 *   executor gives nodes to workers there (a node may have several owners: a speculative copy or
 *   a recompute); the reducer reads it to judge results, marks in it the nodes that become
 *   complete, and takes a node from a worker whose result is non-finite. The reducer itself
 *   keeps only what the sums need: per given node, the parts in and its sums.
 * - The gradient is reduced per part: the model's stream parts (`parts`: core streamParts, each
 *   layer or block of a big layer's rows, contiguous, covering [0, paramCount); default one part,
 *   the whole gradient). A 'train' result carries either the whole gradient (part
 *   [0, paramCount): split into the parts' byte ranges here, without copying) or exactly one
 *   part, so a worker can send each part as soon as its backward is done. Every message of a node
 *   carries the node's loss, denominator and correct sums. 'eval' results carry sums only (part
 *   length 0).
 * - `accept(workerId, result)` decides, in this order:
 *   - a result for an older or finished request: dropped quietly ('stale'), counted;
 *   - for a request not issued yet: rejected FUTURE_STEP;
 *   - another parameter version than the request's: rejected WRONG_PARAM_VERSION;
 *   - a node that is not a tree node or was never given to this worker: rejected UNKNOWN_NODE;
 *   - a part that is neither the whole gradient nor one stream part for 'train' (nothing for
 *     'eval'), or gradient bytes other than 4 x part.length: rejected BAD_GRADIENT_LENGTH;
 *     impossible sums: BAD_RESULT;
 *   - a node taken from this worker: dropped quietly ('reassigned'), counted;
 *   - sums other than those of the node's first accepted message (float64 values compared with
 *     Object.is; computing is deterministic, so an honest worker cannot differ): from the worker
 *     that sent that message, BAD_RESULT (it contradicts itself); from another worker,
 *     'disputed' with both claims (non-finite sums are not compared: they are a non-finite
 *     answer, below): one of them lied, and the first is not more credible than the
 *     second, so only trusted compute can say which (the executor ends the request, the trainer
 *     has the auditor recompute the node, bans the liar and does the step again);
 *   - a node already complete, or a message all of whose parts are already in: dropped quietly
 *     ('duplicate'), counted; an honest straggler is not punished. The parts of a message that
 *     are already in are skipped (the message counts once as 'duplicate'), the others go on;
 *   - a NaN or infinity in the message's new gradient parts or in its sums: 'non-finite' (the
 *     executor has the node recomputed on another worker; nothing of the message is kept, the
 *     node's parts accepted before stay: the recompute's copies of them are duplicates); if the
 *     node already came back non-finite from another worker: 'diverged' (two different workers'
 *     answers: one worker alone, however often it answers non-finite, cannot end the run; later
 *     this should take a trusted worker's answer);
 *   - otherwise the message is accepted. Each part of each node is combined with its sibling's
 *     as soon as both are there, S(parent) = S(left) + S(right) in float32, up to that part's
 *     root: every layer has its own tree and completes on its own. The sums combine once per
 *     node in the same tree order in float64 (left + right), correct counts as integers. So each
 *     layer's root is bit for bit what one engine computes on the whole batch, whatever the
 *     split, the cut into parts, the arrival order or the reassignments. The verdict says
 *     whether the node is now complete (`nodeDone`: all its parts and its sums in), which layers' roots became
 *     complete with it (`rootParts`, each reported once), and whether the request is `done`
 *     (every layer's root and the root sums complete).
 * - Gradient bytes (`ResultIn.grad`) are read where they arrived, in one or more pieces of any
 *   alignment (the socket's fragments), by a GradPool (core grad-pool.ts, WebAssembly SIMD where
 *   supported; one pool per distinct part length) in one pass per part that checks every value
 *   is finite while it either copies the part into a pool buffer (no sibling waiting yet) or
 *   writes incoming + sibling into a third buffer (the sibling is waiting): a non-finite value
 *   leaves the waiting sibling untouched. Float32 addition is commutative (IEEE 754: a + b and
 *   b + a are the same bits), so incoming + waiting is S(left) + S(right) whichever arrived first.
 * - Memory, in gradient-equivalents (floats / paramCount; fractional with several parts): a node
 *   part waiting for its sibling holds one buffer of the part's length; combining frees the
 *   waiting sibling's buffer (or the right operand's) into its pool. Buffers are reused across
 *   requests; a request allocates nothing once the pools are warm. `held` counts the buffers of
 *   waiting node parts (not the roots); `stats.peakHeld` the most held at once, counting the
 *   message being accepted; `stats.buffers` what the pools ever allocated. The reducer does not
 *   refuse results (they are in memory once received); it reports `held` and `overBudget`
 *   (held >= maxHeld) and `frontier()`, the leftmost incomplete node. The executor keeps the
 *   memory bounded independently of the number of workers: it reads the sockets of at most
 *   maxHeld - held workers that owe results (leftmost nodes first), and while over budget only
 *   those of the frontier's owners, pausing the others, so results arrive in tree order, and in
 *   tree order a result waits only when it is a left child whose right sibling is not complete:
 *   at most one per tree level. Held buffers therefore stay below maxHeld + depth + 1, and
 *   results being received below maxHeld (a socket paused mid-result keeps that part of it until
 *   it is read again).
 * - The root buffers returned by `result()` and `rootPart(i)` belong to the reducer: valid until
 *   the next `begin`.
 */
import { gradhub } from '@gradhub/proto';
import { Assignments, nodeKey } from './assignments.js';
import { leafShapeOf, type BodyOf, type WorkHeader } from './protocol.js';
import { carriesTensor } from './executor.js';
import { createGradPool, leafCount, parentOf, treeMid, type FlatRange, type GradPool, type NodeSums, type TreeNode, internalError } from '@gradhub/core';

type WireCode = gradhub.ErrorCode;
const W = gradhub.ErrorCode;

/** The request a reducer sums (the header of its Work frames): seq, step, version, mode, batch, chunk. */
export type RequestSpec = WorkHeader;

/** A worker's result, as decoded from the wire (absent messages are null). */
export interface ResultIn {
  readonly seq: number;
  readonly version: number;
  readonly node: { readonly lo: number; readonly hi: number } | null;
  /** The whole gradient [0, paramCount) or one stream part, in floats ('eval': length 0). */
  readonly part: { readonly offset: number; readonly length: number } | null;
  /** 4 x part.length bytes, float32 little-endian, whole or in pieces (any alignment; read, never kept). */
  readonly grad: Uint8Array | readonly Uint8Array[];
  readonly lossSum: number;
  readonly denomSum: number;
  readonly correct: number;
}

/** A Result message as the reducer reads it (`grad`: its gradient bytes, in pieces). */
export function resultIn(m: BodyOf<'result'>, grad: readonly Uint8Array[]): ResultIn {
  return {
    seq: m.seq ?? 0,
    version: m.version ?? 0,
    node: m.node ? { lo: m.node.lo ?? 0, hi: m.node.hi ?? 0 } : null,
    part: m.part ? { offset: m.part.offset ?? 0, length: m.part.length ?? 0 } : null,
    grad,
    lossSum: m.lossSum ?? 0,
    denomSum: m.denomSum ?? 0,
    correct: m.correct ?? 0,
  };
}

export type DropReason = 'stale' | 'reassigned' | 'duplicate';

export type Verdict =
  | {
    readonly kind: 'accepted';
    readonly node: TreeNode;
    /** The request is complete: every layer's root and the root sums. */
    readonly done: boolean;
    /** The node is complete: all its parts and its sums are in. */
    readonly nodeDone: boolean;
    /** Indices of the parts whose ROOT became complete with this message (each reported once a request). */
    readonly rootParts: readonly number[];
  }
  | { readonly kind: 'dropped'; readonly reason: DropReason }
  | { readonly kind: 'rejected'; readonly code: WireCode; readonly message: string }
  | { readonly kind: 'non-finite'; readonly node: TreeNode }
  | { readonly kind: 'diverged'; readonly node: TreeNode; readonly message: string }
  /** Two workers sent different sums for one node: one of them lied, and only a recompute can say which. */
  | { readonly kind: 'disputed'; readonly node: TreeNode; readonly claims: readonly SumsClaim[]; readonly message: string };

/** What one worker said a node's sums are. */
export interface SumsClaim extends NodeSums {
  readonly workerId: number;
}

export interface ReducerStats {
  /** Messages accepted. */
  accepted: number;
  /** Messages dropped, or accepted with parts already in ('duplicate'). */
  dropped: Record<DropReason, number>;
  rejected: number;
  nonFinite: number;
  /** Messages whose sums differ from another worker's for the same node (verdict 'disputed'). */
  disputed: number;
  /** Most gradient-equivalents in use at once (waiting node parts + the message being accepted), over the reducer's life. */
  peakHeld: number;
  /** Gradient-equivalents ever allocated (the pools' buffers x their length / paramCount). */
  buffers: number;
}

export interface ReducerOptions {
  /** Floats in the flat gradient (ModelSpec.paramCount). */
  readonly paramCount: number;
  /** Gradient-equivalents held by waiting nodes past which the executor reads in tree order. Default 8, at least 2. */
  readonly maxHeld?: number;
  /**
   * The parts the gradient is reduced in, in floats: the model's stream parts (core `streamParts`),
   * contiguous, in order, covering [0, paramCount). Default one part [0, paramCount).
   */
  readonly parts?: readonly FlatRange[];
  /** The pools' backend (core GradPool). Default 'wasm' where WebAssembly SIMD is supported, else 'ts'. */
  readonly backend?: 'wasm' | 'ts';
}

/** The root's sums and whole gradient (null for 'eval'). */
export interface RootSums extends NodeSums {
  readonly grad: Float32Array | null;
}

/** A node part waiting for its sibling: its buffer in the part's pool. */
interface GradSlot {
  readonly lo: number;
  readonly hi: number;
  readonly id: number;
}

/** A node's sums waiting for its sibling's. */
interface SumSlot extends NodeSums {
  readonly lo: number;
  readonly hi: number;
}

/** One part's tree. */
interface PartTree {
  readonly offset: number;
  readonly length: number;
  readonly pool: GradPool;
  /** Waiting node parts, by node key. */
  readonly slots: Map<number, GradSlot>;
  /** The root's buffer once complete, else -1. */
  root: number;
}

/** A given node's reduction so far (who holds it is the assignment record's). */
interface NodeRec {
  /** The sums of its first accepted message, and who sent it. */
  sums: NodeSums | null;
  sumsFrom: number;
  /** Per part: 1 once accepted. */
  readonly parts: Uint8Array;
  partsIn: number;
  /** Workers whose answer for it was non-finite. */
  readonly nonFiniteFrom: Set<number>;
}

export class Reducer {
  readonly paramCount: number;
  readonly maxHeld: number;
  /** The parts the gradient is reduced in (the constructor's `parts`). */
  readonly parts: readonly FlatRange[];
  readonly stats: ReducerStats = {
    accepted: 0, dropped: { stale: 0, reassigned: 0, duplicate: 0 }, rejected: 0, nonFinite: 0, disputed: 0, peakHeld: 0, buffers: 0,
  };

  private req: RequestSpec | null = null;
  private nChunks = 0;
  /** Parts of the request in progress: parts.length for 'train', 0 for 'eval'. */
  private nParts = 0;
  private lastSeq = 0;
  /** The request's assignment record (who holds which node), and its nodes' reductions by node key. */
  private record: Assignments | null = null;
  private readonly recs = new Map<number, NodeRec>();
  private readonly trees: PartTree[];
  private readonly pools: GradPool[];
  /** Part index by offset. */
  private readonly partAt = new Map<number, number>();
  private readonly sumSlots = new Map<number, SumSlot>();
  private rootSum: SumSlot | null = null;
  private rootsIn = 0;
  /** Floats in the buffers of waiting node parts. */
  private heldFloats = 0;
  /** result()'s whole gradient when there are several parts (allocated when first asked for). */
  private whole: Float32Array | null = null;

  constructor(opts: ReducerOptions) {
    if (!Number.isInteger(opts.paramCount) || opts.paramCount < 1) throw internalError(`Reducer: paramCount must be a positive integer, got ${opts.paramCount}`);
    const maxHeld = opts.maxHeld ?? 8;
    if (!Number.isInteger(maxHeld) || maxHeld < 2) throw internalError(`Reducer: maxHeld must be an integer >= 2, got ${maxHeld}`);
    this.paramCount = opts.paramCount;
    this.maxHeld = maxHeld;
    const parts = opts.parts ?? [{ offset: 0, length: opts.paramCount }];
    let at = 0;
    for (const [i, p] of parts.entries()) {
      if (!Number.isInteger(p.length) || p.length < 1 || p.offset !== at) {
        throw internalError(`Reducer: part ${i} is [${p.offset}, +${p.length}); parts must be non-empty, contiguous and in order (expected offset ${at})`);
      }
      at += p.length;
    }
    if (parts.length === 0 || at !== opts.paramCount) throw internalError(`Reducer: the parts cover [0, ${at}), the gradient has ${opts.paramCount} floats`);
    this.parts = parts.map((p) => ({ offset: p.offset, length: p.length }));
    const byLength = new Map<number, GradPool>();
    this.trees = this.parts.map((p, i) => {
      let pool = byLength.get(p.length);
      if (!pool) byLength.set(p.length, (pool = createGradPool(p.length, { backend: opts.backend })));
      this.partAt.set(p.offset, i);
      return { offset: p.offset, length: p.length, pool, slots: new Map(), root: -1 };
    });
    this.pools = [...byLength.values()];
  }

  /** The request in progress, or null. */
  get request(): RequestSpec | null {
    return this.req;
  }

  /** Chunks of the request in progress. */
  get chunks(): number {
    return this.nChunks;
  }

  /** Gradient-equivalents (floats / paramCount) held by node parts waiting for a sibling. */
  get held(): number {
    return this.heldFloats / this.paramCount;
  }

  /** True when the executor should read in tree order (see the module comment). */
  get overBudget(): boolean {
    return this.heldFloats >= this.maxHeld * this.paramCount;
  }

  /** True once every part's root and the root sums are complete. */
  get done(): boolean {
    return this.rootSum !== null && this.rootsIn === this.nParts;
  }

  /** The open request's assignment record. */
  get assignments(): Assignments {
    if (!this.record) throw internalError('Reducer.assignments: no request is open');
    return this.record;
  }

  /**
   * Start a request whose nodes are given in `record` (a new one by default; the request's batch
   * and chunk). The previous request's root buffers return to their pools. Returns the record.
   */
  begin(spec: RequestSpec, record?: Assignments): Assignments {
    if (this.req) throw internalError(`Reducer.begin: request ${this.req.seq} is still open`);
    if (!Number.isInteger(spec.seq) || spec.seq <= this.lastSeq) throw internalError(`Reducer.begin: seq ${spec.seq} does not follow ${this.lastSeq}`);
    if (!Number.isInteger(spec.batch) || spec.batch < 1 || !Number.isInteger(spec.chunk) || spec.chunk < 1) {
      throw internalError(`Reducer.begin: bad batch ${spec.batch} / chunk ${spec.chunk}`);
    }
    for (const t of this.trees) {
      if (t.root >= 0) t.pool.release(t.root);
      t.root = -1;
    }
    this.rootSum = null;
    this.rootsIn = 0;
    this.req = spec;
    this.lastSeq = spec.seq;
    const shape = leafShapeOf(spec);
    this.nChunks = leafCount(shape);
    this.nParts = carriesTensor(spec.mode) ? this.trees.length : 0;
    if (record && (record.batch !== spec.batch || record.chunk !== spec.chunk || record.nChunks !== this.nChunks)) throw internalError('Reducer.begin: the assignment record is for another batch');
    this.record = record ?? new Assignments(spec.batch, spec.chunk, shape.offsets);
    return this.record;
  }

  /** Close the request: later results for it are stale. Buffers of unfinished nodes return to the pools. */
  end(): void {
    for (const t of this.trees) {
      for (const s of t.slots.values()) t.pool.release(s.id);
      t.slots.clear();
    }
    this.heldFloats = 0;
    this.sumSlots.clear();
    this.recs.clear();
    this.record = null;
    this.req = null;
  }

  /** Judge one result (see the module comment). */
  accept(workerId: number, r: ResultIn): Verdict {
    const req = this.req;
    if (r.seq > this.lastSeq) return this.reject(W.FUTURE_STEP, `result for request ${r.seq}, the latest issued is ${this.lastSeq}`);
    if (req === null || r.seq < req.seq || this.done) return this.drop('stale');
    if (r.version !== req.version) return this.reject(W.WRONG_PARAM_VERSION, `result computed on parameters v${r.version}, request ${req.seq} is on v${req.version}`);
    const record = this.record!;
    const node = r.node;
    const k = node ? record.key(node) : -1;
    if (!node || k < 0 || !record.wasGiven(k, workerId)) {
      return this.reject(W.UNKNOWN_NODE, node ? `node [${node.lo},${node.hi}) was not given to this worker in request ${req.seq}` : 'result without a node');
    }
    const given = record.nodeAt(k)!;
    let rec = this.recs.get(k);
    if (!rec) this.recs.set(k, (rec = { sums: null, sumsFrom: -1, parts: new Uint8Array(this.nParts), partsIn: 0, nonFiniteFrom: new Set() }));
    const pieces: readonly Uint8Array[] = r.grad instanceof Uint8Array ? [r.grad] : r.grad;
    let gradBytes = 0;
    for (const p of pieces) gradBytes += p.byteLength;
    const partOffset = r.part?.offset ?? 0;
    const partLength = r.part?.length ?? 0;
    // The message's parts: [first, first + count).
    let first = 0;
    let count = 0;
    let validPart: boolean;
    if (req.mode === 'eval') {
      validPart = r.part === null || (partOffset === 0 && partLength === 0);
    } else if (r.part !== null && partOffset === 0 && partLength === this.paramCount) {
      count = this.nParts;
      validPart = true;
    } else {
      first = this.partAt.get(partOffset) ?? -1;
      count = 1;
      validPart = r.part !== null && first >= 0 && this.trees[first].length === partLength;
    }
    if (!validPart || gradBytes !== 4 * partLength) {
      const want = req.mode === 'eval'
        ? 'eval results carry 0 bytes (part [0, +0))'
        : `${req.mode} results carry the whole gradient (part [0, +${this.paramCount})) or one stream part (${this.trees.map((t) => `[${t.offset}, +${t.length})`).join(', ')}), 4 bytes a float`;
      return this.reject(W.BAD_GRADIENT_LENGTH, `part [${partOffset}, +${partLength}) with ${gradBytes} gradient bytes; ${want}`);
    }
    const samples = record.samplesOf(given);
    if (!Number.isInteger(r.correct) || r.correct < 0 || r.correct > samples || r.denomSum < 0) {
      return this.reject(W.BAD_RESULT, `correct ${r.correct} / denominator ${r.denomSum} impossible for ${samples} samples`);
    }
    if (!record.holds(k, workerId)) return this.drop('reassigned');
    const had = rec.sums;
    // Non-finite sums are not compared: they take the non-finite path below (not a lie by itself).
    if (had && Number.isFinite(r.lossSum) && Number.isFinite(r.denomSum) && !(Object.is(had.lossSum, r.lossSum) && Object.is(had.denomSum, r.denomSum) && Object.is(had.correct, r.correct))) {
      const what = `node [${given.lo},${given.hi}) came with sums (${had.lossSum}, ${had.denomSum}, ${had.correct}) before and (${r.lossSum}, ${r.denomSum}, ${r.correct}) now`;
      // Its own earlier message: this worker contradicts itself. Another worker's: either may lie.
      if (rec.sumsFrom === workerId) return this.reject(W.BAD_RESULT, what);
      this.stats.disputed++;
      const claims = [{ workerId: rec.sumsFrom, ...had }, { workerId, lossSum: r.lossSum, denomSum: r.denomSum, correct: r.correct }];
      return { kind: 'disputed', node: given, claims, message: `${what}, from workers ${rec.sumsFrom} and ${workerId}` };
    }
    if (record.isComplete(k)) return this.drop('duplicate');
    const fresh: number[] = [];
    for (let i = first; i < first + count; i++) if (rec.parts[i] === 0) fresh.push(i);
    if (fresh.length === 0 && had) return this.drop('duplicate');

    // The new parts into pool buffers, checked; nothing is kept unless all of the message is finite.
    const ids: number[] = [];
    const summed: boolean[] = [];
    let finite = Number.isFinite(r.lossSum) && Number.isFinite(r.denomSum);
    if (finite && fresh.length > 0) {
      const sibKey = this.siblingKey(given);
      const split = count > 1 ? slicePieces(pieces, this.trees) : null;
      for (const i of fresh) {
        const t = this.trees[i];
        const id = t.pool.acquire();
        ids.push(id);
        const sib = t.slots.get(sibKey);
        const input = split ? split[i] : pieces;
        finite = sib ? t.pool.addChecked(id, sib.id, input) : t.pool.copyChecked(id, input);
        summed.push(sib !== undefined);
        if (!finite) break;
      }
      this.countBuffers();
    }
    if (!finite) {
      for (let k = 0; k < ids.length; k++) this.trees[fresh[k]].pool.release(ids[k]);
      rec.nonFiniteFrom.add(workerId);
      record.revoke(given, workerId);
      this.stats.nonFinite++;
      if (rec.nonFiniteFrom.size >= 2) {
        return { kind: 'diverged', node: given, message: `node [${given.lo},${given.hi}) of step ${req.step} is non-finite on two workers: the model has diverged` };
      }
      return { kind: 'non-finite', node: given };
    }

    this.stats.accepted++;
    if (fresh.length < count) this.stats.dropped.duplicate++;
    if (ids.length > 0) {
      // The peak is now: the waiting buffers plus this message's, before combining frees any.
      let incoming = 0;
      for (const i of fresh) incoming += this.trees[i].length;
      this.stats.peakHeld = Math.max(this.stats.peakHeld, (this.heldFloats + incoming) / this.paramCount);
    }
    const rootParts: number[] = [];
    for (let k = 0; k < fresh.length; k++) {
      const i = fresh[k];
      rec.parts[i] = 1;
      rec.partsIn++;
      if (this.insertPart(this.trees[i], given, ids[k], summed[k])) rootParts.push(i);
    }
    if (!had) {
      rec.sums = { lossSum: r.lossSum, denomSum: r.denomSum, correct: r.correct };
      rec.sumsFrom = workerId;
      this.insertSums({ lo: given.lo, hi: given.hi, ...rec.sums });
    }
    const nodeDone = rec.partsIn === this.nParts;
    if (nodeDone) record.markComplete(k);
    return { kind: 'accepted', node: given, done: this.done, nodeDone, rootParts };
  }

  /** The root's sums and whole gradient, once `done`. The gradient is valid until the next `begin`. */
  result(): RootSums {
    const s = this.rootSum;
    if (!s || !this.done) throw internalError('Reducer.result: the root is not complete');
    let grad: Float32Array | null = null;
    if (this.nParts === 1) {
      grad = this.rootPart(0);
    } else if (this.nParts > 1) {
      grad = this.whole ??= new Float32Array(this.paramCount);
      for (let i = 0; i < this.nParts; i++) grad.set(this.rootPart(i), this.trees[i].offset);
    }
    return { grad, lossSum: s.lossSum, denomSum: s.denomSum, correct: s.correct };
  }

  /** Part i's root gradient once complete (a pool view, valid until the next `begin`). */
  rootPart(i: number): Float32Array {
    const t = this.trees[i];
    if (!t || i >= this.nParts || t.root < 0) throw internalError(`Reducer.rootPart: the root of part ${i} is not complete`);
    return t.pool.view(t.root);
  }

  /** The root sums once every node's sums are in, else null. */
  rootSums(): NodeSums | null {
    const s = this.rootSum;
    return s ? { lossSum: s.lossSum, denomSum: s.denomSum, correct: s.correct } : null;
  }

  /** Key of the sibling of `node`, or -1 for the root. */
  private siblingKey(node: TreeNode): number {
    return this.up(node)?.sibKey ?? -1;
  }

  /** The parent of `node`, whether `node` is its left child, and the key of its sibling; null for the root. */
  private up(node: TreeNode): { parent: TreeNode; isLeft: boolean; sibKey: number } | null {
    const parent = parentOf(node, this.nChunks);
    if (!parent) return null;
    const mid = treeMid(parent.lo, parent.hi);
    const isLeft = node.lo === parent.lo;
    return { parent, isLeft, sibKey: isLeft ? this.key(mid, parent.hi) : this.key(parent.lo, mid) };
  }

  /**
   * Store a node's part (buffer `id` of the part's pool), combining with siblings up the tree while
   * they are there; true when it reaches the root. With `summed`, the buffer already holds the
   * part plus its waiting sibling's (accept).
   */
  private insertPart(t: PartTree, node: TreeNode, id: number, summed: boolean): boolean {
    let { lo, hi } = node;
    let cur = id;
    for (;;) {
      if (lo === 0 && hi === this.nChunks) {
        t.root = cur;
        this.rootsIn++;
        return true;
      }
      const { parent, isLeft, sibKey } = this.up({ lo, hi })!;
      const sib = t.slots.get(sibKey);
      if (!sib) {
        t.slots.set(this.key(lo, hi), { lo, hi, id: cur });
        this.heldFloats += t.length;
        return false;
      }
      t.slots.delete(sibKey);
      this.heldFloats -= t.length;
      if (summed) {
        t.pool.release(sib.id);
        summed = false;
      } else {
        const l = isLeft ? cur : sib.id;
        const r = isLeft ? sib.id : cur;
        t.pool.add(l, r);
        t.pool.release(r);
        cur = l;
      }
      lo = parent.lo;
      hi = parent.hi;
    }
  }

  /** Store a node's sums, combining with siblings' up the tree (float64 left + right) while they are there. */
  private insertSums(slot: SumSlot): void {
    let cur = slot;
    for (;;) {
      if (cur.lo === 0 && cur.hi === this.nChunks) {
        this.rootSum = cur;
        return;
      }
      const { parent, isLeft, sibKey } = this.up(cur)!;
      const sib = this.sumSlots.get(sibKey);
      if (!sib) {
        this.sumSlots.set(this.key(cur.lo, cur.hi), cur);
        return;
      }
      this.sumSlots.delete(sibKey);
      const l = isLeft ? cur : sib;
      const r = isLeft ? sib : cur;
      cur = { lo: parent.lo, hi: parent.hi, lossSum: l.lossSum + r.lossSum, denomSum: l.denomSum + r.denomSum, correct: l.correct + r.correct };
    }
  }

  private countBuffers(): void {
    let floats = 0;
    for (const p of this.pools) floats += p.size * p.floats;
    this.stats.buffers = floats / this.paramCount;
  }

  private key(lo: number, hi: number): number {
    return nodeKey(lo, hi, this.nChunks);
  }

  private drop(reason: DropReason): Verdict {
    this.stats.dropped[reason]++;
    return { kind: 'dropped', reason };
  }

  private reject(code: WireCode, message: string): Verdict {
    this.stats.rejected++;
    return { kind: 'rejected', code, message };
  }
}

/**
 * The pieces of a whole gradient cut at the parts' byte boundaries: out[i] holds part i's bytes,
 * as the pieces themselves or sub-views of them (nothing is copied).
 */
function slicePieces(pieces: readonly Uint8Array[], parts: readonly FlatRange[]): Uint8Array[][] {
  const out: Uint8Array[][] = parts.map(() => []);
  let i = 0;
  let end = 4 * (parts[0].offset + parts[0].length); // byte end of part i
  let pos = 0;
  for (const p of pieces) {
    const len = p.byteLength;
    let off = 0;
    while (off < len) {
      while (pos >= end) {
        i++;
        end = 4 * (parts[i].offset + parts[i].length);
      }
      const take = Math.min(len - off, end - pos);
      out[i].push(take === len ? p : p.subarray(off, off + take));
      off += take;
      pos += take;
    }
  }
  return out;
}
