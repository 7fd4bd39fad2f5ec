/**
 * The epoch sampler, like DataLoader(shuffle=True, drop_last=False): epoch e visits the dataset in
 * a permutation that is a pure function of (seed, e) (Fisher-Yates driven by gradhub's generator,
 * stream shuffleBase + e), or in file order with shuffle off. Batches take `batch` consecutive
 * positions of that order; the last batch of an epoch may be short. The sampler's whole state is
 * (epoch, position), so a checkpoint stores two integers and resume rebuilds the rest.
 */
import { Rng, RngStream } from './rng.js';
import { internalError } from './errors.js';

export interface SamplerState {
  /** 0-based epoch. */
  epoch: number;
  /** Index into the epoch's order of the next sample to hand out. */
  position: number;
}

export interface SamplerOptions {
  readonly count: number;
  readonly batch: number;
  readonly seed: number;
  readonly shuffle: boolean;
}

/** The order of epoch `epoch`: indices 0..count-1. */
export function epochOrder(opts: SamplerOptions, epoch: number, out: Uint32Array = new Uint32Array(opts.count)): Uint32Array {
  for (let i = 0; i < opts.count; i++) out[i] = i;
  if (!opts.shuffle) return out;
  const rng = new Rng(opts.seed, RngStream.shuffleBase + epoch);
  for (let i = opts.count - 1; i > 0; i--) {
    const j = rng.nextBelow(i + 1);
    const t = out[i];
    out[i] = out[j];
    out[j] = t;
  }
  return out;
}

/** Batches in an epoch (the last may be short). */
export function batchesPerEpoch(count: number, batch: number): number {
  return Math.ceil(count / batch);
}

export class Sampler {
  private readonly order: Uint32Array;
  private orderEpoch = -1;
  private st: SamplerState;

  constructor(private readonly opts: SamplerOptions, state: SamplerState = { epoch: 0, position: 0 }) {
    if (!Number.isInteger(opts.count) || opts.count < 1) throw internalError(`sampler: dataset has ${opts.count} samples`);
    if (!Number.isInteger(opts.batch) || opts.batch < 1) throw internalError(`sampler: batch size must be a positive integer, got ${opts.batch}`);
    if (state.position < 0 || state.position >= opts.count) throw internalError(`sampler: position ${state.position} outside the epoch`);
    this.order = new Uint32Array(opts.count);
    this.st = { ...state };
  }

  get state(): SamplerState {
    return { ...this.st };
  }

  /**
   * The sample indices of the next batch (a view, valid until the next call) and the epoch it
   * belongs to; advances the state, rolling over into the next epoch after the last batch.
   */
  next(): { epoch: number; indices: Uint32Array } {
    const { epoch, position } = this.st;
    if (this.orderEpoch !== epoch) {
      epochOrder(this.opts, epoch, this.order);
      this.orderEpoch = epoch;
    }
    const end = Math.min(position + this.opts.batch, this.opts.count);
    const indices = this.order.subarray(position, end);
    this.st = end >= this.opts.count ? { epoch: epoch + 1, position: 0 } : { epoch, position: end };
    return { epoch, indices };
  }
}
