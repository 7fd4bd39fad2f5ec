/**
 * The coordinator's HTTP + WebSocket server: transport only, no training logic.
 *
 * Contract:
 * - One `http.Server`. WebSocket upgrades on `wsPaths` (default `/` and `/ws`) go through a
 *   `ws` WebSocketServer in `noServer` mode. At the upgrade, before any WebSocket exists: the
 *   `Origin` header, when present, must be this server's own origin (http or https of the Host
 *   header) or one of `allowOrigins` (else 403); the token (query `?token=...` or
 *   `Authorization: Bearer ...`, compared in constant time) must be the join token (a volunteer)
 *   or the trusted token (a worker the operator runs), else 401; and the socket's class must have
 *   room (net-limits.ts: trusted slots are reserved, volunteers are capped overall and per
 *   address), else 503. Accepted sockets go to the `onConnection` handler (membership) with
 *   `trusted`. permessage-deflate is off; `maxPayload` is the hard per-message cap (size it to the
 *   model: frame limits + slack); past it `ws` closes with 1009 (membership answers first).
 * - Limits under a flood (docs/design.md "Limits under a flood"): every TCP (or Unix socket)
 *   connection counts as `http` until it is a WebSocket, capped overall and per remote address
 *   (past it: destroyed at once); a request's headers must arrive within `headersTimeoutMs` and
 *   the whole request within `requestTimeoutMs` (408); the caps together stay under the process's
 *   file-descriptor limit minus a reserve. Every refusal is counted (`refused.<reason>` on the
 *   status sink: gradhub_refused_total{reason}) and logged at most once per reason every 5 s.
 * - HTTP: one route table, handlers tried in order, each returning true when it answered:
 *   `GET /healthz` first (200 with JSON `{"status":"ok"}`, nothing about the run), then what `use`
 *   added (the dashboard and API routes, the volunteer page). The rest is 404. Every answer
 *   carries the security headers (`SECURITY_HEADERS`; a route may set its own CSP; HSTS with
 *   TLS); `*.map` is 404 unless `serveSourceMaps`.
 * - `socketPath` (optional): the same server (routes, upgrades, token check) also listens on a Unix
 *   domain socket, always plain http/ws, for workers on this machine (the local launcher's). The
 *   kernel moves loopback TCP at ~22 ms of CPU per 42 MB (both ends); a Unix socket at ~14 ms
 *   (measured with plain net sockets on a 2-core machine), and a 2-worker step moves four such gradients through the
 *   coordinator. The caller picks a path in a directory only it can enter; `socketUrl` is the
 *   `ws+unix://PATH:/ws` address `ws` clients take.
 * - `close()` stops listening, closes every WebSocket with 1001 and resolves when the HTTP server
 *   is closed (and the socket file removed).
 * - `startHttpServer` is the same server without the WebSocket endpoint (every upgrade gets 404),
 *   for a run that computes in its own process (`gradhub train --workers 0`) but still serves the
 *   dashboard, /api and /metrics.
 */
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import type { Logger } from 'pino';
import { ErrorCode, GradhubError } from '@gradhub/core';
import { tokenMatcher } from './http-util.js';
import {
  ConnectionLedger, DEFAULT_FD_LIMIT, RefusalLog, planLimits, readFdLimit,
  type NetLimits, type RefusalReason, type SocketClass,
} from './net-limits.js';

