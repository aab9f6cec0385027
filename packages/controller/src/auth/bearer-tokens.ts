// Owns short-lived bearer tokens: "bkt_" + base64url(JSON claims) + "." +
// base64url(HMAC-SHA256(signing secret, everything before the ".")).
// Claims: kid (the API key it was exchanged for), role, projects, iat, exp
// (seconds since the epoch), jti (random id, for the audit trail). A token
// carries at most its key's rights; the key is looked up on every use, so
// revoking (or expiring) the key ends its tokens at once.
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { BulkheadError } from '@bulkhead/shared';
import { isRole, type Role } from './roles';

export const TOKEN_PREFIX = 'bkt_';
const TOKEN_RE = /^bkt_([A-Za-z0-9_-]{16,12288})\.([A-Za-z0-9_-]{43})$/;
/** Clock skew tolerated on `iat` between controllers sharing a secret. */
const IAT_SKEW_S = 60;

export interface TokenClaims {
  kid: string;
  role: Role;
  /** Empty = every project (as the key). */
  projects: string[];
  iat: number;
  exp: number;
  jti: string;
}

/** Signs claims for `kid`; `now` and `ttlMs` give iat and exp. */
export function mintToken(
  secret: Buffer,
  c: { kid: string; role: Role; projects: string[]; now: Date; ttlMs: number },
): { token: string; claims: TokenClaims } {
  const iat = Math.floor(c.now.getTime() / 1000);
  const claims: TokenClaims = {
    kid: c.kid,
    role: c.role,
    projects: [...c.projects],
    iat,
    exp: Math.floor((c.now.getTime() + c.ttlMs) / 1000),
    jti: 'tok_' + randomBytes(12).toString('hex'),
  };
  const body = TOKEN_PREFIX + Buffer.from(JSON.stringify(claims)).toString('base64url');
  return { token: `${body}.${sign(secret, body)}`, claims };
}

export function looksLikeToken(s: string): boolean {
  return s.startsWith(TOKEN_PREFIX);
}

/**
 * Checks shape, signature and lifetime; returns the claims. The caller still
 * checks that the key exists and is neither revoked nor expired. Every
 * refusal is BK_ERR_UNAUTHENTICATED; a tampered token learns nothing more.
 */
export function verifyToken(secret: Buffer, token: string, now: Date): TokenClaims {
  const m = TOKEN_RE.exec(token);
  if (!m) throw new BulkheadError('BK_ERR_UNAUTHENTICATED', 'malformed token (expected bkt_<claims>.<signature>)');
  const body = token.slice(0, token.lastIndexOf('.'));
  const expected = Buffer.from(sign(secret, body), 'base64url');
  const presented = Buffer.from(m[2]!, 'base64url');
  if (presented.length !== expected.length || !timingSafeEqual(presented, expected)) {
    throw new BulkheadError('BK_ERR_UNAUTHENTICATED', 'invalid token signature');
  }
  // Signed by us from here on; the checks below guard against our own bugs and old formats.
  let raw: unknown;
  try {
    raw = JSON.parse(Buffer.from(m[1]!, 'base64url').toString('utf8'));
  } catch {
    throw new BulkheadError('BK_ERR_UNAUTHENTICATED', 'malformed token claims');
  }
  const claims = parseClaims(raw);
  const nowS = now.getTime() / 1000;
  if (claims.exp <= nowS) throw new BulkheadError('BK_ERR_UNAUTHENTICATED', `token expired at ${new Date(claims.exp * 1000).toISOString()}; run \`bulkhead login\` again`);
  if (claims.iat > nowS + IAT_SKEW_S) throw new BulkheadError('BK_ERR_UNAUTHENTICATED', 'token issued in the future');
  return claims;
}

function parseClaims(v: unknown): TokenClaims {
  const o = (typeof v === 'object' && v !== null ? v : {}) as Record<string, unknown>;
  const { kid, role, projects, iat, exp, jti } = o;
  if (
    typeof kid !== 'string' || !/^ak_[0-9a-f]{16}$/.test(kid) ||
    !isRole(role) ||
    !Array.isArray(projects) || !projects.every((p) => typeof p === 'string') ||
    typeof iat !== 'number' || !Number.isSafeInteger(iat) ||
    typeof exp !== 'number' || !Number.isSafeInteger(exp) ||
    typeof jti !== 'string' || jti === ''
  ) {
    throw new BulkheadError('BK_ERR_UNAUTHENTICATED', 'malformed token claims');
  }
  return { kid, role, projects: projects as string[], iat, exp, jti };
}

function sign(secret: Buffer, body: string): string {
  return createHmac('sha256', secret).update(body).digest('base64url');
}
