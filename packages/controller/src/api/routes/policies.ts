// Owns /v1/policies: the policy in force and its history, applying a new
// version, and the dry-run of a candidate against the live fleet. Policy
// documents travel as text (YAML or JSON, as the author wrote them), so
// validation errors can point at the author's own lines and columns.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { Type, type Static } from '@sinclair/typebox';
import { BulkheadError, type PolicyErrorDetail } from '@bulkhead/shared';
import type { PolicyVersionRecord } from '../../store/store';
import type { CurrentPolicy, PolicyService } from '../../policy/policy-service';
import { PROBLEM_CONTENT_TYPE, makeProblem } from '../problem';
import { auditTarget } from '../../audit/audit-hooks';

/** Policies are small; a megabyte is far beyond any sane one. */
export const POLICY_BODY_LIMIT = 1024 * 1024;

const IsoDate = Type.String({ format: 'date-time' });
const Severity = Type.Union([Type.Literal('low'), Type.Literal('medium'), Type.Literal('high'), Type.Literal('critical')]);
const ModeSchema = Type.Union([Type.Literal('monitor'), Type.Literal('enforce')]);
/** A rule's action as written in the policy (type plus its parameters). */
const ActionSchema = Type.Object({ type: Type.String() }, { additionalProperties: true });

export const PolicyRuleSummarySchema = Type.Object({
  id: Type.String(),
  description: Type.String(),
  severity: Severity,
  mode: ModeSchema,
  action: Type.String(),
  check: Type.String(),
});

export const PolicySchema = Type.Object({
  version: Type.Integer(),
  name: Type.String(),
  /** True for the version in force. */
  current: Type.Boolean(),
  sha256: Type.String(),
  createdAt: IsoDate,
  createdBy: Type.String(),
  comment: Type.String(),
  /** The document as it was submitted (YAML or JSON). */
  yaml: Type.String(),
  rules: Type.Array(PolicyRuleSummarySchema),
});
export type PolicyDto = Static<typeof PolicySchema>;

export const PolicyVersionSchema = Type.Object({
  version: Type.Integer(),
  name: Type.String(),
  current: Type.Boolean(),
  sha256: Type.String(),
  createdAt: IsoDate,
  createdBy: Type.String(),
  comment: Type.String(),
});
export type PolicyVersionDto = Static<typeof PolicyVersionSchema>;

export const PolicyVersionListSchema = Type.Object({ items: Type.Array(PolicyVersionSchema) });
export type PolicyVersionListDto = Static<typeof PolicyVersionListSchema>;

export const PolicyErrorSchema = Type.Object({
  file: Type.String(),
  line: Type.Integer(),
  column: Type.Integer(),
  path: Type.String(),
  message: Type.String(),
});
export type PolicyErrorDto = Static<typeof PolicyErrorSchema>;

export const PolicyGetQuerySchema = Type.Object(
  { version: Type.Optional(Type.Integer({ minimum: 1 })) },
  { additionalProperties: false },
);
export type PolicyGetQuery = Static<typeof PolicyGetQuerySchema>;

export const PolicyPutQuerySchema = Type.Object(
  {
    /** Shown in validation errors. Default "policy.yaml". */
    filename: Type.Optional(Type.String({ minLength: 1, maxLength: 256 })),
    comment: Type.Optional(Type.String({ maxLength: 1024 })),
  },
  { additionalProperties: false },
);
export type PolicyPutQuery = Static<typeof PolicyPutQuerySchema>;

const EvidenceSchema = Type.Object({ location: Type.String(), detail: Type.String(), detector: Type.Optional(Type.String()) });

export const DryRunHitSchema = Type.Object({
  agentId: Type.String(),
  hostname: Type.String(),
  containerId: Type.String(),
  containerName: Type.String(),
  imageRef: Type.String(),
  state: Type.String(),
  project: Type.Union([Type.String(), Type.Null()]),
  severity: Severity,
  mode: ModeSchema,
  action: ActionSchema,
  message: Type.String(),
  evidence: Type.Array(EvidenceSchema),
  exemptedBy: Type.Union([Type.Object({ who: Type.String(), why: Type.String(), until: Type.Optional(Type.String()) }), Type.Null()]),
});

