/**
 * The worker's session with its coordinator, shared by the Node worker (node-worker.ts) and the
 * browser worker (browser/worker-entry.ts): the engine it keeps, one connection attempt (a socket,
 * the protocol client on it: client.ts), the reconnect loop (backoff.ts) and the final answers
 * (when to give up). What differs between runtimes comes in as options: how to open a socket
 * (`openSocket`: ws with headers in Node, a browser WebSocket with the token in the URL), how to
 * make a compute backend (`createBackend`: worker_threads or nested Web Workers), how to ask
 * whether the token is good when a connection fails (`tokenAccepted`: only browsers, which cannot
 * see an HTTP 401), and what to tell the user (`onAttempt`, `onRetry`, `onEvent`, the logger).
 * Runtime-neutral: no Node or DOM API.
 *
 * Contract:
 * - Engine: built once per run settings (model sizes, chunk, normalize, max batch) and kept across
 *   sessions with the parameters it holds (`memory`: the next Hello names them, so a coordinator
 *   need not send them again). An engine replaced by another run's settings has its backend
 *   closed, and `close()` closes the last one. An engine that cannot be built (no memory for the
 *   model, no kernels) is final: retrying would not help.
 * - `start()` runs: connect, Hello, the session until it ends; then the final answers table
 *   (`finalAnswer`, and the order below) or a reconnect after a delay (`Backoff`: exponential with
 *   full jitter, reset by each Welcome; once the grace period passes without a Welcome: 'gone').
 *   After each attempt, in order: stopped (stop/kill) -> 'stopped'; the engine could not be built
 *   -> 'engine-failed'; Bye TRAINING_DONE -> 'done'; the session was stopped -> 'stopped'; a URL
 *   that cannot be opened -> 'bad-url'; HTTP 401 or Reject BAD_TOKEN -> 'refused-token'; any other
 *   Reject but FULL -> 'rejected'; a connection that failed while `tokenAccepted` answers false ->
 *   'refused-token'; else reconnect (FULL, closed, silent coordinator, Bye SHUTDOWN, a protocol
 *   error, HTTP 5xx, no connection).
 * - `stop()` leaves politely (Bye LEAVING when in a session, else drops the attempt) and resolves
 *   once the socket has closed; `kill()` cuts the socket like a crash. Either ends the run with
 *   'stopped'; the engine stays (a later `start()` rejoins as a new worker: the browser's resume).
 */
import { createEngine, engineFloats, modelSpec, type Backend, type Engine } from '@gradhub/core';
import { gradhub } from '@gradhub/proto';
import { Backoff, WakeableSleep, describeSessionEnd, type BackoffOptions } from './backoff.js';
import {
  createWorkerClient, type ClientEvent, type ClientMemory, type ClientSocket, type SessionEnd, type WelcomeInfo, type WorkerClient,
  type WorkerClientOptions, type WorkerLogger,
} from './client.js';

/** How a connection attempt failed before its socket opened. */
export type ConnectFailure =
  /** The upgrade was answered with this HTTP status (Node sees it; a browser cannot). */
  | { readonly kind: 'http'; readonly status: number }
  /** No connection, closed before it opened, or not open in time; the message says which. */
  | { readonly kind: 'connect-failed'; readonly message: string }
  /** The URL cannot be opened at all (`openSocket` threw). */
  | { readonly kind: 'bad-url'; readonly message: string };

/** How one attempt ended: its session's end, or a failure to connect. */
export type AttemptEnd = SessionEnd | ConnectFailure;

/** What the runtime tells the session about the socket it opened. */
export interface SocketEvents {
  /** The socket is open. */
  open(): void;
  /** One message, whole or as its fragments (`isBinary` false for a text frame). */
  message(data: Uint8Array | readonly Uint8Array[], isBinary: boolean): void;
  /** The open socket closed. */
  close(code: number, reason: string): void;
  /** The socket failed before it opened (the first call counts). */
  failed(f: ConnectFailure): void;
}

/** One socket as the runtime opened it. */
export interface SessionSocket {
  /** The client's transport over it. */
  readonly client: ClientSocket;
  /** Cut it now, without waiting for the peer (ws `terminate()`; a browser's `close()`). */
  terminate(): void;
}

/** A final answer: why the run ended. */
export type SessionOutcome =
  /** The coordinator said training is over (Bye TRAINING_DONE). */
  | { readonly kind: 'done' }
  /** `stop()` or `kill()`. */
  | { readonly kind: 'stopped' }
  /** The coordinator refused the join token (HTTP 401, Reject BAD_TOKEN, or `tokenAccepted` false). */
  | { readonly kind: 'refused-token' }
  /** The coordinator rejected this worker for another reason than FULL (protocol version, model). */
  | { readonly kind: 'rejected'; readonly code: number; readonly codeName: string; readonly message: string }
  /** The engine for the run's model could not be built; `error` is why. */
  | { readonly kind: 'engine-failed'; readonly error: unknown; readonly message: string }
  /** The URL cannot be opened. */
  | { readonly kind: 'bad-url'; readonly message: string }
  /** No coordinator welcomed this worker for the whole grace period; `last` says how the last attempt ended. */
  | { readonly kind: 'gone'; readonly waitedMs: number; readonly last: string };

