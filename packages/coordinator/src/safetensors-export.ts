/**
 * The safetensors export of a model (`gradhub train --export`, `gradhub export`): the tensors
 * `layers.{i}.weight` / `layers.{i}.bias` (core paramsToSafetensors) and a `__metadata__` that says
 * what a PyTorch user needs to run the model and nothing that differs between two identical runs.
 *
 *   format                   "pt"
 *   gradhub_model            the layer sizes, e.g. "3072,2048,2048,10"
 *   gradhub_normalize_mean   only for a run with --normalize: the per-channel (R,G,B) mean the inputs
 *   gradhub_normalize_std    were normalised with, after bytes / 255: x = (x - mean[c]) / std[c]
 *                            (core CIFAR10_MEAN / CIFAR10_STD, comma-separated as JavaScript prints them)
 *
 * A run without --normalize gives the same bytes as before these keys existed (a test pins a hash).
 */
import { CIFAR10_MEAN, CIFAR10_STD, paramsToSafetensors, type ModelSpec } from '@gradhub/core';

/** The `__metadata__` of an export (see the module's contract). */
export function safetensorsMetadata(spec: ModelSpec, normalize: boolean): Record<string, string> {
  const meta: Record<string, string> = { format: 'pt', gradhub_model: spec.sizes.join(',') };
  if (normalize) {
    meta.gradhub_normalize_mean = CIFAR10_MEAN.join(',');
    meta.gradhub_normalize_std = CIFAR10_STD.join(',');
  }
  return meta;
}

/** The safetensors bytes of `params` (spec's flat layout), with the export's metadata. */
export function modelToSafetensors(spec: ModelSpec, params: Float32Array, o: { readonly normalize: boolean }): Uint8Array {
  return paramsToSafetensors(spec, params, safetensorsMetadata(spec, o.normalize));
}
