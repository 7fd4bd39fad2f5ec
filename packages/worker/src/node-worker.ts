/**
 * The Node worker: the worker session (session.ts: engine, protocol client, reconnects, final
 * answers) on `ws` sockets, with its kernels on `worker_threads`.
 *
 * Contract:
 * - Connects to `url` with the join token in an `Authorization: Bearer` header (never in the URL,
 *   which ends up in logs), permessage-deflate off, and a zero masking key (ws then skips masking:
 *   it saves a copy of every frame; the coordinator is trusted, the link is a cluster's).
 * - When the session ends without a final answer (socket closed, coordinator silent, Bye SHUTDOWN,
 *   a recoverable error), it reconnects with exponential backoff and full jitter and rejoins as a
 *   new worker; its engine and parameters are kept (`ClientMemory`). If no coordinator welcomes
 *   it within `graceMs` of the loss (or of the start), it gives up: E_COORDINATOR_GONE.
 * - Final answers (session.ts's table): Bye TRAINING_DONE resolves { reason: 'done' }; HTTP 401 or
 *   Reject BAD_TOKEN rejects with E_AUTH; any other Reject (protocol version, model) with
 *   E_REJECTED (FULL is retried); an engine that cannot be built with its error.
 * - `stop()` leaves politely (Bye LEAVING); `kill()` cuts the socket like a crash (tests).
 *   Both resolve { reason: 'stopped' }.
 * - The engine is built once per run settings: backend 'wasm' (WebAssembly SIMD) when available
 *   and not told otherwise, 'ts' (the oracle) else. The wasm kernels run on `threads`
 *   `worker_threads` helpers (kernel-thread.ts; same bits for any count) while this thread keeps
 *   the socket moving (createNodeBackend); Hello reports the count. An engine replaced by another
 *   run's settings, and the last one when the worker ends, have their backend closed (the helper
 *   threads end; they are unref'd, so they never keep the process alive anyway).
 */
import * as os from 'node:os';
import { Worker } from 'node:worker_threads';
import WebSocket from 'ws';
import {
  ErrorCode, GradhubError, MAX_KERNEL_THREADS, createOracleBackend, createThreadedWasmBackend,
  wasmSimdSupported, wasmThreadsSupported, type Backend, type KernelThreadSpawner,
} from '@gradhub/core';
import { nodeByteCodec } from '@gradhub/proto/node';
import { FRAGMENT_BYTES, fragments } from './wire.js';
import type { ClientEvent, ClientSocket, ResultHook, WorkerLogger } from './client.js';
import { createWorkerSession, type SessionOutcome, type SessionSocket, type SocketEvents } from './session.js';

export interface NodeWorkerOptions {
  /** Coordinator WebSocket URL, e.g. ws://host:8080/ws. */
  readonly url: string;
  /** Join token. */
  readonly token: string;
  /** A pino logger (or anything with child/debug/info/warn/error). */
  readonly logger: WorkerLogger;
  /** Kernel backend. Default 'wasm' when WebAssembly SIMD is available, else 'ts'. */
  readonly backend?: 'wasm' | 'ts';
  /** Threads computing each kernel call (backend 'wasm' only; 1..MAX_KERNEL_THREADS). Default 1. */
  readonly threads?: number;
  /** Give up when no coordinator welcomes this worker for this long, ms. */
  readonly graceMs: number;
  /** Test hook: sleep this long before each node. Default 0. */
  readonly slowdownMs?: number;
  /** Test hook for the adversary tests (test/adversary/evil-worker.mjs): change or drop each Result before it is sent (client.ts `ResultHook`). The CLI never sets it. */
  readonly beforeResult?: ResultHook;
  /** First reconnect delay, ms (doubles each failure, with full jitter). Default 250. */
  readonly backoffInitialMs?: number;
  /** Longest reconnect delay, ms. Default 10000. */
  readonly backoffMaxMs?: number;
  /** Name shown on the coordinator. Default: hostname and pid. */
  readonly name?: string;
  /** Largest message accepted from the coordinator, bytes (ws maxPayload). Default 1 GiB. */
  readonly maxPayloadBytes?: number;
  /** Extra certificate authorities to trust for wss:// (PEM), e.g. a coordinator's self-signed certificate. */
  readonly ca?: string | Buffer;
  /** Observe the client's events (tests, CLI progress). */
  readonly onEvent?: (e: ClientEvent) => void;
}

