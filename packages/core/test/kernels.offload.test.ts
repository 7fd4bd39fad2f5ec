/**
 * The threaded WebAssembly backend with `offload` (helpers compute every slice, the calling thread
 * none) against the oracle and the single-thread wasm backend, BIT FOR BIT, on 1, 2 and 3 helper
 * threads (Node worker_threads: @gradhub/worker's spawner), every call split over all of them
 * (minWorkPerThread 0): the blocking kernels through kernels.testutil's compareAll, the async ones
 * (`backend.async`) here, and the weight gradient in row blocks through both. Plus what is particular to async calls: one call at a time, a helper that
 * traps rejects, close() while a call is pending rejects.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { spawnNodeKernelThread } from '@gradhub/worker';
import type { AsyncKernels, Backend } from '../src/kernels/types.js';
import { createWasmBackend } from '../src/kernels/wasm.js';
import { createThreadedWasmBackend, wasmThreadsSupported, type KernelThreadSpawner } from '../src/kernels/wasm-threads.js';
import { ROW_BLOCK_SHAPES, compareAll, compareRowBlocks, expectRowRangeChecked, expectSameBits, fill, oracle, put, rng, type Shape } from './kernels.testutil.js';

const threadsOk = wasmThreadsSupported();

/** The async kernels of `backend` (offload only), or fail. */
function asyncOf(backend: Backend): AsyncKernels {
  if (!backend.async) throw new Error('the backend has no async kernels');
  return backend.async;
}

/**
 * The three kernels through `backend.async` against the oracle and the single-thread wasm backend
 * `single`: every output bit for bit, on the same random inputs.
 */
async function compareAsync(backend: Backend, single: Backend, shape: Shape, seed: number, chunks: readonly number[]): Promise<void> {
  const { n, inF, outF } = shape;
  const rand = rng(seed);
  const src = { x: n * inF, w: outF * inF, b: outF, dy: n * outF, h: n * inF };
  const host = Object.fromEntries(Object.entries(src).map(([k, len]) => [k, fill(new Float32Array(len), rand)])) as Record<keyof typeof src, Float32Array>;
  const on = (be: Backend) => Object.fromEntries(Object.entries(host).map(([k, a]) => [k, put(be, a)])) as Record<keyof typeof src, Float32Array>;
  const A = on(backend);
  const S = on(single);
  const k = asyncOf(backend);
  const tag = `n=${n} in=${inF} out=${outF}`;
  for (const relu of [false, true]) {
    const want = new Float32Array(n * outF);
    oracle.linearForward(host.x, host.w, host.b, want, n, inF, outF, relu);
    const y = backend.allocF32(n * outF).fill(Number.NaN);
    const ys = single.allocF32(n * outF);
    await k.linearForward(A.x, A.w, A.b, y, n, inF, outF, relu);
    single.linearForward(S.x, S.w, S.b, ys, n, inF, outF, relu);
    expectSameBits(y, want, `async forward ${tag} relu=${relu}`);
    expectSameBits(ys, want, `single forward ${tag} relu=${relu}`);
  }
  for (const masked of [false, true]) {
    const want = new Float32Array(n * inF);
    oracle.linearBackwardInput(host.dy, host.w, want, n, inF, outF, masked ? host.h : null);
    const dx = backend.allocF32(n * inF).fill(Number.NaN);
    await k.linearBackwardInput(A.dy, A.w, dx, n, inF, outF, masked ? A.h : null);
    expectSameBits(dx, want, `async backward-input ${tag} mask=${masked}`);
  }
  for (const chunk of chunks) {
    const dw = new Float32Array(outF * inF);
    const db = new Float32Array(outF);
    oracle.linearBackwardWeight(host.dy, host.x, dw, db, n, inF, outF, chunk);
    const DW = backend.allocF32(outF * inF).fill(Number.NaN);
    const DB = backend.allocF32(outF).fill(Number.NaN);
    await k.linearBackwardWeight(A.dy, A.x, DW, DB, n, inF, outF, chunk);
    expectSameBits(DW, dw, `async weight gradient ${tag} chunk=${chunk}`);
    expectSameBits(DB, db, `async bias gradient ${tag} chunk=${chunk}`);
  }
}

/** Random inputs x (n, inF), w (outF, inF), a zero bias and an output y (n, outF) for a forward call. */
function forwardOperands(backend: Backend, n: number, inF: number, outF: number, seed: number) {
  const rand = rng(seed);
  return { x: fill(backend.allocF32(n * inF), rand), w: fill(backend.allocF32(outF * inF), rand), b: backend.allocF32(outF), y: backend.allocF32(n * outF) };
}

