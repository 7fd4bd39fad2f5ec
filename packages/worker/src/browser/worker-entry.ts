/**
 * The browser worker: a dedicated Web Worker that runs the same core (WebAssembly SIMD kernels)
 * and the same worker session (session.ts: engine, protocol client, reconnects, final answers) as
 * the Node worker, over a binary WebSocket. What is its own: the browser socket, the kernel
 * threads as nested Web Workers, the page's commands and the statuses it posts. The page
 * (page.ts) only sends commands and renders those statuses (messages.ts).
 *
 * Contract:
 * - `start{url, token}` opens `new WebSocket(url)` (binaryType 'arraybuffer'). Browsers cannot
 *   set headers on a WebSocket, so the join token travels in the URL's `?token=` (checked by the
 *   coordinator at the upgrade) and again in Hello.
 * - Sending: socket.ts (one message per send, `done` when the socket's buffer has drained enough:
 *   the backpressure that paces the client's nodes).
 * - Liveness: browsers cannot send ws pings; the client sends an application Heartbeat every
 *   `heartbeat_interval_ms` and ends the session when the coordinator is silent past
 *   `heartbeat_timeout_ms` (time spent computing not counted). The browser answers the
 *   coordinator's pings by itself.
 * - When a session ends without a final answer (socket closed or not open within
 *   `CONNECT_TIMEOUT_MS`, coordinator silent, Bye SHUTDOWN),
 *   it reconnects with exponential backoff and full jitter, keeping its engine and parameters
 *   (`ClientMemory`). A socket that fails before opening may be a refused token (a browser cannot
 *   see the HTTP 401): the worker asks `authUrl` (GET, bearer header) and stops with 'refused'
 *   on 401. No Welcome for `GRACE_MS` since the loss: 'gone' (resume tries again).
 * - Final answers (session.ts's table): Bye TRAINING_DONE ('done'); Reject BAD_TOKEN or any
 *   Reject but FULL, or an engine this browser cannot build (no memory for the model) ('refused').
 * - `pause` leaves the session politely (Bye LEAVING: the coordinator reassigns this tab's nodes at
 *   once) and keeps the engine; `resume` joins again as a new worker. `leave` says Bye, waits for
 *   the close to go out, posts 'left' and ends the Web Worker.
 * - Threads: when the page is cross-origin isolated (SharedArrayBuffer), the wasm kernels run on
 *   `kernelThreads()` threads: this worker and helpers (kernel-thread.ts, nested Web Workers on
 *   one shared WebAssembly.Memory), min(hardwareConcurrency - 1, MAX_BROWSER_THREADS) by default
 *   or `?threads=N` on this worker's script URL; same bits for any count. Not isolated, or the
 *   helpers fail to start: one thread. Hello reports the count in use.
 * - Statuses (VolunteerStatus) go to the page at each change, at most every `STATUS_MIN_GAP_MS`,
 *   and every `STATUS_INTERVAL_MS`. The loss shown is this tab's own: the mean loss over the
 *   samples it computed in its latest training step (the coordinator sends workers no loss); the
 *   kernel speed is the client's compute time of each delivered node (its 'result' event).
 *
 * Web Worker and WebAssembly APIs only (no Node, no DOM).
 */
import {
  MAX_KERNEL_THREADS, createOracleBackend, createThreadedWasmBackend, createWasmBackend, wasmSimdSupported, wasmThreadsSupported,
  type Backend, type KernelThreadSpawner,
} from '@gradhub/core';
import type { ClientEvent, WelcomeInfo, WorkerLogger } from '../client.js';
import { createWorkerSession, type SessionOutcome, type SessionRun, type SessionSocket, type SocketEvents, type WorkerSession } from '../session.js';
import { browserClientSocket } from './socket.js';
import type { PageCommand, StartCommand, VolunteerState, VolunteerStatus, WorkerMessage } from './messages.js';

