/**
 * How the trainer gets a step's sums computed, whoever computes them.
 *
 * The trainer is authoritative for the parameters and the step; an executor only turns
 * (parameters of version v, the global batch's samples) into the canonical tree sums of docs/design.md
 * "Invariant 3: canonical reduction tree": the gradient sum S(0, nChunks) over the whole batch (never divided by the batch
 * size), the per-sample loss sum, the loss denominator sum and the correct count. The in-process
 * executor runs the core on the root node; the cluster executor hands tree nodes to workers and
 * reduces their results. Both must return the same bits for the same input.
 */
import type { NodeDigest } from './audit.js';
import { CIFAR_PIXELS, ErrorCode, GradhubError, type FlatRange, type NodeSums, type SgdOptions } from '@gradhub/core';

/** What a request computes: a step's gradient, an evaluation's sums, or a round's pseudo-gradient. */
export type RequestMode = 'train' | 'eval' | 'round';

/** Whether results of `mode` carry a tensor (the gradient, or a round's pseudo-gradient). */
export const carriesTensor = (mode: RequestMode): boolean => mode !== 'eval';

/**
 * A round's shape (docs/design.md "Rounds"): M replicas of H inner steps each. The request's
 * samples are the round's M x H inner batches in stream order (replica-major); its tree's leaves
 * are the replicas, leaf m holding samples [offsets[m], offsets[m + 1]).
 */
export interface RoundInput {
  /** H: inner steps per replica. */
  readonly localSteps: number;
  /** M: replicas (the leaves of the round's tree). */
  readonly replicas: number;
  /** The inner optimizer's options, `lr` this round's. */
  readonly sgd: SgdOptions;
  /** The M x H inner batch sizes, in order. */
  readonly innerBatches: Uint32Array;
  /** M + 1 sample offsets of the replicas. */
  readonly offsets: Uint32Array;
}

export interface StepInput {
  /**
   * 'train': gradient and sums; 'eval': sums only (test-set evaluation); 'round': the
   * pseudo-gradient sum S(0, M) over the replicas of a round (`round`) and their inner sums.
   */
  readonly mode: RequestMode;
  /** Update number this gradient is for (1-based); for 'eval' the step after which it runs. */
  readonly step: number;
  /** Parameter version the sums must be computed against (the number of updates applied). */
  readonly version: number;
  /** The master parameters of that version; read-only while the call runs. */
  readonly params: Float32Array;
  /** Global batch pixels: (B, 3072) uint8, CIFAR-10 planes R, G, B. */
  readonly pixels: Uint8Array;
  /** Global batch labels: (B) class indices. */
  readonly labels: Uint8Array;
  /** B, the number of samples in this batch (the last batch of an epoch may be short; a round: all its samples). */
  readonly batch: number;
  /** 'round' only. */
  readonly round?: RoundInput;
}

/**
 * Where one request's wall time went, in milliseconds, along its critical path (the cluster
 * executor fills every field; the in-process executor only `computeMs`):
 * - broadcastMs: from the request's start until the parameters and work were handed to every
 *   assigned worker's socket (send callbacks done); parameters streamed ahead during the previous
 *   request (`Executor.publish`) are not in it, so with streaming it is mostly the Work frames;
 * - computeMs: the longest per-worker sum of node compute times reported by the workers (with
 *   streaming, the uploads and downloads that overlap the compute slow it down and count here);
 * - uploadMs: the rest of the time until the last result arrived (transfer and queueing), >= 0;
 * - reduceMs: time the coordinator spent combining results (tree additions and validation).
 */
export interface StepTiming {
  readonly broadcastMs: number;
  readonly computeMs: number;
  readonly uploadMs: number;
  readonly reduceMs: number;
}

export interface StepSums {
  /**
   * Sum over samples of d(loss_s)/d(params), tree order; length = paramCount. Null for 'eval', and
   * when every part already went to `StepHooks.onRootPart`.
   */
  readonly grad: Float32Array | null;
  /** Sum over samples of the per-sample loss (float64, tree order). */
  readonly lossSum: number;
  /** Sum of the loss denominators (number of non-ignored targets when unweighted). */
  readonly denomSum: number;
  /** Number of samples whose argmax logit equals the label. */
  readonly correct: number;
  /** Where the time went (optional: executors that can measure it). */
  readonly timing?: StepTiming;
  /**
   * 'train' and 'round' requests of the cluster executor: what each worker sent for each node it
   * answered (digests of its accepted gradient messages and its sums), for audits (audit.ts);
   * trusted workers' too, marked. Absent where every result was computed here.
   */
  readonly contributions?: readonly NodeDigest[];
}

