/**
 * Speculation: a node outstanding too long with a single owner is also given to an idle worker;
 * the first result wins (the reducer drops the other quietly). Pure (times are passed in).
 */
import type { TreeNode } from '@gradhub/core';
import type { Assignments } from './assignments.js';

/** How often to look for slow nodes, ms, when a node is slow after `afterMs`. */
export function speculationPeriodMs(afterMs: number): number {
  return Math.max(20, Math.min(1000, Math.floor(afterMs / 2)));
}

/**
 * The copies to make at `now`: the pending nodes held by one worker and sent at least `afterMs`
 * ago, longest-waiting first, paired in order with `idle` (workers owing nothing, the fastest
 * first); a pair whose node has more samples than its worker accepts (`maxBatch`, 0: no limit) is
 * skipped.
 */
export function speculativeCopies(
  record: Assignments, idle: readonly { readonly id: number; readonly maxBatch: number }[], now: number, afterMs: number,
): { node: TreeNode; workerId: number }[] {
  if (idle.length === 0) return [];
  const sentAt = (n: TreeNode): number => record.sentAt(n) ?? now;
  const slow = record.pending()
    .filter((n) => record.ownersOf(n).length === 1 && now - sentAt(n) >= afterMs)
    .sort((x, y) => sentAt(x) - sentAt(y));
  const out: { node: TreeNode; workerId: number }[] = [];
  for (let i = 0; i < slow.length && i < idle.length; i++) {
    const w = idle[i];
    if (w.maxBatch > 0 && record.samplesOf(slow[i]) > w.maxBatch) continue;
    out.push({ node: slow[i], workerId: w.id });
  }
  return out;
}
