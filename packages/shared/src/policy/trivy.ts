// Trivy JSON reports (`trivy image --format json`, schema version 2) → the
// ScanSummary the `vulnerabilities` and `not-scanned` checks read. Only what
// policy needs is kept: id, severity, CVSS, fixable, package. A report is
// bounded (TRIVY_REPORT_LIMITS) before and while it is read: it is parsed on
// the controller's request path and its summary travels to every agent.
import { BulkheadError } from '../errors/registry';
import type { ScanSummary, Severity } from './types';

/** Bounds on an uploaded report (docs/limits.md). */
export const TRIVY_REPORT_LIMITS = {
  /** Bytes of report JSON (the POST /v1/scans body limit). */
  maxBytes: 32 * 1024 * 1024,
  /** Nesting of objects and arrays; a Trivy report needs about 8. */
  maxDepth: 64,
  /**
   * Vulnerability entries in one report. The largest real images list a few thousand; the
   * summary of this many is about 2 MB and still fits a bundle's scan budget.
   */
  maxVulnerabilities: 20_000,
  /** Characters in a VulnerabilityID. */
  maxIdLength: 256,
  /** Characters in a PkgName. */
  maxPkgLength: 512,
} as const;

/** CVSS scores run from 0 to 10 in every CVSS version. */
const CVSS_RANGE = [0, 10] as const;

/**
 * One pass over report JSON text before JSON.parse builds it: nesting depth and the number of
 * vulnerability entries. Both are counted outside strings only, so text inside a description
 * cannot trip them; a key spelled with escapes ("\u0056ulnerabilityID") slips past the count,
 * and parseTrivyReport counts again after parsing.
 */
export function checkTrivyReportText(text: string): void {
  const L = TRIVY_REPORT_LIMITS;
  if (text.length > L.maxBytes) throw tooLarge(`the report is ${text.length} bytes; at most ${L.maxBytes} are accepted`);
  const KEY = '"VulnerabilityID"';
  let depth = 0;
  let entries = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      const start = i;
      for (i++; i < text.length; i++) {
        const q = text.charCodeAt(i);
        if (q === 0x5c /* \ */) i++;
        else if (q === 0x22) break;
      }
      // A key: the string is followed (after blanks) by a colon.
      if (i - start + 1 === KEY.length && text.startsWith(KEY, start)) {
        let j = i + 1;
        while (j < text.length && (text[j] === ' ' || text[j] === '\n' || text[j] === '\r' || text[j] === '\t')) j++;
        if (text[j] === ':' && ++entries > L.maxVulnerabilities) {
          throw tooLarge(`the report lists more than ${L.maxVulnerabilities} vulnerabilities; at most ${L.maxVulnerabilities} are accepted per image`);
        }
      }
    } else if (c === 0x5b /* [ */ || c === 0x7b /* { */) {
      if (++depth > L.maxDepth) throw bad(`JSON nested more than ${L.maxDepth} levels deep at offset ${i}`);
    } else if (c === 0x5d /* ] */ || c === 0x7d /* } */) {
      depth--;
    }
  }
}

function tooLarge(message: string): BulkheadError {
  return new BulkheadError('BK_ERR_TOO_LARGE', `Trivy report refused: ${message}`);
}

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

/**
 * Best CVSS v3 score: NVD, then Red Hat, then the highest any other source gives. A score
 * that is not a number from 0 to 10 refuses the report: a rule's `maxCvss` compares it.
 */
function cvssOf(v: Record<string, unknown>, where: string): number | undefined {
  const cvss = v.CVSS;
  if (!isObject(cvss)) return undefined;
  for (const [name, src] of Object.entries(cvss)) {
    if (!isObject(src)) continue;
    for (const field of ['V2Score', 'V3Score', 'V40Score']) {
      const s = src[field];
      if (s === undefined || s === null) continue;
      if (typeof s !== 'number' || !Number.isFinite(s) || s < CVSS_RANGE[0] || s > CVSS_RANGE[1]) {
        throw bad(`${where}.CVSS.${name}.${field} is ${JSON.stringify(s) ?? String(s)}; a CVSS score is a number from ${CVSS_RANGE[0]} to ${CVSS_RANGE[1]}`);
      }
    }
  }
  const score = (src: unknown): number | undefined => {
    if (!isObject(src)) return undefined;
    const s = src.V3Score ?? src.V40Score;
    return typeof s === 'number' ? s : undefined;
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
    checkTrivyReportText(doc);
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
  const L = TRIVY_REPORT_LIMITS;
  let entries = 0;
  results.forEach((r, i) => {
    if (!isObject(r)) throw bad(`Results[${i}] is not an object`);
    if (r.Vulnerabilities === undefined || r.Vulnerabilities === null) return;
    if (!Array.isArray(r.Vulnerabilities)) throw bad(`Results[${i}].Vulnerabilities must be an array`);
    entries += r.Vulnerabilities.length;
    if (entries > L.maxVulnerabilities) {
      throw tooLarge(`the report lists more than ${L.maxVulnerabilities} vulnerabilities; at most ${L.maxVulnerabilities} are accepted per image`);
    }
    r.Vulnerabilities.forEach((v, j) => {
      const where = `Results[${i}].Vulnerabilities[${j}]`;
      if (!isObject(v) || typeof v.VulnerabilityID !== 'string' || v.VulnerabilityID === '') {
        throw bad(`${where} has no VulnerabilityID`);
      }
      if (v.VulnerabilityID.length > L.maxIdLength) throw bad(`${where}.VulnerabilityID is ${v.VulnerabilityID.length} characters; at most ${L.maxIdLength}`);
      const pkg = typeof v.PkgName === 'string' ? v.PkgName : undefined;
      if (pkg !== undefined && pkg.length > L.maxPkgLength) throw bad(`${where}.PkgName is ${pkg.length} characters; at most ${L.maxPkgLength}`);
      const key = `${v.VulnerabilityID}\u0000${pkg ?? ''}\u0000${typeof v.InstalledVersion === 'string' ? v.InstalledVersion : ''}`;
      if (seen.has(key)) return;
      seen.add(key);
      const sev = typeof v.Severity === 'string' ? SEVERITIES[v.Severity.toUpperCase()] ?? 'unknown' : 'unknown';
      const cvss = cvssOf(v, where);
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
