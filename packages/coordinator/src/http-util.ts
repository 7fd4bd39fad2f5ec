/** Small HTTP helpers shared by the coordinator's routes (dashboard, API, volunteer page, auth). */
import { createHash } from 'node:crypto';
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
