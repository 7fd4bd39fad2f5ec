import { describe, expect, it } from 'vitest';
import { gradhub } from '@gradhub/proto';
import { Rng, chunkCount, children, createEngine, createOracleBackend, nodeSamples, streamParts, treeFold, wasmSimdSupported, type TreeNode } from '@gradhub/core';
import { Reducer, type RequestSpec, type ResultIn } from '../src/reducer.js';
import { SPEC, bits, cifarBatch, paramsFor, reference } from './cluster-helpers.js';

const W = gradhub.ErrorCode;

/** Uniform floats in [0, 1) from the core's seeded generator. */
function rng(seed: number): () => number {
  const r = new Rng(seed);
  return () => r.nextFloat();
}

/** A random cut of the tree over [lo, hi) into nodes: each node is taken whole or split. */
function randomCut(node: TreeNode, rand: () => number, out: TreeNode[] = []): TreeNode[] {
  const kids = children(node);
  if (!kids || rand() < 0.35) out.push(node);
  else {
    randomCut(kids[0], rand, out);
    randomCut(kids[1], rand, out);
  }
  return out;
}

function shuffle<T>(a: T[], rand: () => number): T[] {
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a;
}

/** Synthetic sums: chunk j has gradient leaf[j] (P floats) and loss leafLoss[j]. */
function synthetic(nChunks: number, P: number, rand: () => number) {
  const leaf = Array.from({ length: nChunks }, () => Float32Array.from({ length: P }, () => (rand() - 0.5) * 10 ** Math.floor(rand() * 6 - 3)));
  const leafLoss = Array.from({ length: nChunks }, () => rand() * 3);
  const f = Math.fround;
  const nodeGrad = (n: TreeNode): Float32Array => treeFold(n.lo, n.hi, (j) => leaf[j], (l, r) => l.map((v, i) => f(v + r[i])));
  const nodeLoss = (n: TreeNode): number => treeFold(n.lo, n.hi, (j) => leafLoss[j], (l, r) => l + r);
  return { nodeGrad, nodeLoss };
}

const req = (seq: number, batch: number, chunk: number, mode: 'train' | 'eval' = 'train', version = 3): RequestSpec => ({ seq, step: seq, version, mode, batch, chunk });

function result(seq: number, node: TreeNode, grad: Float32Array | null, lossSum = 1, extra: Partial<ResultIn> = {}): ResultIn {
  return {
    seq, version: 3, node, part: { offset: 0, length: grad ? grad.length : 0 },
    grad: grad ? new Uint8Array(grad.buffer, grad.byteOffset, grad.byteLength) : new Uint8Array(0),
    lossSum, denomSum: 1, correct: 0, ...extra,
  };
}

