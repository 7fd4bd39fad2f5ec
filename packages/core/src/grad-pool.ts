/**
 * GradPool: float32 buffers of one fixed size for the coordinator's reducer, with its checked
 * operations: copy a gradient in while checking it is finite, add an incoming gradient to a held
 * one while checking the incoming values, add two held buffers. A pure data structure (no I/O).
 *
 * Contract (docs/design.md invariants 3 (canonical reduction tree), 7 (nothing from a bad peer reaches the model)):
 * - Bits: every sum is one float32 addition per element (held + incoming, l + r), so the 'wasm'
 *   backend (WebAssembly SIMD, f32x4.add: no fused multiply-add, no relaxed SIMD) and the 'ts'
 *   backend (plain loops over Float32Arrays: a float64 add of two float32 values rounded once to
 *   float32, which is the float32 sum) give the same bits on every input. Float32 addition is
 *   commutative, so held + incoming is S(left) + S(right) whichever of the two arrived first.
 * - Checks: `copyChecked` and `addChecked` return false when any incoming value is NaN or
 *   infinite, and then leave `dst` garbage (the caller releases it) but never write another
 *   buffer: a waiting sibling (`held`) is never corrupted. The check accumulates v - v (+0 for
 *   every finite v, NaN once any is not): no branch per value. `add` checks nothing: sums of
 *   finite values may overflow to infinity, which the trainer's step then refuses.
 * - Incoming gradients are Uint8Array pieces (a socket's fragments, or sub-views of them) of any
 *   byte alignment; a float may straddle two pieces. They are read where they are, never kept.
 * - Buffers are ids (0, 1, ...): `acquire` reuses released ids and allocates a new buffer only
 *   when none is free; `size` counts buffers ever allocated. Nothing is freed before the pool is.
 *
 * The 'wasm' backend keeps all buffers in one WebAssembly.Memory, growable up to 4 GiB, with the
 * kernel module (assembly/index.ts: f32Check, f32Add) instantiated on it synchronously
 * (Node compiles a module of any size synchronously; the module is about 9 KB). Buffer i lives at
 * byte BASE + i * stride (stride = 4 * floats rounded up to 16 bytes). Growing the memory detaches
 * its old ArrayBuffer: a `view` is valid until the next `acquire`. Incoming pieces are copied into
 * `dst` with Uint8Array.prototype.set at their byte position (any alignment, straddling floats
 * included), in blocks of at most BLOCK_BYTES, and each block's completed floats are checked (and
 * added) right after it is copied, while it is still in cache.
 *
 * The 'ts' backend (no WebAssembly SIMD, or asked for) keeps one Float32Array per buffer and reads
 * aligned pieces in place, unaligned bytes through a 64 KiB scratch buffer.
 */
import { kernelBytes, wasmApi, wasmSimdSupported, MAX_PAGES, PAGE_BYTES, type WasmMemory } from './kernels/wasm.js';
import { internalError } from './errors.js';

export interface GradPool {
  /** 'wasm' (WebAssembly SIMD) or 'ts' (plain loops): the same bits. */
  readonly backend: 'wasm' | 'ts';
  /** Floats a buffer. */
  readonly floats: number;
  /** Buffers ever allocated. */
  readonly size: number;
  /** A buffer id: a released one if any, else a new buffer (the 'wasm' memory grows). Contents undefined. */
  acquire(): number;
  /** Return a buffer to the pool. */
  release(id: number): void;
  /** The buffer's floats: a view valid until the next `acquire` (growth detaches older views). */
  view(id: number): Float32Array;
  /**
   * buf[dst] = the float32 values in `pieces` (4 * floats bytes in all, any alignment; floats may
   * straddle pieces). True iff every incoming value is finite (if false, buf[dst] is garbage).
   */
  copyChecked(dst: number, pieces: readonly Uint8Array[]): boolean;
  /**
   * buf[dst] = buf[held] + the float32 values in `pieces` (float32 add), checking every INCOMING
   * value is finite (if false, buf[dst] is garbage); never writes buf[held]. dst !== held.
   */
  addChecked(dst: number, held: number, pieces: readonly Uint8Array[]): boolean;
  /** buf[l] = buf[l] + buf[r] (float32 add, unchecked). l !== r. */
  add(l: number, r: number): void;
}

