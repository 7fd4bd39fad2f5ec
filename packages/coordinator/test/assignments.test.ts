import { describe, expect, it } from 'vitest';
import { coverRange, type TreeNode } from '@gradhub/core';
import { Assignments, nodeKey } from '../src/assignments.js';
import { placeOrphans } from '../src/scheduler.js';
import { speculativeCopies } from '../src/speculation.js';
import { workersToRead } from '../src/flow-control.js';
import { INTERNAL } from '../../../test/support/errors.js';

const n = (lo: number, hi: number): TreeNode => ({ lo, hi });

describe('assignment record', () => {
  it('keys every node of the tree once, and nothing outside it', () => {
    for (const nChunks of [1, 2, 5, 8, 13]) {
      const a = new Assignments(nChunks * 4 - 1, 4); // a short last chunk
      expect(a.nChunks).toBe(nChunks);
      const keys = new Set<number>();
      for (let lo = 0; lo < nChunks; lo++) {
        for (let hi = lo + 1; hi <= nChunks; hi++) {
          const k = a.key(n(lo, hi));
          expect(k).toBe(nodeKey(lo, hi, nChunks));
          expect(keys.has(k)).toBe(false);
          keys.add(k);
        }
      }
      for (const bad of [n(0, nChunks + 1), n(-1, 1), n(1, 1), n(2, 1), n(0.5, 1), n(0, 2 * nChunks + 1)]) expect(a.key(bad)).toBe(-1);
    }
  });

  it('refuses ranges that are not tree nodes and nodes that overlap a given one', () => {
    const a = new Assignments(32, 4); // 8 chunks
    a.give(n(0, 4), 1);
    expect(() => a.give(n(2, 4), 1)).toThrow(/overlaps/);
    expect(() => a.give(n(1, 3), 1)).toThrow(/not a node/);
    expect(() => a.give(n(0, 9), 1)).toThrow(/not a node/);
    expect(() => new Assignments(0, 4)).toThrow(INTERNAL);
  });

  it('tracks owners, givers, completion and orphans', () => {
    const a = new Assignments(30, 4); // 8 chunks, the last of 2 samples
    const [L, R] = [n(0, 4), n(4, 8)];
    a.give(L, 1);
    a.give(R, 2);
    expect(a.samplesOf(L)).toBe(16);
    expect(a.samplesOf(R)).toBe(14);
    expect(a.pending()).toEqual([L, R]);
    expect(a.frontier()).toEqual(L);
    a.give(R, 3); // a speculative copy
    expect(a.ownersOf(R).sort()).toEqual([2, 3]);
    a.revoke(R, 2);
    expect(a.holds(a.key(R), 2)).toBe(false);
    expect(a.wasGiven(a.key(R), 2)).toBe(true);
    expect(a.wasGiven(a.key(R), 1)).toBe(false);
    expect(a.ownedBy(3)).toEqual([R]);
    a.markComplete(a.key(L));
    expect(a.isComplete(a.key(L))).toBe(true);
    expect(a.pending()).toEqual([R]);
    expect(a.frontier()).toEqual(R);
    expect(a.ownedBy(1)).toEqual([]); // complete nodes are nobody's concern
    expect(a.lose(3)).toEqual([R]);
    expect(a.orphans()).toEqual([R]);
    expect(a.nodeAt(a.key(R))).toEqual(R);
    expect(a.nodeAt(a.key(n(0, 2)))).toBeNull();
  });

  it('counts what each worker owes and has queued until its answers end its part', () => {
    const a = new Assignments(64, 4); // 16 chunks
    const nodes = coverRange(0, 6, 16); // [0,4) [4,6)
    for (const x of nodes) a.give(x, 7);
    a.sent(7, nodes, 1000);
    expect(a.owing(7)).toBe(2);
    expect(a.queued(7)).toBe(24);
    expect(a.firstOwed(7)).toBe(0);
    expect(a.sentAt(nodes[1])).toBe(1000);
    expect(a.hasWorker(7)).toBe(true);
    expect(a.workerCount).toBe(1);
    expect(a.owes(7, nodes[0])).toBe(true);
    expect(a.answered(7, nodes[0])).toBe(16);
    expect(a.answered(7, nodes[0])).toBe(-1); // once
    expect(a.owes(7, nodes[0])).toBe(false);
    expect(a.queued(7)).toBe(8);
    expect(a.firstOwed(7)).toBe(4);
    expect(a.answered(8, nodes[1])).toBe(-1); // never sent to 8
    a.lose(7);
    expect(a.owing(7)).toBe(0);
    expect(a.queued(7)).toBe(0);
    expect(a.hasWorker(7)).toBe(false);
    expect(a.firstOwed(7)).toBe(Infinity);
  });
});

