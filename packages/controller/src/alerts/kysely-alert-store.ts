// Owns the SQL behind AlertStore, once for every kysely dialect (same rules
// as kysely-store.ts: integer-ms times, 0/1 booleans, JSON as text, no
// RETURNING). The outbox is claimed with a lease: a worker stamps a random
// claim token and an expiry on due rows in one transaction, and may record a
// result only while its token is still on the row.
import { randomBytes } from 'node:crypto';
import { PostgresAdapter, sql, type Selectable, type SqlBool } from 'kysely';
import { BulkheadError } from '@bulkhead/shared';
import type {
  AlertPlanContext, AlertPlanner, AlertQuery, AlertStore, AttemptResult, ClaimedDelivery, DeliveryAttemptRecord, DeliveryQuery,
  DeliveryRecord, DeliveryStatus, EndpointStats, WebhookEndpointRecord, WebhookFormat, AttemptOutcome,
} from './alert-store';
import { severityRank, type AlertRecord, type AlertSeverity, type AlertType } from './alert-types';
import type {
  AlertsTable, Db, WebhookDeliveriesTable, WebhookDeliveryAttemptsTable, WebhookEndpointsTable,
} from '../store/schema';

/** Rows per multi-row INSERT / IN list: far below SQLite's and pg's parameter limits. */
const BATCH = 200;

interface GroupCandidate {
  id: string;
  count: number;
  timeMs: number;
}

export class KyselyAlertStore implements AlertStore {
  /** PostgreSQL can skip rows another controller has locked; SQLite has one writer anyway. */
  private readonly skipLocked: boolean;

  constructor(private readonly db: Db) {
    this.skipLocked = db.getExecutor().adapter instanceof PostgresAdapter;
  }

  // ---- alerts + outbox ------------------------------------------------------

