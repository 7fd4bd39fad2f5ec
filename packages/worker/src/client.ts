/**
 * The worker's protocol client: one session (one socket) with a coordinator, shared by every
 * runtime. It knows nothing of `ws` or the browser: it takes a minimal `ClientSocket` (send
 * binary parts, close) and is fed the socket's events (`receive`, `closed`).
 *
 * Contract:
 * - `start()` sends Hello, naming the parameters the engine still holds from an earlier session
 *   (`ClientMemory`: incarnation, version, parts and checksums), which the coordinator then need not
 *   send again; it answers Welcome (the run's settings: the client asks `getEngine` for an engine
 *   of that model) or Reject (the session ends).
 * - Params{version, checksum, part, data}: one stream part (or the whole buffer) of a version. The bytes
 *   go into `engine.params` at the part's offset (copied once, from the socket's fragments when
 *   they came in fragments) and are checked against the part's checksum (xxHash64); once every
 *   part of the version is in (they may come one by one, ahead of the Work that needs them), the
 *   client holds that version, and none while the parts of a newer one are arriving. Within one
 *   coordinator incarnation versions never go back (an older Params is ignored); when the
 *   incarnation changes (the coordinator restarted from a checkpoint), any version is taken
 *   (`ClientMemory` carries the incarnation and version across sessions).
 * - Work: computed only against the version it names (docs/design.md "Invariant 4: replicas agree"). Work for a version the
 *   client does not hold waits, and the client sends ParamsRequest. A TRAIN node is one
 *   `engine.computeSumsAsync` over the node's samples and one Result per stream part (a layer, or a
 *   block of a big layer's rows), sent as soon as that part is final (the engine computes off this
 *   thread where its backend can, so the upload overlaps the rest of the backward pass), straight
 *   from the engine's gradient buffer as the message's last fragments (no copy), each with the
 *   node's sums; an EVAL node is one
 *   `computeSums` and one Result of sums. The next node starts once the socket has taken every
 *   part (the send callbacks), which is also the backpressure. Nodes of a request the coordinator
 *   has moved past (a Work with a higher seq arrived) are skipped.
 * - Params and Work are handled strictly in arrival order (one queue), so parameters never change
 *   under a node being computed.
 * - Audits (asked of trusted workers only; docs/design.md "Audits and exact rollback"): Keep{version}
 *   copies the parameters of that version, held whole at that point of the queue, aside (one copy);
 *   Work with `audit` recomputes its one node against the version held or the copy kept (swapped
 *   into the engine for the node and back) and answers one AuditResult: the node's sums and the
 *   xxh64 of each asked slice of its gradient; `held: false` when it has neither. Its seq is its
 *   own: it neither skips nor makes skip the nodes of requests.
 * - Heartbeat: one every `heartbeat_interval_ms` from Welcome; the coordinator answers each. A
 *   coordinator silent past `heartbeat_timeout_ms` (not counting time spent computing) ends the
 *   session ('timeout').
 * - A protocol fault of the coordinator gets Error{code} and a close. The session ends once, with
 *   a `SessionEnd` saying how (bye, rejected, error, timeout, closed); reconnecting is the
 *   worker session's job (session.ts).
 * - Events (`onEvent`): welcome, params, work, result (once the socket took a node's Result(s):
 *   its samples, sums and the engine's compute time, which the browser shows), end.
 */
import { gradhub, packFloatsAsync, packsNow, unpackFloats, type ByteCodec } from '@gradhub/proto';
import { CIFAR_PIXELS, bytesEqual, createReplicaRunner, xxh64, type Engine, type NodeSums, type ReplicaRunner, type TreeNode } from '@gradhub/core';
import {
  ProtocolError, SMALL_FRAME_BYTES, WireCode, closeCodeFor, decodeMessage, encode, frameLimits, paramCountOf, resultHeader, wireCodeName,
  type BodyOf, type DecodedMessage,
} from './wire.js';

