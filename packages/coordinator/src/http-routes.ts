/**
 * The coordinator's plain-HTTP pages, as one request handler the server calls before its own 404.
 *
 *   GET /dashboard            the live dashboard (HTML; see dashboard.ts)
 *   GET /assets/...           its script, style sheet and uPlot (open: code, no run data)
 *   GET /api/status           the run's StatusSnapshot as JSON, plus `now` (server clock, ms)
 *   GET /api/events           the same as Server-Sent Events: a snapshot, then every change (event-stream.ts)
 *   GET /metrics              Prometheus text format (prometheus.ts)
 *
 * The handler returns true when the path is one of these (it has answered: 200, 303, 304, 401,
 * 405 or 503), false otherwise and writes nothing, so the server can go on with its own routes
 * (`/healthz`, the worker page) and its 404. HEAD is answered like GET without a body.
 *
 * With `adminToken` set, everything but /assets needs it (admin-auth.ts): a bearer header, or the
 * cookie set by `/dashboard?token=...`, which answers 303 to the same URL without the token, so
 * the token leaves the address bar and the history. Anything else gets 401 (an HTML page for
 * /dashboard). The server must call `close()` before closing its listener: it ends the event
 * streams, which would otherwise hold `server.close()` open.
 */
import type { IncomingMessage, ServerResponse, OutgoingHttpHeaders } from 'node:http';
import type { Logger } from 'pino';
import { GradhubError } from '@gradhub/core';
import { createAdminAuth } from './admin-auth.js';
import { DASHBOARD_CSP, loadDashboardAssets, renderDashboard, renderUnauthorized } from './dashboard.js';
import { createEventStream } from './event-stream.js';
import { createPrometheusMetrics } from './prometheus.js';
import { sendBody, parseUrl, serveAsset } from './http-util.js';
import type { RunStatus } from './status.js';

export interface HttpRoutesOptions {
  readonly status: RunStatus;
  /** Token that guards every route but /assets. Default: none, everything open (trusted networks only). */
  readonly adminToken?: string;
  readonly logger: Logger;
  /** Most /api/events streams open at once; past it 503. Default 64. */
  readonly maxEventClients?: number;
  /** Keep-alive comment interval of the event streams, ms. Default 15000. */
  readonly eventHeartbeatMs?: number;
  /** Drop an event stream whose unsent bytes exceed this (a client that stopped reading). Default 8 MiB. */
  readonly maxEventBufferedBytes?: number;
}

/** `(req, res) => handled`; plus `close()` (ends the event streams) and the streams open now. */
export interface HttpRoutes {
  (req: IncomingMessage, res: ServerResponse): boolean;
  readonly eventClients: number;
  close(): void;
}

const ROUTES = new Set(['/dashboard', '/dashboard/', '/api/status', '/api/events', '/metrics']);

/** Headers of every answer: no sniffing, no referrer (a `?token=` must not leak), no framing. */
const BASE_HEADERS: OutgoingHttpHeaders = {
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
  'X-Frame-Options': 'DENY',
};

export function createHttpRoutes(o: HttpRoutesOptions): HttpRoutes {
  const maxEventClients = positiveInt(o.maxEventClients ?? 64, 'maxEventClients');
  const heartbeatMs = positiveInt(o.eventHeartbeatMs ?? 15_000, 'eventHeartbeatMs');
  const maxBufferedBytes = positiveInt(o.maxEventBufferedBytes ?? 8 * 1024 * 1024, 'maxEventBufferedBytes');
  const log = o.logger.child({ module: 'http-routes' });
  const auth = createAdminAuth(o.adminToken);
  const assets = loadDashboardAssets();
  const events = createEventStream({ status: o.status, logger: o.logger, maxClients: maxEventClients, heartbeatMs, maxBufferedBytes });
  const prometheus = createPrometheusMetrics(o.status);

  const handler = (req: IncomingMessage, res: ServerResponse): boolean => {
    const url = parseUrl(req.url);
    if (!url) return false;
    const asset = assets.get(url.pathname);
    if (!asset && !ROUTES.has(url.pathname)) return false;

    for (const [k, v] of Object.entries(BASE_HEADERS)) res.setHeader(k, v as string);
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      sendBody(req, res, 405, { 'Content-Type': 'text/plain; charset=utf-8', 'Allow': 'GET, HEAD' }, 'method not allowed\n');
      return true;
    }
    if (asset) {
      serveAsset(req, res, asset);
      return true;
    }

    const isDashboard = url.pathname.startsWith('/dashboard');
    const queryToken = url.searchParams.get('token');
    if (isDashboard && queryToken !== null && o.adminToken !== undefined) {
      if (!auth.matches(queryToken)) {
        unauthorized(req, res, true);
        return true;
      }
      url.searchParams.delete('token');
      res.setHeader('Set-Cookie', auth.cookieFor(req));
      sendBody(req, res, 303, { 'Location': url.pathname + url.search, 'Cache-Control': 'no-store' }, '');
      log.info({ remote: req.socket.remoteAddress }, 'dashboard opened with the admin token: cookie set');
      return true;
    }
    if (!auth.allows(req)) {
      unauthorized(req, res, isDashboard);
      return true;
    }

    switch (url.pathname) {
      case '/dashboard':
      case '/dashboard/':
        sendBody(req, res, 200, {
          'Content-Type': 'text/html; charset=utf-8',
          'Content-Security-Policy': DASHBOARD_CSP,
          'Cache-Control': 'no-store',
        }, renderDashboard(o.status.snapshot()));
        break;
      case '/api/status':
        sendBody(req, res, 200, { 'Content-Type': 'application/json; charset=utf-8', 'Cache-Control': 'no-store' },
          JSON.stringify({ ...o.status.snapshot(), now: Date.now() }));
        break;
      case '/api/events':
        events.handle(req, res);
        break;
      case '/metrics':
        prometheus.text().then(
          (text) => sendBody(req, res, 200, { 'Content-Type': prometheus.contentType, 'Cache-Control': 'no-store' }, text),
          (err: unknown) => {
            log.error({ err }, 'metrics could not be collected');
            sendBody(req, res, 500, { 'Content-Type': 'text/plain; charset=utf-8' }, 'metrics could not be collected\n');
          },
        );
        break;
    }
    return true;
  };

  return Object.defineProperties(handler, {
    eventClients: { get: () => events.clients },
    close: { value: () => { events.close(); prometheus.close(); } },
  }) as HttpRoutes;

  function unauthorized(req: IncomingMessage, res: ServerResponse, html: boolean): void {
    log.info({ remote: req.socket.remoteAddress, url: req.url?.split('?')[0] }, 'request without the admin token: 401');
    const headers = { 'WWW-Authenticate': 'Bearer realm="gradhub"', 'Cache-Control': 'no-store' };
    if (html) {
      sendBody(req, res, 401, { ...headers, 'Content-Type': 'text/html; charset=utf-8', 'Content-Security-Policy': DASHBOARD_CSP }, renderUnauthorized());
    } else {
      sendBody(req, res, 401, { ...headers, 'Content-Type': 'text/plain; charset=utf-8' }, 'admin token needed: send Authorization: Bearer TOKEN\n');
    }
  }
}

function positiveInt(v: number, name: string): number {
  if (!Number.isInteger(v) || v <= 0) throw new GradhubError('E_USAGE', `${name} must be a positive integer, got ${v}`);
  return v;
}
