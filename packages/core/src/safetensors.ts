/**
 * safetensors, F32 only, bytes only (no I/O): the model export format PyTorch loads with
 * `safetensors.torch.load_file` (docs/design.md "Contracts: Export").
 *
 * Layout (huggingface/safetensors): u64 little-endian N, then N bytes of UTF-8 JSON header, then the
 * data buffer. The header maps each tensor name to {"dtype","shape","data_offsets":[begin,end]}
 * (byte offsets into the data buffer), plus an optional "__metadata__" string->string map. Like the
 * official writer, the header is padded with spaces so that N, and so the data start, is a multiple
 * of 8. Tensor data are little-endian float32, row-major.
 *
 * Encoding is deterministic: keys in the order given (metadata first, then tensors in array order,
 * data packed in that order), no whitespace, so equal inputs give equal bytes. Decoding validates
 * everything the official reader does (header inside the file, JSON, offsets tiling the data buffer
 * exactly with no gap or overlap, byte sizes matching shapes) and reads only F32.
 */
import { ErrorCode, GradhubError, internalError } from './errors.js';
import { namedViews, tensorEntries, type ModelSpec } from './model.js';

/** A tensor to write: shape and float32 data (row-major, length = product of shape). */
export interface SafetensorsTensor {
  readonly name: string;
  readonly shape: readonly number[];
  readonly data: Float32Array;
}

/** A tensor read back: its own copy of the data (aligned, independent of the file's bytes). */
export interface DecodedTensor {
  readonly shape: number[];
  readonly data: Float32Array;
}

/** The official reader's header size limit. */
const MAX_HEADER_BYTES = 100_000_000;
const METADATA_KEY = '__metadata__';
const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Encode tensors (in the given order) and optional string metadata into a safetensors file. */
export function encodeSafetensors(
  tensors: readonly SafetensorsTensor[],
  metadata?: Readonly<Record<string, string>>,
): Uint8Array {
  const parts: string[] = [];
  if (metadata !== undefined) {
    const kv: string[] = [];
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== 'string') throw new TypeError(`safetensors metadata "${k}" must be a string, got ${typeof v}`);
      kv.push(`${JSON.stringify(k)}:${JSON.stringify(v)}`);
    }
    parts.push(`${JSON.stringify(METADATA_KEY)}:{${kv.join(',')}}`);
  }
  const seen = new Set<string>();
  let offset = 0;
  for (const t of tensors) {
    if (t.name === METADATA_KEY || t.name.length === 0) throw internalError(`invalid safetensors tensor name "${t.name}"`);
    if (seen.has(t.name)) throw internalError(`duplicate safetensors tensor name "${t.name}"`);
    seen.add(t.name);
    const numel = shapeSize(t.shape);
    if (numel === null) throw internalError(`tensor "${t.name}": shape [${t.shape.join(', ')}] is not a list of non-negative integers`);
    if (numel !== t.data.length) throw internalError(`tensor "${t.name}": shape [${t.shape.join(', ')}] holds ${numel} values, data has ${t.data.length}`);
    const end = offset + 4 * numel;
    parts.push(`${JSON.stringify(t.name)}:{"dtype":"F32","shape":[${t.shape.join(',')}],"data_offsets":[${offset},${end}]}`);
    offset = end;
  }
  const json = new TextEncoder().encode(`{${parts.join(',')}}`);
  const headerLen = Math.ceil(json.length / 8) * 8;
  const out = new Uint8Array(8 + headerLen + offset);
  const view = new DataView(out.buffer);
  view.setUint32(0, headerLen, true);
  view.setUint32(4, 0, true);
  out.set(json, 8);
  out.fill(0x20, 8 + json.length, 8 + headerLen);
  let at = 8 + headerLen;
  for (const t of tensors) {
    writeF32LE(out, at, t.data);
    at += 4 * t.data.length;
  }
  return out;
}

/** Decode a safetensors file into name -> tensor, in data-offset order. Throws E_SAFETENSORS_CORRUPT. */
export function decodeSafetensors(bytes: Uint8Array, fileName: string): Map<string, DecodedTensor> {
  return decodeSafetensorsWithMetadata(bytes, fileName).tensors;
}

