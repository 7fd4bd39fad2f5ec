/** Types of proxy.js (the link emulator of the benches and tests; see its module comment). */
export interface SharedLink {
  readonly up: unknown;
  readonly down: unknown;
}

export function createSharedLink(o?: { upBps?: number; downBps?: number }): SharedLink;

export interface LinkStats {
  /** Bytes scheduled but not yet written, now. */
  readonly queued: number;
  /** The largest queue seen in one direction. */
  readonly peak: number;
  readonly upBytes: number;
  readonly downBytes: number;
  readonly limitUp: number;
  readonly limitDown: number;
}

export interface LinkProxy {
  readonly port: number;
  url(scheme?: string): string;
  stats(): LinkStats;
  close(): Promise<void>;
}

export function startLinkProxy(o: {
  target: { host: string; port: number } | { path: string };
  listenHost?: string;
  port?: number;
  upBps?: number;
  downBps?: number;
  latencyMs?: number;
  shared?: SharedLink | null;
  maxQueuedBytes?: number;
}): Promise<LinkProxy>;
