/**
 * The threaded WebAssembly SIMD backend ('wasm' with `threads` > 1): the kernels of wasm.ts, each
 * call split over several threads that share one `WebAssembly.Memory`. Same bits as the oracle
 * and as the single-thread backend, for any thread count (DESIGN invariant 3): threads split the
 * INDEPENDENT outputs of a call, never a sum.
 *
 * - forward, y (N, OUT): outputs [o0, o1) of every sample (slices of 2 outputs, the tile height);
 * - backward-input, dx (N, IN): inputs [i0, i1) of every sample (slices of 16, the tile width);
 * - weight gradient, dw (OUT, IN) and db (OUT): rows [o0, o1), each row with the whole chunk tree
 *   over all samples (slices of 2 rows).
 * Each element is computed by exactly one thread, by the same tile code and in the same k order as
 * with one thread (assembly/index.ts, "Ranges"), so no result depends on the split.
 *
 * Threads. The calling thread is thread 0 and computes a slice itself; threads 1..T-1 are helpers
 * that this module never starts itself: the host injects a `KernelThreadSpawner` (Node:
 * worker_threads; a browser: Web Workers; see @gradhub/worker), which starts a thread that calls
 * `runKernelHelper(init)` with the `KernelThreadInit` it was given (structured-cloneable: the
 * shared memory and the compiled module travel by postMessage). Each helper instantiates the same
 * module (the shared-memory variant) on the same memory, with its own scratch region, and waits.
 *
 * Memory layout (bytes), one shared memory of fixed size, never grown:
 *
 *   [0, 64)                          unused (address 0 means "no mask" to the kernels)
 *   [64, 64 + 128 T)                 control block: one 128-byte slot per thread (slot 0 unused)
 *   then T scratch regions           4 * scratchFloats bytes each (16-byte aligned), thread t's t-th
 *   [heap, heap + 4 * capacity)      allocF32's arena, as in wasm.ts
 *
 * Protocol (the sync points): a slot holds SEQ, DONE, STATE, OP, ERR and 10 arguments (int32).
 * The calling thread writes OP and the arguments, then `Atomics.store(SEQ, seq + 1)` and
 * `Atomics.notify(SEQ)`; the helper, blocked in `Atomics.wait(SEQ)`, runs its slice and does
 * `Atomics.store(DONE, seq)` + `Atomics.notify(DONE)`; the caller computes its own slice, then
 * `Atomics.wait`s on each DONE. A kernel call returns only when every slice is done, so the
 * Backend stays synchronous and the outputs are complete when it returns. The atomic store and
 * load order the plain memory writes on both sides (arguments before the helper reads them, the
 * helper's outputs before the caller returns). A helper that traps sets ERR and the call throws.
 *
 * Blocking: the calling thread blocks in `Atomics.wait`, which Node allows on its main thread and
 * browsers in Web Workers, but NOT on a page's main thread: run the engine in a Web Worker
 * (wasmThreadsSupported() is false where the calling thread cannot block). Shared memory needs
 * SharedArrayBuffer, i.e. a cross-origin isolated page in a browser (COOP/COEP headers).
 *
 * Small calls: a call is split over at most `work / minWorkPerThread` threads (work in multiply-
 * adds), so that tiny layers do not pay a thread wake-up each; the bits are the same either way.
 *
 * Shutdown: `close()` tells every helper to return from runKernelHelper and terminates its handle;
 * a spawner should also keep its threads from holding the process alive (Node: `unref()`).
 * A helper that dies without answering (killed from outside) leaves the caller waiting: spawners
 * run nothing else on their threads.
 */
import { checkBackwardInputArgs, checkBackwardWeightArgs, checkForwardArgs } from './oracle.js';
import type { Backend } from './types.js';
import {
  DEFAULT_SCRATCH_FLOATS, MAX_PAGES, MIN_SCRATCH_FLOATS, PAGE_BYTES, createWasmBackend, kernelBytes, wasmApi, wasmArena,
  type KernelExports,
} from './wasm.js';