/** As decodeSafetensors, also returning `__metadata__` (null when the file has none). */
export function decodeSafetensorsWithMetadata(
  bytes: Uint8Array,
  fileName: string,
): { tensors: Map<string, DecodedTensor>; metadata: Record<string, string> | null } {
  const fail = (what: string): never => {
    throw new GradhubError(
      ErrorCode.E_SAFETENSORS_CORRUPT,
      `${fileName}: not a valid safetensors file: ${what}. Re-export it (safetensors.torch.save_file or gradhub --export).`,
    );
  };
  if (bytes.length < 8) fail(`${bytes.length} bytes is shorter than the 8-byte header length`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const lo = view.getUint32(0, true);
  const hi = view.getUint32(4, true);
  const headerLen = hi * 2 ** 32 + lo;
  if (headerLen > bytes.length - 8) fail(`header length ${headerLen} is beyond the file's ${bytes.length} bytes (truncated file?)`);
  if (headerLen > MAX_HEADER_BYTES) fail(`header length ${headerLen} exceeds the ${MAX_HEADER_BYTES}-byte limit`);

  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, 8 + headerLen)));
  } catch (err) {
    fail(`header is not UTF-8 JSON (${(err as Error).message})`);
  }
  if (!isPlainObject(header)) fail('header is not a JSON object');
  const h = header as Record<string, unknown>;

  let metadata: Record<string, string> | null = null;
  const entries: { name: string; shape: number[]; begin: number; end: number }[] = [];
  for (const [name, value] of Object.entries(h)) {
    if (name === METADATA_KEY) {
      if (!isPlainObject(value)) fail('"__metadata__" is not an object');
      metadata = {};
      for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
        if (typeof v !== 'string') fail(`"__metadata__"."${k}" is not a string`);
        metadata[k] = v as string;
      }
      continue;
    }
    if (!isPlainObject(value)) fail(`entry "${name}" is not an object`);
    const e = value as Record<string, unknown>;
    if (typeof e.dtype !== 'string') fail(`tensor "${name}" has no dtype`);
    if (e.dtype !== 'F32') {
      fail(`tensor "${name}" has dtype ${String(e.dtype)}; gradhub reads only F32 (float32) tensors: convert with ` +
        `{k: v.float() for k, v in tensors.items()} before save_file`);
    }
    const shape = e.shape;
    if (!Array.isArray(shape) || shapeSize(shape) === null) fail(`tensor "${name}" has an invalid shape ${JSON.stringify(shape)}`);
    const off = e.data_offsets;
    if (!Array.isArray(off) || off.length !== 2 || !off.every((x) => Number.isSafeInteger(x) && x >= 0) || off[0] > off[1]) {
      fail(`tensor "${name}" has invalid data_offsets ${JSON.stringify(off)}`);
    }
    const [begin, end] = off as number[];
    const numel = shapeSize(shape as number[]) as number;
    if (end - begin !== 4 * numel) {
      fail(`tensor "${name}": data_offsets [${begin}, ${end}] span ${end - begin} bytes, shape [${(shape as number[]).join(', ')}] F32 needs ${4 * numel}`);
    }
    entries.push({ name, shape: [...(shape as number[])], begin, end });
  }

  // The offsets must tile the data buffer exactly: sorted by begin, each starts where the last ended.
  const dataStart = 8 + headerLen;
  const dataLen = bytes.length - dataStart;
  entries.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let expected = 0;
  for (const e of entries) {
    if (e.begin !== expected) {
      fail(e.begin < expected
        ? `tensor "${e.name}" data_offsets [${e.begin}, ${e.end}] overlap the previous tensor (ends at ${expected})`
        : `gap in the data buffer before tensor "${e.name}" (bytes ${expected}..${e.begin} unused)`);
    }
    if (e.end > dataLen) fail(`tensor "${e.name}" data_offsets [${e.begin}, ${e.end}] are beyond the ${dataLen}-byte data buffer (truncated file?)`);
    expected = e.end;
  }
  if (expected !== dataLen) fail(`the data buffer is ${dataLen} bytes but the tensors cover ${expected}`);

  const tensors = new Map<string, DecodedTensor>();
  for (const e of entries) tensors.set(e.name, { shape: e.shape, data: readF32LE(bytes, dataStart + e.begin, (e.end - e.begin) / 4) });
  return { tensors, metadata };
}

/** Export a flat parameter buffer of `spec`'s layout as `layers.{i}.weight` / `layers.{i}.bias`, layer order. */
export function paramsToSafetensors(spec: ModelSpec, flat: Float32Array, metadata?: Readonly<Record<string, string>>): Uint8Array {
  const views = namedViews(spec, flat);
  const tensors = tensorEntries(spec).map((t) => ({ name: t.name, shape: t.shape, data: views.get(t.name) as Float32Array }));
  return encodeSafetensors(tensors, metadata);
}

