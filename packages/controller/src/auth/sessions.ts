// Owns what a browser session is on the wire: its id ("bks_" + 32 random bytes,
// base64url) held by the browser in an HttpOnly `__Host-` cookie, the sha256 under
// which the store keeps it, the public id naming it in logs and the audit trail, and
// its CSRF token. The CSRF token is HMAC(signing secret, session id): never stored,
// the same on every replica (they share the secret), and worthless without the cookie.
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { serialize } from 'cookie';

/** `__Host-`: the browser keeps it only when Secure, Path=/ and without Domain — no subdomain can plant or read it. */
export const SESSION_COOKIE = '__Host-bulkhead_session';
/** Header a cookie-authenticated mutating request must carry (lower case, as Node presents it). */
export const CSRF_HEADER = 'x-bulkhead-csrf';

const SESSION_ID_RE = /^bks_[A-Za-z0-9_-]{43}$/;

export function newSessionId(): string {
  return 'bks_' + randomBytes(32).toString('base64url');
}

export function looksLikeSessionId(s: string): boolean {
  return SESSION_ID_RE.test(s);
}

export function hashSessionId(id: string): string {
  return createHash('sha256').update(id).digest('hex');
}

/** The name of a session in logs, answers and the audit trail ("ses_" + 16 hex of its hash); not a credential. */
export function publicSessionId(idHash: string): string {
  return 'ses_' + idHash.slice(0, 16);
}

export function csrfToken(secret: Buffer, sessionId: string): string {
  return createHmac('sha256', secret).update('bulkhead-csrf\0' + sessionId).digest('base64url');
}

/** Constant-time comparison of a presented CSRF token with the session's. */
export function csrfMatches(secret: Buffer, sessionId: string, presented: string | string[] | undefined): boolean {
  if (typeof presented !== 'string') return false;
  const want = Buffer.from(csrfToken(secret, sessionId));
  const got = Buffer.from(presented);
  return got.length === want.length && timingSafeEqual(got, want);
}

/** Set-Cookie value for a new session living `maxAgeMs` at most. */
export function sessionCookie(id: string, maxAgeMs: number): string {
  return serialize(SESSION_COOKIE, id, { httpOnly: true, secure: true, sameSite: 'strict', path: '/', maxAge: Math.max(0, Math.floor(maxAgeMs / 1000)) });
}

/** Set-Cookie value that makes the browser drop the cookie. */
export function clearedSessionCookie(): string {
  return serialize(SESSION_COOKIE, '', { httpOnly: true, secure: true, sameSite: 'strict', path: '/', maxAge: 0 });
}
