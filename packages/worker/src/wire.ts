/**
 * Wire frames (proto/gradhub.proto), worker side: the same rules as the coordinator's
 * protocol.ts, for the frames a worker sends and receives. Runs in Node and in browsers (no Node
 * APIs).
 *
 * `decodeFrame` bounds the size, parses one Envelope, checks the protocol version and that the
 * body is a kind a worker accepts; failures throw `WireError` with the proto ErrorCode to answer.
 * `resultHeader` encodes a Result *without* copying the gradient: it returns the frame's bytes up
 * to the gradient, so that the gradient bytes can be sent straight from the engine's buffer as
 * the message's next fragments (protobuf fields may come in any order; `grad` goes last).
 *
 * Messages in fragments: a message may be received as its fragments (ws `binaryType:
 * 'fragments'`). The coordinator streams Params as the Envelope up to `data` followed by the
 * parameter bytes in fragments; `decodeMessage` recognises that shape and hands the bytes on as
 * those fragments (`tail`), so that they are copied once, into the engine; any other shape is
 * joined and decoded by `decodeFrame`, with the same checks. `fragments` cuts a tensor for sending.
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

/** Fragments of a tensor on the wire are at most this big (the coordinator's FRAGMENT_BYTES). */
export const FRAGMENT_BYTES = 256 * 1024;
/** Most fragments a tensor is cut into (ws refuses messages of more than 16384 by default). */
export const MAX_FRAGMENTS = 4096;

/** Cut `bytes` into views of at most FRAGMENT_BYTES (more for huge tensors: at most MAX_FRAGMENTS), multiples of 4. */
export function fragments(bytes: Uint8Array): Uint8Array[] {
  const size = Math.max(FRAGMENT_BYTES, 4 * Math.ceil(bytes.byteLength / MAX_FRAGMENTS / 4));
  const out: Uint8Array[] = [];
  for (let at = 0; at < bytes.byteLength; at += size) out.push(bytes.subarray(at, Math.min(bytes.byteLength, at + size)));
  return out;
}

/** Position after the last readVarint (module state keeps the reader allocation-free). */
let varintEnd = 0;

/** A varint of at most 5 bytes at `p`, or -1 if truncated or longer; sets varintEnd. */
function readVarint(b: Uint8Array, p: number, end: number): number {
  let v = 0;
  for (let i = 0; i < 5 && p < end; i++) {
    const x = b[p++];
    v += (x & 0x7f) * 2 ** (7 * i);
    if (x < 0x80) {
      varintEnd = p;
      return v;
    }
  }
  return -1;
}

/** Skip the field of wire type `wt` at `p`; the position after it, or -1 if it overruns `end` or is a group. */
function skipField(b: Uint8Array, p: number, end: number, wt: number): number {
  switch (wt) {
    case 0: {
      for (let i = 0; i < 10 && p < end; i++) if (b[p++] < 0x80) return p;
      return -1;
    }
    case 1: return p + 8 <= end ? p + 8 : -1;
    case 2: {
      const len = readVarint(b, p, end);
      return len >= 0 && varintEnd + len <= end ? varintEnd + len : -1;
    }
    case 5: return p + 4 <= end ? p + 4 : -1;
    default: return -1;
  }
}

/**
 * The shape senders use to stream a tensor (the coordinator's protocol.ts has the same): `head`
 * is an Envelope (protocol_version, then body field `bodyField` as its last field) whose body ends
 * with bytes field `bytesField`, and that field's content is exactly the `tailBytes` bytes that
 * follow `head` in the message. Returns the protocol version and the body's bytes before the
 * tensor field, or null for any other shape.
 */
export function splitTrailingBytes(head: Uint8Array, tailBytes: number, bodyField: number, bytesField: number): { version: number; body: Uint8Array } | null {
  const end = head.byteLength;
  let p = 0;
  let version = 0;
  while (p < end) {
    const tag = readVarint(head, p, end);
    if (tag < 0) return null;
    p = varintEnd;
    const field = Math.floor(tag / 8);
    const wt = tag & 7;
    if (field === 1 && wt === 0) {
      version = readVarint(head, p, end);
      if (version < 0) return null;
      version >>>= 0;
      p = varintEnd;
    } else if (field === bodyField && wt === 2) {
      const len = readVarint(head, p, end);
      if (len < 0 || varintEnd + len !== end + tailBytes) return null;
      const body = head.subarray(varintEnd);
      let q = 0;
      while (q < body.byteLength) {
        const start = q;
        const t = readVarint(body, q, body.byteLength);
        if (t < 0) return null;
        q = varintEnd;
        if (Math.floor(t / 8) === bytesField && (t & 7) === 2) {
          const n = readVarint(body, q, body.byteLength);
          if (n < 0) return null;
          if (varintEnd === body.byteLength && n === tailBytes) return { version, body: body.subarray(0, start) };
        }
        q = skipField(body, q, body.byteLength, t & 7);
        if (q < 0) return null;
      }
      return null;
    } else {
      return null;
    }
  }
  return null;
}

/** Envelope.params and Params.data field numbers (proto/gradhub.proto). */
const PARAMS_FIELD = 5;
const PARAMS_DATA_FIELD = 3;

/** A decoded message; `tail` holds Params.data when it came as separate fragments (module comment). */
export type DecodedMessage = Decoded & {
  /** Params.data as the message's fragments (msg.data is then not to be used), or null. */
  readonly tail: readonly Uint8Array[] | null;
};

function join(pieces: readonly Uint8Array[], total: number): Uint8Array {
  const out = new Uint8Array(total);
  let at = 0;
  for (const p of pieces) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}

/** Decode and validate one message given as its fragments: the checks of `decodeFrame`, without joining streamed parameters. Throws WireError. */
export function decodeMessage(pieces: readonly Uint8Array[], maxFrameBytes: number): DecodedMessage {
  if (pieces.length <= 1) return { ...decodeFrame(pieces[0] ?? new Uint8Array(0), maxFrameBytes), tail: null };
  let total = 0;
  for (const p of pieces) total += p.byteLength;
  if (total > maxFrameBytes) throw new WireError(WireCode.OVERSIZE_FRAME, `frame of ${total} bytes exceeds ${maxFrameBytes}`);
  const split = splitTrailingBytes(pieces[0], total - pieces[0].byteLength, PARAMS_FIELD, PARAMS_DATA_FIELD);
  if (split === null) return { ...decodeFrame(join(pieces, total), maxFrameBytes), tail: null };
  let msg: gradhub.Params;
  try {
    msg = gradhub.Params.decode(split.body);
  } catch (err) {
    throw new WireError(WireCode.MALFORMED_FRAME, `not a gradhub Envelope (${(err as Error).message})`);
  }
  if (split.version !== PROTOCOL_VERSION) throw new WireError(WireCode.BAD_VERSION, `protocol version ${split.version}, this worker speaks ${PROTOCOL_VERSION}`);
  return { kind: 'params', msg, tail: pieces.slice(1) };
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