export interface NodeWorkerExit {
  readonly reason: 'done' | 'stopped';
}

export interface NodeWorkerHandle {
  /** Resolves when the worker is done; rejects with GradhubError E_AUTH, E_REJECTED or E_COORDINATOR_GONE. */
  readonly done: Promise<NodeWorkerExit>;
  /** Leave politely (Bye) and stop. */
  stop(): void;
  /** Cut the socket without a goodbye (like a crash) and stop. */
  kill(): void;
}

/**
 * The Node spawner of the threaded WebAssembly backend: a `worker_threads` Worker running
 * kernel-thread.ts with the init as workerData (the shared memory and the compiled module are
 * passed, not copied). Unref'd: a helper never keeps the process alive.
 */
export const spawnNodeKernelThread: KernelThreadSpawner = (init, onError) => {
  const w = new Worker(new URL('./kernel-thread.js', import.meta.url), { workerData: init });
  w.on('error', (err: Error) => onError(err));
  w.unref();
  return { terminate: () => void w.terminate() };
};

/**
 * A compute backend in Node for `capacityFloats` floats: 'ts' (the oracle), or 'wasm' on `threads`
 * helper threads (spawnNodeKernelThread) while the calling thread computes nothing: its async
 * kernels leave the event loop free, so a worker streams each part of its gradient while the next
 * one is computed (where threaded WebAssembly is missing: 'wasm' on this thread). Close it
 * (`backend.close?.()`) when done.
 */
export async function createNodeBackend(name: 'wasm' | 'ts', capacityFloats: number, threads = 1): Promise<Backend> {
  checkThreads(name, threads);
  if (name === 'ts') return createOracleBackend();
  // Offload: `threads` helpers compute, this thread only waits (asynchronously) and keeps the socket moving.
  const offload = wasmThreadsSupported();
  return createThreadedWasmBackend({ capacityFloats, threads, spawn: spawnNodeKernelThread, offload });
}

/** Throws E_USAGE for a thread count the backend cannot run. */
function checkThreads(name: 'wasm' | 'ts', threads: number): void {
  if (!Number.isInteger(threads) || threads < 1 || threads > MAX_KERNEL_THREADS) {
    throw new GradhubError(ErrorCode.E_USAGE, `threads must be an integer in 1..${MAX_KERNEL_THREADS}, got ${threads}`);
  }
  if (threads > 1 && name !== 'wasm') throw new GradhubError(ErrorCode.E_USAGE, `threads ${threads} needs backend wasm (the ts oracle runs on one thread)`);
  if (threads > 1 && !wasmThreadsSupported()) throw new GradhubError(ErrorCode.E_USAGE, `threads ${threads}: this Node cannot run threaded WebAssembly (shared memory)`);
}

/**
 * Adapt a `ws` socket to the client's minimal interface: parts go out as fragments of one message,
 * parts larger than FRAGMENT_BYTES cut into several (so that the coordinator receives and reduces
 * the gradient in pieces it need not join: protocol.ts there), all without copying.
 */
export function wsClientSocket(ws: WebSocket): ClientSocket {
  return {
    send(parts, done) {
      if (ws.readyState !== WebSocket.OPEN) {
        done(new Error('socket is not open'));
        return;
      }
      let list: readonly Uint8Array[] = parts;
      if (parts.length !== 1 || parts[0].byteLength > FRAGMENT_BYTES) {
        const cut = parts.flatMap((p) => (p.byteLength > FRAGMENT_BYTES ? fragments(p) : p.byteLength > 0 ? [p] : []));
        list = cut.length > 0 ? cut : [new Uint8Array(0)];
      }
      const last = list.length - 1;
      for (let i = 0; i < last; i++) ws.send(list[i], { binary: true, fin: false });
      ws.send(list[last], { binary: true, fin: true }, (err) => done(err ?? undefined));
    },
    close(code, reason) {
      ws.close(code, reason);
    },
  };
}

/**
 * Open one `ws` socket to the coordinator for the session (module comment: bearer header, no
 * deflate, zero mask) and report what happens to it.
 */