export const DryRunUndecidedSchema = Type.Object({
  agentId: Type.String(),
  hostname: Type.String(),
  containerId: Type.String(),
  containerName: Type.String(),
  imageRef: Type.String(),
  repoDigest: Type.String(),
  reason: Type.String(),
});

export const DryRunRuleSchema = Type.Object({
  ruleId: Type.String(),
  description: Type.String(),
  severity: Severity,
  mode: ModeSchema,
  action: ActionSchema,
  checkType: Type.String(),
  hits: Type.Array(DryRunHitSchema),
  undecided: Type.Array(DryRunUndecidedSchema),
});

export const DryRunTotalsSchema = Type.Object({
  agents: Type.Integer(),
  containers: Type.Integer(),
  rules: Type.Integer(),
  findings: Type.Integer(),
  exempted: Type.Integer(),
  enforce: Type.Integer(),
  monitor: Type.Integer(),
  containersHit: Type.Integer(),
  rulesHit: Type.Integer(),
  undecided: Type.Integer(),
});

export const DryRunResultSchema = Type.Object({
  policyName: Type.String(),
  evaluatedAt: IsoDate,
  rules: Type.Array(DryRunRuleSchema),
  totals: DryRunTotalsSchema,
});
export type DryRunResultDto = Static<typeof DryRunResultSchema>;

/** Media types a policy document may be sent as. */
export const POLICY_MEDIA_TYPES = ['application/json', 'application/yaml', 'application/x-yaml', 'text/yaml', 'text/x-yaml', 'text/plain'];

export function registerPolicyRoutes(app: FastifyInstance, opts: { policy: PolicyService | undefined }): void {
  const service = (): PolicyService => {
    if (!opts.policy) throw new BulkheadError('BK_ERR_NOT_READY', 'the policy service is not running');
    return opts.policy;
  };

  // A scope of its own: the body arrives as text here (JSON included), so
  // both YAML and JSON documents are validated against what was written.
  void app.register(async (scope) => {
    scope.removeContentTypeParser('application/json');
    scope.addContentTypeParser(POLICY_MEDIA_TYPES, { parseAs: 'string', bodyLimit: POLICY_BODY_LIMIT }, (_req, body, done) => done(null, body));

    scope.get<{ Querystring: PolicyGetQuery }>(
      '/policies',
      { config: { role: 'viewer' }, schema: { querystring: PolicyGetQuerySchema, response: { 200: PolicySchema } } },
      async (req): Promise<PolicyDto> => {
        const svc = service();
        const cur = svc.current();
        if (req.query.version === undefined || req.query.version === cur.record.version) return toPolicyDto(cur.record, cur);
        const rec = await svc.get(req.query.version);
        if (!rec) throw new BulkheadError('BK_ERR_NOT_FOUND', `policy version ${req.query.version} not found (latest is ${cur.record.version})`);
        return toPolicyDto(rec, cur);
      },
    );

    scope.get('/policies/versions', { config: { role: 'viewer' }, schema: { response: { 200: PolicyVersionListSchema } } }, async (): Promise<PolicyVersionListDto> => {
      const svc = service();
      const current = svc.current().record.version;
      const items = await svc.listVersions();
      return {
        items: items.map((v) => ({
          version: v.version,
          name: v.name,
          current: v.version === current,
          sha256: v.sha256,
          createdAt: v.createdAt.toISOString(),
          createdBy: v.createdBy,
          comment: v.comment,
        })),
      };
    });

    scope.put<{ Querystring: PolicyPutQuery }>(
      '/policies',
      {
        config: { role: 'admin', fleetWide: true, action: 'policies.apply' },
        bodyLimit: POLICY_BODY_LIMIT,
        schema: { querystring: PolicyPutQuerySchema, response: { 200: PolicySchema } },
      },
      async (req, reply) => {
        const svc = service();
        const doc = policyText(req, req.query.filename);
        const result = await svc.apply(doc.text, {
          filename: doc.filename,
          actor: req.apiKey?.id ?? 'unknown',
          comment: req.query.comment ?? doc.comment ?? '',
        });
        if (!result.ok) return sendInvalid(req, reply, result.errors);
        auditTarget(req, { version: result.policy.version, sha256: result.policy.sha256 });
        return toPolicyDto(result.policy, svc.current());
      },
    );

    scope.post<{ Querystring: { filename?: string } }>(
      '/policies::dry-run',
      {
        // Read-only, but its answer spans every project's containers.
        config: { role: 'operator', fleetWide: true, action: 'policies.dry-run' },
        bodyLimit: POLICY_BODY_LIMIT,
        schema: {
          querystring: Type.Object({ filename: Type.Optional(Type.String({ minLength: 1, maxLength: 256 })) }, { additionalProperties: false }),
          response: { 200: DryRunResultSchema },
        },
      },
      async (req, reply) => {
        const doc = policyText(req, req.query.filename);
        const outcome = await service().dryRun(doc.text, { filename: doc.filename });
        if (!outcome.ok) return sendInvalid(req, reply, outcome.errors);
        return outcome.result;
      },
    );
  });
}

