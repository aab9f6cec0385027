// Owns /v1/scans: vulnerability scanner reports (Trivy JSON) uploaded from CI
// or a periodic job, keyed by image digest. The policy's vulnerability rules
// read them; every upload is pushed to the agents with the policy bundle.
import type { FastifyInstance } from 'fastify';
import { Type, type Static } from '@sinclair/typebox';
import { BulkheadError } from '@bulkhead/shared';
import type { ScanRecord, Store } from '../../store/store';
import type { PolicyService } from '../../policy/policy-service';

/**
 * Trivy reports of large images with every package listed run to ten or twenty megabytes.
 * The body is read as text and measured (depth, vulnerability count) before it is parsed, so
 * this bounds the text held, not a tree of objects built from it. Equals
 * TRIVY_REPORT_LIMITS.maxBytes in @bulkhead/shared (docs/limits.md).
 */
export const SCAN_BODY_LIMIT = 32 * 1024 * 1024;

const IsoDate = Type.String({ format: 'date-time' });

export const ScanSchema = Type.Object({
  digest: Type.String(),
  scanner: Type.String(),
  scannedAt: IsoDate,
  uploadedAt: IsoDate,
  /** Days since scannedAt, at the time of the answer (what `not-scanned` with maxAgeDays compares). */
  ageDays: Type.Number(),
  /** What was scanned, as the scanner names it (e.g. "registry.example.com/app:2.4.1"). */
  artifactName: Type.Union([Type.String(), Type.Null()]),
  /** The image id (config digest) the report names, if any. */
  imageId: Type.Union([Type.String(), Type.Null()]),
  /** Every repo digest ("repo@sha256:…") the report names. */
  repoDigests: Type.Array(Type.String()),
  /** Vulnerabilities per severity. */
  counts: Type.Object({
    critical: Type.Integer(),
    high: Type.Integer(),
    medium: Type.Integer(),
    low: Type.Integer(),
    unknown: Type.Integer(),
  }),
  /** How many have a fixed version available. */
  fixable: Type.Integer(),
  vulnerabilities: Type.Array(
    Type.Object({
      id: Type.String(),
      severity: Type.String(),
      cvss: Type.Optional(Type.Number()),
      fixable: Type.Boolean(),
      pkg: Type.Optional(Type.String()),
    }),
  ),
});
export type ScanDto = Static<typeof ScanSchema>;

export const ScanParamsSchema = Type.Object({ digest: Type.String({ minLength: 1, maxLength: 256 }) });
export type ScanParams = Static<typeof ScanParamsSchema>;

export function registerScanRoutes(app: FastifyInstance, opts: { store: Store; policy: PolicyService | undefined }): void {
  // A scope of its own: the report arrives as text, so parseTrivyReport can measure it
  // (nesting, vulnerability count) before JSON.parse turns it into objects.
  void app.register(async (scope) => {
    scope.removeContentTypeParser('application/json');
    scope.addContentTypeParser('application/json', { parseAs: 'string', bodyLimit: SCAN_BODY_LIMIT }, (_req, body, done) => {
      const text = String(body);
      done(null, text.charCodeAt(0) === 0xfeff ? text.slice(1) : text);
    });
    scope.post(
      '/scans',
      // A report feeds the vulnerability rules of every agent: fleet-wide.
      { config: { role: 'operator', fleetWide: true, action: 'scans.upload' }, bodyLimit: SCAN_BODY_LIMIT, schema: { response: { 201: ScanSchema } } },
      async (req, reply) => {
        if (!opts.policy) throw new BulkheadError('BK_ERR_NOT_READY', 'the policy service is not running');
        if (typeof req.body !== 'string' || req.body.trim() === '') {
          throw new BulkheadError('BK_ERR_BAD_REQUEST', 'send a Trivy JSON report (trivy image --format json) as an application/json body');
        }
        const rec = await opts.policy.uploadScan(req.body);
        return reply.code(201).header('location', `/v1/scans/${encodeURIComponent(rec.digest)}`).send(toScanDto(rec));
      },
    );
  });

  app.get<{ Params: ScanParams }>(
    '/scans/:digest',
    { config: { role: 'viewer' }, schema: { params: ScanParamsSchema, response: { 200: ScanSchema } } },
    async (req): Promise<ScanDto> => {
      const rec = await opts.store.getScan(req.params.digest);
      if (!rec) throw new BulkheadError('BK_ERR_NOT_FOUND', `no scan for image digest "${req.params.digest}"`);
      return toScanDto(rec);
    },
  );
}

export function toScanDto(s: ScanRecord, now: Date = new Date()): ScanDto {
  const counts = { critical: 0, high: 0, medium: 0, low: 0, unknown: 0 };
  let fixable = 0;
  for (const v of s.summary.vulnerabilities) {
    counts[v.severity in counts ? v.severity : 'unknown']++;
    if (v.fixable) fixable++;
  }
  return {
    digest: s.digest,
    scanner: s.scanner,
    scannedAt: s.scannedAt.toISOString(),
    uploadedAt: s.uploadedAt.toISOString(),
    ageDays: Math.max(0, Math.round(((now.getTime() - s.scannedAt.getTime()) / 86_400_000) * 100) / 100),
    artifactName: s.summary.artifactName ?? null,
    imageId: s.summary.imageId ?? null,
    repoDigests: s.summary.repoDigests ?? [],
    counts,
    fixable,
    vulnerabilities: s.summary.vulnerabilities.map((v) => ({
      id: v.id,
      severity: v.severity,
      fixable: v.fixable,
      ...(v.cvss !== undefined ? { cvss: v.cvss } : {}),
      ...(v.pkg !== undefined ? { pkg: v.pkg } : {}),
    })),
  };
}
