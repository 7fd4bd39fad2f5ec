/**
 * Who is in the cluster: the handshake, liveness and the end of each worker connection.
 *
 * Contract:
 * - `attach(ws, req, trusted)` takes a socket the server accepted. Its first frame must be a Hello:
 *   protocol version, token (constant time: the trusted token makes a trusted worker, the join
 *   token a volunteer; it must be the credential the upgrade presented) and, when the worker names
 *   one, model sizes are checked; trusted workers and volunteers have their own caps
 *   (`maxTrustedWorkers`, `maxWorkers`); a failure is answered with Reject{code} and a close
 *   (4000 + code), logged at most once per code every 5 s with a count. A good Hello gets Welcome
 *   with the run's settings, and the worker is *ready*: the executor hears `joined`. Workers may
 *   join at any time; the executor decides when they get work (from the next request on, or
 *   sooner to take over a lost worker's nodes).
 * - Every message goes through `decodeMessage` (size, version, kind); a protocol fault gets
 *   Error{code} and a close. Results and ParamsRequests of ready workers go to the executor.
 *   Sockets deliver messages as their fragments (ws `binaryType: 'fragments'`): a Result whose
 *   gradient was streamed in fragments reaches the executor as those fragments, never joined
 *   (protocol.ts); `send` takes a message as parts and sends them as fragments of one message.
 * - Liveness: every `heartbeatIntervalMs` the coordinator sends a ws ping to each worker; any frame,
 *   pong or application Heartbeat (answered with a Heartbeat, for browsers that cannot ping)
 *   counts as a sign of life. A worker silent for `heartbeatTimeoutMs` (plus the executor's
 *   estimate of its outstanding compute, `busyMs`) is dropped with Error HEARTBEAT_TIMEOUT.
 *   Paused sockets (flow control) are not timed while paused.
 * - A frame past ws's hard cap (`maxPayload`, which closes with 1009) is first answered with
 *   Reject/Error OVERSIZE_FRAME and counted (`rejected.OVERSIZE_FRAME`), like the frames past the
 *   protocol's limit that decodeMessage refuses.
 * - Every end of a ready worker (close, error, timeout, kick) is reported once, as `lost`, at
 *   once (the executor reassigns its nodes); the socket is closed and cut after a short wait.
 * - `close(reason)` says Bye to everyone and closes.
 *
 * The executor is authoritative for what workers hold (`paramsVersion` is its bookkeeping);
 * membership never looks at tensors.
 */
import type { IncomingMessage } from 'node:http';
import { randomUUID } from 'node:crypto';
import type { WebSocket, RawData } from 'ws';
import type { Logger } from 'pino';
import { gradhub, unpackFloats } from '@gradhub/proto';
import { nodeByteCodec } from '@gradhub/proto/node';
import { ErrorCode, GradhubError, type ModelSpec } from '@gradhub/core';
import {
  FROM_WORKER, PROTOCOL_VERSION, ProtocolError, WireCode, closeCodeFor, decodeMessage, encode,
  type BodyOf, type DecodedMessage,
} from './protocol.js';
import { tokenMatcher } from './http-util.js';
import { RefusalLog } from './net-limits.js';
import type { WorkerRow } from './status.js';

/** Where the cluster reports what people watch (RunStatus fits): worker rows and counters. */
export interface ClusterStatusSink {
  /** Counters used: `bytes_in`, `bytes_out`, `rejected.<CODE>`, `late_results`, `results_non_finite`, `stalls`. */
  count(name: string, by?: number): void;
  upsertWorker(row: WorkerRow): void;
  removeWorker(id: string): void;
}