/**
 * The document from the request body: raw text (YAML or JSON), or a JSON
 * wrapper `{ "yaml": "…", "filename"?: "…", "comment"?: "…" }` for clients
 * that can only send JSON objects.
 */
function policyText(req: FastifyRequest, filename: string | undefined): { text: string; filename: string; comment?: string } {
  const body = req.body;
  if (typeof body !== 'string' || body.trim() === '') {
    throw new BulkheadError('BK_ERR_BAD_REQUEST', 'send the policy document as the request body (YAML or JSON)');
  }
  const ct = String(req.headers['content-type'] ?? '').toLowerCase();
  if (ct.startsWith('application/json')) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(body);
    } catch {
      parsed = undefined; // the policy parser reports the syntax error with its position
    }
    if (isWrapper(parsed)) {
      return {
        text: parsed.yaml,
        filename: filename ?? (typeof parsed.filename === 'string' && parsed.filename !== '' ? parsed.filename : 'policy.yaml'),
        ...(typeof parsed.comment === 'string' ? { comment: parsed.comment } : {}),
      };
    }
    return { text: body, filename: filename ?? 'policy.json' };
  }
  return { text: body, filename: filename ?? 'policy.yaml' };
}

function isWrapper(v: unknown): v is { yaml: string; filename?: unknown; comment?: unknown } {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && typeof (v as { yaml?: unknown }).yaml === 'string' && !('apiVersion' in v);
}

/** 400 BK_ERR_POLICY_INVALID with every error, each with file, line, column and path. */
function sendInvalid(req: FastifyRequest, reply: FastifyReply, errors: PolicyErrorDetail[]): FastifyReply {
  const first = errors[0];
  const detail =
    `policy is invalid: ${errors.length} error${errors.length === 1 ? '' : 's'}` +
    (first ? ` (first: ${first.file}:${first.line}:${first.column}: ${first.path ? first.path + ': ' : ''}${first.message})` : '');
  req.log.info({ code: 'BK_ERR_POLICY_INVALID', errors: errors.length }, 'policy rejected');
  const problem = {
    ...makeProblem('BK_ERR_POLICY_INVALID', detail),
    instance: req.url.split('?')[0],
    requestId: String(req.id),
    errors: errors.map((e): PolicyErrorDto => ({ file: e.file, line: e.line, column: e.column, path: e.path, message: e.message })),
  };
  return reply.code(400).type(PROBLEM_CONTENT_TYPE).send(JSON.stringify(problem));
}

function toPolicyDto(rec: PolicyVersionRecord, cur: CurrentPolicy): PolicyDto {
  // Rule summaries come from the stored JSON, parsed as it was validated when applied.
  const doc = rec.version === cur.record.version ? cur.policy : (JSON.parse(rec.json) as CurrentPolicy['policy']);
  return {
    version: rec.version,
    name: rec.name,
    current: rec.version === cur.record.version,
    sha256: rec.sha256,
    createdAt: rec.createdAt.toISOString(),
    createdBy: rec.createdBy,
    comment: rec.comment,
    yaml: rec.yaml,
    rules: (doc.spec?.rules ?? []).map((r) => ({
      id: r.id,
      description: r.description,
      severity: r.severity,
      mode: r.mode,
      action: r.action?.type ?? '',
      check: r.check?.type ?? '',
    })),
  };
}
