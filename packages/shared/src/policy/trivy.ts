// Trivy JSON reports (`trivy image --format json`, schema version 2) → the
// ScanSummary the `vulnerabilities` and `not-scanned` checks read. Only what
// policy needs is kept: id, severity, CVSS, fixable, package.
import { BulkheadError } from '../errors/registry';
import type { ScanSummary, Severity } from './types';

export interface TrivyParseOptions {
  /** Used as scannedAt when the report has no CreatedAt (Trivy before 0.48). */
  receivedAt?: Date;
}

function bad(message: string, cause?: unknown): BulkheadError {
  return new BulkheadError('BK_ERR_BAD_REQUEST', `not a usable Trivy JSON report: ${message}`, cause !== undefined ? { cause } : undefined);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

const SEVERITIES: Record<string, Severity> = { CRITICAL: 'critical', HIGH: 'high', MEDIUM: 'medium', LOW: 'low' };

/** Best CVSS v3 score: NVD, then Red Hat, then the highest any other source gives. */
function cvssOf(v: Record<string, unknown>): number | undefined {
  const cvss = v.CVSS;
  if (!isObject(cvss)) return undefined;
  const score = (src: unknown): number | undefined => {
    if (!isObject(src)) return undefined;
    const s = src.V3Score ?? src.V40Score;
    return typeof s === 'number' && Number.isFinite(s) ? s : undefined;
  };
  const nvd = score(cvss.nvd);
  if (nvd !== undefined) return nvd;
  const rh = score(cvss.redhat);
  if (rh !== undefined) return rh;
  let best: number | undefined;
  for (const src of Object.values(cvss)) {
    const s = score(src);
    if (s !== undefined && (best === undefined || s > best)) best = s;
  }
  return best;
}

function digestPart(ref: string): string | undefined {
  const at = ref.lastIndexOf('@');
  const d = at >= 0 ? ref.slice(at + 1) : ref;
  return /^sha256:[a-f0-9]{64}$/.test(d) ? d : undefined;
}

/**
 * Parses a Trivy image report (object or JSON text). `digest` is the repo
 * digest ("sha256:…" from Metadata.RepoDigests[0]) or, for local images, the
 * image id; the other identities are kept in `repoDigests` / `imageId` so the
 * controller can index the scan under each (see scanKeys).
 */
export function parseTrivyReport(json: unknown, options: TrivyParseOptions = {}): ScanSummary {
  let doc = json;
  if (typeof doc === 'string') {
    try {
      doc = JSON.parse(doc);
    } catch (cause) {
      throw bad(`invalid JSON (${(cause as Error).message})`, cause);
    }
  }
  if (!isObject(doc)) throw bad('expected a JSON object');
  if (doc.SchemaVersion !== undefined && doc.SchemaVersion !== 2) throw bad(`unsupported SchemaVersion ${JSON.stringify(doc.SchemaVersion)} (expected 2)`);
  if (doc.ArtifactType !== undefined && doc.ArtifactType !== 'container_image') {
    throw bad(`ArtifactType is ${JSON.stringify(doc.ArtifactType)}; scan an image (trivy image --format json)`);
  }
  const meta = isObject(doc.Metadata) ? doc.Metadata : {};
  const repoDigests = Array.isArray(meta.RepoDigests) ? meta.RepoDigests.filter((d): d is string => typeof d === 'string') : [];
  const imageId = typeof meta.ImageID === 'string' && /^sha256:[a-f0-9]{64}$/.test(meta.ImageID) ? meta.ImageID : undefined;
  const artifactName = typeof doc.ArtifactName === 'string' ? doc.ArtifactName : undefined;
  const digest = (repoDigests.length > 0 ? digestPart(repoDigests[0]!) : undefined) ?? imageId ?? (artifactName ? digestPart(artifactName) : undefined);
  if (digest === undefined) throw bad('no image digest: Metadata.RepoDigests and Metadata.ImageID are both missing');

  let scannedAt: string;
  if (typeof doc.CreatedAt === 'string' && Number.isFinite(Date.parse(doc.CreatedAt))) scannedAt = new Date(Date.parse(doc.CreatedAt)).toISOString();
  else if (options.receivedAt) scannedAt = options.receivedAt.toISOString();
  else throw bad('no CreatedAt (Trivy < 0.48); pass receivedAt');

  if (doc.Results !== undefined && doc.Results !== null && !Array.isArray(doc.Results)) throw bad('Results must be an array');
  const results = (doc.Results ?? []) as unknown[];
  const vulnerabilities: ScanSummary['vulnerabilities'] = [];
  const seen = new Set<string>();
  results.forEach((r, i) => {
    if (!isObject(r)) throw bad(`Results[${i}] is not an object`);
    if (r.Vulnerabilities === undefined || r.Vulnerabilities === null) return;
    if (!Array.isArray(r.Vulnerabilities)) throw bad(`Results[${i}].Vulnerabilities must be an array`);
    r.Vulnerabilities.forEach((v, j) => {
      if (!isObject(v) || typeof v.VulnerabilityID !== 'string' || v.VulnerabilityID === '') {
        throw bad(`Results[${i}].Vulnerabilities[${j}] has no VulnerabilityID`);
      }
      const pkg = typeof v.PkgName === 'string' ? v.PkgName : undefined;
      const key = `${v.VulnerabilityID}\u0000${pkg ?? ''}\u0000${typeof v.InstalledVersion === 'string' ? v.InstalledVersion : ''}`;
      if (seen.has(key)) return;
      seen.add(key);
      const sev = typeof v.Severity === 'string' ? SEVERITIES[v.Severity.toUpperCase()] ?? 'unknown' : 'unknown';
      const cvss = cvssOf(v);
      const fixable = (typeof v.FixedVersion === 'string' && v.FixedVersion.trim() !== '') || v.Status === 'fixed';
      const entry: ScanSummary['vulnerabilities'][number] = { id: v.VulnerabilityID, severity: sev, fixable };
      if (cvss !== undefined) entry.cvss = cvss;
      if (pkg !== undefined) entry.pkg = pkg;
      vulnerabilities.push(entry);
    });
  });
  const summary: ScanSummary = { digest, scannedAt, scanner: 'trivy', vulnerabilities };
  if (imageId !== undefined) summary.imageId = imageId;
  if (repoDigests.length > 0) summary.repoDigests = repoDigests;
  if (artifactName !== undefined) summary.artifactName = artifactName;
  return summary;
}

/** Every key a scan should be found under in EvaluationContext.scans: its digest, all repo digests, the image id. */
export function scanKeys(s: ScanSummary): string[] {
  const keys = new Set<string>([s.digest]);
  for (const r of s.repoDigests ?? []) {
    const d = digestPart(r);
    if (d) keys.add(d);
  }
  if (s.imageId) keys.add(s.imageId);
  return [...keys];
}
