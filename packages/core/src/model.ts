/**
 * The MLP's shape and its one flat parameter buffer (docs/design.md "Invariant 2: one flat parameter buffer").
 *
 * sizes = [d0, d1, ..., dL]: L linear layers, layer i maps d_i -> d_{i+1}, ReLU between layers and
 * none after the last (raw logits). Parameters live in one Float32Array, layer by layer, in PyTorch's
 * layout and names (an nn.ModuleList called `layers`): `layers.{i}.weight` (d_{i+1}, d_i) row-major,
 * then `layers.{i}.bias` (d_{i+1}). Gradients use the same layout.
 */
import { internalError } from './errors.js';

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

/** Validate the sizes and lay the parameters out. Throws E_INTERNAL naming the problem. */
export function modelSpec(sizes: readonly number[]): ModelSpec {
  if (sizes.length < 2) throw internalError(`model needs at least two sizes (input, output), got [${sizes.join(',')}]`);
  for (const s of sizes) {
    if (!Number.isInteger(s) || s < 1 || s > 1 << 20) throw internalError(`model size ${s} is not an integer in [1, 2^20]`);
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
 * About the most floats in one streamed part (16 MiB): bigger layers go in several parts, as PyTorch
 * DDP's buckets (25 MiB by default). On a 2-core machine, 4, 16 MiB and whole layers measured the
 * same within noise for the default model, and 4 MiB parts 5-10% slower (more messages, more
 * contention); smaller parts overlap more where idle cores or a slow network leave room.
 */
export const STREAM_PART_FLOATS = 1 << 22;

/** One part of the flat buffer as it streams: rows [rowBegin, rowEnd) of layer `layer`'s weight (and, in the layer's last part, its whole bias). */
export interface StreamPart extends FlatRange {
  readonly layer: number;
  readonly rowBegin: number;
  readonly rowEnd: number;
}

/**
 * The parts in which gradients stream up and parameters down, in flat order: each layer's weight
 * rows cut into blocks of about STREAM_PART_FLOATS floats (as equal as possible, an even number of
 * rows where there is more than one block), the layer's bias riding with its last block, so every
 * part is one contiguous slice and the parts cover [0, paramCount). A worker computes a layer's
 * blocks in row order (its bias is complete with the last one) and sends each as soon as it is final.
 */
export function streamParts(spec: ModelSpec): StreamPart[] {
  const out: StreamPart[] = [];
  for (const l of spec.layers) {
    const blocks = Math.min(l.outF, Math.ceil((l.outF * l.inF) / STREAM_PART_FLOATS));
    // Even row counts (the kernels' tile height is 2) unless a block has a single row.
    const per = blocks === 1 ? l.outF : 2 * Math.ceil(l.outF / blocks / 2);
    for (let r = 0; r < l.outF; r += per) {
      const rowEnd = Math.min(l.outF, r + per);
      const offset = l.weightOffset + r * l.inF;
      const end = rowEnd === l.outF ? l.biasOffset + l.outF : l.weightOffset + rowEnd * l.inF;
      out.push({ layer: l.index, rowBegin: r, rowEnd, offset, length: end - offset });
    }
  }
  return out;
}

/** Parse "3072,2048,2048,10". */
export function parseSizes(text: string): number[] {
  const parts = text.split(',').map((s) => s.trim());
  const sizes = parts.map((p) => (/^\d+$/.test(p) ? Number(p) : Number.NaN));
  if (sizes.some((s) => !Number.isFinite(s))) throw internalError(`--model expects comma-separated integers like 3072,2048,2048,10, got "${text}"`);
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
  if (flat.length !== spec.paramCount) throw internalError(`flat buffer has ${flat.length} floats, model needs ${spec.paramCount}`);
  const m = new Map<string, Float32Array>();
  for (const t of tensorEntries(spec)) m.set(t.name, flat.subarray(t.offset, t.offset + t.length));
  return m;
}
