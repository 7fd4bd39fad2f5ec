/**
 * Training settings shared by `gradhub train` and `gradhub coordinator` (DESIGN "Contracts").
 * `bitSettings` are the ones that fix the bits of every step: a checkpoint records them and a
 * resume with different values is refused. epochs/steps only say when to stop.
 */
import type { SgdOptions } from '@gradhub/core';

export interface TrainSettings extends SgdOptions {
  readonly sizes: readonly number[];
  readonly batch: number;
  readonly chunk: number;
  readonly seed: number;
  readonly shuffle: boolean;
  readonly normalize: boolean;
  readonly epochs: number;
  /** Stop after this many updates (null: run all epochs). Whichever ends first. */
  readonly steps: number | null;
}

/** The settings that fix the bits, as stored in a checkpoint (plain JSON-able values). */
export function bitSettings(s: TrainSettings): Record<string, unknown> {
  return {
    model: s.sizes.join(','),
    batch: s.batch,
    chunk: s.chunk,
    seed: s.seed,
    shuffle: s.shuffle,
    normalize: s.normalize,
    lr: s.lr,
    momentum: s.momentum,
    dampening: s.dampening,
    weight_decay: s.weightDecay,
    nesterov: s.nesterov,
  };
}

/** What a run is, for people and files: the bitSettings, then when it stops (epochs, steps: null for no limit). */
export function runSettings(s: TrainSettings): Record<string, unknown> {
  return { ...bitSettings(s), epochs: s.epochs, steps: s.steps };
}