export interface ServerOptions {
  /** Address to listen on. Default '0.0.0.0' (every interface). */
  readonly host?: string;
  /** TCP port. Default 8080; 0 picks a free port (see `port` on the result). */
  readonly port?: number;
  /** The public join token of volunteers (untrusted workers). Required, non-empty. */
  readonly token: string;
  /** The token of workers the operator runs (trusted; their own reserved slots). Default: none. */
  readonly trustedToken?: string;
  /** Hard cap on one incoming WebSocket message, bytes (ws `maxPayload`). Required: size it to the model. */
  readonly maxPayloadBytes: number;
  /** Paths that accept WebSocket upgrades. Default ['/', '/ws']. */
  readonly wsPaths?: readonly string[];
  /** Origins, besides this server's own, whose pages may open a WebSocket (e.g. 'https://example.org'). Default: none. */
  readonly allowOrigins?: readonly string[];
  readonly logger: Logger;
  /**
   * Serve https:// and wss:// on the same port instead of plain http/ws (PEM certificate chain and
   * private key). Browsers grant SharedArrayBuffer and crypto.subtle to secure contexts only, so
   * volunteers on other machines need this.
   */
  readonly tls?: { readonly cert: string | Buffer; readonly key: string | Buffer };
  /** Also listen on this Unix domain socket (plain http/ws; see the contract above). Default: none. */
  readonly socketPath?: string;
  /** Socket limits (net-limits.ts; defaults DEFAULT_NET_LIMITS), fitted under the descriptor limit. */
  readonly limits?: Partial<NetLimits>;
  /** The process's open-file limit to fit the limits under. Default: read at start (net-limits.ts readFdLimit), else 1024. */
  readonly fdLimit?: number;
  /** A request's headers must arrive within this, ms. Default 10000. */
  readonly headersTimeoutMs?: number;
  /** A whole request must arrive within this, ms. Default 30000. */
  readonly requestTimeoutMs?: number;
  /** Serve `*.map` files (debugging the browser worker). Default false: 404. */
  readonly serveSourceMaps?: boolean;
  /** Where refusals are counted (`refused.<reason>`; RunStatus fits). Optional. */
  readonly status?: { count(name: string, by?: number): void };
}

/** One entry of the route table: return (or resolve) true when it answered the request. */
export type RequestHandler = (req: http.IncomingMessage, res: http.ServerResponse) => boolean | Promise<boolean>;

/** Options of `startHttpServer`: the listening part of ServerOptions. */
export type HttpServerOptions = Pick<ServerOptions,
  'host' | 'port' | 'logger' | 'tls' | 'limits' | 'fdLimit' | 'headersTimeoutMs' | 'requestTimeoutMs' | 'serveSourceMaps' | 'status'>;

/** The HTTP side of a server: routes, /healthz, close. */
export interface HttpServer {
  readonly http: http.Server;
  /** The port actually listened on. */
  readonly port: number;
  /** http://HOST:PORT (https:// with TLS); 127.0.0.1 when listening on every interface. */
  readonly httpUrl: string;
  /** The socket limits in force (after fitting under the descriptor limit). */
  readonly limits: NetLimits;
  /** Add handlers to the route table, tried in order after those added before (see the contract). */
  use(handler: RequestHandler): void;
  /** Run `fn` first when the server closes (e.g. end event streams that would hold the listener open). */
  onClose(fn: () => void): void;
  close(): Promise<void>;
}

export interface GradhubServer extends HttpServer {
  readonly wss: WebSocketServer;
  /** `ws+unix://PATH:/ws` when listening on a Unix socket too (ServerOptions.socketPath), else null. */
  readonly socketUrl: string | null;
  /** ws://HOST:PORT (wss:// with TLS) of the server, no path (upgrades are taken on `wsPaths`); 127.0.0.1 when listening on every interface. */
  readonly url: string;
  /** Set the handler of accepted WebSocket connections (one handler; membership's `attach`); `trusted`: opened with the trusted token. */
  onConnection(handler: (ws: WebSocket, req: http.IncomingMessage, trusted: boolean) => void): void;
}

/**
 * Headers of every HTTP answer: no sniffing, no framing, no referrer (a `?token=` must not leak),
 * a window of its own, and a CSP that allows nothing (pages set their own: the dashboard's and the
 * volunteer page's).
 */
export const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  'X-Content-Type-Options': 'nosniff',
  'X-Frame-Options': 'DENY',
  'Referrer-Policy': 'no-referrer',
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Content-Security-Policy': "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
};

/** Sent with TLS only: browsers keep to https for a year. */
const HSTS = 'max-age=31536000';

