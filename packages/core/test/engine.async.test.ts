/**
 * computeSumsAsync (and forwardBackwardAsync) against computeSums, BIT FOR BIT: the sums and every
 * gradient float, with the offload backend's async kernels (1, 2, 3 helper threads) and with
 * backends that have none (single-thread wasm, the oracle), on small models (one part a layer) and
 * on the default model (its big layers in several parts). The hooks: onSums before the backward
 * with the final sums, onPartGrad for every part of `engine.parts` (= streamParts(spec)), layers
 * L-1..0 and a layer's parts in increasing index, with that part's slice already final and the
 * layers below not yet written. The event loop runs while an offloaded call is pending; calls
 * must not overlap; a kernel error or a throwing hook rejects.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnNodeKernelThread } from '@gradhub/worker';
import { createEngine, engineFloats, type ComputeHooks, type Engine, type NodeSums } from '../src/engine.js';
import { initParams } from '../src/init.js';
import { modelSpec, streamParts, type ModelSpec, type StreamPart } from '../src/model.js';
import { createOracleBackend } from '../src/kernels/oracle.js';
import type { Backend } from '../src/kernels/types.js';
import { createWasmBackend } from '../src/kernels/wasm.js';
import { createThreadedWasmBackend, wasmThreadsSupported, type KernelThreadSpawner } from '../src/kernels/wasm-threads.js';
import { expectSameBits, rng } from './kernels.testutil.js';

const threadsOk = wasmThreadsSupported();
const CHUNK = 4;

/** n random CIFAR-10 samples: pixel bytes and labels. */
function batch(n: number, seed: number): { pixels: Uint8Array; labels: Uint8Array } {
  const rand = rng(seed);
  const pixels = new Uint8Array(n * 3072);
  for (let i = 0; i < pixels.length; i++) pixels[i] = Math.floor(rand() * 256);
  const labels = new Uint8Array(n);
  for (let i = 0; i < n; i++) labels[i] = Math.floor(rand() * 10);
  return { pixels, labels };
}

function engineOn(backend: Backend, spec: ModelSpec, maxBatch: number): Engine {
  const engine = createEngine({ spec, backend, maxBatch, chunk: CHUNK, normalize: true });
  initParams(spec, 7, engine.params);
  return engine;
}

/** True when every float of `a` is NaN (a plain loop: the default model's 10.5 M floats are checked often). */
function allNaN(a: Float32Array): boolean {
  for (let i = 0; i < a.length; i++) if (a[i] === a[i]) return false;
  return true;
}

/** A part's slice [offset, offset + length) of a flat buffer. */
const slice = (flat: Float32Array, p: StreamPart): Float32Array => flat.subarray(p.offset, p.offset + p.length);

/** The part indices in the order the backward pass finishes them: layers L-1..0, each layer's parts in increasing index. */
function backwardOrder(spec: ModelSpec, parts: readonly StreamPart[]): number[] {
  const order: number[] = [];
  for (let i = spec.layers.length - 1; i >= 0; i--) parts.forEach((p, j) => { if (p.layer === i) order.push(j); });
  return order;
}

/**
 * Run `run` (one computeSums* call with grad, then one without) with hooks on `engine`: onSums
 * first, with the final sums and no gradient written; then onPartGrad for every part in backward
 * order, each part's slice written when called and equal to the final gradient, the layers below
 * not written yet; without grad, onSums only. Returns the sums of the call with grad.
 */