/** First reconnect delay, ms (doubles each failure, with full jitter). */
export const BACKOFF_INITIAL_MS = 500;
/** Longest reconnect delay, ms. */
export const BACKOFF_MAX_MS = 30_000;
/** A socket not open after this long is given up and tried again (as the Node worker's handshake timeout), ms. */
export const CONNECT_TIMEOUT_MS = 10_000;
/** Give up (state 'gone') when no coordinator welcomes this tab for this long, ms. */
export const GRACE_MS = 10 * 60_000;
/** Status to the page at least this often, ms. */
export const STATUS_INTERVAL_MS = 1000;
/** ...and at most this often, ms (so that the page's thread stays free). */
export const STATUS_MIN_GAP_MS = 200;
/** samples/s is measured over this window, ms. */
export const RATE_WINDOW_MS = 10_000;
/** Most kernel threads a tab uses by default (the volunteer's machine has other work to do). */
export const MAX_BROWSER_THREADS = 4;
/** How long the kernel helper threads may take to start, ms (else: one thread). */
export const THREAD_START_MS = 20_000;

/** The parts of the dedicated worker scope used here (the package checks against the DOM lib). */
interface WorkerScope {
  postMessage(message: WorkerMessage): void;
  addEventListener(type: 'message', listener: (ev: MessageEvent<PageCommand>) => void): void;
  close(): void;
  readonly crossOriginIsolated?: boolean;
  readonly location?: { readonly href: string };
  readonly navigator?: { readonly hardwareConcurrency?: number };
}

/**
 * Kernel threads for this tab: 1 unless the worker is cross-origin isolated, can run threaded
 * WebAssembly and start nested workers; then `?threads=N` on the worker script's URL, else
 * min(hardwareConcurrency - 1, MAX_BROWSER_THREADS), at least 1.
 */
export function kernelThreads(scope: WorkerScope): number {
  if (scope.crossOriginIsolated !== true || typeof Worker === 'undefined' || !wasmThreadsSupported()) return 1;
  const asked = scope.location ? Number(new URL(scope.location.href).searchParams.get('threads') ?? Number.NaN) : Number.NaN;
  if (Number.isInteger(asked) && asked >= 1) return Math.min(asked, MAX_KERNEL_THREADS);
  const cores = scope.navigator?.hardwareConcurrency ?? 1;
  return Math.max(1, Math.min(cores - 1, MAX_BROWSER_THREADS));
}

