/**
 * Flow control: which workers' sockets are read. Pure.
 *
 * Memory budget (reducer.ts): gradients being received count like waiting ones. Of the workers
 * that still owe results, only as many as the reducer has room for (maxHeld - held, at least 1)
 * are read, the ones whose leftmost owed node comes first in tree order; over budget, only the
 * frontier's owners (the leftmost incomplete node's). The others are paused: their results wait
 * in their sockets. So results arrive in tree order, and held and in-flight gradients together
 * stay within the budget plus the tree depth, whatever the number of workers. Workers that owe
 * nothing are always read, and everyone in an 'eval' request (no tensors) or outside a request.
 */
import type { Assignments } from './assignments.js';
import { carriesTensor, type RequestMode } from './executor.js';

/** What flow control needs of the reducer. */
export interface Budget {
  readonly overBudget: boolean;
  readonly maxHeld: number;
  readonly held: number;
}

/** Of `workers` (ids), the ones to read now; null: all of them. */
export function workersToRead(record: Assignments | null, mode: RequestMode | null, budget: Budget, workers: readonly number[]): Set<number> | null {
  if (!record || mode === null || !carriesTensor(mode)) return null;
  const owing = workers.filter((id) => record.owing(id) > 0);
  const room = budget.overBudget ? 0 : Math.max(1, budget.maxHeld - budget.held);
  if (owing.length <= room) return null;
  const f = record.frontier();
  const read = new Set(f ? record.ownersOf(f) : []);
  const ordered = owing.map((id) => ({ id, lo: record.firstOwed(id) })).sort((x, y) => x.lo - y.lo || x.id - y.id);
  for (let i = 0; i < room && i < ordered.length; i++) read.add(ordered[i].id);
  for (const id of workers) if (record.owing(id) === 0) read.add(id);
  return read;
}
