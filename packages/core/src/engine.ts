/**
 * One node's forward, loss and backward: what every worker (and the in-process executor) runs.
 *
 * An engine owns, inside its backend's memory, the parameters it computes against, the gradient
 * buffer (same flat layout as the parameters, docs/design.md "Invariant 2: one flat parameter buffer") and the per-batch workspaces,
 * all allocated once for `maxBatch` samples: a step allocates nothing.
 *
 * `computeSums` takes the samples of one tree node (n samples, its chunks of `chunk` samples in
 * order) and returns the node's sums (docs/design.md "Invariant 1: loss semantics"): loss sum and denominator sum over
 * samples in tree order (float64), the correct count, and, when asked, the gradient sum S(node)
 * in `grads`, summed over samples along the node's own chunk tree (which is the global tree's
 * subtree, so any cut of the batch into nodes reduces to the same bits).
 *
 * `computeSumsAsync` is the same computation (the same kernels in the same order, so the same
 * bits) for a caller that must keep its event loop running: with a backend that computes off the
 * calling thread (`backend.async`: the threaded wasm backend with `offload`) each kernel call is
 * awaited, and the socket can send while the helpers compute; any other backend runs its blocking
 * kernels. Progress hooks (`ComputeHooks`), called synchronously between kernel calls, let the
 * caller stream the result as it becomes final, as PyTorch DDP's gradient buckets do:
 * - `onSums(sums)` once the forward and the loss are done, before the backward: the node's sums
 *   (the object the call returns), final;
 * - `onPartGrad(p)` once part p of `parts` (= streamParts(spec), model.ts: a block of one layer's
 *   weight rows, the layer's last block with its bias) is final in `grads` (the slice
 *   [offset, offset + length)), right after that block's weight-gradient kernel; the call never
 *   writes that slice again (the next kernel may already be running).
 * The backward pass runs the layers L-1 down to 0; for each, the weight gradient in its parts' row
 * blocks in increasing row order (each block one kernel call over those rows: the same bits as one
 * call over the whole layer), then, for layers above the first, the input gradient that the layer
 * below needs. So onPartGrad sees layer L-1's parts in increasing index, then layer L-2's, ...,
 * down to layer 0's: every part exactly once. The slices stay as they are until the next
 * computeSums* call on this engine, which overwrites them: a caller that sends them without
 * copying waits for the sends to finish first. A hook that throws ends the call with that error
 * (once the kernel already started has finished).
 *
 * One call at a time: computeSums, computeSumsAsync and forwardBackward* must not overlap (nor be
 * called from a hook); a call made while another is in progress throws (async: rejects). While an
 * async call is pending, `params` must not be written, nor `grads` read outside the parts that
 * `onPartGrad` has released.
 */
import type { AsyncKernels, Backend, Kernels } from './kernels/types.js';
import { streamParts, type ModelSpec, type StreamPart } from './model.js';
import { treeSum64 } from './tree.js';
import { pixelsToInput, CIFAR10_IMAGE_BYTES } from './cifar.js';
import { softmaxCrossEntropyRows } from './losses.js';
import { internalError } from './errors.js';

export interface EngineOptions {
  readonly spec: ModelSpec;
  readonly backend: Backend;
  /** Largest number of samples one computeSums call may take. */
  readonly maxBatch: number;
  /** Samples per chunk of the reduction tree. */
  readonly chunk: number;
  /** Apply the CIFAR-10 per-channel mean/std normalisation to the inputs. */
  readonly normalize: boolean;
}

export interface NodeSums {
  /** Sum of per-sample losses, float64, tree order. */
  lossSum: number;
  /** Sum of the loss denominators (the count of non-ignored targets here). */
  denomSum: number;
  /** Samples whose first maximal logit is the label. */
  correct: number;
}

/** Progress of one computeSums* call (see the module comment); every hook is optional. */
export interface ComputeHooks {
  /** The node's sums, final, after the forward and the loss and before the backward (once a call). */
  onSums?(sums: NodeSums): void;
  /**
   * Part `partIndex` of `Engine.parts` is final in `grads` (only with grad; every part once, layers
   * L-1 down to 0, a layer's parts in increasing index).
   */
  onPartGrad?(partIndex: number): void;
}