export interface WorkerSessionOptions {
  /** Open one socket to the coordinator and report what happens to it through `events`; throw for a URL that cannot be opened. */
  readonly openSocket: (events: SocketEvents) => SessionSocket;
  /** A compute backend for `capacityFloats` floats (close it with `backend.close?.()`). */
  readonly createBackend: (capacityFloats: number) => Promise<Backend>;
  /** Hello's capabilities, asked at each connection (a thread count may drop when helpers fail to start). */
  readonly capabilities: () => WorkerClientOptions['capabilities'];
  readonly token: string;
  readonly runtime: 'node' | 'browser';
  /** For the client and the reconnect lines. */
  readonly logger: WorkerLogger;
  /** For logs on the coordinator (hostname, user agent). */
  readonly name?: string;
  /** Test hook (adversary tests only): see client.ts `ResultHook`. */
  readonly beforeResult?: WorkerClientOptions['beforeResult'];
  /** See WorkerClientOptions.codec (packed tensors; none in browsers yet). */
  readonly codec?: WorkerClientOptions['codec'];
  /** Test hook: sleep this long before each node. Default 0. */
  readonly slowdownMs?: number;
  /** Reconnect pacing (ms). */
  readonly backoff: BackoffOptions;
  /** After a failed connection: does the coordinator take the token (null: cannot tell)? Absent: not asked. */
  readonly tokenAccepted?: () => Promise<boolean | null>;
  /** A connection attempt is about to start. */
  readonly onAttempt?: () => void;
  /** The attempt ended without a final answer: the next one starts in `delayMs`; `last` says how it ended. */
  readonly onRetry?: (delayMs: number, last: string) => void;
  /** The protocol client's events. */
  readonly onEvent?: (e: ClientEvent) => void;
}

/** One run of the session: from `start()` to its final answer. */
export interface SessionRun {
  /** The final answer (rejects only when one of the options' callbacks throws). */
  readonly done: Promise<SessionOutcome>;
  /** Leave politely; resolves once the current socket has closed (at once when there is none). */
  stop(): Promise<void>;
  /** Cut the socket without a goodbye (like a crash). */
  kill(): void;
}

export interface WorkerSession {
  /** Join, and rejoin after each loss, until a final answer (module comment). */
  start(): SessionRun;
  /** Close the engine's backend (after the last run). */
  close(): void;
  /** What the worker remembers between sessions. */
  readonly memory: ClientMemory;
}

const STOPPED: SessionOutcome = { kind: 'stopped' };

/**
 * The final answers table for an attempt's end (module comment): the outcome that ends the run,
 * or null to reconnect. The engine, the token check and the grace period are the loop's.
 */
export function finalAnswer(end: AttemptEnd): SessionOutcome | null {
  if (end.kind === 'bye' && end.reason === 'done') return { kind: 'done' };
  if (end.kind === 'stopped') return STOPPED;
  if (end.kind === 'bad-url') return { kind: 'bad-url', message: end.message };
  if ((end.kind === 'http' && end.status === 401) || (end.kind === 'rejected' && end.code === gradhub.ErrorCode.BAD_TOKEN)) return { kind: 'refused-token' };
  if (end.kind === 'rejected' && end.code !== gradhub.ErrorCode.FULL) return { kind: 'rejected', code: end.code, codeName: end.codeName, message: end.message };
  return null;
}

