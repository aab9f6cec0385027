// Owns the certificate the HTTPS API presents: by default the server
// certificate from the data directory (issued by the controller's own CA),
// or an operator-supplied certificate and key (`serve --api-tls-cert/--api-tls-key`,
// e.g. from the company CA or ACME) so browsers, dashboards and the CLI can
// use a trust store they already have. Only the API: agents keep talking
// gRPC to the controller CA's certificate, which they pin at enrollment.
//
// Everything that would otherwise surface as a vague handshake failure in a
// client, hours later, is checked here at start-up (and on every SIGHUP
// reload) with an error that names the file and the fix:
//   unreadable file, not PEM, a key that does not belong to the certificate,
//   expired or not yet valid, an extended key usage without serverAuth,
//   an encrypted key (no passphrase support), and a key file others can read.
// A key file readable by its group (e.g. 0640 root:ssl-cert, Debian's
// convention) is accepted with a warning; one readable or writable by
// others is refused — it has leaked already.
import { X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { createSecureContext } from 'node:tls';
import { BulkheadError, certFingerprint, type Logger } from '@bulkhead/shared';

/** The PEM key and certificate chain the API serves. */
export interface ApiTlsMaterial {
  keyPem: string;
  certPem: string;
}

/** Operator-supplied files (ControllerOptions.apiTls). */
export interface ApiTlsFiles {
  certFile: string;
  keyFile: string;
}

/** What was loaded, for the start-up log and the tests. */
export interface ApiTlsSummary {
  source: 'operator' | 'data-dir';
  subject: string;
  issuer: string;
  /** "DNS:ctl.example.com, IP Address:10.0.0.5" as OpenSSL prints it. */
  subjectAltName: string;
  notAfter: Date;
  /** "sha256:<hex>" of the leaf certificate's DER. */
  fingerprint: string;
  /** Certificates in the chain file, leaf first. */
  chainLength: number;
}

/** Below this remaining lifetime the controller warns at start and on reload. */
export const EXPIRY_WARNING_MS = 30 * 86_400_000;

const SERVER_AUTH_OID = '1.3.6.1.5.5.7.3.1';

export interface LoadApiTlsOptions {
  now?: () => Date;
  logger?: Logger;
}

/**
 * Reads and checks the operator's certificate (chain) and key. Throws
 * BK_ERR_CONFIG_INVALID naming the flag, the file and what is wrong.
 */
export function loadOperatorApiTls(files: ApiTlsFiles, o: LoadApiTlsOptions = {}): { material: ApiTlsMaterial; summary: ApiTlsSummary } {
  const certPem = readPem(files.certFile, '--api-tls-cert');
  checkKeyFileMode(files.keyFile, o.logger);
  const keyPem = readPem(files.keyFile, '--api-tls-key');

  const chain = splitCertificates(certPem);
  if (chain.length === 0) {
    throw invalid(`--api-tls-cert ${files.certFile} contains no PEM certificate (expected "-----BEGIN CERTIFICATE-----"; the leaf first, then any intermediates)`);
  }
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(chain[0]!);
  } catch (cause) {
    throw invalid(`--api-tls-cert ${files.certFile}: the first certificate cannot be parsed: ${(cause as Error).message}`, cause);
  }
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: keyPem, format: 'pem' });
  } catch (cause) {
    const encrypted = /ENCRYPTED/.test(keyPem);
    throw invalid(
      encrypted
        ? `--api-tls-key ${files.keyFile} is an encrypted private key; the controller cannot prompt for a passphrase — store it unencrypted (mode 0600), e.g. openssl pkey -in ${files.keyFile} -out key.pem`
        : `--api-tls-key ${files.keyFile} is not a PEM private key: ${(cause as Error).message}`,
      cause,
    );
  }
  if (!leaf.checkPrivateKey(key)) {
    throw invalid(
      `--api-tls-key ${files.keyFile} does not match --api-tls-cert ${files.certFile}: the key's public key is not the certificate's ` +
        `(certificate ${leaf.subject.replace(/\n/g, ', ')}, ${certFingerprint(chain[0]!)}); pass the key the certificate was issued for`,
    );
  }
  const summary = summarize(leaf, chain, 'operator');
  checkValidity(summary, leaf, files.certFile, o);
  const eku = leaf.keyUsage; // Node names the extended key usage OIDs "keyUsage"; undefined when the extension is absent.
  if (eku !== undefined && !eku.includes(SERVER_AUTH_OID)) {
    throw invalid(`--api-tls-cert ${files.certFile} is not for TLS servers: its extended key usage (${eku.join(', ')}) lacks serverAuth (${SERVER_AUTH_OID}); clients would refuse it`);
  }
  const material = { keyPem, certPem: chain.join('\n') + '\n' };
  // Last, what the server itself will do with them: catches anything OpenSSL refuses that the checks above missed.
  try {
    createSecureContext({ key: material.keyPem, cert: material.certPem, minVersion: 'TLSv1.2' });
  } catch (cause) {
    throw invalid(`--api-tls-cert ${files.certFile} / --api-tls-key ${files.keyFile} cannot be used for TLS: ${(cause as Error).message}`, cause);
  }
  return { material, summary };
}