describe('reducer: the root does not depend on the split, the order or the workers', () => {
  it('synthetic sums: random cuts and arrival orders give the bits of the whole tree', () => {
    const rand = rng(1);
    const P = 33;
    for (let trial = 0; trial < 300; trial++) {
      const nChunks = 1 + Math.floor(rand() * 40);
      const { nodeGrad, nodeLoss } = synthetic(nChunks, P, rand);
      const root = { lo: 0, hi: nChunks };
      const want = nodeGrad(root);
      const r = new Reducer({ paramCount: P, maxHeld: 4 });
      r.begin(req(1, nChunks * 2, 2));
      const cut = randomCut(root, rand);
      cut.forEach((n, i) => r.assignments.give(n, i % 5));
      let last;
      for (const i of shuffle(cut.map((_, i) => i), rand)) last = r.accept(i % 5, result(1, cut[i], nodeGrad(cut[i]), nodeLoss(cut[i])));
      expect(last).toMatchObject({ kind: 'accepted', done: true });
      const got = r.result();
      expect(bits(got.grad)!.equals(bits(want)!)).toBe(true);
      expect(got.lossSum).toBe(nodeLoss(root));
      r.end();
    }
  });

  it('engine sums: any cut, order and reassignment equals one engine on the root', () => {
    const rand = rng(2);
    const backend = createOracleBackend();
    for (const [batch, chunk] of [[24, 4], [21, 4], [24, 1], [7, 3], [24, 24]] as const) {
      const { pixels, labels } = cifarBatch(batch * 3, batch);
      const params = paramsFor(SPEC, batch);
      const want = reference(SPEC, params, pixels, labels, batch, chunk, true);
      const engine = createEngine({ spec: SPEC, backend, maxBatch: batch, chunk, normalize: false });
      engine.params.set(params);
      const nChunks = chunkCount(batch, chunk);
      const r = new Reducer({ paramCount: SPEC.paramCount });
      for (let trial = 0; trial < 6; trial++) {
        const seq = trial + 1;
        r.begin(req(seq, batch, chunk));
        const cut = randomCut({ lo: 0, hi: nChunks }, rand);
        cut.forEach((n, i) => r.assignments.give(n, i % 3));
        const order = shuffle(cut.map((_, i) => i), rand);
        // Half of the nodes: worker i%3 is lost, the node goes to worker 9, the old owner's answer comes late.
        const late: ResultIn[] = [];
        for (const i of order) {
          const n = cut[i];
          const { start, end } = nodeSamples(n, batch, chunk);
          const s = engine.computeSums(pixels.subarray(start * 3072, end * 3072), labels.subarray(start, end), end - start, true);
          const res = { ...result(seq, n, engine.grads, s.lossSum), denomSum: s.denomSum, correct: s.correct };
          if (rand() < 0.5) {
            r.assignments.revoke(n, i % 3);
            r.assignments.give(n, 9);
            expect(r.accept(9, res)).toMatchObject({ kind: 'accepted' });
            late.push(res);
          } else {
            expect(r.accept(i % 3, res)).toMatchObject({ kind: 'accepted' });
          }
        }
        expect(r.done).toBe(true);
        const got = r.result();
        expect(bits(got.grad)!.equals(bits(want.grad)!)).toBe(true);
        expect([got.lossSum, got.denomSum, got.correct]).toEqual([want.lossSum, want.denomSum, want.correct]);
        for (const res of late) expect(r.accept(cut.findIndex((n) => n.lo === res.node!.lo) % 3, res)).toMatchObject({ kind: 'dropped', reason: 'stale' });
        r.end();
      }
    }
  });

  it('gradients in pieces of any size and alignment (socket fragments) give the same bits', () => {
    const rand = rng(11);
    /** The bytes of `g` cut into 1..6 pieces, each copied at a random offset of its own buffer. */
    const pieces = (g: Float32Array): Uint8Array[] => {
      const bytes = new Uint8Array(g.buffer, g.byteOffset, g.byteLength);
      const cuts = new Set<number>([0, bytes.byteLength]);
      const n = Math.floor(rand() * 6);
      for (let i = 0; i < n; i++) cuts.add(Math.floor(rand() * bytes.byteLength));
      const at = [...cuts].sort((x, y) => x - y);
      const out: Uint8Array[] = [];
      for (let i = 0; i + 1 < at.length; i++) {
        const off = Math.floor(rand() * 4);
        const buf = new Uint8Array(off + at[i + 1] - at[i]);
        buf.set(bytes.subarray(at[i], at[i + 1]), off);
        out.push(buf.subarray(off));
      }
      return out;
    };
    for (const P of [1, 5, 40_000]) { // 40 000 floats: more than the 16 Ki-float scratch buffer
      for (let trial = 0; trial < (P > 1000 ? 6 : 100); trial++) {
        const nChunks = 1 + Math.floor(rand() * 12);
        const { nodeGrad, nodeLoss } = synthetic(nChunks, P, rand);
        const root = { lo: 0, hi: nChunks };
        const r = new Reducer({ paramCount: P });
        r.begin(req(1, nChunks * 2, 2));
        const cut = randomCut(root, rand);
        cut.forEach((n) => r.assignments.give(n, 1));
        for (const n of shuffle([...cut], rand)) {
          expect(r.accept(1, { ...result(1, n, nodeGrad(n), nodeLoss(n)), grad: pieces(nodeGrad(n)) }).kind).toBe('accepted');
        }
        expect(bits(r.result().grad)!.equals(bits(nodeGrad(root))!)).toBe(true);
      }
    }
  });

  it('a non-finite result arriving after its sibling leaves the sibling intact', () => {
    const rand = rng(12);
    const P = 50_000;
    const { nodeGrad, nodeLoss } = synthetic(2, P, rand);
    const [left, right] = [{ lo: 0, hi: 1 }, { lo: 1, hi: 2 }];
    const r = new Reducer({ paramCount: P });
    r.begin(req(1, 4, 2));
    r.assignments.give(left, 1);
    r.assignments.give(right, 2);
    expect(r.accept(1, result(1, left, nodeGrad(left), nodeLoss(left))).kind).toBe('accepted');
    const bad = new Float32Array(nodeGrad(right));
    bad[P - 3] = Number.NEGATIVE_INFINITY; // late in the last piece: the sum is mostly written by then
    const b = new Uint8Array(bad.buffer);
    expect(r.accept(2, { ...result(1, right, bad), grad: [b.subarray(0, 100_001), b.subarray(100_001)] })).toEqual({ kind: 'non-finite', node: right });
    expect(r.held).toBe(1);
    r.assignments.give(right, 3);
    expect(r.accept(3, result(1, right, nodeGrad(right), nodeLoss(right)))).toMatchObject({ kind: 'accepted', done: true });
    expect(bits(r.result().grad)!.equals(bits(nodeGrad({ lo: 0, hi: 2 }))!)).toBe(true);
  });

  it('eval requests combine the sums in tree order without gradients', () => {
    const rand = rng(3);
    const nChunks = 11;
    const { nodeLoss } = synthetic(nChunks, 1, rand);
    const r = new Reducer({ paramCount: 10 });
    r.begin(req(1, 22, 2, 'eval'));
    const cut = randomCut({ lo: 0, hi: nChunks }, rand);
    cut.forEach((n) => r.assignments.give(n, 1));
    for (const n of shuffle([...cut], rand)) expect(r.accept(1, result(1, n, null, nodeLoss(n), { correct: 1 })).kind).toBe('accepted');
    expect(r.result()).toEqual({ grad: null, lossSum: nodeLoss({ lo: 0, hi: nChunks }), denomSum: cut.length, correct: cut.length });
  });
});

