/**
 * The threaded WebAssembly SIMD backend ('wasm' with `threads` > 1, or `offload`): the kernels of
 * wasm.ts, each call split over several threads that share one `WebAssembly.Memory`. Same bits as
 * the oracle and as the single-thread backend, for any thread count and either mode (docs/design.md
 * "Invariant 3: canonical reduction tree"): threads split the INDEPENDENT outputs of a call, never a sum.
 *
 * - forward, y (N, OUT): outputs [o0, o1) of every sample (slices of 2 outputs, the tile height);
 * - backward-input, dx (N, IN): inputs [i0, i1) of every sample (slices of 16, the tile width);
 * - weight gradient, dw (OUT, IN) and db (OUT): rows [o0, o1), each row with the whole chunk tree
 *   over all samples (slices of 2 rows); a call for rows [oBegin, oEnd) only splits that range
 *   the same way (slices of 2 rows from oBegin).
 * Each element is computed by exactly one thread, by the same tile code and in the same k order as
 * with one thread (assembly/index.ts, "Ranges"), so no result depends on the split.
 *
 * Threads. Helpers are threads that this module never starts itself: the host injects a
 * `KernelThreadSpawner` (Node: worker_threads; a browser: Web Workers; see @gradhub/worker), which
 * starts a thread that calls `runKernelHelper(init)` with the `KernelThreadInit` it was given
 * (structured-cloneable: the shared memory and the compiled module travel by postMessage). Each
 * helper instantiates the same module (the shared-memory variant) on the same memory, with its own
 * scratch region, and waits. Two modes, T = `threads`:
 * - default: the calling thread is thread 0 and computes slice 0 itself; helpers 1..T-1 compute
 *   slices 1..T-1. A kernel call returns when every slice is done (the caller blocks).
 * - `offload`: T helpers (slots 1..T) compute slices 0..T-1 (slice s on slot s + 1) and the calling
 *   thread computes none. Besides the blocking kernels, `backend.async` posts a call and returns a
 *   Promise that resolves when every slice is done, waiting with `Atomics.waitAsync` (blocking
 *   `Atomics.wait` where a runtime lacks it), so the caller's event loop runs (sockets, timers)
 *   while the helpers compute. The slices are those of the default mode with T threads, so the bits
 *   are the same. T = 1 is allowed: one helper computes everything.
 *
 * Memory layout (bytes), one shared memory of fixed size, never grown (H helpers: T - 1, or T with
 * offload):
 *
 *   [0, 64)                          unused (address 0 means "no mask" to the kernels)
 *   [64, 64 + 128 (H + 1))           control block: one 128-byte slot per thread (slot 0 unused)
 *   then T scratch regions           4 * scratchFloats bytes each (16-byte aligned): the calling
 *                                    thread's, then slot 1's, ... (offload: slot 1's, ..., slot T's)
 *   [heap, heap + 4 * capacity)      allocF32's arena, as in wasm.ts
 *
 * Protocol (the sync points): a slot holds SEQ, DONE, STATE, OP, ERR and 10 arguments (int32).
 * The calling thread writes OP and the arguments, then `Atomics.store(SEQ, seq + 1)` and
 * `Atomics.notify(SEQ)`; the helper, blocked in `Atomics.wait(SEQ)`, runs its slice, writes ERR and
 * does `Atomics.store(DONE, seq)` + `Atomics.notify(DONE)`; the caller computes its own slice (not
 * with offload), then waits on each DONE (`Atomics.wait`, or `Atomics.waitAsync` for an async call).
 * A call is done only when every slice is done. A helper that traps sets ERR and the call throws
 * (an async call rejects); the helper stays usable.
 *
 * Ordering (the memory model's synchronizes-with edges; all through seq-cst Atomics on the slot):
 * 1. caller -> helper: the caller's plain writes (the inputs it filled before the call, OP and the
 *    arguments) precede its Atomics.store(SEQ); the helper reads them after an Atomics.load(SEQ)
 *    that returns that value, so it sees them.
 * 2. helper -> caller: the helper's outputs and ERR precede its Atomics.store(DONE); the caller
 *    reads them (and returns or resolves) only after an Atomics.load(DONE) that returns the
 *    command's number. It never trusts a wake-up alone (Atomics.wait returning, waitAsync's promise
 *    resolving: either may be spurious or stale): it re-loads DONE. Atomics.notify carries no data.
 * 3. helper -> helper: call k + 1 is posted only after call k's DONEs were loaded, so 2 then 1 make
 *    every output of call k visible to every helper of call k + 1 (the next layer reads them).
 *
 * One call at a time: the slots hold one command each, so a backend runs one kernel call at a time.
 * A call made while an async call is pending throws (an async call rejects) rather than waiting.
 * While an async call is pending, the caller must not write its inputs nor read its outputs; any
 * other storage may be read and written (e.g. a finished part of the gradient sent while the next
 * block computes).
 *
 * Blocking: the blocking kernels (and the async ones where Atomics.waitAsync is missing) block the
 * calling thread in `Atomics.wait`, which Node allows on its main thread and browsers in Web
 * Workers, but NOT on a page's main thread: run the engine in a Web Worker (wasmThreadsSupported()
 * is false where the calling thread cannot block). Shared memory needs SharedArrayBuffer, i.e. a
 * cross-origin isolated page in a browser (COOP/COEP headers). In Node a pending
 * Atomics.waitAsync does not keep the process alive, nor do the (unref'd) helpers: an async call
 * holds a timer while it waits, so that `await` on it cannot end the process early.
 *
 * Small calls: a call is split over at most `work / minWorkPerThread` threads (work in multiply-
 * adds), so that tiny layers do not pay a thread wake-up each; the bits are the same either way.
 * Without offload a call too small to split runs on the calling thread alone, with offload on
 * helper 1 alone.
 *
 * Shutdown: `close()` tells every helper to return from runKernelHelper and terminates its handle;
 * a pending async call rejects (its outputs are then undefined). A spawner should also keep its
 * threads from holding the process alive (Node: `unref()`). A helper that dies without answering
 * (killed from outside) leaves the caller waiting: spawners run nothing else on their threads.
 */
