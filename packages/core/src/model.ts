/**
 * The MLP's shape and its one flat parameter buffer (DESIGN invariant 2).
 *
 * sizes = [d0, d1, ..., dL]: L linear layers, layer i maps d_i -> d_{i+1}, ReLU between layers and
 * none after the last (raw logits). Parameters live in one Float32Array, layer by layer, in PyTorch's
 * layout and names (an nn.ModuleList called `layers`): `layers.{i}.weight` (d_{i+1}, d_i) row-major,
 * then `layers.{i}.bias` (d_{i+1}). Gradients use the same layout.
 */

export interface LayerLayout {
  readonly index: number;
  readonly inF: number;
  readonly outF: number;
  /** Offset (in floats) of `layers.{i}.weight` in the flat buffer. */
  readonly weightOffset: number;
  /** Offset (in floats) of `layers.{i}.bias`. */
  readonly biasOffset: number;
}

export interface ModelSpec {
  readonly sizes: readonly number[];
  readonly layers: readonly LayerLayout[];
  /** Total number of parameters (floats in the flat buffer). */
  readonly paramCount: number;
}

export const DEFAULT_SIZES: readonly number[] = [3072, 2048, 2048, 10];

/** Validate the sizes and lay the parameters out. Throws a RangeError naming the problem. */
export function modelSpec(sizes: readonly number[]): ModelSpec {
  if (sizes.length < 2) throw new RangeError(`model needs at least two sizes (input, output), got [${sizes.join(',')}]`);
  for (const s of sizes) {
    if (!Number.isInteger(s) || s < 1 || s > 1 << 20) throw new RangeError(`model size ${s} is not an integer in [1, 2^20]`);
  }
  const layers: LayerLayout[] = [];
  let off = 0;
  for (let i = 0; i + 1 < sizes.length; i++) {
    const inF = sizes[i];
    const outF = sizes[i + 1];
    layers.push({ index: i, inF, outF, weightOffset: off, biasOffset: off + inF * outF });
    off += inF * outF + outF;
  }
  return { sizes: [...sizes], layers, paramCount: off };
}

/** A slice [offset, offset + length) of the flat buffer, in floats. */
export interface FlatRange {
  readonly offset: number;
  readonly length: number;
}

/**
 * Each layer's slice of the flat buffer (its weight, then its bias), in layer order: contiguous,
 * covering [0, paramCount). The unit in which gradients stream up and parameters down.
 */
export function layerRanges(spec: ModelSpec): FlatRange[] {
  return spec.layers.map((l) => ({ offset: l.weightOffset, length: l.biasOffset + l.outF - l.weightOffset }));
}

/** Parse "3072,2048,2048,10". */
export function parseSizes(text: string): number[] {
  const parts = text.split(',').map((s) => s.trim());
  const sizes = parts.map((p) => (/^\d+$/.test(p) ? Number(p) : Number.NaN));
  if (sizes.some((s) => !Number.isFinite(s))) throw new RangeError(`--model expects comma-separated integers like 3072,2048,2048,10, got "${text}"`);
  return sizes;
}

/** The tensors of the flat buffer, in order, with their PyTorch names and shapes. */
export function tensorEntries(spec: ModelSpec): { name: string; shape: number[]; offset: number; length: number }[] {
  const out: { name: string; shape: number[]; offset: number; length: number }[] = [];
  for (const l of spec.layers) {
    out.push({ name: `layers.${l.index}.weight`, shape: [l.outF, l.inF], offset: l.weightOffset, length: l.outF * l.inF });
    out.push({ name: `layers.${l.index}.bias`, shape: [l.outF], offset: l.biasOffset, length: l.outF });
  }
  return out;
}

/** Named views (subarray, no copy) into a flat buffer of `spec`'s layout. */
export function namedViews(spec: ModelSpec, flat: Float32Array): Map<string, Float32Array> {
  if (flat.length !== spec.paramCount) throw new RangeError(`flat buffer has ${flat.length} floats, model needs ${spec.paramCount}`);
  const m = new Map<string, Float32Array>();
  for (const t of tensorEntries(spec)) m.set(t.name, flat.subarray(t.offset, t.offset + t.length));
  return m;
}
