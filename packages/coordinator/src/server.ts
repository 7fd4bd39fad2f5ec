/**
 * The coordinator's HTTP + WebSocket server: transport only, no training logic.
 *
 * Contract:
 * - One `http.Server`. WebSocket upgrades on `wsPaths` (default `/` and `/ws`) go through a
 *   `ws` WebSocketServer in `noServer` mode: the join token is checked at the upgrade, before any
 *   WebSocket exists (query `?token=...` or `Authorization: Bearer ...`, compared in constant
 *   time); a wrong or missing token gets `401` and the socket is destroyed. Accepted sockets go to
 *   the `onConnection` handler (membership). permessage-deflate is off; `maxPayload` is the hard
 *   per-message cap (size it to the model: frame limits + slack); past it `ws` closes with 1009.
 * - HTTP: one route table, handlers tried in order, each returning true when it answered:
 *   `GET /healthz` first (200 with JSON `{status:"ok", ...health()}`), then what `use` added
 *   (the dashboard and API routes, the volunteer page). The rest is 404.
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
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import type { Logger } from 'pino';
import { ErrorCode, GradhubError } from '@gradhub/core';
import { tokenMatcher } from './http-util.js';

export interface ServerOptions {
  /** Address to listen on. Default '0.0.0.0' (every interface). */
  readonly host?: string;
  /** TCP port. Default 8080; 0 picks a free port (see `port` on the result). */
  readonly port?: number;
  /** The join token workers must present. Required, non-empty. */
  readonly token: string;
  /** Hard cap on one incoming WebSocket message, bytes (ws `maxPayload`). Required: size it to the model. */
  readonly maxPayloadBytes: number;
  /** Paths that accept WebSocket upgrades. Default ['/', '/ws']. */
  readonly wsPaths?: readonly string[];
  /** Most simultaneous WebSocket connections; further upgrades get 503. Default 1024. */
  readonly maxConnections?: number;
  readonly logger: Logger;
  /**
   * Serve https:// and wss:// on the same port instead of plain http/ws (PEM certificate chain and
   * private key). Browsers grant SharedArrayBuffer and crypto.subtle to secure contexts only, so
   * volunteers on other machines need this.
   */
  readonly tls?: { readonly cert: string | Buffer; readonly key: string | Buffer };
  /** Also listen on this Unix domain socket (plain http/ws; see the contract above). Default: none. */
  readonly socketPath?: string;
}

/** One entry of the route table: return (or resolve) true when it answered the request. */
export type RequestHandler = (req: http.IncomingMessage, res: http.ServerResponse) => boolean | Promise<boolean>;

/** Options of `startHttpServer`: the listening part of ServerOptions. */
export type HttpServerOptions = Pick<ServerOptions, 'host' | 'port' | 'logger' | 'tls'>;

/** The HTTP side of a server: routes, /healthz, close. */
export interface HttpServer {
  readonly http: http.Server;
  /** The port actually listened on. */
  readonly port: number;
  /** http://HOST:PORT (https:// with TLS); 127.0.0.1 when listening on every interface. */
  readonly httpUrl: string;
  /** Add handlers to the route table, tried in order after those added before (see the contract). */
  use(handler: RequestHandler): void;
  /** Extra fields for /healthz (e.g. worker count, step). */
  setHealth(provider: () => Record<string, unknown>): void;
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
  /** Set the handler of accepted WebSocket connections (one handler; membership's `attach`). */
  onConnection(handler: (ws: WebSocket, req: http.IncomingMessage) => void): void;
}

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

/** Answer an upgrade with an HTTP error and destroy the socket once the answer is written. */
function refuse(socket: Duplex, status: number, text: string): void {
  const extra = status === 401 ? 'WWW-Authenticate: Bearer\r\n' : '';
  socket.once('finish', () => socket.destroy());
  socket.end(`HTTP/1.1 ${status} ${text}\r\nConnection: close\r\n${extra}Content-Type: text/plain\r\nContent-Length: ${text.length}\r\n\r\n${text}`);
}