/** What a helper thread needs (structured-cloneable: pass it to the thread as it is). */
export interface KernelThreadInit {
  /** The shared `WebAssembly.Memory` of the backend. */
  readonly memory: { readonly buffer: SharedArrayBuffer };
  /** The compiled kernel module (`WebAssembly.Module`, the shared-memory variant). */
  readonly module: object;
  /** Byte offset of the control block in the memory. */
  readonly ctrlOffset: number;
  /** This thread's slot in the control block, 1..threads-1. */
  readonly slot: number;
  /** Byte offset and size (floats) of this thread's kernel scratch. */
  readonly scratchOffset: number;
  readonly scratchFloats: number;
}

/** A started helper thread, as its spawner sees it. */
export interface KernelThreadHandle {
  /** Stop the thread (called by close(), after it was told to return). */
  terminate(): void;
}

/**
 * Start a thread that calls `runKernelHelper(init)` (runtime-specific: injected by the host).
 * `onError` reports a thread that could not start (a script that fails to load, an exception).
 */
export type KernelThreadSpawner = (init: KernelThreadInit, onError: (err: Error) => void) => KernelThreadHandle;

export interface ThreadedWasmBackendOptions {
  /** Floats that allocF32 can hand out in total (as createWasmBackend). Required. */
  readonly capacityFloats: number;
  /** Threads that compute each kernel call, the calling thread included (1..MAX_KERNEL_THREADS). */
  readonly threads: number;
  /** Starts the helper threads. Required when threads > 1 (unused for 1). */
  readonly spawn?: KernelThreadSpawner;
  /** Kernel scratch per thread, in floats. Default DEFAULT_SCRATCH_FLOATS. */
  readonly scratchFloats?: number;
  /**
   * Smallest work, in multiply-adds, worth one more thread: a call of W multiply-adds uses at most
   * max(1, floor(W / minWorkPerThread)) threads. Default DEFAULT_MIN_WORK_PER_THREAD; 0 splits
   * every call over all threads (tests).
   */
  readonly minWorkPerThread?: number;
  /** How long to wait for the helpers to start, ms. Default 60000. */
  readonly startTimeoutMs?: number;
}

/** Most threads a backend runs. */
export const MAX_KERNEL_THREADS = 64;
/** Default minWorkPerThread: 2^18 multiply-adds (tens of microseconds, about a thread wake-up's cost x 10). */
export const DEFAULT_MIN_WORK_PER_THREAD = 1 << 18;

// Control block: one slot of SLOT_INTS int32 (128 bytes, two cache lines) per thread.
const CTRL_BASE = 64;
const SLOT_INTS = 32;
const SEQ = 0; // command counter, written by the caller
const DONE = 1; // the last command done, written by the helper
const STATE = 2; // STARTING, READY, FAILED, EXITED, written by the helper
const OP = 3;
const ERR = 4; // 1 when the last command trapped
const ARGS = 8; // 10 arguments: the kernel's 8 (7 for backward-input), then begin, end

// STATE values (0: starting, the memory's initial zero)
const READY = 1;
const FAILED = 2;
const EXITED = 3;

const OP_FORWARD = 1;
const OP_BACKWARD_INPUT = 2;
const OP_BACKWARD_WEIGHT = 3;
const OP_EXIT = 4;
const OP_NAMES = ['', 'linearForward', 'linearBackwardInput', 'linearBackwardWeight'];

/** Run one kernel command: arguments a[o..o+7], range [begin, end). */
function exec(k: KernelExports, op: number, a: Int32Array, o: number, begin: number, end: number): void {
  switch (op) {
    case OP_FORWARD:
      k.linearForward(a[o], a[o + 1], a[o + 2], a[o + 3], a[o + 4], a[o + 5], a[o + 6], a[o + 7], begin, end);
      return;
    case OP_BACKWARD_INPUT:
      k.linearBackwardInput(a[o], a[o + 1], a[o + 2], a[o + 3], a[o + 4], a[o + 5], a[o + 6], begin, end);
      return;
    case OP_BACKWARD_WEIGHT:
      k.linearBackwardWeight(a[o], a[o + 1], a[o + 2], a[o + 3], a[o + 4], a[o + 5], a[o + 6], a[o + 7], begin, end);
      return;
    default:
      throw new Error(`kernel thread: unknown command ${op}`);
  }
}

