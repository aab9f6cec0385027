// Owns the token signing secret: 32 random bytes (hex) in
// DATA_DIR/token-signing.key, 0600. Created by `bulkhead-controller init`,
// or on the first `serve` of a data directory initialized before tokens
// existed. Replacing the file invalidates every outstanding token (and
// nothing else): that is how to log everyone out.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { BulkheadError, writeSecretFile } from '@bulkhead/shared';

export const SIGNING_SECRET_FILE = 'token-signing.key';

export function signingSecretPath(dataDir: string): string {
  return join(dataDir, SIGNING_SECRET_FILE);
}

/** Creates the secret file unless it exists; returns the secret either way. */
export function loadOrCreateSigningSecret(dataDir: string): Buffer {
  const path = signingSecretPath(dataDir);
  if (!existsSync(path)) {
    const secret = randomBytes(32);
    writeSecretFile(path, secret.toString('hex') + '\n');
    return secret;
  }
  return loadSigningSecret(dataDir);
}

export function loadSigningSecret(dataDir: string): Buffer {
  const path = signingSecretPath(dataDir);
  const mode = statSync(path).mode & 0o777;
  if ((mode & 0o077) !== 0) {
    throw new BulkheadError('BK_ERR_CONFIG_INVALID', `${path} is readable by group or others (mode ${mode.toString(8)}); run chmod 600 ${path}`);
  }
  const text = readFileSync(path, 'utf8').trim();
  if (!/^[0-9a-f]{64,}$/.test(text)) {
    throw new BulkheadError('BK_ERR_CONFIG_INVALID', `${path} does not hold a hex secret of at least 32 bytes; delete it and restart to create a new one (outstanding tokens stop working)`);
  }
  return Buffer.from(text, 'hex');
}
