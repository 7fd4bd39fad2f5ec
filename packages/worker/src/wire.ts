/**
 * Wire frames (proto/gradhub.proto), worker side: the same rules as the coordinator's
 * protocol.ts, for the frames a worker sends and receives. Runs in Node and in browsers (no Node
 * APIs).
 *
 * `decodeFrame` bounds the size, parses one Envelope, checks the protocol version and that the
 * body is a kind a worker accepts; failures throw `WireError` with the proto ErrorCode to answer.
 * `resultHeader` encodes a Result *without* copying the gradient: it returns the frame's bytes up
 * to the gradient, so that the gradient bytes can be sent straight from the engine's buffer as
 * the message's second fragment (protobuf fields may come in any order; `grad` goes last).
 */
import { gradhub } from '@gradhub/proto';
import { ErrorCode, GradhubError } from '@gradhub/core';

export const PROTOCOL_VERSION: number = gradhub.ProtocolVersion.CURRENT;
export const WireCode = gradhub.ErrorCode;
export type WireCode = gradhub.ErrorCode;

/** Frames without tensors are at most this big (same as the coordinator). */
export const SMALL_FRAME_BYTES = 64 * 1024;

export type BodyKind = NonNullable<gradhub.Envelope['body']>;
export type BodyOf<K extends BodyKind> = NonNullable<gradhub.IEnvelope[K]>;
export type Decoded = { [K in BodyKind]: { readonly kind: K; readonly msg: BodyOf<K> } }[BodyKind];
export type Body = { [K in BodyKind]: { [P in K]: BodyOf<K> } }[BodyKind];

/** The close code that follows an Error frame carrying `code`. */
export function closeCodeFor(code: WireCode): number {
  return 4000 + code;
}

/** The name of a wire error code, e.g. 'BAD_TOKEN'. */
export function wireCodeName(code: number): string {
  return gradhub.ErrorCode[code] ?? `code ${code}`;
}

/** The coordinator broke the protocol. */
export class WireError extends GradhubError {
  readonly wireCode: WireCode;

  constructor(wireCode: WireCode, message: string) {
    super(ErrorCode.E_PROTOCOL, `${wireCodeName(wireCode)}: ${message}`);
    this.wireCode = wireCode;
  }
}

const FROM_COORDINATOR: ReadonlySet<BodyKind> = new Set<BodyKind>(['welcome', 'reject', 'params', 'work', 'heartbeat', 'error', 'bye']);
const LARGE_KINDS: ReadonlySet<BodyKind> = new Set<BodyKind>(['params', 'work']);

export function encode(body: Body): Uint8Array {
  return gradhub.Envelope.encode({ protocolVersion: PROTOCOL_VERSION, ...body }).finish();
}

/** Decode and validate one frame from the coordinator. Throws WireError. */
export function decodeFrame(frame: Uint8Array, maxFrameBytes: number): Decoded {
  if (frame.byteLength > maxFrameBytes) throw new WireError(WireCode.OVERSIZE_FRAME, `frame of ${frame.byteLength} bytes exceeds ${maxFrameBytes}`);
  let env: gradhub.Envelope;
  try {
    env = gradhub.Envelope.decode(frame);
  } catch (err) {
    throw new WireError(WireCode.MALFORMED_FRAME, `not a gradhub Envelope (${(err as Error).message})`);
  }
  if (env.protocolVersion !== PROTOCOL_VERSION) throw new WireError(WireCode.BAD_VERSION, `protocol version ${env.protocolVersion}, this worker speaks ${PROTOCOL_VERSION}`);
  const kind = env.body;
  if (kind === undefined) throw new WireError(WireCode.MALFORMED_FRAME, 'envelope has no body');
  if (!FROM_COORDINATOR.has(kind)) throw new WireError(WireCode.UNEXPECTED_MESSAGE, `a ${kind} message is not accepted by a worker`);
  if (!LARGE_KINDS.has(kind) && frame.byteLength > SMALL_FRAME_BYTES) throw new WireError(WireCode.OVERSIZE_FRAME, `a ${kind} frame of ${frame.byteLength} bytes exceeds ${SMALL_FRAME_BYTES}`);
  const msg = env[kind];
  if (msg === null || msg === undefined) throw new WireError(WireCode.MALFORMED_FRAME, `envelope body ${kind} is empty`);
  return { kind, msg } as Decoded;
}

function varintLength(v: number): number {
  let n = 1;
  while (v >= 0x80) {
    v = Math.floor(v / 128);
    n++;
  }
  return n;
}

function putVarint(out: Uint8Array, at: number, v: number): number {
  while (v >= 0x80) {
    out[at++] = (v & 0x7f) | 0x80;
    v = Math.floor(v / 128);
  }
  out[at++] = v;
  return at;
}

const ENVELOPE_VERSION_TAG = (1 << 3) | 0; // Envelope.protocol_version, varint
const ENVELOPE_RESULT_TAG = (7 << 3) | 2; // Envelope.result, length-delimited
const RESULT_GRAD_TAG = (6 << 3) | 2; // Result.grad, bytes

/**
 * The bytes of an Envelope{Result} up to (not including) its `gradBytes` gradient bytes: send
 * [header, grad] as one message. `result` must not set `grad`.
 */
export function resultHeader(result: gradhub.IResult, gradBytes: number): Uint8Array {
  const inner = gradhub.Result.encode(result).finish();
  const gradField = gradBytes > 0 ? 1 + varintLength(gradBytes) : 0;
  const resultLength = inner.length + gradField + gradBytes;
  const size = 1 + varintLength(PROTOCOL_VERSION) + 1 + varintLength(resultLength) + inner.length + gradField;
  const out = new Uint8Array(size);
  let at = 0;
  out[at++] = ENVELOPE_VERSION_TAG;
  at = putVarint(out, at, PROTOCOL_VERSION);
  out[at++] = ENVELOPE_RESULT_TAG;
  at = putVarint(out, at, resultLength);
  out.set(inner, at);
  at += inner.length;
  if (gradBytes > 0) {
    out[at++] = RESULT_GRAD_TAG;
    at = putVarint(out, at, gradBytes);
  }
  return out;
}