/**
 * True when this runtime and thread can run the threaded backend: WebAssembly SIMD with shared
 * memory (SharedArrayBuffer: cross-origin isolated pages only), and a thread that may block in
 * Atomics.wait (not a page's main thread).
 */
export function wasmThreadsSupported(): boolean {
  const api = wasmApi();
  if (!api || typeof SharedArrayBuffer === 'undefined' || typeof Atomics === 'undefined') return false;
  try {
    if (!api.validate(kernelBytes(true))) return false;
    const m = new api.Memory({ initial: 1, maximum: 1, shared: true });
    if (!(m.buffer instanceof SharedArrayBuffer)) return false;
    Atomics.wait(new Int32Array(m.buffer), 0, 1, 0); // throws where this thread may not block
    return true;
  } catch {
    return false;
  }
}

/**
 * A helper thread's whole life (call it from the thread the spawner started, with its init):
 * instantiate the module on the shared memory with this thread's scratch, then run the caller's
 * commands until it says exit. Blocks the thread throughout; returns on exit (the thread may then
 * end). Throws when the module cannot be set up (the caller sees STATE = FAILED).
 */
export function runKernelHelper(init: KernelThreadInit): void {
  const ctrl = new Int32Array(init.memory.buffer, init.ctrlOffset + init.slot * SLOT_INTS * 4, SLOT_INTS);
  let k: KernelExports;
  const seen0 = Atomics.load(ctrl, SEQ); // read before READY: the caller sends nothing before it
  try {
    const api = wasmApi();
    if (!api) throw new Error('kernel thread: no WebAssembly here');
    k = new api.Instance(init.module, { env: { memory: init.memory } }).exports as KernelExports;
    if (k.init(init.scratchOffset, init.scratchFloats) <= 0) throw new RangeError(`kernel thread: scratchFloats ${init.scratchFloats} is too small`);
  } catch (err) {
    Atomics.store(ctrl, STATE, FAILED);
    Atomics.notify(ctrl, STATE);
    throw err;
  }
  Atomics.store(ctrl, STATE, READY);
  Atomics.notify(ctrl, STATE);
  let seen = seen0;
  for (;;) {
    Atomics.wait(ctrl, SEQ, seen);
    const seq = Atomics.load(ctrl, SEQ);
    if (seq === seen) continue; // spurious wake-up
    seen = seq;
    const op = ctrl[OP];
    if (op === OP_EXIT) {
      Atomics.store(ctrl, STATE, EXITED);
      Atomics.store(ctrl, DONE, seq);
      Atomics.notify(ctrl, DONE);
      return;
    }
    let err = 0;
    try {
      exec(k, op, ctrl, ARGS, ctrl[ARGS + 8], ctrl[ARGS + 9]);
    } catch {
      err = 1;
    }
    ctrl[ERR] = err;
    Atomics.store(ctrl, DONE, seq);
    Atomics.notify(ctrl, DONE);
  }
}

/**
 * End of slice t when [0, total) is cut into `parts` contiguous slices of whole `align`-sized units
 * (`units` = ceil(total / align) of them, as evenly as possible; the last slice ends at total).
 */
function sliceEnd(t: number, parts: number, units: number, align: number, total: number): number {
  return Math.min(total, Math.floor(((t + 1) * units) / parts) * align);
}

