/**
 * The volunteer page: what a browser tab opens to lend its processor to the run, as one request
 * handler the server tries before its own 404 (like http-routes.ts).
 *
 *   GET /                  the page (the volunteer pastes a join link, unless `openJoin`)
 *   GET /join?token=T      the page, joining with T (403 when T is not the run's token)
 *   GET /volunteer/...     its script (page.js), the Web Worker (worker.js), style sheet, source maps
 *   GET /volunteer/auth    204 when `Authorization: Bearer T` holds the join token, else 401: a
 *                          browser cannot see why a WebSocket upgrade failed, so the worker asks
 *                          here before retrying (only when `token` is given)
 *
 * The page's Web Worker opens the coordinator's WebSocket (`wsPath`) with the token in `?token=`
 * (browsers cannot set headers on a WebSocket; the server checks the query at the upgrade).
 *
 * The files come from `assetsDir` (the browser worker's build, @gradhub/worker's
 * BROWSER_ASSETS_DIR: this package never imports the worker package; the CLI passes the path).
 * They are read once, when the routes are created, so a missing build fails at start.
 *
 * Every answer is cross-origin isolated (`Cross-Origin-Opener-Policy: same-origin`,
 * `Cross-Origin-Embedder-Policy: require-corp`, `Cross-Origin-Resource-Policy: same-origin`), so
 * the worker may use SharedArrayBuffer (multi-threaded kernels); the page has a strict CSP (own
 * scripts only, WebAssembly compilation but no eval, connections to this host only, no framing)
 * and sends no referrer (the join token is in its address). GET and HEAD only.
 */
import * as fs from 'node:fs';
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import * as path from 'node:path';
import type { Logger } from 'pino';
import { sendBody, parseUrl, escapeHtml, etagOf, serveAsset, tokenMatcher, type Asset } from './http-util.js';
import { GradhubError } from '@gradhub/core';

export interface VolunteerRoutesOptions {
  /** Directory of the built browser worker (volunteer.html, volunteer.css, page.js, worker.js). Required. */
  readonly assetsDir: string;
  /** The run's name, shown on the page (escaped). Required, non-empty. */
  readonly runName: string;
  /**
   * The join token. When given, `/join?token=` is checked (a wrong one gets a 403 page instead of
   * a tab retrying forever) and `/volunteer/auth` answers. Default: none (neither is checked here;
   * the WebSocket upgrade still is).
   */
  readonly token?: string;
  /**
   * Put the join token in the page at `/`, so that anyone who can reach the coordinator can join
   * without a link. Needs `token`. Default false: `/` asks for the join link.
   */
  readonly openJoin?: boolean;
  /** Path of the coordinator's WebSocket endpoint. Default '/ws'. */
  readonly wsPath?: string;
  readonly logger: Logger;
}

/** `(req, res) => handled`: true when it answered (200, 204, 304, 401, 403, 405), false (nothing written) otherwise. */
export type VolunteerRoutes = (req: IncomingMessage, res: ServerResponse) => boolean;

/** Files of the build that the page cannot do without. */
const REQUIRED = ['volunteer.html', 'volunteer.css', 'page.js', 'worker.js'];
const ASSET_PREFIX = '/volunteer/';
const AUTH_PATH = '/volunteer/auth';
const PAGE_PATHS = new Set(['/', '/join', '/join/']);

const CONTENT_TYPES: Record<string, string> = {
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.txt': 'text/plain; charset=utf-8',
};

/** Headers of every answer: cross-origin isolation, no sniffing, no referrer, no framing. */
const BASE_HEADERS: OutgoingHttpHeaders = {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
  'Cross-Origin-Resource-Policy': 'same-origin',
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
  'X-Frame-Options': 'DENY',
};

