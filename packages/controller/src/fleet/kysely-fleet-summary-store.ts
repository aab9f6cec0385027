// Owns the SQL of the fleet summary (fleet-summary-store.ts), portable across SQLite and
// PostgreSQL like KyselyStore: integer-ms times, counts converted from PostgreSQL's strings.
// Project scope is applied in every statement that reads per-project rows (containers,
// violations, alerts, and deliveries through their alert); agents and webhook endpoints
// are fleet-level, as GET /v1/agents and GET /v1/webhooks show them to every role.
import { PostgresAdapter, sql, type SqlBool } from 'kysely';
import type { Db } from '../store/schema';
import type { HostAuditSummary } from '../host-audit/host-audit-store';
import type { BusyContainer, CountBy, FleetSummary, FleetSummaryQuery, FleetSummaryStore, HostAuditBrief, HostsSummary } from './fleet-summary-store';

const LOCKDOWN_SEVERITIES = ['critical', 'high', 'medium', 'low', 'info'] as const;

interface BusyRow {
  agent_id: string; id: string; name: string; image_ref: string; project: string; state: string;
  cpu_percent: unknown; cpu_limit_cores: unknown; memory_bytes: unknown; memory_limit_bytes: unknown; taken_at: unknown;
}

export class KyselyFleetSummaryStore implements FleetSummaryStore {
  private readonly postgres: boolean;

  constructor(private readonly db: Db) {
    this.postgres = db.getExecutor().adapter instanceof PostgresAdapter;
  }

