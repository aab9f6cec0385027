// Owns /v1/violations: every finding the agents reported and what was done
// about it (denied at the Docker API, killed, paused, …), filtered and
// paged, newest first.
import type { FastifyInstance } from 'fastify';
import { Type, type Static } from '@sinclair/typebox';
import type { Store, ViolationRecord } from '../../store/store';
import { DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE } from '../dto';
import { visibleProjects } from '../../auth/project-scope';

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
});
export type ViolationDto = Static<typeof ViolationSchema>;

export const ViolationPageSchema = Type.Object({
  items: Type.Array(ViolationSchema),
  limit: Type.Integer(),
  offset: Type.Integer(),
  nextOffset: Type.Union([Type.Integer(), Type.Null()]),
});
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
    limit: Type.Integer({ minimum: 1, maximum: MAX_PAGE_SIZE, default: DEFAULT_PAGE_SIZE }),
    offset: Type.Integer({ minimum: 0, maximum: 1_000_000_000, default: 0 }),
  },
  { additionalProperties: false },
);
export type ViolationListQuery = Static<typeof ViolationListQuerySchema>;

export function registerViolationRoutes(app: FastifyInstance, opts: { store: Store }): void {
  const { store } = opts;
  app.get<{ Querystring: ViolationListQuery }>(
    '/violations',
    { config: { role: 'viewer' }, schema: { querystring: ViolationListQuerySchema, response: { 200: ViolationPageSchema } } },
    async (req): Promise<ViolationPageDto> => {
      const q = req.query;
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
        projects: visibleProjects(req), // project scoping (issue 5)
        limit: q.limit + 1,
        offset: q.offset,
      });
      const more = rows.length > q.limit;
      return { items: rows.slice(0, q.limit).map(toViolationDto), limit: q.limit, offset: q.offset, nextOffset: more ? q.offset + q.limit : null };
    },
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