/** Random ragged shapes (and a few fixed ones across the tile and block sizes). */
function shapes(seed: number, count: number): Shape[] {
  const rand = rng(seed);
  const out: Shape[] = [{ n: 1, inF: 1, outF: 1 }, { n: 3, inF: 17, outF: 3 }, { n: 34, inF: 257, outF: 131 }, { n: 7, inF: 520, outF: 263 }];
  for (let t = 0; t < count; t++) out.push({ n: 1 + Math.floor(rand() * 60), inF: 1 + Math.floor(rand() * 90), outF: 1 + Math.floor(rand() * 90) });
  return out;
}

for (const threads of [1, 2, 3]) {
  describe.runIf(threadsOk)(`offload wasm backend (${threads} helper threads) = oracle = single-thread wasm, bit for bit`, () => {
    let wasm: Backend;
    let single: Backend;
    beforeAll(async () => {
      wasm = await createThreadedWasmBackend({ capacityFloats: 1 << 22, threads, offload: true, spawn: spawnNodeKernelThread, minWorkPerThread: 0 });
      single = await createWasmBackend({ capacityFloats: 1 << 22 });
    });
    afterAll(() => wasm?.close?.());

    it('blocking kernels', () => {
      shapes(10 + threads, 20).forEach((s, i) => compareAll(wasm, s, 8000 * threads + i, [1, 3, 16]));
    });

    it('async kernels', async () => {
      const all = shapes(20 + threads, 20);
      for (let i = 0; i < all.length; i++) await compareAsync(wasm, single, all[i], 9000 * threads + i, [1, 4, 1000]);
    });

    it('n = 0', async () => {
      compareAll(wasm, { n: 0, inF: 5, outF: 9 }, 9900 * threads, [16]);
      await compareAsync(wasm, single, { n: 0, inF: 5, outF: 9 }, 9901 * threads, [16]);
    });

    it('weight gradient in row blocks = one call, bit for bit, blocking and async; the range is checked', async () => {
      for (const [i, s] of ROW_BLOCK_SHAPES.entries()) {
        await compareRowBlocks(wasm, s, 9910 * threads + i, 1 + (i % 4) * 5);
        await compareRowBlocks(wasm, s, 9950 * threads + i, 1 + (i % 3) * 7, asyncOf(wasm).linearBackwardWeight);
      }
      await expectRowRangeChecked(wasm);
      await expectRowRangeChecked(wasm, asyncOf(wasm).linearBackwardWeight);
    });
  });
}

