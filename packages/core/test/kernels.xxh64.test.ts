/**
 * `backend.xxh64`: the parameter checksum computed where the parameters lie (the kernel module's
 * copy of XXH64, assembly/xxh64-core.ts), against the TypeScript oracle `xxh64Reference` and the
 * hash module's `xxh64`, on the single-thread wasm backend and on the threaded one (default and
 * offload, where the calling thread's instance hashes): every length from 0 to 80 floats at
 * several offsets, lengths around the 32-byte stripes, and 1M floats; foreign arrays are refused.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnNodeKernelThread } from '@gradhub/worker';
import { bytesToHex, xxh64, xxh64Reference } from '../src/hash.js';
import type { Backend } from '../src/kernels/types.js';
import { createWasmBackend } from '../src/kernels/wasm.js';
import { createThreadedWasmBackend, wasmThreadsSupported } from '../src/kernels/wasm-threads.js';
import { fill, rng } from './kernels.testutil.js';

const CASES: [string, () => Promise<Backend>][] = [
  ['single-thread wasm', () => createWasmBackend({ capacityFloats: 1 << 21 })],
  ...(wasmThreadsSupported()
    ? ([
      ['threaded wasm (2 threads)', () => createThreadedWasmBackend({ capacityFloats: 1 << 21, threads: 2, spawn: spawnNodeKernelThread })],
      ['offload wasm (1 helper)', () => createThreadedWasmBackend({ capacityFloats: 1 << 21, threads: 1, offload: true, spawn: spawnNodeKernelThread })],
    ] as [string, () => Promise<Backend>][])
    : []),
];

describe.each(CASES)('%s: backend.xxh64 = xxh64Reference', (_name, create) => {
  let backend: Backend;
  let hash: (a: Float32Array) => Uint8Array;
  beforeAll(async () => {
    backend = await create();
    if (!backend.xxh64) throw new Error('this backend has no xxh64');
    hash = backend.xxh64;
  });
  afterAll(() => backend?.close?.());

  it('every length 0..80 floats at offsets 0..3, and around the stripes', () => {
    const a = fill(backend.allocF32(4096), rng(5));
    for (let off = 0; off < 4; off++) {
      for (let len = 0; len <= 80; len++) {
        const v = a.subarray(off, off + len);
        expect(bytesToHex(hash(v)), `off=${off} len=${len}`).toBe(bytesToHex(xxh64Reference(v)));
      }
    }
    for (const len of [255, 256, 257, 1023, 1024, 1025, 4095]) {
      const v = a.subarray(1, 1 + len);
      expect(bytesToHex(hash(v)), `len=${len}`).toBe(bytesToHex(xxh64Reference(v)));
    }
  });

  it('1M floats: the same digest as the hash module', () => {
    const a = fill(backend.allocF32((1 << 20) + 3), rng(6));
    expect(bytesToHex(hash(a))).toBe(bytesToHex(xxh64(a)));
    expect(bytesToHex(hash(a.subarray(3)))).toBe(bytesToHex(xxh64Reference(a.subarray(3))));
  });

  it('refuses an array that is not its storage', () => {
    expect(() => hash(new Float32Array(16))).toThrow(TypeError);
  });
});
