/**
 * Wire frames (proto/gradhub.proto), coordinator side: encoding, and decoding with validation.
 *
 * Contract: `decodeFrame` is the only way a worker's bytes enter the coordinator. It bounds the
 * frame's size before parsing (the limits follow the model: see `frameLimits`), parses one
 * `Envelope`, checks its protocol version, that it has a body, that the body is a kind this side
 * accepts from a worker, and that frames which carry no tensor are small. Anything else throws a
 * `ProtocolError` whose `wireCode` is the proto `ErrorCode` to answer with and whose `closeCode`
 * (4000 + wireCode) closes the socket. Field-level checks that need run state (step, node,
 * gradient length, finiteness) belong to the reducer and membership.
 *
 * Encoding: one `Envelope` per frame, `protocol_version` always set. The Params frame of a version
 * is encoded once and the same bytes go to every worker (`encodeParams`).
 */
import { gradhub } from '@gradhub/proto';
import { CIFAR_PIXELS, ErrorCode, GradhubError, xxh64 } from '@gradhub/core';

/** The protocol version this build speaks (proto `ProtocolVersion.CURRENT`). */
export const PROTOCOL_VERSION: number = gradhub.ProtocolVersion.CURRENT;

/** The wire error codes (proto `ErrorCode`). */
export const WireCode = gradhub.ErrorCode;
export type WireCode = gradhub.ErrorCode;

/** The close code that follows an Error or Reject frame carrying `code`. */
export function closeCodeFor(code: WireCode): number {
  return 4000 + code;
}

/** Frames that carry no tensor (Hello, Heartbeat, Error, Bye, ParamsRequest, ...) are at most this big. */
export const SMALL_FRAME_BYTES = 64 * 1024;
/** Slack added to tensor-sized frame limits for the envelope and the other fields. */
export const FRAME_SLACK_BYTES = 64 * 1024;

/** A peer broke the wire protocol. `wireCode` is what to tell it; `closeCode` how to close. */
export class ProtocolError extends GradhubError {
  readonly wireCode: WireCode;
  readonly closeCode: number;

  constructor(wireCode: WireCode, message: string) {
    super(ErrorCode.E_PROTOCOL, `${gradhub.ErrorCode[wireCode]}: ${message}`);
    this.wireCode = wireCode;
    this.closeCode = closeCodeFor(wireCode);
  }
}

/** The kinds of Envelope body. */
export type BodyKind = NonNullable<gradhub.Envelope['body']>;

/** Message type of each body kind. */
export type BodyOf<K extends BodyKind> = NonNullable<gradhub.IEnvelope[K]>;

/** A decoded frame: its body kind and message. */
export type Decoded = { [K in BodyKind]: { readonly kind: K; readonly msg: BodyOf<K> } }[BodyKind];

/** One body to encode: exactly one kind set, e.g. `{ heartbeat: {} }`. */
export type Body = { [K in BodyKind]: { [P in K]: BodyOf<K> } }[BodyKind];

/** What a coordinator accepts from a worker. */
export const FROM_WORKER: readonly BodyKind[] = ['hello', 'result', 'heartbeat', 'error', 'bye', 'paramsRequest'];
/** What a worker accepts from a coordinator. */
export const FROM_COORDINATOR: readonly BodyKind[] = ['welcome', 'reject', 'params', 'work', 'heartbeat', 'error', 'bye'];

/** Body kinds that carry tensors or pixels; every other kind must fit SMALL_FRAME_BYTES. */
const LARGE_KINDS: ReadonlySet<BodyKind> = new Set<BodyKind>(['params', 'work', 'result']);

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

/** Encode one Envelope with the current protocol version. */
export function encode(body: Body): Uint8Array {
  return gradhub.Envelope.encode({ protocolVersion: PROTOCOL_VERSION, ...body }).finish();
}

/**
 * Decode and validate one frame (see the module comment). `maxFrameBytes` bounds the frame;
 * `accept` lists the body kinds this side takes. Throws ProtocolError.
 */
export function decodeFrame(frame: Uint8Array, maxFrameBytes: number, accept: readonly BodyKind[]): Decoded {
  if (frame.byteLength > maxFrameBytes) {
    throw new ProtocolError(WireCode.OVERSIZE_FRAME, `frame of ${frame.byteLength} bytes exceeds the limit of ${maxFrameBytes}`);
  }
  let env: gradhub.Envelope;
  try {
    env = gradhub.Envelope.decode(frame);
  } catch (err) {
    throw new ProtocolError(WireCode.MALFORMED_FRAME, `not a gradhub Envelope (${(err as Error).message})`);
  }
  if (env.protocolVersion !== PROTOCOL_VERSION) {
    throw new ProtocolError(WireCode.BAD_VERSION, `protocol version ${env.protocolVersion}, this coordinator speaks ${PROTOCOL_VERSION}`);
  }
  const kind = env.body;
  if (kind === undefined) throw new ProtocolError(WireCode.MALFORMED_FRAME, 'envelope has no body');
  if (!accept.includes(kind)) throw new ProtocolError(WireCode.UNEXPECTED_MESSAGE, `a ${kind} message is not accepted here`);
  if (!LARGE_KINDS.has(kind) && frame.byteLength > SMALL_FRAME_BYTES) {
    throw new ProtocolError(WireCode.OVERSIZE_FRAME, `a ${kind} frame of ${frame.byteLength} bytes exceeds ${SMALL_FRAME_BYTES}`);
  }
  const msg = env[kind];
  if (msg === null || msg === undefined) throw new ProtocolError(WireCode.MALFORMED_FRAME, `envelope body ${kind} is empty`);
  return { kind, msg } as Decoded;
}

/** The Params frame of one version: encoded once, sent as the same bytes to every worker. */
export interface ParamsFrame {
  readonly version: number;
  /** xxHash64 of the parameter bytes, 8 bytes big-endian. */
  readonly checksum: Uint8Array;
  readonly frame: Uint8Array;
}

/** Hash `params` and encode its Params frame (one copy of the parameter bytes). */
export function encodeParams(version: number, params: Float32Array): ParamsFrame {
  const checksum = xxh64(params);
  const data = new Uint8Array(params.buffer, params.byteOffset, params.byteLength);
  return { version, checksum, frame: encode({ params: { version, checksum, data } }) };
}