describe.runIf(threadsOk)('offload wasm backend: async calls', () => {
  it('async kernels only with offload; the offload backend is shared memory even on 1 thread', async () => {
    const two = await createThreadedWasmBackend({ capacityFloats: 1 << 10, threads: 2, spawn: spawnNodeKernelThread });
    const one = await createThreadedWasmBackend({ capacityFloats: 1 << 10, threads: 1, offload: true, spawn: spawnNodeKernelThread });
    try {
      expect(two.async).toBeUndefined();
      expect((await createThreadedWasmBackend({ capacityFloats: 16, threads: 1 })).async).toBeUndefined();
      expect(one.async).toBeDefined();
      expect(one.allocF32(4).buffer instanceof SharedArrayBuffer).toBe(true);
    } finally {
      two.close?.();
      one.close?.();
    }
    await expect(createThreadedWasmBackend({ capacityFloats: 16, threads: 1, offload: true })).rejects.toThrow(/spawn/);
  });

  it('argument errors reject with the blocking kernels\' messages', async () => {
    const wasm = await createThreadedWasmBackend({ capacityFloats: 1 << 10, threads: 2, offload: true, spawn: spawnNodeKernelThread });
    try {
      const x = wasm.allocF32(8);
      const w = wasm.allocF32(8);
      const b = wasm.allocF32(2);
      const y = wasm.allocF32(3);
      const sync = (): void => wasm.linearForward(x, w, b, y, 2, 4, 2, false);
      expect(sync).toThrow(/y has 3 floats, needs 4/);
      await expect(asyncOf(wasm).linearForward(x, w, b, y, 2, 4, 2, false)).rejects.toThrow(/y has 3 floats, needs 4/);
      const foreign = new Float32Array(8);
      await expect(asyncOf(wasm).linearBackwardInput(foreign, w, x, 2, 4, 2, null)).rejects.toThrow(/dy is not storage of this wasm backend/);
      await expect(asyncOf(wasm).linearBackwardWeight(y, x, w, b, 1, 4, 2, 0)).rejects.toThrow(/chunk must be an integer >= 1/);
    } finally {
      wasm.close?.();
    }
  });

  it('one call at a time: a call while an async one is pending throws (rejects); the backend is usable after', async () => {
    const wasm = await createThreadedWasmBackend({ capacityFloats: 1 << 22, threads: 2, offload: true, spawn: spawnNodeKernelThread, minWorkPerThread: 0 });
    try {
      const [n, inF, outF] = [64, 1024, 512];
      const { x, w, b, y } = forwardOperands(wasm, n, inF, outF, 1);
      const y2 = wasm.allocF32(n * outF);
      const pending = asyncOf(wasm).linearForward(x, w, b, y, n, inF, outF, false);
      expect(() => wasm.linearForward(x, w, b, y2, n, inF, outF, false)).toThrow(/pending \(calls must not overlap\)/);
      await expect(asyncOf(wasm).linearForward(x, w, b, y2, n, inF, outF, false)).rejects.toThrow(/must not overlap/);
      await pending;
      wasm.linearForward(x, w, b, y2, n, inF, outF, false);
      expectSameBits(y2, y, 'forward after an overlap refused');
    } finally {
      wasm.close?.();
    }
  });

  it('a helper that traps rejects the call (and throws the blocking one); the next call runs', async () => {
    // Helper 2 gets a scratch region past the end of the memory: its first access traps.
    const trapping: KernelThreadSpawner = (init, onError) =>
      spawnNodeKernelThread(init.slot === 2 ? { ...init, scratchOffset: init.memory.buffer.byteLength } : init, onError);
    const wasm = await createThreadedWasmBackend({ capacityFloats: 1 << 16, threads: 2, offload: true, spawn: trapping, minWorkPerThread: 0 });
    try {
      const [n, inF, outF] = [5, 40, 12];
      const { x, w, b, y } = forwardOperands(wasm, n, inF, outF, 3);
      const dw = wasm.allocF32(outF * inF);
      await expect(asyncOf(wasm).linearForward(x, w, b, y, n, inF, outF, true)).rejects.toThrow(/linearForward: kernel thread 2 trapped/);
      await expect(asyncOf(wasm).linearBackwardWeight(y, x, dw, b, n, inF, outF, 2)).rejects.toThrow(/linearBackwardWeight: kernel thread 2 trapped/);
      expect(() => wasm.linearForward(x, w, b, y, n, inF, outF, true)).toThrow(/kernel thread 2 trapped/);
      // A call of one slice runs on helper 1 alone, which is sound.
      const want = new Float32Array(1);
      oracle.linearForward(x.slice(0, inF), w.slice(0, inF), b.slice(0, 1), want, 1, inF, 1, false);
      await asyncOf(wasm).linearForward(x, w, b, y, 1, inF, 1, false);
      expectSameBits(y.subarray(0, 1), want, 'one-slice forward after a trap');
    } finally {
      wasm.close?.();
    }
  });

  it('close() while an async call is pending rejects it; calls afterwards reject as closed', async () => {
    const wasm = await createThreadedWasmBackend({ capacityFloats: 1 << 22, threads: 1, offload: true, spawn: spawnNodeKernelThread });
    const [n, inF, outF] = [128, 1024, 1024];
    const { x, w, b, y } = forwardOperands(wasm, n, inF, outF, 5);
    const pending = asyncOf(wasm).linearForward(x, w, b, y, n, inF, outF, false);
    wasm.close?.();
    await expect(pending).rejects.toThrow(/closed while the call was pending/);
    await expect(asyncOf(wasm).linearForward(x, w, b, y, n, inF, outF, false)).rejects.toThrow(/the backend is closed/);
  });

  it('without Atomics.waitAsync, async calls fall back to the blocking wait: same bits', async () => {
    const atomics = Atomics as unknown as { waitAsync?: unknown };
    const saved = atomics.waitAsync;
    delete atomics.waitAsync;
    let fresh: typeof import('../src/kernels/wasm-threads.js');
    try {
      vi.resetModules();
      fresh = await import('../src/kernels/wasm-threads.js'); // reads Atomics.waitAsync when it loads
    } finally {
      atomics.waitAsync = saved;
    }
    const wasm = await fresh.createThreadedWasmBackend({ capacityFloats: 1 << 20, threads: 2, offload: true, spawn: spawnNodeKernelThread, minWorkPerThread: 0 });
    try {
      const single = await createWasmBackend({ capacityFloats: 1 << 20 });
      await compareAsync(wasm, single, { n: 19, inF: 70, outF: 33 }, 9999, [4]);
    } finally {
      wasm.close?.();
    }
  });
});
