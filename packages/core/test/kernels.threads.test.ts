/**
 * The threaded WebAssembly backend against the oracle, BIT FOR BIT (Uint32Array views), on 2 and 3
 * threads (Node worker_threads helpers: @gradhub/worker's spawner), every call split over all
 * threads (minWorkPerThread 0): random and ragged shapes, shapes with fewer outputs than threads,
 * block boundaries, minimal scratch, the weight gradient in row blocks (each block split over the
 * threads) = one call; plus its life cycle (start failures, close).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnNodeKernelThread } from '@gradhub/worker';
import type { Backend } from '../src/kernels/types.js';
import { MIN_SCRATCH_FLOATS } from '../src/kernels/wasm.js';
import { createThreadedWasmBackend, wasmThreadsSupported, type KernelThreadSpawner } from '../src/kernels/wasm-threads.js';
import { ROW_BLOCK_SHAPES, compareAll, compareRowBlocks, expectRowRangeChecked, rng, type Shape } from './kernels.testutil.js';

const threadsOk = wasmThreadsSupported();

for (const threads of [2, 3]) {
  describe.runIf(threadsOk)(`threaded wasm backend (${threads} threads) = oracle, bit for bit`, () => {
    let wasm: Backend;
    let small: Backend; // minimal scratch per thread: every kernel in many blocks
    beforeAll(async () => {
      wasm = await createThreadedWasmBackend({ capacityFloats: 1 << 22, threads, spawn: spawnNodeKernelThread, minWorkPerThread: 0 });
      small = await createThreadedWasmBackend({ capacityFloats: 1 << 21, threads, spawn: spawnNodeKernelThread, minWorkPerThread: 0, scratchFloats: MIN_SCRATCH_FLOATS });
    });
    afterAll(() => {
      wasm?.close?.();
      small?.close?.();
    });

    it('shapes smaller than the thread count (1..3 outputs, fewer than 16 inputs, 1 sample)', () => {
      const shapes: Shape[] = [];
      for (const n of [1, 2, 3]) {
        for (const [inF, outF] of [[1, 1], [2, 1], [1, 2], [3, 3], [2, 5], [15, 2], [16, 3], [17, 1], [33, 4]]) shapes.push({ n, inF, outF });
      }
      shapes.forEach((s, i) => compareAll(wasm, s, 1000 * threads + i, [1, 2, 16]));
    });

    it('ragged shapes (not multiples of 2, 4, 16) and chunks 1, 3, 16, > n', () => {
      const shapes: Shape[] = [];
      for (const n of [5, 16, 17]) {
        for (const [inF, outF] of [[3, 2], [16, 16], [17, 15], [33, 7], [5, 33], [49, 11]]) shapes.push({ n, inF, outF });
      }
      shapes.forEach((s, i) => compareAll(wasm, s, 2000 * threads + i, [1, 3, 16, 1000]));
    });

    it('shapes across the block sizes', () => {
      const shapes: Shape[] = [
        { n: 34, inF: 257, outF: 131 },
        { n: 19, inF: 129, outF: 258 },
        { n: 64, inF: 300, outF: 20 },
        { n: 7, inF: 520, outF: 263 },
      ];
      shapes.forEach((s, i) => compareAll(wasm, s, 3000 * threads + i, [1, 16]));
    });

    it('minimal scratch per thread (k blocks, sample blocks, many weight-gradient blocks)', () => {
      const shapes: Shape[] = [
        { n: 37, inF: 300, outF: 45 },
        { n: 200, inF: 40, outF: 70 },
        { n: 3, inF: 530, outF: 17 },
        { n: 20, inF: 40, outF: 300 },
      ];
      shapes.forEach((s, i) => compareAll(small, s, 4000 * threads + i, [1, 5, 16]));
    });

    it('random shapes', () => {
      const rand = rng(5 + threads);
      for (let t = 0; t < 30; t++) {
        const shape = { n: 1 + Math.floor(rand() * 60), inF: 1 + Math.floor(rand() * 90), outF: 1 + Math.floor(rand() * 90) };
        compareAll(t % 3 === 2 ? small : wasm, shape, 5000 * threads + t, [1 + Math.floor(rand() * 20)]);
      }
    });

    it('n = 0', () => {
      compareAll(wasm, { n: 0, inF: 5, outF: 9 }, 6000 * threads, [16]);
    });

    it('weight gradient in row blocks = one call, bit for bit (each block split over the threads); the range is checked', async () => {
      for (const [i, s] of ROW_BLOCK_SHAPES.entries()) await compareRowBlocks(wasm, s, 6100 * threads + i, 1 + (i % 4) * 5);
      await compareRowBlocks(small, { n: 200, inF: 40, outF: 70 }, 6190 * threads, 16);
      await expectRowRangeChecked(wasm);
    });
  });
}

describe.runIf(threadsOk)('threaded wasm backend life cycle', () => {
  it('default minWorkPerThread: small and large calls alike give the oracle bits', async () => {
    const wasm = await createThreadedWasmBackend({ capacityFloats: 1 << 22, threads: 2, spawn: spawnNodeKernelThread });
    try {
      compareAll(wasm, { n: 3, inF: 5, outF: 4 }, 7001, [2]); // too small to split: the caller alone
      compareAll(wasm, { n: 48, inF: 200, outF: 90 }, 7002, [16]); // 864,000 multiply-adds: split
    } finally {
      wasm.close?.();
    }
  });

  it('threads 1 is the single-thread backend (no spawner needed)', async () => {
    const wasm = await createThreadedWasmBackend({ capacityFloats: 1 << 16, threads: 1 });
    compareAll(wasm, { n: 9, inF: 20, outF: 7 }, 7003, [4]);
    await compareRowBlocks(wasm, { n: 9, inF: 20, outF: 7 }, 7004, 4);
    expect(wasm.allocF32(4).buffer instanceof SharedArrayBuffer).toBe(false);
  });

  it('close(): idempotent; kernels throw afterwards; arrays stay readable', async () => {
    const wasm = await createThreadedWasmBackend({ capacityFloats: 1 << 16, threads: 3, spawn: spawnNodeKernelThread, minWorkPerThread: 0 });
    const x = wasm.allocF32(4).fill(1);
    const w = wasm.allocF32(4).fill(2);
    const b = wasm.allocF32(2);
    const y = wasm.allocF32(4);
    wasm.linearForward(x, w, b, y, 2, 2, 2, false);
    expect(Array.from(y)).toEqual([4, 4, 4, 4]);
    wasm.close?.();
    wasm.close?.();
    expect(() => wasm.linearForward(x, w, b, y, 2, 2, 2, false)).toThrow(/closed/);
    expect(Array.from(y)).toEqual([4, 4, 4, 4]);
  });

  it('threads > 1 needs a spawner; bad thread counts are refused', async () => {
    await expect(createThreadedWasmBackend({ capacityFloats: 16, threads: 2 })).rejects.toThrow(/spawn/);
    await expect(createThreadedWasmBackend({ capacityFloats: 16, threads: 0, spawn: spawnNodeKernelThread })).rejects.toThrow(/threads/);
    await expect(createThreadedWasmBackend({ capacityFloats: 16, threads: 1.5, spawn: spawnNodeKernelThread })).rejects.toThrow(/threads/);
  });

  it('a thread that fails to start, or never starts, rejects the creation and the others are terminated', async () => {
    let terminated = 0;
    const failing: KernelThreadSpawner = (init, onError) => {
      const h = spawnNodeKernelThread(init, onError);
      if (init.slot === 2) setTimeout(() => onError(new Error('no such script')), 5);
      return { terminate: () => { terminated++; h.terminate(); } };
    };
    await expect(createThreadedWasmBackend({ capacityFloats: 16, threads: 3, spawn: failing })).rejects.toThrow(/no such script/);
    expect(terminated).toBe(2);
    const silent: KernelThreadSpawner = () => ({ terminate: () => { terminated++; } });
    await expect(createThreadedWasmBackend({ capacityFloats: 16, threads: 2, spawn: silent, startTimeoutMs: 50 })).rejects.toThrow(/did not start within 50 ms/);
    expect(terminated).toBe(3);
  });
});