/** Start a helper as a nested Web Worker running kernel-thread.js (next to this worker's script). */
function browserKernelThreadSpawner(scriptBase: string): KernelThreadSpawner {
  return (init, onError) => {
    const w = new Worker(new URL('kernel-thread.js', scriptBase), { name: `gradhub-kernel-${init.slot}` });
    w.addEventListener('error', (ev) => {
      ev.preventDefault();
      onError(new Error(ev.message || 'the kernel thread script failed to load'));
    });
    w.postMessage(init);
    return { terminate: () => w.terminate() };
  };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Logs to the console, pino-style (an object, then a message). */
function consoleLogger(bindings: Record<string, unknown>, debug: boolean): WorkerLogger {
  const line = (obj: object, msg?: string): [string, object] => [`gradhub worker: ${msg ?? ''}`, { ...bindings, ...obj }];
  return {
    child: (b) => consoleLogger({ ...bindings, ...b }, debug),
    debug: (obj, msg) => {
      if (debug) console.debug(...line(obj, msg));
    },
    info: (obj, msg) => console.info(...line(obj, msg)),
    warn: (obj, msg) => console.warn(...line(obj, msg)),
    error: (obj, msg) => console.error(...line(obj, msg)),
  };
}

/** This tab's contribution, fed by the client's events. */
class TabStats {
  samplesContributed = 0;
  nodesDone = 0;
  workReceived = 0;
  computingStep: number | null = null;
  computeSamplesPerS: number | null = null;
  tabLoss: { step: number; lossSum: number; denomSum: number; samples: number } | null = null;
  private nodesLeft = 0;
  private readonly recent: { t: number; n: number }[] = [];
  private firstResultAt: number | null = null;

  work(e: Extract<ClientEvent, { type: 'work' }>): void {
    this.workReceived++;
    this.computingStep = e.step;
    this.nodesLeft = e.nodes.length;
  }

  /** The client's socket took a node's result (its samples, sums and compute time). */
  delivered(e: Extract<ClientEvent, { type: 'result' }>, now: number): void {
    const rate = (1000 * e.samples) / Math.max(e.computeMs, 0.01);
    this.computeSamplesPerS = this.computeSamplesPerS === null ? rate : 0.7 * this.computeSamplesPerS + 0.3 * rate;
    this.nodesDone++;
    if (--this.nodesLeft <= 0) this.computingStep = null;
    if (!e.train) return;
    this.samplesContributed += e.samples;
    this.firstResultAt ??= now;
    this.recent.push({ t: now, n: e.samples });
    const l = this.tabLoss;
    if (l && l.step === e.step) {
      l.lossSum += e.sums.lossSum;
      l.denomSum += e.sums.denomSum;
      l.samples += e.samples;
    } else if (!l || e.step > l.step) {
      this.tabLoss = { step: e.step, lossSum: e.sums.lossSum, denomSum: e.sums.denomSum, samples: e.samples };
    }
  }

  /** The session ended: nothing is being computed for it any more. */
  sessionEnded(): void {
    this.computingStep = null;
    this.nodesLeft = 0;
  }

  samplesPerS(now: number): number {
    while (this.recent.length > 0 && this.recent[0].t <= now - RATE_WINDOW_MS) this.recent.shift();
    if (this.firstResultAt === null) return 0;
    let n = 0;
    for (const r of this.recent) n += r.n;
    const span = Math.min(RATE_WINDOW_MS, Math.max(now - this.firstResultAt, 1000));
    return (1000 * n) / span;
  }
}

/**
 * Open one browser WebSocket for the session: binaryType 'arraybuffer', the token in the URL's
 * query (browsers cannot set headers), given up when not open within CONNECT_TIMEOUT_MS.
 */
function openBrowserSocket(url: string, events: SocketEvents): SessionSocket {
  const socket = new WebSocket(url); // throws for a URL that cannot be opened: the session's 'bad-url'
  socket.binaryType = 'arraybuffer';
  let opened = false;
  // A browser may leave a socket CONNECTING for minutes (a handshake nobody answers): give up on
  // it like the Node worker's handshake timeout, and let the backoff try again.
  const connectTimer = setTimeout(() => {
    if (socket.readyState === WebSocket.CONNECTING) {
      socket.onclose = null;
      socket.close();
      events.failed({ kind: 'connect-failed', message: 'closed (0)' });
    }
  }, CONNECT_TIMEOUT_MS);
  socket.onerror = () => {}; // the close event follows and says how it ended
  socket.onclose = (ev) => {
    clearTimeout(connectTimer);
    if (opened) events.close(ev.code, ev.reason);
    else events.failed({ kind: 'connect-failed', message: ev.code === 1006 ? 'no connection' : `closed (${ev.code})` });
  };
  socket.onmessage = (ev: MessageEvent<ArrayBuffer | string>) => {
    if (typeof ev.data === 'string') events.message(new TextEncoder().encode(ev.data), false);
    else events.message(new Uint8Array(ev.data), true);
  };
  socket.onopen = () => {
    clearTimeout(connectTimer);
    opened = true;
    events.open();
  };
  return { client: browserClientSocket(socket), terminate: () => socket.close() };
}

/** The worker's whole life: commands in, statuses out (see the module comment). */
export function runBrowserWorker(scope: WorkerScope): void {
  const stats = new TabStats();
  let log = consoleLogger({}, false);
  const simd = wasmSimdSupported();
  const backendName: 'wasm' | 'ts' = simd ? 'wasm' : 'ts';
  /** Kernel threads in use (back to 1 when the helpers cannot start). */
  let threads = backendName === 'wasm' ? kernelThreads(scope) : 1;

  /** The session (engine, parameters) from the start command on; `run` its current run. */
  let session: WorkerSession | null = null;
  let run: SessionRun | null = null;
  /** run: in (or joining) the run; the others are the volunteer's or the run's final word. */
  let mode: 'idle' | 'run' | 'paused' | 'left' | 'done' | 'refused' | 'gone' = 'idle';
  let welcome: WelcomeInfo | null = null;
  let state: VolunteerState = 'starting';
  let message = simd ? 'Loading the WebAssembly kernels.' : 'This browser has no WebAssembly SIMD: computing with the slower TypeScript kernels.';
  let retryAt: number | null = null;
  let tokenRefused = false;
  let lastPost = 0;
  let trailing: ReturnType<typeof setTimeout> | null = null;

  /** The wasm backend on `threads` threads, or on one when the helpers cannot start. */
  const wasmBackend = async (capacityFloats: number): Promise<Backend> => {
    if (threads > 1 && scope.location) {
      try {
        return await createThreadedWasmBackend({ capacityFloats, threads, spawn: browserKernelThreadSpawner(scope.location.href), startTimeoutMs: THREAD_START_MS });
      } catch (err) {
        log.warn({ err: String(err), threads }, 'kernel threads unavailable: computing on one thread');
        threads = 1;
      }
    }
    return createWasmBackend({ capacityFloats });
  };

  function status(): VolunteerStatus {
    const now = Date.now();
    const l = stats.tabLoss;
    return {
      type: 'status',
      state,
      message,
      runId: welcome?.runId ?? null,
      workerId: state === 'connected' ? welcome?.workerId ?? null : null,
      samplesPerS: stats.samplesPerS(now),
      computeSamplesPerS: stats.computeSamplesPerS,
      samplesContributed: stats.samplesContributed,
      nodesDone: stats.nodesDone,
      workReceived: stats.workReceived,
      tabLoss: l && l.denomSum > 0 ? { value: l.lossSum / l.denomSum, step: l.step, samples: l.samples } : null,
      computingStep: stats.computingStep,
      retryInMs: retryAt === null ? null : Math.max(0, retryAt - now),
      tokenRefused,
      backend: backendName,
      crossOriginIsolated: scope.crossOriginIsolated === true,
    };
  }

  /** Post the status now (force) or soon (at most every STATUS_MIN_GAP_MS). */
  function post(force = false): void {
    const now = Date.now();
    if (!force && now - lastPost < STATUS_MIN_GAP_MS) {
      trailing ??= setTimeout(() => {
        trailing = null;
        post(true);
      }, STATUS_MIN_GAP_MS - (now - lastPost));
      return;
    }
    if (trailing) clearTimeout(trailing);
    trailing = null;
    lastPost = now;
    scope.postMessage(status());
  }

  function setState(s: VolunteerState, msg: string, retryInMs: number | null = null): void {
    state = s;
    message = msg;
    retryAt = retryInMs === null ? null : Date.now() + retryInMs;
    post(true);
  }

  const ticker = setInterval(() => post(true), STATUS_INTERVAL_MS);

  function onEvent(e: ClientEvent): void {
    switch (e.type) {
      case 'welcome':
        welcome = e.info;
        setState('connected', `In the run as worker ${e.info.workerId}: waiting for work.`);
        return;
      case 'work':
        stats.work(e);
        message = `Computing step ${e.step}.`;
        break;
      case 'result':
        stats.delivered(e, Date.now());
        if (stats.computingStep === null) message = 'Waiting for the next step.';
        break;
      case 'params':
        break;
      case 'end':
        stats.sessionEnded();
        break;
    }
    post();
  }

  /** Does the coordinator take this token? true, false, or null when it cannot be asked. */
  async function tokenAccepted(cmd: StartCommand): Promise<boolean | null> {
    if (!cmd.authUrl) return null;
    try {
      const res = await fetch(cmd.authUrl, { headers: { authorization: `Bearer ${cmd.token}` }, cache: 'no-store' });
      if (res.status === 401 || res.status === 403) return false;
      return res.ok ? true : null;
    } catch {
      return null; // unreachable
    }
  }

  function createSession(cmd: StartCommand): WorkerSession {
    return createWorkerSession({
      openSocket: (events) => openBrowserSocket(cmd.url, events),
      createBackend: (capacityFloats) => (backendName === 'wasm' ? wasmBackend(capacityFloats) : Promise.resolve(createOracleBackend())),
      capabilities: () => ({ threads, simd: backendName === 'wasm', backend: backendName }),
      token: cmd.token,
      runtime: 'browser',
      logger: log,
      name: cmd.name,
      slowdownMs: cmd.slowdownMs,
      backoff: { initialMs: BACKOFF_INITIAL_MS, maxMs: BACKOFF_MAX_MS, graceMs: GRACE_MS },
      tokenAccepted: () => tokenAccepted(cmd),
      onAttempt: () => setState('connecting', welcome ? 'Joining the run again.' : 'Connecting to the coordinator.'),
      onRetry: (delayMs, last) => setState('reconnecting', `Lost the coordinator (${last}): trying again.`, delayMs),
      onEvent,
    });
  }

  /** The page's words for a final answer (a stopped run says nothing: the command that stopped it did). */
  function settle(o: SessionOutcome): void {
    const refusedLink = 'The coordinator refused this join link. Ask the run\'s organiser for a new one.';
    switch (o.kind) {
      case 'stopped':
        return;
      case 'done':
        mode = 'done';
        setState('done', 'Training is over. Thank you for your help! You can close this tab.');
        return;
      case 'engine-failed':
        mode = 'refused';
        setState('refused', `This browser could not set up the model: ${o.message}`);
        return;
      case 'bad-url':
        mode = 'refused';
        setState('refused', `This page cannot reach the coordinator: ${o.message}`);
        return;
      case 'refused-token':
        mode = 'refused';
        tokenRefused = true;
        setState('refused', refusedLink);
        return;
      case 'rejected':
        mode = 'refused';
        setState('refused', `The coordinator did not let this tab join: ${o.codeName}: ${o.message}`);
        return;
      case 'gone':
        mode = 'gone';
        setState('gone', `No coordinator for ${Math.round(o.waitedMs / 60_000)} minutes (last: ${o.last}). Resume to try again.`);
        return;
    }
  }

  /** Leave the current run, if any (Bye when in a session, else just close the socket). */
  function endSession(): Promise<void> {
    const r = run;
    run = null;
    if (!r) return Promise.resolve();
    return Promise.race([r.stop(), sleep(2000)]);
  }

  function startRun(): void {
    if (!session) return;
    mode = 'run';
    const r = session.start();
    run = r;
    r.done.then((o) => {
      if (run === r) settle(o);
    }, (err: unknown) => fail(err));
  }

  function fail(err: unknown): void {
    log.error({ err: String(err) }, 'browser worker failed');
    scope.postMessage({ type: 'failure', message: (err as Error)?.message ?? String(err) });
  }

  scope.addEventListener('message', (ev) => {
    const cmd = ev.data;
    switch (cmd.type) {
      case 'start':
        if (mode !== 'idle') return;
        log = consoleLogger({}, cmd.debug === true);
        session = createSession(cmd);
        startRun();
        return;
      case 'pause':
        if (mode !== 'run') return;
        mode = 'paused';
        void endSession();
        setState('paused', 'Paused: this tab is not computing. Resume to join the run again.');
        return;
      case 'resume':
        if (mode !== 'paused' && mode !== 'gone') return;
        startRun();
        return;
      case 'leave':
        if (mode === 'left') return;
        mode = 'left';
        clearInterval(ticker);
        void endSession().then(() => {
          setState('left', 'You left the run. Thank you for your help! You can close this tab.');
          session?.close();
          scope.close();
        });
        return;
    }
  });
  post(true);
}

// Started as a dedicated Web Worker by page.ts.
runBrowserWorker(globalThis as unknown as WorkerScope);
