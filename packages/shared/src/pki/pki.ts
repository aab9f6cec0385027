// Owns Bulkhead's X.509: the controller CA (ECDSA P-256), server and agent
// certificates, CSRs, and CA fingerprints. Built on @peculiar/x509 over
// Node's WebCrypto; Node's own X509Certificate is used to read certificates.
import type * as X509 from '@peculiar/x509';
import { X509Certificate as NodeX509, createHash, randomBytes, webcrypto } from 'node:crypto';
import { isIP } from 'node:net';
import { BulkheadError } from '../errors/registry';

let loaded: typeof X509 | undefined;
/**
 * @peculiar/x509 (with reflect-metadata and tsyringe) costs the agent's RSS
 * several MB and only enrollment and the controller's CA use it: load it on
 * first use, not when @bulkhead/shared is imported.
 */
function lib(): typeof X509 {
  if (!loaded) {
    require('reflect-metadata'); // @peculiar/x509's tsyringe dependency needs it first.
    const x = require('@peculiar/x509') as typeof X509;
    x.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x.cryptoProvider.set>[0]);
    loaded = x;
  }
  return loaded;
}

type CryptoKey = webcrypto.CryptoKey;
type CryptoKeyPair = webcrypto.CryptoKeyPair;

const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const SIGN = { name: 'ECDSA', hash: 'SHA-256' } as const;

export interface KeyAndCert {
  /** PKCS#8 PEM private key. Write it 0600. */
  keyPem: string;
  certPem: string;
}

/** URI SAN prefix that carries an agent's identity in its certificate. */
export const AGENT_URI_PREFIX = 'urn:bulkhead:agent:';

function serial(): string {
  // Positive 128-bit serial: top bit cleared so DER keeps it positive, next bit set so the first
  // byte is never zero (DER drops leading zero bytes, and the hex we store must equal what a TLS
  // peer certificate reports).
  const b = randomBytes(16);
  b[0] = (b[0]! & 0x3f) | 0x40;
  return b.toString('hex');
}

/**
 * The one spelling of a certificate serial we store and compare: lower-case hex without leading
 * zeros. TLS peer certificates and X509Certificate report it that way; serials stored by earlier
 * versions may carry a leading "00".
 */
export function canonicalSerial(hex: string): string {
  return hex.toLowerCase().replace(/^0+(?=.)/, '');
}

async function generateKeys(): Promise<CryptoKeyPair> {
  return (await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify'])) as unknown as CryptoKeyPair;
}

async function exportKeyPem(key: CryptoKey): Promise<string> {
  const x509 = lib();
  const der = await webcrypto.subtle.exportKey('pkcs8', key as unknown as webcrypto.CryptoKey);
  return x509.PemConverter.encode(der, 'PRIVATE KEY');
}

async function importKeyPem(pem: string): Promise<CryptoKey> {
  const x509 = lib();
  try {
    const der = x509.PemConverter.decode(pem)[0]!;
    return (await webcrypto.subtle.importKey('pkcs8', der, ALG, true, ['sign'])) as unknown as CryptoKey;
  } catch (cause) {
    throw new BulkheadError('BK_ERR_CONFIG_INVALID', 'private key is not a PKCS#8 ECDSA P-256 PEM', { cause });
  }
}

/**
 * How far before "now" a certificate's notBefore is set: a peer whose clock is
 * behind the issuer's must not see a certificate that is "not yet valid" (the
 * controller's server certificate right after init, an agent's certificate
 * right after enrollment or renewal). One hour covers the skew of hosts whose
 * clocks drift unsynchronized for a while; short lifetimes (tests) get a tenth
 * of the lifetime, at least a minute, so the renewal schedule — a fraction of
 * notBefore..notAfter — still falls after issuance.
 */
export function backdateMs(validMs: number): number {
  return Math.min(60 * 60_000, Math.max(60_000, Math.floor(validMs / 10)));
}

/** Creates a self-signed CA valid for `validDays` (default 10 years). */
export async function createCa(commonName = 'Bulkhead CA', validDays = 3650): Promise<KeyAndCert> {
  const x509 = lib();
  const keys = await generateKeys();
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: `CN=${escapeDn(commonName)}`,
    notBefore: new Date(now - backdateMs(validDays * 86_400_000)),
    notAfter: new Date(now + validDays * 86_400_000),
    keys,
    signingAlgorithm: SIGN,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { keyPem: await exportKeyPem(keys.privateKey), certPem: cert.toString('pem') };
}

export interface ServerCertOptions {
  ca: KeyAndCert;
  /** DNS names and IP addresses the server is reached by. */
  sans: string[];
  validDays?: number;
}

/** Issues the controller's TLS server certificate (serverAuth). */
export async function issueServerCert(opts: ServerCertOptions): Promise<KeyAndCert> {
  const x509 = lib();
  if (opts.sans.length === 0) throw new BulkheadError('BK_ERR_CONFIG_INVALID', 'a server certificate needs at least one SAN');
  const keys = await generateKeys();
  const caCert = new x509.X509Certificate(opts.ca.certPem);
  const caKey = await importKeyPem(opts.ca.keyPem);
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: `CN=${escapeDn(opts.sans[0]!)}`,
    issuer: caCert.subject,
    notBefore: new Date(now - backdateMs((opts.validDays ?? 825) * 86_400_000)),
    notAfter: new Date(now + (opts.validDays ?? 825) * 86_400_000),
    publicKey: keys.publicKey,
    signingKey: caKey,
    signingAlgorithm: SIGN,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyAgreement, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension(opts.sans.map((s) => (isIP(s) ? { type: 'ip', value: s } : { type: 'dns', value: s }))),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(caCert),
    ],
  });
  return { keyPem: await exportKeyPem(keys.privateKey), certPem: cert.toString('pem') };
}

