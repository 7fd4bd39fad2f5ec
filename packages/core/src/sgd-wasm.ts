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
 * `step` first checks that the gradient sum is finite (the kernel module's f32Check on the staged
 * `grad`, one SIMD pass; a plain loop in the 'ts' path) and returns false, changing nothing
 * (parameters, momentum, state), when a value is NaN or infinite: the trainer stops the run
 * (E_DIVERGED) with the master copy as it was.
 *
 * Without WebAssembly SIMD (or with `backend: 'ts'`) the optimizer keeps the same interface over
 * plain arrays and runs sgd.ts's sgdStep: the same bits, slower.
 */
import { sgdStep as sgdStepTs, signedDenom, type SgdOptions, type SgdState } from './sgd.js';
import type { FlatRange } from './model.js';
import { kernelBytes, wasmApi, wasmSimdSupported, MAX_PAGES, PAGE_BYTES } from './kernels/wasm.js';
import { internalError } from './errors.js';

export interface SgdOptimizer {
  /** 'wasm' (WebAssembly SIMD) or 'ts' (sgd.ts's loops). */
  readonly backend: 'wasm' | 'ts';
  /** The parameters, paramCount floats, updated in place by `step`. */
  readonly params: Float32Array;
  /** A gradient buffer of paramCount floats: a gradient summed here is used in place by `step`. */
  readonly grad: Float32Array;
  /** The optimizer state; `momentumBuffer` is null until the first step with momentum. */
  readonly state: SgdState;
  /**
   * One torch.optim.SGD step with gradient gsum / denom (gsum is left unchanged). Returns false,
   * changing nothing (parameters, momentum, state), when gsum holds a NaN or an infinity.
   */
  step(gsum: Float32Array, denom: number, o: SgdOptions): boolean;
  /**
   * The same step applied slice by slice (e.g. a stream part as soon as its gradient is reduced):
   * `beginStep` fixes the step's case (whether the momentum buffer exists yet), each
   * `part(range, g)` updates the slice `range` with g (range.length floats: that slice of gsum)
   * and returns false, changing nothing, when g holds a NaN or an infinity; `end()` closes the
   * step (the momentum buffer exists from then on). Slices must not overlap; together they give
   * the bits of one `step` over the whole buffer. The steps of `step` and `beginStep` do not
   * interleave.
   */
  beginStep(denom: number, o: SgdOptions): SgdPartialStep;
}

export interface SgdPartialStep {
  part(range: FlatRange, gsum: Float32Array): boolean;
  end(): void;
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
  f32Check(p: number, n: number): number;
  sgdStep(
    p: number, gs: number, buf: number, n: number, d: number, lr: number, wd: number, mom: number, damp1: number,
    decay: number, useMomentum: number, first: number, nesterov: number,
  ): void;
}

/** Byte offset of the params region (address 0 stays unused, as in wasm.ts). */
const BASE = 64;

