// Owns API keys: their shape ("bk_<keyId>_<secret>", keyId = "ak_<16 hex>",
// secret = 64 hex), minting, and checking a presented Authorization header.
// Only sha256(secret) is stored; comparison is constant-time.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { BulkheadError } from '@bulkhead/shared';
import type { ApiKeyRecord, Store } from '../store/store';

export type ApiKeyRole = ApiKeyRecord['role'];

const KEY_RE = /^bk_(ak_[0-9a-f]{16})_([0-9a-f]{64})$/;
const BEARER_RE = /^Bearer[ \t]+(\S+)[ \t]*$/i;
/** Compared against when the key id is unknown, so both failures cost one hash and one compare. */
const DUMMY_HASH = Buffer.alloc(32);

export interface GenerateApiKeyOptions {
  /** Default: now. */
  now?: Date;
  /** Default: never expires. */
  expiresAt?: Date | null;
  /** Project names the key is limited to. Default: every project. */
  projects?: string[];
  /** Key id of the minting key. Default "init". */
  createdBy?: string;
  /** Route actions the key is limited to (e.g. ["scans.upload"]). Default: none (every route its role allows). */
  actions?: string[];
}

/** Mints a key. Store `record`; show `plaintext` once — it cannot be recovered. */
export function generateApiKey(name: string, role: ApiKeyRole, opts: GenerateApiKeyOptions = {}): { record: ApiKeyRecord; plaintext: string } {
  if (!['admin', 'operator', 'viewer'].includes(role)) {
    throw new BulkheadError('BK_ERR_CONFIG_INVALID', `API key role must be admin, operator or viewer, got "${role}"`);
  }
  const id = 'ak_' + randomBytes(8).toString('hex');
  const secret = randomBytes(32).toString('hex');
  const record: ApiKeyRecord = {
    id,
    name,
    secretHash: sha256Hex(secret),
    role,
    createdAt: opts.now ?? new Date(),
    expiresAt: opts.expiresAt ?? null,
    revokedAt: null,
    projects: [...(opts.projects ?? [])],
    lastUsedAt: null,
    createdBy: opts.createdBy ?? 'init',
    actions: [...(opts.actions ?? [])],
  };
  return { record, plaintext: `bk_${id}_${secret}` };
}

/** Splits "bk_<keyId>_<secret>"; undefined when it is not shaped like a key. */
export function parseApiKey(plaintext: string): { keyId: string; secret: string } | undefined {
  const m = KEY_RE.exec(plaintext);
  return m ? { keyId: m[1]!, secret: m[2]! } : undefined;
}

/**
 * Checks an `Authorization: Bearer <api key>` header value and returns the
 * key's record. Throws BK_ERR_UNAUTHENTICATED otherwise. Messages never
 * contain the presented value.
 */
export async function verifyApiKey(store: Pick<Store, 'getApiKey'>, header: string | undefined, now: Date): Promise<ApiKeyRecord> {
  if (header === undefined || header === '') {
    throw new BulkheadError('BK_ERR_UNAUTHENTICATED', 'missing "Authorization: Bearer <api key>" header');
  }
  const bearer = BEARER_RE.exec(header);
  if (!bearer) throw new BulkheadError('BK_ERR_UNAUTHENTICATED', 'the Authorization header must use the Bearer scheme');
  const parsed = parseApiKey(bearer[1]!);
  if (!parsed) throw new BulkheadError('BK_ERR_UNAUTHENTICATED', 'malformed API key (expected bk_<key id>_<secret>)');

  const record = await store.getApiKey(parsed.keyId);
  const presented = createHash('sha256').update(parsed.secret).digest();
  const expected = record && /^[0-9a-f]{64}$/.test(record.secretHash) ? Buffer.from(record.secretHash, 'hex') : DUMMY_HASH;
  const match = timingSafeEqual(presented, expected);
  // Unknown id and wrong secret are indistinguishable to the caller.
  if (!record || !match) throw new BulkheadError('BK_ERR_UNAUTHENTICATED', 'invalid API key');
  // Only someone holding the secret learns why a real key is refused.
  if (record.revokedAt !== null) {
    throw new BulkheadError('BK_ERR_UNAUTHENTICATED', `API key ${record.id} was revoked`);
  }
  if (record.expiresAt !== null && record.expiresAt.getTime() <= now.getTime()) {
    throw new BulkheadError('BK_ERR_UNAUTHENTICATED', `API key ${record.id} expired at ${record.expiresAt.toISOString()}`);
  }
  return record;
}

function sha256Hex(s: string): string {
  return createHash('sha256').update(s).digest('hex');
}
