// Owns /v1/summary: the fleet at a glance for the console's overview — agents by status
// and version, certificates expiring, containers by state, open violations by severity,
// alerts and webhook deliveries of the last 24 h, the busiest containers by CPU and
// memory, and the hosts' CIS scores and open lockdown findings (worst hosts first) — in one
// request, each number counted in SQL (src/fleet). Scoped like the lists it summarises: a
// project-scoped credential counts only its projects' containers, violations, alerts and
// those alerts' deliveries; agents and webhook endpoints are fleet-level, as GET /v1/agents
// and GET /v1/webhooks show them; host audits are fleet-wide (GET /v1/agents/:id/audit
// refuses a project-scoped credential), so such a caller gets `hosts: null`.
import type { FastifyInstance } from 'fastify';
import { Type, type Static } from '@sinclair/typebox';
import { BulkheadError } from '@bulkhead/shared';
import type { Store } from '../../store/store';
import type { FleetSummary } from '../../fleet/fleet-summary-store';
import { visibleProjects } from '../../auth/project-scope';
import { strictInput } from './strict-input';

/** The "recent" window of the summary: alerts, violations and deliveries of the last day. */
export const SUMMARY_WINDOW_MS = 24 * 3_600_000;
/** Certificates expiring within this count as expiring soon (the agent renews at two thirds of its life). */
export const SUMMARY_CERT_WARN_MS = 14 * 86_400_000;

const CountBy = Type.Array(Type.Object({ key: Type.String(), count: Type.Integer() }));
const Busy = Type.Array(
  Type.Object({
    agentId: Type.String(), id: Type.String(), name: Type.String(), imageRef: Type.String(), project: Type.String(), state: Type.String(),
    cpuPercent: Type.Number({ description: 'CPU in use, % of one core.' }),
    cpuLimitCores: Type.Number({ description: 'CPU quota in CPUs; 0 = unlimited.' }),
    memoryBytes: Type.Integer({ description: 'Memory working set.' }),
    memoryLimitBytes: Type.Integer({ description: '0 = unlimited.' }),
    takenAt: Type.String({ format: 'date-time' }),
  }),
);

const HostBrief = Type.Object({
  agentId: Type.String(),
  hostname: Type.String(),
  status: Type.String({ description: 'The agent: online or offline.' }),
  score: Type.Number({ description: 'CIS Docker Benchmark score of the latest report: passed scored checks / (passed + warned scored checks), 0–100.' }),
  cis: Type.Object({ pass: Type.Integer(), warn: Type.Integer(), info: Type.Integer(), note: Type.Integer(), checks: Type.Integer() }, { description: 'CIS results of the latest report by kind.' }),
  lockdown: Type.Object(
    { total: Type.Integer(), critical: Type.Integer(), high: Type.Integer(), medium: Type.Integer(), low: Type.Integer(), info: Type.Integer() },
    { description: 'Open socket/daemon lockdown findings of the latest report, by severity.' },
  ),
  takenAt: Type.String({ format: 'date-time', description: 'When the agent ran that audit.' }),
  receivedAt: Type.String({ format: 'date-time' }),
});

const HostsSchema = Type.Object(
  {
    audited: Type.Integer({ description: 'Agents (not revoked) with a stored host audit.' }),
    notAudited: Type.Integer({ description: 'Agents (not revoked) that never sent one (audit off, or not run yet).' }),
    withLockdownFindings: Type.Integer({ description: 'Audited hosts whose latest report has a lockdown finding.' }),
    lockdownBySeverity: CountBy,
    belowFullScore: Type.Integer({ description: 'Audited hosts whose CIS score is below 100.' }),
    worst: Type.Array(HostBrief, { description: 'The worst hosts first (most critical, then high, then any lockdown findings, then the lowest CIS score), at most `hosts` of them.' }),
  },
  { description: "Each host's latest host audit; null for a credential limited to projects (host audits are fleet-wide)." },
);

