// Owns replacing the controller's server certificate (server.key/server.crt in
// the data directory): re-issued by the controller's CA (`cert reissue`), or an
// operator's pair installed after the same checks the controller makes when it
// loads one (`cert install`). Both write the key 0600 and the certificate
// atomically, key first; the running controller serves the new pair to new
// connections after SIGHUP, and agents keep running: they check the server
// certificate against the CAs they trust, not against a pinned leaf.
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { BulkheadError, certFingerprint, issueServerCert, writeFileAtomic, writeSecretFile } from '@bulkhead/shared';
import { dataDirPaths, defaultSans, describeCa, issuedBy, loadPki } from './data-dir';

const SERVER_AUTH_OID = '1.3.6.1.5.5.7.3.1';

export interface ServerCertResult {
  certFile: string;
  fingerprint: string;
  sans: string[];
  notAfter: Date;
  issuer: string;
}

/** DNS and IP names of a certificate, as issueServerCert takes them. */
export function certSans(certPem: string): string[] {
  const alt = new X509Certificate(certPem).subjectAltName ?? '';
  const names: string[] = [];
  for (const part of alt.split(/,\s*/)) {
    const dns = /^DNS:(.+)$/.exec(part);
    const ip = /^IP Address:(.+)$/.exec(part);
    if (dns) names.push(dns[1]!);
    else if (ip) names.push(isIP(ip[1]!) === 6 ? new URL(`http://[${ip[1]!}]`).hostname.slice(1, -1) : ip[1]!); // "0:0:0:0:0:0:0:1" → "::1", as --san spells it
  }
  return names;
}

/**
 * Issues a new server certificate (new key) from the issuing CA with the
 * current certificate's names plus `extraSans` (or exactly `sans` when given).
 */
export async function reissueServerCert(dir: string, o: { extraSans?: string[]; sans?: string[]; validDays?: number } = {}): Promise<ServerCertResult> {
  const pki = loadPki(dir);
  const p = dataDirPaths(dir);
  const sans = o.sans && o.sans.length > 0 ? defaultSans(o.sans) : [...new Set([...certSans(pki.server.certPem), ...defaultSans(o.extraSans ?? [])])];
  const server = await issueServerCert({ ca: pki.ca, sans, ...(o.validDays !== undefined ? { validDays: o.validDays } : {}) });
  writeServerPair(p.serverKey, p.serverCert, server.keyPem, server.certPem);
  return summary(p.serverCert, server.certPem, pki.ca.certPem);
}

/**
 * Installs an operator's certificate and key as the server pair. Refused
 * unless the key is the certificate's, the certificate is valid now, usable
 * by a TLS server, and issued by a CA this controller trusts — agents check
 * the server certificate against exactly those CAs.
 */
export function installServerCert(dir: string, files: { certFile: string; keyFile: string }, now = new Date()): ServerCertResult {
  const pki = loadPki(dir);
  const p = dataDirPaths(dir);
  const certPem = readPem(files.certFile, 'certificate');
  const keyPem = readPem(files.keyFile, 'key');
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(certPem);
  } catch (cause) {
    throw new BulkheadError('BK_ERR_CONFIG_INVALID', `${files.certFile} is not a PEM certificate`, { cause });
  }
  let keyOk = false;
  try {
    keyOk = leaf.checkPrivateKey(createPrivateKey(keyPem));
  } catch (cause) {
    throw new BulkheadError('BK_ERR_CONFIG_INVALID', `${files.keyFile} is not an unencrypted PEM private key`, { cause });
  }
  if (!keyOk) throw new BulkheadError('BK_ERR_CONFIG_INVALID', `${files.keyFile} is not the private key of ${files.certFile}`);
  if (now.getTime() > new Date(leaf.validTo).getTime()) throw new BulkheadError('BK_ERR_CONFIG_INVALID', `${files.certFile} expired at ${new Date(leaf.validTo).toISOString()}`);
  if (now.getTime() < new Date(leaf.validFrom).getTime()) throw new BulkheadError('BK_ERR_CONFIG_INVALID', `${files.certFile} is not valid before ${new Date(leaf.validFrom).toISOString()}; check this host's clock`);
  const eku = leaf.keyUsage;
  if (eku !== undefined && !eku.includes(SERVER_AUTH_OID)) {
    throw new BulkheadError('BK_ERR_CONFIG_INVALID', `${files.certFile} is not for TLS servers: its extended key usage lacks serverAuth (${SERVER_AUTH_OID})`);
  }
  const issuer = pki.trust.find((ca) => issuedBy(certPem, ca));
  if (issuer === undefined) {
    throw new BulkheadError(
      'BK_ERR_CONFIG_INVALID',
      `${files.certFile} is not issued by a CA this controller trusts (${pki.trust.map(describeCa).join('; ')}); agents would refuse it. Have it signed by the controller CA (or use \`bulkhead-controller cert reissue\`)`,
    );
  }
  writeServerPair(p.serverKey, p.serverCert, keyPem, certPem);
  return summary(p.serverCert, certPem, issuer);
}

/** Key first (0600), then the certificate: loadPki refuses a torn pair rather than serving it. */
function writeServerPair(keyFile: string, certFile: string, keyPem: string, certPem: string): void {
  writeSecretFile(keyFile, keyPem);
  writeFileAtomic(certFile, certPem.trimEnd() + '\n');
}

function summary(certFile: string, certPem: string, issuerPem: string): ServerCertResult {
  const x = new X509Certificate(certPem);
  return { certFile, fingerprint: certFingerprint(certPem), sans: certSans(certPem), notAfter: new Date(x.validTo), issuer: describeCa(issuerPem) };
}

function readPem(file: string, what: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (cause) {
    throw new BulkheadError('BK_ERR_CONFIG_INVALID', `cannot read the ${what} file ${file}: ${(cause as NodeJS.ErrnoException).code ?? (cause as Error).message}`, { cause });
  }
}

/** A name list as --san takes it: "a.example,10.0.0.5". */
export function parseSans(s: string | undefined): string[] {
  return (s ?? '').split(',').map((x) => x.trim()).filter(Boolean).map((x) => (isIP(x) ? x : x.toLowerCase()));
}