export interface MembershipOptions {
  readonly logger: Logger;
  /** The join token of volunteers. */
  readonly token: string;
  /** The token of trusted workers (the operator's). Default: none. */
  readonly trustedToken?: string;
  readonly spec: ModelSpec;
  readonly chunk: number;
  readonly normalize: boolean;
  /** Largest global batch of the run (workers size their engines with it). */
  readonly maxBatch: number;
  /** Most samples one Work frame carries (Welcome.max_work_samples; a round's inner batches). Default maxBatch. */
  readonly maxWorkSamples?: number;
  /** Largest frame accepted from a worker, bytes (frameLimits(...).fromWorker). */
  readonly maxFrameBytes: number;
  /** Identifies the run (stable across restarts). Default: a random UUID. */
  readonly runId?: string;
  /** Identifies this coordinator process. Default: a random UUID. */
  readonly incarnation?: string;
  /** Ping / expected heartbeat interval, ms. Default min(5000, heartbeatTimeoutMs / 3). */
  readonly heartbeatIntervalMs?: number;
  /** A worker silent this long (plus its busy estimate) is dropped, ms. Default 30000. */
  readonly heartbeatTimeoutMs?: number;
  /** A connection that has not said Hello within this time is closed, ms. Default 5000. */
  readonly helloTimeoutMs?: number;
  /** Most ready volunteers (join token); further Hellos get Reject FULL. Default 1024. */
  readonly maxWorkers?: number;
  /** Most ready trusted workers (trusted token); further Hellos get Reject FULL. Default 256. */
  readonly maxTrustedWorkers?: number;
  /** Optional: counts bytes and rejected frames (the executor reports the worker rows). */
  readonly status?: ClusterStatusSink;
  /**
   * Packed tensors (TensorEncoding.PLANES_DEFLATE) with workers that can: 'on' always, 'auto'
   * while a link measures slower than `PACK_BELOW_BYTES_PER_S`, 'off' (default) never.
   */
  readonly packTensors?: PackTensors;
}

/** When sessions pack their tensors (MembershipOptions.packTensors). */
export type PackTensors = 'on' | 'auto' | 'off';

/**
 * 'auto' packs a tensor while the link it crosses measures below this (bytes/s: 250 Mbit/s).
 * Packing and unpacking 42 MB cost about 0.5 s of one core here and save about 45% of the bytes,
 * which pays below about 300 Mbit/s.
 */
export const PACK_BELOW_BYTES_PER_S = 31_250_000;

export type Runtime = 'node' | 'browser';

/** Parameters a reconnecting worker holds (Hello.held): parts in flat order with their checksums. */
export interface HeldParams {
  readonly incarnation: string;
  readonly version: number;
  readonly parts: readonly { readonly offset: number; readonly length: number; readonly checksum: Uint8Array }[];
}

/** Hello.held as the executor may trust its shape: at most `maxParts` parts, 8-byte checksums; else null. */
function heldOf(h: gradhub.IHeldParams | null | undefined, maxParts: number): HeldParams | null {
  const parts = h?.parts ?? [];
  const sums = h?.checksums ?? [];
  if (!h || parts.length === 0 || parts.length > maxParts || sums.length !== parts.length || sums.some((c) => c.byteLength !== 8)) return null;
  return {
    incarnation: (h.incarnation ?? '').slice(0, 100),
    version: h.version ?? 0,
    parts: parts.map((p, i) => ({ offset: p.offset ?? 0, length: p.length ?? 0, checksum: sums[i] })),
  };
}

/** A worker connection, as the executor sees it. */
export interface WorkerConn {
  readonly id: number;
  readonly name: string;
  readonly runtime: Runtime;
  /** `audits`: it keeps a version on Keep and answers audit Work (remote-audit.ts). */
  readonly capabilities: { readonly threads: number; readonly simd: boolean; readonly maxBatch: number; readonly backend: string; readonly audits: boolean };
  readonly logger: Logger;
  /** The executor's bookkeeping: the parameter version this worker was last sent (-1: none). */
  paramsVersion: number;
  /** What the worker said in Hello it still holds from an earlier session (null: nothing, or malformed). */
  readonly held: HeldParams | null;
  /** Bytes queued on the socket and not yet written. */
  readonly bufferedAmount: number;
  /** True once the worker is gone (lost has been reported). */
  readonly gone: boolean;
  /** Bytes received from / sent to this worker. */
  readonly bytesIn: number;
  readonly bytesOut: number;
  /** ms since the epoch of the last sign of life. */
  readonly lastSeen: number;
  /** Remote address, for people (and per-address accounting). */
  readonly address: string;
  /** Joined with the trusted token (a worker the operator runs), not the public join token. */
  readonly trusted: boolean;
  /** This session may pack its tensors (Welcome.tensor_encoding PLANES_DEFLATE): Params may go packed, Results may come packed. */
  readonly packed: boolean;
  /** In a packing session: pack Params to it only while its measured bandwidth is below this, bytes/s (0: always). */
  readonly packBelow: number;
  /**
   * Send one message, given whole or as parts (sent as the fragments of one message, no copy: the
   * parts must stay unchanged until the promise settles); resolves true once written to the
   * socket, false if the socket failed.
   */
  send(frame: Uint8Array | readonly Uint8Array[]): Promise<boolean>;
  /** Stop reading this socket (flow control); results stay in TCP buffers. */
  pause(): void;
  resume(): void;
  readonly paused: boolean;
  /** Fault: send Error{code, message}, close with 4000 + code, report lost. */
  kick(code: WireCode, message: string): void;
}