  async writeAlerts(plan: AlertPlanner): Promise<void> {
    await this.db.transaction().execute(async (trx) => {
      // A batch of raises is planned against this in-transaction view and
      // written with a few multi-row statements at the end: new alerts and
      // their deliveries are buffered, repeats folded in memory, open groups
      // fetched in one query. Everything still commits (or not) together.
      let endpoints: Promise<WebhookEndpointRecord[]> | undefined;
      const fetched = new Set<string>();
      const groups = new Map<string, GroupCandidate[]>();
      const buffered = new Map<string, AlertRecord>();
      const deliveries: DeliveryRecord[] = [];
      const alertedViolations: string[] = [];
      const folds = new Map<string, { n: number; lastMs: number }>();
      /** latestAgentStateAlert of the agents prefetched (undefined: none stored). */
      const agentStates = new Map<string, AlertType | undefined>();
      const addCandidate = (key: string, c: GroupCandidate): void => {
        const list = groups.get(key);
        if (list) list.push(c);
        else groups.set(key, [c]);
      };
      const fetchGroups = async (keys: string[], sinceMs: number): Promise<void> => {
        const todo = [...new Set(keys)].filter((k) => !fetched.has(k));
        for (let i = 0; i < todo.length; i += BATCH) {
          const chunk = todo.slice(i, i + BATCH);
          const rows = await trx.selectFrom('alerts').select(['id', 'count', 'time_at', 'group_key']).where('group_key', 'in', chunk).where('time_at', '>=', sinceMs).execute();
          for (const k of chunk) fetched.add(k);
          for (const r of rows) addCandidate(r.group_key, { id: r.id, count: toNumber(r.count), timeMs: toNumber(r.time_at) });
        }
      };
      const ctx: AlertPlanContext = {
        prefetchGroups: (keys, since) => fetchGroups(keys, since.getTime()),
        findOpenGroup: async (groupKey, since) => {
          // Keys not prefetched are fetched with this call's window.
          if (!fetched.has(groupKey)) await fetchGroups([groupKey], since.getTime());
          let best: GroupCandidate | undefined;
          for (const c of groups.get(groupKey) ?? []) if (c.timeMs >= since.getTime() && (best === undefined || c.timeMs > best.timeMs)) best = c;
          return best && { id: best.id, count: best.count };
        },
        prefetchAgentStates: async (agentIds) => {
          const todo = [...new Set(agentIds)].filter((id) => !agentStates.has(id));
          for (let i = 0; i < todo.length; i += BATCH) {
            const chunk = todo.slice(i, i + BATCH);
            // The newest per agent, as latestAgentStateAlert orders them (row_number: both dialects).
            const rows = await trx
              .selectFrom((qb) => qb
                .selectFrom('alerts')
                .select(['agent_id', 'type'])
                .select(sql<number>`row_number() over (partition by agent_id order by last_seen_at desc, id desc)`.as('rn'))
                .where('agent_id', 'in', chunk)
                .where('type', 'in', ['agent_offline', 'agent_online'])
                .as('x'))
              .select(['x.agent_id', 'x.type'])
              .where('x.rn', '=', 1)
              .execute();
            for (const id of chunk) agentStates.set(id, undefined);
            for (const r of rows) if (r.agent_id !== null) agentStates.set(r.agent_id, r.type as AlertType);
          }
        },
        latestAgentStateAlert: async (agentId) => {
          let latest: { type: AlertType; ms: number } | undefined;
          for (const a of buffered.values()) {
            if (a.agentId === agentId && (a.type === 'agent_offline' || a.type === 'agent_online') && (latest === undefined || a.lastSeenAt.getTime() >= latest.ms)) latest = { type: a.type, ms: a.lastSeenAt.getTime() };
          }
          if (latest) return latest.type;
          // Prefetched in this transaction; alerts this batch adds are in `buffered`, checked above.
          if (agentStates.has(agentId)) return agentStates.get(agentId);
          const row = await trx
            .selectFrom('alerts')
            .select('type')
            .where('agent_id', '=', agentId)
            .where('type', 'in', ['agent_offline', 'agent_online'])
            .orderBy('last_seen_at', 'desc')
            .orderBy('id', 'desc')
            .limit(1)
            .executeTakeFirst();
          return row?.type as AlertType | undefined;
        },
        enabledEndpoints: () => {
          endpoints ??= trx.selectFrom('webhook_endpoints').selectAll().where('enabled', '=', 1).execute().then((rows) => rows.map(toEndpoint));
          return endpoints;
        },
        foldRepeat: async (alertId, at) => {
          const ms = at.getTime();
          for (const list of groups.values()) for (const c of list) if (c.id === alertId) c.count++;
          const b = buffered.get(alertId);
          if (b) {
            b.count++;
            if (ms > b.lastSeenAt.getTime()) b.lastSeenAt = at;
            return;
          }
          const f = folds.get(alertId);
          if (f) {
            f.n++;
            f.lastMs = Math.max(f.lastMs, ms);
          } else folds.set(alertId, { n: 1, lastMs: ms });
        },
        insert: async (w) => {
          const a = { ...w.alert };
          buffered.set(a.id, a);
          addCandidate(a.groupKey, { id: a.id, count: a.count, timeMs: a.time.getTime() });
          deliveries.push(...w.deliveries);
        },
        violationsAlerted: async (ids) => {
          alertedViolations.push(...ids);
        },
      };
      await plan(ctx);

      for (const [id, f] of folds) {
        await trx
          .updateTable('alerts')
          .set((eb) => ({
            count: eb('count', '+', f.n),
            // A late-arriving older repeat must not move last_seen_at backwards.
            last_seen_at: sql<number>`case when ${sql.ref('last_seen_at')} < ${f.lastMs} then ${f.lastMs} else ${sql.ref('last_seen_at')} end`,
          }))
          .where('id', '=', id)
          .execute();
      }
      const rows = [...buffered.values()].map(fromAlert);
      // ~18 columns per alert row: 50 rows stay far below SQLite's parameter limit.
      for (let i = 0; i < rows.length; i += 50) await trx.insertInto('alerts').values(rows.slice(i, i + 50)).execute();
      for (let i = 0; i < deliveries.length; i += 50) await trx.insertInto('webhook_deliveries').values(deliveries.slice(i, i + 50).map(fromDelivery)).execute();
      for (let i = 0; i < alertedViolations.length; i += BATCH) {
        await trx.updateTable('violations').set({ alert_pending: null }).where('id', 'in', alertedViolations.slice(i, i + BATCH)).execute();
      }
    });
  }

  async getAlert(id: string): Promise<AlertRecord | undefined> {
    const row = await this.db.selectFrom('alerts').selectAll().where('id', '=', id).executeTakeFirst();
    return row && toAlert(row);
  }