/** Agent side: a fresh key pair and a CSR. The key stays on the host. */
export async function createCsr(hostname: string): Promise<{ keyPem: string; csrPem: string }> {
  const x509 = lib();
  const keys = await generateKeys();
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: `CN=${escapeDn(hostname || 'bulkhead-agent')}`,
    keys,
    signingAlgorithm: SIGN,
  });
  return { keyPem: await exportKeyPem(keys.privateKey), csrPem: csr.toString('pem') };
}

export interface AgentCertOptions {
  ca: KeyAndCert;
  csrPem: string;
  agentId: string;
  validDays?: number;
  /** Lifetime in milliseconds; overrides validDays (tests exercising renewal use seconds). */
  validMs?: number;
  /**
   * A certificate (PEM or DER) whose public key the CSR must not reuse: a
   * renewal that kept the old key would not limit what a stolen key can do.
   */
  notKeyOf?: string | Buffer;
}

/**
 * Controller side: checks the CSR's own signature and issues a client
 * certificate whose identity (CN and URI SAN) is the controller-chosen agent
 * id. Nothing the agent wrote into the CSR's subject is copied.
 */
export async function signAgentCsr(opts: AgentCertOptions): Promise<{ certPem: string; serial: string; notAfter: Date }> {
  const x509 = lib();
  let csr: X509.Pkcs10CertificateRequest;
  try {
    csr = new x509.Pkcs10CertificateRequest(opts.csrPem);
  } catch (cause) {
    throw new BulkheadError('BK_ERR_CSR_INVALID', 'CSR is not a PEM PKCS#10 request', { cause });
  }
  const alg = csr.publicKey.algorithm as webcrypto.EcKeyAlgorithm;
  if (alg.name !== 'ECDSA' || alg.namedCurve !== 'P-256') {
    throw new BulkheadError('BK_ERR_CSR_INVALID', `CSR key must be ECDSA P-256, got ${alg.name} ${alg.namedCurve ?? ''}`.trim());
  }
  if (!(await csr.verify())) throw new BulkheadError('BK_ERR_CSR_INVALID', 'CSR signature does not verify');
  if (opts.notKeyOf !== undefined && spkiFingerprint(Buffer.from(csr.publicKey.rawData)) === certPublicKeyFingerprint(opts.notKeyOf)) {
    throw new BulkheadError('BK_ERR_CSR_INVALID', 'CSR reuses the key of the current certificate; a renewal needs a new key pair');
  }
  const caCert = new x509.X509Certificate(opts.ca.certPem);
  const caKey = await importKeyPem(opts.ca.keyPem);
  const now = Date.now();
  const notAfter = new Date(now + (opts.validMs ?? (opts.validDays ?? 90) * 86_400_000));
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: `CN=${escapeDn(opts.agentId)}`,
    issuer: caCert.subject,
    notBefore: new Date(now - backdateMs(notAfter.getTime() - now)),
    notAfter,
    publicKey: await csr.publicKey.export(),
    signingKey: caKey,
    signingAlgorithm: SIGN,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyAgreement, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth]),
      new x509.SubjectAlternativeNameExtension([{ type: 'url', value: AGENT_URI_PREFIX + opts.agentId }]),
      await x509.AuthorityKeyIdentifierExtension.create(caCert),
    ],
  });
  return { certPem: cert.toString('pem'), serial: canonicalSerial(cert.serialNumber), notAfter };
}