export interface MembershipHandlers {
  joined(w: WorkerConn): void;
  lost(w: WorkerConn, reason: string): void;
  /** A Result; `grad` is its gradient bytes, in one or more pieces (views of the received fragments). */
  result(w: WorkerConn, msg: BodyOf<'result'>, grad: readonly Uint8Array[]): void;
  paramsRequest(w: WorkerConn, version: number): void;
  /** An AuditResult (remote-audit.ts); absent: one is unexpected. */
  auditResult?(w: WorkerConn, msg: BodyOf<'auditResult'>): void;
}

/** Loopback (127.0.0.0/8, ::1) or this machine's Unix socket: an address honest local workers share. */
const isLocalAddress = (a: string): boolean => a.startsWith('127.') || a === '::1' || a.startsWith('::ffff:127.') || (!a.includes('.') && !a.includes(':'));

const runtimeName = (r: gradhub.Runtime | null | undefined): Runtime => (r === gradhub.Runtime.BROWSER ? 'browser' : 'node');

interface Conn extends WorkerConn {
  ws: WebSocket;
  trusted: boolean;
  packed: boolean;
  packBelow: number;
  /** The upgrade's credential (server.ts), undefined when there was none to check. */
  readonly upgradeTrusted: boolean | undefined;
  state: 'hello' | 'ready' | 'gone';
  lastSeen: number;
  bytesIn: number;
  bytesOut: number;
  pausedAt: number;
  helloTimer: NodeJS.Timeout | null;
}

export class Membership {
  readonly runId: string;
  readonly incarnation: string;
  private readonly opts: MembershipOptions;
  private readonly log: Logger;
  private readonly conns = new Set<Conn>();
  /** Proven cheaters' names and addresses (ban). */
  private readonly banned = { names: new Set<string>(), addresses: new Set<string>() };
  private readonly ready = new Map<number, Conn>();
  private nextId = 1;
  private handlers: MembershipHandlers | null = null;
  private readonly leftListeners: ((workerId: number) => void)[] = [];
  private busyMs: (workerId: number) => number = () => 0;
  private readonly waiters: { min: number; resolve: () => void; reject: (e: Error) => void }[] = [];
  private readonly timer: NodeJS.Timeout;
  private closed = false;
  private readonly interval: number;
  private readonly timeout: number;
  private readonly helloTimeout: number;
  private readonly maxWorkers: number;
  private readonly maxTrustedWorkers: number;
  private readonly joinTokenMatches: (t: string | null | undefined) => boolean;
  private readonly trustedTokenMatches: (t: string | null | undefined) => boolean;
  private readonly rejects: RefusalLog;

  constructor(opts: MembershipOptions) {
    this.opts = opts;
    this.runId = opts.runId ?? randomUUID();
    this.incarnation = opts.incarnation ?? randomUUID();
    this.timeout = opts.heartbeatTimeoutMs ?? 30000;
    this.interval = opts.heartbeatIntervalMs ?? Math.max(1, Math.min(5000, Math.floor(this.timeout / 3)));
    this.helloTimeout = opts.helloTimeoutMs ?? 5000;
    this.maxWorkers = opts.maxWorkers ?? 1024;
    this.maxTrustedWorkers = opts.maxTrustedWorkers ?? 256;
    for (const [k, v] of [['heartbeatIntervalMs', this.interval], ['heartbeatTimeoutMs', this.timeout], ['helloTimeoutMs', this.helloTimeout], ['maxWorkers', this.maxWorkers], ['maxTrustedWorkers', this.maxTrustedWorkers]] as const) {
      if (!Number.isInteger(v) || v < 1) throw new GradhubError(ErrorCode.E_USAGE, `${k} must be a positive integer, got ${v}`);
    }
    if (this.timeout <= this.interval) throw new GradhubError(ErrorCode.E_USAGE, `heartbeatTimeoutMs (${this.timeout}) must exceed heartbeatIntervalMs (${this.interval})`);
    this.log = opts.logger.child({ module: 'membership' });
    this.joinTokenMatches = tokenMatcher(opts.token);
    this.trustedTokenMatches = opts.trustedToken === undefined ? () => false : tokenMatcher(opts.trustedToken);
    this.rejects = new RefusalLog((code, count, fields) => this.log.warn({ ...fields, code, count }, count === 1 ? 'worker rejected' : `${count} workers rejected`));
    this.timer = setInterval(() => this.tick(), this.interval);
    this.timer.unref();
  }

