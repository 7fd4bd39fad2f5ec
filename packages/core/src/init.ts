/**
 * Parameter initialisation as nn.Linear's default: weight and bias ~ U(-1/sqrt(in), 1/sqrt(in)),
 * drawn from gradhub's generator (rng.ts, stream `init`) in buffer order: layers.0.weight row by
 * row, layers.0.bias, layers.1.weight, ... The distribution is PyTorch's; the numbers are not
 * (use --init-from to start from PyTorch's own weights).
 */
import type { ModelSpec } from './model.js';
import { Rng, RngStream } from './rng.js';
import { internalError } from './errors.js';

export function initParams(spec: ModelSpec, seed: number, out: Float32Array): void {
  if (out.length !== spec.paramCount) throw internalError(`initParams: buffer has ${out.length} floats, model needs ${spec.paramCount}`);
  const rng = new Rng(seed, RngStream.init);
  for (const l of spec.layers) {
    const bound = 1 / Math.sqrt(l.inF);
    const end = l.biasOffset + l.outF;
    for (let i = l.weightOffset; i < end; i++) out[i] = (2 * rng.nextFloat() - 1) * bound;
  }
}