export function createVolunteerRoutes(o: VolunteerRoutesOptions): VolunteerRoutes {
  if (typeof o.runName !== 'string' || o.runName.trim() === '') throw new GradhubError('E_USAGE', 'the volunteer page needs a run name');
  if (o.token !== undefined && (typeof o.token !== 'string' || o.token.length === 0)) {
    throw new GradhubError('E_USAGE', 'the volunteer page\'s join token must be a non-empty string (leave it out to not check it here)');
  }
  if (o.openJoin && o.token === undefined) throw new GradhubError('E_USAGE', 'openJoin puts the join token in the page: it needs the token');
  const wsPath = o.wsPath ?? '/ws';
  if (!wsPath.startsWith('/') || /[\s"<>&]/.test(wsPath)) throw new GradhubError('E_USAGE', `wsPath must be an absolute path, got "${wsPath}"`);
  const log = o.logger.child({ module: 'volunteer-routes' });
  const { template, assets } = loadAssets(o.assetsDir);
  const render = (joinToken: string): Buffer => Buffer.from(template
    .replaceAll('{{RUN_NAME}}', escapeHtml(o.runName))
    .replaceAll('{{WS_PATH}}', escapeHtml(wsPath))
    .replaceAll('{{AUTH_PATH}}', o.token === undefined ? '' : AUTH_PATH)
    .replaceAll('{{JOIN_TOKEN}}', escapeHtml(joinToken)), 'utf8');
  const page = render('');
  const openPage = o.openJoin ? render(o.token!) : page;
  const tokenMatches = o.token === undefined ? null : tokenMatcher(o.token);

  return (req, res) => {
    const url = parseUrl(req.url);
    if (!url) return false;
    const p = url.pathname;
    const asset = p.startsWith(ASSET_PREFIX) ? assets.get(p.slice(ASSET_PREFIX.length)) : undefined;
    const isAuth = p === AUTH_PATH && tokenMatches !== null;
    if (!PAGE_PATHS.has(p) && !asset && !isAuth) return false;

    for (const [k, v] of Object.entries(BASE_HEADERS)) res.setHeader(k, v as string);
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      sendBody(req, res, 405, { 'Content-Type': 'text/plain; charset=utf-8', 'Allow': 'GET, HEAD' }, 'method not allowed\n');
      return true;
    }
    if (isAuth) {
      const auth = req.headers.authorization;
      const given = typeof auth === 'string' && auth.startsWith('Bearer ') ? auth.slice(7).trim() : '';
      if (tokenMatches!(given)) sendBody(req, res, 204, { 'Cache-Control': 'no-store' }, '');
      else sendBody(req, res, 401, { 'Cache-Control': 'no-store', 'Content-Type': 'text/plain; charset=utf-8', 'WWW-Authenticate': 'Bearer realm="gradhub"' }, 'join token refused\n');
      return true;
    }
    if (asset) {
      // The Web Worker's own policy (workers take it from their script's response).
      serveAsset(req, res, asset, p.endsWith('.js') ? { 'Content-Security-Policy': csp(req) } : undefined);
      return true;
    }
    const linkToken = p.startsWith('/join') ? url.searchParams.get('token') : null;
    const headers = { 'Content-Type': 'text/html; charset=utf-8', 'Content-Security-Policy': csp(req), 'Cache-Control': 'no-store' };
    if (linkToken !== null && tokenMatches !== null && !tokenMatches(linkToken)) {
      log.warn({ remote: req.socket.remoteAddress }, 'volunteer page opened with a wrong join token: 403');
      sendBody(req, res, 403, headers, invalidLinkPage(o.runName));
      return true;
    }
    log.debug({ remote: req.socket.remoteAddress, path: p }, 'volunteer page served');
    sendBody(req, res, 200, headers, p === '/' ? openPage : page);
    return true;
  };
}

/**
 * The page's Content-Security-Policy: own scripts, workers and styles only; WebAssembly may be
 * compiled ('wasm-unsafe-eval', no JS eval); connections to this origin, its WebSocket included
 * (named explicitly for browsers whose 'self' does not cover ws:).
 */
function csp(req: IncomingMessage): string {
  const host = req.headers.host;
  const ws = typeof host === 'string' && /^[A-Za-z0-9.\-]+(:\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](:\d{1,5})?$/.test(host) ? ` ws://${host} wss://${host}` : '';
  return "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; worker-src 'self'; style-src 'self'; img-src 'self' data:; " +
    `connect-src 'self'${ws}; base-uri 'none'; form-action 'self'; frame-ancestors 'none'`;
}

/** Read every file of the flat assets directory; the required ones must be there. The page template is kept apart: it is rendered, never served raw. */
function loadAssets(dir: string): { template: string; assets: Map<string, Asset> } {
  if (typeof dir !== 'string' || dir === '') throw new GradhubError('E_USAGE', 'the volunteer page needs assetsDir (the browser worker\'s build)');
  const missing = REQUIRED.filter((f) => !fs.existsSync(path.join(dir, f)));
  if (missing.length > 0) {
    throw new GradhubError('E_USAGE', `the browser worker is not built: ${missing.join(', ')} missing in ${dir} (run npm run build:browser --workspace @gradhub/worker)`);
  }
  const assets = new Map<string, Asset>();
  for (const name of fs.readdirSync(dir)) {
    const contentType = CONTENT_TYPES[path.extname(name)];
    if (!contentType || !/^[A-Za-z0-9._-]+$/.test(name)) continue;
    const file = path.join(dir, name);
    if (!fs.statSync(file).isFile()) continue;
    const body = fs.readFileSync(file);
    assets.set(name, { body, contentType, etag: etagOf(body) });
  }
  return { template: fs.readFileSync(path.join(dir, 'volunteer.html'), 'utf8'), assets };
}

function invalidLinkPage(runName: string): string {
  return '<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">' +
    `<title>gradhub · invalid join link</title><link rel="stylesheet" href="${ASSET_PREFIX}volunteer.css"></head>` +
    '<body data-state="refused"><main><header><p class="brand">gradhub volunteer</p>' +
    `<h1>${escapeHtml(runName)}</h1></header><section class="status"><span class="dot" aria-hidden="true"></span><span id="state">This join link is not valid</span></section>` +
    '<p id="message">Ask the run\'s organiser for a new link.</p></main></body></html>';
}
