/**
 * Wire frames (proto/gradhub.proto), coordinator side: which frames it takes from a worker, its
 * error, the frame limits of a run, and the Params frame encoded once per version.
 *
 * Contract: `decodeMessage` (or `decodeFrame`) is the only way a worker's bytes enter the
 * coordinator. The checks are @gradhub/proto's codec (size bounded before parsing, the limits
 * following the model: see `frameLimits`; protocol version; a body of a kind this side accepts
 * from a worker; small frames for kinds that carry no tensor; a streamed Result's gradient handed
 * on as its fragments, never joined). A fault throws a `ProtocolError` whose `wireCode` is the
 * proto `ErrorCode` to answer with and whose `closeCode` (4000 + wireCode) closes the socket.
 * Field-level checks that need run state (step, node, gradient length, finiteness) belong to the
 * reducer and membership.
 *
 * Encoding: one `Envelope` per frame, `protocol_version` always set. The Params frame of a version
 * is encoded once and the same bytes go to every worker (`ParamsEncoder`), as the Envelope up to
 * the parameters (`paramsHeader`, one fragment) followed by the parameter bytes in fragments of at
 * most `FRAGMENT_BYTES`, so that neither side allocates, faults in and copies a model-sized
 * buffer per message: fragments of a few hundred KiB come from memory the allocator reuses.
 */
import {
  closeCodeFor, decodeFrame as decodeFrameAs, decodeMessage as decodeMessageAs, fragments, paramsHeader, wireCodeName,
  type BodyKind, type Decoded, type DecodedMessage, type WireCode, type WireSide,
} from '@gradhub/proto';
import { CIFAR_PIXELS, ErrorCode, GradhubError, xxh64 } from '@gradhub/core';

export {
  FRAGMENT_BYTES, FROM_COORDINATOR, FROM_WORKER, MAX_FRAGMENTS, PROTOCOL_VERSION, SMALL_FRAME_BYTES, WireCode,
  closeCodeFor, encode, fragments, paramsHeader, splitTrailingBytes,
} from '@gradhub/proto';
export type { Body, BodyKind, BodyOf, Decoded, DecodedMessage } from '@gradhub/proto';

/** Slack added to tensor-sized frame limits for the envelope and the other fields. */
export const FRAME_SLACK_BYTES = 64 * 1024;

/** A peer broke the wire protocol. `wireCode` is what to tell it; `closeCode` how to close. */
export class ProtocolError extends GradhubError {
  readonly wireCode: WireCode;
  readonly closeCode: number;

  constructor(wireCode: WireCode, message: string) {
    super(ErrorCode.E_PROTOCOL, `${wireCodeName(wireCode)}: ${message}`);
    this.wireCode = wireCode;
    this.closeCode = closeCodeFor(wireCode);
  }
}

const COORDINATOR: WireSide = { name: 'coordinator', fault: (code, message) => new ProtocolError(code, message) };

/** Frame size limits of a run, from the model and the largest batch. */
export interface FrameLimits {
  /** Largest frame a worker may send (a Result with a whole gradient). */
  readonly fromWorker: number;
  /** Largest frame the coordinator sends (Params, or Work with a whole batch). */
  readonly fromCoordinator: number;
}

/** Limits for a model of `paramCount` floats and batches of at most `maxBatch` samples. */
export function frameLimits(paramCount: number, maxBatch: number): FrameLimits {
  const grad = 4 * paramCount;
  const work = maxBatch * (CIFAR_PIXELS + 1) + maxBatch * 16; // pixels + labels + a node per sample at worst
  return {
    fromWorker: grad + FRAME_SLACK_BYTES,
    fromCoordinator: Math.max(grad, work) + FRAME_SLACK_BYTES,
  };
}

/**
 * Decode and validate one frame (see the module comment). `maxFrameBytes` bounds the frame;
 * `accept` lists the body kinds this side takes (FROM_WORKER). Throws ProtocolError.
 */
export function decodeFrame(frame: Uint8Array, maxFrameBytes: number, accept: readonly BodyKind[]): Decoded {
  return decodeFrameAs(frame, maxFrameBytes, accept, COORDINATOR);
}

/**
 * Decode and validate one message given as its fragments (ws `binaryType: 'fragments'`): the
 * same checks as `decodeFrame`, without joining a streamed Result's gradient (`tail`). Throws
 * ProtocolError.
 */
export function decodeMessage(pieces: readonly Uint8Array[], maxFrameBytes: number, accept: readonly BodyKind[]): DecodedMessage {
  return decodeMessageAs(pieces, maxFrameBytes, accept, COORDINATOR);
}

/** The Params frame of one version: encoded once, sent as the same bytes to every worker. */
export interface ParamsFrame {
  readonly version: number;
  /** xxHash64 of the parameter bytes, 8 bytes big-endian. */
  readonly checksum: Uint8Array;
  /** The message as fragments: the Envelope up to `data`, then the parameter bytes (views of `snapshot`). */
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

/** Hash `params` and build its Params frame over `snapshot` (which receives a copy of them). */
export function encodeParams(version: number, params: Float32Array, snapshot: ParamsSnapshot = { data: new Float32Array(params.length), sends: 0 }): ParamsFrame {
  if (snapshot.data.length !== params.length) throw new RangeError(`encodeParams: snapshot of ${snapshot.data.length} floats for ${params.length}`);
  snapshot.data.set(params);
  const checksum = xxh64(snapshot.data);
  const data = new Uint8Array(snapshot.data.buffer, snapshot.data.byteOffset, snapshot.data.byteLength);
  const header = paramsHeader(version, checksum, data.byteLength);
  return { version, checksum, parts: [header, ...fragments(data)], byteLength: header.byteLength + data.byteLength, snapshot };
}

/**
 * Params frames of successive versions over reused snapshots: a snapshot is overwritten only
 * once no send of an earlier frame over it is in progress (`snapshot.sends`, counted by the
 * sender), so a slow socket never sends torn parameters, and a step allocates nothing once two
 * snapshots exist (the current version's and the previous one's, which a late ParamsRequest may
 * still read). Snapshots still being sent when a third is needed are left to the garbage
 * collector rather than kept.
 */
export class ParamsEncoder {
  private readonly snapshots: ParamsSnapshot[] = [];
  private current: ParamsFrame | null = null;

  /** The frame last encoded, or null. */
  get frame(): ParamsFrame | null {
    return this.current;
  }

  encode(version: number, params: Float32Array): ParamsFrame {
    const inUse = this.current?.snapshot;
    let snap = this.snapshots.find((s) => s !== inUse && s.sends === 0 && s.data.length === params.length);
    if (!snap) {
      // Keep the current one and at most one other: busy or mis-sized ones are dropped.
      for (let i = this.snapshots.length - 1; i >= 0; i--) if (this.snapshots[i] !== inUse) this.snapshots.splice(i, 1);
      snap = { data: new Float32Array(params.length), sends: 0 };
      this.snapshots.push(snap);
    }
    this.current = encodeParams(version, params, snap);
    return this.current;
  }
}
