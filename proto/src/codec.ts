/**
 * Wire frames (gradhub.proto): the codec both sides share. The coordinator's protocol.ts and the
 * worker's wire.ts keep only what is theirs (which kinds they accept, their side's helpers) and
 * use these; the limits are limits.ts's, the error faults.ts's. Runs in Node and in browsers: no
 * Node or DOM API.
 *
 * Contract: `decodeFrame` bounds the frame's size before parsing, parses one `Envelope`, checks its
 * protocol version, that it has a body, that the body is a kind the caller accepts, and that
 * frames which carry no tensor are small (`SMALL_FRAME_BYTES`). Any fault is thrown as a
 * `ProtocolError` carrying the proto `ErrorCode` to answer with (the socket then closes with
 * `closeCodeFor(code)`, 4000 + code). Field-level checks that need run state belong to the sides.
 *
 * Encoding: one `Envelope` per frame, `protocol_version` always set (`encode`).
 *
 * Messages in fragments (no copies of tensors): a WebSocket message may arrive as several
 * fragments (ws `binaryType: 'fragments'`). A sender streams a tensor as the Envelope's bytes up
 * to the tensor (one fragment: `paramsHeader`, `resultHeader`) followed by the tensor's bytes in
 * fragments of at most `FRAGMENT_BYTES` (`fragments`). `decodeMessage` recognises that shape for
 * the streamed kinds the caller accepts (Result.grad, Params.data) and hands the tensor on as
 * those fragments (`tail`), never joined into one buffer; any other shape is joined and decoded by
 * `decodeFrame`, so the checks are the same either way.
 */
import { gradhub } from '../generated/gradhub.js';
import { ProtocolError, WireCode } from './faults.js';
import { FRAGMENT_BYTES, MAX_FRAGMENTS, SMALL_FRAME_BYTES } from './limits.js';

/** The protocol version this build speaks (proto `ProtocolVersion.CURRENT`). */
export const PROTOCOL_VERSION: number = gradhub.ProtocolVersion.CURRENT;

/** The kinds of Envelope body. */
export type BodyKind = NonNullable<gradhub.Envelope['body']>;

/** Message type of each body kind. */
export type BodyOf<K extends BodyKind> = NonNullable<gradhub.IEnvelope[K]>;

/** A decoded frame: its body kind and message. */
export type Decoded = { [K in BodyKind]: { readonly kind: K; readonly msg: BodyOf<K> } }[BodyKind];

/** One body to encode: exactly one kind set, e.g. `{ heartbeat: {} }`. */
export type Body = { [K in BodyKind]: { [P in K]: BodyOf<K> } }[BodyKind];

/** A decoded message; `tail` holds the tensor bytes when they came as separate fragments (module comment). */
export type DecodedMessage = Decoded & {
  /** Result.grad or Params.data as the message's fragments (the message's own field is then not to be used), or null. */
  readonly tail: readonly Uint8Array[] | null;
};

/** What a coordinator accepts from a worker. */
export const FROM_WORKER: readonly BodyKind[] = ['hello', 'result', 'heartbeat', 'error', 'bye', 'paramsRequest', 'auditResult'];
/** What a worker accepts from a coordinator. */
export const FROM_COORDINATOR: readonly BodyKind[] = ['welcome', 'reject', 'params', 'work', 'heartbeat', 'error', 'bye', 'keep'];

/** Body kinds that carry tensors or pixels; every other kind must fit SMALL_FRAME_BYTES. */
const LARGE_KINDS: ReadonlySet<BodyKind> = new Set<BodyKind>(['params', 'work', 'result']);

/** The side that decodes, as it names itself in messages ("protocol version 2, this worker speaks 1"). */
export type WireSide = 'coordinator' | 'worker';

/** Encode one Envelope with the current protocol version. */
export function encode(body: Body): Uint8Array {
  return gradhub.Envelope.encode({ protocolVersion: PROTOCOL_VERSION, ...body }).finish();
}

/**
 * Decode and validate one frame (module comment). `maxFrameBytes` bounds the frame; `accept`
 * lists the body kinds the caller takes. Throws ProtocolError.
 */
