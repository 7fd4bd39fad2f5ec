/**
 * The auditor against a real engine: an honest node's digest passes, a scaled gradient, a forged
 * denominator or forged correct count is proven (the worker reported once, with its distrusted
 * steps), unaudited results are distrusted too, a round node is checked through the replica
 * runner, and a rollback voids later records.
 */
import { describe, expect, it } from 'vitest';
import pino from 'pino';
import { createEngine, createReplicaRunner, createWasmBackend, engineFloats, initParams, modelSpec, streamParts, xxh64Hex, type Engine, type TreeNode } from '@gradhub/core';
import { Auditor, digestPieces, type AuditJob, type NodeDigest } from '../src/audit.js';

const SPEC = modelSpec([3072, 8, 10]);
const CHUNK = 4;
const BATCH = 8;
const logger = pino({ level: 'silent' });

async function setup(): Promise<{ engine: Engine; params: Float32Array; pixels: Uint8Array; labels: Uint8Array; auditor: (rate: number, cheaters?: number[]) => Auditor }> {
  const engine = createEngine({ spec: SPEC, backend: await createWasmBackend({ capacityFloats: engineFloats(SPEC, BATCH) }), maxBatch: BATCH, chunk: CHUNK, normalize: false });
  const params = new Float32Array(SPEC.paramCount);
  initParams(SPEC, 1, params);
  const pixels = new Uint8Array(BATCH * 3072).map((_, i) => (i * 7919) % 256);
  const labels = new Uint8Array(BATCH).map((_, i) => i % 10);
  const backend = await createWasmBackend({ capacityFloats: 4 * engineFloats(SPEC, BATCH) }); // room for up to 4 auditors' engines
  return {
    engine, params, pixels, labels,
    auditor: (rate, cheaters = []) => new Auditor({ spec: SPEC, backend, chunk: CHUNK, normalize: false, maxBatch: BATCH, rate, logger, random: () => 0.5, onCheater: (id) => cheaters.push(id) }),
  };
}

/** What an honest worker sends for `node`: one digest per stream part, and the node's sums. */
function honest(engine: Engine, params: Float32Array, pixels: Uint8Array, labels: Uint8Array, node: TreeNode, workerId: number, scale = 1): NodeDigest {
  engine.params.set(params);
  const a = node.lo * CHUNK;
  const b = Math.min(node.hi * CHUNK, BATCH);
  const sums = engine.computeSums(pixels.subarray(a * 3072, b * 3072), labels.subarray(a, b), b - a, true);
  const parts = streamParts(SPEC).map(({ offset, length }) => {
    const g = engine.grads.slice(offset, offset + length).map((v) => v * scale);
    return { offset, length, hash: digestPieces([new Uint8Array(g.buffer)]) };
  });
  return { workerId, trusted: false, node, parts, lossSum: sums.lossSum, denomSum: sums.denomSum, correct: sums.correct };
}

