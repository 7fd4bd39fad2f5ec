/**
 * Packed tensors (TensorEncoding.PLANES_DEFLATE, docs/design.md "Packed tensors"): a lossless
 * encoding of float32 bytes for slow links. Runs in Node and in browsers: the deflate itself is
 * the caller's (`ByteCodec`; Node's zlib in packed-node.ts), this module only lays out the bytes.
 *
 * Layout of a packed tensor of n values (4n bytes little-endian):
 *   flags (1 byte: bit k set = plane k deflated), then 4 x uint32 LE: the stored bytes of planes 0..3,
 *   then planes 0..3 as stored. Plane k holds byte k of every value, in value order (n bytes).
 *
 * Why planes: the top byte of a float32 (sign and exponent) takes few values across a layer, and
 * the differences this encoding carries have long runs of zero bits: a pseudo-gradient
 * theta - local is an exact difference of nearby floats (its low mantissa bits are zero), and the
 * XOR of two versions of the parameters (`xor`) has its top bits zero wherever a value moved by
 * less than its own size. Deflate (run-length strategy) squeezes those planes and is fast on them; a
 * plane it does not shrink by PLANE_KEEP is stored raw, and a sample decides that before the whole
 * plane is deflated. Decoding is bounded: each plane must come out at exactly n bytes.
 */
import { joinPieces } from './codec.js';
import { ProtocolError, WireCode } from './faults.js';

/** Raw deflate and inflate (RFC 1951), as the platform offers them. */
export interface ByteCodec {
  /** Deflate `bytes` (fast, for runs). */
  deflate(bytes: Uint8Array): Uint8Array;
  /** Inflate `bytes`, which must come out at exactly `size` bytes (throw otherwise, never producing more). */
  inflate(bytes: Uint8Array, size: number): Uint8Array;
  /** `deflate` off the calling thread, when the platform can (packFloatsAsync). */
  deflateAsync?(bytes: Uint8Array): Promise<Uint8Array>;
}

/**
 * Whether a side packs its next tensor, in a session that packs: always (`below` 0), or while the
 * rate it measured on its link (bytes/s) is below `below`; `unmeasured` says what to do before it
 * has measured.
 */
export function packsNow(below: number, rate: number | null, unmeasured: boolean): boolean {
  if (below === 0) return true;
  return rate === null ? unmeasured : rate < below;
}

/** Bytes before the planes: flags and 4 stored lengths. */
export const PACKED_HEAD_BYTES = 17;
/** A plane is deflated only when that makes it at most this share of its size. */
const PLANE_KEEP = 0.9;
/** Bytes of a plane deflated first to decide whether the whole plane is worth deflating. */
const SAMPLE_BYTES = 1 << 16;

/**
 * Pack `values` (4n bytes, little-endian float32; `base`, when given, is XORed in first: same
 * length), or null when packing would not make it smaller than raw.
 */
export function packFloats(values: Uint8Array, codec: ByteCodec, base?: Uint8Array): Uint8Array | null {
  const { planes, n } = splitPlanes(values, base);
  return assemble(planes.map((p) => (worthDeflating(p, codec) ? codec.deflate(p) : null)), planes, n, values.byteLength);
}

/**
 * `packFloats` with the planes deflated off this thread, at once (`codec.deflateAsync`: Node's zlib
 * runs them on its thread pool): the event loop stays free to send what is ready meanwhile.
 */
export async function packFloatsAsync(values: Uint8Array, codec: ByteCodec, base?: Uint8Array): Promise<Uint8Array | null> {
  if (!codec.deflateAsync) return packFloats(values, codec, base);
  const { planes, n } = splitPlanes(values, base);
  const z = await Promise.all(planes.map((p) => (worthDeflating(p, codec) ? codec.deflateAsync!(p) : Promise.resolve(null))));
  return assemble(z, planes, n, values.byteLength);
}

/** The 4 byte planes of `values` (XORed with `base` when given), views of one buffer. */
function splitPlanes(values: Uint8Array, base?: Uint8Array): { planes: Uint8Array[]; n: number } {
  const total = values.byteLength;
  if (total % 4 !== 0) throw new RangeError(`packFloats: ${total} bytes is not a whole number of float32 values`);
  if (base && base.byteLength !== total) throw new RangeError(`packFloats: base of ${base.byteLength} bytes for ${total}`);
  const n = total / 4;
  const all = new Uint8Array(total);
  if (base) {
    for (let i = 0, j = 0; i < n; i++, j += 4) {
      all[i] = values[j] ^ base[j];
      all[n + i] = values[j + 1] ^ base[j + 1];
      all[2 * n + i] = values[j + 2] ^ base[j + 2];
      all[3 * n + i] = values[j + 3] ^ base[j + 3];
    }
  } else {
    for (let i = 0, j = 0; i < n; i++, j += 4) {
      all[i] = values[j];
      all[n + i] = values[j + 1];
      all[2 * n + i] = values[j + 2];
      all[3 * n + i] = values[j + 3];
    }
  }
  return { planes: [0, 1, 2, 3].map((k) => all.subarray(k * n, (k + 1) * n)), n };
}

