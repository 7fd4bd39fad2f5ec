/**
 * The canonical reduction tree (docs/design.md "Invariant 3: canonical reduction tree" and "Contracts: Tree").
 *
 * A global batch of B samples is cut into chunks of c samples: chunk j holds samples
 * [j*c, min((j+1)*c, B)). Sums over samples combine along one fixed binary tree over chunk indices:
 * S(lo, hi) = S(lo, mid) + S(mid, hi) with mid = lo + (largest power of two < hi - lo), and inside a
 * chunk the samples are summed in order. Work is handed out as tree nodes; a worker holding node
 * [lo, hi) computes S(lo, hi) by the same recursion, so any cut of the tree into nodes, combined
 * upwards, gives the same bits as one worker doing the whole batch.
 *
 * Everything here is pure and allocation-light; the reducer and the kernels follow these orders.
 */
import { internalError } from './errors.js';

/** A node of the tree: the chunk indices [lo, hi), hi > lo. */
export interface TreeNode {
  readonly lo: number;
  readonly hi: number;
}

/** Number of chunks of `chunk` samples in a batch of `batch` samples (the last may be short). */
export function chunkCount(batch: number, chunk: number): number {
  return Math.ceil(batch / chunk);
}

/** The split point of node [lo, hi), hi - lo > 1: lo + the largest power of two below hi - lo. */
export function treeMid(lo: number, hi: number): number {
  const n = hi - lo;
  if (n < 2) throw internalError(`tree node [${lo},${hi}) has no children`);
  let p = 1;
  while (p * 2 < n) p *= 2;
  return lo + p;
}

/** Sample range [start, end) covered by the chunk range [lo, hi) of a batch. */
export function nodeSamples(node: TreeNode, batch: number, chunk: number): { start: number; end: number } {
  return { start: node.lo * chunk, end: Math.min(node.hi * chunk, batch) };
}

/**
 * How a request's samples fall into its tree's leaves: chunks of `chunk` samples over `batch`
 * (a training step, an evaluation), or, with `offsets` (length leaves + 1, increasing, from 0 to
 * batch), leaf j holding samples [offsets[j], offsets[j + 1]) (a round: one leaf per replica).
 */
export interface LeafShape {
  readonly batch: number;
  readonly chunk: number;
  readonly offsets?: ArrayLike<number> | null;
}

/** Leaves of the tree of `shape`. */
export function leafCount(shape: LeafShape): number {
  return shape.offsets ? shape.offsets.length - 1 : chunkCount(shape.batch, shape.chunk);
}

/** Sample range [start, end) covered by the leaf range [lo, hi) of `shape`. */
export function leafSamples(node: TreeNode, shape: LeafShape): { start: number; end: number } {
  const o = shape.offsets;
  return o ? { start: o[node.lo], end: o[node.hi] } : nodeSamples(node, shape.batch, shape.chunk);
}

/** The node's two children, or null for a leaf (one chunk). */
export function children(node: TreeNode): [TreeNode, TreeNode] | null {
  if (node.hi - node.lo < 2) return null;
  const mid = treeMid(node.lo, node.hi);
  return [{ lo: node.lo, hi: mid }, { lo: mid, hi: node.hi }];
}

/**
 * The parent of `node` in the tree rooted at [0, nChunks), or null for the root.
 * Throws when `node` is not a node of that tree.
 */
export function parentOf(node: TreeNode, nChunks: number): TreeNode | null {
  let cur: TreeNode = { lo: 0, hi: nChunks };
  let parent: TreeNode | null = null;
  for (;;) {
    if (cur.lo === node.lo && cur.hi === node.hi) return parent;
    const kids = children(cur);
    if (!kids || node.lo < cur.lo || node.hi > cur.hi) break;
    parent = cur;
    cur = node.lo < kids[0].hi ? kids[0] : kids[1];
  }
  throw internalError(`[${node.lo},${node.hi}) is not a node of the tree over ${nChunks} chunks`);
}

/** True when [lo, hi) is a node of the tree over nChunks chunks. */
export function isTreeNode(node: TreeNode, nChunks: number): boolean {
  if (!(Number.isInteger(node.lo) && Number.isInteger(node.hi))) return false;
  if (node.lo < 0 || node.hi > nChunks || node.hi <= node.lo) return false;
  try {
    parentOf(node, nChunks);
    return true;
  } catch {
    return false;
  }
}

/**
 * The fewest tree nodes that exactly cover the chunk range [a, b) (a < b), left to right: the
 * maximal subtrees of the tree over nChunks that lie inside the range.
 */
export function coverRange(a: number, b: number, nChunks: number): TreeNode[] {
  const out: TreeNode[] = [];
  const visit = (lo: number, hi: number): void => {
    if (hi <= a || lo >= b) return;
    if (a <= lo && hi <= b) {
      out.push({ lo, hi });
      return;
    }
    const mid = treeMid(lo, hi);
    visit(lo, mid);
    visit(mid, hi);
  };
  visit(0, nChunks);
  return out;
}

/**
 * Fold over the tree of node [lo, hi): `leaf(j)` gives chunk j's value, `combine(left, right)` joins
 * two siblings. This is the reference order every sum over samples follows.
 */
export function treeFold<T>(lo: number, hi: number, leaf: (j: number) => T, combine: (l: T, r: T) => T): T {
  if (hi - lo === 1) return leaf(lo);
  const mid = treeMid(lo, hi);
  return combine(treeFold(lo, mid, leaf, combine), treeFold(mid, hi, leaf, combine));
}

/**
 * Tree sum of values[0..n) in float64, chunks of `chunk` values summed in order inside. The node's
 * first value is its first sample: the tree is the node's own (which is the global tree's subtree,
 * since a node's recursion is the same from any lo).
 */
export function treeSum64(values: ArrayLike<number>, n: number, chunk: number): number {
  if (n === 0) return 0;
  return treeFold(0, chunkCount(n, chunk), (j) => {
    let s = 0;
    const end = Math.min((j + 1) * chunk, n);
    for (let i = j * chunk; i < end; i++) s += values[i];
    return s;
  }, (l, r) => l + r);
}

/** The same in float32 arithmetic (every add rounded): the order the gradient kernels follow. */
export function treeSum32(values: ArrayLike<number>, n: number, chunk: number): number {
  if (n === 0) return 0;
  const f = Math.fround;
  return treeFold(0, chunkCount(n, chunk), (j) => {
    let s = 0;
    const end = Math.min((j + 1) * chunk, n);
    for (let i = j * chunk; i < end; i++) s = f(s + values[i]);
    return s;
  }, (l, r) => f(l + r));
}

/** dst[i] = a[i] + b[i] in float32 (a the left sibling, b the right): how the reducer combines. */
export function addSiblings(dst: Float32Array, a: Float32Array, b: Float32Array): void {
  const n = dst.length;
  if (a.length !== n || b.length !== n) throw internalError('addSiblings: length mismatch');
  for (let i = 0; i < n; i++) dst[i] = a[i] + b[i];
}