describe('audits by recomputation', () => {
  it('passes an honest node and proves a scaled gradient, a forged denominator and a forged correct count', async () => {
    const { engine, params, pixels, labels, auditor } = await setup();
    const cheaters: number[] = [];
    const au = auditor(1, cheaters);
    const job = (step: number, nodes: NodeDigest[]): AuditJob => ({ step, mode: 'train', params, pixels, labels, batch: BATCH, nodes });
    const left = { lo: 0, hi: 1 };
    const right = { lo: 1, hi: 2 };
    const ok = honest(engine, params, pixels, labels, left, 1);
    au.submit(job(1, [ok, honest(engine, params, pixels, labels, right, 2, 1000)]));
    au.submit(job(2, [ok, { ...honest(engine, params, pixels, labels, right, 3), denomSum: 2 }]));
    au.submit(job(3, [{ ...ok, workerId: 4, correct: 0 === ok.correct ? 1 : 0 }]));
    await au.settled();
    expect(cheaters).toEqual([2, 3, 4]);
    expect(au.stats).toEqual({ passed: 2, failed: 3, skipped: 0 });
    expect(au.takeProven()).toEqual([{ workerId: 2, steps: [1] }, { workerId: 3, steps: [2] }, { workerId: 4, steps: [3] }]);
    expect(au.takeProven()).toEqual([]);
  });

  it('decides a dispute over a node\'s sums: the claim that differs from the recompute is proven, whichever came first; a trusted one is reported, not banned', async () => {
    const { engine, params, pixels, labels, auditor } = await setup();
    const cheaters: number[] = [];
    const au = auditor(0, cheaters); // no sampled audits: disputes are decided all the same
    const node = { lo: 0, hi: 2 };
    const truth = honest(engine, params, pixels, labels, node, 7);
    const claim = (workerId: number, d: NodeDigest, trusted = false) => ({ workerId, trusted, lossSum: d.lossSum, denomSum: d.denomSum, correct: d.correct });
    const job = { step: 3, mode: 'train' as const, params, pixels, labels, batch: BATCH };
    const forged = { ...truth, denomSum: truth.denomSum / 2 };
    const liars = await au.judgeDispute(job, node, [claim(1, forged), claim(2, truth)]);
    expect(liars.map((c) => c.workerId)).toEqual([1]);
    expect(await au.judgeDispute(job, node, [claim(2, truth), claim(3, { ...truth, correct: truth.correct + 1 })])).toMatchObject([{ workerId: 3 }]);
    expect(cheaters).toEqual([1, 3]);
    expect(au.takeProven()).toEqual([{ workerId: 1, steps: [3] }, { workerId: 3, steps: [3] }]);
    // A trusted claim that differs is returned (the trainer calls it a bug), never banned.
    expect(await au.judgeDispute(job, node, [claim(4, forged, true), claim(2, truth)])).toMatchObject([{ workerId: 4, trusted: true }]);
    expect(cheaters).toEqual([1, 3]);
    expect(au.takeProven()).toEqual([]);
  });

  it('knows the oldest step that may still prove a lie (for the anchor), forgets ended sessions, and makes old steps final', async () => {
    const { engine, params, pixels, labels, auditor } = await setup();
    const au = auditor(0.4); // draw 0.5: the 4 results of probation audited (and passed), then none
    const left = { lo: 0, hi: 1 };
    const job = (step: number, workerId: number): AuditJob => ({ step, mode: 'train', params, pixels, labels, batch: BATCH, nodes: [honest(engine, params, pixels, labels, left, workerId)] });
    for (let step = 1; step <= 4; step++) au.submit(job(step, 7));
    await au.settled();
    expect(au.oldestOpenStep()).toBe(null); // all audited and passed
    au.submit(job(5, 7));
    au.submit(job(6, 7));
    for (let step = 6; step <= 11; step++) au.submit(job(step, 8));
    await au.settled();
    expect(au.oldestOpenStep()).toBe(5); // worker 7's first unaudited result
    au.sessionEnded(7);
    expect(au.oldestOpenStep()).toBe(10); // worker 8: 6..9 audited (probation), 10 not
    // Steps up to 10 made final: worker 8's unaudited step 10 is forgotten and counted if proven.
    au.finalThrough(10);
    expect(au.oldestOpenStep()).toBe(11);
    // Worker 8 proven (through a dispute): its forgotten distrusted step is reported as final.
    await au.judgeDispute({ step: 12, mode: 'train', params, pixels, labels, batch: BATCH }, left, [{ workerId: 8, trusted: false, lossSum: 0, denomSum: 1, correct: 0 }]);
    expect(au.takeProven()).toEqual([{ workerId: 8, steps: [11, 12], final: 1 }]);
  });

  it('distrusts the unaudited results of a proven cheater, not its passed ones; a rollback voids later steps', async () => {
    const { engine, params, pixels, labels, auditor } = await setup();
    // rate 0.4 with draw 0.5: probation (4 results) audited, then none.
    const au = auditor(0.4);
    const left = { lo: 0, hi: 1 };
    const good = honest(engine, params, pixels, labels, left, 7);
    for (let step = 1; step <= 6; step++) au.submit({ step, mode: 'train', params, pixels, labels, batch: BATCH, nodes: [good] });
    await au.settled();
    expect(au.stats).toEqual({ passed: 4, failed: 0, skipped: 2 });
    au.rolledBack(5); // step 6 voided
    const au2 = auditor(1);
    au2.submit({ step: 1, mode: 'train', params, pixels, labels, batch: BATCH, nodes: [good] });
    au2.submit({ step: 2, mode: 'train', params, pixels, labels, batch: BATCH, nodes: [{ ...good, lossSum: good.lossSum + 1 }] });
    await au2.settled();
    expect(au2.takeProven()).toEqual([{ workerId: 7, steps: [2] }]);
    // Worker 7 on the first auditor: steps 1..4 passed (probation), 5 unaudited, 6 voided by the rollback; a later lie proves it.
    const au3 = auditor(1);
    for (let step = 1; step <= 3; step++) au3.submit({ step, mode: 'train', params, pixels, labels, batch: BATCH, nodes: [good] });
    await au3.settled();
    au3.rolledBack(2);
    au3.submit({ step: 3, mode: 'train', params, pixels, labels, batch: BATCH, nodes: [{ ...good, denomSum: good.denomSum + 1 }] });
    await au3.settled();
    expect(au3.takeProven()).toEqual([{ workerId: 7, steps: [3] }]);
    expect(au.takeProven()).toEqual([]);
  });

  it('checks a round node through the replica runner', async () => {
    const { engine, params, pixels, labels, auditor } = await setup();
    const round = { localSteps: 2, replicas: 2, sgd: { lr: 0.05, momentum: 0.9, dampening: 0, weightDecay: 0, nesterov: false, maximize: false }, innerBatches: Uint32Array.of(2, 2, 2, 2), offsets: Uint32Array.of(0, 4, 8) };
    engine.params.set(params);
    const runner = await createReplicaRunner(engine);
    const node = { lo: 1, hi: 2 };
    const sums = (await runner.run(node, { localSteps: 2, sgd: round.sgd, pixels: pixels.subarray(4 * 3072), labels: labels.subarray(4), innerBatches: round.innerBatches.subarray(2) }))!;
    const parts = streamParts(SPEC).map(({ offset, length }) => ({ offset, length, hash: xxh64Hex(runner.delta.subarray(offset, offset + length)) }));
    const d: NodeDigest = { workerId: 1, trusted: false, node, parts, lossSum: sums.lossSum, denomSum: sums.denomSum, correct: sums.correct };
    const cheaters: number[] = [];
    const au = auditor(1, cheaters);
    const scaled = { ...d, workerId: 2, parts: streamParts(SPEC).map(({ offset, length }) => ({ offset, length, hash: xxh64Hex(runner.delta.slice(offset, offset + length).map((v) => v * 1000)) })) };
    au.submit({ step: 1, mode: 'round', params, pixels, labels, batch: 8, round, nodes: [d, scaled] });
    await au.settled();
    expect(au.stats.passed).toBe(1);
    expect(cheaters).toEqual([2]);
  });
});