export interface GradPoolOptions {
  /** Default 'wasm' where WebAssembly SIMD is supported, else 'ts'. */
  readonly backend?: 'wasm' | 'ts';
}

/** Create a pool of buffers of `floats` floats (at least 1). Synchronous; allocates no buffer yet. */
export function createGradPool(floats: number, opts: GradPoolOptions = {}): GradPool {
  if (!Number.isInteger(floats) || floats < 1) throw internalError(`createGradPool: floats must be a positive integer, got ${floats}`);
  const backend = opts.backend;
  if (backend === 'wasm') {
    if (!wasmSimdSupported()) throw new Error('createGradPool: this runtime has no WebAssembly SIMD (check wasmSimdSupported() first)');
    return new WasmGradPool(floats);
  }
  if (backend === undefined && wasmSimdSupported()) {
    try {
      return new WasmGradPool(floats);
    } catch {
      // A runtime that refuses to compile the module synchronously (a browser's main thread): 'ts'.
    }
  }
  if (backend !== undefined && backend !== 'ts') throw internalError(`createGradPool: backend must be 'wasm' or 'ts', got ${String(backend)}`);
  return new TsGradPool(floats);
}

function totalBytes(pieces: readonly Uint8Array[]): number {
  let n = 0;
  for (const p of pieces) n += p.byteLength;
  return n;
}

function checkPieces(what: string, floats: number, pieces: readonly Uint8Array[]): void {
  const n = totalBytes(pieces);
  if (n !== 4 * floats) throw internalError(`GradPool.${what}: ${n} bytes in the pieces, a buffer holds ${4 * floats}`);
}

/**
 * Both backends' ids (handed out, free) and the argument checks of GradPool's operations, which
 * then run the backend's unchecked ones (ids acquired, dst !== held, l !== r, 4 * floats bytes).
 */
abstract class IdPool {
  size = 0;
  private readonly free: number[] = [];
  private readonly busy: Uint8Array[] = [];

  constructor(readonly floats: number) {}

  acquire(): number {
    const id = this.free.pop() ?? this.grow();
    this.setBusy(id, true);
    return id;
  }

  release(id: number): void {
    this.must('release', id);
    this.setBusy(id, false);
    this.free.push(id);
  }

  view(id: number): Float32Array {
    this.must('view', id);
    return this.viewOf(id);
  }

  copyChecked(dst: number, pieces: readonly Uint8Array[]): boolean {
    this.must('copyChecked', dst);
    checkPieces('copyChecked', this.floats, pieces);
    return this.copyIn(dst, pieces);
  }

  addChecked(dst: number, held: number, pieces: readonly Uint8Array[]): boolean {
    this.must('addChecked', dst);
    this.must('addChecked', held);
    if (dst === held) throw internalError('GradPool.addChecked: dst and held are the same buffer');
    checkPieces('addChecked', this.floats, pieces);
    return this.addIn(dst, held, pieces);
  }

  add(l: number, r: number): void {
    this.must('add', l);
    this.must('add', r);
    if (l === r) throw internalError('GradPool.add: l and r are the same buffer');
    this.addRaw(l, r);
  }

  // The backend's part: allocate buffer `id`, the next new one (= size; throws when it cannot),
  // and view / copyChecked / addChecked / add on arguments already checked.
  protected abstract alloc(id: number): void;
  protected abstract viewOf(id: number): Float32Array;
  protected abstract copyIn(dst: number, pieces: readonly Uint8Array[]): boolean;
  protected abstract addIn(dst: number, held: number, pieces: readonly Uint8Array[]): boolean;
  protected abstract addRaw(l: number, r: number): void;