  async listAlerts(q: AlertQuery): Promise<AlertRecord[]> {
    let qb = this.db.selectFrom('alerts').selectAll();
    if (q.types !== undefined && q.types.length > 0) qb = qb.where('type', 'in', q.types);
    if (q.minSeverity !== undefined) qb = qb.where('severity_rank', '>=', severityRank(q.minSeverity));
    if (q.since !== undefined) qb = qb.where('last_seen_at', '>=', q.since.getTime());
    if (q.agentId !== undefined) qb = qb.where('agent_id', '=', q.agentId);
    if (q.project !== undefined) qb = qb.where('project', '=', q.project);
    // Project scoping: alerts of these projects only; fleet alerts (no project) never match.
    if (q.projects !== undefined) {
      const ps = q.projects;
      qb = ps.length === 0 ? qb.where(sql<SqlBool>`1 = 0`) : qb.where('project', 'in', ps);
    }
    if (q.container !== undefined && q.container !== '') {
      const c = q.container;
      const bare = c.startsWith('/') ? c.slice(1) : c;
      qb = qb.where((eb) =>
        eb.or([
          sql<SqlBool>`${sql.ref('container_id')} like ${escapeLike(c.toLowerCase()) + '%'} escape '\\'`,
          eb('container_name', 'in', [bare, '/' + bare]),
        ]),
      );
    }
    qb = qb.orderBy('last_seen_at', 'desc').orderBy('id', 'desc');
    if (q.limit !== undefined) qb = qb.limit(q.limit);
    if (q.offset !== undefined && q.offset > 0) qb = (q.limit === undefined ? qb.limit(Number.MAX_SAFE_INTEGER) : qb).offset(q.offset);
    return (await qb.execute()).map(toAlert);
  }

  // ---- endpoints --------------------------------------------------------------

  async insertEndpoint(e: WebhookEndpointRecord): Promise<void> {
    await this.db.insertInto('webhook_endpoints').values(fromEndpoint(e)).execute();
  }

  async getEndpoint(id: string): Promise<WebhookEndpointRecord | undefined> {
    const row = await this.db.selectFrom('webhook_endpoints').selectAll().where('id', '=', id).executeTakeFirst();
    return row && toEndpoint(row);
  }

  async listEndpoints(): Promise<WebhookEndpointRecord[]> {
    const rows = await this.db.selectFrom('webhook_endpoints').selectAll().orderBy('created_at').orderBy('id').execute();
    return rows.map(toEndpoint);
  }

  async updateEndpoint(e: WebhookEndpointRecord): Promise<void> {
    const { id, created_at: _created, ...rest } = fromEndpoint(e);
    await this.db.updateTable('webhook_endpoints').set(rest).where('id', '=', id).execute();
  }

  async deleteEndpoint(id: string): Promise<boolean> {
    // Explicit deletes in one transaction rather than trusting ON DELETE
    // CASCADE alone: a SQLite connection opened without foreign_keys=ON
    // would otherwise leave orphaned outbox rows behind.
    return this.db.transaction().execute(async (trx) => {
      const ids = trx.selectFrom('webhook_deliveries').select('id').where('endpoint_id', '=', id);
      await trx.deleteFrom('webhook_delivery_attempts').where('delivery_id', 'in', ids).execute();
      await trx.deleteFrom('webhook_deliveries').where('endpoint_id', '=', id).execute();
      const r = await trx.deleteFrom('webhook_endpoints').where('id', '=', id).executeTakeFirst();
      return Number(r.numDeletedRows) === 1;
    });
  }

  async endpointStats(ids: string[]): Promise<Map<string, EndpointStats>> {
    const out = new Map<string, EndpointStats>(ids.map((id) => [id, { pending: 0, delivered: 0, dead: 0 }]));
    for (let i = 0; i < ids.length; i += BATCH) {
      const rows = await this.db
        .selectFrom('webhook_deliveries')
        .select(['endpoint_id', 'status'])
        .select((eb) => eb.fn.countAll().as('n'))
        .where('endpoint_id', 'in', ids.slice(i, i + BATCH))
        .groupBy(['endpoint_id', 'status'])
        .execute();
      for (const r of rows) {
        const s = out.get(r.endpoint_id);
        if (s && (r.status === 'pending' || r.status === 'delivered' || r.status === 'dead')) s[r.status] = toNumber(r.n);
      }
    }
    return out;
  }