function openNodeSocket(opts: NodeWorkerOptions, log: WorkerLogger, events: SocketEvents): SessionSocket {
  const ws = new WebSocket(opts.url, {
    headers: { authorization: `Bearer ${opts.token}` },
    perMessageDeflate: false,
    generateMask: (mask: Buffer) => mask.fill(0),
    maxPayload: opts.maxPayloadBytes ?? 1024 * 1024 * 1024,
    handshakeTimeout: 10000,
    ...(opts.ca ? { ca: opts.ca } : {}),
  });
  let opened = false;
  ws.on('unexpected-response', (_req, res) => {
    events.failed({ kind: 'http', status: res.statusCode ?? 0 });
    ws.terminate();
  });
  ws.on('error', (err) => {
    if (!opened) events.failed({ kind: 'connect-failed', message: err.message });
    else log.debug({ err: { message: err.message } }, 'socket error');
  });
  ws.on('open', () => {
    opened = true;
    // Messages as their fragments: streamed parameters are copied once, into the engine (wire.ts).
    ws.binaryType = 'fragments';
    ws.on('message', (data: WebSocket.RawData, isBinary: boolean) => {
      events.message(Array.isArray(data) ? data : data instanceof ArrayBuffer ? new Uint8Array(data) : data, isBinary);
    });
    events.open();
  });
  ws.on('close', (code: number, reason: Buffer) => {
    if (opened) events.close(code, reason.toString());
    else events.failed({ kind: 'connect-failed', message: 'closed before open' });
  });
  return { client: wsClientSocket(ws), terminate: () => ws.terminate() };
}

/** The Node worker's exit for a session's final answer; the refusals and 'gone' as GradhubErrors. */
function nodeExit(o: SessionOutcome, opts: NodeWorkerOptions): NodeWorkerExit {
  switch (o.kind) {
    case 'done':
    case 'stopped':
      return { reason: o.kind };
    case 'refused-token':
      throw new GradhubError(ErrorCode.E_AUTH, `the coordinator at ${opts.url} refused the join token`);
    case 'rejected':
      throw new GradhubError(ErrorCode.E_REJECTED, `the coordinator rejected this worker: ${o.codeName}: ${o.message}`);
    case 'gone':
      throw new GradhubError(ErrorCode.E_COORDINATOR_GONE, `no coordinator at ${opts.url} for ${o.waitedMs} ms (grace ${opts.graceMs} ms); last: ${o.last}`);
    case 'bad-url':
      throw new GradhubError(ErrorCode.E_USAGE, `cannot open ${opts.url}: ${o.message}`);
    case 'engine-failed':
      throw o.error instanceof Error ? o.error : new GradhubError(ErrorCode.E_INTERNAL, `the engine could not be built: ${o.message}`);
  }
}

/** Start a Node worker (see the module comment). */
export function startNodeWorker(opts: NodeWorkerOptions): NodeWorkerHandle {
  if (!(opts.graceMs >= 0)) throw new GradhubError(ErrorCode.E_USAGE, `graceMs must be >= 0, got ${opts.graceMs}`);
  const log = opts.logger.child({ module: 'worker' });
  const backendName: 'wasm' | 'ts' = opts.backend ?? (wasmSimdSupported() ? 'wasm' : 'ts');
  if (backendName === 'wasm' && !wasmSimdSupported()) throw new GradhubError(ErrorCode.E_USAGE, 'backend wasm asked for, but this Node has no WebAssembly SIMD');
  const threads = opts.threads ?? 1;
  checkThreads(backendName, threads);

  const session = createWorkerSession({
    openSocket: (events) => openNodeSocket(opts, log, events),
    createBackend: (capacityFloats) => createNodeBackend(backendName, capacityFloats, threads),
    capabilities: () => ({ threads, simd: backendName === 'wasm', backend: backendName }),
    token: opts.token,
    runtime: 'node',
    logger: log,
    name: opts.name ?? `${os.hostname()}:${process.pid}`,
    slowdownMs: opts.slowdownMs,
    beforeResult: opts.beforeResult,
    codec: nodeByteCodec,
    backoff: { initialMs: opts.backoffInitialMs ?? 250, maxMs: opts.backoffMaxMs ?? 10000, graceMs: opts.graceMs },
    onEvent: opts.onEvent,
  });
  const run = session.start();
  const done = run.done.then((o) => nodeExit(o, opts)).finally(() => session.close());
  return {
    done,
    stop: () => void run.stop(),
    kill: () => run.kill(),
  };
}

/** Run a Node worker until training is done (see startNodeWorker). */
export function runNodeWorker(opts: NodeWorkerOptions): Promise<NodeWorkerExit> {
  return startNodeWorker(opts).done;
}
