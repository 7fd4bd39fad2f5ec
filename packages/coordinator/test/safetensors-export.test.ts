/**
 * The safetensors export: a run without --normalize gives the very bytes it gave before the
 * normalisation keys existed (the hash below was taken from the export code before they were
 * added), and a run with --normalize records the mean and std the inputs were normalised with.
 */
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { CIFAR10_MEAN, CIFAR10_STD, decodeSafetensorsWithMetadata, initParams, modelSpec, safetensorsToParams } from '@gradhub/core';
import { modelToSafetensors } from '../src/safetensors-export.js';

const spec = modelSpec([3072, 24, 10]);
const params = new Float32Array(spec.paramCount);
initParams(spec, 5, params);

describe('modelToSafetensors', () => {
  it('without --normalize: byte-identical to the export before the normalisation keys', () => {
    const bytes = modelToSafetensors(spec, params, { normalize: false });
    expect(bytes.length).toBe(296392);
    expect(createHash('sha256').update(bytes).digest('hex')).toBe('70db874f0ebeb543dad821aef11359c1ddc9351367a172f9b574c3d3a2accd1a');
  });

  it('with --normalize: the per-channel mean and std the core uses, as strings, and the same tensors', () => {
    const bytes = modelToSafetensors(spec, params, { normalize: true });
    const { tensors, metadata } = decodeSafetensorsWithMetadata(bytes, 'x');
    expect(metadata).toEqual({
      format: 'pt', gradhub_model: '3072,24,10', gradhub_normalize_mean: '0.4914,0.4822,0.4465', gradhub_normalize_std: '0.247,0.2435,0.2616',
    });
    expect(metadata!.gradhub_normalize_mean.split(',').map(Number)).toEqual([...CIFAR10_MEAN]);
    expect(metadata!.gradhub_normalize_std.split(',').map(Number)).toEqual([...CIFAR10_STD]);
    expect(Buffer.from(safetensorsToParams(spec, tensors, 'x').buffer).equals(Buffer.from(params.buffer))).toBe(true);
  });
});