  // ---- delivery workers ---------------------------------------------------------

  async claimDue(now: Date, limit: number, leaseMs: number, excludeEndpoints: string[]): Promise<ClaimedDelivery[]> {
    const ms = now.getTime();
    const token = randomBytes(12).toString('base64url');
    const picked = await this.db.transaction().execute(async (trx) => {
      // Only the columns a worker needs: materialising whole rows is a
      // measurable share of the cost at thousands of deliveries per second.
      let pick = trx
        .selectFrom('webhook_deliveries as d')
        .innerJoin('webhook_endpoints as e', 'e.id', 'd.endpoint_id')
        .select(['d.id', 'd.alert_id', 'd.endpoint_id', 'd.attempts', 'd.retry_base'])
        .where('d.status', '=', 'pending')
        .where('d.next_attempt_at', '<=', ms)
        .where((eb) => eb.or([eb('d.lease_until', 'is', null), eb('d.lease_until', '<=', ms)]))
        .where('e.enabled', '=', 1)
        .orderBy('d.next_attempt_at')
        .limit(limit);
      if (excludeEndpoints.length > 0) pick = pick.where('d.endpoint_id', 'not in', excludeEndpoints);
      if (this.skipLocked) pick = pick.forUpdate('d').skipLocked();
      const rows = await pick.execute();
      if (rows.length === 0) return [];
      const ids = rows.map((r) => r.id);
      // The lease condition is repeated so the UPDATE itself decides which
      // rows are still free (PostgreSQL re-checks it after a row-lock wait;
      // SKIP LOCKED already keeps two controllers apart). Deliberately no
      // status condition: with a bound 'pending' SQLite's planner prefers
      // the status index and scans the whole backlog instead of the ids.
      const u = await trx
        .updateTable('webhook_deliveries')
        .set({ lease_until: ms + leaseMs, claim_token: token })
        .where('id', 'in', ids)
        .where((eb) => eb.or([eb('lease_until', 'is', null), eb('lease_until', '<=', ms)]))
        .executeTakeFirst();
      if (Number(u.numUpdatedRows) === rows.length) return rows;
      const mine = new Set((await trx.selectFrom('webhook_deliveries').select('id').where('id', 'in', ids).where('claim_token', '=', token).execute()).map((r) => r.id));
      return rows.filter((r) => mine.has(r.id));
    });
    if (picked.length === 0) return [];
    const [alerts, endpoints] = await Promise.all([
      this.db.selectFrom('alerts').selectAll().where('id', 'in', [...new Set(picked.map((d) => d.alert_id))]).execute(),
      this.db.selectFrom('webhook_endpoints').selectAll().where('id', 'in', [...new Set(picked.map((d) => d.endpoint_id))]).execute(),
    ]);
    const alertById = new Map(alerts.map((a) => [a.id, toAlert(a)]));
    const endpointById = new Map(endpoints.map((e) => [e.id, toEndpoint(e)]));
    const out: ClaimedDelivery[] = [];
    for (const d of picked) {
      const alert = alertById.get(d.alert_id);
      const endpoint = endpointById.get(d.endpoint_id);
      // Deleted between claim and read: its lease simply lapses.
      if (alert && endpoint) {
        out.push({ delivery: { id: d.id, alertId: d.alert_id, endpointId: d.endpoint_id, attempts: toNumber(d.attempts), retryBase: toNumber(d.retry_base) }, alert, endpoint, claimToken: token });
      }
    }
    return out;
  }

