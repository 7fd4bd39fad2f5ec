/** Small HTTP helpers shared by the coordinator's routes (dashboard, API, volunteer page, auth). */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';

/** Answer with a whole body and its Content-Length; HEAD gets the headers only. */
export function sendBody(req: IncomingMessage, res: ServerResponse, code: number, headers: OutgoingHttpHeaders, body: string | Buffer): void {
  const bytes = typeof body === 'string' ? Buffer.from(body, 'utf8') : body;
  res.writeHead(code, { ...headers, 'Content-Length': bytes.length });
  res.end(req.method === 'HEAD' ? undefined : bytes);
}

/** The request's URL (path and query), or null when it cannot be parsed. */
export function parseUrl(raw: string | undefined): URL | null {
  try {
    return new URL(raw ?? '/', 'http://coordinator.invalid');
  } catch {
    return null;
  }
}

const HTML_ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** Escape text for HTML element content and double-quoted attribute values. */
export function escapeHtml(value: unknown): string {
  return String(value).replace(/[&<>"']/g, (c) => HTML_ESCAPES[c]);
}

/** SHA-256 of a UTF-8 string (for constant-time comparisons of tokens of any length). */
export function sha256(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}

/**
 * Constant-time check of candidates against one token: the expected token is hashed once, each
 * candidate is hashed and its SHA-256 digest compared with timingSafeEqual, so lengths leak
 * nothing either. A null or undefined candidate never matches.
 */
export function tokenMatcher(expected: string): (candidate: string | null | undefined) => boolean {
  const digest = sha256(expected);
  return (candidate) => timingSafeEqual(sha256(candidate ?? ''), digest) && candidate !== null && candidate !== undefined;
}

/** A static file served from memory. */
export interface Asset {
  readonly body: Buffer;
  readonly contentType: string;
  /** Strong ETag of the body. */
  readonly etag: string;
}

/** The strong ETag of a body: its SHA-256, base64url, cut to 27 characters, quoted. */
export function etagOf(body: Buffer): string {
  return `"${createHash('sha256').update(body).digest('base64url').slice(0, 27)}"`;
}

/**
 * Answer with an asset: 304 (headers only) when the request's If-None-Match is its ETag, else 200
 * with the body. Headers: Content-Type, ETag, Cache-Control no-cache, then `extra`.
 */
export function serveAsset(req: IncomingMessage, res: ServerResponse, a: Asset, extra?: OutgoingHttpHeaders): void {
  const headers: OutgoingHttpHeaders = { 'Content-Type': a.contentType, 'ETag': a.etag, 'Cache-Control': 'no-cache', ...extra };
  if (req.headers['if-none-match'] === a.etag) {
    res.writeHead(304, headers);
    res.end();
    return;
  }
  sendBody(req, res, 200, headers, a.body);
}