/** Summary of the data directory's own server certificate (the default). */
export function describeApiTls(material: ApiTlsMaterial, source: ApiTlsSummary['source']): ApiTlsSummary {
  const chain = splitCertificates(material.certPem);
  return summarize(new X509Certificate(chain[0]!), chain, source);
}

/** The PEM blocks of every certificate in `pem`, in order. */
export function splitCertificates(pem: string): string[] {
  return pem.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? [];
}

function summarize(leaf: X509Certificate, chain: string[], source: ApiTlsSummary['source']): ApiTlsSummary {
  return {
    source,
    subject: leaf.subject.replace(/\n/g, ', '),
    issuer: leaf.issuer.replace(/\n/g, ', '),
    subjectAltName: leaf.subjectAltName ?? '',
    notAfter: new Date(leaf.validTo),
    fingerprint: certFingerprint(chain[0]!),
    chainLength: chain.length,
  };
}

function checkValidity(s: ApiTlsSummary, leaf: X509Certificate, file: string, o: LoadApiTlsOptions): void {
  const now = (o.now ?? (() => new Date()))();
  const notBefore = new Date(leaf.validFrom);
  if (now.getTime() > s.notAfter.getTime()) {
    throw invalid(`--api-tls-cert ${file} expired at ${s.notAfter.toISOString()} (${s.subject}); renew it, then start again or send SIGHUP`);
  }
  if (now.getTime() < notBefore.getTime()) {
    throw invalid(`--api-tls-cert ${file} is not valid before ${notBefore.toISOString()} (${s.subject}); check this host's clock`);
  }
  const left = s.notAfter.getTime() - now.getTime();
  if (left < EXPIRY_WARNING_MS) {
    o.logger?.warn({ certFile: file, notAfter: s.notAfter.toISOString(), daysLeft: Math.floor(left / 86_400_000) }, 'the API certificate expires soon; renew it and send SIGHUP');
  }
}

/** Others' access to the key is refused; group access is a warning (ssl-cert group setups). */
function checkKeyFileMode(file: string, logger: Logger | undefined): void {
  let mode: number;
  try {
    mode = statSync(file).mode & 0o777;
  } catch (cause) {
    throw unreadable(file, '--api-tls-key', cause);
  }
  if ((mode & 0o007) !== 0) {
    throw invalid(`--api-tls-key ${file} is accessible to every user (mode ${mode.toString(8).padStart(4, '0')}); run chmod 600 ${file} (or 640 with a dedicated group)`);
  }
  if ((mode & 0o070) !== 0) {
    logger?.warn({ keyFile: file, mode: mode.toString(8).padStart(4, '0') }, 'the API private key is readable by its group; 0600 is safer unless the group exists for exactly this');
  }
}

function readPem(file: string, flag: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (cause) {
    throw unreadable(file, flag, cause);
  }
}

function unreadable(file: string, flag: string, cause: unknown): BulkheadError {
  const code = (cause as NodeJS.ErrnoException).code;
  const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied (the controller runs as its own user)' : code === 'EISDIR' ? 'is a directory' : (code ?? (cause as Error).message);
  return invalid(`cannot read ${flag} ${file}: ${why}`, cause);
}

function invalid(message: string, cause?: unknown): BulkheadError {
  return new BulkheadError('BK_ERR_CONFIG_INVALID', message, cause !== undefined ? { cause } : undefined);
}

/** Where the API's certificate comes from; `load()` reads and checks it (again, on reload). */
export interface ApiTlsSource {
  load(): { material: ApiTlsMaterial; summary: ApiTlsSummary };
}

/**
 * The operator's files when given, else the data directory's server
 * certificate (`dataDirServer` re-reads it, so a reload picks up a replaced
 * server.crt too).
 */
export function apiTlsSource(files: ApiTlsFiles | undefined, dataDirServer: () => ApiTlsMaterial, o: LoadApiTlsOptions = {}): ApiTlsSource {
  if (files) return { load: () => loadOperatorApiTls(files, o) };
  return {
    load: () => {
      const material = dataDirServer();
      return { material, summary: describeApiTls(material, 'data-dir') };
    },
  };
}

/** What node:https' Server offers for swapping certificates without a restart. */
export interface SecureContextTarget {
  setSecureContext(options: { key: string; cert: string; minVersion: 'TLSv1.2' }): void;
}

/**
 * Re-reads the certificate and key and hands them to the listening server:
 * connections made from then on get the new certificate, open ones keep
 * theirs. A pair that fails the checks throws and leaves the server as it was.
 */
export function reloadApiTls(source: ApiTlsSource, server: SecureContextTarget): ApiTlsSummary {
  const { material, summary } = source.load();
  server.setSecureContext({ key: material.keyPem, cert: material.certPem, minVersion: 'TLSv1.2' });
  return summary;
}
