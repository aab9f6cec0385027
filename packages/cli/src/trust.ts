// Owns which certificate authorities the `bulkhead` CLI trusts when no
// `--ca`/BULKHEAD_CA is given: the system trust store. Node 20 on its own
// trusts only the Mozilla list compiled into it, so a controller whose API
// certificate (`serve --api-tls-cert`) comes from a company CA installed on
// the machine (update-ca-certificates, update-ca-trust) would be refused.
// The CLI therefore adds the operating system's CA bundle — SSL_CERT_FILE
// when set (OpenSSL's own variable), else the first bundle found at the
// usual places — to Node's list, and keeps NODE_EXTRA_CA_CERTS (which Node
// itself ignores once a CA list is given explicitly). With `--ca` only that
// file is trusted: pinning the controller's own CA stays exact.
import { readFileSync } from 'node:fs';
import { rootCertificates } from 'node:tls';

/** Where distributions keep the system CA bundle (the same list Go's crypto/x509 reads). */
export const SYSTEM_CA_BUNDLES: readonly string[] = [
  '/etc/ssl/certs/ca-certificates.crt', // Debian, Ubuntu, Alpine, Arch
  '/etc/pki/tls/certs/ca-bundle.crt', // Fedora, RHEL
  '/etc/ssl/ca-bundle.pem', // openSUSE
  '/etc/pki/tls/cacert.pem', // OpenELEC
  '/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem', // CentOS, RHEL 7
  '/etc/ssl/cert.pem', // Alpine, macOS
];

export interface SystemTrust {
  /** Node's built-in roots, NODE_EXTRA_CA_CERTS, and the bundle's certificates. */
  ca: string[];
  /** The bundle file read; undefined when none was found (then `ca` is Node's list alone). */
  bundle: string | undefined;
}

/**
 * The CAs to trust without `--ca`. `env.SSL_CERT_FILE` names the bundle
 * explicitly; an unreadable one is an error (a typo must not silently fall
 * back to another store). `read` is injectable for tests.
 */
export function systemTrust(env: Record<string, string | undefined>, read: (path: string) => string = (p) => readFileSync(p, 'utf8')): SystemTrust {
  const base = [...rootCertificates, ...extraCertificates(env, read)];
  const explicit = env['SSL_CERT_FILE'];
  if (explicit !== undefined && explicit !== '') {
    let pem: string;
    try {
      pem = read(explicit);
    } catch (e) {
      throw new Error(`cannot read SSL_CERT_FILE ${explicit}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    return { ca: [...base, ...pemCertificates(pem)], bundle: explicit };
  }
  for (const path of SYSTEM_CA_BUNDLES) {
    let pem: string;
    try {
      pem = read(path);
    } catch {
      continue;
    }
    const certs = pemCertificates(pem);
    if (certs.length > 0) return { ca: [...base, ...certs], bundle: path };
  }
  return { ca: base, bundle: undefined };
}

/** NODE_EXTRA_CA_CERTS, as Node would have added it (Node already warned at start if it is unreadable). */
function extraCertificates(env: Record<string, string | undefined>, read: (path: string) => string): string[] {
  const file = env['NODE_EXTRA_CA_CERTS'];
  if (file === undefined || file === '') return [];
  try {
    return pemCertificates(read(file));
  } catch {
    return [];
  }
}

function pemCertificates(pem: string): string[] {
  return pem.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? [];
}