  async summary(q: FleetSummaryQuery): Promise<FleetSummary> {
    const now = q.now.getTime();
    const since = now - q.windowMs;
    const scoped = q.projects;
    const inScope = (col: string) =>
      scoped === undefined ? sql<SqlBool>`1 = 1` : scoped.length === 0 ? sql<SqlBool>`1 = 0` : sql<SqlBool>`${sql.ref(col)} in (${sql.join(scoped.map((p) => sql`${p}`))})`;

    // One read transaction: the numbers on the screen come from one moment (PostgreSQL's
    // default READ COMMITTED gives each statement its own snapshot; close enough for counts).
    return this.db.transaction().execute(async (trx) => {
      const agentRows = await trx
        .selectFrom('agents')
        .select(['status', 'agent_version'])
        .select((eb) => eb.fn.countAll().as('n'))
        .select(sql<number>`sum(case when ${sql.ref('status')} <> 'revoked' and ${sql.ref('cert_not_after')} < ${now + q.certWarnMs} then 1 else 0 end)`.as('expiring'))
        .groupBy(['status', 'agent_version'])
        .execute();
      const agents = { total: 0, online: 0, offline: 0, revoked: 0, certExpiringSoon: 0, versions: [] as CountBy[] };
      const versions = new Map<string, number>();
      for (const r of agentRows) {
        const n = num(r.n);
        agents.total += n;
        if (r.status === 'online' || r.status === 'offline' || r.status === 'revoked') agents[r.status] += n;
        agents.certExpiringSoon += num(r.expiring);
        if (r.status !== 'revoked') versions.set(r.agent_version, (versions.get(r.agent_version) ?? 0) + n);
      }
      agents.versions = sortCounts(versions);

      // The live containers by state from container_counts (0024_summary_counts: kept by
      // triggers per agent, project and state), not a count of every container row; a state
      // whose rows all fell to 0 is left out, as the count of no rows was.
      const stateRows = await trx
        .selectFrom('container_counts')
        .select('state')
        .select((eb) => eb.fn.sum<number | string>('n').as('n'))
        .where(inScope('container_counts.project'))
        .groupBy('state')
        .having((eb) => eb.fn.sum('n'), '>', 0)
        .execute();
      const byState = sortCounts(new Map(stateRows.map((r) => [r.state, num(r.n)])));

      const sevRows = await trx
        .selectFrom('violations')
        .select('severity')
        .select((eb) => eb.fn.countAll().as('n'))
        // Written as the partial index violations_open's own predicate (0024_summary_counts), a
        // literal '' rather than a parameter: SQLite uses a partial index only for a WHERE
        // that implies its predicate as written.
        .where('ack_at', 'is', null)
        .where(sql<SqlBool>`${sql.ref('exempted_by')} = ''`)
        .where(inScope('violations.project'))
        .groupBy('severity')
        .execute();
      const recentViolations = await trx
        .selectFrom('violations')
        .select((eb) => eb.fn.countAll().as('n'))
        .where('at', '>=', since)
        .where(inScope('violations.project'))
        .executeTakeFirst();

      const alertRows = await trx
        .selectFrom('alerts')
        .select('severity')
        .select((eb) => eb.fn.countAll().as('n'))
        .select((eb) => eb.fn.sum<number>('count').as('occurrences'))
        .where('last_seen_at', '>=', since)
        .where(inScope('alerts.project'))
        .groupBy('severity')
        .execute();

      const endpoints = await trx
        .selectFrom('webhook_endpoints')
        .select((eb) => eb.fn.countAll().as('n'))
        .select(sql<number>`sum(case when ${sql.ref('enabled')} = 1 then 1 else 0 end)`.as('enabled'))
        .executeTakeFirst();
      // Deliveries are per alert: a scoped caller counts only its projects' alerts' deliveries.
      const deliveryScope =
        scoped === undefined
          ? sql<SqlBool>`1 = 1`
          : sql<SqlBool>`exists (select 1 from alerts a where a.id = ${sql.ref('webhook_deliveries.alert_id')} and ${inScope('a.project')})`;
      const open = await trx
        .selectFrom('webhook_deliveries')
        .select('status')
        .select((eb) => eb.fn.countAll().as('n'))
        .where('status', 'in', ['pending', 'dead'])
        .where(deliveryScope)
        .groupBy('status')
        .execute();
      const delivered = await trx
        .selectFrom('webhook_deliveries')
        .select((eb) => eb.fn.countAll().as('n'))
        .where('status', '=', 'delivered')
        .where('delivered_at', '>=', since)
        .where(deliveryScope)
        .executeTakeFirst();
      const failed = await trx
        .selectFrom('webhook_delivery_attempts')
        .innerJoin('webhook_deliveries', 'webhook_deliveries.id', 'webhook_delivery_attempts.delivery_id')
        .select((eb) => eb.fn.countAll().as('n'))
        .where('webhook_delivery_attempts.at', '>=', since)
        .where('webhook_delivery_attempts.outcome', '<>', 'delivered')
        .where(deliveryScope)
        .executeTakeFirst();

      // The `top` busiest live containers: value descending, then agent and id ascending.
      // container_usage_cpu / _memory (0023) are in value order, but no index gives that mixed
      // direction, and joining containers and sorting read every usage row (1-1.5 s a
      // statement on SQLite at 200,000 containers; PostgreSQL, misestimating the two-column
      // join at 0.05 % of its rows, hashed both tables and sorted, ~1 s). So: the `top`-th
      // value is found by walking the value index from the top (stopping after `top` live,
      // in-scope containers), then the rows at or above it are read and sorted — ties
      // included, so the order is exactly the one the single statement gave. On PostgreSQL
      // the container is looked up per usage row in a subquery it cannot flatten (`offset 0`),
      // which keeps the walk a walk.
      const busiest = async (by: 'cpu_percent' | 'memory_bytes'): Promise<BusyContainer[]> => {
        const v = sql.ref(`u.${by}`);
        const live = sql<SqlBool>`${sql.ref('c.agent_id')} = ${sql.ref('u.agent_id')} and ${sql.ref('c.id')} = ${sql.ref('u.container_id')} and ${sql.ref('c.removed')} = 0 and ${inScope('c.project')}`;
        const cols = sql`${sql.ref('c.agent_id')}, ${sql.ref('c.id')}, ${sql.ref('c.name')}, ${sql.ref('c.image_ref')}, ${sql.ref('c.project')}, ${sql.ref('c.state')}`;
        const usageCols = sql`${sql.ref('u.cpu_percent')}, ${sql.ref('u.cpu_limit_cores')}, ${sql.ref('u.memory_bytes')}, ${sql.ref('u.memory_limit_bytes')}, ${sql.ref('u.taken_at')}`;
        const joined = this.postgres
          ? sql`${sql.table('container_usage')} as u cross join lateral (select ${cols} from ${sql.table('containers')} as c where ${live} offset 0) as c`
          : sql`${sql.table('container_usage')} as u cross join ${sql.table('containers')} as c`;
        const cond = this.postgres ? sql<SqlBool>`1 = 1` : live;
        const rows = (
          await sql<BusyRow>`with top_values as (select ${v} as v from ${joined} where ${cond} order by ${v} desc limit ${q.top})
            select ${cols}, ${usageCols} from ${joined} where ${cond} and ${v} >= (select min(v) from top_values)
            order by ${v} desc, ${sql.ref('c.agent_id')}, ${sql.ref('c.id')} limit ${q.top}`.execute(trx)
        ).rows;
        return rows.map((r) => ({
          agentId: r.agent_id, id: r.id, name: r.name, imageRef: r.image_ref, project: r.project, state: r.state,
          cpuPercent: Number(r.cpu_percent), cpuLimitCores: Number(r.cpu_limit_cores), memoryBytes: num(r.memory_bytes), memoryLimitBytes: num(r.memory_limit_bytes),
          takenAt: new Date(num(r.taken_at)),
        }));
      };

      // Hosts: each agent's latest report (the (agent_id, taken_at) key makes max() an index
      // read), its summary document only (~0.5 KB: the CIS and lockdown counts computed when the
      // report arrived), never the reports themselves. One row per audited host.
      let hosts: HostsSummary | undefined;
      if (q.hostsTop !== undefined) {
        const rows = await trx
          .selectFrom('host_audits as h')
          .innerJoin('agents as a', 'a.id', 'h.agent_id')
          .select(['h.agent_id', 'h.taken_at', 'h.received_at', 'h.score', 'h.summary_json', 'a.hostname', 'a.status'])
          .where('a.status', '<>', 'revoked')
          .where((eb) => eb('h.taken_at', '=', eb.selectFrom('host_audits as l').select((e) => e.fn.max('l.taken_at').as('m')).whereRef('l.agent_id', '=', 'h.agent_id')))
          .execute();
        hosts = hostsSummary(rows, agents.total - agents.revoked, q.hostsTop);
      }

      const alertsBy = new Map(alertRows.map((r) => [r.severity, num(r.n)]));
      return {
        agents,
        containers: { total: byState.reduce((s, c) => s + c.count, 0), byState },
        violations: {
          open: sevRows.reduce((s, r) => s + num(r.n), 0),
          openBySeverity: sortCounts(new Map(sevRows.map((r) => [r.severity, num(r.n)]))),
          recent: num(recentViolations?.n ?? 0),
        },
        alerts: {
          groups: alertRows.reduce((s, r) => s + num(r.n), 0),
          occurrences: alertRows.reduce((s, r) => s + num(r.occurrences ?? 0), 0),
          bySeverity: sortCounts(alertsBy),
        },
        webhooks: {
          endpoints: num(endpoints?.n ?? 0),
          enabled: num(endpoints?.enabled ?? 0),
          pending: num(open.find((r) => r.status === 'pending')?.n ?? 0),
          dead: num(open.find((r) => r.status === 'dead')?.n ?? 0),
          deliveredRecent: num(delivered?.n ?? 0),
          failedAttemptsRecent: num(failed?.n ?? 0),
        },
        busiest: { cpu: await busiest('cpu_percent'), memory: await busiest('memory_bytes') },
        ...(hosts ? { hosts } : {}),
      };
    });
  }
}