/** Test helper and tooling: issue an agent certificate with explicit dates. */
export async function issueAgentCertWithDates(ca: KeyAndCert, agentId: string, notBefore: Date, notAfter: Date): Promise<KeyAndCert> {
  const x509 = lib();
  const { keyPem, csrPem } = await createCsr(agentId);
  const csr = new x509.Pkcs10CertificateRequest(csrPem);
  const caCert = new x509.X509Certificate(ca.certPem);
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: `CN=${escapeDn(agentId)}`,
    issuer: caCert.subject,
    notBefore,
    notAfter,
    publicKey: await csr.publicKey.export(),
    signingKey: await importKeyPem(ca.keyPem),
    signingAlgorithm: SIGN,
    extensions: [
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth]),
      new x509.SubjectAlternativeNameExtension([{ type: 'url', value: AGENT_URI_PREFIX + agentId }]),
    ],
  });
  return { keyPem, certPem: cert.toString('pem') };
}

function spkiFingerprint(spkiDer: Buffer): string {
  return 'sha256:' + createHash('sha256').update(spkiDer).digest('hex');
}

/** "sha256:<hex>" of a certificate's SubjectPublicKeyInfo (DER): equal iff two certificates share a key. */
export function certPublicKeyFingerprint(cert: string | Buffer): string {
  const spki = new NodeX509(cert).publicKey.export({ type: 'spki', format: 'der' });
  return spkiFingerprint(spki);
}

/** "sha256:<hex>" of the DER of the first certificate in `pem`. */
export function certFingerprint(pem: string): string {
  const known = fingerprintMemo.get(pem);
  if (known !== undefined) return known;
  const der = new NodeX509(pem).raw;
  const fp = 'sha256:' + createHash('sha256').update(der).digest('hex');
  if (fingerprintMemo.size >= FINGERPRINT_MEMO_MAX) fingerprintMemo.clear();
  fingerprintMemo.set(pem, fp);
  return fp;
}

/**
 * Fingerprints of recently seen PEMs (a PEM's fingerprint never changes). The agent link takes
 * the fingerprints of the same CA bundle on every connect and every trust bundle: parsing
 * certificates was the largest CPU cost of a 1,000-agent simulator process in a reconnect
 * storm (issue 16). Bounded: cleared when full.
 */
const fingerprintMemo = new Map<string, string>();
const FINGERPRINT_MEMO_MAX = 256;

/** Normalizes "sha256:AB:CD…", "AB CD…" or plain hex to "sha256:abcd…". */
export function normalizeFingerprint(fp: string): string {
  const hex = fp.trim().replace(/^sha256:/i, '').replace(/[:\s]/g, '').toLowerCase();
  if (!/^[0-9a-f]{64}$/.test(hex)) {
    throw new BulkheadError('BK_ERR_CONFIG_INVALID', `"${fp}" is not a SHA-256 fingerprint (expected sha256: followed by 64 hex digits)`);
  }
  return 'sha256:' + hex;
}

/** Reads the agent id out of a certificate issued by signAgentCsr. */
export function agentIdFromCert(cert: { subject?: { CN?: string | string[] } | undefined; subjectaltname?: string | undefined }): string | undefined {
  const san = cert.subjectaltname ?? '';
  for (const part of san.split(/,\s*/)) {
    if (part.startsWith('URI:' + AGENT_URI_PREFIX)) return part.slice(4 + AGENT_URI_PREFIX.length);
  }
  return undefined;
}

export interface CertSummary {
  subject: string;
  serial: string;
  notBefore: Date;
  notAfter: Date;
  fingerprint: string;
}

export function describeCert(pem: string): CertSummary {
  const c = new NodeX509(pem);
  return {
    subject: c.subject,
    serial: canonicalSerial(c.serialNumber),
    notBefore: new Date(c.validFrom),
    notAfter: new Date(c.validTo),
    fingerprint: certFingerprint(pem),
  };
}

function escapeDn(v: string): string {
  return v.replace(/([,+"\\<>;=])/g, '\\$1');
}

/** The PEM certificates in `pem`, each as its own PEM block (a CA bundle holds several). */
export function splitPemCertificates(pem: string): string[] {
  return pem.match(/-----BEGIN CERTIFICATE-----[A-Za-z0-9+/=\s]+?-----END CERTIFICATE-----/g)?.map((c) => c + '\n') ?? [];
}

/** True when the certificate `cert` (PEM or DER) is signed by one of the CA certificates in `caBundlePem`. */
export function issuedByOneOf(cert: string | Buffer, caBundlePem: string): boolean {
  let c: NodeX509;
  try {
    c = new NodeX509(cert);
  } catch {
    return false;
  }
  return splitPemCertificates(caBundlePem).some((pem) => {
    try {
      const ca = new NodeX509(pem);
      return c.checkIssued(ca) && c.verify(ca.publicKey);
    } catch {
      return false;
    }
  });
}
