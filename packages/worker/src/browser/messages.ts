/**
 * What the volunteer page and its Web Worker say to each other with `postMessage` (structured
 * clone, plain objects). The page only sends commands and renders statuses; everything else
 * (engine, socket, protocol) lives in the worker, so the page's main thread stays free.
 */

/** page -> worker: join the coordinator at `url` (ws:// or wss://, the join token in its query). */
export interface StartCommand {
  readonly type: 'start';
  /** WebSocket URL of the coordinator, with `?token=` (browsers cannot set headers on a WebSocket). */
  readonly url: string;
  /** The join token, also sent in Hello. */
  readonly token: string;
  /** Free-form name for the coordinator's logs (browser and platform). */
  readonly name: string;
  /** URL of the coordinator's token check (GET with a bearer header: 204 good, 401 bad), or null. */
  readonly authUrl: string | null;
  /** Test hook: sleep this long before each node (simulates a slow tab). Default 0. */
  readonly slowdownMs?: number;
  /** Log the protocol client's debug lines to the console. Default false. */
  readonly debug?: boolean;
}

/** page -> worker. pause: leave the session politely (Bye), keep the engine; resume: join again; leave: Bye and stop for good. */
export type PageCommand = StartCommand | { readonly type: 'pause' } | { readonly type: 'resume' } | { readonly type: 'leave' };

/**
 * Where the tab stands:
 * - starting: loading the kernels; connecting: opening the socket, waiting for Welcome;
 * - connected: in the run (computing or waiting for work);
 * - reconnecting: the coordinator went away or could not be reached: retrying with backoff;
 * - paused: the volunteer paused (not in the run, engine kept);
 * - done: training is over (the coordinator said so); left: the volunteer left;
 * - refused: the join token was refused, or the coordinator rejected this tab (message says why);
 * - gone: no coordinator for the whole grace period (resume tries again).
 */
export type VolunteerState = 'starting' | 'connecting' | 'connected' | 'reconnecting' | 'paused' | 'done' | 'left' | 'refused' | 'gone';

/** worker -> page, at every change and about once a second. */
export interface VolunteerStatus {
  readonly type: 'status';
  readonly state: VolunteerState;
  /** One plain sentence about the state (why, what next). */
  readonly message: string;
  /** The run's id from Welcome (null before the first Welcome). */
  readonly runId: string | null;
  /** This connection's worker id on the coordinator (null when not connected). */
  readonly workerId: number | null;
  /** Training samples this tab computed and delivered in the last few seconds, per second. */
  readonly samplesPerS: number;
  /** Samples per second while computing (kernel speed), a moving average; null before the first node. */
  readonly computeSamplesPerS: number | null;
  /** Training samples whose gradient this tab delivered, since the page opened. */
  readonly samplesContributed: number;
  /** Tree nodes this tab delivered (training and evaluation). */
  readonly nodesDone: number;
  /** Work requests received since the page opened. */
  readonly workReceived: number;
  /**
   * The mean loss over the samples this tab computed in the latest training step it worked on
   * (its own share of the batch, not the global batch loss: the coordinator sends no loss), and
   * that step; null before the first result.
   */
  readonly tabLoss: { readonly value: number; readonly step: number; readonly samples: number } | null;
  /** The step being computed now (null when idle). */
  readonly computingStep: number | null;
  /** Milliseconds until the next connection attempt (state reconnecting), else null. */
  readonly retryInMs: number | null;
  /** The coordinator refused the join token (state refused): the page asks for a new link. */
  readonly tokenRefused: boolean;
  /** Kernel backend: 'wasm' (WebAssembly SIMD) or 'ts'. */
  readonly backend: string;
  /** Whether the worker runs cross-origin isolated (SharedArrayBuffer available). */
  readonly crossOriginIsolated: boolean;
}

/** worker -> page: a failure the worker could not turn into a status (a bug, or no WebAssembly). */
export interface VolunteerFailure {
  readonly type: 'failure';
  readonly message: string;
}

export type WorkerMessage = VolunteerStatus | VolunteerFailure;