/**
 * Optional hooks of a 'train' run. `onRootPart(i, range, grad, sums)`: the root gradient sum of
 * part i of the model's stream parts (core `streamParts`: layers, big ones in row blocks) is
 * complete (`grad`, range.length floats, the slice `range` of the flat gradient; valid during the
 * call only) and so are the batch's sums: the caller may update that part now, while other parts
 * are still being reduced. Called at most once per part, before `run` resolves; executors that do
 * not stream never call it (the whole gradient comes in StepSums).
 */
export interface StepHooks {
  onRootPart?(index: number, range: FlatRange, grad: Float32Array, sums: NodeSums): void;
}

export interface Executor {
  /** Compute the sums of one batch. Rejects only for run-ending errors (e.g. a diverged model). */
  run(input: StepInput, hooks?: StepHooks): Promise<StepSums>;
  /**
   * Optional: stream part `index` of parameter version `version` is final in `params` (the
   * optimizer updated it): an executor with remote workers may send it ahead of the request.
   */
  publish?(version: number, params: Float32Array, index: number): void;
  /** Release sockets, workers and memory. */
  close(): Promise<void>;
}

/**
 * Check `input` against an executor's limits (E_INTERNAL: the trainer never sends these): a known
 * mode, 1..maxBatch samples with their pixels and labels, the model's parameter count, versions
 * and steps in uint32, and a version not below `fromVersion` (workers refuse older parameters
 * from the same coordinator incarnation; a resume is a new one). `who` prefixes the message.
 */
export function checkStepInput(input: StepInput, limits: { readonly maxBatch: number; readonly paramCount: number; readonly fromVersion: number | null }, who: string): void {
  const bad = (msg: string): never => {
    throw new GradhubError(ErrorCode.E_INTERNAL, `${who}: ${msg}`);
  };
  const { maxBatch, paramCount, fromVersion } = limits;
  if (input.mode !== 'train' && input.mode !== 'eval' && input.mode !== 'round') bad(`mode ${String(input.mode)}`);
  const r = input.round;
  if ((input.mode === 'round') !== Boolean(r)) bad(`mode ${input.mode} ${r ? 'with' : 'without'} a round`);
  const most = r ? maxBatch * r.localSteps * r.replicas : maxBatch;
  if (!Number.isInteger(input.batch) || input.batch < 1 || input.batch > most) bad(`batch ${input.batch} outside 1..${most}`);
  if (r) checkRound(r, input.batch, maxBatch, bad);
  if (input.pixels.length < input.batch * CIFAR_PIXELS || input.labels.length < input.batch) bad(`batch of ${input.batch} needs ${input.batch * CIFAR_PIXELS} pixel bytes and ${input.batch} labels`);
  if (input.params.length !== paramCount) bad(`params hold ${input.params.length} floats, the model ${paramCount}`);
  if (!Number.isInteger(input.version) || input.version < 0 || input.version > 0xffffffff) bad(`version ${input.version}`);
  if (fromVersion !== null && input.version < fromVersion) bad(`version ${input.version} after ${fromVersion}: versions never go back within one executor`);
  if (!Number.isInteger(input.step) || input.step < 0 || input.step > 0xffffffff) bad(`step ${input.step}`);
}

/** A round's shape: H, M >= 1; M x H inner batches of 1..maxBatch samples; offsets at replica boundaries, ending at `batch`. */
function checkRound(r: RoundInput, batch: number, maxBatch: number, bad: (msg: string) => never): void {
  const { localSteps: H, replicas: M } = r;
  if (!Number.isInteger(H) || H < 1 || !Number.isInteger(M) || M < 1) bad(`round of ${M} replicas x ${H} local steps`);
  if (r.innerBatches.length !== M * H || r.offsets.length !== M + 1) bad(`round with ${r.innerBatches.length} inner batches and ${r.offsets.length} offsets for ${M} x ${H}`);
  let at = 0;
  for (let m = 0; m < M; m++) {
    if (r.offsets[m] !== at) bad(`replica ${m} starts at ${r.offsets[m]}, its batches at ${at}`);
    for (let h = 0; h < H; h++) {
      const b = r.innerBatches[m * H + h];
      if (b < 1 || b > maxBatch) bad(`inner batch of ${b} samples outside 1..${maxBatch}`);
      at += b;
    }
  }
  if (r.offsets[M] !== at || at !== batch) bad(`round of ${batch} samples, its inner batches hold ${at}`);
}
