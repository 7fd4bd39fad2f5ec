/**
 * The worker session (session.ts) and its reconnect pacing (backoff.ts): the final answers table
 * on its own, then whole runs against a real WebSocket server on loopback that plays the
 * coordinator's side of the protocol (Hello in; Welcome, Reject, Bye or a close out), and the
 * Node worker's mapping of the final answers onto its exit (startNodeWorker on the same server).
 */
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket, { WebSocketServer } from 'ws';
import { createOracleBackend, isGradhubError, type Backend } from '@gradhub/core';
import { gradhub } from '@gradhub/proto';
import { Backoff, WakeableSleep } from '../src/backoff.js';
import { encode } from '../src/wire.js';
import type { WorkerLogger } from '../src/client.js';
import {
  createWorkerSession, describeAttemptEnd, finalAnswer, type AttemptEnd, type SessionSocket, type SocketEvents, type WorkerSessionOptions,
} from '../src/session.js';
import { startNodeWorker, wsClientSocket } from '../src/node-worker.js';

const silent: WorkerLogger = { child: () => silent, debug() {}, info() {}, warn() {}, error() {} };
const SIZES = [3072, 4, 10];

function welcome(workerId: number, incarnation = 'inc-1'): Uint8Array {
  return encode({
    welcome: {
      workerId, runId: 'run', incarnation, modelSizes: SIZES, chunk: 4, normalize: false, maxBatch: 8,
      heartbeatIntervalMs: 1000, heartbeatTimeoutMs: 30_000,
    },
  });
}
const reject = (code: gradhub.ErrorCode): Uint8Array => encode({ reject: { code, message: 'no' } });
const bye = (reason: gradhub.ByeReason): Uint8Array => encode({ bye: { reason, message: '' } });

/** One connection as the fake coordinator sees it. */
interface Conn {
  readonly index: number;
  readonly hello: gradhub.IHello;
  readonly ws: WebSocket;
  /** Frames received after Hello, decoded. */
  readonly received: gradhub.Envelope[];
  readonly closed: Promise<{ code: number }>;
}

/**
 * A WebSocket server on 127.0.0.1 that answers each Hello with `script(conn)` (connections counted
 * from 0). `status`: answer the upgrade with this HTTP status instead (e.g. 401).
 */