describe('reducer: validation', () => {
  const P = 4;
  const g = (v = 1): Float32Array => new Float32Array(P).fill(v);
  function open(): Reducer {
    const r = new Reducer({ paramCount: P });
    r.begin(req(5, 16, 2)); // 8 chunks
    r.assignments.give({ lo: 0, hi: 4 }, 1);
    r.assignments.give({ lo: 4, hi: 8 }, 2);
    return r;
  }

  it('rejects future requests and other parameter versions', () => {
    const r = open();
    expect(r.accept(1, result(6, { lo: 0, hi: 4 }, g()))).toMatchObject({ kind: 'rejected', code: W.FUTURE_STEP });
    expect(r.accept(1, { ...result(5, { lo: 0, hi: 4 }, g()), version: 2 })).toMatchObject({ kind: 'rejected', code: W.WRONG_PARAM_VERSION });
    expect(r.stats.rejected).toBe(2);
  });

  it('rejects nodes never given to the sender', () => {
    const r = open();
    expect(r.accept(1, result(5, { lo: 4, hi: 8 }, g()))).toMatchObject({ kind: 'rejected', code: W.UNKNOWN_NODE });
    expect(r.accept(1, result(5, { lo: 0, hi: 2 }, g()))).toMatchObject({ kind: 'rejected', code: W.UNKNOWN_NODE });
    expect(r.accept(1, result(5, { lo: 1, hi: 3 }, g()))).toMatchObject({ kind: 'rejected', code: W.UNKNOWN_NODE });
    expect(r.accept(1, { ...result(5, { lo: 0, hi: 4 }, g()), node: null })).toMatchObject({ kind: 'rejected', code: W.UNKNOWN_NODE });
  });

  it('rejects gradients whose length does not match the model, and impossible sums', () => {
    const r = open();
    const n = { lo: 0, hi: 4 };
    expect(r.accept(1, result(5, n, new Float32Array(P - 1)))).toMatchObject({ kind: 'rejected', code: W.BAD_GRADIENT_LENGTH });
    expect(r.accept(1, { ...result(5, n, g()), part: { offset: 1, length: P } })).toMatchObject({ kind: 'rejected', code: W.BAD_GRADIENT_LENGTH });
    expect(r.accept(1, { ...result(5, n, g()), part: null })).toMatchObject({ kind: 'rejected', code: W.BAD_GRADIENT_LENGTH });
    expect(r.accept(1, { ...result(5, n, g()), grad: new Uint8Array(4 * P + 4) })).toMatchObject({ kind: 'rejected', code: W.BAD_GRADIENT_LENGTH });
    expect(r.accept(1, { ...result(5, n, g()), correct: 9 })).toMatchObject({ kind: 'rejected', code: W.BAD_RESULT });
    expect(r.accept(1, { ...result(5, n, g()), denomSum: -1 })).toMatchObject({ kind: 'rejected', code: W.BAD_RESULT });
    expect(r.accept(1, result(5, n, g())).kind).toBe('accepted');
  });

  it('drops duplicates, reassigned and stale results quietly and counts them', () => {
    const r = open();
    const n = { lo: 0, hi: 4 };
    expect(r.accept(1, result(5, n, g())).kind).toBe('accepted');
    expect(r.accept(1, result(5, n, g()))).toEqual({ kind: 'dropped', reason: 'duplicate' });
    // Worker 2 is lost; its node goes to worker 3; worker 2's answer comes late.
    r.assignments.revoke({ lo: 4, hi: 8 }, 2);
    r.assignments.give({ lo: 4, hi: 8 }, 3);
    expect(r.assignments.ownedBy(2)).toEqual([]);
    expect(r.accept(2, result(5, { lo: 4, hi: 8 }, g()))).toEqual({ kind: 'dropped', reason: 'reassigned' });
    expect(r.accept(3, result(5, { lo: 4, hi: 8 }, g()))).toMatchObject({ kind: 'accepted', done: true });
    expect(r.accept(2, result(5, { lo: 4, hi: 8 }, g()))).toEqual({ kind: 'dropped', reason: 'stale' });
    r.end();
    expect(r.accept(1, result(5, n, g()))).toEqual({ kind: 'dropped', reason: 'stale' });
    r.begin(req(6, 16, 2));
    expect(r.accept(1, result(5, n, g()))).toEqual({ kind: 'dropped', reason: 'stale' });
    expect(r.stats.dropped).toEqual({ stale: 3, reassigned: 1, duplicate: 1 });
    expect(r.stats.rejected).toBe(0);
  });

  it('the first of two speculative copies wins', () => {
    const r = open();
    r.assignments.give({ lo: 4, hi: 8 }, 7);
    expect(r.assignments.ownersOf({ lo: 4, hi: 8 }).sort()).toEqual([2, 7]);
    expect(r.accept(7, result(5, { lo: 4, hi: 8 }, g())).kind).toBe('accepted');
    expect(r.accept(2, result(5, { lo: 4, hi: 8 }, g()))).toEqual({ kind: 'dropped', reason: 'duplicate' });
  });

  it('asks for a recompute of a non-finite node, and reports divergence when it is non-finite again', () => {
    const r = open();
    const n = { lo: 0, hi: 4 };
    const nan = g();
    nan[2] = Number.NaN;
    expect(r.accept(1, result(5, n, nan))).toEqual({ kind: 'non-finite', node: n });
    expect(r.assignments.orphans()).toEqual([n]);
    r.assignments.give(n, 2);
    expect(r.accept(2, result(5, n, g(Number.POSITIVE_INFINITY)))).toMatchObject({ kind: 'diverged', node: n });
    const r2 = open();
    expect(r2.accept(1, result(5, n, g(), Number.NaN))).toEqual({ kind: 'non-finite', node: n });
    r2.assignments.give(n, 2);
    expect(r2.accept(2, result(5, n, g())).kind).toBe('accepted');
    expect(r2.accept(1, result(5, n, g()))).toEqual({ kind: 'dropped', reason: 'reassigned' });
    expect(r2.stats.nonFinite).toBe(1);
  });

  it('refuses overlapping or non-tree nodes and requests out of order', () => {
    const r = open();
    expect(() => r.assignments.give({ lo: 2, hi: 4 }, 1)).toThrow(/overlaps/);
    expect(() => r.assignments.give({ lo: 1, hi: 3 }, 1)).toThrow(/not a node/);
    expect(() => r.begin(req(9, 16, 2))).toThrow(/still open/);
    r.end();
    expect(() => r.begin(req(5, 16, 2))).toThrow(/does not follow/);
  });
});

