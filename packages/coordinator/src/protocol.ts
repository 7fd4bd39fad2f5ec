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
 * is encoded once and the same bytes go to every worker (`ParamsEncoder`).
 *
 * Messages in fragments (no copies of tensors): a WebSocket message may arrive as several
 * fragments (ws `binaryType: 'fragments'`). Node workers send a Result as the Envelope's bytes up
 * to the gradient (one fragment) followed by the gradient in fragments of at most
 * `FRAGMENT_BYTES`; `decodeMessage` recognises that shape and hands the gradient on as those
 * fragments (`tail`), never joined into one buffer; any other shape is joined and decoded by
 * `decodeFrame`, so the checks are the same either way. The coordinator sends Params the same
 * way (header, then the parameter bytes in fragments), so that neither side allocates, faults in
 * and copies a model-sized buffer per message: fragments of a few hundred KiB come from memory
 * the allocator reuses.
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

/** Fragments of a tensor on the wire are at most this big (and a message has at most MAX_FRAGMENTS). */
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

/** A decoded message; `tail` holds the tensor bytes when they came as separate fragments (see the module comment). */
export type DecodedMessage = Decoded & {
  /** Result.grad as the message's fragments (msg.grad is then not to be used), or null. */
  readonly tail: readonly Uint8Array[] | null;
};

const EMPTY_FRAME = new Uint8Array(0);

/**
 * Decode and validate one message given as its fragments (ws `binaryType: 'fragments'`): the
 * same checks as `decodeFrame`, without joining a streamed Result's gradient (module comment).
 */
export function decodeMessage(pieces: readonly Uint8Array[], maxFrameBytes: number, accept: readonly BodyKind[]): DecodedMessage {
  if (pieces.length <= 1) return { ...decodeFrame(pieces[0] ?? EMPTY_FRAME, maxFrameBytes, accept), tail: null };
  let total = 0;
  for (const p of pieces) total += p.byteLength;
  if (total > maxFrameBytes) throw new ProtocolError(WireCode.OVERSIZE_FRAME, `frame of ${total} bytes exceeds the limit of ${maxFrameBytes}`);
  const tailBytes = total - pieces[0].byteLength;
  const split = accept.includes('result') ? splitTrailingBytes(pieces[0], tailBytes, RESULT_FIELD, RESULT_GRAD_FIELD) : null;
  if (split === null) return { ...decodeFrame(Buffer.concat(pieces, total), maxFrameBytes, accept), tail: null };
  let msg: gradhub.Result;
  try {
    msg = gradhub.Result.decode(split.body);
  } catch (err) {
    throw new ProtocolError(WireCode.MALFORMED_FRAME, `not a gradhub Envelope (${(err as Error).message})`);
  }
  if (split.version !== PROTOCOL_VERSION) {
    throw new ProtocolError(WireCode.BAD_VERSION, `protocol version ${split.version}, this coordinator speaks ${PROTOCOL_VERSION}`);
  }
  return { kind: 'result', msg, tail: pieces.slice(1) };
}

/** Envelope.result and Result.grad field numbers (proto/gradhub.proto). */
const RESULT_FIELD = 7;
const RESULT_GRAD_FIELD = 6;
/** Envelope.params and Params.data field numbers. */
const PARAMS_FIELD = 5;
const PARAMS_DATA_FIELD = 3;

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

/**
 * The Envelope{Params} up to (not including) its `dataBytes` parameter bytes: the version, the
 * checksum, then `data` last.
 */
export function paramsHeader(version: number, checksum: Uint8Array, dataBytes: number): Uint8Array {
  const inner = gradhub.Params.encode({ version, checksum }).finish();
  const dataField = 1 + varintLength(dataBytes);
  const bodyLength = inner.length + dataField + dataBytes;
  const out = new Uint8Array(1 + varintLength(PROTOCOL_VERSION) + 1 + varintLength(bodyLength) + inner.length + dataField);
  let at = 0;
  out[at++] = (1 << 3) | 0;
  at = putVarint(out, at, PROTOCOL_VERSION);
  out[at++] = (PARAMS_FIELD << 3) | 2;
  at = putVarint(out, at, bodyLength);
  out.set(inner, at);
  at += inner.length;
  out[at++] = (PARAMS_DATA_FIELD << 3) | 2;
  putVarint(out, at, dataBytes);
  return out;
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
