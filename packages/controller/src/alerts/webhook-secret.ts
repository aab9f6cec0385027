// Owns Standard Webhooks signing (https://www.standardwebhooks.com/, spec
// "Signature scheme"): secrets are "whsec_" + base64 of 24–64 random bytes;
// each attempt carries
//   webhook-id:        the message id (stable across retries)
//   webhook-timestamp: integer seconds since the epoch (this attempt)
//   webhook-signature: "v1,<base64 HMAC-SHA256(key, id + '.' + timestamp + '.' + body)>"
// with several space-separated signatures while a rotated secret is still
// valid. Written here with node:crypto instead of depending on the reference
// library (which the tests use to verify us): it is a dozen lines.
import { createHmac, randomBytes } from 'node:crypto';
import { BulkheadError } from '@bulkhead/shared';

export const SECRET_PREFIX = 'whsec_';
const MIN_KEY_BYTES = 24;
const MAX_KEY_BYTES = 64;

/** A fresh "whsec_" secret with a 32-byte key. */
export function generateSecret(): string {
  return SECRET_PREFIX + randomBytes(32).toString('base64');
}

/** Throws BK_ERR_BAD_REQUEST unless `s` is "whsec_" + canonical base64 of 24–64 bytes. */
export function checkSecret(s: string): string {
  if (!s.startsWith(SECRET_PREFIX)) throw new BulkheadError('BK_ERR_BAD_REQUEST', `a signing secret must start with "${SECRET_PREFIX}"`);
  const b64 = s.slice(SECRET_PREFIX.length);
  const key = Buffer.from(b64, 'base64');
  // Buffer.from ignores junk; re-encoding catches anything that was not base64.
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(b64) || key.toString('base64') !== b64) {
    throw new BulkheadError('BK_ERR_BAD_REQUEST', `a signing secret is "${SECRET_PREFIX}" followed by standard base64`);
  }
  if (key.length < MIN_KEY_BYTES || key.length > MAX_KEY_BYTES) {
    throw new BulkheadError('BK_ERR_BAD_REQUEST', `a signing secret's key must be ${MIN_KEY_BYTES}–${MAX_KEY_BYTES} bytes, got ${key.length}`);
  }
  return s;
}

export function secretKey(secret: string): Buffer {
  return Buffer.from(secret.startsWith(SECRET_PREFIX) ? secret.slice(SECRET_PREFIX.length) : secret, 'base64');
}

/** "v1,<base64 signature>" of one attempt under one key. */
export function signV1(key: Buffer, msgId: string, timestampSec: number, body: string | Buffer): string {
  const mac = createHmac('sha256', key);
  mac.update(`${msgId}.${timestampSec}.`);
  mac.update(body);
  return 'v1,' + mac.digest('base64');
}

/** The webhook-signature header value: one signature per key, space-separated. */
export function signatureHeader(keys: Buffer[], msgId: string, timestampSec: number, body: string | Buffer): string {
  return keys.map((k) => signV1(k, msgId, timestampSec, body)).join(' ');
}