/** Create the server and listen. Rejects with GradhubError E_LISTEN when the port cannot be bound. */
export async function startServer(opts: ServerOptions): Promise<GradhubServer> {
  if (typeof opts.token !== 'string' || opts.token.length === 0) throw new GradhubError(ErrorCode.E_USAGE, 'the coordinator needs a non-empty join token');
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

async function listenOn(opts: HttpServerOptions & Partial<ServerOptions>, websockets: boolean): Promise<GradhubServer> {
  const host = opts.host ?? '0.0.0.0';
  const port = opts.port ?? 8080;
  const wsPaths = new Set(websockets ? opts.wsPaths ?? ['/', '/ws'] : []);
  const maxConnections = opts.maxConnections ?? 1024;
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new GradhubError(ErrorCode.E_USAGE, `port must be an integer in 0..65535, got ${port}`);
  const log = opts.logger.child({ module: 'server' });
  const joinTokenMatches = tokenMatcher(opts.token ?? '');
  // The one route table: handlers tried in order (/healthz first), then 404.
  const handlers: RequestHandler[] = [];
  let health: () => Record<string, unknown> = () => ({});
  const closeHooks: (() => void)[] = [];
  let connectionHandler: ((ws: WebSocket, req: http.IncomingMessage) => void) | null = null;

  const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, maxPayload: opts.maxPayloadBytes ?? 1024, clientTracking: true });

  const onRequest = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    void handleRequest(req, res).catch((err: unknown) => {
      log.error({ err, url: req.url?.split('?')[0] }, 'HTTP handler failed');
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
      res.end('internal error\n');
    });
  };
  let server: http.Server;
  try {
    server = opts.tls ? https.createServer({ cert: opts.tls.cert, key: opts.tls.key }, onRequest) : http.createServer(onRequest);
  } catch (err) {
    throw new GradhubError(ErrorCode.E_USAGE, `cannot use the TLS certificate/key: ${(err as Error).message} (pass PEM files with --tls-cert and --tls-key)`);
  }

  async function handleRequest(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    for (const h of handlers) if (await h(req, res)) return;
    res.writeHead(404, { 'content-type': 'text/plain' });
    res.end('not found\n');
  }

  handlers.push((req, res) => {
    if (req.method !== 'GET' || new URL(req.url ?? '/', 'http://localhost').pathname !== '/healthz') return false;
    res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' });
    res.end(JSON.stringify({ status: 'ok', ...(websockets ? { connections: wss.clients.size } : {}), ...health() }));
    return true;
  });

  const onUpgrade = (req: http.IncomingMessage, socket: Duplex, head: Buffer): void => {
    socket.on('error', (err) => log.debug({ err }, 'upgrade socket error'));
    const path = new URL(req.url ?? '/', 'http://localhost').pathname;
    const remote = req.socket.remoteAddress;
    if (!wsPaths.has(path)) return refuse(socket, 404, 'Not Found');
    if (!joinTokenMatches(requestToken(req))) {
      log.warn({ remote }, 'upgrade refused: bad or missing join token');
      return refuse(socket, 401, 'Unauthorized');
    }
    if (wss.clients.size >= maxConnections) {
      log.warn({ remote, maxConnections }, 'upgrade refused: too many connections');
      return refuse(socket, 503, 'Service Unavailable');
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      if (!connectionHandler) {
        ws.close(1013, 'not ready');
        return;
      }
      connectionHandler(ws, req);
    });
  };
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
  await listen(server, `${host}:${port}`, { port, host });
  server.on('error', (err) => log.error({ err }, 'HTTP server error'));
  let local: http.Server | null = null;
  if (opts.socketPath !== undefined) {
    local = http.createServer(onRequest);
    local.on('upgrade', onUpgrade);
    try {
      await listen(local, opts.socketPath, { path: opts.socketPath });
      fs.chmodSync(opts.socketPath, 0o600);
    } catch (err) {
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
  log.info({ host, port: boundPort, socketPath: opts.socketPath, websockets }, 'coordinator listening');

  let closing: Promise<void> | null = null;
  return {
    http: server,
    wss,
    port: boundPort,
    url,
    httpUrl,
    socketUrl,
    onConnection(handler) {
      connectionHandler = handler;
    },
    use(handler) {
      handlers.push(handler);
    },
    setHealth(provider) {
      health = provider;
    },
    onClose(fn) {
      closeHooks.push(fn);
    },
    close() {
      closing ??= new Promise<void>((resolve) => {
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