export interface Engine {
  readonly spec: ModelSpec;
  readonly backend: Backend;
  /** Parameters the engine computes against; write them with `params.set(...)`. */
  readonly params: Float32Array;
  /** The last computeSums' gradient sum S(node), flat layout. */
  readonly grads: Float32Array;
  /** The parts in which the backward pass finishes `grads` (streamParts(spec)): onPartGrad's indices. */
  readonly parts: readonly StreamPart[];
  /** Run forward + loss (+ backward when withGrad) over n CIFAR-10 samples. See the module comment. */
  computeSums(pixels: Uint8Array, labels: ArrayLike<number>, n: number, withGrad: boolean, hooks?: ComputeHooks): NodeSums;
  /**
   * computeSums without blocking the event loop where the backend can (`backend.async`): the same
   * sums and the same gradient bits, the hooks called as parts complete. See the module comment.
   */
  computeSumsAsync(pixels: Uint8Array, labels: ArrayLike<number>, n: number, withGrad: boolean, hooks?: ComputeHooks): Promise<NodeSums>;
  /** The input workspace x (n, d0), to fill directly before `forwardBackward`. */
  input(n: number): Float32Array;
  /** computeSums on inputs already in `input(n)`. */
  forwardBackward(labels: ArrayLike<number>, n: number, withGrad: boolean, hooks?: ComputeHooks): NodeSums;
  /** computeSumsAsync on inputs already in `input(n)`. */
  forwardBackwardAsync(labels: ArrayLike<number>, n: number, withGrad: boolean, hooks?: ComputeHooks): Promise<NodeSums>;
  /** Logits (n, classes) of the last computeSums (a view, valid until the next call). */
  logits(n: number): Float32Array;
}

