// Owns /v1/violations: every finding the agents reported and what was done
// about it (denied at the Docker API, killed, paused, …), filtered and
// paged, newest first; and operators acknowledging them:
// POST /v1/violations/:id/acknowledge records who (API key id and name),
// when and why. The first acknowledgement is the record: a second one is
// refused with 409 BK_ERR_CONFLICT naming who acknowledged, so nobody
// silently overwrites someone else's note; /unacknowledge clears it (409
// when there is none). Both are mutating calls, so the audit hooks put them
// in the hash-chained trail. A credential limited to projects acknowledges
// only its projects' violations; others answer 404, as if absent.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { Type, type Static } from '@sinclair/typebox';
import { BulkheadError } from '@bulkhead/shared';
import type { Store, ViolationPosition, ViolationRecord } from '../../store/store';
import { CursorPageSchema, CursorParam, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, cursorPageReply } from '../dto';
import { checkCursorOrOffset, decodeCursor, encodeCursor } from '../cursor';
import { canSee, visibleProjects } from '../../auth/project-scope';
import { auditTarget } from '../../audit/audit-hooks';
import { strictInput } from './strict-input';

const IsoDate = Type.String({ format: 'date-time' });

export const ViolationSchema = Type.Object({
  id: Type.String(),
  agentId: Type.String(),
  containerId: Type.String(),
  containerName: Type.String(),
  imageRef: Type.String(),
  project: Type.String(),
  ruleId: Type.String(),
  severity: Type.String(),
  mode: Type.String(),
  source: Type.String(),
  message: Type.String(),
  evidence: Type.Array(Type.Object({ location: Type.String(), detail: Type.String(), detector: Type.Optional(Type.String()) })),
  denied: Type.Boolean(),
  /** What the agent did; null when it did nothing (monitor mode, or a denial at the Docker API). */
  action: Type.Union([
    Type.Object({ type: Type.String(), result: Type.String(), error: Type.String(), durationMs: Type.Number() }),
    Type.Null(),
  ]),
  at: IsoDate,
  policyVersion: Type.Integer(),
  exemptedBy: Type.String(),
  /** Whether an operator acknowledged it (then `acknowledgement` says who, when and why). */
  acknowledged: Type.Boolean(),
  acknowledgement: Type.Union([
    Type.Object({
      at: IsoDate,
      /** API key id of the credential (for a bearer token: the key it was exchanged from). */
      byKeyId: Type.String(),
      /** That key's name when it acknowledged. */
      byName: Type.String(),
      comment: Type.String(),
    }),
    Type.Null(),
  ]),
});
export type ViolationDto = Static<typeof ViolationSchema>;

/** Longest acknowledgement comment, in characters. */
export const MAX_ACK_COMMENT = 1024;

export const ViolationParamsSchema = Type.Object({ id: Type.String({ minLength: 1, maxLength: 256 }) });
export type ViolationParams = Static<typeof ViolationParamsSchema>;

export const ViolationAckBodySchema = Type.Object(
  {
    comment: Type.Optional(
      Type.String({
        maxLength: MAX_ACK_COMMENT,
        // Printable text: tabs and newlines, but no other control characters (they would garble tables and logs).
        pattern: '^[^\\u0000-\\u0008\\u000b-\\u001f\\u007f]*$',
        description: `Why it is acknowledged, e.g. a ticket; at most ${MAX_ACK_COMMENT} characters, no control characters except tab and newline`,
      }),
    ),
  },
  { additionalProperties: false, description: 'Optional: a request without a body acknowledges without a comment' },
);
export type ViolationAckBody = Static<typeof ViolationAckBodySchema>;

export const ViolationPageSchema = CursorPageSchema(ViolationSchema);
export type ViolationPageDto = Static<typeof ViolationPageSchema>;

const Word = (max: number) => Type.Optional(Type.String({ minLength: 1, maxLength: max }));

export const ViolationListQuerySchema = Type.Object(
  {
    agent: Word(256),
    /** Full id, id prefix, or name. */
    container: Word(256),
    rule: Word(256),
    severity: Type.Optional(Type.Union([Type.Literal('low'), Type.Literal('medium'), Type.Literal('high'), Type.Literal('critical')])),
    mode: Type.Optional(Type.Union([Type.Literal('monitor'), Type.Literal('enforce')])),
    source: Word(64),
    project: Word(256),
    since: Type.Optional(IsoDate),
    until: Type.Optional(IsoDate),
    denied: Type.Optional(Type.Boolean()),
    /** true: only acknowledged ones; false: only those nobody acknowledged yet. */
    acknowledged: Type.Optional(Type.Boolean()),
    limit: Type.Integer({ minimum: 1, maximum: MAX_PAGE_SIZE, default: DEFAULT_PAGE_SIZE }),
    offset: Type.Integer({ minimum: 0, maximum: 1_000_000_000, default: 0 }),
    cursor: CursorParam,
  },
  { additionalProperties: false },
);
export type ViolationListQuery = Static<typeof ViolationListQuerySchema>;