async function recordHooks(engine: Engine, pixels: Uint8Array, labels: Uint8Array, n: number,
  run: (e: Engine, withGrad: boolean, hooks: ComputeHooks) => Promise<NodeSums> | NodeSums): Promise<NodeSums> {
  const { spec, parts } = engine;
  expect(parts).toEqual(streamParts(spec));
  const events: string[] = [];
  const copies = new Map<number, Float32Array>();
  let early: NodeSums | null = null;
  engine.grads.fill(Number.NaN);
  const sums = await run(engine, true, {
    onSums: (s) => {
      events.push('sums');
      early = { ...s };
      expect(allNaN(engine.grads), 'no gradient is written before onSums').toBe(true);
    },
    onPartGrad: (p) => {
      events.push(`part ${p}`);
      const mine = slice(engine.grads, parts[p]);
      expect(mine.some(Number.isNaN), `part ${p} written at its onPartGrad`).toBe(false);
      copies.set(p, mine.slice());
      for (const q of parts) {
        if (q.layer < parts[p].layer) expect(allNaN(slice(engine.grads, q)), `layer ${q.layer} still unwritten at onPartGrad(${p})`).toBe(true);
      }
    },
  });
  expect(events).toEqual(['sums', ...backwardOrder(spec, parts).map((p) => `part ${p}`)]);
  expect(early).toEqual(sums);
  parts.forEach((p, j) => expectSameBits(copies.get(j)!, slice(engine.grads, p), `part ${j} at its onPartGrad vs final`));
  // without grad: onSums only
  const none: string[] = [];
  await run(engine, false, { onSums: () => none.push('sums'), onPartGrad: (p) => none.push(`part ${p}`) });
  expect(none).toEqual(['sums']);
  return sums;
}

const expectSameSums = (got: NodeSums, want: NodeSums, what: string): void => {
  expect(Object.is(got.lossSum, want.lossSum), `${what}: lossSum ${got.lossSum} vs ${want.lossSum}`).toBe(true);
  expect(Object.is(got.denomSum, want.denomSum), `${what}: denomSum`).toBe(true);
  expect(got.correct, `${what}: correct`).toBe(want.correct);
};

describe('computeSumsAsync = computeSums, bit for bit', () => {
  const spec = modelSpec([3072, 64, 32, 10]);
  const maxBatch = 33;
  let reference: Engine; // single-thread wasm, computeSums
  beforeAll(async () => {
    reference = engineOn(await createWasmBackend({ capacityFloats: engineFloats(spec, maxBatch) }), spec, maxBatch);
  });

  async function check(engine: Engine, what: string): Promise<void> {
    for (const n of [1, 7, 33]) {
      const { pixels, labels } = batch(n, 100 + n);
      for (const withGrad of [true, false]) {
        reference.grads.fill(Number.NaN);
        const want = reference.computeSums(pixels, labels, n, withGrad);
        engine.grads.fill(Number.NaN);
        const got = await engine.computeSumsAsync(pixels, labels, n, withGrad);
        const tag = `${what} n=${n} withGrad=${withGrad}`;
        expectSameSums(got, want, tag);
        expectSameBits(engine.logits(n), reference.logits(n), `${tag} logits`);
        expectSameBits(engine.grads, reference.grads, `${tag} grads`); // NaN untouched without grad
        // forwardBackwardAsync on the same inputs, and the blocking path of the same engine
        const again = await engine.forwardBackwardAsync(labels, n, withGrad);
        expectSameSums(again, want, `${tag} forwardBackwardAsync`);
        expectSameSums(engine.computeSums(pixels, labels, n, withGrad), want, `${tag} computeSums`);
        expectSameBits(engine.grads, reference.grads, `${tag} grads (computeSums)`);
      }
    }
  }

  for (const threads of [1, 2, 3]) {
    it.runIf(threadsOk)(`offload, ${threads} helper thread(s), every call split (minWorkPerThread 0)`, async () => {
      const backend = await createThreadedWasmBackend({ capacityFloats: engineFloats(spec, maxBatch), threads, offload: true, spawn: spawnNodeKernelThread, minWorkPerThread: 0 });
      try {
        expect(backend.async).toBeDefined();
        await check(engineOn(backend, spec, maxBatch), `offload x${threads}`);
      } finally {
        backend.close?.();
      }
    });
  }

  it('backends without async kernels: single-thread wasm, oracle', async () => {
    await check(engineOn(await createWasmBackend({ capacityFloats: engineFloats(spec, maxBatch) }), spec, maxBatch), 'wasm');
    await check(engineOn(createOracleBackend(), spec, maxBatch), 'oracle');
  });
});