  async recordAttempts(results: AttemptResult[], now: Date): Promise<number> {
    if (results.length === 0) return 0;
    const ms = now.getTime();
    return this.db.transaction().execute(async (trx) => {
      // Rows with the same outcome are updated by one statement (a batch of
      // successes is usually a single UPDATE … WHERE id IN (…)), fenced by
      // the claim token: a row whose lease lapsed and was re-claimed is not
      // ours to record — the newer holder's result stands.
      const groups = new Map<string, AttemptResult[]>();
      for (const r of results) {
        const a = r.attempt;
        const key = JSON.stringify([r.claimToken, r.status, a.statusCode, a.error, r.deadReason ?? null, r.status === 'pending' ? a.nextAttemptAt?.getTime() : null]);
        const g = groups.get(key);
        if (g) g.push(r);
        else groups.set(key, [r]);
      }
      const mine: AttemptResult[] = [];
      for (const g of groups.values()) {
        const r = g[0]!;
        const a = r.attempt;
        for (let i = 0; i < g.length; i += BATCH) {
          const chunk = g.slice(i, i + BATCH);
          const ids = chunk.map((x) => x.deliveryId);
          // Which rows are still ours, asked only when the fenced UPDATE shows some are not.
          const u = await trx
            .updateTable('webhook_deliveries')
            .set((eb) => ({
              status: r.status,
              attempts: eb('attempts', '+', 1),
              next_attempt_at: r.status === 'pending' && a.nextAttemptAt ? a.nextAttemptAt.getTime() : eb.ref('next_attempt_at'),
              lease_until: null,
              claim_token: null,
              updated_at: ms,
              delivered_at: r.status === 'delivered' ? ms : null,
              last_status_code: a.statusCode,
              last_error: a.error,
              dead_reason: r.status === 'dead' ? (r.deadReason ?? a.error ?? 'failed') : null,
            }))
            .where('id', 'in', ids)
            .where('claim_token', '=', r.claimToken)
            .executeTakeFirst();
          if (Number(u.numUpdatedRows) === chunk.length) {
            mine.push(...chunk);
            continue;
          }
          // Some leases were lost. The rows we did update now carry no token;
          // tell them apart by the state we just wrote.
          const ours = new Set(
            (await trx.selectFrom('webhook_deliveries').select('id').where('id', 'in', ids).where('claim_token', 'is', null).where('updated_at', '=', ms).where('status', '=', r.status).execute()).map((x) => x.id),
          );
          mine.push(...chunk.filter((x) => ours.has(x.deliveryId)));
        }
      }
      for (const r of mine) {
        if (r.disableEndpoint === undefined) continue;
        const endpointId = trx.selectFrom('webhook_deliveries').select('endpoint_id').where('id', '=', r.deliveryId);
        await trx.updateTable('webhook_endpoints').set({ enabled: 0, disabled_reason: r.disableEndpoint, updated_at: ms }).where('id', '=', endpointId).execute();
      }
      const logged = mine.map((r) => r.attempt);
      for (let i = 0; i < logged.length; i += 100) {
        await trx
          .insertInto('webhook_delivery_attempts')
          .values(logged.slice(i, i + 100).map(fromAttempt))
          .onConflict((oc) => oc.columns(['delivery_id', 'attempt']).doNothing())
          .execute();
      }
      return logged.length;
    });
  }

  async expediteEndpoint(endpointId: string, now: Date): Promise<number> {
    const ms = now.getTime();
    const r = await this.db
      .updateTable('webhook_deliveries')
      .set({ next_attempt_at: ms, updated_at: ms })
      .where('endpoint_id', '=', endpointId)
      .where('status', '=', 'pending')
      .where('next_attempt_at', '>', ms)
      .executeTakeFirst();
    return Number(r.numUpdatedRows);
  }

  async nextDueAfter(now: Date): Promise<Date | undefined> {
    const row = await this.db
      .selectFrom('webhook_deliveries as d')
      .innerJoin('webhook_endpoints as e', 'e.id', 'd.endpoint_id')
      .select((eb) => eb.fn.min('d.next_attempt_at').as('due'))
      .where('d.status', '=', 'pending')
      .where('d.next_attempt_at', '>', now.getTime())
      .where('e.enabled', '=', 1)
      .executeTakeFirst();
    return row?.due === null || row?.due === undefined ? undefined : toDate(row.due);
  }

  // ---- delivery log ----------------------------------------------------------------

  async getDelivery(id: string): Promise<DeliveryRecord | undefined> {
    const row = await this.db.selectFrom('webhook_deliveries').selectAll().where('id', '=', id).executeTakeFirst();
    return row && toDelivery(row);
  }

  async listDeliveries(q: DeliveryQuery): Promise<DeliveryRecord[]> {
    let qb = this.db.selectFrom('webhook_deliveries').selectAll().where('endpoint_id', '=', q.endpointId);
    if (q.status !== undefined) qb = qb.where('status', '=', q.status);
    qb = qb.orderBy('created_at', 'desc').orderBy('id', 'desc');
    if (q.limit !== undefined) qb = qb.limit(q.limit);
    if (q.offset !== undefined && q.offset > 0) qb = (q.limit === undefined ? qb.limit(Number.MAX_SAFE_INTEGER) : qb).offset(q.offset);
    return (await qb.execute()).map(toDelivery);
  }

