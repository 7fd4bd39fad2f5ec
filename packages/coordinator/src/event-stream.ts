/**
 * `GET /api/events`: the run's status as Server-Sent Events, for the dashboard and scripts.
 *
 * Each stream starts with one `snapshot` event (the whole `StatusSnapshot` plus `now`, the server's
 * clock in ms, so a client can correct "last seen" for clock skew), then one event per `RunStatus`
 * event, named by its type (`step`, `eval`, `workers`, `state`) with the event object as JSON data.
 * Nothing is polled: one subscription to the status (taken while at least one stream is open)
 * serialises each event once and writes it to every stream. A comment line every `heartbeatMs`
 * keeps idle proxies from closing the stream.
 *
 * The workers table changes with every result and every join or leave: its `workers` events are
 * coalesced, at most `workersPerSecond` a second (the latest table wins; the first after a quiet
 * spell goes at once), so a join/leave storm costs the streams a bounded rate, not one table per
 * change. `step`, `eval` and `state` events go as they come (one per step at most).
 *
 * Bounded: at most `maxClients` streams (past it: 503 with Retry-After); a stream whose unsent
 * bytes pass `maxBufferedBytes` (a client that stopped reading) is dropped. A closed connection is
 * forgotten at once (its timer and subscription go with it), and `close()` ends every stream.
 *
 * The end: `close()` (the server shutting down, e.g. when the run is over) first sends every
 * stream one `end` event, the final snapshot (same shape as `snapshot`), so a page still open
 * shows how the run ended (done, stopped, failed) and knows not to reconnect.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { RunStatus, StatusEvent } from './status.js';

export interface EventStreamOptions {
  readonly status: RunStatus;
  readonly logger: Logger;
  /** Most streams open at once. */
  readonly maxClients: number;
  /** Interval of the keep-alive comment, ms. */
  readonly heartbeatMs: number;
  /** Drop a stream whose unsent bytes exceed this. */
  readonly maxBufferedBytes: number;
  /** Most `workers` events a second (coalesced). Default 4. */
  readonly workersPerSecond?: number;
}

export interface EventStream {
  /** Serve one `GET /api/events` request (headers already checked by the router). */
  handle(req: IncomingMessage, res: ServerResponse): void;
  /** Streams open now. */
  readonly clients: number;
  /** End every stream and stop listening to the status. */
  close(): void;
}

export function createEventStream(o: EventStreamOptions): EventStream {
  const log = o.logger.child({ module: 'event-stream' });
  const clients = new Set<ServerResponse>();
  let unsubscribe: (() => void) | null = null;
  let heartbeat: NodeJS.Timeout | null = null;
  let closed = false;
  const workersGapMs = 1000 / (o.workersPerSecond ?? 4);
  let workersSentAt = -Infinity;
  let pendingWorkers: StatusEvent | null = null;
  let workersTimer: NodeJS.Timeout | null = null;

  const sendWorkers = (): void => {
    workersTimer = null;
    const e = pendingWorkers;
    pendingWorkers = null;
    if (!e) return;
    workersSentAt = performance.now();
    try {
      broadcast(frame(e.type, JSON.stringify(e)));
    } catch (err) {
      log.error({ err }, 'could not send a status event');
    }
  };

  const drop = (res: ServerResponse, why: string): void => {
    if (!clients.delete(res)) return;
    log.debug({ clients: clients.size, why }, 'event stream closed');
    if (!res.destroyed) res.destroy();
    if (clients.size === 0) stopListening();
  };

  const write = (res: ServerResponse, chunk: string): void => {
    if (res.destroyed) return drop(res, 'connection gone');
    res.write(chunk);
    if (res.writableLength > o.maxBufferedBytes) {
      log.warn({ buffered: res.writableLength }, 'event stream client is not reading: dropped');
      drop(res, 'not reading');
    }
  };

  const broadcast = (chunk: string): void => {
    for (const res of [...clients]) write(res, chunk);
  };

  const onEvent = (e: StatusEvent): void => {
    if (e.type === 'workers') {
      pendingWorkers = e;
      if (workersTimer) return;
      const wait = workersSentAt + workersGapMs - performance.now();
      if (wait <= 0) sendWorkers();
      else workersTimer = setTimeout(sendWorkers, wait).unref();
      return;
    }
    // Called inside the trainer's step: never throw back into it.
    try {
      broadcast(frame(e.type, JSON.stringify(e)));
    } catch (err) {
      log.error({ err }, 'could not send a status event');
    }
  };

  const startListening = (): void => {
    unsubscribe ??= o.status.subscribe(onEvent);
    heartbeat ??= setInterval(() => broadcast(': keep-alive\n\n'), o.heartbeatMs).unref();
  };

  function stopListening(): void {
    if (workersTimer) clearTimeout(workersTimer);
    workersTimer = null;
    pendingWorkers = null;
    unsubscribe?.();
    unsubscribe = null;
    if (heartbeat) clearInterval(heartbeat);
    heartbeat = null;
  }

  return {
    get clients() {
      return clients.size;
    },

    handle(req: IncomingMessage, res: ServerResponse): void {
      if (closed || clients.size >= o.maxClients) {
        log.warn({ clients: clients.size, max: o.maxClients, closed }, 'event stream refused');
        res.writeHead(503, { 'Content-Type': 'text/plain; charset=utf-8', 'Retry-After': '10', 'Cache-Control': 'no-store' });
        res.end(closed ? 'the coordinator is shutting down\n' : `too many event streams open (at most ${o.maxClients})\n`);
        return;
      }
      res.writeHead(200, {
        'Content-Type': 'text/event-stream; charset=utf-8',
        'Cache-Control': 'no-store, no-transform',
        'Connection': 'keep-alive',
        'X-Accel-Buffering': 'no',
      });
      if (req.method === 'HEAD') {
        res.end();
        return;
      }
      req.socket.setNoDelay(true);
      clients.add(res);
      res.on('close', () => drop(res, 'client closed'));
      res.on('error', () => drop(res, 'write error'));
      startListening();
      log.debug({ clients: clients.size }, 'event stream opened');
      // The snapshot and the subscription are taken in the same tick: no event falls between them.
      write(res, 'retry: 2000\n\n');
      write(res, frame('snapshot', JSON.stringify({ ...o.status.snapshot(), now: Date.now() })));
    },

    close(): void {
      closed = true;
      const end = clients.size > 0 ? frame('end', JSON.stringify({ ...o.status.snapshot(), now: Date.now() })) : '';
      for (const res of [...clients]) {
        clients.delete(res);
        if (!res.destroyed) res.end(end);
      }
      stopListening();
    },
  };
}

/** One SSE message. JSON never holds a raw newline, so `data` is one line. */
function frame(event: string, data: string): string {
  return `event: ${event}\ndata: ${data}\n\n`;
}