export function createEngine(opts: EngineOptions): Engine {
  const { spec, backend, maxBatch, chunk, normalize } = opts;
  if (!Number.isInteger(maxBatch) || maxBatch < 1) throw internalError(`maxBatch must be a positive integer, got ${maxBatch}`);
  if (!Number.isInteger(chunk) || chunk < 1) throw internalError(`chunk must be a positive integer, got ${chunk}`);
  const L = spec.layers.length;
  const params = backend.allocF32(spec.paramCount);
  const grads = backend.allocF32(spec.paramCount);
  // acts[0] is the input x (B, d0); acts[i+1] is layer i's output (B, d_{i+1}) (post-ReLU except the last).
  const acts = spec.sizes.map((d) => backend.allocF32(maxBatch * d));
  // dActs[i] is the gradient w.r.t. acts[i] for i >= 1 (the input's gradient is never needed).
  const dActs = spec.sizes.map((d, i) => (i === 0 ? null : backend.allocF32(maxBatch * d)));
  const classes = spec.sizes[L];
  const lossRows = new Float64Array(maxBatch);
  const denomRows = new Float64Array(maxBatch);
  const view = (flat: Float32Array, off: number, len: number): Float32Array => flat.subarray(off, off + len);
  const parts: readonly StreamPart[] = Object.freeze(streamParts(spec));
  // layerParts[i]: the indices into `parts` of layer i's row blocks, in increasing row order.
  const layerParts = spec.layers.map((l) => parts.flatMap((p, j) => (p.layer === l.index ? [j] : [])));
  // Each layer's weight and bias, and their gradients: views made once.
  const weights = spec.layers.map((l) => view(params, l.weightOffset, l.outF * l.inF));
  const biases = spec.layers.map((l) => view(params, l.biasOffset, l.outF));
  const dWeights = spec.layers.map((l) => view(grads, l.weightOffset, l.outF * l.inF));
  const dBiases = spec.layers.map((l) => view(grads, l.biasOffset, l.outF));

  const checkCount = (n: number): void => {
    if (!Number.isInteger(n) || n < 1 || n > maxBatch) throw internalError(`engine: ${n} samples, it holds 1..${maxBatch}`);
  };

  function loadPixels(pixels: Uint8Array, n: number): void {
    checkCount(n);
    if (spec.sizes[0] !== CIFAR10_IMAGE_BYTES) throw internalError(`the model's input size ${spec.sizes[0]} is not CIFAR-10's ${CIFAR10_IMAGE_BYTES}`);
    if (pixels.length < n * CIFAR10_IMAGE_BYTES) throw internalError(`computeSums: ${n} samples need ${n * CIFAR10_IMAGE_BYTES} pixel bytes, got ${pixels.length}`);
    pixelsToInput(pixels, 0, n, acts[0], normalize);
  }

  /**
   * The pass itself, once for both drivers: each kernel call's result (void, or a Promise with
   * async kernels) is yielded, and the driver resumes the pass when it is done.
   */
  function* pass(kernels: Kernels | AsyncKernels, labels: ArrayLike<number>, n: number, withGrad: boolean, hooks: ComputeHooks | undefined): Generator<void | Promise<void>, NodeSums, void> {
    checkCount(n);
    if (labels.length < n) throw internalError(`engine: ${n} samples need ${n} labels, got ${labels.length}`);
    for (const l of spec.layers) {
      const x = acts[l.index].subarray(0, n * l.inF);
      const y = acts[l.index + 1].subarray(0, n * l.outF);
      yield kernels.linearForward(x, weights[l.index], biases[l.index], y, n, l.inF, l.outF, l.index < L - 1);
    }
    const logits = acts[L].subarray(0, n * classes);
    const dLogits = withGrad ? dActs[L]!.subarray(0, n * classes) : null;
    const correct = softmaxCrossEntropyRows(logits, n, classes, labels, lossRows, denomRows, dLogits);
    const sums = { lossSum: treeSum64(lossRows, n, chunk), denomSum: treeSum64(denomRows, n, chunk), correct };
    hooks?.onSums?.(sums);
    if (!withGrad) return sums;
    for (let i = L - 1; i >= 0; i--) {
      const l = spec.layers[i];
      const x = acts[i].subarray(0, n * l.inF);
      const dy = dActs[i + 1]!.subarray(0, n * l.outF);
      const blocks = layerParts[i];
      const weightBlock = (b: number): void | Promise<void> => {
        const p = parts[blocks[b]];
        return kernels.linearBackwardWeight(dy, x, dWeights[i], dBiases[i], n, l.inF, l.outF, chunk, p.rowBegin, p.rowEnd);
      };
      let running = weightBlock(0);
      for (let b = 0; b < blocks.length; b++) {
        yield running;
        // Part blocks[b] is final (with the layer's bias after its last block). Start the next
        // kernel, then tell the caller (the hook runs while the helpers compute): the layer's next
        // block, else its input gradient. The input's gradient is never needed; hidden inputs get
        // ReLU's backward fused in (x is post-ReLU).
        running = b + 1 < blocks.length ? weightBlock(b + 1)
          : i > 0 ? kernels.linearBackwardInput(dy, weights[i], dActs[i]!.subarray(0, n * l.inF), n, l.inF, l.outF, x) : undefined;
        try {
          hooks?.onPartGrad?.(blocks[b]);
        } catch (err) {
          yield running; // the call ends with the backend idle
          throw err;
        }
      }
      yield running;
    }
    return sums;
  }

  let busy = false;
  function enter(): void {
    if (busy) throw new Error('engine: a computeSums call is in progress (calls must not overlap)');
    busy = true;
  }

  /** Drive the pass with blocking kernels (the yielded values are void). */
  function runSync(start: () => void, labels: ArrayLike<number>, n: number, withGrad: boolean, hooks?: ComputeHooks): NodeSums {
    enter();
    try {
      start();
      const g = pass(backend, labels, n, withGrad, hooks);
      for (;;) {
        const r = g.next();
        if (r.done) return r.value;
      }
    } finally {
      busy = false;
    }
  }

  /** Drive the pass with the backend's async kernels (its blocking ones where it has none). */
  async function runAsync(start: () => void, labels: ArrayLike<number>, n: number, withGrad: boolean, hooks?: ComputeHooks): Promise<NodeSums> {
    enter();
    try {
      start();
      const g = pass(backend.async ?? backend, labels, n, withGrad, hooks);
      for (let r = g.next(); ; r = g.next()) {
        if (r.done) return r.value;
        await r.value;
      }
    } finally {
      busy = false;
    }
  }

  const noInput = (): void => {};
  return {
    spec, backend, params, grads, parts,
    computeSums: (pixels, labels, n, withGrad, hooks) => runSync(() => loadPixels(pixels, n), labels, n, withGrad, hooks),
    computeSumsAsync: (pixels, labels, n, withGrad, hooks) => runAsync(() => loadPixels(pixels, n), labels, n, withGrad, hooks),
    forwardBackward: (labels, n, withGrad, hooks) => runSync(noInput, labels, n, withGrad, hooks),
    forwardBackwardAsync: (labels, n, withGrad, hooks) => runAsync(noInput, labels, n, withGrad, hooks),
    input: (n: number) => { checkCount(n); return acts[0].subarray(0, n * spec.sizes[0]); },
    logits: (n: number) => acts[L].subarray(0, n * classes),
  };
}

/** Floats an engine allocates from its backend: size a WebAssembly backend's memory with it. */
export function engineFloats(spec: ModelSpec, maxBatch: number): number {
  const actFloats = spec.sizes.reduce((s, d) => s + d, 0) * maxBatch;
  const dActFloats = (spec.sizes.reduce((s, d) => s + d, 0) - spec.sizes[0]) * maxBatch;
  // + 16 floats of alignment slack per allocation
  return 2 * spec.paramCount + actFloats + dActFloats + 16 * (2 * spec.sizes.length + 2);
}