describe('readers of the record', () => {
  it('the scheduler places orphans on the worker that finishes them first, counting what it has queued', () => {
    const a = new Assignments(64, 4); // 16 chunks
    const [L, R] = [n(0, 8), n(8, 16)];
    a.give(L, 1);
    a.give(R, 2);
    a.sent(1, [L], 0);
    a.lose(2);
    // Worker 1 has 32 samples queued: worker 3 at the same speed finishes R first.
    expect([...placeOrphans(a, [{ id: 1, speed: 10 }, { id: 3, speed: 10 }])]).toEqual([[3, [R]]]);
    // Excluded unless alone.
    expect([...placeOrphans(a, [{ id: 1, speed: 10 }, { id: 3, speed: 10 }], new Set([3]))]).toEqual([[1, [R]]]);
    expect([...placeOrphans(a, [{ id: 3, speed: 10 }], new Set([3]))]).toEqual([[3, [R]]]);
  });

  it('speculation copies nodes sent long ago with one owner to idle workers, oldest first', () => {
    const a = new Assignments(64, 4);
    const [A, B, C] = [n(0, 8), n(8, 12), n(12, 16)];
    a.give(A, 1);
    a.give(B, 2);
    a.give(C, 2);
    a.sent(1, [A], 500);
    a.sent(2, [B], 100);
    a.sent(2, [C], 900);
    const idle = [{ id: 5, maxBatch: 0 }, { id: 6, maxBatch: 0 }];
    expect(speculativeCopies(a, idle, 1000, 400)).toEqual([{ node: B, workerId: 5 }, { node: A, workerId: 6 }]);
    expect(speculativeCopies(a, [{ id: 5, maxBatch: 16 }], 1000, 400)).toEqual([{ node: B, workerId: 5 }]);
    expect(speculativeCopies(a, [{ id: 5, maxBatch: 8 }], 1000, 400)).toEqual([]); // B (16 samples) does not fit
    a.give(B, 7); // already copied: two owners
    expect(speculativeCopies(a, idle, 1000, 400)).toEqual([{ node: A, workerId: 5 }]);
    expect(speculativeCopies(a, [], 1000, 400)).toEqual([]);
  });

  it('flow control reads only as many owing workers as there is room for, the frontier owners first', () => {
    const a = new Assignments(64, 4);
    const nodes = [n(0, 4), n(4, 8), n(8, 12), n(12, 16)];
    nodes.forEach((x, i) => {
      a.give(x, i + 1);
      a.sent(i + 1, [x], 0);
    });
    const ids = [1, 2, 3, 4, 9]; // 9 owes nothing
    expect(workersToRead(null, null, { overBudget: false, maxHeld: 2, held: 0 }, ids)).toBeNull();
    expect(workersToRead(a, 'eval', { overBudget: true, maxHeld: 2, held: 2 }, ids)).toBeNull();
    expect(workersToRead(a, 'train', { overBudget: false, maxHeld: 8, held: 0 }, ids)).toBeNull();
    expect([...workersToRead(a, 'train', { overBudget: false, maxHeld: 4, held: 2 }, ids)!].sort()).toEqual([1, 2, 9]);
    expect([...workersToRead(a, 'train', { overBudget: true, maxHeld: 2, held: 2 }, ids)!].sort()).toEqual([1, 9]);
    a.markComplete(a.key(nodes[0]));
    a.answered(1, nodes[0]);
    expect([...workersToRead(a, 'train', { overBudget: true, maxHeld: 2, held: 2 }, ids)!].sort()).toEqual([1, 2, 9]);
  });
});