import { internalError } from '../errors.js';
import { checkBackwardInputArgs, checkBackwardWeightArgs, checkForwardArgs } from './oracle.js';
import type { AsyncKernels, Backend } from './types.js';
import {
  DEFAULT_SCRATCH_FLOATS, MAX_PAGES, MIN_SCRATCH_FLOATS, PAGE_BYTES, arenaXxh64, createWasmBackend, kernelBytes, wasmApi, wasmArena,
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
  /** This thread's slot in the control block, 1..helpers (threads - 1, or threads with offload). */
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
  /**
   * Threads that compute each kernel call (1..MAX_KERNEL_THREADS): the calling thread and
   * threads - 1 helpers, or with `offload` that many helpers and not the calling thread.
   */
  readonly threads: number;
  /**
   * Compute on helpers only, never on the calling thread, and offer `backend.async` (see the
   * module comment). Default false.
   */
  readonly offload?: boolean;
  /** Starts the helper threads. Required when there are helpers (threads > 1, or offload). */
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
    if (k.init(init.scratchOffset, init.scratchFloats) <= 0) throw internalError(`kernel thread: scratchFloats ${init.scratchFloats} is too small`);
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
    throw internalError(`createThreadedWasmBackend: ${name} must be an integer in ${min}..${max}, got ${v}`);
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Atomics.waitAsync (ES2024; Node >= 16, Chromium >= 87), where this runtime has it. */
type WaitAsync = (a: Int32Array, index: number, value: number) => { async: false; value: string } | { async: true; value: Promise<string> };
const waitAsync = (Atomics as unknown as { waitAsync?: WaitAsync }).waitAsync?.bind(Atomics);
/** The longest timer delay (ms): the keep-alive of a pending async call, cleared when it ends. */
const KEEP_ALIVE_MS = 0x7fffffff;
const noop = (): void => {};

/**
 * Create the backend: the shared memory, the module compiled once, this thread's instance, and
 * the helpers (threads - 1, or threads with offload) started with `spawn`; resolves when every
 * helper is ready. threads = 1 without offload gives the single-thread backend of wasm.ts (no
 * shared memory, no spawner needed).
 */
export async function createThreadedWasmBackend(options: ThreadedWasmBackendOptions): Promise<Backend> {
  const { capacityFloats: capacity, threads } = options;
  const offload = options.offload ?? false;
  const scratchFloats = options.scratchFloats ?? DEFAULT_SCRATCH_FLOATS;
  const minWork = options.minWorkPerThread ?? DEFAULT_MIN_WORK_PER_THREAD;
  checkInteger('threads', threads, 1, MAX_KERNEL_THREADS);
  checkInteger('capacityFloats', capacity, 0);
  checkInteger('scratchFloats', scratchFloats, MIN_SCRATCH_FLOATS);
  if (!(minWork >= 0)) throw internalError(`createThreadedWasmBackend: minWorkPerThread must be >= 0, got ${minWork}`);
  if (typeof offload !== 'boolean') throw new TypeError(`createThreadedWasmBackend: offload must be a boolean, got ${String(offload)}`);
  if (threads === 1 && !offload) return createWasmBackend({ capacityFloats: capacity, scratchFloats });
  const spawn = options.spawn;
  if (typeof spawn !== 'function') throw new TypeError('createThreadedWasmBackend: threads > 1 or offload needs `spawn` (how this runtime starts a thread)');
  const api = wasmApi();
  if (!api || !wasmThreadsSupported()) {
    throw new Error('createThreadedWasmBackend: this runtime or thread cannot run threaded kernels (WebAssembly SIMD, shared memory, Atomics.wait; check wasmThreadsSupported() first)');
  }

  // Slice s of a call runs on slot s + shift: the calling thread is slot 0 and takes slice 0,
  // except with offload, where helpers 1..threads take every slice.
  const shift = offload ? 1 : 0;
  const helpers = threads - 1 + shift;
  const slots = helpers + 1;
  const scratchBytes = Math.ceil(scratchFloats / 4) * 16;
  const scratchBase = CTRL_BASE + slots * SLOT_INTS * 4;
  const scratchOf = (slot: number): number => scratchBase + (slot - shift) * scratchBytes;
  const heap = scratchBase + threads * scratchBytes;
  const bytes = heap + Math.ceil(capacity / 4) * 16;
  const pages = Math.max(1, Math.ceil(bytes / PAGE_BYTES));
  if (pages > MAX_PAGES) {
    throw internalError(`createThreadedWasmBackend: ${bytes} bytes exceed WebAssembly's 4 GiB (capacityFloats ${capacity}, ${threads} x scratchFloats ${scratchFloats})`);
  }
  const memory = new api.Memory({ initial: pages, maximum: pages, shared: true });
  const buffer = memory.buffer as SharedArrayBuffer;
  const module = await api.compile(kernelBytes(true));
  const k = (await api.instantiate(module, { env: { memory } })).exports as KernelExports;
  // The calling thread's instance computes slice 0 in its scratch (the first region). With offload
  // it computes nothing and only reports the packing size (init writes no memory, and it runs
  // before helper 1, whose region that is, starts).
  const packFloats = k.init(scratchBase, scratchFloats);
  if (packFloats <= 0) throw internalError(`createThreadedWasmBackend: scratchFloats ${scratchFloats} is too small`);
  const maxWeightSamples = Math.floor(packFloats / 16);
  const ctrl = new Int32Array(buffer, CTRL_BASE, slots * SLOT_INTS);

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
    for (let t = 1; t <= helpers; t++) {
      const init: KernelThreadInit = { memory: memory as KernelThreadInit['memory'], module, ctrlOffset: CTRL_BASE, slot: t, scratchOffset: scratchOf(t), scratchFloats };
      handles.push(spawn(init, (err) => {
        startError ??= err instanceof Error ? err : new Error(String(err));
      }));
    }
    const timeoutMs = options.startTimeoutMs ?? 60_000;
    const deadline = Date.now() + timeoutMs;
    for (let wait = 1; ; wait = Math.min(wait * 2, 50)) {
      if (startError) throw new Error(`createThreadedWasmBackend: a kernel thread failed to start: ${(startError as Error).message}`);
      let ready = 0;
      for (let t = 1; t <= helpers; t++) {
        const s = Atomics.load(ctrl, t * SLOT_INTS + STATE);
        if (s === FAILED) throw new Error(`createThreadedWasmBackend: kernel thread ${t} failed to set up the module`);
        if (s === READY) ready++;
      }
      if (ready === helpers) break;
      if (Date.now() > deadline) throw new Error(`createThreadedWasmBackend: ${helpers - ready} kernel thread(s) did not start within ${timeoutMs} ms`);
      await sleep(wait);
    }
  } catch (err) {
    terminateAll();
    throw err;
  }

  const { allocF32, ptr } = wasmArena(buffer, heap, capacity);
  const seqs = new Int32Array(slots); // the last command sent to each helper
  const args = new Int32Array(8); // the calling thread's copy of the current command's arguments
  /**
   * The call being started: written by the stage* functions, read by post(); its range is
   * [begin, begin + total). post() sets end0, the end of slice 0 (the calling thread's without offload).
   */
  const call = { op: 0, begin: 0, total: 0, align: 1, work: 0, end0: 0 };
  let closed = false;
  let pending = false; // an async call is in flight

  // Check a kernel call's arguments (as wasm.ts does) and stage it: its arguments and its split.
  function stageForward(x: Float32Array, w: Float32Array, b: Float32Array, y: Float32Array, n: number, inF: number, outF: number, relu: boolean): void {
    checkForwardArgs(x, w, b, y, n, inF, outF);
    const kn = 'linearForward';
    args[0] = ptr(kn, 'x', x); args[1] = ptr(kn, 'w', w); args[2] = ptr(kn, 'b', b); args[3] = ptr(kn, 'y', y);
    args[4] = n; args[5] = inF; args[6] = outF; args[7] = relu ? 1 : 0;
    call.op = OP_FORWARD; call.begin = 0; call.total = outF; call.align = 2; call.work = n * inF * outF;
  }

  function stageBackwardInput(dy: Float32Array, w: Float32Array, dx: Float32Array, n: number, inF: number, outF: number, mask: Float32Array | null): void {
    checkBackwardInputArgs(dy, w, dx, n, inF, outF, mask);
    const kn = 'linearBackwardInput';
    args[0] = ptr(kn, 'dy', dy); args[1] = ptr(kn, 'w', w); args[2] = ptr(kn, 'dx', dx);
    args[3] = n; args[4] = inF; args[5] = outF; args[6] = mask ? ptr(kn, 'mask', mask) : 0; args[7] = 0;
    call.op = OP_BACKWARD_INPUT; call.begin = 0; call.total = inF; call.align = 16; call.work = n * inF * outF;
  }

  function stageBackwardWeight(dy: Float32Array, x: Float32Array, dw: Float32Array, db: Float32Array, n: number, inF: number, outF: number, chunk: number, oBegin = 0, oEnd = outF): void {
    checkBackwardWeightArgs(dy, x, dw, db, n, inF, outF, chunk, oBegin, oEnd);
    const kn = 'linearBackwardWeight';
    if (n > maxWeightSamples) {
      throw internalError(`${kn}: n = ${n} samples exceeds this backend's scratch (at most ${maxWeightSamples}); create it with a larger scratchFloats`);
    }
    args[0] = ptr(kn, 'dy', dy); args[1] = ptr(kn, 'x', x); args[2] = ptr(kn, 'dw', dw); args[3] = ptr(kn, 'db', db);
    args[4] = n; args[5] = inF; args[6] = outF; args[7] = chunk;
    call.op = OP_BACKWARD_WEIGHT; call.begin = oBegin; call.total = oEnd - oBegin; call.align = 2; call.work = n * inF * (oEnd - oBegin);
  }

  /**
   * Split the staged call's range [begin, begin + total) in slices of `align` over at most
   * `threads` slices (fewer for little work) and post the helpers' slices (every slice with
   * offload, else slices 1..). Returns the number of slices.
   */
  function post(): number {
    const { op, begin, total, align, work } = call;
    if (closed) throw new Error(`${OP_NAMES[op]}: the backend is closed`);
    if (pending) throw new Error(`${OP_NAMES[op]}: another kernel call is pending (calls must not overlap)`);
    const units = Math.ceil(total / align);
    const parts = Math.max(1, Math.min(threads, units, minWork > 0 ? Math.floor(work / minWork) : threads));
    call.end0 = begin + sliceEnd(0, parts, units, align, total);
    for (let s = 1 - shift; s < parts; s++) {
      const base = (s + shift) * SLOT_INTS;
      ctrl[base + OP] = op;
      for (let i = 0; i < 8; i++) ctrl[base + ARGS + i] = args[i];
      ctrl[base + ARGS + 8] = begin + sliceEnd(s - 1, parts, units, align, total);
      ctrl[base + ARGS + 9] = begin + sliceEnd(s, parts, units, align, total);
      seqs[s + shift] = (seqs[s + shift] + 1) | 0;
      Atomics.store(ctrl, base + SEQ, seqs[s + shift]);
      Atomics.notify(ctrl, base + SEQ, 1);
    }
    return parts;
  }

  /** Block until `slot` has done its last command (re-loading DONE after each wake-up); true if it trapped. */
  function waitDone(slot: number): boolean {
    const base = slot * SLOT_INTS;
    for (;;) {
      const d = Atomics.load(ctrl, base + DONE);
      if (d === seqs[slot]) break;
      Atomics.wait(ctrl, base + DONE, d);
    }
    return ctrl[base + ERR] !== 0;
  }

  /** Run the staged call, blocking: the calling thread's slice (not with offload), then every DONE. */
  function run(): void {
    const op = call.op;
    const parts = post();
    let failed = 0;
    try {
      if (!offload) exec(k, op, args, 0, call.begin, call.end0);
    } finally {
      for (let slot = 1; slot < parts + shift; slot++) {
        if (waitDone(slot)) failed = slot;
      }
    }
    if (failed !== 0) throw new Error(`${OP_NAMES[op]}: kernel thread ${failed} trapped`);
  }

  /**
   * Run the staged call with offload, without blocking: post every slice, then wait for each DONE
   * with Atomics.waitAsync (the blocking Atomics.wait where it is missing). close() meanwhile
   * wakes it and it rejects.
   */
  async function runAsync(): Promise<void> {
    const op = call.op;
    const parts = post();
    pending = true;
    let keepAlive: ReturnType<typeof setTimeout> | undefined;
    let failed = 0;
    try {
      for (let slot = 1; slot <= parts; slot++) {
        const base = slot * SLOT_INTS;
        // Await DONE where waitAsync exists (waitDone then returns at once); without it waitDone
        // blocks, and the call runs synchronously, so nothing can close the backend meanwhile.
        while (waitAsync) {
          if (closed) throw new Error(`${OP_NAMES[op]}: the backend was closed while the call was pending`);
          const d = Atomics.load(ctrl, base + DONE);
          if (d === seqs[slot]) break;
          const r = waitAsync(ctrl, base + DONE, d);
          if (r.async) {
            keepAlive ??= setTimeout(noop, KEEP_ALIVE_MS);
            await r.value;
          }
        }
        if (waitDone(slot)) failed = slot;
      }
    } finally {
      // Pending until the caller can observe the end, never before: when the helpers were done by
      // the first check, this body ran to completion synchronously, yet a call made right after
      // the (not yet settled) async one is still an overlap. The microtask runs before the
      // caller's continuation of its await.
      queueMicrotask(() => {
        pending = false;
      });
      if (keepAlive !== undefined) clearTimeout(keepAlive);
    }
    if (failed !== 0) throw new Error(`${OP_NAMES[op]}: kernel thread ${failed} trapped`);
  }

  const asyncKernels: AsyncKernels = {
    async linearForward(x, w, b, y, n, inF, outF, relu) {
      stageForward(x, w, b, y, n, inF, outF, relu);
      return runAsync();
    },
    async linearBackwardInput(dy, w, dx, n, inF, outF, mask) {
      stageBackwardInput(dy, w, dx, n, inF, outF, mask);
      return runAsync();
    },
    async linearBackwardWeight(dy, x, dw, db, n, inF, outF, chunk, oBegin, oEnd) {
      stageBackwardWeight(dy, x, dw, db, n, inF, outF, chunk, oBegin, oEnd);
      return runAsync();
    },
  };

  return {
    name: 'wasm',
    allocF32,

    // On the calling thread's instance (it reads memory only, and no control slot).
    xxh64: arenaXxh64(k, ptr),

    linearForward(x, w, b, y, n, inF, outF, relu) {
      stageForward(x, w, b, y, n, inF, outF, relu);
      run();
    },

    linearBackwardInput(dy, w, dx, n, inF, outF, mask) {
      stageBackwardInput(dy, w, dx, n, inF, outF, mask);
      run();
    },

    linearBackwardWeight(dy, x, dw, db, n, inF, outF, chunk, oBegin, oEnd) {
      stageBackwardWeight(dy, x, dw, db, n, inF, outF, chunk, oBegin, oEnd);
      run();
    },

    ...(offload ? { async: asyncKernels } : {}),

    close() {
      if (closed) return;
      closed = true;
      for (let t = 1; t <= helpers; t++) {
        const base = t * SLOT_INTS;
        ctrl[base + OP] = OP_EXIT;
        seqs[t] = (seqs[t] + 1) | 0;
        Atomics.store(ctrl, base + SEQ, seqs[t]);
        Atomics.notify(ctrl, base + SEQ, 1);
        Atomics.notify(ctrl, base + DONE); // a pending async call wakes, sees `closed` and rejects
      }
      terminateAll();
    },
  };
}