  async listAttempts(deliveryIds: string[]): Promise<DeliveryAttemptRecord[]> {
    const out: DeliveryAttemptRecord[] = [];
    for (let i = 0; i < deliveryIds.length; i += BATCH) {
      const rows = await this.db
        .selectFrom('webhook_delivery_attempts')
        .selectAll()
        .where('delivery_id', 'in', deliveryIds.slice(i, i + BATCH))
        .orderBy('delivery_id')
        .orderBy('attempt')
        .execute();
      out.push(...rows.map(toAttempt));
    }
    return out;
  }

  async redeliver(id: string, now: Date): Promise<boolean> {
    const ms = now.getTime();
    const r = await this.db
      .updateTable('webhook_deliveries')
      .set((eb) => ({
        status: 'pending',
        next_attempt_at: ms,
        retry_base: eb.ref('attempts'),
        dead_reason: null,
        lease_until: null,
        claim_token: null,
        updated_at: ms,
      }))
      .where('id', '=', id)
      .where('status', '=', 'dead')
      .executeTakeFirst();
    return Number(r.numUpdatedRows) === 1;
  }

  async purge(before: Date): Promise<{ alerts: number; deliveries: number }> {
    const ms = before.getTime();
    return this.db.transaction().execute(async (trx) => {
      const done = trx
        .selectFrom('webhook_deliveries')
        .select('id')
        .where('status', 'in', ['delivered', 'dead'])
        .where('updated_at', '<', ms);
      await trx.deleteFrom('webhook_delivery_attempts').where('delivery_id', 'in', done).execute();
      const d = await trx.deleteFrom('webhook_deliveries').where('status', 'in', ['delivered', 'dead']).where('updated_at', '<', ms).executeTakeFirst();
      const a = await trx
        .deleteFrom('alerts')
        .where('last_seen_at', '<', ms)
        .where((eb) => eb.not(eb.exists(eb.selectFrom('webhook_deliveries').select(sql<number>`1`.as('one')).whereRef('webhook_deliveries.alert_id', '=', 'alerts.id'))))
        .executeTakeFirst();
      return { alerts: Number(a.numDeletedRows), deliveries: Number(d.numDeletedRows) };
    });
  }
}

// ---- helpers --------------------------------------------------------------------

function escapeLike(s: string): string {
  return s.replace(/[\\%_]/g, (c) => '\\' + c);
}

/** PostgreSQL hands bigint and count(*) back as strings; SQLite as numbers. */
function toNumber(v: unknown): number {
  if (typeof v === 'number') return v;
  if (typeof v === 'string' || typeof v === 'bigint') return Number(v);
  throw new BulkheadError('BK_ERR_INTERNAL', `expected an integer column, got ${typeof v}`);
}

function toDate(v: unknown): Date {
  return new Date(toNumber(v));
}

function toDateOrNull(v: unknown): Date | null {
  return v === null || v === undefined ? null : toDate(v);
}

function msOrNull(d: Date | null): number | null {
  return d === null ? null : d.getTime();
}

function parseJson<T>(s: string, fallback: T): T {
  try {
    return JSON.parse(s) as T;
  } catch {
    return fallback;
  }
}

function fromAlert(a: AlertRecord): AlertsTable {
  return {
    id: a.id,
    type: a.type,
    severity: a.severity,
    severity_rank: severityRank(a.severity),
    time_at: a.time.getTime(),
    last_seen_at: a.lastSeenAt.getTime(),
    count: a.count,
    group_key: a.groupKey,
    agent_id: a.agentId,
    host: a.host,
    container_id: a.containerId,
    container_name: a.containerName,
    image: a.image,
    project: a.project,
    rule_id: a.ruleId,
    action: a.action,
    result: a.result,
    message: a.message,
  };
}

function toAlert(r: Selectable<AlertsTable>): AlertRecord {
  return {
    id: r.id,
    type: r.type as AlertType,
    severity: r.severity as AlertSeverity,
    time: toDate(r.time_at),
    lastSeenAt: toDate(r.last_seen_at),
    count: toNumber(r.count),
    groupKey: r.group_key,
    agentId: r.agent_id,
    host: r.host,
    containerId: r.container_id,
    containerName: r.container_name,
    image: r.image,
    project: r.project,
    ruleId: r.rule_id,
    action: r.action,
    result: r.result,
    message: r.message,
  };
}