function checkInteger(name: string, v: number, min: number, max = Infinity): void {
  if (!Number.isInteger(v) || v < min || v > max) {
    throw new RangeError(`createThreadedWasmBackend: ${name} must be an integer in ${min}..${max}, got ${v}`);
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Create the backend: the shared memory, the module compiled once, this thread's instance, and
 * threads - 1 helpers started with `spawn`; resolves when every helper is ready. threads = 1 gives
 * the single-thread backend of wasm.ts (no shared memory, no spawner needed).
 */
export async function createThreadedWasmBackend(options: ThreadedWasmBackendOptions): Promise<Backend> {
  const { capacityFloats: capacity, threads } = options;
  const scratchFloats = options.scratchFloats ?? DEFAULT_SCRATCH_FLOATS;
  const minWork = options.minWorkPerThread ?? DEFAULT_MIN_WORK_PER_THREAD;
  checkInteger('threads', threads, 1, MAX_KERNEL_THREADS);
  checkInteger('capacityFloats', capacity, 0);
  checkInteger('scratchFloats', scratchFloats, MIN_SCRATCH_FLOATS);
  if (!(minWork >= 0)) throw new RangeError(`createThreadedWasmBackend: minWorkPerThread must be >= 0, got ${minWork}`);
  if (threads === 1) return createWasmBackend({ capacityFloats: capacity, scratchFloats });
  const spawn = options.spawn;
  if (typeof spawn !== 'function') throw new TypeError('createThreadedWasmBackend: threads > 1 needs `spawn` (how this runtime starts a thread)');
  const api = wasmApi();
  if (!api || !wasmThreadsSupported()) {
    throw new Error('createThreadedWasmBackend: this runtime or thread cannot run threaded kernels (WebAssembly SIMD, shared memory, Atomics.wait; check wasmThreadsSupported() first)');
  }

  const scratchBytes = Math.ceil(scratchFloats / 4) * 16;
  const scratchBase = CTRL_BASE + threads * SLOT_INTS * 4;
  const heap = scratchBase + threads * scratchBytes;
  const bytes = heap + Math.ceil(capacity / 4) * 16;
  const pages = Math.max(1, Math.ceil(bytes / PAGE_BYTES));
  if (pages > MAX_PAGES) {
    throw new RangeError(`createThreadedWasmBackend: ${bytes} bytes exceed WebAssembly's 4 GiB (capacityFloats ${capacity}, ${threads} x scratchFloats ${scratchFloats})`);
  }
  const memory = new api.Memory({ initial: pages, maximum: pages, shared: true });
  const buffer = memory.buffer as SharedArrayBuffer;
  const module = await api.compile(kernelBytes(true));
  const k = (await api.instantiate(module, { env: { memory } })).exports as KernelExports;
  const packFloats = k.init(scratchBase, scratchFloats);
  if (packFloats <= 0) throw new RangeError(`createThreadedWasmBackend: scratchFloats ${scratchFloats} is too small`);
  const maxWeightSamples = Math.floor(packFloats / 16);
  const ctrl = new Int32Array(buffer, CTRL_BASE, threads * SLOT_INTS);

  // Start the helpers and wait until each is ready (the caller must not block before: a browser
  // may start a worker only once its parent returns to its event loop).
  const handles: KernelThreadHandle[] = [];
  let startError: Error | null = null;
  const terminateAll = (): void => {
    for (const h of handles) {
      try {
        h.terminate();
      } catch {
        // already gone
      }
    }
  };
  try {
    for (let t = 1; t < threads; t++) {
      const init: KernelThreadInit = { memory: memory as KernelThreadInit['memory'], module, ctrlOffset: CTRL_BASE, slot: t, scratchOffset: scratchBase + t * scratchBytes, scratchFloats };
      handles.push(spawn(init, (err) => {
        startError ??= err instanceof Error ? err : new Error(String(err));
      }));
    }
    const timeoutMs = options.startTimeoutMs ?? 60_000;
    const deadline = Date.now() + timeoutMs;
    for (let wait = 1; ; wait = Math.min(wait * 2, 50)) {
      if (startError) throw new Error(`createThreadedWasmBackend: a kernel thread failed to start: ${(startError as Error).message}`);
      let ready = 0;
      for (let t = 1; t < threads; t++) {
        const s = Atomics.load(ctrl, t * SLOT_INTS + STATE);
        if (s === FAILED) throw new Error(`createThreadedWasmBackend: kernel thread ${t} failed to set up the module`);
        if (s === READY) ready++;
      }
      if (ready === threads - 1) break;
      if (Date.now() > deadline) throw new Error(`createThreadedWasmBackend: ${threads - 1 - ready} kernel thread(s) did not start within ${timeoutMs} ms`);
      await sleep(wait);
    }
  } catch (err) {
    terminateAll();
    throw err;
  }

  const { allocF32, ptr } = wasmArena(buffer, heap, capacity);
  const seqs = new Int32Array(threads); // the last command sent to each helper
  const args = new Int32Array(8); // the calling thread's copy of the current command's arguments
  let closed = false;

  /**
   * Run the command in `args` over [0, total), split in slices of `align` over at most
   * `threads` threads (fewer for little work), the calling thread taking the first slice.
   */
  function run(op: number, total: number, align: number, work: number): void {
    if (closed) throw new Error(`${OP_NAMES[op]}: the backend is closed`);
    const units = Math.ceil(total / align);
    const parts = Math.max(1, Math.min(threads, units, minWork > 0 ? Math.floor(work / minWork) : threads));
    if (parts === 1) {
      exec(k, op, args, 0, 0, total);
      return;
    }
    for (let t = 1; t < parts; t++) {
      const base = t * SLOT_INTS;
      ctrl[base + OP] = op;
      for (let i = 0; i < 8; i++) ctrl[base + ARGS + i] = args[i];
      ctrl[base + ARGS + 8] = sliceEnd(t - 1, parts, units, align, total);
      ctrl[base + ARGS + 9] = sliceEnd(t, parts, units, align, total);
      seqs[t] = (seqs[t] + 1) | 0;
      Atomics.store(ctrl, base + SEQ, seqs[t]);
      Atomics.notify(ctrl, base + SEQ, 1);
    }
    let failed = 0;
    try {
      exec(k, op, args, 0, 0, sliceEnd(0, parts, units, align, total));
    } finally {
      for (let t = 1; t < parts; t++) {
        const base = t * SLOT_INTS;
        for (;;) {
          const d = Atomics.load(ctrl, base + DONE);
          if (d === seqs[t]) break;
          Atomics.wait(ctrl, base + DONE, d);
        }
        if (ctrl[base + ERR] !== 0) failed = t;
      }
    }
    if (failed !== 0) throw new Error(`${OP_NAMES[op]}: kernel thread ${failed} trapped`);
  }

  return {
    name: 'wasm',
    allocF32,

    linearForward(x, w, b, y, n, inF, outF, relu) {
      checkForwardArgs(x, w, b, y, n, inF, outF);
      const kn = 'linearForward';
      args[0] = ptr(kn, 'x', x); args[1] = ptr(kn, 'w', w); args[2] = ptr(kn, 'b', b); args[3] = ptr(kn, 'y', y);
      args[4] = n; args[5] = inF; args[6] = outF; args[7] = relu ? 1 : 0;
      run(OP_FORWARD, outF, 2, n * inF * outF);
    },

    linearBackwardInput(dy, w, dx, n, inF, outF, mask) {
      checkBackwardInputArgs(dy, w, dx, n, inF, outF, mask);
      const kn = 'linearBackwardInput';
      args[0] = ptr(kn, 'dy', dy); args[1] = ptr(kn, 'w', w); args[2] = ptr(kn, 'dx', dx);
      args[3] = n; args[4] = inF; args[5] = outF; args[6] = mask ? ptr(kn, 'mask', mask) : 0; args[7] = 0;
      run(OP_BACKWARD_INPUT, inF, 16, n * inF * outF);
    },

    linearBackwardWeight(dy, x, dw, db, n, inF, outF, chunk) {
      checkBackwardWeightArgs(dy, x, dw, db, n, inF, outF, chunk);
      const kn = 'linearBackwardWeight';
      if (n > maxWeightSamples) {
        throw new RangeError(`${kn}: n = ${n} samples exceeds this backend's scratch (at most ${maxWeightSamples}); create it with a larger scratchFloats`);
      }
      args[0] = ptr(kn, 'dy', dy); args[1] = ptr(kn, 'x', x); args[2] = ptr(kn, 'dw', dw); args[3] = ptr(kn, 'db', db);
      args[4] = n; args[5] = inF; args[6] = outF; args[7] = chunk;
      run(OP_BACKWARD_WEIGHT, outF, 2, n * inF * outF);
    },

    close() {
      if (closed) return;
      closed = true;
      for (let t = 1; t < threads; t++) {
        const base = t * SLOT_INTS;
        ctrl[base + OP] = OP_EXIT;
        seqs[t] = (seqs[t] + 1) | 0;
        Atomics.store(ctrl, base + SEQ, seqs[t]);
        Atomics.notify(ctrl, base + SEQ, 1);
      }
      terminateAll();
    },
  };
}