export async function createSgdOptimizer(paramCount: number, options: SgdOptimizerOptions = {}): Promise<SgdOptimizer> {
  if (!Number.isInteger(paramCount) || paramCount < 0) throw internalError(`createSgdOptimizer: paramCount must be an integer >= 0, got ${paramCount}`);
  const n = paramCount;
  const check = (name: string, a: Float32Array | null | undefined): void => {
    if (a && a.length !== n) throw internalError(`createSgdOptimizer: ${name} has ${a.length} floats, paramCount ${n}`);
  };
  check('params', options.params);
  check('momentumBuffer', options.momentumBuffer);
  const backend = options.backend ?? (wasmSimdSupported() ? 'wasm' : 'ts');
  const api = wasmApi();
  if (backend === 'ts' || !api) {
    if (backend === 'wasm') throw new Error('createSgdOptimizer: this runtime has no WebAssembly SIMD (check wasmSimdSupported() first)');
    const params = options.params ? options.params.slice() : new Float32Array(n);
    const state: SgdState = { momentumBuffer: options.momentumBuffer ? options.momentumBuffer.slice() : null };
    const beginStep = (denom: number, o: SgdOptions): SgdPartialStep => {
      const buf = state.momentumBuffer;
      if (buf !== null && buf.length !== n) throw internalError(`sgdStep: momentum buffer has ${buf.length} floats, parameters ${n}`);
      // PyTorch's first step with momentum sets buf = g: slices fill a new buffer, kept at end().
      const firstBuf = o.momentum !== 0 && buf === null ? new Float32Array(n) : null;
      return {
        part(range, gsum) {
          checkPart(range, gsum, n);
          if (!allFinite(gsum)) return false;
          const { offset: a, length: len } = range;
          const slice: SgdState = { momentumBuffer: buf === null ? null : buf.subarray(a, a + len) };
          sgdStepTs(params.subarray(a, a + len), gsum, denom, o, slice);
          if (firstBuf && slice.momentumBuffer) firstBuf.set(slice.momentumBuffer, a);
          return true;
        },
        end() {
          if (firstBuf) state.momentumBuffer = firstBuf;
        },
      };
    };
    return { backend: 'ts', params, grad: new Float32Array(n), state, beginStep, step: wholeStep(n, beginStep) };
  }

  const region = Math.ceil(n / 4) * 16; // bytes a buffer, 16-byte aligned
  const bytes = BASE + 3 * region;
  const pages = Math.max(1, Math.ceil(bytes / PAGE_BYTES));
  if (pages > MAX_PAGES) throw internalError(`createSgdOptimizer: ${n} parameters need ${bytes} bytes, more than WebAssembly's 4 GiB`);
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
  const beginStep = (denom: number, o: SgdOptions): SgdPartialStep => {
    const buf = state.momentumBuffer;
    if (buf !== null && buf.length !== n) throw internalError(`sgdStep: momentum buffer has ${buf.length} floats, parameters ${n}`);
    const useMomentum = o.momentum !== 0;
    const first = useMomentum && buf === null;
    let adopted = false;
    return {
      part(range, gsum) {
        checkPart(range, gsum, n);
        const at = 4 * range.offset;
        if (gsum.buffer !== memory.buffer || gsum.byteOffset !== gPtr + at) grad.set(gsum, range.offset);
        if (k.f32Check(gPtr + at, range.length) === 0) return false;
        if (!adopted && buf !== null && buf !== momentum) momentum.set(buf); // someone replaced the state's buffer: take it over
        adopted = true;
        k.sgdStep(
          pPtr + at, gPtr + at, bPtr + at, range.length, f(signedDenom(denom, o)), f(o.lr), f(o.weightDecay), f(o.momentum), f(1 - o.dampening),
          o.weightDecay !== 0 ? 1 : 0, useMomentum ? 1 : 0, first ? 1 : 0, o.nesterov ? 1 : 0,
        );
        return true;
      },
      end() {
        if (first || (adopted && buf !== null)) state.momentumBuffer = momentum;
      },
    };
  };
  return { backend: 'wasm', params, grad, state, beginStep, step: wholeStep(n, beginStep) };
}

/** `step` of an optimizer of n parameters: its part-by-part step over the one part [0, n). */
function wholeStep(n: number, beginStep: SgdOptimizer['beginStep']): SgdOptimizer['step'] {
  return (gsum, denom, o) => {
    if (gsum.length !== n) throw internalError(`sgdStep: gradient has ${gsum.length} floats, parameters ${n}`);
    const st = beginStep(denom, o);
    if (!st.part({ offset: 0, length: n }, gsum)) return false;
    st.end();
    return true;
  };
}

/** Throws unless `range` lies inside n floats and `gsum` has its length. */
function checkPart(range: FlatRange, gsum: Float32Array, n: number): void {
  const { offset, length } = range;
  if (!Number.isInteger(offset) || !Number.isInteger(length) || offset < 0 || length < 0 || offset + length > n) {
    throw internalError(`sgdStep: slice [${offset}, +${length}) outside ${n} parameters`);
  }
  if (gsum.length !== length) throw internalError(`sgdStep: gradient slice has ${gsum.length} floats, the range ${length}`);
}

/** True when every element is finite (v - v is +0 only for finite v; no branch per value). */
function allFinite(a: Float32Array): boolean {
  let acc = 0;
  for (let i = 0; i < a.length; i++) {
    const v = a[i];
    acc += v - v;
  }
  return acc === 0;
}
