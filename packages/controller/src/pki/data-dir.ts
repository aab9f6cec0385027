// Owns the controller's data directory: the CA, the server certificate, the
// admin API key file and the SQLite store live here. Private keys are 0600
// from the first byte; the directory itself is 0700.
import { X509Certificate, createPrivateKey, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import {
  BulkheadError, certFingerprint, createCa, issueServerCert, writeFileAtomic, writeSecretFile, type KeyAndCert,
} from '@bulkhead/shared';

export interface DataDirPaths {
  dir: string;
  caKey: string;
  caCert: string;
  serverKey: string;
  serverCert: string;
  adminKey: string;
  db: string;
}

export function dataDirPaths(dir: string): DataDirPaths {
  return {
    dir,
    caKey: join(dir, 'ca.key'),
    caCert: join(dir, 'ca.crt'),
    serverKey: join(dir, 'server.key'),
    serverCert: join(dir, 'server.crt'),
    adminKey: join(dir, 'admin.apikey'),
    db: join(dir, 'bulkhead.db'),
  };
}

export interface ControllerPki {
  ca: KeyAndCert;
  server: KeyAndCert;
  caFingerprint: string;
}

/** Names a server certificate always carries, plus any the operator adds. */
export function defaultSans(extra: string[] = []): string[] {
  const names = ['localhost', '127.0.0.1', '::1', hostname(), ...extra.map((s) => s.trim()).filter(Boolean)];
  return [...new Set(names)];
}

/**
 * Each installation's CA gets its own subject: with one fixed name, a certificate
 * from another controller's CA names the same issuer as ours, and neither an
 * operator reading a log nor a TLS stack choosing a trust anchor can tell the two
 * apart. CAs created before this keep their subject; nothing compares it.
 */
export function caCommonName(): string {
  return `Bulkhead Controller CA ${randomBytes(4).toString('hex')}`;
}

/** Creates the CA and server certificate. Refuses to overwrite an existing CA. */
export async function initPki(dir: string, sans: string[]): Promise<ControllerPki> {
  const p = dataDirPaths(dir);
  if (existsSync(p.caKey)) {
    throw new BulkheadError('BK_ERR_ALREADY_INITIALIZED', `${dir} already holds a CA (${p.caKey}); refusing to replace it — every enrolled agent trusts it`);
  }
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const ca = await createCa(caCommonName());
  const server = await issueServerCert({ ca, sans });
  writeSecretFile(p.caKey, ca.keyPem);
  writeFileAtomic(p.caCert, ca.certPem);
  writeSecretFile(p.serverKey, server.keyPem);
  writeFileAtomic(p.serverCert, server.certPem);
  return { ca, server, caFingerprint: certFingerprint(ca.certPem) };
}

export function loadPki(dir: string): ControllerPki {
  const p = dataDirPaths(dir);
  if (!existsSync(p.caKey) || !existsSync(p.serverCert)) {
    throw new BulkheadError('BK_ERR_NOT_INITIALIZED', `${dir} is not an initialized data directory (no ca.key/server.crt); run \`bulkhead-controller init --data-dir ${dir}\``);
  }
  for (const f of [p.caKey, p.serverKey]) {
    const mode = statSync(f).mode & 0o777;
    if ((mode & 0o077) !== 0) {
      throw new BulkheadError('BK_ERR_CONFIG_INVALID', `${f} is readable by group or others (mode ${mode.toString(8)}); run chmod 600 ${f}`);
    }
  }
  // Parsed here, each file named on failure: a damaged key would otherwise pass start-up (the CA
  // key is first used at the next enrollment) or fail inside TLS with an OpenSSL message.
  const ca = { keyPem: readPem(p.caKey, 'key'), certPem: readPem(p.caCert, 'cert') };
  const server = { keyPem: readPem(p.serverKey, 'key'), certPem: readPem(p.serverCert, 'cert') };
  checkPair(p.caKey, ca.keyPem, p.caCert, ca.certPem);
  checkPair(p.serverKey, server.keyPem, p.serverCert, server.certPem);
  return { ca, server, caFingerprint: certFingerprint(ca.certPem) };
}

const RESTORE_HINT = 'restore it from a backup of the data directory (every enrolled agent trusts this CA; a new one means enrolling every agent again)';

function readPem(path: string, kind: 'key' | 'cert'): string {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (cause) {
    throw new BulkheadError('BK_ERR_CONFIG_INVALID', `cannot read ${path}: ${(cause as Error).message}; ${RESTORE_HINT}`, { cause });
  }
  try {
    if (kind === 'key') createPrivateKey(text);
    else if (!text.includes('-----BEGIN CERTIFICATE-----')) throw new Error('no PEM certificate in it');
    else new X509Certificate(text); // eslint-disable-line no-new
  } catch (cause) {
    throw new BulkheadError('BK_ERR_CONFIG_INVALID', `${path} is not a readable ${kind === 'key' ? 'private key' : 'certificate'} (${(cause as Error).message}); ${RESTORE_HINT}`, { cause });
  }
  return text;
}

function checkPair(keyPath: string, keyPem: string, certPath: string, certPem: string): void {
  if (!new X509Certificate(certPem).checkPrivateKey(createPrivateKey(keyPem))) {
    throw new BulkheadError('BK_ERR_CONFIG_INVALID', `${certPath} is not the certificate of the key in ${keyPath}; ${RESTORE_HINT}`);
  }
}
