import { describe, it, expect } from 'vitest';
import { treeMid, coverRange, parentOf, isTreeNode, children, treeFold, treeSum32, treeSum64, chunkCount, nodeSamples, addSiblings } from '../src/tree.js';
import { INTERNAL } from '../../../test/support/errors.js';

describe('canonical chunk tree', () => {
  it('splits at lo + the largest power of two below the width (the contract)', () => {
    expect(treeMid(0, 2)).toBe(1);
    expect(treeMid(0, 3)).toBe(2);
    expect(treeMid(0, 4)).toBe(2);
    expect(treeMid(0, 5)).toBe(4);
    expect(treeMid(0, 16)).toBe(8);
    expect(treeMid(0, 17)).toBe(16);
    expect(treeMid(4, 7)).toBe(6);
    expect(() => treeMid(3, 4)).toThrow(INTERNAL);
  });

  it('chunks cover the batch with a short last chunk', () => {
    expect(chunkCount(64, 16)).toBe(4);
    expect(chunkCount(50, 16)).toBe(4);
    expect(nodeSamples({ lo: 3, hi: 4 }, 50, 16)).toEqual({ start: 48, end: 50 });
    expect(nodeSamples({ lo: 0, hi: 2 }, 50, 16)).toEqual({ start: 0, end: 32 });
  });

  it('coverRange gives tree nodes that tile any range exactly, and every node knows its parent', () => {
    for (let n = 1; n <= 33; n++) {
      for (let a = 0; a < n; a++) {
        for (let b = a + 1; b <= n; b++) {
          const nodes = coverRange(a, b, n);
          let at = a;
          for (const nd of nodes) {
            expect(nd.lo).toBe(at);
            expect(isTreeNode(nd, n)).toBe(true);
            at = nd.hi;
          }
          expect(at).toBe(b);
        }
      }
      expect(parentOf({ lo: 0, hi: n }, n)).toBeNull();
    }
    expect(isTreeNode({ lo: 1, hi: 3 }, 4)).toBe(false);
    expect(() => parentOf({ lo: 1, hi: 3 }, 4)).toThrow(INTERNAL);
    expect(parentOf({ lo: 4, hi: 5 }, 5)).toEqual({ lo: 0, hi: 5 });
  });

  it('a node is the sum of its children: any cut of the tree combined upwards gives the root bits', () => {
    // Values whose float32 sums depend on the order, so a wrong order would show.
    const n = 203;
    const chunk = 7;
    const v = new Float32Array(n);
    let x = 12345;
    for (let i = 0; i < n; i++) {
      x = (Math.imul(x, 1103515245) + 12345) >>> 0;
      v[i] = Math.fround(1 + (x / 2 ** 32) * 2 ** -10) * (i % 3 === 0 ? 1 : 2 ** -12);
    }
    const nChunks = chunkCount(n, chunk);
    const nodeSum = (lo: number, hi: number): number => {
      const { start, end } = nodeSamples({ lo, hi }, n, chunk);
      return treeSum32(v.subarray(start, end), end - start, chunk);
    };
    const root = nodeSum(0, nChunks);
    // Combine every possible 2-level cut: each child of the root computed separately then added.
    const kids = children({ lo: 0, hi: nChunks })!;
    expect(Math.fround(nodeSum(kids[0].lo, kids[0].hi) + nodeSum(kids[1].lo, kids[1].hi))).toBe(root);
    // Reduce every contiguous cut bottom-up like the reducer does.
    for (let a = 1; a < nChunks; a++) {
      const parts = [...coverRange(0, a, nChunks), ...coverRange(a, nChunks, nChunks)];
      const have = new Map(parts.map((p) => [`${p.lo},${p.hi}`, nodeSum(p.lo, p.hi)]));
      const reduce = (lo: number, hi: number): number => {
        const got = have.get(`${lo},${hi}`);
        if (got !== undefined) return got;
        const mid = treeMid(lo, hi);
        return Math.fround(reduce(lo, mid) + reduce(mid, hi));
      };
      expect(reduce(0, nChunks)).toBe(root);
    }
    // The order matters at all (otherwise this test could not fail): a plain left-to-right sum differs.
    let seq = 0;
    for (let i = 0; i < n; i++) seq = Math.fround(seq + v[i]);
    expect(seq).not.toBe(root);
  });

  it('treeFold visits chunks in order and folds by the tree', () => {
    const s = treeFold(0, 5, (j) => `${j}`, (l, r) => `(${l}+${r})`);
    expect(s).toBe('(((0+1)+(2+3))+4)');
    expect(treeFold(0, 7, (j) => `${j}`, (l, r) => `(${l}+${r})`)).toBe('(((0+1)+(2+3))+((4+5)+6))');
    expect(treeSum64([1, 2, 3, 4, 5], 5, 2)).toBe(15);
  });

  it('addSiblings adds in float32', () => {
    const a = new Float32Array([1, 1e-8, -0]);
    const b = new Float32Array([2 ** -24, 1, -0]);
    const d = new Float32Array(3);
    addSiblings(d, a, b);
    expect([...d]).toEqual([Math.fround(1 + 2 ** -24), Math.fround(1e-8 + 1), -0]);
    expect(Object.is(d[2], -0)).toBe(true);
  });
});
