/**
 * The three GEMM shapes of a linear layer, and the memory they run in.
 *
 * One arithmetic for every implementation (docs/design.md "Invariant 3: canonical reduction tree"): float32 values, every multiply and
 * every add rounded to float32, no fused multiply-add; each output element is a sum over k in
 * increasing order starting from +0; the bias is added after the k-sum; ReLU forward is
 * `z > 0 ? z : 0`, ReLU backward selects (`h > 0 ? g : 0`). The weight-gradient GEMM sums over
 * samples along the chunk tree (tree.ts): sequential inside a chunk, chunk partials combined in
 * tree order. Two implementations exist (TypeScript oracle, WebAssembly SIMD) and give the same bits.
 *
 * All arrays are views of storage returned by the same backend's `allocF32`, so that the WebAssembly
 * kernel works on them in place. Outputs are overwritten, never accumulated into.
 */
export interface Kernels {
  /**
   * y (N, OUT) = x (N, IN) . w^T + b, then ReLU when `relu`.
   * x is (N, IN) row-major, w is (OUT, IN) row-major (PyTorch layout), b is (OUT).
   */
  linearForward(
    x: Float32Array, w: Float32Array, b: Float32Array, y: Float32Array,
    n: number, inF: number, outF: number, relu: boolean,
  ): void;
  /**
   * dx (N, IN) = dy (N, OUT) . w (OUT, IN), the sum over o in increasing order.
   * When `mask` is given (the layer's input activations h (N, IN), the output of a ReLU),
   * dx = h > 0 ? dx : 0 (ReLU backward fused in).
   */
  linearBackwardInput(
    dy: Float32Array, w: Float32Array, dx: Float32Array,
    n: number, inF: number, outF: number, mask: Float32Array | null,
  ): void;
  /**
   * dw (OUT, IN) = sum over samples s of dy[s, o] * x[s, i]; db (OUT) = sum over s of dy[s, o].
   * The sample sum follows the chunk tree of `chunk` samples a chunk over the n samples
   * (the last chunk may be short): treeSum in tree.ts is the reference order.
   *
   * Only rows [oBegin, oEnd) of dw and db are computed (default: all of them, [0, outF)); the other
   * rows are left as they are. dy, x, dw and db keep the whole layer's shapes and strides. Each row
   * is independent, so rows computed over several calls have the same bits as in one call. The
   * range must satisfy 0 <= oBegin <= oEnd <= outF (integers), else E_INTERNAL.
   */
  linearBackwardWeight(
    dy: Float32Array, x: Float32Array, dw: Float32Array, db: Float32Array,
    n: number, inF: number, outF: number, chunk: number, oBegin?: number, oEnd?: number,
  ): void;
}

/**
 * The three kernels as asynchronous calls: the same arguments, checks, arithmetic and bits as
 * `Kernels`, but the call only starts the computation (on other threads) and the Promise resolves
 * when every output is written; the calling thread's event loop runs meanwhile. Argument errors and
 * kernel failures reject (nothing is thrown synchronously). While a call is pending its inputs must
 * not be written and its outputs not read; other storage of the backend may be used freely.
 */
export type AsyncKernels = {
  readonly [K in keyof Kernels]: (...args: Parameters<Kernels[K]>) => Promise<void>;
};

export interface Backend extends Kernels {
  /** 'ts' (the Math.fround oracle) or 'wasm' (WebAssembly SIMD). */
  readonly name: string;
  /** Zeroed float32 storage, `length` elements, that the kernels can work on in place. */
  allocF32(length: number): Float32Array;
  /**
   * Release what the backend holds besides memory: a threaded backend ends its helper threads.
   * Idempotent; kernels called afterwards throw. The arrays from allocF32 stay readable.
   * Optional: backends with nothing to release may leave it out.
   */
  close?(): void;
  /**
   * XXH64 (seed 0) of the bytes of `a`, a view of this backend's storage, computed where they lie:
   * the same 8 bytes (big-endian) as core `xxh64(a)`, without first copying `a` into the hash
   * module (a worker checks the parameters it receives with it: ~4 ms for 42 MB instead of ~10).
   * Runs on the calling thread; `a` must not be storage a pending async kernel call writes.
   * Optional: where it is absent, use core `xxh64`.
   */
  readonly xxh64?: (a: Float32Array) => Uint8Array;
  /**
   * The kernels as asynchronous calls, where this backend computes off the calling thread (the
   * threaded wasm backend with `offload`); absent elsewhere. A backend runs one kernel call at a
   * time: a call (sync or async) made while an async one is pending throws (rejects).
   */
  readonly async?: AsyncKernels;
}