  private grow(): number {
    const id = this.size;
    this.alloc(id);
    this.size = id + 1;
    return id;
  }

  private must(what: string, id: number): void {
    if (!Number.isInteger(id) || id < 0 || id >= this.size || this.busy[id >> 12]?.[id & 4095] !== 1) {
      throw internalError(`GradPool.${what}: ${id} is not an acquired buffer`);
    }
  }

  private setBusy(id: number, on: boolean): void {
    const page = (this.busy[id >> 12] ??= new Uint8Array(4096));
    page[id & 4095] = on ? 1 : 0;
  }
}

// ---------------------------------------------------------------------------------------------
// 'wasm': one growable memory, the kernel module's f32Check / f32Add.

interface PoolExports {
  f32Check(p: number, n: number): number;
  f32Add(l: number, r: number, n: number): void;
}

/** Byte offset of buffer 0 (address 0 stays unused, as in wasm.ts). */
const BASE = 64;
/** Bytes copied into a buffer before they are checked (and added): they are still in cache. */
const BLOCK_BYTES = 128 * 1024;

let compiled: object | undefined;

class WasmGradPool extends IdPool implements GradPool {
  readonly backend = 'wasm' as const;
  private readonly stride: number;
  private readonly memory: WasmMemory;
  private readonly k: PoolExports;
  private pages: number;
  private u8: Uint8Array;
  private views: (Float32Array | undefined)[] = [];

  constructor(floats: number) {
    super(floats);
    this.stride = Math.ceil(floats / 4) * 16;
    if (BASE + this.stride > MAX_PAGES * PAGE_BYTES) throw internalError(`createGradPool: a buffer of ${floats} floats exceeds WebAssembly's 4 GiB`);
    const api = wasmApi()!; // createGradPool checked wasmSimdSupported()
    compiled ??= new api.Module(kernelBytes());
    this.pages = 1;
    this.memory = new api.Memory({ initial: 1, maximum: MAX_PAGES });
    this.k = new api.Instance(compiled, { env: { memory: this.memory } }).exports as PoolExports;
    this.u8 = new Uint8Array(this.memory.buffer);
  }

  protected alloc(id: number): void {
    const need = Math.ceil((BASE + (id + 1) * this.stride) / PAGE_BYTES);
    if (need > this.pages) {
      if (need > MAX_PAGES) {
        throw internalError(`GradPool: ${id + 1} buffers of ${this.floats} floats exceed WebAssembly's 4 GiB`);
      }
      this.memory.grow(need - this.pages);
      this.pages = need;
      this.u8 = new Uint8Array(this.memory.buffer);
      this.views = [];
    }
  }

  protected viewOf(id: number): Float32Array {
    let v = this.views[id];
    if (!v) v = this.views[id] = new Float32Array(this.memory.buffer, this.at(id), this.floats);
    return v;
  }

  protected copyIn(dst: number, pieces: readonly Uint8Array[]): boolean {
    const k = this.k;
    return this.stream(this.at(dst), pieces, (p, first, n) => k.f32Check(p + 4 * first, n));
  }

  protected addIn(dst: number, held: number, pieces: readonly Uint8Array[]): boolean {
    const k = this.k;
    const h = this.at(held);
    // Per block (cache-hot): check the incoming floats, then add the held ones to them.
    return this.stream(this.at(dst), pieces, (p, first, n) => {
      const ok = k.f32Check(p + 4 * first, n);
      k.f32Add(p + 4 * first, h + 4 * first, n);
      return ok;
    });
  }

  protected addRaw(l: number, r: number): void {
    this.k.f32Add(this.at(l), this.at(r), this.floats);
  }

  private at(id: number): number {
    return BASE + id * this.stride;
  }