describe('computeSumsAsync hooks', () => {
  const spec = modelSpec([3072, 64, 32, 16, 10]);
  const n = 13;

  it.runIf(threadsOk)('offload (2 helpers): onSums, then onPartGrad layer by layer (L-1..0), each part final when called', async () => {
    const backend = await createThreadedWasmBackend({ capacityFloats: engineFloats(spec, n), threads: 2, offload: true, spawn: spawnNodeKernelThread, minWorkPerThread: 0 });
    try {
      const engine = engineOn(backend, spec, n);
      expect(engine.parts.map((p) => p.layer)).toEqual([0, 1, 2, 3]); // one part a layer
      const { pixels, labels } = batch(n, 5);
      await recordHooks(engine, pixels, labels, n, (e, withGrad, hooks) => e.computeSumsAsync(pixels, labels, n, withGrad, hooks));
    } finally {
      backend.close?.();
    }
  });

  it('blocking computeSums calls the same hooks in the same order (oracle backend)', async () => {
    const engine = engineOn(createOracleBackend(), spec, n);
    const { pixels, labels } = batch(n, 5);
    await recordHooks(engine, pixels, labels, n, (e, withGrad, hooks) => e.computeSums(pixels, labels, n, withGrad, hooks));
  });
});

describe.runIf(threadsOk)('the default model: big layers in several parts', () => {
  // 3072x2048 in 2 parts, 2048x2048 and 2048x10 in 1 each (streamParts' default of 2^22 floats)
  const spec = modelSpec([3072, 2048, 2048, 10]);
  const n = 3;

  it('computeSums (single-thread wasm) = computeSumsAsync (offload, 2 helpers), bit for bit; hooks part by part', async () => {
    const single = await createWasmBackend({ capacityFloats: engineFloats(spec, n) });
    const offload = await createThreadedWasmBackend({ capacityFloats: engineFloats(spec, n), threads: 2, offload: true, spawn: spawnNodeKernelThread, minWorkPerThread: 0 });
    try {
      const reference = engineOn(single, spec, n);
      const engine = createEngine({ spec, backend: offload, maxBatch: n, chunk: CHUNK, normalize: true });
      engine.params.set(reference.params);
      expect(engine.parts.map((p) => p.layer)).toEqual([0, 0, 1, 2]);
      const { pixels, labels } = batch(n, 21);
      const want = await recordHooks(reference, pixels, labels, n, (e, withGrad, hooks) => e.computeSums(pixels, labels, n, withGrad, hooks));
      const wantGrads = reference.grads.slice();
      const got = await recordHooks(engine, pixels, labels, n, (e, withGrad, hooks) => e.computeSumsAsync(pixels, labels, n, withGrad, hooks));
      expectSameSums(got, want, 'offload vs single');
      expectSameBits(engine.grads, wantGrads, 'grads: offload computeSumsAsync vs single-thread computeSums');
      expect(wantGrads.some((v) => v !== 0)).toBe(true);
    } finally {
      offload.close?.();
    }
  });
});