describe('reducer: memory', () => {
  it('reading in tree order when over budget keeps held buffers below budget + depth, whatever the worker count', () => {
    const rand = rng(4);
    for (const nChunks of [8, 33, 64, 200]) {
      const P = 3;
      const { nodeGrad, nodeLoss } = synthetic(nChunks, P, rand);
      const r = new Reducer({ paramCount: P, maxHeld: 3 });
      r.begin(req(1, nChunks, 1));
      // One leaf per worker (nChunks workers), answers arriving right to left: the worst order.
      const nodes = Array.from({ length: nChunks }, (_, j) => ({ lo: j, hi: j + 1 }));
      nodes.forEach((n, j) => r.assignments.give(n, j));
      const queue = [...nodes].reverse();
      const depth = Math.ceil(Math.log2(nChunks));
      let maxHeld = 0;
      while (!r.done) {
        // Over budget, the executor reads only the frontier's owner; else whatever comes next.
        const f = r.overBudget ? r.assignments.frontier()! : queue[0];
        queue.splice(queue.findIndex((n) => n.lo === f.lo), 1);
        expect(r.accept(f.lo, result(1, f, nodeGrad(f), nodeLoss(f))).kind).toBe('accepted');
        maxHeld = Math.max(maxHeld, r.held);
      }
      expect(maxHeld).toBeLessThanOrEqual(r.maxHeld + depth);
      expect(r.stats.buffers).toBeLessThanOrEqual(r.maxHeld + depth + 1);
      expect(bits(r.result().grad)!.equals(bits(nodeGrad({ lo: 0, hi: nChunks }))!)).toBe(true);
    }
  });

  it('reuses its buffers across requests', () => {
    const r = new Reducer({ paramCount: 5 });
    for (let seq = 1; seq <= 5; seq++) {
      r.begin(req(seq, 8, 1));
      for (let j = 0; j < 8; j++) r.assignments.give({ lo: j, hi: j + 1 }, 1);
      for (let j = 7; j >= 0; j--) r.accept(1, result(seq, { lo: j, hi: j + 1 }, new Float32Array(5).fill(j)));
      expect(r.done).toBe(true);
      r.end();
    }
    expect(r.stats.buffers).toBeLessThanOrEqual(r.stats.peakHeld);
    expect(r.stats.buffers).toBeLessThanOrEqual(9);
  });
});