export function decodeFrame(frame: Uint8Array, maxFrameBytes: number, accept: readonly BodyKind[], side: WireSide): Decoded {
  if (frame.byteLength > maxFrameBytes) {
    throw new ProtocolError(WireCode.OVERSIZE_FRAME, `frame of ${frame.byteLength} bytes exceeds the limit of ${maxFrameBytes}`);
  }
  let env: gradhub.Envelope;
  try {
    env = gradhub.Envelope.decode(frame);
  } catch (err) {
    throw new ProtocolError(WireCode.MALFORMED_FRAME, `not a gradhub Envelope (${(err as Error).message})`);
  }
  checkVersion(env.protocolVersion, side);
  const kind = env.body;
  if (kind === undefined) throw new ProtocolError(WireCode.MALFORMED_FRAME, 'envelope has no body');
  if (!accept.includes(kind)) throw new ProtocolError(WireCode.UNEXPECTED_MESSAGE, `a ${kind} message is not accepted by a ${side}`);
  if (!LARGE_KINDS.has(kind) && frame.byteLength > SMALL_FRAME_BYTES) {
    throw new ProtocolError(WireCode.OVERSIZE_FRAME, `a ${kind} frame of ${frame.byteLength} bytes exceeds ${SMALL_FRAME_BYTES}`);
  }
  const msg = env[kind];
  if (msg === null || msg === undefined) throw new ProtocolError(WireCode.MALFORMED_FRAME, `envelope body ${kind} is empty`);
  return { kind, msg } as Decoded;
}

function checkVersion(version: number, side: WireSide): void {
  if (version !== PROTOCOL_VERSION) {
    throw new ProtocolError(WireCode.BAD_VERSION, `protocol version ${version}, this ${side} speaks ${PROTOCOL_VERSION}`);
  }
}

/** Envelope.params and Params.data field numbers (gradhub.proto). */
const PARAMS_FIELD = 5;
const PARAMS_DATA_FIELD = 3;
/** Envelope.result and Result.grad field numbers. */
const RESULT_FIELD = 7;
const RESULT_GRAD_FIELD = 6;

/** The kinds a sender streams (header, then the tensor in fragments): where the tensor is, and how to decode the rest. */
const STREAMED = [
  { kind: 'params', bodyField: PARAMS_FIELD, bytesField: PARAMS_DATA_FIELD, decode: (b: Uint8Array) => gradhub.Params.decode(b) },
  { kind: 'result', bodyField: RESULT_FIELD, bytesField: RESULT_GRAD_FIELD, decode: (b: Uint8Array) => gradhub.Result.decode(b) },
] as const;

const EMPTY_FRAME = new Uint8Array(0);

/** The bytes of `pieces` (a message's fragments) in one buffer; `total` is their length when known. */
export function joinPieces(pieces: readonly Uint8Array[], total?: number): Uint8Array {
  let n = total ?? 0;
  if (total === undefined) for (const p of pieces) n += p.byteLength;
  const out = new Uint8Array(n);
  let at = 0;
  for (const p of pieces) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}

/**
 * Decode and validate one message given as its fragments (ws `binaryType: 'fragments'`): the
 * same checks as `decodeFrame`, without joining a streamed tensor (module comment).
 */
export function decodeMessage(pieces: readonly Uint8Array[], maxFrameBytes: number, accept: readonly BodyKind[], side: WireSide): DecodedMessage {
  if (pieces.length <= 1) return { ...decodeFrame(pieces[0] ?? EMPTY_FRAME, maxFrameBytes, accept, side), tail: null };
  let total = 0;
  for (const p of pieces) total += p.byteLength;
  if (total > maxFrameBytes) throw new ProtocolError(WireCode.OVERSIZE_FRAME, `frame of ${total} bytes exceeds the limit of ${maxFrameBytes}`);
  const tailBytes = total - pieces[0].byteLength;
  for (const s of STREAMED) {
    if (!accept.includes(s.kind)) continue;
    const split = splitTrailingBytes(pieces[0], tailBytes, s.bodyField, s.bytesField);
    if (split === null) continue;
    let msg: gradhub.Params | gradhub.Result;
    try {
      msg = s.decode(split.body);
    } catch (err) {
      throw new ProtocolError(WireCode.MALFORMED_FRAME, `not a gradhub Envelope (${(err as Error).message})`);
    }
    checkVersion(split.version, side);
    return { kind: s.kind, msg, tail: pieces.slice(1) } as DecodedMessage;
  }
  return { ...decodeFrame(joinPieces(pieces, total), maxFrameBytes, accept, side), tail: null };
}

