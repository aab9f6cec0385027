// Owns the CAs the agent trusts for the controller's server certificate
// (ca.crt in the state directory) and their replacement by a TrustBundle the
// controller sends over the authenticated stream during a CA rotation. A
// bundle is taken only if every entry is a CA certificate, it names its
// issuing CA, and it keeps at least one CA trusted now: a controller cannot
// move the agent to an unrelated set of CAs in one step.
import { X509Certificate } from 'node:crypto';
import { BulkheadError, certFingerprint, splitPemCertificates, writeFileAtomic } from '@bulkhead/shared';
import { statePaths, type AgentIdentity } from '../state/agent-state';

/** More than a rollover needs (old + new), and small enough to stay cheap. */
const MAX_TRUSTED_CAS = 8;

export interface TrustBundleInput {
  caPem: string;
  issuingCaFingerprint: string;
}

export interface AcceptedTrust {
  caPem: string;
  fingerprints: string[];
  issuingCaPem: string;
  /** False when the bundle holds exactly the CAs trusted now. */
  changed: boolean;
}

export function trustedFingerprints(caPem: string): string[] {
  return splitPemCertificates(caPem).map((c) => certFingerprint(c));
}

export function acceptTrustBundle(currentCaPem: string, b: TrustBundleInput): AcceptedTrust {
  const certs = splitPemCertificates(b.caPem);
  if (certs.length === 0 || certs.length > MAX_TRUSTED_CAS) throw new BulkheadError('BK_ERR_PROTOCOL', `a trust bundle must hold 1 to ${MAX_TRUSTED_CAS} CA certificates, not ${certs.length}`);
  for (const c of certs) {
    let x: X509Certificate;
    try {
      x = new X509Certificate(c);
    } catch (cause) {
      throw new BulkheadError('BK_ERR_PROTOCOL', 'a trust bundle entry is not a certificate', { cause });
    }
    if (!x.ca) throw new BulkheadError('BK_ERR_PROTOCOL', `trust bundle entry ${x.subject.replace(/\n/g, ', ')} is not a CA certificate`);
  }
  const fingerprints = certs.map((c) => certFingerprint(c));
  const issuing = certs[fingerprints.indexOf(b.issuingCaFingerprint)];
  if (issuing === undefined) throw new BulkheadError('BK_ERR_PROTOCOL', `the trust bundle does not hold its issuing CA ${b.issuingCaFingerprint}`);
  const current = trustedFingerprints(currentCaPem);
  if (!fingerprints.some((f) => current.includes(f))) {
    throw new BulkheadError('BK_ERR_PROTOCOL', `the trust bundle (${fingerprints.join(', ')}) keeps none of the CAs this agent trusts (${current.join(', ')})`);
  }
  const changed = fingerprints.length !== current.length || fingerprints.some((f) => !current.includes(f));
  return { caPem: certs.join(''), fingerprints, issuingCaPem: issuing, changed };
}

/**
 * ca.crt (0644: public) replaced atomically, then identity.json (0600) with
 * the issuing CA as the fingerprint a re-enrollment would pin.
 */
export function saveTrust(stateDir: string, caPem: string, identity: AgentIdentity): void {
  const p = statePaths(stateDir);
  writeFileAtomic(p.ca, caPem, 0o644);
  writeFileAtomic(p.identity, JSON.stringify(identity, null, 2) + '\n', 0o600);
}
