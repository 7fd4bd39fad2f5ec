/**
 * Wire limits, both sides: how big a frame may be. Safety limits are on by default (house style):
 * every frame is bounded before it is parsed (codec.ts), by these.
 *
 * - Frames that carry no tensor (Hello, Heartbeat, Error, Bye, ParamsRequest, Welcome, ...) are at
 *   most `SMALL_FRAME_BYTES`.
 * - Frames that carry a tensor or pixels follow the run's model and batch (`frameLimits`): a
 *   worker's Result holds at most the whole gradient; a coordinator's Params the whole parameter
 *   buffer and its Work the pixels, labels and nodes of a whole batch; each plus
 *   `FRAME_SLACK_BYTES` for the envelope and the other fields. The coordinator derives them from
 *   its model; a worker from Welcome's model sizes and max batch (`paramCountOf`).
 * - A tensor on the wire is cut into fragments of `FRAGMENT_BYTES` (more for huge tensors: at most
 *   `MAX_FRAGMENTS` a message).
 */
import { CIFAR_PIXELS } from '@gradhub/core';

/** Frames that carry no tensor are at most this big. */
export const SMALL_FRAME_BYTES = 64 * 1024;
/** Slack added to tensor-sized frame limits for the envelope and the other fields. */
export const FRAME_SLACK_BYTES = 64 * 1024;
/** Fragments of a tensor on the wire are at most this big (and a message has at most MAX_FRAGMENTS). */
export const FRAGMENT_BYTES = 256 * 1024;
/** Most fragments a tensor is cut into (ws refuses messages of more than 16384 by default). */
export const MAX_FRAGMENTS = 4096;

/** Frame size limits of a run, from the model and the largest batch. */
export interface FrameLimits {
  /** Largest frame a worker may send (a Result with a whole gradient). */
  readonly fromWorker: number;
  /** Largest frame the coordinator sends (Params, or Work with a whole batch). */
  readonly fromCoordinator: number;
}

/**
 * Limits for a model of `paramCount` floats and Work frames of at most `maxWorkSamples` samples
 * (a batch; or a round's inner batches, Welcome.max_work_samples).
 */
export function frameLimits(paramCount: number, maxWorkSamples: number): FrameLimits {
  const grad = 4 * paramCount;
  // pixels + labels + a node and an inner batch size per sample at worst
  const work = maxWorkSamples * (CIFAR_PIXELS + 1) + maxWorkSamples * 24;
  return {
    fromWorker: grad + FRAME_SLACK_BYTES,
    fromCoordinator: Math.max(grad, work) + FRAME_SLACK_BYTES,
  };
}

/**
 * Parameters (weights and biases) of an MLP with sizes [d0, ..., dL] as Welcome.model_sizes gives
 * them: the sum over layers of d(i-1) x d(i) + d(i). The same count as core's
 * `modelSpec(sizes).paramCount`, without its checks (sizes off the wire are checked where they are
 * used: a model the engine cannot build fails there).
 */
export function paramCountOf(sizes: readonly number[]): number {
  let n = 0;
  for (let i = 1; i < sizes.length; i++) n += sizes[i - 1] * sizes[i] + sizes[i];
  return n;
}
