// Owns the certificates a running controller serves and trusts, and their
// replacement without a restart. Everything that signs or checks (the gRPC
// listener's TLS, enrollment, renewal over the link, the trust bundle sent to
// agents) reads it through this object, so a reload takes effect for the next
// handshake and the next certificate; TLS connections already open keep
// their session.
import { X509Certificate } from 'node:crypto';
import { certFingerprint, type KeyAndCert, type Logger } from '@bulkhead/shared';
import { loadPki, type ControllerPki, type RotationPhase } from './data-dir';

export interface TrustBundleMessage {
  caPem: string;
  issuingCaFingerprint: string;
}

export class LivePki implements ControllerPki {
  private cur: ControllerPki;
  private readonly listeners = new Set<(pki: ControllerPki, previous: ControllerPki) => void>();

  constructor(initial: ControllerPki, private readonly dataDir?: string) {
    this.cur = initial;
  }

  get ca(): KeyAndCert {
    return this.cur.ca;
  }

  get server(): KeyAndCert {
    return this.cur.server;
  }

  get caFingerprint(): string {
    return this.cur.caFingerprint;
  }

  get trust(): string[] {
    return this.cur.trust;
  }

  get rotation(): RotationPhase {
    return this.cur.rotation;
  }

  get serverIssuer(): string {
    return this.cur.serverIssuer;
  }

  /** Every trusted CA, concatenated (the client-certificate trust of the listener). */
  trustPem(): string {
    return this.cur.trust.map((c) => c.trimEnd() + '\n').join('');
  }

  trustBundle(): TrustBundleMessage {
    return { caPem: this.trustPem(), issuingCaFingerprint: this.cur.caFingerprint };
  }

  /** Calls `l` after every change; returns an unsubscribe. */
  subscribe(l: (pki: ControllerPki, previous: ControllerPki) => void): () => void {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }

  /**
   * Re-reads the data directory (SIGHUP). A directory that fails loadPki's
   * checks throws and changes nothing. Returns what is in force afterwards.
   */
  reload(logger?: Logger): PkiSummary {
    if (!this.dataDir) throw new Error('this PKI was not loaded from a data directory');
    this.replace(loadPki(this.dataDir));
    const summary = summarizePki(this.cur);
    logger?.info({ pki: summary }, 'controller certificates reloaded');
    return summary;
  }

  replace(next: ControllerPki): void {
    const previous = this.cur;
    this.cur = next;
    for (const l of this.listeners) l(next, previous);
  }
}

export interface PkiSummary {
  rotation: RotationPhase;
  issuingCa: string;
  trustedCas: string[];
  serverCertificate: { fingerprint: string; notAfter: string; subjectAltName: string; issuer: string };
}

export function summarizePki(p: ControllerPki): PkiSummary {
  const server = new X509Certificate(p.server.certPem);
  return {
    rotation: p.rotation,
    issuingCa: p.caFingerprint,
    trustedCas: p.trust.map((c) => certFingerprint(c)),
    serverCertificate: { fingerprint: certFingerprint(p.server.certPem), notAfter: new Date(server.validTo).toISOString(), subjectAltName: server.subjectAltName ?? '', issuer: certFingerprint(p.serverIssuer) },
  };
}