  /** Set the executor's handlers (once, before workers arrive). */
  setHandlers(h: MembershipHandlers, busyMs?: (workerId: number) => number): void {
    this.handlers = h;
    if (busyMs) this.busyMs = busyMs;
  }

  /** Ready workers, by id. */
  workers(): WorkerConn[] {
    return [...this.ready.values()];
  }

  get size(): number {
    return this.ready.size;
  }

  /** Resolves when at least `min` workers are ready; rejects with E_NO_WORKERS after `timeoutMs`. */
  waitForWorkers(min: number, timeoutMs?: number): Promise<void> {
    if (this.closed) return Promise.reject(new GradhubError(ErrorCode.E_CLOSED, 'membership is closed'));
    if (this.ready.size >= min) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      let t: NodeJS.Timeout | null = null;
      const w = {
        min,
        resolve: () => {
          if (t) clearTimeout(t);
          resolve();
        },
        reject: (e: Error) => {
          if (t) clearTimeout(t);
          reject(e);
        },
      };
      this.waiters.push(w);
      if (timeoutMs !== undefined) {
        t = setTimeout(() => {
          const i = this.waiters.indexOf(w);
          if (i >= 0) this.waiters.splice(i, 1);
          reject(new GradhubError(ErrorCode.E_NO_WORKERS, `only ${this.ready.size} of ${min} workers joined within ${timeoutMs} ms`));
        }, timeoutMs);
      }
    });
  }

  /**
   * Take a socket the server accepted; `trusted`: its upgrade presented the trusted token (the
   * Hello must present the same credential). Undefined (no server in front): the Hello decides.
   */
  attach(ws: WebSocket, req?: IncomingMessage, trusted?: boolean): void {
    if (this.closed) {
      ws.close(1001, 'coordinator shutting down');
      return;
    }
    const id = this.nextId++;
    const logger = this.opts.logger.child({ workerId: id });
    const self = this;
    const conn: Conn = {
      id,
      name: '',
      runtime: 'node',
      capabilities: { threads: 1, simd: false, maxBatch: 0, backend: '', audits: false },
      logger,
      paramsVersion: -1,
      held: null,
      get bufferedAmount() {
        return ws.bufferedAmount;
      },
      get gone() {
        return conn.state === 'gone';
      },
      ws,
      state: 'hello',
      lastSeen: Date.now(),
      bytesIn: 0,
      bytesOut: 0,
      address: req === undefined ? '' : req.socket.remoteAddress ?? 'this machine (Unix socket)',
      trusted: false,
      packed: false,
      packBelow: 0,
      upgradeTrusted: trusted,
      pausedAt: 0,
      helloTimer: null,
      send(frame: Uint8Array | readonly Uint8Array[]): Promise<boolean> {
        if (conn.state === 'gone' || ws.readyState !== ws.OPEN) return Promise.resolve(false);
        const parts = frame instanceof Uint8Array ? [frame] : frame.filter((p, i) => p.byteLength > 0 || i === frame.length - 1);
        let bytes = 0;
        for (const p of parts) bytes += p.byteLength;
        conn.bytesOut += bytes;
        self.opts.status?.count('bytes_out', bytes);
        return new Promise<boolean>((resolve) => {
          const last = parts.length - 1;
          // Synchronously, so no other message can come between the fragments.
          for (let i = 0; i < last; i++) ws.send(parts[i], { binary: true, fin: false });
          ws.send(parts[last], { binary: true, fin: true }, (err) => resolve(!err));
        });
      },
      pause() {
        if (conn.paused || conn.state === 'gone') return;
        conn.pausedAt = Date.now();
        ws.pause();
      },
      resume() {
        if (!conn.paused) return;
        conn.pausedAt = 0;
        conn.lastSeen = Date.now();
        ws.resume();
      },
      get paused() {
        return conn.pausedAt !== 0;
      },
      kick(code: WireCode, message: string) {
        self.fault(conn, code, message, conn.state === 'hello' ? 'reject' : 'error');
      },
    };
    this.conns.add(conn);
    logger.debug({ remote: req?.socket.remoteAddress }, 'connection opened');
    conn.helloTimer = setTimeout(() => this.fault(conn, WireCode.UNEXPECTED_MESSAGE, `no Hello within ${this.helloTimeout} ms`, 'error'), this.helloTimeout);
    conn.helloTimer.unref();

    // ws answers a frame past maxPayload with a 1009 close and nothing else; its receiver reports the
    // error before ws closes, so this listener (first in line) can still say why and count it.
    const receiver = (ws as unknown as { _receiver?: { prependListener?: (e: 'error', fn: (err: Error & { code?: string }) => void) => void } })._receiver;
    receiver?.prependListener?.('error', (err) => {
      if (err.code !== 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH' || conn.state === 'gone' || ws.readyState !== ws.OPEN) return;
      this.opts.status?.count('rejected.OVERSIZE_FRAME');
      const message = `frame larger than ${this.opts.maxFrameBytes} bytes (closed at ws's hard cap)`;
      this.noteFault(conn, WireCode.OVERSIZE_FRAME, message, conn.state === 'hello' ? 'reject' : 'error');
      const body = { code: WireCode.OVERSIZE_FRAME, message };
      ws.send(conn.state === 'hello' ? encode({ reject: body }) : encode({ error: body }), { binary: true }, () => {});
    });
    ws.binaryType = 'fragments';
    ws.on('message', (data: RawData, isBinary: boolean) => this.onFrame(conn, data, isBinary));
    ws.on('pong', () => {
      conn.lastSeen = Date.now();
    });
    ws.on('ping', () => {
      conn.lastSeen = Date.now();
    });
    ws.on('error', (err) => {
      const e = { message: err.message, code: (err as { code?: string }).code };
      if (conn.state === 'hello') this.rejects.note('socket error', { workerId: id, remote: conn.address, err: e }, Date.now());
      else logger.warn({ err: e }, 'socket error');
    });
    ws.on('close', (code: number, reason: Buffer) => this.gone(conn, `socket closed (${code}${reason.length ? ` ${reason.toString()}` : ''})`));
  }

  private onFrame(conn: Conn, data: RawData, isBinary: boolean): void {
    if (conn.state === 'gone') return;
    conn.lastSeen = Date.now();
    let decoded: DecodedMessage;
    try {
      if (!isBinary) throw new ProtocolError(WireCode.MALFORMED_FRAME, 'text frames are not part of the protocol');
      const pieces: readonly Uint8Array[] = Array.isArray(data) ? data : [data instanceof ArrayBuffer ? new Uint8Array(data) : data];
      let bytes = 0;
      for (const p of pieces) bytes += p.byteLength;
      conn.bytesIn += bytes;
      this.opts.status?.count('bytes_in', bytes);
      decoded = decodeMessage(pieces, this.opts.maxFrameBytes, FROM_WORKER);
    } catch (err) {
      if (err instanceof ProtocolError) {
        this.fault(conn, err.wireCode, err.message, conn.state === 'hello' ? 'reject' : 'error');
        return;
      }
      throw err;
    }
    if (conn.state === 'hello') {
      if (decoded.kind !== 'hello') {
        this.fault(conn, WireCode.UNEXPECTED_MESSAGE, `expected Hello first, got ${decoded.kind}`, 'reject');
        return;
      }
      this.onHello(conn, decoded.msg);
      return;
    }
    const handle = this.readyHandlers[decoded.kind];
    if (!handle) {
      this.fault(conn, WireCode.UNEXPECTED_MESSAGE, `unexpected ${decoded.kind} from a joined worker`, 'error');
      return;
    }
    try {
      (handle as (c: Conn, m: unknown, d: DecodedMessage) => void)(conn, decoded.msg, decoded);
    } catch (err) {
      // A bug on this side: say so, drop this worker (its nodes go elsewhere), keep serving the others.
      conn.logger.error({ err }, `handling a ${decoded.kind} failed`);
      this.fault(conn, WireCode.INTERNAL, `the coordinator failed handling a ${decoded.kind}`, 'error');
    }
  }

  /** Call an executor handler; a throw is logged, never allowed to take the process down. */
  private notify(conn: Conn, what: string, fn: () => void): void {
    try {
      fn();
    } catch (err) {
      conn.logger.error({ err }, `${what} handler failed`);
    }
  }

  /** What a ready worker may send, by body kind. */
  private readonly readyHandlers: { [K in DecodedMessage['kind']]?: (c: Conn, m: BodyOf<K>, d: DecodedMessage) => void } = {
    result: (c, m, d) => {
      const grad = this.unpackResult(c, m, d.tail ?? (m.grad ? [m.grad] : []));
      if (grad) this.handlers?.result(c, m, grad);
    },
    paramsRequest: (c, m) => this.handlers?.paramsRequest(c, m.version ?? 0),
    auditResult: (c, m) => {
      if (this.handlers?.auditResult) this.handlers.auditResult(c, m);
      else this.fault(c, WireCode.UNEXPECTED_MESSAGE, 'an AuditResult, though no audit was sent', 'error');
    },
    heartbeat: (c) => {
      void c.send(encode({ heartbeat: { sentMs: Date.now() } }));
    },
    error: (c, m) => {
      c.logger.warn({ code: gradhub.ErrorCode[m.code ?? 0], message: m.message }, 'worker reported an error');
      this.closeConn(c, 1000, 'peer error');
    },
    bye: (c, m) => {
      c.logger.info({ reason: gradhub.ByeReason[m.reason ?? 0], message: m.message }, 'worker said bye');
      this.closeConn(c, 1000, 'bye');
    },
  };

  /**
   * Ban a worker proven to cheat (audit.ts) for the run: its connection is closed with BANNED, and
   * its name and its address are refused from now on. Not a loopback or Unix-socket address
   * (honest local workers share it), and never the shared join token. False if `id` is not here.
   */
  ban(id: number, reason: string): boolean {
    const conn = [...this.conns].find((c) => c.id === id);
    if (!conn) return false;
    if (conn.name) this.banned.names.add(conn.name);
    if (conn.address && !isLocalAddress(conn.address)) this.banned.addresses.add(conn.address);
    this.opts.status?.count('bans');
    conn.logger.warn({ workerName: conn.name, address: conn.address, reason }, 'worker banned: proven to cheat');
    if (conn.state !== 'gone') conn.kick(WireCode.BANNED, `proven to cheat: ${reason}`.slice(0, 500));
    return true;
  }

  private isBanned(name: string, address: string): boolean {
    return (name !== '' && this.banned.names.has(name)) || this.banned.addresses.has(address);
  }

  private onHello(conn: Conn, hello: BodyOf<'hello'>): void {
    if (conn.helloTimer) clearTimeout(conn.helloTimer);
    conn.helloTimer = null;
    const sizes = this.opts.spec.sizes;
    const want = hello.modelSizes ?? [];
    const maxBatch = hello.capabilities?.maxBatch ?? 0;
    let problem: [WireCode, string] | null = null;
    const trusted = this.trustedTokenMatches(hello.token);
    const classFull = trusted
      ? this.countReady(true) >= this.maxTrustedWorkers && `the coordinator already has ${this.maxTrustedWorkers} trusted workers`
      : this.countReady(false) >= this.maxWorkers && `the coordinator already has ${this.maxWorkers} volunteer workers`;
    if ((hello.protocolVersion ?? 0) !== PROTOCOL_VERSION) {
      problem = [WireCode.BAD_VERSION, `worker speaks protocol ${hello.protocolVersion}, coordinator ${PROTOCOL_VERSION}`];
    } else if (!trusted && !this.joinTokenMatches(hello.token)) {
      problem = [WireCode.BAD_TOKEN, 'wrong join token'];
    } else if (conn.upgradeTrusted !== undefined && conn.upgradeTrusted !== trusted) {
      problem = [WireCode.BAD_TOKEN, 'the Hello presents another token than the connection did'];
    } else if (this.isBanned((hello.name ?? '').slice(0, 200), conn.address)) {
      problem = [WireCode.BANNED, 'this worker was proven to cheat and is banned from this run'];
    } else if (want.length > 0 && (want.length !== sizes.length || want.some((s, i) => s !== sizes[i]))) {
      problem = [WireCode.MODEL_MISMATCH, `worker wants model ${want.join(',')}, the run trains ${sizes.join(',')}`];
    } else if (maxBatch > 0 && maxBatch < this.opts.chunk) {
      problem = [WireCode.MODEL_MISMATCH, `worker takes at most ${maxBatch} samples, a chunk has ${this.opts.chunk}`];
    } else if (classFull) {
      problem = [WireCode.FULL, classFull];
    }
    if (problem) {
      this.fault(conn, problem[0], problem[1], 'reject');
      return;
    }
    const caps = hello.capabilities;
    const pack = this.opts.packTensors ?? 'off';
    const packed = pack !== 'off' && (caps?.encodings ?? []).includes(gradhub.TensorEncoding.PLANES_DEFLATE);
    const packBelow = packed && pack === 'auto' ? PACK_BELOW_BYTES_PER_S : 0;
    Object.assign(conn, {
      trusted,
      packed,
      packBelow,
      name: (hello.name ?? '').slice(0, 200),
      runtime: runtimeName(hello.runtime),
      capabilities: { threads: caps?.threads ?? 1, simd: caps?.simd ?? false, maxBatch, backend: (caps?.backend ?? '').slice(0, 40), audits: caps?.audits ?? false },
      held: heldOf(hello.held, this.opts.spec.layers.length * 4096),
    });
    const welcome = encode({
      welcome: {
        workerId: conn.id,
        runId: this.runId,
        incarnation: this.incarnation,
        modelSizes: [...sizes],
        chunk: this.opts.chunk,
        normalize: this.opts.normalize,
        maxBatch: this.opts.maxBatch,
        maxWorkSamples: Math.max(this.opts.maxBatch, this.opts.maxWorkSamples ?? 0),
        heartbeatIntervalMs: this.interval,
        heartbeatTimeoutMs: this.timeout,
        tensorEncoding: packed ? gradhub.TensorEncoding.PLANES_DEFLATE : gradhub.TensorEncoding.RAW,
        packBelowBytesPerS: packBelow,
      },
    });
    void conn.send(welcome);
    conn.state = 'ready';
    this.ready.set(conn.id, conn);
    conn.logger.info({ workerName: conn.name, runtime: conn.runtime, trusted, packed, remote: conn.address, capabilities: conn.capabilities, workers: this.ready.size }, 'worker joined');
    this.notify(conn, 'joined', () => this.handlers?.joined(conn));
    for (let i = this.waiters.length - 1; i >= 0; i--) {
      if (this.ready.size >= this.waiters[i].min) this.waiters.splice(i, 1)[0].resolve();
    }
  }

  /** Ready workers of one class. */
  private countReady(trusted: boolean): number {
    let n = 0;
    for (const c of this.ready.values()) if (c.trusted === trusted) n++;
    return n;
  }

  /**
   * Log a fault: those of connections that have not joined (anyone can cause them, as often as they
   * like: a rejected Hello, no Hello in time) through the rate-limited log.
   */
  private noteFault(conn: Conn, code: WireCode, message: string, as: 'reject' | 'error'): void {
    if (as === 'reject' || conn.state === 'hello') this.rejects.note(gradhub.ErrorCode[code] ?? String(code), { workerId: conn.id, remote: conn.address, message }, Date.now());
    else conn.logger.warn({ code: gradhub.ErrorCode[code], message }, 'worker dropped for a protocol fault');
  }

  /** A peer fault: tell it (Reject before Welcome, Error after), close, report. */
  private fault(conn: Conn, code: WireCode, message: string, as: 'reject' | 'error'): void {
    if (conn.state === 'gone') return;
    this.noteFault(conn, code, message, as);
    if (code !== WireCode.HEARTBEAT_TIMEOUT) this.opts.status?.count(`rejected.${gradhub.ErrorCode[code]}`);
    const frame = as === 'reject' ? encode({ reject: { code, message } }) : encode({ error: { code, message } });
    if (conn.ws.readyState === conn.ws.OPEN) conn.ws.send(frame, { binary: true }, () => {});
    this.closeConn(conn, closeCodeFor(code), gradhub.ErrorCode[code] ?? 'error');
  }

  /**
   * A Result's gradient bytes as raw float32 bytes: as they came (RAW), or unpacked when this
   * session packs (TensorEncoding.PLANES_DEFLATE; bounded by the part's length, never more). Null
   * after faulting the worker: an encoding its session did not agree on, a part outside the
   * model, or bytes that are not a packed tensor of the part's length.
   */
  private unpackResult(c: Conn, m: BodyOf<'result'>, grad: readonly Uint8Array[]): readonly Uint8Array[] | null {
    const encoding = m.encoding ?? gradhub.TensorEncoding.RAW;
    if (encoding === gradhub.TensorEncoding.RAW) return grad;
    if (encoding !== gradhub.TensorEncoding.PLANES_DEFLATE || !c.packed) {
      this.fault(c, WireCode.MALFORMED_FRAME, `a Result with tensor encoding ${encoding}, which this session did not agree on`, 'error');
      return null;
    }
    const offset = m.part?.offset ?? 0;
    const length = m.part?.length ?? 0;
    if (offset + length > this.opts.spec.paramCount) {
      this.fault(c, WireCode.BAD_GRADIENT_LENGTH, `a packed Result for part [${offset}, +${length}) outside the model's ${this.opts.spec.paramCount} parameters`, 'error');
      return null;
    }
    const out = new Uint8Array(4 * length);
    try {
      unpackFloats(grad, length, nodeByteCodec, out, false);
    } catch (err) {
      if (!(err instanceof ProtocolError)) throw err;
      this.fault(c, err.wireCode, err.message, 'error');
      return null;
    }
    return [out];
  }

  /** Close a connection (after any frame already queued) and report it gone. */
  private closeConn(conn: Conn, code: number, reason: string): void {
    if (conn.paused) conn.ws.resume();
    if (conn.ws.readyState === conn.ws.OPEN || conn.ws.readyState === conn.ws.CONNECTING) conn.ws.close(code, reason.slice(0, 120));
    const cut = setTimeout(() => conn.ws.terminate(), 2000);
    cut.unref();
    this.gone(conn, reason);
  }

  /** Call `fn` with the id of each ready worker that leaves (after the executor's `lost`). */
  onLeft(fn: (workerId: number) => void): void {
    this.leftListeners.push(fn);
  }

  private gone(conn: Conn, reason: string): void {
    if (conn.state === 'gone') return;
    const wasReady = conn.state === 'ready';
    conn.state = 'gone';
    if (conn.helloTimer) clearTimeout(conn.helloTimer);
    this.conns.delete(conn);
    this.ready.delete(conn.id);
    if (wasReady) {
      conn.logger.info({ reason, workers: this.ready.size }, 'worker left');
      this.notify(conn, 'lost', () => this.handlers?.lost(conn, reason));
      for (const fn of this.leftListeners) this.notify(conn, 'left', () => fn(conn.id));
    }
  }

  /** Heartbeat: ping everyone, drop the silent. */
  private tick(): void {
    const now = Date.now();
    this.rejects.flush(now);
    for (const conn of this.conns) {
      if (conn.state !== 'ready' || conn.paused) continue;
      const deadline = this.timeout + Math.max(0, this.busyMs(conn.id));
      if (now - conn.lastSeen > deadline) {
        this.fault(conn, WireCode.HEARTBEAT_TIMEOUT, `silent for ${now - conn.lastSeen} ms (limit ${deadline} ms)`, 'error');
        conn.ws.terminate();
        continue;
      }
      try {
        conn.ws.ping();
      } catch {
        // The socket is closing; its close event reports it.
      }
    }
  }

  /** Say Bye to every worker and close their sockets. */
  async close(reason: gradhub.ByeReason = gradhub.ByeReason.SHUTDOWN, message = ''): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    this.rejects.flush(Number.POSITIVE_INFINITY);
    for (const w of this.waiters.splice(0)) w.reject(new GradhubError(ErrorCode.E_CLOSED, 'the coordinator closed while waiting for workers'));
    const bye = encode({ bye: { reason, message } });
    await Promise.all([...this.conns].map(async (c) => {
      // A worker that does not read its socket does not hold the shutdown up for long.
      if (c.state === 'ready') await Promise.race([c.send(bye), new Promise((r) => setTimeout(r, 1000).unref())]);
      this.closeConn(c, 1000, 'bye');
    }));
  }
}