/** How an attempt ended, in a few words (e.g. 'HTTP 503', 'closed (1006)', 'no connection'). */
export function describeAttemptEnd(e: AttemptEnd): string {
  if (e.kind === 'http') return `HTTP ${e.status}`;
  if (e.kind === 'connect-failed' || e.kind === 'bad-url') return e.message;
  return describeSessionEnd(e);
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function unref(t: unknown): void {
  (t as { unref?: () => void }).unref?.();
}

/** A session (module comment): the engine and memory now, the connections at `start()`. */
export function createWorkerSession(opts: WorkerSessionOptions): WorkerSession {
  const log = opts.logger;
  const memory: ClientMemory = { incarnation: null, version: -1 };
  let cached: { key: string; engine: Promise<Engine> } | null = null;
  /** Building the engine failed: retrying will not help. */
  let engineFailure: { error: unknown; message: string } | null = null;

  const closeEngine = (c: { engine: Promise<Engine> } | null): void => {
    if (c) void c.engine.then((e) => e.backend.close?.(), () => {});
  };

  const getEngine = (w: WelcomeInfo): Promise<Engine> => {
    const key = JSON.stringify([w.sizes, w.chunk, w.normalize, w.maxBatch]);
    if (cached?.key !== key) {
      closeEngine(cached); // another run's engine: not in use any more
      memory.version = -1; // a new engine holds no parameters
      const spec = modelSpec(w.sizes);
      const entry = {
        key,
        engine: opts.createBackend(engineFloats(spec, w.maxBatch))
          .then((b) => createEngine({ spec, backend: b, maxBatch: w.maxBatch, chunk: w.chunk, normalize: w.normalize })),
      };
      cached = entry;
      entry.engine.catch((err: unknown) => {
        engineFailure = { error: err, message: (err as Error)?.message ?? String(err) };
        if (cached === entry) cached = null;
      });
    }
    return cached.engine;
  };

  function start(): SessionRun {
    let stopping = false;
    let current: { socket: SessionSocket | null; client: WorkerClient | null; closed: Promise<void> } | null = null;
    const pause = new WakeableSleep(sleep);
    const backoff = new Backoff(opts.backoff);

    function connectOnce(): Promise<{ welcomed: boolean; end: AttemptEnd }> {
      return new Promise((resolve) => {
        let welcomed = false;
        let settled = false;
        let markClosed!: () => void;
        const conn: { socket: SessionSocket | null; client: WorkerClient | null; closed: Promise<void> } = {
          socket: null, client: null, closed: new Promise<void>((r) => (markClosed = r)),
        };
        const finish = (end: AttemptEnd): void => {
          if (settled) return;
          settled = true;
          if (current === conn) current = null;
          resolve({ welcomed, end });
        };
        current = conn;
        const events: SocketEvents = {
          open() {
            const socket = conn.socket!;
            const client = createWorkerClient({
              socket: socket.client,
              token: opts.token,
              runtime: opts.runtime,
              logger: log,
              getEngine,
              capabilities: opts.capabilities(),
              memory,
              name: opts.name,
              slowdownMs: opts.slowdownMs,
              beforeResult: opts.beforeResult,
              codec: opts.codec,
              onEvent: (e) => {
                if (e.type === 'welcome') welcomed = true;
                opts.onEvent?.(e);
              },
            });
            conn.client = client;
            void client.ended.then((end) => {
              // Make sure the socket goes away even if the peer never answers the close.
              unref(setTimeout(() => socket.terminate(), 1000));
              finish(end);
            });
            if (stopping) client.stop();
            else client.start();
          },
          message(data, isBinary) {
            conn.client?.receive(data, isBinary);
          },
          close(code, reason) {
            markClosed();
            if (conn.client) conn.client.closed(code, reason);
            else finish({ kind: 'connect-failed', message: 'closed before open' });
          },
          failed(f) {
            markClosed();
            finish(f);
          },
        };
        try {
          conn.socket = opts.openSocket(events);
        } catch (err) {
          events.failed({ kind: 'bad-url', message: (err as Error)?.message ?? String(err) });
        }
      });
    }

    async function loop(): Promise<SessionOutcome> {
      for (;;) {
        if (stopping) return STOPPED;
        opts.onAttempt?.();
        const a = await connectOnce();
        if (stopping) return STOPPED;
        if (engineFailure !== null) return { kind: 'engine-failed', ...engineFailure };
        const e = a.end;
        if (a.welcomed) backoff.reset();
        const final = finalAnswer(e);
        if (final) return final;
        if (e.kind === 'connect-failed' && opts.tokenAccepted && (await opts.tokenAccepted()) === false) {
          return stopping ? STOPPED : { kind: 'refused-token' };
        }
        if (stopping) return STOPPED;
        const last = describeAttemptEnd(e);
        const delay = backoff.next();
        if (delay === null) return { kind: 'gone', waitedMs: backoff.waited(), last };
        log.info({ last, retryInMs: Math.round(delay), attempt: backoff.attempt }, 'coordinator unreachable: reconnecting');
        opts.onRetry?.(delay, last);
        await pause.pause(delay);
      }
    }

    return {
      done: loop(),
      stop() {
        const c = current;
        if (!stopping) {
          stopping = true;
          if (c?.client) c.client.stop();
          else c?.socket?.terminate();
          pause.wake();
        }
        return c ? c.closed : Promise.resolve();
      },
      kill() {
        if (stopping) return;
        stopping = true;
        current?.socket?.terminate();
        pause.wake();
      },
    };
  }

  return {
    start,
    close: () => closeEngine(cached),
    memory,
  };
}
