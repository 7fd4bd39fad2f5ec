/**
 * Wire frames (proto/gradhub.proto), coordinator side: which frames it takes from a worker, the
 * Params frame encoded once per version, and the Work frame (the limits and the error are
 * @gradhub/proto's).
 *
 * Contract: `decodeMessage` (or `decodeFrame`) is the only way a worker's bytes enter the
 * coordinator. The checks are @gradhub/proto's codec (size bounded before parsing, the limits
 * following the model: proto's `frameLimits`; protocol version; a body of a kind this side accepts
 * from a worker; small frames for kinds that carry no tensor; a streamed Result's gradient handed
 * on as its fragments, never joined). A fault throws proto's `ProtocolError` whose `wireCode` is the
 * proto `ErrorCode` to answer with and whose `closeCode` (4000 + wireCode) closes the socket.
 * Field-level checks that need run state (step, node, gradient length, finiteness) belong to the
 * reducer and membership.
 *
 * Encoding: one `Envelope` per frame, `protocol_version` always set. A version's parameters go out
 * as one Params message per stream part (core `streamParts`), each encoded once and sent as the
 * same bytes to every worker (`ParamsEncoder`), as the Envelope up to the parameters
 * (`paramsHeader`, one fragment) followed by the parameter bytes in fragments of at most
 * `FRAGMENT_BYTES`, so that neither side allocates, faults in and copies a model-sized buffer per
 * message: fragments of a few hundred KiB come from memory the allocator reuses. To a worker whose
 * session packs tensors and which holds the previous version, a part goes packed as the XOR with
 * that version (`ParamsEncoder.packedFrame`, docs/design.md "Packed tensors"), also encoded once.
 */
import {
  decodeFrame as decodeFrameAs, decodeMessage as decodeMessageAs, encode, fragments, gradhub, packFloatsAsync, paramsHeader,
  type BodyKind, type ByteCodec, type Decoded, type DecodedMessage,
} from '@gradhub/proto';
import { CIFAR_PIXELS, leafSamples, xxh64, type FlatRange, type LeafShape, type TreeNode, internalError } from '@gradhub/core';
import type { RequestMode, RoundInput } from './executor.js';

export {
  FRAGMENT_BYTES, FRAME_SLACK_BYTES, FROM_WORKER, PROTOCOL_VERSION, ProtocolError, SMALL_FRAME_BYTES, WireCode,
  closeCodeFor, encode, fragments, frameLimits, splitTrailingBytes,
} from '@gradhub/proto';
export type { Body, BodyKind, BodyOf, Decoded, DecodedMessage, FrameLimits } from '@gradhub/proto';

/** Bytes of a Result frame besides the gradient (header and sums), and of a Work frame besides pixels and labels, about (cost estimates). */
export const RESULT_OVERHEAD_BYTES = 64;

/**
 * Decode and validate one frame (see the module comment). `maxFrameBytes` bounds the frame;
 * `accept` lists the body kinds this side takes (FROM_WORKER). Throws ProtocolError.
 */
export function decodeFrame(frame: Uint8Array, maxFrameBytes: number, accept: readonly BodyKind[]): Decoded {
  return decodeFrameAs(frame, maxFrameBytes, accept, 'coordinator');
}

/**
 * Decode and validate one message given as its fragments (ws `binaryType: 'fragments'`): the
 * same checks as `decodeFrame`, without joining a streamed Result's gradient (`tail`). Throws
 * ProtocolError.
 */
export function decodeMessage(pieces: readonly Uint8Array[], maxFrameBytes: number, accept: readonly BodyKind[]): DecodedMessage {
  return decodeMessageAs(pieces, maxFrameBytes, accept, 'coordinator');
}

/** The Params message of one stream part of one version: encoded once, the same bytes for every worker. */
export interface ParamsPartFrame {
  readonly version: number;
  /** Index of the part in the encoder's layout. */
  readonly index: number;
  readonly range: FlatRange;
  /** xxHash64 of the part's parameter bytes, 8 bytes big-endian. */
  readonly checksum: Uint8Array;
  /** The message as fragments: the Envelope up to `data`, then the part's bytes (views of `snapshot`). */
  readonly parts: readonly Uint8Array[];
  /** Bytes of the message. */
  readonly byteLength: number;
  /** The copy of the parameters the parts view; `sends` counts sends not yet written (`ParamsEncoder`). */
  readonly snapshot: ParamsSnapshot;
}

export interface ParamsSnapshot {
  readonly data: Float32Array;
  /** Sends of frames viewing `data` still in progress: while > 0, `data` is not overwritten. */
  sends: number;
}

/** Hash part `range` of `params` and build its Params message over `snapshot` (which receives a copy of that slice). */
export function encodeParamsPart(version: number, index: number, range: FlatRange, params: Float32Array, snapshot: ParamsSnapshot): ParamsPartFrame {
  if (snapshot.data.length !== params.length) throw internalError(`encodeParamsPart: snapshot of ${snapshot.data.length} floats for ${params.length}`);
  if (range.offset < 0 || range.length < 0 || range.offset + range.length > params.length) throw internalError(`encodeParamsPart: part [${range.offset}, +${range.length}) outside ${params.length} floats`);
  const slice = snapshot.data.subarray(range.offset, range.offset + range.length);
  slice.set(params.subarray(range.offset, range.offset + range.length));
  const checksum = xxh64(slice);
  const data = new Uint8Array(slice.buffer, slice.byteOffset, slice.byteLength);
  const header = paramsHeader(version, checksum, range);
  return { version, index, range, checksum, parts: [header, ...fragments(data)], byteLength: header.byteLength + data.byteLength, snapshot };
}