/**
 * Build a flat parameter buffer (spec.paramCount floats) from decoded tensors. Every tensor of the
 * model must be there with its exact shape and no other tensor may be: otherwise GradhubError
 * E_MODEL_MISMATCH naming the tensor, both shapes, and the --model the file would fit.
 */
export function safetensorsToParams(
  spec: ModelSpec,
  tensors: ReadonlyMap<string, DecodedTensor>,
  fileName = 'the safetensors file',
): Float32Array {
  const want = `--model ${spec.sizes.join(',')}`;
  const mismatch = (what: string): never => {
    const fit = inferModelSizes(tensors);
    throw new GradhubError(
      ErrorCode.E_MODEL_MISMATCH,
      `${fileName}: ${what}. ` +
        (fit !== null
          ? `The file fits --model ${fit.join(',')}: pass that, or a file exported from a ${want} model.`
          : `The file's tensors do not form a gradhub MLP (layers.{i}.weight [out, in] and layers.{i}.bias [out], i = 0, 1, ...).`),
    );
  };
  const flat = new Float32Array(spec.paramCount);
  const entries = tensorEntries(spec);
  for (const t of entries) {
    const got = tensors.get(t.name);
    if (got === undefined) mismatch(`has no tensor "${t.name}", which ${want} needs (shape [${t.shape.join(', ')}])`);
    const g = got as DecodedTensor;
    if (!sameShape(g.shape, t.shape)) {
      mismatch(`tensor "${t.name}" has shape [${g.shape.join(', ')}] in the file, ${want} needs [${t.shape.join(', ')}]`);
    }
    flat.set(g.data, t.offset);
  }
  const known = new Set(entries.map((t) => t.name));
  const extra = [...tensors.keys()].filter((n) => !known.has(n));
  if (extra.length > 0) mismatch(`tensors ${extra.map((n) => `"${n}"`).join(', ')} are not part of ${want}`);
  return flat;
}

/**
 * The model sizes [d0, d1, ..., dL] whose tensors are exactly these (layers.0..L-1, weight (d_{i+1}, d_i)
 * and bias (d_{i+1}) each, chained), or null when they are not a gradhub MLP.
 */
export function inferModelSizes(tensors: ReadonlyMap<string, { readonly shape: readonly number[] }>): number[] | null {
  const sizes: number[] = [];
  let i = 0;
  for (; tensors.has(`layers.${i}.weight`); i++) {
    const w = (tensors.get(`layers.${i}.weight`) as { shape: readonly number[] }).shape;
    const b = tensors.get(`layers.${i}.bias`)?.shape;
    if (w.length !== 2 || b === undefined || b.length !== 1 || b[0] !== w[0]) return null;
    if (i === 0) sizes.push(w[1]);
    else if (w[1] !== sizes[i]) return null;
    sizes.push(w[0]);
  }
  if (i === 0 || tensors.size !== 2 * i) return null;
  return sizes;
}

/** Product of a shape, or null when it is not a list of non-negative safe integers. */
function shapeSize(shape: readonly unknown[]): number | null {
  let n = 1;
  for (const d of shape) {
    if (typeof d !== 'number' || !Number.isSafeInteger(d) || d < 0) return null;
    n *= d;
  }
  return Number.isSafeInteger(n) ? n : null;
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, k) => d === b[k]);
}

function isPlainObject(v: unknown): boolean {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Write data's float32 values little-endian at out[at..]. */
function writeF32LE(out: Uint8Array, at: number, data: Float32Array): void {
  if (LITTLE_ENDIAN_HOST) {
    out.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), at);
    return;
  }
  const view = new DataView(out.buffer, out.byteOffset, out.byteLength);
  for (let k = 0; k < data.length; k++) view.setFloat32(at + 4 * k, data[k], true);
}

/** A fresh (aligned) Float32Array of n little-endian float32 values from bytes[at..]. */
function readF32LE(bytes: Uint8Array, at: number, n: number): Float32Array {
  if (LITTLE_ENDIAN_HOST) {
    // Copy into a fresh buffer (not bytes.slice: on a Node Buffer that is a view, not a copy).
    const copy = new Uint8Array(4 * n);
    copy.set(bytes.subarray(at, at + 4 * n));
    return new Float32Array(copy.buffer);
  }
  const out = new Float32Array(n);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let k = 0; k < n; k++) out[k] = view.getFloat32(at + 4 * k, true);
  return out;
}
