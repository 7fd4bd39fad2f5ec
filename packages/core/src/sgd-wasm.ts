/**
 * The SGD step of sgd.ts on WebAssembly SIMD (the kernel module's `sgdStep`, assembly/index.ts):
 * the same float32 operations in the same order, so the same bits (test/sgd.test.ts checks every
 * case against the straightforward loop), about 4 elements an instruction.
 *
 * An optimizer owns one `WebAssembly.Memory` of fixed size (never grown, so its views never
 * detach) holding, for `paramCount` floats each, 16-byte aligned:
 *
 *   params     the master copy, updated in place by `step`
 *   grad       a staging buffer for the gradient sum (`step` copies a gradient in unless it is this view)
 *   momentum   the momentum buffer, exposed as `state.momentumBuffer` once it exists
 *
 * `state.momentumBuffer` follows sgd.ts: null until the first step with momentum (PyTorch sets
 * buf = g then), a Float32Array of paramCount afterwards, so a checkpoint keeps the distinction.
 *
 * Without WebAssembly SIMD (or with `backend: 'ts'`) the optimizer keeps the same interface over
 * plain arrays and runs sgd.ts's sgdStep: the same bits, slower.
 */
import { sgdStep as sgdStepTs, type SgdOptions, type SgdState } from './sgd.js';
import { kernelBytes, wasmApi, wasmSimdSupported, MAX_PAGES, PAGE_BYTES } from './kernels/wasm.js';

export interface SgdOptimizer {
  /** 'wasm' (WebAssembly SIMD) or 'ts' (sgd.ts's loops). */
  readonly backend: 'wasm' | 'ts';
  /** The parameters, paramCount floats, updated in place by `step`. */
  readonly params: Float32Array;
  /** A gradient buffer of paramCount floats: a gradient summed here is used in place by `step`. */
  readonly grad: Float32Array;
  /** The optimizer state; `momentumBuffer` is null until the first step with momentum. */
  readonly state: SgdState;
  /** One torch.optim.SGD step with gradient gsum / denom (gsum is left unchanged). */
  step(gsum: Float32Array, denom: number, o: SgdOptions): void;
}

export interface SgdOptimizerOptions {
  /** Default 'wasm' where WebAssembly SIMD is supported, else 'ts'. */
  readonly backend?: 'wasm' | 'ts';
  /** Initial parameters (copied in); default zeros. */
  readonly params?: Float32Array;
  /** Initial momentum buffer (copied in), or null (default) when no step has been taken. */
  readonly momentumBuffer?: Float32Array | null;
}

interface SgdExports {
  sgdStep(
    p: number, gs: number, buf: number, n: number, d: number, lr: number, wd: number, mom: number, damp1: number,
    decay: number, useMomentum: number, first: number, nesterov: number,
  ): void;
}

/** Byte offset of the params region (address 0 stays unused, as in wasm.ts). */
const BASE = 64;

export async function createSgdOptimizer(paramCount: number, options: SgdOptimizerOptions = {}): Promise<SgdOptimizer> {
  if (!Number.isInteger(paramCount) || paramCount < 0) throw new RangeError(`createSgdOptimizer: paramCount must be an integer >= 0, got ${paramCount}`);
  const n = paramCount;
  const check = (name: string, a: Float32Array | null | undefined): void => {
    if (a && a.length !== n) throw new RangeError(`createSgdOptimizer: ${name} has ${a.length} floats, paramCount ${n}`);
  };
  check('params', options.params);
  check('momentumBuffer', options.momentumBuffer);
  const backend = options.backend ?? (wasmSimdSupported() ? 'wasm' : 'ts');
  const api = wasmApi();
  if (backend === 'ts' || !api) {
    if (backend === 'wasm') throw new Error('createSgdOptimizer: this runtime has no WebAssembly SIMD (check wasmSimdSupported() first)');
    const params = options.params ? options.params.slice() : new Float32Array(n);
    const state: SgdState = { momentumBuffer: options.momentumBuffer ? options.momentumBuffer.slice() : null };
    return {
      backend: 'ts', params, grad: new Float32Array(n), state,
      step(gsum, denom, o) { sgdStepTs(params, gsum, denom, o, state); },
    };
  }

  const region = Math.ceil(n / 4) * 16; // bytes a buffer, 16-byte aligned
  const bytes = BASE + 3 * region;
  const pages = Math.max(1, Math.ceil(bytes / PAGE_BYTES));
  if (pages > MAX_PAGES) throw new RangeError(`createSgdOptimizer: ${n} parameters need ${bytes} bytes, more than WebAssembly's 4 GiB`);
  const memory = new api.Memory({ initial: pages, maximum: pages });
  const { instance } = await api.instantiate(kernelBytes(), { env: { memory } });
  const k = instance.exports as SgdExports;
  const pPtr = BASE;
  const gPtr = BASE + region;
  const bPtr = BASE + 2 * region;
  const params = new Float32Array(memory.buffer, pPtr, n);
  const grad = new Float32Array(memory.buffer, gPtr, n);
  const momentum = new Float32Array(memory.buffer, bPtr, n);
  if (options.params) params.set(options.params);
  const state: SgdState = { momentumBuffer: null };
  if (options.momentumBuffer) {
    momentum.set(options.momentumBuffer);
    state.momentumBuffer = momentum;
  }
  const f = Math.fround;
  return {
    backend: 'wasm', params, grad, state,
    step(gsum, denom, o) {
      if (gsum.length !== n) throw new RangeError(`sgdStep: gradient has ${gsum.length} floats, parameters ${n}`);
      const buf = state.momentumBuffer;
      if (buf !== null && buf !== momentum) {
        // Someone replaced the state's buffer: take it over.
        if (buf.length !== n) throw new RangeError(`sgdStep: momentum buffer has ${buf.length} floats, parameters ${n}`);
        momentum.set(buf);
        state.momentumBuffer = momentum;
      }
      if (gsum.buffer !== memory.buffer || gsum.byteOffset !== gPtr) grad.set(gsum);
      const useMomentum = o.momentum !== 0;
      const first = useMomentum && state.momentumBuffer === null;
      k.sgdStep(
        pPtr, gPtr, bPtr, n, f(denom), f(o.lr), f(o.weightDecay), f(o.momentum), f(1 - o.dampening),
        o.weightDecay !== 0 ? 1 : 0, useMomentum ? 1 : 0, first ? 1 : 0, o.nesterov ? 1 : 0,
      );
      if (first) state.momentumBuffer = momentum;
    },
  };
}