export function registerViolationRoutes(app: FastifyInstance, opts: { store: Store; now?: () => Date }): void {
  const { store } = opts;
  const now = opts.now ?? (() => new Date());
  app.get<{ Querystring: ViolationListQuery }>(
    '/violations',
    { config: { role: 'viewer' }, preValidation: strictInput({ querystring: ViolationListQuerySchema }), schema: { querystring: ViolationListQuerySchema, response: { 200: ViolationPageSchema } } },
    async (req): Promise<ViolationPageDto> => {
      const q = req.query;
      checkCursorOrOffset(q);
      let after: ViolationPosition | undefined;
      if (q.cursor !== undefined) {
        const [atMs, id] = decodeCursor('violations', q.cursor, ['integer', 'string']);
        after = { at: new Date(atMs as number), id: id as string };
      }
      const rows = await store.listViolations({
        agentId: q.agent,
        container: q.container,
        ruleId: q.rule,
        severity: q.severity,
        mode: q.mode,
        source: q.source,
        project: q.project,
        since: q.since !== undefined ? new Date(q.since) : undefined,
        until: q.until !== undefined ? new Date(q.until) : undefined,
        denied: q.denied,
        acknowledged: q.acknowledged,
        projects: visibleProjects(req), // project scoping
        limit: q.limit + 1,
        offset: q.offset,
        after,
      });
      const page = rows.slice(0, q.limit);
      const reply = cursorPageReply(page, rows.length, q, (v) => encodeCursor('violations', [v.at.getTime(), v.id]));
      return { ...reply, items: page.map(toViolationDto) };
    },
  );

  // Acknowledgements. The body is optional: an empty POST acknowledges without a comment.
  app.post<{ Params: ViolationParams; Body: ViolationAckBody | undefined }>(
    '/violations/:id/acknowledge',
    {
      config: { role: 'operator', bodyOptional: true },
      schema: { params: ViolationParamsSchema, body: ViolationAckBodySchema, response: { 200: ViolationSchema } },
      // No body at all (curl -X POST …) means no comment; fastify would otherwise refuse "body must be object".
      preValidation: async (req) => {
        req.body ??= {};
      },
    },
    async (req): Promise<ViolationDto> => {
      const v = await visibleViolation(store, req, req.params.id);
      const p = req.auth;
      // The security hooks guarantee a principal on /v1; refuse rather than record an anonymous acknowledgement.
      if (!p) throw new BulkheadError('BK_ERR_UNAUTHENTICATED', 'acknowledging needs a credential');
      const comment = req.body?.comment ?? '';
      auditTarget(req, { project: v.project, ...(comment !== '' ? { comment } : {}) });
      if (v.ack) throw alreadyAcknowledged(v);
      const ack = { at: now(), byKeyId: p.keyId, byName: p.keyName, comment };
      if (!(await store.acknowledgeViolation(v.id, ack))) {
        // Lost a race with another acknowledgement (or the row went away meanwhile).
        const again = await store.getViolation(v.id);
        if (again?.ack) throw alreadyAcknowledged(again);
        throw notFound(v.id);
      }
      req.log.info({ violationId: v.id, keyId: p.keyId }, 'violation acknowledged');
      return toViolationDto({ ...v, ack });
    },
  );

  app.post<{ Params: ViolationParams }>(
    '/violations/:id/unacknowledge',
    { config: { role: 'operator' }, schema: { params: ViolationParamsSchema, response: { 200: ViolationSchema } } },
    async (req): Promise<ViolationDto> => {
      const v = await visibleViolation(store, req, req.params.id);
      auditTarget(req, { project: v.project });
      if (!v.ack || !(await store.unacknowledgeViolation(v.id))) {
        throw new BulkheadError('BK_ERR_CONFLICT', `violation ${v.id} is not acknowledged`);
      }
      req.log.info({ violationId: v.id, keyId: req.auth?.keyId }, 'violation acknowledgement cleared');
      return toViolationDto({ ...v, ack: null });
    },
  );
}

/** The violation if it exists and the request may see its project; otherwise 404, the same answer for both. */
async function visibleViolation(store: Store, req: FastifyRequest, id: string): Promise<ViolationRecord> {
  const v = await store.getViolation(id);
  if (!v || !canSee(req, v.project)) throw notFound(id);
  return v;
}

function notFound(id: string): BulkheadError {
  return new BulkheadError('BK_ERR_NOT_FOUND', `violation ${id} not found`);
}

function alreadyAcknowledged(v: ViolationRecord): BulkheadError {
  const a = v.ack!;
  return new BulkheadError(
    'BK_ERR_CONFLICT',
    `violation ${v.id} was already acknowledged by ${a.byName} (${a.byKeyId}) at ${a.at.toISOString()}; unacknowledge it first to replace that acknowledgement`,
  );
}

export function toViolationDto(v: ViolationRecord): ViolationDto {
  return {
    id: v.id,
    agentId: v.agentId,
    containerId: v.containerId,
    containerName: v.containerName,
    imageRef: v.imageRef,
    project: v.project,
    ruleId: v.ruleId,
    severity: v.severity,
    mode: v.mode,
    source: v.source,
    message: v.message,
    evidence: parseEvidence(v.evidenceJson),
    denied: v.denied,
    action: v.action.type === '' || v.action.type === 'none' ? null : v.action,
    at: v.at.toISOString(),
    policyVersion: v.policyVersion,
    exemptedBy: v.exemptedBy,
    acknowledged: Boolean(v.ack),
    acknowledgement: v.ack ? { at: v.ack.at.toISOString(), byKeyId: v.ack.byKeyId, byName: v.ack.byName, comment: v.ack.comment } : null,
  };
}

/** Evidence as the agent reported it; anything unreadable becomes one explanatory entry. */
function parseEvidence(json: string): ViolationDto['evidence'] {
  if (json === '') return [];
  try {
    const v: unknown = JSON.parse(json);
    if (!Array.isArray(v)) throw new Error('not an array');
    return v
      .filter((e): e is Record<string, unknown> => typeof e === 'object' && e !== null)
      .map((e) => ({
        location: String(e['location'] ?? ''),
        detail: String(e['detail'] ?? ''),
        ...(typeof e['detector'] === 'string' ? { detector: e['detector'] } : {}),
      }));
  } catch {
    return [{ location: 'evidence', detail: 'the agent sent evidence that is not a JSON array' }];
  }
}