/** The logging this module needs; a pino Logger fits. */
export interface WorkerLogger {
  child(bindings: Record<string, unknown>): WorkerLogger;
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

/** The transport: one binary WebSocket (ws in Node, WebSocket in a browser). */
export interface ClientSocket {
  /**
   * Send one binary message made of `parts` in order. `done` is called once the parts' bytes have
   * been taken (written, or copied by the transport) and may be overwritten, or with an error.
   */
  send(parts: readonly Uint8Array[], done: (err?: Error) => void): void;
  /** Close the socket with a code and a short reason. */
  close(code: number, reason: string): void;
}

/** The run's settings from Welcome. */
export interface WelcomeInfo {
  readonly workerId: number;
  readonly runId: string;
  readonly incarnation: string;
  readonly sizes: readonly number[];
  readonly chunk: number;
  readonly normalize: boolean;
  readonly maxBatch: number;
  /** Most samples a Work frame carries (a ROUND node's inner batches; at least maxBatch). */
  readonly maxWorkSamples: number;
  readonly heartbeatIntervalMs: number;
  readonly heartbeatTimeoutMs: number;
  /** This session may pack tensors (Welcome.tensor_encoding PLANES_DEFLATE, which needs a codec). */
  readonly packed: boolean;
  /** Pack Results only while the upload measures below this, bytes/s (0: always). */
  readonly packBelow: number;
}

/** What a worker remembers between sessions. */
export interface ClientMemory {
  /** Incarnation of the coordinator whose parameters the engine holds (null: none). */
  incarnation: string | null;
  /** Version of the parameters the engine holds (-1: none). */
  version: number;
  /**
   * The parts of that version as they were received, with their checksums (flat order), which a
   * later session announces in Hello so that the coordinator need not send them again; absent or
   * null: none to announce.
   */
  parts?: readonly HeldPart[] | null;
}

/** One part of the held parameters: its slice of the flat buffer and its xxHash64 (as in Params). */
export interface HeldPart {
  readonly offset: number;
  readonly length: number;
  readonly checksum: Uint8Array;
}

export type SessionEnd =
  | { readonly kind: 'bye'; readonly reason: 'done' | 'shutdown' | 'other'; readonly message: string }
  | { readonly kind: 'rejected'; readonly code: number; readonly codeName: string; readonly message: string }
  | { readonly kind: 'error'; readonly code: number; readonly codeName: string; readonly message: string; readonly fromCoordinator: boolean }
  | { readonly kind: 'timeout'; readonly message: string }
  | { readonly kind: 'closed'; readonly code: number; readonly reason: string }
  | { readonly kind: 'stopped' };

export type ClientEvent =
  | { readonly type: 'welcome'; readonly info: WelcomeInfo }
  | { readonly type: 'params'; readonly version: number }
  | { readonly type: 'work'; readonly seq: number; readonly step: number; readonly nodes: readonly { lo: number; hi: number }[] }
  | {
    /** The socket took the node's Result(s). */
    readonly type: 'result'; readonly seq: number; readonly step: number; readonly node: { lo: number; hi: number };
    /** The node's samples, and whether it was a TRAIN node (else EVAL: sums only). */
    readonly samples: number; readonly train: boolean;
    /** The node's sums (a copy). */
    readonly sums: NodeSums;
    /** Time the engine took to compute the node (its computeSums call: no simulated slowdown, no sending), ms. */
    readonly computeMs: number;
  }
  | { readonly type: 'end'; readonly end: SessionEnd };

/**
 * One Result as it is about to be sent: the header's fields, the node's samples, and the part's
 * gradient (a view of the engine's buffer: copy before changing it; length 0 for EVAL).
 */
export interface OutgoingResult {
  readonly seq: number;
  readonly step: number;
  readonly version: number;
  readonly node: { readonly lo: number; readonly hi: number };
  readonly part: { readonly offset: number; readonly length: number };
  readonly samples: number;
  readonly lossSum: number;
  readonly denomSum: number;
  readonly correct: number;
  readonly computeMs: number;
  readonly grad: Float32Array;
}

/**
 * Test hook: what to send instead of `r` (a changed copy; the grad must keep its length), or null
 * to send nothing (the client goes on as if it was sent). For the adversary tests
 * (test/adversary/evil-worker.mjs) only: the CLI never sets it.
 */
export type ResultHook = (r: OutgoingResult) => OutgoingResult | null;

export interface WorkerClientOptions {
  readonly socket: ClientSocket;
  readonly token: string;
  readonly runtime: 'node' | 'browser';
  readonly logger: WorkerLogger;
  /** An engine for the run's settings (may reuse one from an earlier session). */
  readonly getEngine: (w: WelcomeInfo) => Engine | Promise<Engine>;
  readonly capabilities: { readonly threads: number; readonly simd: boolean; readonly backend: string; readonly maxBatch?: number };
  /** Shared with later sessions (see the module comment). */
  readonly memory: ClientMemory;
  /** For logs on the coordinator (hostname, user agent). */
  readonly name?: string;
  /** Model sizes this worker insists on (empty: whatever the run trains). */
  readonly modelSizes?: readonly number[];
  /** Test hook: sleep this long before each node (simulates a slow worker). Default 0. */
  readonly slowdownMs?: number;
  /** Test hook: see `ResultHook`. */
  readonly beforeResult?: ResultHook;
  /** No Welcome within this time ends the session ('timeout'), ms. Default 15000. */
  readonly welcomeTimeoutMs?: number;
  readonly onEvent?: (e: ClientEvent) => void;
  /**
   * Deflate for packed tensors (TensorEncoding.PLANES_DEFLATE; Node: `@gradhub/proto/node`
   * nodeByteCodec). With one, Hello offers the encoding, and when Welcome takes it the client packs
   * its Results' tensors and reads packed Params. Without one every tensor is raw.
   */
  readonly codec?: ByteCodec;
}

export interface WorkerClient {
  /** Send Hello. */
  start(): void;
  /** One binary message from the socket, whole or as its fragments (`isBinary` false for a text frame). */
  receive(data: Uint8Array | readonly Uint8Array[], isBinary?: boolean): void;
  /** The socket closed. */
  closed(code: number, reason: string): void;
  /** End the session on purpose: Bye{LEAVING} and close. */
  stop(): void;
  /** Resolves once, when the session ends. */
  readonly ended: Promise<SessionEnd>;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Messages at least this large measure the upload's rate (smaller ones fit the socket's buffers). */
const UPLOAD_MEASURE_BYTES = 1 << 20;

function unref(t: unknown): void {
  (t as { unref?: () => void }).unref?.();
}

const copySums = (s: NodeSums): NodeSums => ({ lossSum: s.lossSum, denomSum: s.denomSum, correct: s.correct });

/** One replica-round runner per engine (an engine outlives sessions; so does its runner). */
const runners = new WeakMap<Engine, Promise<ReplicaRunner>>();
function runnerOf(e: Engine): Promise<ReplicaRunner> {
  let r = runners.get(e);
  if (!r) {
    r = createReplicaRunner(e);
    runners.set(e, r);
  }
  return r;
}

export function createWorkerClient(opts: WorkerClientOptions): WorkerClient {
  const { socket, memory } = opts;
  let log = opts.logger;
  let welcome: WelcomeInfo | null = null;
  let engine: Engine | null = null;
  let enginePromise: Promise<Engine> | null = null;
  let maxFrame = SMALL_FRAME_BYTES;
  let ended = false;
  let lastSeen = Date.now();
  let busyUntil = 0;
  let latestSeq = 0;
  let heartbeat: ReturnType<typeof setInterval> | null = null;
  let welcomeTimer: ReturnType<typeof setTimeout> | null = null;
  let parked: BodyOf<'work'> | null = null;
  /** The version whose parts are arriving: the floats covered so far, and the parts (offset -> length). */
  let incoming: { version: number; covered: number; parts: Map<number, HeldPart>; base: number } | null = null;
  let queue: Promise<void> = Promise.resolve();
  /** The parameters copied aside on Keep, for audit Work of that version (-1: none). */
  const kept = { version: -1, data: null as Float32Array | null };
  let resolveEnded!: (e: SessionEnd) => void;
  const endedPromise = new Promise<SessionEnd>((r) => {
    resolveEnded = r;
  });

  const emit = (e: ClientEvent): void => opts.onEvent?.(e);
  /**
   * The upload's rate, bytes/s (EWMA), from large messages: the time the socket took to take them
   * (a slow link fills the send buffers, so the socket takes them at about the link's rate). Null
   * until one was measured.
   */
  const upload = {
    rate: null as number | null,
    sent(bytes: number, ms: number): void {
      if (bytes < UPLOAD_MEASURE_BYTES || ms < 1) return;
      const r = (bytes / ms) * 1000;
      upload.rate = upload.rate === null ? r : 0.5 * upload.rate + 0.5 * r;
    },
  };

  /**
   * Send one Result (the `beforeResult` hook may change it, or drop it: then it counts as sent).
   * `grad` is a view of the engine's buffer (the message's last fragment, not copied).
   */
  function sendResult(r: OutgoingResult): Promise<boolean> {
    const out = opts.beforeResult ? opts.beforeResult(r) : r;
    if (out === null) return Promise.resolve(true);
    const { samples: _samples, grad, ...fields } = out;
    const raw = new Uint8Array(grad.buffer, grad.byteOffset, grad.byteLength);
    // A packing session packs each tensor that packing makes smaller (packed.ts), always or while
    // the upload measures slow; before it was measured too (a slow link's first round is its
    // costliest to send raw; on a fast one the first packed tensor costs a fraction of a second once).
    const packing = welcome?.packed && raw.byteLength > 0 && packsNow(welcome.packBelow, upload.rate, true);
    const sendRaw = (): Promise<boolean> => send(raw.byteLength > 0 ? [resultHeader(fields, raw.byteLength), raw] : [resultHeader(fields, 0)]);
    if (!packing) return sendRaw();
    // Deflated off the event loop (Node's thread pool), so the parts already packed go out meanwhile.
    return packFloatsAsync(raw, opts.codec!).then((packed) => (packed
      ? send([resultHeader({ ...fields, encoding: gradhub.TensorEncoding.PLANES_DEFLATE }, packed.byteLength), packed])
      : sendRaw()));
  }

  function send(parts: readonly Uint8Array[]): Promise<boolean> {
    if (ended) return Promise.resolve(false);
    let bytes = 0;
    for (const p of parts) bytes += p.byteLength;
    const t0 = performance.now();
    return new Promise<boolean>((resolve) => socket.send(parts, (err) => {
      if (!err) upload.sent(bytes, performance.now() - t0);
      resolve(!err);
    }));
  }

  function end(e: SessionEnd, close?: { code: number; reason: string }): void {
    if (ended) return;
    ended = true;
    if (heartbeat) clearInterval(heartbeat);
    if (welcomeTimer) clearTimeout(welcomeTimer);
    parked = null;
    if (close) {
      try {
        socket.close(close.code, close.reason.slice(0, 120));
      } catch {
        // already closed
      }
    }
    log.info({ end: e }, 'session ended');
    emit({ type: 'end', end: e });
    resolveEnded(e);
  }

  /** The coordinator broke the protocol: tell it and close. */
  function fault(code: WireCode, message: string): void {
    if (ended) return;
    log.warn({ code: wireCodeName(code), message }, 'coordinator broke the protocol');
    socket.send([encode({ error: { code, message } })], () => {});
    end({ kind: 'error', code, codeName: wireCodeName(code), message, fromCoordinator: false }, { code: closeCodeFor(code), reason: wireCodeName(code) });
  }

  /** Run `fn` after everything queued before it (Params and Work in arrival order). */
  function enqueue(fn: () => Promise<void> | void): void {
    queue = queue.then(async () => {
      if (!ended) await fn();
    }).catch((err: unknown) => {
      if (err instanceof ProtocolError) fault(err.wireCode, err.message);
      else {
        log.error({ err }, 'worker failed');
        fault(WireCode.INTERNAL, `worker failed: ${(err as Error).message ?? String(err)}`);
      }
    });
  }

  const handlers: { [K in DecodedMessage['kind']]?: (m: BodyOf<K>, d: DecodedMessage) => void } = {
    welcome: (m) => onWelcome(m),
    reject: (m) => {
      const code = m.code ?? 0;
      end({ kind: 'rejected', code, codeName: wireCodeName(code), message: m.message ?? '' }, { code: 1000, reason: 'rejected' });
    },
    params: (m, d) => {
      if (!welcome) throw new ProtocolError(WireCode.UNEXPECTED_MESSAGE, 'Params before Welcome');
      const data = d.tail ?? (m.data ? [m.data] : []);
      enqueue(() => applyParams(m, data));
    },
    work: (m) => {
      if (!welcome) throw new ProtocolError(WireCode.UNEXPECTED_MESSAGE, 'Work before Welcome');
      if (m.audit) {
        enqueue(() => runAudit(m));
        return;
      }
      const seq = m.seq ?? 0;
      if (seq > latestSeq) latestSeq = seq;
      enqueue(() => runWork(m));
    },
    keep: (m) => {
      if (!welcome) throw new ProtocolError(WireCode.UNEXPECTED_MESSAGE, 'Keep before Welcome');
      enqueue(() => keepVersion(m.version ?? 0));
    },
    heartbeat: () => {},
    error: (m) => {
      const code = m.code ?? 0;
      log.warn({ code: wireCodeName(code), message: m.message }, 'coordinator reported an error');
      end({ kind: 'error', code, codeName: wireCodeName(code), message: m.message ?? '', fromCoordinator: true }, { code: 1000, reason: 'error received' });
    },
    bye: (m) => {
      const reason = m.reason === gradhub.ByeReason.TRAINING_DONE ? 'done' : m.reason === gradhub.ByeReason.SHUTDOWN ? 'shutdown' : 'other';
      end({ kind: 'bye', reason, message: m.message ?? '' }, { code: 1000, reason: 'bye' });
    },
  };

  function onWelcome(m: BodyOf<'welcome'>): void {
    if (welcome) throw new ProtocolError(WireCode.UNEXPECTED_MESSAGE, 'second Welcome');
    if (welcomeTimer) clearTimeout(welcomeTimer);
    const info: WelcomeInfo = {
      workerId: m.workerId ?? 0,
      runId: m.runId ?? '',
      incarnation: m.incarnation ?? '',
      sizes: [...(m.modelSizes ?? [])],
      chunk: m.chunk ?? 0,
      normalize: m.normalize ?? false,
      maxBatch: m.maxBatch ?? 0,
      maxWorkSamples: Math.max(m.maxBatch ?? 0, m.maxWorkSamples ?? 0),
      heartbeatIntervalMs: m.heartbeatIntervalMs || 5000,
      heartbeatTimeoutMs: m.heartbeatTimeoutMs || 30000,
      packed: m.tensorEncoding === gradhub.TensorEncoding.PLANES_DEFLATE,
      packBelow: m.packBelowBytesPerS ?? 0,
    };
    if (info.packed && !opts.codec) throw new ProtocolError(WireCode.MALFORMED_FRAME, 'Welcome with packed tensors, which this worker did not offer');
    if (info.sizes.length < 2 || info.chunk < 1 || info.maxBatch < 1) throw new ProtocolError(WireCode.MALFORMED_FRAME, `Welcome with model [${info.sizes.join(',')}], chunk ${info.chunk}, batch ${info.maxBatch}`);
    welcome = info;
    log = opts.logger.child({ workerId: info.workerId });
    if (memory.incarnation !== info.incarnation) {
      // A new coordinator process: its parameter versions may go back (resume from a checkpoint).
      if (memory.incarnation !== null) log.info({ previous: memory.incarnation, incarnation: info.incarnation }, 'new coordinator incarnation');
      memory.incarnation = info.incarnation;
      memory.version = -1;
      memory.parts = null;
    }
    maxFrame = frameLimits(paramCountOf(info.sizes), info.maxWorkSamples).fromCoordinator;
    log.info({ runId: info.runId, incarnation: info.incarnation, sizes: info.sizes, chunk: info.chunk, batch: info.maxBatch }, 'joined');
    enginePromise = Promise.resolve(opts.getEngine(info)).then((e) => {
      const ok = e.spec.sizes.length === info.sizes.length && e.spec.sizes.every((s, i) => s === info.sizes[i]);
      if (!ok) throw new ProtocolError(WireCode.MODEL_MISMATCH, `engine model [${e.spec.sizes.join(',')}] is not the run's [${info.sizes.join(',')}]`);
      engine = e;
      return e;
    });
    enqueue(async () => {
      await enginePromise;
    });
    heartbeat = setInterval(() => {
      const now = Date.now();
      const silent = now - Math.max(lastSeen, busyUntil);
      if (silent > info.heartbeatTimeoutMs) {
        end({ kind: 'timeout', message: `coordinator silent for ${silent} ms` }, { code: closeCodeFor(WireCode.HEARTBEAT_TIMEOUT), reason: 'HEARTBEAT_TIMEOUT' });
        return;
      }
      socket.send([encode({ heartbeat: { sentMs: now } })], () => {});
    }, info.heartbeatIntervalMs);
    unref(heartbeat);
    emit({ type: 'welcome', info });
  }

  /**
   * One part of a version's parameters (`data`: its bytes, in one or more pieces): copied into the
   * engine at its offset and checked against its checksum. The engine then holds a mix of versions,
   * so the client holds no version (-1) until every part of the new one is in; then it holds it.
   */
  async function applyParams(m: BodyOf<'params'>, data: readonly Uint8Array[]): Promise<void> {
    const e = engine ?? (await enginePromise!);
    const version = m.version ?? 0;
    const paramCount = e.params.length;
    let bytes = 0;
    for (const p of data) bytes += p.byteLength;
    const offset = m.part ? (m.part.offset ?? 0) : 0;
    const length = m.part ? (m.part.length ?? 0) : paramCount;
    const encoding = m.encoding ?? gradhub.TensorEncoding.RAW;
    const packed = encoding === gradhub.TensorEncoding.PLANES_DEFLATE;
    if (!packed && encoding !== gradhub.TensorEncoding.RAW) throw new ProtocolError(WireCode.MALFORMED_FRAME, `Params with tensor encoding ${encoding}`);
    if (packed && !welcome!.packed) throw new ProtocolError(WireCode.MALFORMED_FRAME, 'packed Params in a session that does not pack');
    if (offset + length > paramCount || length === 0 || (packed ? bytes >= 4 * length : bytes !== 4 * length)) {
      throw new ProtocolError(WireCode.MODEL_MISMATCH, `Params part [${offset}, +${length}) with ${bytes} bytes; the model has ${paramCount} parameters`);
    }
    if (memory.version > version || (memory.version === version && incoming === null)) {
      if (memory.version > version) log.warn({ version, held: memory.version }, 'ignoring older parameters from the same coordinator incarnation');
      return; // older, or a part of the version already held (sent again)
    }
    // The version held whole before this one's parts began to overwrite it: the base of packed deltas.
    if (incoming?.version !== version) incoming = { version, covered: 0, parts: new Map(), base: incoming === null ? memory.version : -1 };
    const seen = incoming.parts.get(offset);
    if (seen === undefined) {
      for (const { offset: o, length: l } of incoming.parts.values()) {
        if (offset < o + l && o < offset + length) throw new ProtocolError(WireCode.MALFORMED_FRAME, `Params part [${offset}, +${length}) overlaps part [${o}, +${l}) of v${version}`);
      }
    } else if (seen.length !== length) {
      throw new ProtocolError(WireCode.MALFORMED_FRAME, `Params part at ${offset} of v${version} with ${length} floats, earlier ${seen.length}`);
    }
    const delta = packed && (m.delta ?? false);
    if (delta && (seen !== undefined || incoming.base < 0 || incoming.base !== (m.baseVersion ?? 0))) {
      incoming = null;
      memory.version = -1;
      memory.parts = null;
      throw new ProtocolError(WireCode.BAD_CHECKSUM, `parameters v${version} [${offset}, +${length}) came as a delta from v${m.baseVersion ?? 0}, which this worker does not hold there`);
    }
    memory.version = -1; // the engine's parameters are being overwritten
    memory.parts = null;
    const region = e.params.subarray(offset, offset + length);
    const dst = new Uint8Array(region.buffer, region.byteOffset, region.byteLength);
    if (packed) {
      unpackFloats(data, length, opts.codec!, dst, delta, WireCode.MALFORMED_FRAME);
    } else {
      let at = 0;
      for (const p of data) {
        dst.set(p, at);
        at += p.byteLength;
      }
    }
    // Hashed where the parameters now lie (the kernel module's XXH64) when the backend can.
    const checksum = (e.backend.xxh64 ?? xxh64)(region);
    if (!bytesEqual(checksum, m.checksum ?? new Uint8Array(0))) {
      incoming = null;
      throw new ProtocolError(WireCode.BAD_CHECKSUM, `parameters v${version} [${offset}, +${length}) do not match their checksum`);
    }
    incoming.parts.set(offset, { offset, length, checksum });
    if (seen === undefined) incoming.covered += length;
    if (incoming.covered < paramCount) return;
    memory.parts = [...incoming.parts.values()].sort((a, b) => a.offset - b.offset);
    incoming = null;
    memory.version = version;
    log.debug({ version }, 'parameters received');
    emit({ type: 'params', version });
    if (parked && (parked.version ?? 0) === version) {
      const w = parked;
      parked = null;
      await runWork(w);
    }
  }

  /** Work's fields, checked (malformed: ProtocolError). */
  function checkedWork(m: BodyOf<'work'>): { nodes: gradhub.IWorkNode[]; pixels: Uint8Array; labels: Uint8Array; mode: gradhub.Mode; round: RoundSpec | null } {
    const nodes = m.nodes ?? [];
    const pixels = m.pixels ?? new Uint8Array(0);
    const labels = m.labels ?? new Uint8Array(0);
    const mode = m.mode ?? 0;
    if (mode !== gradhub.Mode.TRAIN && mode !== gradhub.Mode.EVAL && mode !== gradhub.Mode.ROUND) throw new ProtocolError(WireCode.MALFORMED_FRAME, `Work with mode ${mode}`);
    const round = mode === gradhub.Mode.ROUND ? roundOf(m) : null;
    const most = round ? welcome!.maxWorkSamples : welcome!.maxBatch;
    let total = 0;
    for (const n of nodes) {
      const count = n.sampleCount ?? 0;
      if ((n.hi ?? 0) <= (n.lo ?? 0) || count < 1 || count > most) throw new ProtocolError(WireCode.MALFORMED_FRAME, `Work node [${n.lo},${n.hi}) with ${count} samples`);
      total += count;
    }
    if (round) checkInnerBatches(nodes, round);
    if (nodes.length === 0 || pixels.byteLength !== total * CIFAR_PIXELS || labels.byteLength !== total) {
      throw new ProtocolError(WireCode.MALFORMED_FRAME, `Work with ${nodes.length} nodes of ${total} samples, ${pixels.byteLength} pixel bytes and ${labels.byteLength} labels`);
    }
    return { nodes, pixels, labels, mode, round };
  }

  /** Keep{version}: copy the parameters aside when that version is held whole here and now; else keep none. */
  async function keepVersion(version: number): Promise<void> {
    const e = engine ?? (await enginePromise!);
    if (memory.version !== version || incoming !== null) {
      kept.version = -1;
      return;
    }
    kept.data ??= new Float32Array(e.params.length);
    kept.data.set(e.params);
    kept.version = version;
  }

  /** Swap the engine's parameters with the kept copy (twice: back as they were). */
  function swapKept(e: Engine): void {
    const a = e.params;
    const b = kept.data!;
    for (let i = 0; i < a.length; i++) {
      const t = a[i];
      a[i] = b[i];
      b[i] = t;
    }
  }

  /**
   * Audit Work: its one node recomputed against the version it names (held, or kept on Keep) and
   * answered with one AuditResult (sums, and the xxh64 of each asked slice of the gradient).
   */
  async function runAudit(m: BodyOf<'work'>): Promise<void> {
    const e = engine ?? (await enginePromise!);
    const { nodes, pixels, labels, mode, round } = checkedWork(m);
    const paramCount = e.params.length;
    const asked = (m.auditParts ?? []).map((p) => ({ offset: p.offset ?? 0, length: p.length ?? 0 }));
    if (nodes.length !== 1 || asked.some((p) => p.length < 1 || p.offset + p.length > paramCount) || (mode === gradhub.Mode.EVAL) !== (asked.length === 0)) {
      throw new ProtocolError(WireCode.MALFORMED_FRAME, `audit Work with ${nodes.length} nodes and ${asked.length} parts to hash`);
    }
    const seq = m.seq ?? 0;
    const version = m.version ?? 0;
    const node: TreeNode = { lo: nodes[0].lo ?? 0, hi: nodes[0].hi ?? 0 };
    const current = memory.version === version && incoming === null;
    const swap = !current && kept.version === version && kept.data !== null;
    if (!current && !swap) {
      log.info({ version, held: memory.version, kept: kept.version }, 'audit of parameters neither held nor kept');
      await send([encode({ auditResult: { seq, node, held: false } })]);
      return;
    }
    const n = nodes[0].sampleCount ?? 0;
    let sums: NodeSums | null;
    let grad: Float32Array;
    if (swap) swapKept(e);
    try {
      if (round) {
        const runner = await runnerOf(e);
        sums = await runner.run(node, { ...round, pixels, labels }, { between: () => sleep(0), cancelled: () => ended });
        grad = runner.delta;
      } else {
        sums = mode === gradhub.Mode.TRAIN ? await e.computeSumsAsync(pixels, labels, n, true) : e.computeSums(pixels, labels, n, false);
        grad = e.grads;
      }
    } finally {
      if (swap) swapKept(e);
    }
    busyUntil = Date.now();
    if (!sums) return; // the session ended
    const digests = asked.map((p) => xxh64(grad.subarray(p.offset, p.offset + p.length)));
    await send([encode({ auditResult: { seq, node, held: true, lossSum: sums.lossSum, denomSum: sums.denomSum, correct: sums.correct, digests } })]);
  }

  async function runWork(m: BodyOf<'work'>): Promise<void> {
    const e = engine ?? (await enginePromise!);
    const seq = m.seq ?? 0;
    const step = m.step ?? 0;
    const version = m.version ?? 0;
    const { nodes, pixels, labels, mode, round } = checkedWork(m);
    if (seq < latestSeq) return; // the coordinator has moved on
    if (version !== memory.version) {
      log.info({ version, held: memory.version }, 'work for parameters not held: requesting them');
      parked = m;
      await send([encode({ paramsRequest: { version } })]);
      return;
    }
    const train = mode === gradhub.Mode.TRAIN;
    emit({ type: 'work', seq, step, nodes: nodes.map((n) => ({ lo: n.lo ?? 0, hi: n.hi ?? 0 })) });
    const slog = log.child({ step, seq });
    let off = 0;
    let inner = 0;
    for (const n of nodes) {
      const count = n.sampleCount ?? 0;
      const node = { lo: n.lo ?? 0, hi: n.hi ?? 0 };
      if (ended || seq < latestSeq) return;
      const t0 = Date.now(); // a simulated slowdown counts as compute time
      if (opts.slowdownMs) await sleep(opts.slowdownMs);
      if (ended || seq < latestSeq) return;
      const px = pixels.subarray(off * CIFAR_PIXELS, (off + count) * CIFAR_PIXELS);
      const lb = labels.subarray(off, off + count);
      off += count;
      const head = { seq, step, version, node };
      let done: Delivered | null;
      if (round) {
        const k = (node.hi - node.lo) * round.localSteps;
        done = await roundNode(e, head, { ...round, pixels: px, labels: lb, innerBatches: round.innerBatches.subarray(inner, inner + k) }, t0);
        inner += k;
      } else {
        done = train ? await trainNode(e, head, px, lb, count, t0) : await evalNode(e, head, px, lb, count, t0);
      }
      if (!done) return;
      slog.debug({ node: `[${node.lo},${node.hi})`, samples: count, ms: busyUntil - t0 }, 'node done');
      emit({ type: 'result', seq, step, node, samples: count, train: train || round !== null, sums: done.sums, computeMs: done.computeMs });
    }
  }

  /** Work.round, checked: the inner loop's settings and inner batch sizes. */
  function roundOf(m: BodyOf<'work'>): RoundSpec {
    const r = m.round;
    const H = r?.localSteps ?? 0;
    const sgd = {
      lr: r?.lr ?? NaN, momentum: r?.momentum ?? 0, dampening: r?.dampening ?? 0, weightDecay: r?.weightDecay ?? 0, nesterov: r?.nesterov ?? false, maximize: r?.maximize ?? false,
    };
    const finite = [sgd.lr, sgd.momentum, sgd.dampening, sgd.weightDecay].every((v) => Number.isFinite(v) && v >= 0);
    if (!r || H < 1 || !finite || (sgd.nesterov && (sgd.momentum <= 0 || sgd.dampening !== 0))) {
      throw new ProtocolError(WireCode.MALFORMED_FRAME, `ROUND Work with local steps ${H} and inner SGD ${JSON.stringify(sgd)}`);
    }
    return { localSteps: H, sgd, innerBatches: Uint32Array.from(r.innerBatches ?? []) };
  }

  /** Each node's replicas have localSteps inner batches of 1..maxBatch samples adding up to its sample count. */
  function checkInnerBatches(nodes: readonly gradhub.IWorkNode[], round: RoundSpec): void {
    let at = 0;
    for (const n of nodes) {
      const k = ((n.hi ?? 0) - (n.lo ?? 0)) * round.localSteps;
      let sum = 0;
      for (let i = at; i < at + k && i < round.innerBatches.length; i++) {
        const b = round.innerBatches[i];
        if (b < 1 || b > welcome!.maxBatch) throw new ProtocolError(WireCode.MALFORMED_FRAME, `ROUND Work with an inner batch of ${b} samples (1..${welcome!.maxBatch})`);
        sum += b;
      }
      at += k;
      if (at > round.innerBatches.length || sum !== (n.sampleCount ?? 0)) {
        throw new ProtocolError(WireCode.MALFORMED_FRAME, `ROUND Work node [${n.lo},${n.hi}): its inner batches do not add up to its ${n.sampleCount} samples`);
      }
    }
    if (at !== round.innerBatches.length) throw new ProtocolError(WireCode.MALFORMED_FRAME, `ROUND Work with ${round.innerBatches.length} inner batches, its nodes need ${at}`);
  }

  interface ResultHead {
    readonly seq: number;
    readonly step: number;
    readonly version: number;
    readonly node: { lo: number; hi: number };
  }

  /** A checked Work.round. */
  interface RoundSpec {
    readonly localSteps: number;
    readonly sgd: { lr: number; momentum: number; dampening: number; weightDecay: number; nesterov: boolean; maximize: boolean };
    readonly innerBatches: Uint32Array;
  }

  /** A node computed and sent: its sums and the engine's time on it (the 'result' event). */
  interface Delivered {
    readonly sums: NodeSums;
    readonly computeMs: number;
  }

  /** An EVAL node: its sums in one Result. Resolves once the socket took it (null if that failed). */
  async function evalNode(e: Engine, head: ResultHead, pixels: Uint8Array, labels: Uint8Array, n: number, t0: number): Promise<Delivered | null> {
    const c0 = performance.now();
    const sums = e.computeSums(pixels, labels, n, false);
    const computeMs = performance.now() - c0;
    busyUntil = Date.now();
    const r = { ...head, part: { offset: 0, length: 0 }, samples: n, lossSum: sums.lossSum, denomSum: sums.denomSum, correct: sums.correct, computeMs: busyUntil - t0, grad: new Float32Array(0) };
    return (await sendResult(r)) ? { sums: copySums(sums), computeMs } : null;
  }

  /**
   * A TRAIN node: one Result per stream part (`engine.parts`), each sent as soon as that part of
   * the gradient is final (the engine computes off this thread when its backend can, so the upload
   * of a part overlaps the rest of the backward pass), straight from the engine's gradient buffer.
   * The next node overwrites that buffer: resolves once the socket took every part (null if one
   * failed).
   */
  async function trainNode(e: Engine, head: ResultHead, pixels: Uint8Array, labels: Uint8Array, n: number, t0: number): Promise<Delivered | null> {
    const sends: Promise<boolean>[] = [];
    let sums: NodeSums | null = null;
    const sendPart = (i: number): void => {
      const { offset, length } = e.parts[i];
      const grad = e.grads.subarray(offset, offset + length);
      sends.push(sendResult({
        ...head, part: { offset, length }, samples: n, lossSum: sums!.lossSum, denomSum: sums!.denomSum, correct: sums!.correct, computeMs: Date.now() - t0, grad,
      }));
    };
    // onSums (the forward's sums) comes before any onPartGrad.
    const c0 = performance.now();
    const total = await e.computeSumsAsync(pixels, labels, n, true, {
      onSums: (s) => {
        sums = s;
      },
      onPartGrad: sendPart,
    });
    const computeMs = performance.now() - c0;
    busyUntil = Date.now();
    const results = await Promise.all(sends);
    return results.every(Boolean) ? { sums: copySums(total), computeMs } : null;
  }

  /**
   * A ROUND node: its replicas' H inner steps each (core rounds.ts, between which the event loop
   * runs: heartbeats, newer Work), then one Result per stream part of the pseudo-gradient sum.
   * Null when the session ended, a newer request made it moot, or a send failed.
   */
  async function roundNode(e: Engine, head: ResultHead, work: Parameters<ReplicaRunner['run']>[1], t0: number): Promise<Delivered | null> {
    const runner = await runnerOf(e);
    const c0 = performance.now();
    const sums = await runner.run(head.node, work, {
      between: () => sleep(0),
      cancelled: () => ended || head.seq < latestSeq,
    });
    const computeMs = performance.now() - c0;
    busyUntil = Date.now();
    if (sums === null) return null;
    // Through sendResult, as a step's parts: the same frames (and the test harness's hook sees them).
    const samples = work.pixels.byteLength / CIFAR_PIXELS;
    const sends = e.parts.map(({ offset, length }) => sendResult({
      ...head, part: { offset, length }, samples, lossSum: sums.lossSum, denomSum: sums.denomSum, correct: sums.correct, computeMs: busyUntil - t0,
      grad: runner.delta.subarray(offset, offset + length),
    }));
    return (await Promise.all(sends)).every(Boolean) ? { sums: copySums(sums), computeMs } : null;
  }

  return {
    ended: endedPromise,
    start() {
      welcomeTimer = setTimeout(() => end({ kind: 'timeout', message: 'no Welcome from the coordinator' }, { code: 1000, reason: 'no welcome' }), opts.welcomeTimeoutMs ?? 15000);
      unref(welcomeTimer);
      const caps = opts.capabilities;
      socket.send([encode({
        hello: {
          protocolVersion: gradhub.ProtocolVersion.CURRENT,
          token: opts.token,
          runtime: opts.runtime === 'browser' ? gradhub.Runtime.BROWSER : gradhub.Runtime.NODE,
          capabilities: {
            threads: caps.threads, simd: caps.simd, maxBatch: caps.maxBatch ?? 0, backend: caps.backend,
            encodings: opts.codec ? [gradhub.TensorEncoding.PLANES_DEFLATE] : [], audits: true,
          },
          modelSizes: [...(opts.modelSizes ?? [])],
          name: opts.name ?? '',
          held: memory.version >= 0 && memory.incarnation !== null && memory.parts
            ? { incarnation: memory.incarnation, version: memory.version, parts: memory.parts.map(({ offset, length }) => ({ offset, length })), checksums: memory.parts.map((p) => p.checksum) }
            : null,
        },
      })], () => {});
    },
    receive(data: Uint8Array | readonly Uint8Array[], isBinary = true) {
      if (ended) return;
      lastSeen = Date.now();
      try {
        if (!isBinary) throw new ProtocolError(WireCode.MALFORMED_FRAME, 'text frames are not part of the protocol');
        const d = decodeMessage(data instanceof Uint8Array ? [data] : data, maxFrame);
        const h = handlers[d.kind] as ((m: unknown, d: DecodedMessage) => void) | undefined;
        if (!h) throw new ProtocolError(WireCode.UNEXPECTED_MESSAGE, `unexpected ${d.kind}`);
        h(d.msg, d);
      } catch (err) {
        if (err instanceof ProtocolError) fault(err.wireCode, err.message);
        else throw err;
      }
    },
    closed(code: number, reason: string) {
      end({ kind: 'closed', code, reason });
    },
    stop() {
      if (ended) return;
      socket.send([encode({ bye: { reason: gradhub.ByeReason.LEAVING, message: 'worker stopping' } })], () => {});
      end({ kind: 'stopped' }, { code: 1000, reason: 'leaving' });
    },
  };
}
