// Owns GET /v1/agents/:id/audit: the agent's latest host audit —
// socket/daemon lockdown findings, the CIS Docker Benchmark 1.6.0 report,
// the fixes the agent applied, image hygiene — with a short history.
// `?format=cis` answers the CIS report alone, in docker-bench-security's
// log.json shape, for tools that already read that; `?format=prune` the
// image prune records of every stored report (what the agent's
// --image-prune policy removed, and when).
//
// Fleet-wide: a host's report names every container on it (CIS section 5
// items, socket mounts), whatever project they belong to, so a credential
// limited to projects may not read it.
import type { FastifyInstance } from 'fastify';
import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { BulkheadError } from '@bulkhead/shared';
import type { Store } from '../../store/store';
import type { HostAuditHeader, HostAuditPruneEntry, HostAuditRecord } from '../../host-audit/host-audit-store';
import { AgentParamsSchema, type AgentParams } from '../dto';
import { strictInput } from './strict-input';

const IsoDate = Type.String({ format: 'date-time' });
const Nullable = <T extends TSchema>(t: T) => Type.Union([t, Type.Null()]);
/** Passed through as the agent reported it. */
const Loose = (description: string) => Type.Object({}, { additionalProperties: true, description });

export const CisResultSchema = Type.Object(
  {
    id: Type.String(),
    desc: Type.String(),
    result: Type.Union([Type.Literal('PASS'), Type.Literal('WARN'), Type.Literal('INFO'), Type.Literal('NOTE')]),
    details: Type.Optional(Type.String()),
    items: Type.Optional(Type.Array(Type.String())),
    remediation: Type.Optional(Type.String()),
    'remediation-impact': Type.Optional(Type.String()),
    scored: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: true },
);

/** docker-bench-security 1.6.0's log.json, plus benchmark, generator and summary (docs/audit.md). */
export const CisReportSchema = Type.Object(
  {
    dockerbenchsecurity: Type.String(),
    start: Type.Integer(),
    tests: Type.Array(Type.Object({ id: Type.String(), desc: Type.String(), results: Type.Array(CisResultSchema) }, { additionalProperties: true })),
    checks: Type.Integer(),
    score: Type.Integer(),
    end: Type.Integer(),
    benchmark: Type.Optional(Type.String()),
    generator: Type.Optional(Type.String()),
    summary: Type.Optional(Type.Object({ pass: Type.Integer(), warn: Type.Integer(), info: Type.Integer(), note: Type.Integer(), percent: Type.Number() })),
  },
  { additionalProperties: true, title: 'CisReport' },
);
export type CisReportDto = Static<typeof CisReportSchema>;

const Severity = Type.Union([Type.Literal('info'), Type.Literal('low'), Type.Literal('medium'), Type.Literal('high'), Type.Literal('critical')]);

export const LockdownFindingSchema = Type.Object(
  {
    id: Type.String(),
    severity: Severity,
    title: Type.String(),
    detail: Type.String(),
    remediation: Type.Optional(Type.String()),
    fixable: Type.Optional(Type.Boolean()),
    fix: Type.Optional(Type.String()),
    subject: Type.Optional(Type.String()),
    evidence: Type.Optional(Loose('structured evidence: modes, uids, addresses, container names')),
  },
  { additionalProperties: true },
);
export type LockdownFindingDto = Static<typeof LockdownFindingSchema>;

const Ownership = Type.Object({ uid: Type.Integer(), gid: Type.Integer(), mode: Type.String(), owner: Type.String(), group: Type.String() });

export const FixRecordSchema = Type.Object(
  {
    fix: Type.String(),
    path: Type.String(),
    at: Type.String(),
    changed: Type.Boolean(),
    dryRun: Type.Optional(Type.Boolean()),
    before: Type.Optional(Ownership),
    after: Type.Optional(Ownership),
    message: Type.String(),
    error: Type.Optional(Type.String()),
    persist: Type.Optional(Type.String()),
  },
  { additionalProperties: true },
);
export type FixRecordDto = Static<typeof FixRecordSchema>;

const Counts = Type.Object({
  total: Type.Integer(), critical: Type.Integer(), high: Type.Integer(), medium: Type.Integer(), low: Type.Integer(), info: Type.Integer(),
});

export const HostAuditSummarySchema = Type.Object({
  score: Type.Number(),
  cis: Type.Object({ checks: Type.Integer(), score: Type.Integer(), pass: Type.Integer(), warn: Type.Integer(), info: Type.Integer(), note: Type.Integer(), percent: Type.Number() }),
  lockdown: Counts,
  fixes: Type.Object({ applied: Type.Integer(), failed: Type.Integer() }),
  hygiene: Nullable(Type.Object({ images: Type.Integer(), stale: Type.Integer(), dangling: Type.Integer(), staleBytes: Type.Integer() })),
  /** Absent in reports stored before the prune record existed. */
  prune: Type.Optional(Nullable(Type.Object({
    dryRun: Type.Boolean(), removed: Type.Integer(), deleted: Type.Integer(), failed: Type.Integer(), reclaimedBytes: Type.Integer(), error: Type.Optional(Type.String()),
  }))),
  newFindings: Type.Array(Type.String()),
  resolvedFindings: Type.Array(Type.String()),
});