export const SummaryQuerySchema = Type.Object(
  {
    top: Type.Integer({ minimum: 1, maximum: 20, default: 5, description: 'How many busiest containers per measure.' }),
    hosts: Type.Integer({ minimum: 0, maximum: 50, default: 10, description: 'How many of the worst audited hosts to list (0 = the counts only).' }),
  },
  { additionalProperties: false },
);
export type SummaryQuery = Static<typeof SummaryQuerySchema>;

export const SummarySchema = Type.Object({
  at: Type.String({ format: 'date-time' }),
  windowHours: Type.Integer({ description: 'The window of every "recent" count.' }),
  agents: Type.Object({
    total: Type.Integer(), online: Type.Integer(), offline: Type.Integer(), revoked: Type.Integer(),
    certExpiringSoon: Type.Integer({ description: 'Not revoked, certificate expiring within 14 days (or expired).' }),
    versions: Type.Array(Type.Object({ key: Type.String(), count: Type.Integer() }), { description: 'Agent versions of agents not revoked.' }),
  }),
  containers: Type.Object({ total: Type.Integer({ description: 'Containers not removed.' }), byState: CountBy }),
  violations: Type.Object({
    open: Type.Integer({ description: 'Neither acknowledged nor exempted.' }),
    openBySeverity: CountBy,
    recent: Type.Integer({ description: 'Reported within the window.' }),
  }),
  alerts: Type.Object({
    groups: Type.Integer({ description: 'Alerts (grouped repeats once) seen within the window.' }),
    occurrences: Type.Integer({ description: 'Their counts summed.' }),
    bySeverity: CountBy,
  }),
  webhooks: Type.Object({
    endpoints: Type.Integer(), enabled: Type.Integer(),
    pending: Type.Integer({ description: 'Deliveries waiting for a (re)try.' }),
    dead: Type.Integer({ description: 'Dead-lettered deliveries (redeliver them with POST /v1/deliveries/{id}/redeliver).' }),
    deliveredRecent: Type.Integer(),
    failedAttemptsRecent: Type.Integer(),
  }),
  busiest: Type.Object({ cpu: Busy, memory: Busy }),
  hosts: Type.Union([HostsSchema, Type.Null()]),
});
export type SummaryDto = Static<typeof SummarySchema>;

export function registerSummaryRoutes(app: FastifyInstance, opts: { store: Store; now?: () => Date }): void {
  const now = opts.now ?? (() => new Date());
  app.get<{ Querystring: SummaryQuery }>(
    '/summary',
    { config: { role: 'viewer' }, preValidation: strictInput({ querystring: SummaryQuerySchema }), schema: { querystring: SummaryQuerySchema, response: { 200: SummarySchema } } },
    async (req): Promise<SummaryDto> => {
      const fs = opts.store.fleetSummary;
      if (!fs) throw new BulkheadError('BK_ERR_NOT_READY', 'the fleet summary needs a SQL store');
      const at = now();
      const projects = visibleProjects(req);
      const s = await fs.summary({
        now: at, projects, top: req.query.top, certWarnMs: SUMMARY_CERT_WARN_MS, windowMs: SUMMARY_WINDOW_MS,
        ...(projects === undefined ? { hostsTop: req.query.hosts } : {}),
      });
      return toSummaryDto(s, at);
    },
  );
}

function toSummaryDto(s: FleetSummary, at: Date): SummaryDto {
  const busy = (l: FleetSummary['busiest']['cpu']) => l.map((c) => ({ ...c, takenAt: c.takenAt.toISOString() }));
  return {
    at: at.toISOString(),
    windowHours: SUMMARY_WINDOW_MS / 3_600_000,
    agents: s.agents,
    containers: s.containers,
    violations: s.violations,
    alerts: s.alerts,
    webhooks: s.webhooks,
    busiest: { cpu: busy(s.busiest.cpu), memory: busy(s.busiest.memory) },
    hosts: s.hosts ? { ...s.hosts, worst: s.hosts.worst.map((h) => ({ ...h, takenAt: h.takenAt.toISOString(), receivedAt: h.receivedAt.toISOString() })) } : null,
  };
}