describe('reducer: per-layer parts', () => {
  /** Three layers, two of the same length (they share a pool). */
  const PARTS = [{ offset: 0, length: 10 }, { offset: 10, length: 10 }, { offset: 20, length: 13 }];
  const P = 33;

  /** Part i of the whole gradient `g` (a view of its bytes), as one message. */
  function partResult(seq: number, node: TreeNode, g: Float32Array, i: number, lossSum = 1, parts = PARTS): ResultIn {
    const p = parts[i];
    const grad = g.subarray(p.offset, p.offset + p.length);
    return { ...result(seq, node, grad, lossSum), part: { offset: p.offset, length: p.length } };
  }

  /** The messages of a node: the whole gradient, or one per layer in a random order. */
  function messages(seq: number, n: TreeNode, g: Float32Array, lossSum: number, whole: boolean, rand: () => number, parts = PARTS): ResultIn[] {
    if (whole) return [result(seq, n, g, lossSum)];
    return shuffle(parts.map((_, i) => partResult(seq, n, g, i, lossSum, parts)), rand);
  }

  it('per-layer parts, mixed with whole gradients, in any interleaving across nodes, give the bits of the whole-gradient reducer', () => {
    const rand = rng(21);
    for (let trial = 0; trial < 200; trial++) {
      const nChunks = 1 + Math.floor(rand() * 24);
      const { nodeGrad, nodeLoss } = synthetic(nChunks, P, rand);
      const root = { lo: 0, hi: nChunks };
      const cut = randomCut(root, rand);
      // The reference: the reducer of one part, whole gradients, in another order.
      const ref = new Reducer({ paramCount: P });
      ref.begin(req(1, nChunks * 2, 2));
      cut.forEach((n) => ref.assignments.give(n, 1));
      for (const n of shuffle([...cut], rand)) ref.accept(1, result(1, n, nodeGrad(n), nodeLoss(n)));
      const want = ref.result();
      expect(bits(want.grad)!.equals(bits(nodeGrad(root))!)).toBe(true);

      const backend = trial % 2 === 0 && wasmSimdSupported() ? 'wasm' : 'ts';
      const r = new Reducer({ paramCount: P, parts: PARTS, backend });
      r.begin(req(1, nChunks * 2, 2));
      cut.forEach((n, i) => r.assignments.give(n, i % 4));
      const all = cut.flatMap((n, i) => messages(1, n, nodeGrad(n), nodeLoss(n), rand() < 0.3, rand).map((m) => ({ m, w: i % 4 })));
      const roots: number[] = [];
      let nodesDone = 0;
      shuffle(all, rand).forEach(({ m, w }, k) => {
        const v = r.accept(w, m);
        if (v.kind !== 'accepted') throw new Error(`message ${k}: ${JSON.stringify(v)}`);
        expect(v.done).toBe(k === all.length - 1);
        roots.push(...v.rootParts);
        if (v.nodeDone) nodesDone++;
        // A layer's root is complete with the sums of every node, so the root sums are there.
        if (v.rootParts.length > 0) expect(r.rootSums()).not.toBe(null);
      });
      expect(roots.sort()).toEqual([0, 1, 2]);
      expect(nodesDone).toBe(cut.length);
      expect(r.assignments.pending()).toEqual([]);
      const got = r.result();
      expect(bits(got.grad)!.equals(bits(want.grad)!)).toBe(true);
      expect([got.lossSum, got.denomSum, got.correct]).toEqual([want.lossSum, want.denomSum, want.correct]);
      expect(r.rootSums()).toEqual({ lossSum: want.lossSum, denomSum: want.denomSum, correct: want.correct });
      for (const [i, p] of PARTS.entries()) expect(bits(r.rootPart(i))!.equals(bits(want.grad!.subarray(p.offset, p.offset + p.length))!)).toBe(true);
      expect(r.held).toBe(0);
      r.end();
    }
  });

  it('engine sums sent part by part (the model\'s streamParts) equal one engine on the root', () => {
    const rand = rng(22);
    const parts = streamParts(SPEC);
    const backend = createOracleBackend();
    const [batch, chunk] = [21, 4];
    const { pixels, labels } = cifarBatch(40, batch);
    const params = paramsFor(SPEC, 5);
    const want = reference(SPEC, params, pixels, labels, batch, chunk, true);
    const engine = createEngine({ spec: SPEC, backend, maxBatch: batch, chunk, normalize: false });
    engine.params.set(params);
    const r = new Reducer({ paramCount: SPEC.paramCount, parts });
    const nChunks = chunkCount(batch, chunk);
    for (let seq = 1; seq <= 4; seq++) {
      r.begin(req(seq, batch, chunk));
      const cut = randomCut({ lo: 0, hi: nChunks }, rand);
      cut.forEach((n) => r.assignments.give(n, 1));
      const all: ResultIn[] = [];
      for (const n of cut) {
        const { start, end } = nodeSamples(n, batch, chunk);
        const s = engine.computeSums(pixels.subarray(start * 3072, end * 3072), labels.subarray(start, end), end - start, true);
        const g = new Float32Array(engine.grads);
        for (const m of messages(seq, n, g, s.lossSum, rand() < 0.5, rand, parts)) all.push({ ...m, denomSum: s.denomSum, correct: s.correct });
      }
      for (const m of shuffle(all, rand)) expect(r.accept(1, m).kind).toBe('accepted');
      const got = r.result();
      expect(bits(got.grad)!.equals(bits(want.grad)!)).toBe(true);
      expect([got.lossSum, got.denomSum, got.correct]).toEqual([want.lossSum, want.denomSum, want.correct]);
      r.end();
    }
  });

  function open(maxHeld?: number): { r: Reducer; g: (n: TreeNode) => Float32Array } {
    const rand = rng(23);
    const { nodeGrad } = synthetic(8, P, rand);
    const r = new Reducer({ paramCount: P, parts: PARTS, maxHeld });
    r.begin(req(5, 16, 2)); // 8 chunks
    r.assignments.give({ lo: 0, hi: 4 }, 1);
    r.assignments.give({ lo: 4, hi: 8 }, 2);
    return { r, g: nodeGrad };
  }
  const L = { lo: 0, hi: 4 };
  const R = { lo: 4, hi: 8 };

  it('drops layer parts already in, quietly: the rest of a message still counts', () => {
    const { r, g } = open();
    expect(r.accept(1, partResult(5, L, g(L), 1))).toEqual({ kind: 'accepted', node: L, done: false, nodeDone: false, rootParts: [] });
    expect(r.accept(1, partResult(5, L, g(L), 1))).toEqual({ kind: 'dropped', reason: 'duplicate' });
    // The whole gradient: layer 1 is skipped, layers 0 and 2 go in; the node is complete.
    expect(r.accept(1, result(5, L, g(L)))).toEqual({ kind: 'accepted', node: L, done: false, nodeDone: true, rootParts: [] });
    expect(r.stats.dropped.duplicate).toBe(2);
    expect(r.accept(1, partResult(5, L, g(L), 2))).toEqual({ kind: 'dropped', reason: 'duplicate' });
    expect(r.accept(1, result(5, L, g(L)))).toEqual({ kind: 'dropped', reason: 'duplicate' });
    expect(r.stats).toMatchObject({ accepted: 2, dropped: { duplicate: 4 } });
    expect(r.assignments.ownedBy(1)).toEqual([]);
    // Worker 2 is lost after layer 2; worker 3 finishes the node; worker 2's late parts are dropped.
    expect(r.accept(2, partResult(5, R, g(R), 2))).toMatchObject({ kind: 'accepted', nodeDone: false, rootParts: [2] });
    expect(r.assignments.ownedBy(2)).toEqual([R]);
    r.assignments.revoke(R, 2);
    r.assignments.give(R, 3);
    expect(r.accept(2, partResult(5, R, g(R), 0))).toEqual({ kind: 'dropped', reason: 'reassigned' });
    expect(r.accept(3, result(5, R, g(R)))).toEqual({ kind: 'accepted', node: R, done: true, nodeDone: true, rootParts: [0, 1] });
    expect(bits(r.result().grad)!.equals(bits(g({ lo: 0, hi: 8 }))!)).toBe(true);
  });

  it('rejects a message whose sums differ from the same worker\'s first accepted ones for the node', () => {
    const { r, g } = open();
    expect(r.accept(1, partResult(5, L, g(L), 0, 1.5)).kind).toBe('accepted');
    expect(r.accept(1, partResult(5, L, g(L), 1, 1.25))).toMatchObject({ kind: 'rejected', code: W.BAD_RESULT });
    expect(r.accept(1, { ...partResult(5, L, g(L), 1, 1.5), correct: 1 })).toMatchObject({ kind: 'rejected', code: W.BAD_RESULT });
    expect(r.accept(1, { ...partResult(5, L, g(L), 1, 1.5), denomSum: 2 })).toMatchObject({ kind: 'rejected', code: W.BAD_RESULT });
    // Object.is: -0 is not +0.
    expect(r.accept(2, { ...partResult(5, R, g(R), 0, 0), lossSum: -0 }).kind).toBe('accepted');
    expect(r.accept(2, partResult(5, R, g(R), 1, 0))).toMatchObject({ kind: 'rejected', code: W.BAD_RESULT });
    expect(r.accept(1, partResult(5, L, g(L), 1, 1.5)).kind).toBe('accepted');
    expect(r.stats.rejected).toBe(4);
    expect(r.stats.disputed).toBe(0);
  });

  it('another worker\'s different sums for a node: disputed, with both claims; the first word is not taken over the second', () => {
    const { r, g } = open();
    // Worker 1 sends layer 0 of L with forged sums and is lost; worker 3 takes L and sends the truth.
    expect(r.accept(1, { ...partResult(5, L, g(L), 0, 1.5), denomSum: 2 }).kind).toBe('accepted');
    r.assignments.revoke(L, 1);
    r.assignments.give(L, 3);
    const v = r.accept(3, result(5, L, g(L), 1.5));
    expect(v).toMatchObject({
      kind: 'disputed', node: L,
      claims: [{ workerId: 1, lossSum: 1.5, denomSum: 2 }, { workerId: 3, lossSum: 1.5, denomSum: 1 }],
    });
    expect((v as { message: string }).message).toMatch(/node \[0,4\) came with sums \(1\.5, 2, 0\) before and \(1\.5, 1, 0\) now, from workers 1 and 3/);
    expect(r.stats).toMatchObject({ disputed: 1, rejected: 0 });
    expect(r.assignments.ownedBy(3)).toEqual([L]); // nothing taken: the request ends on it
    // Non-finite sums are not a dispute: they are a non-finite answer (recomputed elsewhere).
    r.assignments.give(L, 4);
    expect(r.accept(4, { ...result(5, L, g(L), Number.NaN) })).toEqual({ kind: 'non-finite', node: L });
    expect(r.stats).toMatchObject({ disputed: 1, nonFinite: 1 });
  });

  it('a NaN in one layer part: non-finite; the parts in before stay, a recompute elsewhere completes the step with the same bits', () => {
    const { r, g } = open();
    expect(r.accept(2, result(5, R, g(R))).kind).toBe('accepted'); // R waits for L in every layer
    expect(r.accept(1, partResult(5, L, g(L), 0)).kind).toBe('accepted'); // layer 0's root completes
    const held = r.held;
    const bad = new Float32Array(g(L));
    bad[PARTS[2].offset + 12] = Number.NaN;
    expect(r.accept(1, partResult(5, L, bad, 2))).toEqual({ kind: 'non-finite', node: L });
    expect(r.held).toBe(held);
    expect(r.assignments.orphans()).toEqual([L]);
    // Worker 1's later parts are dropped (the node was taken from it).
    expect(r.accept(1, partResult(5, L, g(L), 1))).toEqual({ kind: 'dropped', reason: 'reassigned' });
    // The waiting siblings are intact: a recompute (whole: layer 0 is a duplicate) completes the step.
    r.assignments.give(L, 3);
    expect(r.accept(3, result(5, L, g(L)))).toEqual({ kind: 'accepted', node: L, done: true, nodeDone: true, rootParts: [1, 2] });
    expect(r.stats).toMatchObject({ nonFinite: 1, dropped: { duplicate: 1, reassigned: 1 } });
    expect(bits(r.result().grad)!.equals(bits(g({ lo: 0, hi: 8 }))!)).toBe(true);
  });

  it('a whole gradient with a NaN in one layer keeps nothing, not even its finite layers', () => {
    const { r, g } = open();
    expect(r.accept(2, result(5, R, g(R))).kind).toBe('accepted');
    const bad = new Float32Array(g(L));
    bad[PARTS[1].offset + 3] = -Infinity; // layer 0 (read first, into a buffer of its own) and layer 2 are fine
    const b = new Uint8Array(bad.buffer);
    expect(r.accept(1, { ...result(5, L, bad), grad: [b.subarray(0, 41), b.subarray(41, 55), b.subarray(55)] })).toEqual({ kind: 'non-finite', node: L });
    expect(r.held).toBe(1);
    expect(r.rootSums()).toBe(null);
    r.assignments.give(L, 3);
    for (const i of [2, 0, 1]) expect(r.accept(3, partResult(5, L, g(L), i)).kind).toBe('accepted');
    expect(r.done).toBe(true);
    expect(bits(r.result().grad)!.equals(bits(g({ lo: 0, hi: 8 }))!)).toBe(true);
  });

  it('a node non-finite twice, in any parts, has diverged', () => {
    const { r, g } = open();
    const bad = new Float32Array(g(L));
    bad[0] = Infinity;
    expect(r.accept(1, partResult(5, L, bad, 0))).toEqual({ kind: 'non-finite', node: L });
    r.assignments.give(L, 2);
    expect(r.accept(2, result(5, L, g(L), Number.NaN))).toMatchObject({ kind: 'diverged', node: L });
  });

  it('reports each layer\'s root once, when it completes', () => {
    const { r, g } = open();
    const seen: number[][] = [];
    const send = (w: number, n: TreeNode, i: number): void => {
      const v = r.accept(w, partResult(5, n, g(n), i));
      if (v.kind !== 'accepted') throw new Error(JSON.stringify(v));
      seen.push([...v.rootParts]);
    };
    send(1, L, 2);
    send(2, R, 2); // layer 2's root
    send(2, R, 0);
    send(2, R, 1);
    expect(r.rootSums()).toEqual({ lossSum: 2, denomSum: 2, correct: 0 });
    expect(() => r.rootPart(0)).toThrow(/not complete/);
    expect(bits(r.rootPart(2))!.equals(bits(g({ lo: 0, hi: 8 }).subarray(20))!)).toBe(true);
    send(1, L, 1); // layer 1's root
    expect(r.done).toBe(false);
    expect(() => r.result()).toThrow(/not complete/);
    send(1, L, 0); // layer 0's root
    expect(seen).toEqual([[], [2], [], [], [1], [0]]);
    expect(r.done).toBe(true);
  });

  it('rejects parts that are neither the whole gradient nor one layer', () => {
    const { r, g } = open();
    const whole = g(L);
    const bad = (offset: number, length: number, floats = length): ResultIn => ({
      ...result(5, L, new Float32Array(whole.subarray(0, floats))), part: { offset, length },
    });
    for (const v of [
      r.accept(1, bad(0, 20)), // two layers
      r.accept(1, bad(5, 10)), // not at a layer's offset
      r.accept(1, bad(10, 9)), // a layer's offset, another length
      r.accept(1, bad(20, 14)),
      r.accept(1, bad(33, 0)),
      r.accept(1, bad(0, 10, 9)), // bytes != 4 x length
      r.accept(1, bad(0, 33, 32)),
      r.accept(1, { ...partResult(5, L, whole, 1), part: null }),
    ]) expect(v).toMatchObject({ kind: 'rejected', code: W.BAD_GRADIENT_LENGTH });
    expect(r.accept(1, bad(10, 10)).kind).toBe('accepted');
    const e = new Reducer({ paramCount: P, parts: PARTS });
    e.begin(req(1, 4, 2, 'eval'));
    e.assignments.give({ lo: 0, hi: 2 }, 1);
    expect(e.accept(1, { ...partResult(1, { lo: 0, hi: 2 }, whole, 0), version: 3 })).toMatchObject({ kind: 'rejected', code: W.BAD_GRADIENT_LENGTH });
    expect(e.accept(1, result(1, { lo: 0, hi: 2 }, null))).toEqual({ kind: 'accepted', node: { lo: 0, hi: 2 }, done: true, nodeDone: true, rootParts: [] });
    expect(e.result().grad).toBe(null);
  });

  it('refuses part layouts that do not tile the gradient', () => {
    expect(() => new Reducer({ paramCount: 10, parts: [{ offset: 0, length: 4 }, { offset: 5, length: 5 }] })).toThrow(/contiguous/);
    expect(() => new Reducer({ paramCount: 10, parts: [{ offset: 0, length: 4 }, { offset: 4, length: 0 }, { offset: 4, length: 6 }] })).toThrow(/non-empty/);
    expect(() => new Reducer({ paramCount: 10, parts: [{ offset: 0, length: 4 }, { offset: 4, length: 5 }] })).toThrow(/cover \[0, 9\)/);
    expect(() => new Reducer({ paramCount: 10, parts: [] })).toThrow(/cover/);
    expect(new Reducer({ paramCount: 10, parts: [{ offset: 0, length: 10 }] }).parts).toEqual([{ offset: 0, length: 10 }]);
  });

  it('counts held memory in gradient-equivalents of the parts waiting', () => {
    const rand = rng(24);
    const { nodeGrad } = synthetic(8, P, rand);
    const r = new Reducer({ paramCount: P, parts: PARTS, maxHeld: 2 });
    r.begin(req(1, 8, 1)); // 8 chunks, one leaf each
    for (let j = 0; j < 8; j++) r.assignments.give({ lo: j, hi: j + 1 }, j);
    const leaf = (j: number): TreeNode => ({ lo: j, hi: j + 1 });
    const send = (j: number, i: number): void => {
      expect(r.accept(j, partResult(1, leaf(j), nodeGrad(leaf(j)), i)).kind).toBe('accepted');
    };
    send(1, 0); // waits for leaf 0: 10 floats
    expect(r.held).toBe(10 / P);
    send(3, 2); // 13 more
    expect(r.held).toBe(23 / P);
    expect(r.stats.peakHeld).toBe(23 / P);
    send(0, 0); // leaf 0 + 1 of layer 0 combine: [0,2) waits for [2,4)
    expect(r.held).toBe(23 / P);
    expect(r.stats.peakHeld).toBe(33 / P); // the two waiting parts plus the incoming one
    for (const j of [5, 7]) for (const i of [0, 1, 2]) send(j, i);
    expect(r.held).toBe((10 + 13 + 2 * P) / P);
    expect(r.overBudget).toBe(true);
    expect(r.assignments.frontier()).toEqual(leaf(0));
    send(2, 0); // leaf 3 sent only layer 2: leaf 2's layer 0 waits too
    expect(r.held).toBe((20 + 13 + 2 * P) / P);
    expect(r.stats.buffers).toBeGreaterThanOrEqual(r.stats.peakHeld);
    expect(r.stats.buffers * P).toBe(Math.round(r.stats.buffers * P)); // whole buffers of the parts' lengths
    r.end();
    expect(r.held).toBe(0);
  });
});