/**
 * The Params messages of successive versions, one per part of `layout` (the model's stream
 * parts), each encoded once, when its part is final (`encodePart`, as soon as the optimizer has updated that
 * part) or when a request needs the whole version (`encodeAll`). All parts of a version are
 * copied into one snapshot, which is overwritten only once no send of an earlier message over it is
 * in progress (`snapshot.sends`, counted by the sender), so a slow socket never sends torn
 * parameters, and a step allocates nothing once two snapshots exist (the current version's and the
 * previous one's). The previous version's messages stay available (`frames`): while the next
 * version streams out part by part, a node of the previous request may still be reassigned to a
 * worker that needs them. Snapshots still being sent when a third is needed are left to the
 * garbage collector rather than kept. Versions only go forward.
 */
interface EncodedVersion {
  readonly version: number;
  readonly snapshot: ParamsSnapshot;
  readonly frames: (ParamsPartFrame | null)[];
  /** Per part: its packed frame against the previous version (`packedFrame`; null inside: packing did not make it smaller). */
  readonly packed: (Promise<ParamsPartFrame | null> | null)[];
}

export class ParamsEncoder {
  private readonly layout: readonly FlatRange[];
  private readonly snapshots: ParamsSnapshot[] = [];
  private current: EncodedVersion | null = null;
  /** The version before `current`, complete: a node of it reassigned while `current` streams out still needs it. */
  private previous: EncodedVersion | null = null;

  /** Bytes of a whole version's messages (every part), about: for cost estimates. */
  readonly versionBytes: number;

  constructor(layout: readonly FlatRange[]) {
    this.layout = layout;
    let n = 0;
    for (const r of layout) n += 4 * r.length + 64;
    this.versionBytes = n;
  }

  /** The version being encoded (or last encoded), or null. */
  get version(): number | null {
    return this.current?.version ?? null;
  }

  /** The frame of part `index` of `version` if encoded (the current or the previous version), else null. */
  frame(version: number, index: number): ParamsPartFrame | null {
    if (this.current?.version === version) return this.current.frames[index];
    return this.previous?.version === version ? this.previous.frames[index] : null;
  }

  /** Every part of `version` if all are encoded (the current or the previous version), else null. */
  frames(version: number): readonly ParamsPartFrame[] | null {
    const v = this.current?.version === version ? this.current : this.previous?.version === version ? this.previous : null;
    return v && v.frames.every((f) => f !== null) ? (v.frames as ParamsPartFrame[]) : null;
  }

  /** Encode part `index` of `version` from `params` (once; a later call returns the same frame). */
  encodePart(version: number, params: Float32Array, index: number): ParamsPartFrame {
    const cur = this.open(version, params.length);
    const have = cur.frames[index];
    if (have) return have;
    const range = this.layout[index];
    if (!range) throw internalError(`ParamsEncoder: no part ${index} (the model has ${this.layout.length})`);
    const f = encodeParamsPart(version, index, range, params, cur.snapshot);
    cur.frames[index] = f;
    return f;
  }

  /** The version before the current one while it is kept complete (the base packed frames XOR against), or null. */
  get previousVersion(): number | null {
    return this.previous?.version ?? null;
  }

  /**
   * Part `index` of the current version packed as the XOR with the previous version
   * (TensorEncoding.PLANES_DEFLATE, Params.delta), for a worker that holds that whole previous
   * version: encoded once (the planes are cut from the snapshots now, deflated on the thread pool),
   * the same bytes for every such worker. Null when the part is not encoded yet, `base` is not the
   * previous version, or packing would not make the part smaller. Its bytes are its own (not a
   * view of a snapshot).
   */
  packedFrame(version: number, index: number, base: number, codec: ByteCodec): Promise<ParamsPartFrame | null> {
    const cur = this.current;
    const prev = this.previous;
    const raw = cur?.version === version ? cur.frames[index] : null;
    if (!cur || !raw || !prev || prev.version !== base) return Promise.resolve(null);
    const have = cur.packed[index];
    if (have) return have;
    const { offset, length } = raw.range;
    const bytesOf = (f: Float32Array): Uint8Array => new Uint8Array(f.buffer, f.byteOffset + 4 * offset, 4 * length);
    const made = packFloatsAsync(bytesOf(cur.snapshot.data), codec, bytesOf(prev.snapshot.data)).then((data): ParamsPartFrame | null => {
      if (!data) return null;
      const header = paramsHeader(version, raw.checksum, raw.range, { bytes: data.byteLength, base });
      return { ...raw, parts: [header, ...fragments(data)], byteLength: header.byteLength + data.byteLength, snapshot: { data: new Float32Array(0), sends: 0 } };
    });
    cur.packed[index] = made;
    return made;
  }

