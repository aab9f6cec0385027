// Options of identity and access, with their defaults in one place.
import { randomBytes } from 'node:crypto';
import { BulkheadError } from '@bulkhead/shared';
import type { FailureLimiterOptions } from './rate-limiter';

export interface AuthOptionsInput {
  /** HMAC key for bearer tokens. Default: 32 random bytes per process (tokens die with it). */
  tokenSecret?: Buffer;
  /** Lifetime of a token when the caller asks for none. Default 15 min (capped by the maximum). */
  tokenDefaultTtlMs?: number;
  /** Longest lifetime a caller may ask for (`serve --token-max-ttl`). Default 1 h; 1 min – 24 h. */
  tokenMaxTtlMs?: number;
  /** Failed authentication per client address and per key id. Default 10 per minute. */
  failureLimit?: FailureLimiterOptions;
}

export interface AuthOptions {
  tokenSecret: Buffer;
  tokenDefaultTtlMs: number;
  tokenMaxTtlMs: number;
  failureLimit: FailureLimiterOptions;
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
  return { tokenSecret, tokenDefaultTtlMs, tokenMaxTtlMs, failureLimit: i.failureLimit ?? {} };
}
