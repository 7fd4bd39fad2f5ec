/**
 * The replica runner (rounds.ts) against the definition, bit for bit: one replica is H steps of
 * the straightforward loop (engine computeSums, sgd.ts's sgdStep on plain arrays, theta - local);
 * a node of several replicas is the canonical tree over its leaves (S(lo, hi) = S(lo, mid) +
 * S(mid, hi)), whatever node the replicas are cut into; the engine holds theta again afterwards;
 * a non-finite replica gives a NaN pseudo-gradient; cancelling stops early. The PyTorch figures are
 * test/rounds.reference.test.ts (the real CLI against scripts/reference/rounds.py's fixture).
 */
import { describe, expect, it } from 'vitest';
import { createEngine, engineFloats, type Engine, type NodeSums } from '../src/engine.js';
import { initParams } from '../src/init.js';
import { modelSpec } from '../src/model.js';
import { createWasmBackend } from '../src/kernels/wasm.js';
import { createReplicaRunner, checkReplicaRoundWork, type ReplicaRoundWork } from '../src/rounds.js';
import { sgdStep, type SgdOptions, type SgdState } from '../src/sgd.js';
import { addSiblings, treeMid } from '../src/tree.js';
import { expectSameBits, rng } from './kernels.testutil.js';

const spec = modelSpec([3072, 12, 10]);
const SGD: SgdOptions = { lr: 0.05, momentum: 0.9, dampening: 0, weightDecay: 1e-3, nesterov: true };

async function engine(): Promise<Engine> {
  const e = createEngine({ spec, backend: await createWasmBackend({ capacityFloats: engineFloats(spec, 16) }), maxBatch: 16, chunk: 4, normalize: false });
  initParams(spec, 11, e.params);
  return e;
}

/** M replicas of H inner batches (sizes in `sizes`, cycled) of random samples. */
function roundWork(M: number, H: number, sizes: number[], seed: number): ReplicaRoundWork {
  const innerBatches = Array.from({ length: M * H }, (_, i) => sizes[i % sizes.length]);
  const n = innerBatches.reduce((a, b) => a + b, 0);
  const rand = rng(seed);
  const pixels = new Uint8Array(n * 3072).map(() => Math.floor(rand() * 256));
  const labels = new Uint8Array(n).map(() => Math.floor(rand() * 10));
  return { localSteps: H, sgd: SGD, pixels, labels, innerBatches };
}

/** The replicas [lo, hi) of `w` as a work of their own. */
function slice(w: ReplicaRoundWork, lo: number, hi: number): ReplicaRoundWork {
  const H = w.localSteps;
  const sizes = Array.from(w.innerBatches);
  const start = sizes.slice(0, lo * H).reduce((a, b) => a + b, 0);
  const end = start + sizes.slice(lo * H, hi * H).reduce((a, b) => a + b, 0);
  return { ...w, pixels: w.pixels.subarray(start * 3072, end * 3072), labels: w.labels.subarray(start, end), innerBatches: sizes.slice(lo * H, hi * H) };
}

/** The definition of one replica: H steps of the plain loop from theta; returns theta - local and the sums. */
function replicaByHand(e: Engine, theta: Float32Array, w: ReplicaRoundWork): { delta: Float32Array; sums: NodeSums } {
  const local = theta.slice();
  const state: SgdState = { momentumBuffer: null };
  let lossSum = 0;
  let denomSum = 0;
  let correct = 0;
  let at = 0;
  for (let h = 0; h < w.localSteps; h++) {
    const b = w.innerBatches[h];
    e.params.set(local);
    const s = e.computeSums(w.pixels.subarray(at * 3072, (at + b) * 3072), w.labels.subarray(at, at + b), b, true);
    lossSum += s.lossSum;
    denomSum += s.denomSum;
    correct += s.correct;
    sgdStep(local, e.grads.slice(), s.denomSum, w.sgd, state);
    at += b;
  }
  e.params.set(theta);
  const delta = new Float32Array(theta.length);
  for (let i = 0; i < delta.length; i++) delta[i] = theta[i] - local[i];
  return { delta, sums: { lossSum, denomSum, correct } };
}