interface LatestAuditRow { agent_id: string; taken_at: unknown; received_at: unknown; score: number; summary_json: string; hostname: string; status: string }

/** Counts over every audited host, and the `top` worst of them (see HostsSummary.worst). */
function hostsSummary(rows: LatestAuditRow[], liveAgents: number, top: number): HostsSummary {
  const bySeverity = new Map<string, number>();
  const briefs: HostAuditBrief[] = rows.map((r) => {
    // Written by the controller itself (host-audit-recorder.ts summarize()); reports stored
    // before a field existed read as 0.
    const s = JSON.parse(r.summary_json) as Partial<HostAuditSummary>;
    const c = s.cis ?? ({} as Partial<HostAuditSummary['cis']>);
    const l = s.lockdown ?? ({} as Partial<HostAuditSummary['lockdown']>);
    const lockdown = { total: num(l.total), critical: num(l.critical), high: num(l.high), medium: num(l.medium), low: num(l.low), info: num(l.info) };
    for (const k of LOCKDOWN_SEVERITIES) if (lockdown[k] > 0) bySeverity.set(k, (bySeverity.get(k) ?? 0) + lockdown[k]);
    return {
      agentId: r.agent_id, hostname: r.hostname, status: r.status,
      score: Number(r.score),
      cis: { pass: num(c.pass), warn: num(c.warn), info: num(c.info), note: num(c.note), checks: num(c.checks) },
      lockdown,
      takenAt: new Date(num(r.taken_at)), receivedAt: new Date(num(r.received_at)),
    };
  });
  briefs.sort(
    (a, b) =>
      b.lockdown.critical - a.lockdown.critical || b.lockdown.high - a.lockdown.high || b.lockdown.total - a.lockdown.total ||
      a.score - b.score || (a.hostname < b.hostname ? -1 : a.hostname > b.hostname ? 1 : 0) || (a.agentId < b.agentId ? -1 : 1),
  );
  return {
    audited: briefs.length,
    notAudited: Math.max(0, liveAgents - briefs.length),
    withLockdownFindings: briefs.filter((b) => b.lockdown.total > 0).length,
    lockdownBySeverity: sortCounts(bySeverity),
    belowFullScore: briefs.filter((b) => b.score < 100).length,
    worst: briefs.slice(0, top),
  };
}

/** Most first, then by key: a stable order for the screen and the tests. */
function sortCounts(m: Map<string, number>): CountBy[] {
  return [...m].map(([key, count]) => ({ key, count })).sort((a, b) => b.count - a.count || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
}

/** PostgreSQL hands bigint, count(*) and sum() back as strings; SQLite as numbers; sum of nothing is null. */
function num(v: unknown): number {
  if (v === null || v === undefined) return 0;
  return typeof v === 'number' ? v : Number(v);
}