describe.runIf(threadsOk)('computeSumsAsync with offload: the event loop, overlaps, errors', () => {
  const spec = modelSpec([3072, 1400, 512, 10]);
  const n = 64;
  let backend: Backend;
  let engine: Engine;
  beforeAll(async () => {
    backend = await createThreadedWasmBackend({ capacityFloats: engineFloats(spec, n), threads: 1, offload: true, spawn: spawnNodeKernelThread });
    engine = engineOn(backend, spec, n);
  });
  afterAll(() => backend?.close?.());

  it('the event loop runs while the helpers compute (immediates and timers fire)', async () => {
    const { pixels, labels } = batch(n, 9);
    let immediates = 0;
    let stop = false;
    const spin = (): void => {
      immediates++;
      if (!stop) setImmediate(spin);
    };
    setImmediate(spin);
    let ticks = 0;
    const timer = setInterval(() => ticks++, 1);
    const t0 = performance.now();
    await engine.computeSumsAsync(pixels, labels, n, true);
    const ms = performance.now() - t0;
    stop = true;
    clearInterval(timer);
    // ~300 M multiply-adds: tens of ms on one helper, during which the loop turns freely.
    expect(ms).toBeGreaterThan(5);
    expect(immediates).toBeGreaterThan(100);
    expect(ticks).toBeGreaterThan(1);
  });

  it('calls must not overlap: a second call while one is pending throws (rejects)', async () => {
    const { pixels, labels } = batch(n, 10);
    const first = engine.computeSumsAsync(pixels, labels, n, true);
    expect(() => engine.computeSums(pixels, labels, n, true)).toThrow(/in progress \(calls must not overlap\)/);
    await expect(engine.computeSumsAsync(pixels, labels, n, true)).rejects.toThrow(/calls must not overlap/);
    const sums = await first;
    const again = await engine.computeSumsAsync(pixels, labels, n, true);
    expectSameSums(again, sums, 'after an overlap refused');
  });

  it('a hook that throws rejects the call, once the backend is idle; the next call runs', async () => {
    const { pixels, labels } = batch(n, 11);
    // Layer 0 (3072x1400) streams in two parts: the first one's hook throws while the second computes.
    expect(engine.parts.filter((p) => p.layer === 0).length).toBe(2);
    await expect(engine.computeSumsAsync(pixels, labels, n, true, { onPartGrad: (p) => { if (p === 0) throw new Error('send failed'); } }))
      .rejects.toThrow(/send failed/);
    await expect(engine.computeSumsAsync(pixels, labels, n, true, { onPartGrad: (p) => { if (p === 2) throw new Error('send failed'); } }))
      .rejects.toThrow(/send failed/);
    await expect(engine.computeSumsAsync(pixels, labels, n, true, { onSums: () => { throw new Error('no socket'); } })).rejects.toThrow(/no socket/);
    const sums = await engine.computeSumsAsync(pixels, labels, n, true);
    expect(sums.denomSum).toBe(n);
  });

  it('bad arguments reject', async () => {
    const { pixels, labels } = batch(n, 12);
    await expect(engine.computeSumsAsync(pixels, labels, n + 1, true)).rejects.toThrow(/65 samples, it holds 1..64/);
    await expect(engine.computeSumsAsync(pixels.subarray(0, 3072), labels, 2, true)).rejects.toThrow(/pixel bytes/);
    await expect(engine.forwardBackwardAsync(labels.subarray(0, 1), 2, true)).rejects.toThrow(/2 labels, got 1/);
  });

  it('a kernel thread that traps rejects the call', async () => {
    const small = modelSpec([3072, 8, 10]);
    // Helper 2 gets a scratch region past the end of the memory: its first access traps.
    const trapping: KernelThreadSpawner = (init, onError) =>
      spawnNodeKernelThread(init.slot === 2 ? { ...init, scratchOffset: init.memory.buffer.byteLength } : init, onError);
    const bad = await createThreadedWasmBackend({ capacityFloats: engineFloats(small, 4), threads: 2, offload: true, spawn: trapping, minWorkPerThread: 0 });
    try {
      const e = engineOn(bad, small, 4);
      const { pixels, labels } = batch(4, 13);
      await expect(e.computeSumsAsync(pixels, labels, 4, true)).rejects.toThrow(/linearForward: kernel thread 2 trapped/);
      await expect(e.computeSumsAsync(pixels, labels, 4, true)).rejects.toThrow(/kernel thread 2 trapped/); // not "in progress"
    } finally {
      bad.close?.();
    }
  });
});