/** Constant-time token check: compares SHA-256 digests, so lengths leak nothing either. */
export function tokenMatches(given: string | null | undefined, expected: string): boolean {
  return tokenMatcher(expected)(given);
}

/** The token of an upgrade request: `?token=` or `Authorization: Bearer`. */
export function requestToken(req: http.IncomingMessage): string | null {
  const auth = req.headers.authorization;
  if (typeof auth === 'string' && auth.startsWith('Bearer ')) return auth.slice(7).trim();
  const url = new URL(req.url ?? '/', 'http://localhost');
  return url.searchParams.get('token');
}

/** Answer an upgrade with an HTTP error (status, reason text) and destroy the socket once the answer is written. */
function refuse(socket: Duplex, status: number, text: string, reason: string): void {
  const extra = (status === 401 ? 'WWW-Authenticate: Bearer\r\n' : '') + (status === 503 ? 'Retry-After: 10\r\n' : '');
  const body = JSON.stringify({ error: reason, message: text }) + '\n';
  socket.once('finish', () => socket.destroy());
  socket.end(`HTTP/1.1 ${status} ${text}\r\nConnection: close\r\n${extra}Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
}

/** Where a socket is counted in the ledger: its class moves from `http` to a WebSocket class at the upgrade. */
interface Slot {
  cls: SocketClass;
  readonly address: string;
  /** The TCP (or Unix) socket itself. */
  readonly socket: Socket;
  /** Counted out already (evicted: before its close event). */
  released: boolean;
}
const kSlot = Symbol('gradhub.slot');
/** The address of connections on the Unix socket. */
const UNIX = 'unix';
type Counted = Duplex & { [kSlot]?: Slot; _parent?: Counted };
/** The slot of a socket, or of the TCP socket under a TLS one. */
const slotOf = (s: Duplex): Slot | undefined => (s as Counted)[kSlot] ?? (s as Counted)._parent?.[kSlot];

/** Whether `origin` (an Origin header) is this server's own (http or https of `host`) or allowed. */
export function originAllowed(origin: string | undefined, host: string | undefined, allowed: ReadonlySet<string>): boolean {
  if (origin === undefined) return true; // not a browser (Node workers send none)
  if (allowed.has(origin)) return true;
  if (!host) return false;
  return origin === `http://${host}` || origin === `https://${host}`;
}

/** Create the server and listen. Rejects with GradhubError E_LISTEN when the port cannot be bound. */
export async function startServer(opts: ServerOptions): Promise<GradhubServer> {
  if (typeof opts.token !== 'string' || opts.token.length === 0) throw new GradhubError(ErrorCode.E_USAGE, 'the coordinator needs a non-empty join token');
  if (opts.trustedToken !== undefined && (typeof opts.trustedToken !== 'string' || opts.trustedToken.length === 0)) {
    throw new GradhubError(ErrorCode.E_USAGE, 'the trusted token must be a non-empty string (leave it out for none)');
  }
  if (opts.trustedToken === opts.token) throw new GradhubError(ErrorCode.E_USAGE, 'the trusted token must differ from the join token');
  if (!Number.isInteger(opts.maxPayloadBytes) || opts.maxPayloadBytes < 1024) {
    throw new GradhubError(ErrorCode.E_USAGE, `maxPayloadBytes must be an integer >= 1024, got ${opts.maxPayloadBytes}`);
  }
  return listenOn(opts, true);
}

/** The server without a WebSocket endpoint (see the contract above); rejects with E_LISTEN like startServer. */
export async function startHttpServer(opts: HttpServerOptions): Promise<HttpServer> {
  const { wss: _wss, socketUrl: _socketUrl, url: _url, onConnection: _onConnection, ...httpOnly } = await listenOn(opts, false);
  return httpOnly;
}

function readTextOrNull(path: string): string | null {
  try {
    return fs.readFileSync(path, 'utf8');
  } catch {
    return null;
  }
}

async function listenOn(opts: HttpServerOptions & Partial<ServerOptions>, websockets: boolean): Promise<GradhubServer> {
  const host = opts.host ?? '0.0.0.0';
  const port = opts.port ?? 8080;
  const wsPaths = new Set(websockets ? opts.wsPaths ?? ['/', '/ws'] : []);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new GradhubError(ErrorCode.E_USAGE, `port must be an integer in 0..65535, got ${port}`);
  const headersTimeout = opts.headersTimeoutMs ?? 10_000;
  const requestTimeout = opts.requestTimeoutMs ?? 30_000;
  for (const [k, v] of [['headersTimeoutMs', headersTimeout], ['requestTimeoutMs', requestTimeout]] as const) {
    if (!Number.isInteger(v) || v < 1) throw new GradhubError(ErrorCode.E_USAGE, `${k} must be a positive integer, got ${v}`);
  }
  if (requestTimeout < headersTimeout) throw new GradhubError(ErrorCode.E_USAGE, `requestTimeoutMs (${requestTimeout}) must be at least headersTimeoutMs (${headersTimeout})`);
  const log = opts.logger.child({ module: 'server' });
  const fdLimit = opts.fdLimit ?? readFdLimit(readTextOrNull) ?? DEFAULT_FD_LIMIT;
  let plan: ReturnType<typeof planLimits>;
  try {
    plan = planLimits(fdLimit, opts.limits);
  } catch (err) {
    throw new GradhubError(ErrorCode.E_USAGE, (err as Error).message);
  }
  const limits = plan.limits;
  if (plan.fitted) log.info({ fdLimit, budget: plan.budget, limits }, 'socket limits lowered to fit the open-file limit');
  const ledger = new ConnectionLedger(limits);
  const joinTokenMatches = tokenMatcher(opts.token ?? '');
  const trustedTokenMatches = opts.trustedToken === undefined ? () => false : tokenMatcher(opts.trustedToken);
  const allowOrigins = new Set(opts.allowOrigins ?? []);
  const refusals = new RefusalLog((reason, count, fields) => log.warn({ ...fields, reason, count }, count === 1 ? `refused: ${reason}` : `refused ${count} times: ${reason}`));
  const flushRefusals = setInterval(() => refusals.flush(Date.now()), 1000);
  flushRefusals.unref();
  const refused = (reason: RefusalReason, fields: Record<string, unknown>): void => {
    opts.status?.count(`refused.${reason}`);
    refusals.note(reason, fields, Date.now());
  };
  // The one route table: handlers tried in order (/healthz first), then 404.
  const handlers: RequestHandler[] = [];
  const closeHooks: (() => void)[] = [];
  let connectionHandler: ((ws: WebSocket, req: http.IncomingMessage, trusted: boolean) => void) | null = null;

  const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, maxPayload: opts.maxPayloadBytes ?? 1024, clientTracking: true });

  const onRequest = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    for (const [k, v] of Object.entries(SECURITY_HEADERS)) res.setHeader(k, v);
    if (opts.tls) res.setHeader('Strict-Transport-Security', HSTS);
    void handleRequest(req, res).catch((err: unknown) => {
      log.error({ err, url: req.url?.split('?')[0] }, 'HTTP handler failed');
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
      res.end('internal error\n');
    });
  };
  const serverOptions: http.ServerOptions = { headersTimeout: headersTimeout, requestTimeout: requestTimeout, connectionsCheckingInterval: Math.min(1000, headersTimeout), keepAliveTimeout: 5000 };
  let server: http.Server;
  try {
    server = opts.tls ? https.createServer({ ...serverOptions, cert: opts.tls.cert, key: opts.tls.key }, onRequest) : http.createServer(serverOptions, onRequest);
  } catch (err) {
    throw new GradhubError(ErrorCode.E_USAGE, `cannot use the TLS certificate/key: ${(err as Error).message} (pass PEM files with --tls-cert and --tls-key)`);
  }

  async function handleRequest(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    for (const h of handlers) if (await h(req, res)) return;
    res.writeHead(404, { 'content-type': 'text/plain' });
    res.end('not found\n');
  }

  handlers.push((req, res) => {
    const path = new URL(req.url ?? '/', 'http://localhost').pathname;
    if (path.endsWith('.map') && !opts.serveSourceMaps) {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('not found\n');
      return true;
    }
    if (req.method !== 'GET' || path !== '/healthz') return false;
    res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' });
    res.end(JSON.stringify({ status: 'ok' }));
    return true;
  });

  /** The http-class sockets of each address, oldest first (to evict from the heaviest). */
  const httpSlots = new Map<string, Set<Slot>>();
  const release = (slot: Slot): void => {
    if (slot.released) return;
    slot.released = true;
    ledger.give(slot.cls, slot.address);
    if (slot.cls === 'http') leaveHttp(slot);
  };
  const leaveHttp = (slot: Slot): void => {
    const set = httpSlots.get(slot.address);
    set?.delete(slot);
    if (set?.size === 0) httpSlots.delete(slot.address);
  };

  /** Every connection, before HTTP or TLS sees it: counted as `http`, or destroyed when over a cap. */
  const onSocket = (sock: Socket): void => {
    // The Unix socket (no remote address) lies in a directory only this user can enter: the
    // local launcher's workers, however many, all connect from it at once.
    const address = sock.remoteAddress ?? UNIX;
    const perAddress = address !== UNIX;
    let why = ledger.take('http', address, perAddress);
    const heavy = why === 'sockets' ? ledger.evictionFor(address) : null;
    const victim = heavy === null ? undefined : httpSlots.get(heavy)?.values().next().value;
    if (victim) {
      // The cap is full and one address holds more than its share: its oldest socket makes room.
      refused('evicted', { remote: victim.address, for: address });
      release(victim);
      victim.socket.destroy();
      why = ledger.take('http', address, perAddress);
    }
    if (why) {
      refused(why, { remote: address });
      sock.destroy();
      return;
    }
    const slot: Slot = { cls: 'http', address, socket: sock, released: false };
    (sock as unknown as Counted)[kSlot] = slot;
    let set = httpSlots.get(address);
    if (!set) httpSlots.set(address, (set = new Set()));
    set.add(slot);
    sock.once('close', () => release(slot));
  };

  /** Bad requests and timeouts (headers or request too slow): answered, counted, closed. */
  const onClientError = (err: NodeJS.ErrnoException, socket: Duplex): void => {
    if (err.code === 'ECONNRESET' || !socket.writable) {
      socket.destroy();
      return;
    }
    const timeout = err.code === 'ERR_HTTP_REQUEST_TIMEOUT';
    refused(timeout ? 'timeout' : 'bad_request', { remote: slotOf(socket)?.address, code: err.code });
    const status = timeout ? '408 Request Timeout' : err.code === 'HPE_HEADER_OVERFLOW' ? '431 Request Header Fields Too Large' : '400 Bad Request';
    socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
    socket.destroy();
  };

  const onUpgrade = (req: http.IncomingMessage, socket: Duplex, head: Buffer): void => {
    socket.on('error', (err) => log.debug({ err }, 'upgrade socket error'));
    const path = new URL(req.url ?? '/', 'http://localhost').pathname;
    const slot = slotOf(socket);
    const remote = slot?.address ?? req.socket.remoteAddress;
    if (!wsPaths.has(path)) {
      refused('not_found', { remote, path });
      return refuse(socket, 404, 'Not Found', 'not_found');
    }
    if (!originAllowed(req.headers.origin, req.headers.host, allowOrigins)) {
      refused('origin', { remote, origin: req.headers.origin });
      return refuse(socket, 403, 'Forbidden', 'origin');
    }
    const token = requestToken(req);
    const trusted = trustedTokenMatches(token);
    if (!trusted && !joinTokenMatches(token)) {
      refused('bad_token', { remote });
      return refuse(socket, 401, 'Unauthorized', 'bad_token');
    }
    if (slot && !slot.released) {
      const cls: SocketClass = trusted ? 'trusted' : 'volunteer';
      const why = ledger.take(cls, slot.address, slot.address !== UNIX);
      if (why) {
        refused(why, { remote });
        return refuse(socket, 503, 'Service Unavailable', why);
      }
      ledger.give('http', slot.address);
      leaveHttp(slot);
      slot.cls = cls;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      if (!connectionHandler) {
        ws.close(1013, 'not ready');
        return;
      }
      connectionHandler(ws, req, trusted);
    });
  };
  server.prependListener('connection', onSocket);
  server.on('clientError', onClientError);
  server.on('upgrade', onUpgrade);

  /** Listen on a TCP port or a Unix socket path; E_LISTEN naming `where` when that fails. */
  const listen = (srv: http.Server, where: string, at: { port: number; host: string } | { path: string }): Promise<void> =>
    new Promise<void>((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException): void => {
        reject(new GradhubError(ErrorCode.E_LISTEN, `cannot listen on ${where}: ${err.code ?? err.message}`, { cause: err }));
      };
      srv.once('error', onError);
      srv.listen(at, () => {
        srv.off('error', onError);
        resolve();
      });
    });
  try {
    await listen(server, `${host}:${port}`, { port, host });
  } catch (err) {
    clearInterval(flushRefusals);
    throw err;
  }
  server.on('error', (err) => log.error({ err }, 'HTTP server error'));
  let local: http.Server | null = null;
  if (opts.socketPath !== undefined) {
    local = http.createServer(serverOptions, onRequest);
    local.prependListener('connection', onSocket);
    local.on('clientError', onClientError);
    local.on('upgrade', onUpgrade);
    try {
      await listen(local, opts.socketPath, { path: opts.socketPath });
      fs.chmodSync(opts.socketPath, 0o600);
    } catch (err) {
      clearInterval(flushRefusals);
      local.close();
      server.close();
      throw err;
    }
    local.on('error', (err) => log.error({ err }, 'HTTP server error (Unix socket)'));
  }
  const addr = server.address();
  const boundPort = typeof addr === 'object' && addr !== null ? addr.port : port;
  const urlHost = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host.includes(':') ? `[${host}]` : host;
  const url = `${opts.tls ? 'wss' : 'ws'}://${urlHost}:${boundPort}`;
  const httpUrl = `${opts.tls ? 'https' : 'http'}://${urlHost}:${boundPort}`;
  const socketUrl = opts.socketPath !== undefined ? `ws+unix://${opts.socketPath}:/ws` : null;
  log.info({ host, port: boundPort, socketPath: opts.socketPath, websockets, fdLimit, limits }, 'coordinator listening');

  let closing: Promise<void> | null = null;
  return {
    http: server,
    wss,
    port: boundPort,
    url,
    httpUrl,
    socketUrl,
    limits,
    onConnection(handler) {
      connectionHandler = handler;
    },
    use(handler) {
      handlers.push(handler);
    },
    onClose(fn) {
      closeHooks.push(fn);
    },
    close() {
      closing ??= new Promise<void>((resolve) => {
        clearInterval(flushRefusals);
        refusals.flush(Number.POSITIVE_INFINITY);
        for (const fn of closeHooks) {
          try {
            fn();
          } catch (err) {
            log.warn({ err }, 'close hook failed');
          }
        }
        for (const ws of wss.clients) ws.close(1001, 'coordinator shutting down');
        // Sockets that do not finish the closing handshake promptly are cut.
        const cut = setTimeout(() => {
          for (const ws of wss.clients) ws.terminate();
        }, 2000);
        cut.unref();
        wss.close();
        const closed = [server, local].filter((x): x is http.Server => x !== null).map((srv) =>
          new Promise<void>((done) => {
            srv.close(() => done());
            srv.closeAllConnections();
          }));
        void Promise.all(closed).then(() => {
          clearTimeout(cut);
          resolve();
        });
      });
      return closing;
    },
  };
}
