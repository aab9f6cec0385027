// Options of identity and access, with their defaults in one place.
import { randomBytes } from 'node:crypto';
import { BulkheadError } from '@bulkhead/shared';
import { DEFAULT_AUTH_FAILURE_LIMITS, type AuthFailureLimitOptions } from './rate-limiter';

export interface AuthOptionsInput {
  /** HMAC key for bearer tokens. Default: 32 random bytes per process (tokens die with it). */
  tokenSecret?: Buffer;
  /** Lifetime of a token when the caller asks for none. Default 15 min (capped by the maximum). */
  tokenDefaultTtlMs?: number;
  /** Longest lifetime a caller may ask for (`serve --token-max-ttl`). Default 1 h; 1 min – 24 h. */
  tokenMaxTtlMs?: number;
  /** Failed authentication allowed per client address (default 30 a minute) and per key id from one address (default 10 a minute). */
  failureLimit?: AuthFailureLimitOptions;
  /** A browser session unused this long ends (`serve --session-idle-timeout`). Default 15 min; 10 s – 24 h. */
  sessionIdleMs?: number;
  /** A browser session ends this long after login whatever its use (`serve --session-max-lifetime`). Default 8 h; 1 min – 30 d, at least the idle timeout. */
  sessionMaxLifetimeMs?: number;
  /** Live browser sessions one API key may hold; a login beyond it logs out that key's oldest sessions. Default 20. */
  sessionMaxPerKey?: number;
}

export interface AuthOptions {
  tokenSecret: Buffer;
  tokenDefaultTtlMs: number;
  tokenMaxTtlMs: number;
  failureLimit: Required<AuthFailureLimitOptions>;
  sessionIdleMs: number;
  sessionMaxLifetimeMs: number;
  sessionMaxPerKey: number;
}

export const DEFAULT_SESSION_IDLE_MS = 15 * 60_000;
export const DEFAULT_SESSION_MAX_PER_KEY = 20;
export const DEFAULT_SESSION_MAX_LIFETIME_MS = 8 * 3_600_000;
export const MIN_SESSION_IDLE_MS = 10_000;
export const MAX_SESSION_IDLE_MS = 24 * 3_600_000;
export const MIN_SESSION_MAX_LIFETIME_MS = 60_000;
export const MAX_SESSION_MAX_LIFETIME_MS = 30 * 24 * 3_600_000;

/** Throws BK_ERR_CONFIG_INVALID unless the session timeouts are within their bounds. */
export function checkSessionTimeouts(idleMs: number, maxLifetimeMs: number): void {
  if (!(idleMs >= MIN_SESSION_IDLE_MS && idleMs <= MAX_SESSION_IDLE_MS)) {
    throw new BulkheadError('BK_ERR_CONFIG_INVALID', `session-idle-timeout must be between 10s and 24h, got ${idleMs}ms`);
  }
  if (!(maxLifetimeMs >= MIN_SESSION_MAX_LIFETIME_MS && maxLifetimeMs <= MAX_SESSION_MAX_LIFETIME_MS)) {
    throw new BulkheadError('BK_ERR_CONFIG_INVALID', `session-max-lifetime must be between 1m and 30d, got ${maxLifetimeMs}ms`);
  }
  if (maxLifetimeMs < idleMs) {
    throw new BulkheadError('BK_ERR_CONFIG_INVALID', `session-max-lifetime (${maxLifetimeMs}ms) must not be shorter than session-idle-timeout (${idleMs}ms)`);
  }
}

export const MIN_TOKEN_MAX_TTL_MS = 60_000;
export const MAX_TOKEN_MAX_TTL_MS = 24 * 3_600_000;

export function resolveAuthOptions(i: AuthOptionsInput = {}): AuthOptions {
  const tokenMaxTtlMs = i.tokenMaxTtlMs ?? 3_600_000;
  if (!(tokenMaxTtlMs >= MIN_TOKEN_MAX_TTL_MS && tokenMaxTtlMs <= MAX_TOKEN_MAX_TTL_MS)) {
    throw new BulkheadError('BK_ERR_CONFIG_INVALID', `token-max-ttl must be between 1m and 24h, got ${tokenMaxTtlMs}ms`);
  }
  const tokenDefaultTtlMs = Math.min(i.tokenDefaultTtlMs ?? 15 * 60_000, tokenMaxTtlMs);
  if (!(tokenDefaultTtlMs > 0)) throw new BulkheadError('BK_ERR_CONFIG_INVALID', 'the default token lifetime must be positive');
  const tokenSecret = i.tokenSecret ?? randomBytes(32);
  if (tokenSecret.length < 32) throw new BulkheadError('BK_ERR_CONFIG_INVALID', 'the token signing secret must be at least 32 bytes');
  const failureLimit = { ...DEFAULT_AUTH_FAILURE_LIMITS, ...i.failureLimit };
  for (const k of ['perAddress', 'perKeyPerAddress', 'maxBuckets'] as const) {
    if (!(Number.isSafeInteger(failureLimit[k]) && failureLimit[k] >= 1)) {
      throw new BulkheadError('BK_ERR_CONFIG_INVALID', `failed-authentication limit ${k} must be a positive integer, got ${failureLimit[k]}`);
    }
  }
  if (!(failureLimit.windowMs > 0)) throw new BulkheadError('BK_ERR_CONFIG_INVALID', `failed-authentication window must be positive, got ${failureLimit.windowMs}ms`);
  const sessionIdleMs = i.sessionIdleMs ?? DEFAULT_SESSION_IDLE_MS;
  const sessionMaxLifetimeMs = i.sessionMaxLifetimeMs ?? DEFAULT_SESSION_MAX_LIFETIME_MS;
  checkSessionTimeouts(sessionIdleMs, sessionMaxLifetimeMs);
  const sessionMaxPerKey = i.sessionMaxPerKey ?? DEFAULT_SESSION_MAX_PER_KEY;
  if (!(Number.isSafeInteger(sessionMaxPerKey) && sessionMaxPerKey >= 1)) throw new BulkheadError('BK_ERR_CONFIG_INVALID', `sessions per key must be a positive integer, got ${sessionMaxPerKey}`);
  return { tokenSecret, tokenDefaultTtlMs, tokenMaxTtlMs, failureLimit, sessionIdleMs, sessionMaxLifetimeMs, sessionMaxPerKey };
}