  /**
   * Copy the pieces' bytes to byte `base` on, block by block, calling `fn(base, first, n)` on
   * floats [first, first + n) as soon as they are complete; stops when `fn` returns 0.
   */
  private stream(base: number, pieces: readonly Uint8Array[], fn: (base: number, first: number, n: number) => number): boolean {
    const u8 = this.u8;
    let byte = 0; // bytes copied
    let done = 0; // floats processed
    for (const p of pieces) {
      const len = p.byteLength;
      for (let off = 0; off < len; off += BLOCK_BYTES) {
        const take = Math.min(BLOCK_BYTES, len - off);
        u8.set(take === len ? p : p.subarray(off, off + take), base + byte);
        byte += take;
        const upto = byte >>> 2;
        if (upto > done) {
          if (fn(base, done, upto - done) === 0) return false;
          done = upto;
        }
      }
    }
    return true;
  }
}

// ---------------------------------------------------------------------------------------------
// 'ts': one Float32Array per buffer; the reducer's original loops (the oracle for 'wasm').

class TsGradPool extends IdPool implements GradPool {
  readonly backend = 'ts' as const;
  private readonly bufs: Float32Array[] = [];
  /** Unaligned gradient bytes pass through here. */
  private readonly scratch = new Float32Array(16 * 1024);

  protected alloc(): void {
    this.bufs.push(new Float32Array(this.floats));
  }

  protected viewOf(id: number): Float32Array {
    return this.bufs[id];
  }

  protected copyIn(dst: number, pieces: readonly Uint8Array[]): boolean {
    return streamChecked(this.bufs[dst], null, pieces, this.scratch);
  }

  protected addIn(dst: number, held: number, pieces: readonly Uint8Array[]): boolean {
    return streamChecked(this.bufs[dst], this.bufs[held], pieces, this.scratch);
  }

  protected addRaw(l: number, r: number): void {
    const a = this.bufs[l];
    const b = this.bufs[r];
    for (let i = 0; i < a.length; i++) a[i] += b[i];
  }
}

/**
 * Call `fn(src, at)` over the float32 values of `pieces` in order, as aligned Float32Arrays (views of
 * the pieces where they are 4-byte aligned, else blocks of `scratch`); `at` is the index of
 * src[0]. Stops and returns false when `fn` does. The pieces' total length is a multiple of 4.
 */
function eachBlock(pieces: readonly Uint8Array[], scratch: Float32Array, fn: (src: Float32Array, at: number) => boolean): boolean {
  const s8 = new Uint8Array(scratch.buffer, scratch.byteOffset, scratch.byteLength);
  let fill = 0; // bytes waiting in scratch
  let at = 0;
  for (const p of pieces) {
    const len = p.byteLength;
    let off = 0;
    while (off < len) {
      if (fill === 0 && ((p.byteOffset + off) & 3) === 0 && len - off >= 4) {
        const n = (len - off) >>> 2;
        if (!fn(new Float32Array(p.buffer, p.byteOffset + off, n), at)) return false;
        at += n;
        off += 4 * n;
        continue;
      }
      const take = Math.min(s8.byteLength - fill, len - off);
      s8.set(p.subarray(off, off + take), fill);
      fill += take;
      off += take;
      if (fill % 4 === 0) {
        const n = fill >>> 2;
        if (!fn(n === scratch.length ? scratch : scratch.subarray(0, n), at)) return false;
        at += n;
        fill = 0;
      }
    }
  }
  return true;
}

// A block with a non-finite value is reported after it is written to `dst`, which the caller
// then discards.

/**
 * dst = the gradient in `pieces` (held === null), or held + it (float32), checking every incoming
 * value is finite: false if one is not (dst is then garbage; `held` is never written).
 */
function streamChecked(dst: Float32Array, held: Float32Array | null, pieces: readonly Uint8Array[], scratch: Float32Array): boolean {
  return eachBlock(pieces, scratch, (src, at) => {
    const n = src.length;
    let acc = 0;
    for (let i = 0; i < n; i++) {
      const v = src[i];
      acc += v - v;
      dst[at + i] = held === null ? v : held[at + i] + v;
    }
    return acc === 0;
  });
}
