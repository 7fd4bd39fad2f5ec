/**
 * The admin token of the coordinator's HTTP pages (dashboard, /api/*, /metrics).
 *
 * With a token set, a request is let in when it carries either
 *   - `Authorization: Bearer <token>` (scripts, Prometheus' `authorization` setting), or
 *   - the `gradhub_admin` cookie that a visit to `/dashboard?token=<token>` sets once.
 * The cookie does not hold the token itself but HMAC-SHA256(token, COOKIE_PURPOSE), so a copied
 * cookie cannot be replayed as a bearer token; it is HttpOnly and SameSite=Lax (Secure over TLS).
 * Every comparison is constant-time over fixed-length digests. Without a token everything is open:
 * fine on a trusted network, and the caller's choice.
 */
import { createHmac } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { TLSSocket } from 'node:tls';
import { tokenMatcher } from './http-util.js';
import { GradhubError } from '@gradhub/core';

export const ADMIN_COOKIE = 'gradhub_admin';
const COOKIE_PURPOSE = 'gradhub dashboard cookie v1';

export interface AdminAuth {
  /** True when no token is set, or the request carries the bearer token or the cookie. */
  allows(req: IncomingMessage): boolean;
  /** True when `candidate` (e.g. from `?token=`) is the token. */
  matches(candidate: string): boolean;
  /** The `Set-Cookie` value that lets this browser in from now on. */
  cookieFor(req: IncomingMessage): string;
}

export function createAdminAuth(token: string | undefined): AdminAuth {
  if (token === undefined) {
    return { allows: () => true, matches: () => true, cookieFor: () => '' };
  }
  if (typeof token !== 'string' || token.length === 0) {
    throw new GradhubError('E_USAGE', 'the admin token must be a non-empty string (leave it out to open the dashboard to everyone)');
  }
  const cookieValue = createHmac('sha256', token).update(COOKIE_PURPOSE).digest('base64url');
  const matches = tokenMatcher(token);
  const cookieMatches = tokenMatcher(cookieValue);
  return {
    matches,
    allows(req: IncomingMessage): boolean {
      const auth = req.headers.authorization;
      if (auth !== undefined) {
        const m = /^Bearer\s+(\S+)\s*$/i.exec(auth);
        if (m && matches(m[1])) return true;
      }
      const cookie = readCookie(req.headers.cookie, ADMIN_COOKIE);
      return cookie !== undefined && cookieMatches(cookie);
    },
    cookieFor(req: IncomingMessage): string {
      const secure = (req.socket as Partial<TLSSocket>).encrypted === true ? '; Secure' : '';
      return `${ADMIN_COOKIE}=${cookieValue}; Path=/; HttpOnly; SameSite=Lax${secure}`;
    },
  };
}


/** The value of cookie `name` in a `Cookie` header, if present. */
function readCookie(header: string | undefined, name: string): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}