/** A plane is worth deflating whole when it is small, or when its first SAMPLE_BYTES deflate well. */
function worthDeflating(plane: Uint8Array, codec: ByteCodec): boolean {
  return plane.byteLength <= SAMPLE_BYTES || codec.deflate(plane.subarray(0, SAMPLE_BYTES)).byteLength <= PLANE_KEEP * SAMPLE_BYTES;
}

/** The packed bytes from each plane's deflated form (null: not tried), or null when not smaller than `total`. */
function assemble(deflated: readonly (Uint8Array | null)[], planes: readonly Uint8Array[], n: number, total: number): Uint8Array | null {
  let flags = 0;
  let size = PACKED_HEAD_BYTES;
  const stored = planes.map((plane, k) => {
    const z = deflated[k];
    if (z && z.byteLength <= PLANE_KEEP * n) {
      flags |= 1 << k;
      size += z.byteLength;
      return z;
    }
    size += plane.byteLength;
    return plane;
  });
  if (size >= total) return null;
  const out = new Uint8Array(size);
  const view = new DataView(out.buffer);
  out[0] = flags;
  let at = PACKED_HEAD_BYTES;
  for (let k = 0; k < 4; k++) {
    view.setUint32(1 + 4 * k, stored[k].byteLength, true);
    out.set(stored[k], at);
    at += stored[k].byteLength;
  }
  return out;
}

/**
 * Decode a packed tensor of `n` values (`pieces`: its bytes, in one or more pieces) into `dst`
 * (4n bytes): written, or XORed into what `dst` holds when `xor`. Throws ProtocolError
 * (`code`, default BAD_GRADIENT_LENGTH) when the bytes are not a packed tensor of n values;
 * `dst` is then unchanged.
 */
export function unpackFloats(pieces: readonly Uint8Array[], n: number, codec: ByteCodec, dst: Uint8Array, xor: boolean, code: WireCode = WireCode.BAD_GRADIENT_LENGTH): void {
  if (dst.byteLength !== 4 * n) throw new RangeError(`unpackFloats: destination of ${dst.byteLength} bytes for ${n} values`);
  const bytes = pieces.length === 1 ? pieces[0] : joinPieces(pieces);
  const bad = (why: string): ProtocolError => new ProtocolError(code, `packed tensor of ${n} values: ${why}`);
  if (bytes.byteLength < PACKED_HEAD_BYTES) throw bad(`${bytes.byteLength} bytes, shorter than its head`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const flags = bytes[0];
  if (flags > 15) throw bad(`flags ${flags}`);
  const planes: Uint8Array[] = [];
  let at = PACKED_HEAD_BYTES;
  for (let k = 0; k < 4; k++) {
    const len = view.getUint32(1 + 4 * k, true);
    if (at + len > bytes.byteLength) throw bad(`plane ${k} of ${len} bytes overruns the ${bytes.byteLength} bytes`);
    const stored = bytes.subarray(at, at + len);
    at += len;
    if (flags & (1 << k)) {
      let plane: Uint8Array;
      try {
        plane = codec.inflate(stored, n);
      } catch (err) {
        throw bad(`plane ${k} does not inflate to ${n} bytes (${(err as Error).message})`);
      }
      if (plane.byteLength !== n) throw bad(`plane ${k} inflates to ${plane.byteLength} bytes, not ${n}`);
      planes.push(plane);
    } else {
      if (len !== n) throw bad(`raw plane ${k} of ${len} bytes, not ${n}`);
      planes.push(stored);
    }
  }
  if (at !== bytes.byteLength) throw bad(`${bytes.byteLength - at} bytes after the planes`);
  const [p0, p1, p2, p3] = planes;
  if (xor) {
    for (let i = 0, j = 0; i < n; i++, j += 4) {
      dst[j] ^= p0[i];
      dst[j + 1] ^= p1[i];
      dst[j + 2] ^= p2[i];
      dst[j + 3] ^= p3[i];
    }
  } else {
    for (let i = 0, j = 0; i < n; i++, j += 4) {
      dst[j] = p0[i];
      dst[j + 1] = p1[i];
      dst[j + 2] = p2[i];
      dst[j + 3] = p3[i];
    }
  }
}
