// Owns /v1/audit-log: reading the audit trail (newest first, filtered and
// paged) and checking its hash chain. Admin only, and only with a
// credential not limited to projects: the trail spans every project.
import type { FastifyInstance } from 'fastify';
import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { BulkheadError } from '@bulkhead/shared';
import type { AuditLog } from '../../audit/audit-log';
import type { AuditRecord } from '../../audit/audit-store';
import { DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, PageSchema, pageReply } from '../dto';
import { parseSince } from './alerts';
import { strictInput } from './strict-input';

const IsoDate = Type.String({ format: 'date-time' });
const Nullable = <T extends TSchema>(t: T) => Type.Union([t, Type.Null()]);

export const AuditEntrySchema = Type.Object({
  seq: Type.Integer(),
  at: IsoDate,
  actorKind: Type.Union([Type.Literal('key'), Type.Literal('token'), Type.Literal('anonymous'), Type.Literal('agent')]),
  actorId: Type.String(),
  actorName: Type.String(),
  method: Type.String(),
  route: Type.String(),
  path: Type.String(),
  action: Type.String(),
  target: Type.Record(Type.String(), Type.String()),
  clientIp: Type.String(),
  status: Type.Integer(),
  code: Type.String(),
  prevHash: Type.String(),
  hash: Type.String(),
});
export type AuditEntryDto = Static<typeof AuditEntrySchema>;

export const AuditPageSchema = PageSchema(AuditEntrySchema);
export type AuditPageDto = Static<typeof AuditPageSchema>;

export const AuditListQuerySchema = Type.Object(
  {
    actor: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
    action: Type.Optional(Type.String({ minLength: 1, maxLength: 128 })),
    method: Type.Optional(Type.Union(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'].map((m) => Type.Literal(m)))),
    status: Type.Optional(Type.Integer({ minimum: 100, maximum: 599 })),
    /** ISO 8601 time or a duration back from now ("15m", "24h", "7d"). */
    since: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
    until: Type.Optional(IsoDate),
    limit: Type.Integer({ minimum: 1, maximum: MAX_PAGE_SIZE, default: DEFAULT_PAGE_SIZE }),
    offset: Type.Integer({ minimum: 0, maximum: 1_000_000_000, default: 0 }),
  },
  { additionalProperties: false },
);
export type AuditListQuery = Static<typeof AuditListQuerySchema>;

export const AuditVerifySchema = Type.Object({
  ok: Type.Boolean(),
  checked: Type.Integer(),
  firstBadSeq: Nullable(Type.Integer()),
  reason: Nullable(Type.String()),
  head: Nullable(Type.Object({ seq: Type.Integer(), hash: Type.String() })),
});
export type AuditVerifyDto = Static<typeof AuditVerifySchema>;

export function registerAuditRoutes(app: FastifyInstance, opts: { audit: AuditLog | undefined; now: () => Date }): void {
  const auditOf = (): AuditLog => {
    if (!opts.audit) throw new BulkheadError('BK_ERR_NOT_READY', 'this controller keeps no audit trail (its store has no audit table)');
    return opts.audit;
  };

  app.get<{ Querystring: AuditListQuery }>(
    '/audit-log',
    { config: { role: 'admin', fleetWide: true }, preValidation: strictInput({ querystring: AuditListQuerySchema }), schema: { querystring: AuditListQuerySchema, response: { 200: AuditPageSchema } } },
    async (req): Promise<AuditPageDto> => {
      const audit = auditOf();
      const q = req.query;
      // Entries of calls answered just before this one are still in the writer's queue.
      await audit.flush();
      const rows = await audit.store.list({
        actorId: q.actor,
        action: q.action,
        method: q.method,
        status: q.status,
        since: q.since !== undefined ? parseSince(q.since, opts.now()) : undefined,
        until: q.until !== undefined ? new Date(q.until) : undefined,
        limit: q.limit + 1,
        offset: q.offset,
      });
      return pageReply(rows.slice(0, q.limit).map(toAuditEntryDto), rows.length, q);
    },
  );

  app.get('/audit-log/verify', { config: { role: 'admin', fleetWide: true }, schema: { response: { 200: AuditVerifySchema } } }, async (): Promise<AuditVerifyDto> => {
    return auditOf().verify();
  });
}

export function toAuditEntryDto(r: AuditRecord): AuditEntryDto {
  let target: Record<string, string> = {};
  try {
    const v: unknown = JSON.parse(r.targetJson);
    if (typeof v === 'object' && v !== null && !Array.isArray(v)) target = Object.fromEntries(Object.entries(v).map(([k, x]) => [k, String(x)]));
  } catch {
    target = { unreadable: r.targetJson.slice(0, 256) };
  }
  return {
    seq: r.seq,
    at: new Date(r.at).toISOString(),
    actorKind: (['key', 'token', 'anonymous', 'agent'].includes(r.actorKind) ? r.actorKind : 'anonymous') as AuditEntryDto['actorKind'],
    actorId: r.actorId,
    actorName: r.actorName,
    method: r.method,
    route: r.route,
    path: r.path,
    action: r.action,
    target,
    clientIp: r.clientIp,
    status: r.status,
    code: r.code,
    prevHash: r.prevHash,
    hash: r.hash,
  };
}