describe('replica runner', () => {
  it('one replica is H steps of the plain loop (engine + sgd.ts), theta - local, bit for bit; the engine holds theta again', async () => {
    const e = await engine();
    const theta = e.params.slice();
    const w = roundWork(1, 4, [16, 16, 9, 16], 1);
    const want = replicaByHand(await engine(), theta, w);
    const runner = await createReplicaRunner(e);
    const sums = await runner.run({ lo: 0, hi: 1 }, w);
    expectSameBits(runner.delta, want.delta, 'runner.delta');
    expect(sums).toEqual(want.sums);
    expectSameBits(e.params, theta, 'e.params');
    // The ts optimizer path gives the same bits.
    const tsRunner = await createReplicaRunner(e, { sgdBackend: 'ts' });
    await tsRunner.run({ lo: 0, hi: 1 }, w);
    expectSameBits(tsRunner.delta, want.delta, 'tsRunner.delta');
  });

  it('a node of M replicas is the canonical tree of its leaves, for any cut: [0,5) = [0,4) + [4,5), [0,4) = [0,2) + [2,4)', async () => {
    const e = await engine();
    const theta = e.params.slice();
    const w = roundWork(5, 2, [16, 7, 12], 2);
    const runner = await createReplicaRunner(e);
    const leaves: { delta: Float32Array; sums: NodeSums }[] = [];
    for (let m = 0; m < 5; m++) {
      const s = (await runner.run({ lo: m, hi: m + 1 }, slice(w, m, m + 1)))!;
      leaves.push({ delta: runner.delta.slice(), sums: { ...s } });
    }
    // The tree by hand over the leaves.
    const tree = (lo: number, hi: number): { delta: Float32Array; sums: NodeSums } => {
      if (hi - lo === 1) return leaves[lo];
      const mid = treeMid(lo, hi);
      const l = tree(lo, mid);
      const r = tree(mid, hi);
      const delta = new Float32Array(l.delta.length);
      addSiblings(delta, l.delta, r.delta);
      return { delta, sums: { lossSum: l.sums.lossSum + r.sums.lossSum, denomSum: l.sums.denomSum + r.sums.denomSum, correct: l.sums.correct + r.sums.correct } };
    };
    for (const [lo, hi] of [[0, 5], [0, 4], [2, 4], [4, 5]]) {
      const s = await runner.run({ lo, hi }, slice(w, lo, hi));
      const want = tree(lo, hi);
      expectSameBits(runner.delta, want.delta, 'runner.delta');
      expect(s).toEqual(want.sums);
      expectSameBits(e.params, theta, 'e.params');
    }
  });

  it('a non-finite inner step makes the replica NaN; cancelling returns null with theta restored', async () => {
    const e = await engine();
    const theta = e.params.slice();
    const w = roundWork(2, 3, [16], 3);
    const runner = await createReplicaRunner(e);
    const big = await runner.run({ lo: 0, hi: 2 }, { ...w, sgd: { ...SGD, lr: 1e38 } });
    expect(Number.isNaN(big!.lossSum)).toBe(true);
    expect(runner.delta.some((v) => Number.isNaN(v))).toBe(true);
    expectSameBits(e.params, theta, 'e.params');
    let steps = 0;
    const cut = await runner.run({ lo: 0, hi: 2 }, w, { between: () => void steps++, cancelled: () => steps >= 2 });
    expect(cut).toBeNull();
    expect(steps).toBe(2);
    expectSameBits(e.params, theta, 'e.params');
  });

  it('checks the work against its node: H inner batches per replica, each 1..maxBatch, adding up to the samples', () => {
    const w = roundWork(2, 3, [16], 4);
    expect(checkReplicaRoundWork({ lo: 0, hi: 2 }, w, 16)).toBe(96);
    expect(() => checkReplicaRoundWork({ lo: 0, hi: 3 }, w, 16)).toThrow(/6 inner batches for 3 replicas of 3 steps/);
    expect(() => checkReplicaRoundWork({ lo: 0, hi: 2 }, w, 8)).toThrow(/inner batch of 16 samples/);
    expect(() => checkReplicaRoundWork({ lo: 0, hi: 2 }, { ...w, labels: w.labels.subarray(1) }, 16)).toThrow(/96 samples need/);
  });
});