  /** Every part of `version` (encoding those not encoded yet), in part order. */
  encodeAll(version: number, params: Float32Array): readonly ParamsPartFrame[] {
    return this.layout.map((_, i) => this.encodePart(version, params, i));
  }

  private open(version: number, floats: number): EncodedVersion {
    const cur = this.current;
    if (cur?.version === version) return cur;
    if (cur && version < cur.version) throw internalError(`ParamsEncoder: version ${version} after ${cur.version}: versions never go back`);
    // The current version becomes the previous one (kept while complete: its snapshot is not reused now).
    this.previous = cur && cur.frames.every((f) => f !== null) ? cur : null;
    const inUse = cur?.snapshot;
    let snap = this.snapshots.find((s) => s !== inUse && s.sends === 0 && s.data.length === floats);
    if (!snap) {
      // Keep the current one and at most one other: busy or mis-sized ones are dropped.
      for (let i = this.snapshots.length - 1; i >= 0; i--) if (this.snapshots[i] !== inUse) this.snapshots.splice(i, 1);
      snap = { data: new Float32Array(floats), sends: 0 };
      this.snapshots.push(snap);
    }
    this.current = { version, snapshot: snap, frames: this.layout.map(() => null), packed: this.layout.map(() => null) };
    return this.current;
  }
}

/** The request a Work frame belongs to. */
export interface WorkHeader {
  readonly seq: number;
  readonly step: number;
  readonly version: number;
  readonly mode: RequestMode;
  /** Samples in the batch, and per chunk. */
  readonly batch: number;
  readonly chunk: number;
  /** 'round' only: the round's shape (its leaves are replicas). */
  readonly round?: RoundInput;
}

/** The leaves of a request's tree: chunks of its batch, or a round's replicas. */
export function leafShapeOf(h: WorkHeader): LeafShape {
  return { batch: h.batch, chunk: h.chunk, offsets: h.round?.offsets ?? null };
}

const MODES = { train: gradhub.Mode.TRAIN, eval: gradhub.Mode.EVAL, round: gradhub.Mode.ROUND } as const;

/**
 * One Work frame with `nodes` (sorted left to right) and their samples' pixels and labels (uint8,
 * views of the batch's `pixels` [batch x CIFAR_PIXELS] and `labels` [batch]; nodes contiguous with
 * the previous one widen the same view, so a contiguous range is not copied before encoding).
 */
export function encodeWork(
  h: WorkHeader, nodes: readonly TreeNode[], pixels: Uint8Array, labels: Uint8Array,
  /** Audit Work (Work.audit, remote-audit.ts): the slices of the node's gradient to hash. */
  audit?: readonly { readonly offset: number; readonly length: number }[],
): { frame: Uint8Array; nodes: TreeNode[]; samples: number } {
  const sorted = [...nodes].sort((x, y) => x.lo - y.lo);
  const wire: gradhub.IWorkNode[] = [];
  const pix: Uint8Array[] = [];
  const lab: Uint8Array[] = [];
  let total = 0;
  const shape = leafShapeOf(h);
  const r = h.round;
  const inner: number[] = [];
  for (const n of sorted) {
    const { start, end } = leafSamples(n, shape);
    if (r) for (let i = n.lo * r.localSteps; i < n.hi * r.localSteps; i++) inner.push(r.innerBatches[i]);
    wire.push({ lo: n.lo, hi: n.hi, sampleStart: start, sampleCount: end - start });
    const last = pix.length - 1;
    const prev = last >= 0 ? wire[wire.length - 2] : null;
    if (prev && prev.sampleStart! + prev.sampleCount! === start) {
      // Contiguous with the previous node: widen the same view (no copy).
      const p0 = pix[last], l0 = lab[last];
      pix[last] = new Uint8Array(p0.buffer, p0.byteOffset, p0.byteLength + (end - start) * CIFAR_PIXELS);
      lab[last] = new Uint8Array(l0.buffer, l0.byteOffset, l0.byteLength + (end - start));
    } else {
      pix.push(pixels.subarray(start * CIFAR_PIXELS, end * CIFAR_PIXELS));
      lab.push(labels.subarray(start, end));
    }
    total += end - start;
  }
  const frame = encode({
    work: {
      seq: h.seq, step: h.step, version: h.version,
      mode: MODES[h.mode],
      nodes: wire,
      pixels: pix.length === 1 ? pix[0] : Buffer.concat(pix),
      labels: lab.length === 1 ? lab[0] : Buffer.concat(lab),
      batch: h.batch,
      round: r ? {
        localSteps: r.localSteps, lr: r.sgd.lr, momentum: r.sgd.momentum, dampening: r.sgd.dampening, weightDecay: r.sgd.weightDecay,
        nesterov: r.sgd.nesterov, maximize: r.sgd.maximize ?? false, innerBatches: inner,
      } : null,
      ...(audit ? { audit: true, auditParts: audit.map(({ offset, length }) => ({ offset, length })) } : {}),
    },
  });
  return { frame, nodes: sorted, samples: total };
}