export const HostAuditHistoryEntrySchema = Type.Object({ takenAt: IsoDate, receivedAt: IsoDate, summary: HostAuditSummarySchema });

export const HostAuditSchema = Type.Object(
  {
    agentId: Type.String(),
    hostname: Type.String(),
    takenAt: IsoDate,
    receivedAt: IsoDate,
    /** CIS percent of scored checks passing. */
    score: Type.Number(),
    summary: HostAuditSummarySchema,
    lockdown: Type.Array(LockdownFindingSchema),
    fixes: Type.Array(FixRecordSchema),
    cis: CisReportSchema,
    hygiene: Nullable(Loose('image hygiene summary: counts, staleBytes, images (stale and dangling, at most 100), truncated')),
    prune: Nullable(Loose('image prune record: at, dryRun, olderThanDays, scope, counts, reclaimedBytes, wouldReclaimBytes, images (at most 100), truncated; or { error }')),
    /** Newest first, this report included. */
    history: Type.Array(HostAuditHistoryEntrySchema),
  },
  { title: 'HostAudit' },
);
export type HostAuditDto = Static<typeof HostAuditSchema>;

/** `?format=prune`: the prune records of the agent's stored reports, newest first. */
export const HostAuditPruneListSchema = Type.Object(
  {
    agentId: Type.String(),
    hostname: Type.String(),
    items: Type.Array(Type.Object({ takenAt: IsoDate, receivedAt: IsoDate, prune: Loose('the image prune record, as in HostAudit.prune') })),
  },
  { title: 'HostAuditPruneList' },
);
export type HostAuditPruneListDto = Static<typeof HostAuditPruneListSchema>;

export const HostAuditQuerySchema = Type.Object(
  {
    /** report (default): summary, lockdown, fixes, cis, hygiene, prune, history; cis: the CIS report alone (log.json shape); prune: every stored prune record. */
    format: Type.Union([Type.Literal('report'), Type.Literal('cis'), Type.Literal('prune')], { default: 'report' }),
  },
  { additionalProperties: false },
);
export type HostAuditQuery = Static<typeof HostAuditQuerySchema>;

export function toHostAuditDto(r: HostAuditRecord, hostname: string, history: HostAuditHeader[]): HostAuditDto {
  return {
    agentId: r.agentId,
    hostname,
    takenAt: r.takenAt.toISOString(),
    receivedAt: r.receivedAt.toISOString(),
    score: r.summary.score,
    summary: r.summary,
    lockdown: JSON.parse(r.lockdownJson) as LockdownFindingDto[],
    fixes: JSON.parse(r.fixesJson) as FixRecordDto[],
    cis: JSON.parse(r.cisJson) as CisReportDto,
    hygiene: r.hygieneJson === null ? null : (JSON.parse(r.hygieneJson) as HostAuditDto['hygiene']),
    prune: r.pruneJson ? (JSON.parse(r.pruneJson) as HostAuditDto['prune']) : null,
    history: history.map((h) => ({ takenAt: h.takenAt.toISOString(), receivedAt: h.receivedAt.toISOString(), summary: h.summary })),
  };
}

export function toHostAuditPruneListDto(agentId: string, hostname: string, entries: HostAuditPruneEntry[]): HostAuditPruneListDto {
  return {
    agentId,
    hostname,
    items: entries.map((e) => ({ takenAt: e.takenAt.toISOString(), receivedAt: e.receivedAt.toISOString(), prune: JSON.parse(e.pruneJson) as Record<string, unknown> })),
  };
}

export function registerAgentAuditRoutes(app: FastifyInstance, opts: { store: Store }): void {
  const { store } = opts;
  app.get<{ Params: AgentParams; Querystring: HostAuditQuery }>(
    '/agents/:id/audit',
    {
      config: { role: 'viewer', fleetWide: true },
      preValidation: strictInput({ querystring: HostAuditQuerySchema }),
      schema: {
        summary: "The agent's latest host audit: lockdown findings, CIS Docker Benchmark report, fixes applied, image hygiene, image prune record",
        params: AgentParamsSchema,
        querystring: HostAuditQuerySchema,
        response: { 200: Type.Union([HostAuditSchema, CisReportSchema, HostAuditPruneListSchema]) },
      },
    },
    async (req): Promise<HostAuditDto | CisReportDto | HostAuditPruneListDto> => {
      const id = req.params.id;
      const agent = await store.getAgent(id);
      if (!agent) throw new BulkheadError('BK_ERR_NOT_FOUND', `agent "${id}" not found`);
      const audits = store.hostAudits;
      if (!audits) throw new BulkheadError('BK_ERR_NOT_READY', 'host audit reports are not available on this store');
      // Every stored record, even when the newest report carried none (policy switched off since).
      if (req.query.format === 'prune') return toHostAuditPruneListDto(id, agent.hostname, await audits.listHostAuditPrunes(id));
      const latest = await audits.latestHostAudit(id);
      if (!latest) throw new BulkheadError('BK_ERR_NOT_FOUND', `agent "${id}" has not reported a host audit yet (it audits at start and every --audit-interval)`);
      if (req.query.format === 'cis') return JSON.parse(latest.cisJson) as CisReportDto;
      return toHostAuditDto(latest, agent.hostname, await audits.listHostAudits(id));
    },
  );
}