function fromEndpoint(e: WebhookEndpointRecord): WebhookEndpointsTable {
  return {
    id: e.id,
    name: e.name,
    url: e.url,
    format: e.format,
    min_severity: e.minSeverity,
    types_json: JSON.stringify(e.types),
    projects_json: JSON.stringify(e.projects),
    secret: e.secret,
    previous_secret: e.previousSecret,
    previous_secret_expires_at: msOrNull(e.previousSecretExpiresAt),
    headers_json: JSON.stringify(e.headers),
    enabled: e.enabled ? 1 : 0,
    allow_unsafe_target: e.allowUnsafeTarget ? 1 : 0,
    disabled_reason: e.disabledReason,
    created_at: e.createdAt.getTime(),
    updated_at: e.updatedAt.getTime(),
  };
}

function toEndpoint(r: Selectable<WebhookEndpointsTable>): WebhookEndpointRecord {
  return {
    id: r.id,
    name: r.name,
    url: r.url,
    format: r.format as WebhookFormat,
    minSeverity: r.min_severity as AlertSeverity,
    types: parseJson<AlertType[]>(r.types_json, []),
    projects: parseJson<string[]>(r.projects_json, []),
    secret: r.secret,
    previousSecret: r.previous_secret,
    previousSecretExpiresAt: toDateOrNull(r.previous_secret_expires_at),
    headers: parseJson<Record<string, string>>(r.headers_json, {}),
    enabled: toNumber(r.enabled) !== 0,
    allowUnsafeTarget: toNumber(r.allow_unsafe_target) !== 0,
    disabledReason: r.disabled_reason,
    createdAt: toDate(r.created_at),
    updatedAt: toDate(r.updated_at),
  };
}

function fromDelivery(d: DeliveryRecord): WebhookDeliveriesTable {
  return {
    id: d.id,
    alert_id: d.alertId,
    endpoint_id: d.endpointId,
    status: d.status,
    attempts: d.attempts,
    retry_base: d.retryBase,
    next_attempt_at: d.nextAttemptAt.getTime(),
    lease_until: null,
    claim_token: null,
    created_at: d.createdAt.getTime(),
    updated_at: d.updatedAt.getTime(),
    delivered_at: msOrNull(d.deliveredAt),
    last_status_code: d.lastStatusCode,
    last_error: d.lastError,
    dead_reason: d.deadReason,
  };
}

function toDelivery(r: Selectable<WebhookDeliveriesTable>): DeliveryRecord {
  return {
    id: r.id,
    alertId: r.alert_id,
    endpointId: r.endpoint_id,
    status: r.status as DeliveryStatus,
    attempts: toNumber(r.attempts),
    retryBase: toNumber(r.retry_base),
    nextAttemptAt: toDate(r.next_attempt_at),
    createdAt: toDate(r.created_at),
    updatedAt: toDate(r.updated_at),
    deliveredAt: toDateOrNull(r.delivered_at),
    lastStatusCode: r.last_status_code === null ? null : toNumber(r.last_status_code),
    lastError: r.last_error,
    deadReason: r.dead_reason,
  };
}

function fromAttempt(a: DeliveryAttemptRecord): WebhookDeliveryAttemptsTable {
  return {
    delivery_id: a.deliveryId,
    attempt: a.attempt,
    at: a.at.getTime(),
    status_code: a.statusCode,
    latency_ms: Math.round(a.latencyMs),
    error: a.error,
    outcome: a.outcome,
    next_attempt_at: msOrNull(a.nextAttemptAt),
  };
}

function toAttempt(r: Selectable<WebhookDeliveryAttemptsTable>): DeliveryAttemptRecord {
  return {
    deliveryId: r.delivery_id,
    attempt: toNumber(r.attempt),
    at: toDate(r.at),
    statusCode: r.status_code === null ? null : toNumber(r.status_code),
    latencyMs: toNumber(r.latency_ms),
    error: r.error,
    outcome: r.outcome as AttemptOutcome,
    nextAttemptAt: toDateOrNull(r.next_attempt_at),
  };
}