/** Cut `bytes` into views of at most FRAGMENT_BYTES (more for huge tensors: at most MAX_FRAGMENTS), multiples of 4. */
export function fragments(bytes: Uint8Array): Uint8Array[] {
  const size = Math.max(FRAGMENT_BYTES, 4 * Math.ceil(bytes.byteLength / MAX_FRAGMENTS / 4));
  const out: Uint8Array[] = [];
  for (let at = 0; at < bytes.byteLength; at += size) out.push(bytes.subarray(at, Math.min(bytes.byteLength, at + size)));
  return out;
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

/** Position after the last readVarint (module state keeps the reader allocation-free). */
let varintEnd = 0;

/** A varint of at most 5 bytes (a uint32 or a length) at `p`, or -1 if truncated or longer; sets varintEnd. */
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
 * The shape senders use to stream a tensor: `head` is an Envelope (protocol_version, then body
 * field `bodyField` as its last field) whose body ends with bytes field `bytesField`, and that
 * field's content is exactly the `tailBytes` bytes that follow `head` in the message. Returns the
 * Envelope's protocol version and the body's bytes before the tensor field, or null when `head`
 * has any other shape (the caller then joins the message and decodes it the ordinary way).
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

/**
 * An Envelope (protocol_version, then body field `bodyField`) whose body is `inner` followed by
 * bytes field `bytesField` of `tailBytes` bytes, up to (not including) those bytes. The field is
 * left out when `tailBytes` is 0 unless `always`.
 */
function trailingBytesHeader(bodyField: number, inner: Uint8Array, bytesField: number, tailBytes: number, always: boolean): Uint8Array {
  const tailField = always || tailBytes > 0 ? 1 + varintLength(tailBytes) : 0;
  const bodyLength = inner.length + tailField + tailBytes;
  const out = new Uint8Array(1 + varintLength(PROTOCOL_VERSION) + 1 + varintLength(bodyLength) + inner.length + tailField);
  let at = 0;
  out[at++] = (1 << 3) | 0; // Envelope.protocol_version, varint
  at = putVarint(out, at, PROTOCOL_VERSION);
  out[at++] = (bodyField << 3) | 2; // the body, length-delimited
  at = putVarint(out, at, bodyLength);
  out.set(inner, at);
  at += inner.length;
  if (tailField > 0) {
    out[at++] = (bytesField << 3) | 2; // the tensor, bytes
    putVarint(out, at, tailBytes);
  }
  return out;
}

/**
 * The Envelope{Params} of one part of the parameters up to (not including) its data: the version,
 * the checksum, the part, then `data` last. Raw (no `packed`): data is the part's 4 x part.length
 * bytes; packed: `packed.bytes` bytes, an XOR with `packed.base` when given (TensorEncoding).
 * Send [header, ...fragments(data)] as one message.
 */
export function paramsHeader(version: number, checksum: Uint8Array, part: { readonly offset: number; readonly length: number }, packed?: { readonly bytes: number; readonly base: number | null }): Uint8Array {
  const inner = gradhub.Params.encode({
    version, checksum, part: { offset: part.offset, length: part.length },
    ...(packed ? { encoding: gradhub.TensorEncoding.PLANES_DEFLATE, delta: packed.base !== null, baseVersion: packed.base ?? 0 } : {}),
  }).finish();
  return trailingBytesHeader(PARAMS_FIELD, inner, PARAMS_DATA_FIELD, packed ? packed.bytes : 4 * part.length, true);
}

/**
 * The bytes of an Envelope{Result} up to (not including) its `gradBytes` gradient bytes: send
 * [header, grad] as one message. `result` must not set `grad`.
 */
export function resultHeader(result: gradhub.IResult, gradBytes: number): Uint8Array {
  return trailingBytesHeader(RESULT_FIELD, gradhub.Result.encode(result).finish(), RESULT_GRAD_FIELD, gradBytes, false);
}