async function fakeCoordinator(script: (c: Conn) => void, status?: (index: number) => number | null) {
  const server = http.createServer();
  const wss = new WebSocketServer({ noServer: true });
  const conns: Conn[] = [];
  let upgrades = 0;
  server.on('upgrade', (req, socket, head) => {
    const code = status?.(upgrades++) ?? null;
    if (code !== null) {
      socket.end(`HTTP/1.1 ${code} ${http.STATUS_CODES[code]}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      const closed = new Promise<{ code: number }>((r) => ws.on('close', (c) => r({ code: c })));
      let conn: Conn | null = null;
      ws.on('message', (data: Buffer) => {
        const env = gradhub.Envelope.decode(new Uint8Array(data));
        if (!conn) {
          conn = { index: conns.length, hello: env.hello!, ws, received: [], closed };
          conns.push(conn);
          script(conn);
        } else conn.received.push(env);
      });
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  const close = async (): Promise<void> => {
    for (const c of wss.clients) c.terminate();
    await new Promise<void>((r) => server.close(() => r()));
  };
  cleanups.push(close);
  return { url: `ws://127.0.0.1:${port}/ws`, port, conns, close };
}

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

/** A plain `ws` socket for the session (no Node worker options): the session's contract only. */
function openWs(url: string, events: SocketEvents): SessionSocket {
  const ws = new WebSocket(url);
  let opened = false;
  ws.on('unexpected-response', (_req, res) => {
    events.failed({ kind: 'http', status: res.statusCode ?? 0 });
    ws.terminate();
  });
  ws.on('error', (err) => {
    if (!opened) events.failed({ kind: 'connect-failed', message: err.message });
  });
  ws.on('open', () => {
    opened = true;
    ws.on('message', (data: Buffer, isBinary: boolean) => events.message(new Uint8Array(data), isBinary));
    events.open();
  });
  ws.on('close', (code: number, reason: Buffer) => {
    if (opened) events.close(code, reason.toString());
    else events.failed({ kind: 'connect-failed', message: 'closed before open' });
  });
  return { client: wsClientSocket(ws), terminate: () => ws.terminate() };
}

/** A session on `url` with the oracle backend; counts the backends it builds and the retries. */
function session(url: string, over: Partial<WorkerSessionOptions> = {}) {
  const backends: Backend[] = [];
  const retries: { delayMs: number; last: string }[] = [];
  let attempts = 0;
  const s = createWorkerSession({
    openSocket: (events) => openWs(url, events),
    createBackend: async () => {
      const b = createOracleBackend();
      backends.push(b);
      return b;
    },
    capabilities: () => ({ threads: 1, simd: false, backend: 'ts' }),
    token: 'tok',
    runtime: 'node',
    logger: silent,
    name: 'test',
    backoff: { initialMs: 5, maxMs: 20, graceMs: 30_000 },
    onAttempt: () => attempts++,
    onRetry: (delayMs, last) => retries.push({ delayMs, last }),
    ...over,
  });
  return { s, backends, retries, attempts: () => attempts };
}

/** A port nothing listens on (a server's, closed). */
async function deadPort(): Promise<number> {
  const server = http.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}

describe('final answers table', () => {
  const cases: [AttemptEnd, ReturnType<typeof finalAnswer>][] = [
    [{ kind: 'bye', reason: 'done', message: '' }, { kind: 'done' }],
    [{ kind: 'stopped' }, { kind: 'stopped' }],
    [{ kind: 'bad-url', message: 'Invalid URL' }, { kind: 'bad-url', message: 'Invalid URL' }],
    [{ kind: 'http', status: 401 }, { kind: 'refused-token' }],
    [{ kind: 'rejected', code: gradhub.ErrorCode.BAD_TOKEN, codeName: 'BAD_TOKEN', message: 'm' }, { kind: 'refused-token' }],
    [{ kind: 'rejected', code: gradhub.ErrorCode.BAD_VERSION, codeName: 'BAD_VERSION', message: 'm' }, { kind: 'rejected', code: gradhub.ErrorCode.BAD_VERSION, codeName: 'BAD_VERSION', message: 'm' }],
    [{ kind: 'rejected', code: gradhub.ErrorCode.MODEL_MISMATCH, codeName: 'MODEL_MISMATCH', message: 'm' }, { kind: 'rejected', code: gradhub.ErrorCode.MODEL_MISMATCH, codeName: 'MODEL_MISMATCH', message: 'm' }],
    // Reconnect: the coordinator is full, gone, restarting, silent, or broke the protocol.
    [{ kind: 'rejected', code: gradhub.ErrorCode.FULL, codeName: 'FULL', message: 'm' }, null],
    [{ kind: 'bye', reason: 'shutdown', message: '' }, null],
    [{ kind: 'bye', reason: 'other', message: '' }, null],
    [{ kind: 'closed', code: 1006, reason: '' }, null],
    [{ kind: 'timeout', message: 'coordinator silent for 31000 ms' }, null],
    [{ kind: 'error', code: gradhub.ErrorCode.MALFORMED_FRAME, codeName: 'MALFORMED_FRAME', message: 'm', fromCoordinator: false }, null],
    [{ kind: 'http', status: 503 }, null],
    [{ kind: 'http', status: 403 }, null],
    [{ kind: 'connect-failed', message: 'connect ECONNREFUSED' }, null],
  ];
  it.each(cases)('%j -> %j', (end, want) => {
    expect(finalAnswer(end)).toEqual(want);
  });

  it('words how an attempt ended', () => {
    expect(describeAttemptEnd({ kind: 'http', status: 503 })).toBe('HTTP 503');
    expect(describeAttemptEnd({ kind: 'connect-failed', message: 'no connection' })).toBe('no connection');
    expect(describeAttemptEnd({ kind: 'closed', code: 1006, reason: '' })).toBe('closed (1006)');
    expect(describeAttemptEnd({ kind: 'rejected', code: 15, codeName: 'FULL', message: 'busy' })).toBe('FULL: busy');
  });
});

describe('backoff', () => {
  it('waits a random time below a ceiling that doubles from initialMs up to maxMs, and resets on Welcome', () => {
    const b = new Backoff({ initialMs: 100, maxMs: 1000, graceMs: 60_000 });
    const ceilings = [100, 200, 400, 800, 1000, 1000];
    for (let round = 0; round < 2; round++) {
      for (const [a, ceiling] of ceilings.entries()) {
        const d = b.next()!;
        expect(b.attempt).toBe(a + 1);
        expect(d).toBeGreaterThanOrEqual(0);
        expect(d).toBeLessThan(ceiling);
      }
      b.reset();
      expect(b.attempt).toBe(0);
    }
  });

  it('answers null once the grace period has passed, and never waits past its end', async () => {
    expect(new Backoff({ initialMs: 100, maxMs: 1000, graceMs: 0 }).next()).toBeNull();
    const b = new Backoff({ initialMs: 10_000, maxMs: 10_000, graceMs: 40 });
    for (let i = 0; i < 20; i++) expect(b.next()).toBeLessThanOrEqual(40);
    await new Promise((r) => setTimeout(r, 60));
    expect(b.next()).toBeNull();
    expect(b.waited()).toBeGreaterThanOrEqual(40);
  });

  it('a pause ends early on wake', async () => {
    const p = new WakeableSleep((ms) => new Promise((r) => setTimeout(r, ms)));
    const t0 = Date.now();
    const paused = p.pause(60_000);
    p.wake();
    await paused;
    expect(Date.now() - t0).toBeLessThan(30_000);
  });
});

describe('worker session on a loopback WebSocket server', () => {
  it('says Hello, builds its engine once for the run, keeps it across a lost connection, and ends on Bye TRAINING_DONE', async () => {
    const coord = await fakeCoordinator((c) => {
      c.ws.send(welcome(c.index + 1));
      // First connection: the coordinator goes away (shutdown); the second: training is over.
      c.ws.send(bye(c.index === 0 ? gradhub.ByeReason.SHUTDOWN : gradhub.ByeReason.TRAINING_DONE));
      c.ws.close(1000);
    });
    const { s, backends, retries, attempts } = session(coord.url);
    expect(await s.start().done).toEqual({ kind: 'done' });
    expect(coord.conns.map((c) => [c.hello.token, c.hello.runtime, c.hello.name, c.hello.capabilities?.backend])).toEqual([
      ['tok', gradhub.Runtime.NODE, 'test', 'ts'], ['tok', gradhub.Runtime.NODE, 'test', 'ts'],
    ]);
    expect(attempts()).toBe(2);
    expect(retries).toHaveLength(1);
    expect(retries[0].last).toBe('bye (shutdown)');
    expect(backends).toHaveLength(1); // the same run's settings: the engine is kept
    expect(s.memory.incarnation).toBe('inc-1');
  });

  it('ends on a refused token: HTTP 401 at the upgrade, or Reject BAD_TOKEN', async () => {
    const http401 = await fakeCoordinator(() => {}, () => 401);
    expect(await session(http401.url).s.start().done).toEqual({ kind: 'refused-token' });
    const rejected = await fakeCoordinator((c) => c.ws.send(reject(gradhub.ErrorCode.BAD_TOKEN)));
    expect(await session(rejected.url).s.start().done).toEqual({ kind: 'refused-token' });
  });

  it('ends on any other Reject, retries FULL and a failed upgrade until welcomed', async () => {
    const version = await fakeCoordinator((c) => c.ws.send(reject(gradhub.ErrorCode.BAD_VERSION)));
    expect(await session(version.url).s.start().done).toMatchObject({ kind: 'rejected', code: gradhub.ErrorCode.BAD_VERSION, codeName: 'BAD_VERSION', message: 'no' });

    // Upgrade 0: HTTP 503; Hello 0: FULL; Hello 1: welcomed, then done.
    const busy = await fakeCoordinator((c) => {
      if (c.index === 0) c.ws.send(reject(gradhub.ErrorCode.FULL));
      else {
        c.ws.send(welcome(7));
        c.ws.send(bye(gradhub.ByeReason.TRAINING_DONE));
      }
    }, (i) => (i === 0 ? 503 : null));
    const t = session(busy.url);
    expect(await t.s.start().done).toEqual({ kind: 'done' });
    expect(t.retries.map((r) => r.last)).toEqual(['HTTP 503', 'FULL: no']);
  });

  it('asks tokenAccepted after a failed connection: false ends the run, null keeps trying until the grace period ends', async () => {
    const port = await deadPort();
    const url = `ws://127.0.0.1:${port}/ws`;
    let asked = 0;
    const refused = session(url, { tokenAccepted: async () => (asked++, false) });
    expect(await refused.s.start().done).toEqual({ kind: 'refused-token' });
    expect(asked).toBe(1);

    const unknown = session(url, { tokenAccepted: async () => null, backoff: { initialMs: 5, maxMs: 20, graceMs: 150 } });
    const gone = await unknown.s.start().done;
    expect(gone).toMatchObject({ kind: 'gone' });
    if (gone.kind !== 'gone') throw new Error('unreachable');
    expect(gone.waitedMs).toBeGreaterThanOrEqual(150);
    expect(gone.last).toMatch(/ECONNREFUSED/);
    expect(unknown.retries.length).toBeGreaterThanOrEqual(1);
    expect(unknown.attempts()).toBe(unknown.retries.length + 1);
  });

  it('an engine that cannot be built ends the run', async () => {
    const coord = await fakeCoordinator((c) => c.ws.send(welcome(1)));
    const t = session(coord.url, { createBackend: () => Promise.reject(new Error('no memory for the model')) });
    expect(await t.s.start().done).toMatchObject({ kind: 'engine-failed', message: 'no memory for the model' });
    // The client told the coordinator why before it closed.
    await coord.conns[0].closed;
    expect(coord.conns[0].received.map((e) => e.error?.code)).toContain(gradhub.ErrorCode.INTERNAL);
  });

  it('a URL that cannot be opened ends the run', async () => {
    const t = session('not a url', { openSocket: (events) => openWs('not a url', events) });
    expect(await t.s.start().done).toMatchObject({ kind: 'bad-url' });
  });

  it('stop() says Bye LEAVING and resolves once the socket closed; a later start() rejoins with the parameters it holds', async () => {
    const coord = await fakeCoordinator((c) => c.ws.send(welcome(c.index + 1)));
    let welcomed!: () => void;
    const joined = new Promise<void>((r) => (welcomed = r));
    const t = session(coord.url, { onEvent: (e) => e.type === 'welcome' && welcomed() });
    const run = t.s.start();
    await joined;
    await run.stop();
    expect(await run.done).toEqual({ kind: 'stopped' });
    const c0 = coord.conns[0];
    expect((await c0.closed).code).toBe(1000);
    expect(c0.received.map((e) => e.bye?.reason)).toContain(gradhub.ByeReason.LEAVING);

    // Paused and resumed (the browser): the same engine, a new worker.
    let welcomedAgain!: () => void;
    const again = new Promise<void>((r) => (welcomedAgain = r));
    const run2 = t.s.start();
    const watch = setInterval(() => coord.conns.length === 2 && welcomedAgain(), 5);
    await again;
    clearInterval(watch);
    run2.kill();
    expect(await run2.done).toEqual({ kind: 'stopped' });
    expect(t.backends).toHaveLength(1);
    // kill() is a crash: no goodbye.
    const c1 = coord.conns[1];
    expect((await c1.closed).code).toBe(1006);
    expect(c1.received.some((e) => e.bye)).toBe(false);
    t.s.close();
  });

  it('stop() during the pause between attempts ends the run at once', async () => {
    const port = await deadPort();
    let retried!: () => void;
    const waiting = new Promise<void>((r) => (retried = r));
    const t = session(`ws://127.0.0.1:${port}/ws`, { backoff: { initialMs: 60_000, maxMs: 60_000, graceMs: 600_000 }, onRetry: () => retried() });
    const run = t.s.start();
    await waiting;
    const t0 = Date.now();
    await run.stop();
    expect(await run.done).toEqual({ kind: 'stopped' });
    expect(Date.now() - t0).toBeLessThan(30_000);
  });
});

describe('Node worker: the final answers as its exit', () => {
  const base = { token: 'tok', logger: silent, backend: 'ts' as const, graceMs: 30_000, backoffInitialMs: 5, backoffMaxMs: 20 };

  it('done, E_AUTH, E_REJECTED and E_COORDINATOR_GONE', async () => {
    const done = await fakeCoordinator((c) => {
      c.ws.send(welcome(1));
      c.ws.send(bye(gradhub.ByeReason.TRAINING_DONE));
    });
    expect(await startNodeWorker({ ...base, url: done.url }).done).toEqual({ reason: 'done' });

    const http401 = await fakeCoordinator(() => {}, () => 401);
    const auth = await startNodeWorker({ ...base, url: http401.url }).done.catch((e: unknown) => e);
    expect(isGradhubError(auth, 'E_AUTH')).toBe(true);

    const model = await fakeCoordinator((c) => c.ws.send(reject(gradhub.ErrorCode.MODEL_MISMATCH)));
    const rejected = await startNodeWorker({ ...base, url: model.url }).done.catch((e: unknown) => e);
    expect(isGradhubError(rejected, 'E_REJECTED')).toBe(true);
    expect((rejected as Error).message).toContain('MODEL_MISMATCH: no');

    const port = await deadPort();
    const gone = await startNodeWorker({ ...base, url: `ws://127.0.0.1:${port}/ws`, graceMs: 100 }).done.catch((e: unknown) => e);
    expect(isGradhubError(gone, 'E_COORDINATOR_GONE')).toBe(true);
    expect((gone as Error).message).toMatch(/grace 100 ms\); last: .*ECONNREFUSED/);
  });

  it('stop() leaves politely and resolves stopped', async () => {
    const coord = await fakeCoordinator((c) => c.ws.send(welcome(1)));
    let welcomed!: () => void;
    const joined = new Promise<void>((r) => (welcomed = r));
    const w = startNodeWorker({ ...base, url: coord.url, onEvent: (e) => e.type === 'welcome' && welcomed() });
    await joined;
    w.stop();
    expect(await w.done).toEqual({ reason: 'stopped' });
    await coord.conns[0].closed;
    expect(coord.conns[0].received.map((e) => e.bye?.reason)).toContain(gradhub.ByeReason.LEAVING);
  });
});
