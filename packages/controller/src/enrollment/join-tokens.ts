// Owns one-time join tokens: "bkj_<id>_<secret>". Only the SHA-256 of the
// secret is stored; the id lets us find the row without scanning.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { BulkheadError } from '@bulkhead/shared';
import type { JoinTokenRecord, Store } from '../store/store';

const TOKEN_RE = /^bkj_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$/;

export function hashSecret(secret: string): string {
  return createHash('sha256').update(secret).digest('hex');
}

export async function createJoinToken(
  store: Store,
  ttlMs: number,
  now: Date,
  description = '',
): Promise<{ token: string; record: JoinTokenRecord }> {
  if (!(ttlMs > 0)) throw new BulkheadError('BK_ERR_CONFIG_INVALID', 'token ttl must be positive');
  const id = randomBytes(8).toString('hex');
  const secret = randomBytes(32).toString('base64url');
  const record: JoinTokenRecord = {
    id,
    secretHash: hashSecret(secret),
    createdAt: now,
    expiresAt: new Date(now.getTime() + ttlMs),
    usedAt: null,
    usedByAgent: null,
    revokedAt: null,
    description,
  };
  await store.insertJoinToken(record);
  return { token: `bkj_${id}_${secret}`, record };
}

/**
 * Checks a presented token without consuming it: a cheap, constant-time
 * comparison of SHA-256 hashes, run before any costly work on the request.
 * Throws a BulkheadError naming exactly why a token is refused.
 */
export async function checkJoinToken(store: Store, token: string, now: Date): Promise<JoinTokenRecord> {
  const m = TOKEN_RE.exec(token.trim());
  if (!m) throw new BulkheadError('BK_ERR_TOKEN_INVALID', 'join token is malformed (expected bkj_<id>_<secret>)');
  const rec = await store.getJoinToken(m[1]!);
  const presented = Buffer.from(hashSecret(m[2]!), 'hex');
  if (!rec || !timingSafeEqual(presented, Buffer.from(rec.secretHash, 'hex'))) {
    throw new BulkheadError('BK_ERR_TOKEN_INVALID', 'join token is not known to this controller');
  }
  if (rec.revokedAt) throw new BulkheadError('BK_ERR_TOKEN_REVOKED');
  if (rec.usedAt) {
    throw new BulkheadError('BK_ERR_TOKEN_USED', `join token was already used at ${rec.usedAt.toISOString()}; create a new one`);
  }
  if (rec.expiresAt.getTime() <= now.getTime()) {
    throw new BulkheadError('BK_ERR_TOKEN_EXPIRED', `join token expired at ${rec.expiresAt.toISOString()}; create a new one`);
  }
  return rec;
}

/** Consumes a token that checkJoinToken accepted, for `agentId`. */
export async function consumeJoinToken(store: Store, rec: JoinTokenRecord, agentId: string, now: Date): Promise<void> {
  if (!(await store.consumeJoinToken(rec.id, agentId, now))) {
    // Lost a race with a concurrent enrollment using the same token.
    throw new BulkheadError('BK_ERR_TOKEN_USED', 'join token was already used; create a new one');
  }
}

/** Checks a presented token and consumes it for `agentId`. */
export async function redeemJoinToken(store: Store, token: string, agentId: string, now: Date): Promise<JoinTokenRecord> {
  const rec = await checkJoinToken(store, token, now);
  await consumeJoinToken(store, rec, agentId, now);
  return rec;
}
