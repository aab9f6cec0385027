// Owns the controller's data directory: the CA, the server certificate, the
// admin API key file and the SQLite store live here. Private keys are 0600
// from the first byte; the directory itself is 0700.
//
// During a CA rotation (ca-rotation.ts) a second CA sits beside the first:
//   ca-next.key/.crt      created by `ca rotate start`; trusted, not yet issuing
//   ca-previous.key/.crt  the old CA after `ca rotate activate`; trusted until `ca rotate finish`
// ca.key/ca.crt is always the CA that issues certificates now.
import { X509Certificate, createPrivateKey, createPublicKey, randomBytes } from 'node:crypto';
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
  caNextKey: string;
  caNextCert: string;
  caPreviousKey: string;
  caPreviousCert: string;
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
    caNextKey: join(dir, 'ca-next.key'),
    caNextCert: join(dir, 'ca-next.crt'),
    caPreviousKey: join(dir, 'ca-previous.key'),
    caPreviousCert: join(dir, 'ca-previous.crt'),
    adminKey: join(dir, 'admin.apikey'),
    db: join(dir, 'bulkhead.db'),
  };
}

/** Where a CA rotation stands: none, a new CA trusted but not issuing (started), the new CA issuing while the old one is still trusted (activated). */
export type RotationPhase = 'none' | 'started' | 'activated';

export interface ControllerPki {
  /** The CA that issues certificates now. */
  ca: KeyAndCert;
  server: KeyAndCert;
  /** Of `ca`: what agents pin when they enroll. */
  caFingerprint: string;
  /** Every CA trusted for agent certificates and sent to agents as their trust bundle: `ca` first. */
  trust: string[];
  rotation: RotationPhase;
  /** The trusted CA that issued `server` (sent after it in the TLS chain). */
  serverIssuer: string;
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
  return { ca, server, caFingerprint: certFingerprint(ca.certPem), trust: [ca.certPem], rotation: 'none', serverIssuer: ca.certPem };
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
  checkPair(ca, p.caKey, p.caCert);
  checkPair(server, p.serverKey, p.serverCert);
  const caFingerprint = certFingerprint(ca.certPem);
  // A file equal to ca.crt is what an interrupted `ca rotate activate` leaves; it adds nothing.
  const other = (f: string): string | undefined => (existsSync(f) && certFingerprint(readFileSync(f, 'utf8')) !== caFingerprint ? readFileSync(f, 'utf8') : undefined);
  const next = other(p.caNextCert);
  const previous = other(p.caPreviousCert);
  if (next !== undefined && previous !== undefined) {
    throw new BulkheadError('BK_ERR_CONFIG_INVALID', `${dir} holds both ${p.caNextCert} and ${p.caPreviousCert}: a CA rotation was started while another one was not finished; run \`bulkhead-controller ca status --data-dir ${dir}\``);
  }
  const trust = [ca.certPem, ...(next !== undefined ? [next] : []), ...(previous !== undefined ? [previous] : [])];
  const serverIssuer = trust.find((c) => issuedBy(server.certPem, c));
  if (serverIssuer === undefined) {
    throw new BulkheadError('BK_ERR_CONFIG_INVALID', `${p.serverCert} is not issued by a CA this controller trusts (${trust.map(describeCa).join('; ')}); agents would refuse it — run \`bulkhead-controller cert reissue --data-dir ${dir}\``);
  }
  return { ca, server, caFingerprint, trust, rotation: next !== undefined ? 'started' : previous !== undefined ? 'activated' : 'none', serverIssuer };
}

/** True when `certPem` (its first certificate) is signed by the CA certificate `caPem`. */
export function issuedBy(certPem: string, caPem: string): boolean {
  try {
    const c = new X509Certificate(certPem);
    const ca = new X509Certificate(caPem);
    return c.checkIssued(ca) && c.verify(ca.publicKey);
  } catch {
    return false;
  }
}

/** "CN=… (sha256:…)", for messages. */
export function describeCa(pem: string): string {
  return `${new X509Certificate(pem).subject.split('\n').join(', ')} (${certFingerprint(pem)})`;
}

/** The private key must be the certificate's: a pair torn apart by an interrupted write is named, not served. */
export function checkPair(pair: KeyAndCert, keyFile: string, certFile: string): void {
  let same = false;
  try {
    const fromKey = createPublicKey(createPrivateKey(pair.keyPem)).export({ type: 'spki', format: 'der' });
    const fromCert = new X509Certificate(pair.certPem).publicKey.export({ type: 'spki', format: 'der' });
    same = fromKey.equals(fromCert);
  } catch (cause) {
    throw new BulkheadError('BK_ERR_CONFIG_INVALID', `${keyFile} or ${certFile} is not a readable PEM key / certificate`, { cause });
  }
  if (!same) throw new BulkheadError('BK_ERR_CONFIG_INVALID', `${keyFile} is not the private key of ${certFile}`);
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

