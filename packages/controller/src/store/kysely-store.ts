// Owns the SQL behind the Store contract, written once for every kysely
// dialect. SqliteStore and PostgresStore only open a connection and hand it
// here, so everything below must stay portable: no RETURNING-dependent logic,
// no JSON operators, integer-ms times, 0/1 booleans, LIKE with an explicit
// ESCAPE, and ON CONFLICT (supported by SQLite ≥ 3.24 and PostgreSQL).
import { PostgresAdapter, sql, type QueryCreator, type RawBuilder, type Selectable, type SqlBool, type Transaction } from 'kysely';
import { BulkheadError, type ContainerFacts__Output, type HostFacts__Output } from '@bulkhead/shared';
import type {
  AgentHelloResult, AgentHelloState, AgentHelloWrite, AgentQuery, AgentRecord, AgentStatus, ApiKeyRecord, ContainerPosition, ContainerQuery, ContainerRecord, ContainerWriteOptions,
  JoinTokenRecord, JoinTokenStatus, Store,
} from './store';
import type { AgentsTable, ApiKeysTable, ContainersTable, Database, Db, JoinTokensTable } from './schema';
import type {
  AgentPolicyStatusRecord, PolicyVersionRecord, PolicyVersionSummary, ScanRecord, ViolationAck, ViolationQuery, ViolationRecord,
} from './store';
import type { AgentPolicyStatusTable, PoliciesTable, ScansTable, ViolationsTable } from './schema';
import { helloAcceptable } from './store';
import { ensurePgSearchIndexes, migrateToLatest, SEARCH_ID_HEAD } from './migrations';
import { pgRowsByKeys } from './pg-keys';
import { parseStoredFacts } from './stored-facts';
import type { AlertStore } from '../alerts/alert-store';
import { KyselyAlertStore } from '../alerts/kysely-alert-store';
import type { AuditStore } from '../audit/audit-store';
import { KyselyAuditStore } from '../audit/kysely-audit-store';
import type { HostAuditStore } from '../host-audit/host-audit-store';
import { KyselyHostAuditStore } from '../host-audit/kysely-host-audit-store';
import type { ImageTagStore } from '../images/image-tag-store';
import { KyselyImageTagStore } from '../images/kysely-image-tag-store';
import { containerProject } from '../auth/project-scope';
import type { UsageStore } from './usage-store';
import { KyselyUsageStore } from './kysely-usage-store';
import type { SessionStore } from '../auth/session-store';
import { KyselySessionStore } from '../auth/kysely-session-store';
import type { FleetEventStore } from '../events/event-store';
import { KyselyEventStore } from '../events/kysely-event-store';
import type { SignatureVerdictStore } from '../signatures/signature-verdict-store';
import { KyselySignatureVerdictStore } from '../signatures/kysely-signature-verdict-store';
import type { FleetSummaryStore } from '../fleet/fleet-summary-store';
import { KyselyFleetSummaryStore } from '../fleet/kysely-fleet-summary-store';

/** Containers per multi-row statement: keeps parameter counts far below SQLite's and pg's limits. */
const CONTAINER_BATCH = 100;
const LABEL_BATCH = 500;
/**
 * The container list's image filter on PostgreSQL resolves to a list of references while the
 * fleet runs at most this many distinct ones (1,000 index probes: a few ms); beyond, the
 * substring is tested row by row as on SQLite.
 */
const MAX_IMAGE_REFS = 1000;
/** SQLite: container keys per statement when a list reads its rows (≤ 2,000 parameters). */
const PAGE_READ_BATCH = 1000;

export abstract class KyselyStore implements Store {
  /** Alerts, webhook endpoints and the delivery outbox (src/alerts), over the same connection. */
  readonly alerts: AlertStore;
  /** The hash-chained audit trail (src/audit), over the same connection. */
  readonly audit: AuditStore;
  /** The agents' host audit reports (src/host-audit), over the same connection. */
  readonly hostAudits: HostAuditStore;
  /** Tags that move (src/images), over the same connection. */
  readonly imageTags: ImageTagStore;

  /** Live container usage (0005_usage), over the same connection. */
  readonly usage: UsageStore;
  /** Browser sessions (src/auth/sessions.ts), over the same connection. */
  readonly sessions: SessionStore;
  /** The fleet's event stream (src/events), over the same connection. */
  readonly events: FleetEventStore;
  /** Image signature verdicts agents reported (src/signatures), over the same connection. */
  readonly signatureVerdicts: SignatureVerdictStore;
  /** The console overview's counts (src/fleet), over the same connection. */
  readonly fleetSummary: FleetSummaryStore;

  /** PostgreSQL runs transactions truly in parallel (see insertPolicyVersion). */
  private readonly postgres: boolean;

  /**
   * @param listReads PostgreSQL: a pool whose connections run without parallel workers
   *   (PostgresStore.open), for listContainers' key statements; without one each runs in its
   *   own transaction after a SET LOCAL.
   */
  protected constructor(protected readonly db: Db, private readonly listReads?: Db) {
    this.postgres = db.getExecutor().adapter instanceof PostgresAdapter;
    this.usage = new KyselyUsageStore(db);
    this.alerts = new KyselyAlertStore(db);
    this.audit = new KyselyAuditStore(db);
    this.hostAudits = new KyselyHostAuditStore(db);
    this.imageTags = new KyselyImageTagStore(db);
    this.sessions = new KyselySessionStore(db);
    this.events = new KyselyEventStore(db);
    this.signatureVerdicts = new KyselySignatureVerdictStore(db);
    this.fleetSummary = new KyselyFleetSummaryStore(db);
  }

  async migrate(): Promise<void> {
    await migrateToLatest(this.db);
  }

  /**
   * PostgreSQL: the free-text search indexes (0025_container_search), created if missing now
   * that pg_trgm may exist; what is still missing and why. SQLite's are created by the migration.
   */
  async ensureSearchIndexes(): Promise<{ missing: string[]; reason?: string }> {
    return this.postgres ? ensurePgSearchIndexes(this.db, { inTransaction: false }) : { missing: [] };
  }

  async close(): Promise<void> {
    await Promise.all([this.db.destroy(), this.listReads?.destroy()]);
  }

  async ping(): Promise<void> {
    await sql`select 1`.execute(this.db);
  }

  // ---- join tokens ----------------------------------------------------------

  async insertJoinToken(t: JoinTokenRecord): Promise<void> {
    await this.db
      .insertInto('join_tokens')
      .values({
        id: t.id,
        secret_hash: t.secretHash,
        created_at: t.createdAt.getTime(),
        expires_at: t.expiresAt.getTime(),
        used_at: msOrNull(t.usedAt),
        used_by_agent: t.usedByAgent,
        revoked_at: msOrNull(t.revokedAt),
        description: t.description,
      })
      .execute();
  }

  async getJoinToken(id: string): Promise<JoinTokenRecord | undefined> {
    const row = await this.db.selectFrom('join_tokens').selectAll().where('id', '=', id).executeTakeFirst();
    return row && toJoinToken(row);
  }

  async consumeJoinToken(id: string, agentId: string, now: Date): Promise<boolean> {
    // One conditional UPDATE: the database, not a read-then-write in JS,
    // decides which of two racing enrollments gets the token.
    const ms = now.getTime();
    const r = await this.db
      .updateTable('join_tokens')
      .set({ used_at: ms, used_by_agent: agentId })
      .where('id', '=', id)
      .where('used_at', 'is', null)
      .where('revoked_at', 'is', null)
      .where('expires_at', '>', ms)
      .executeTakeFirst();
    return Number(r.numUpdatedRows) === 1;
  }

  // ---- api keys -------------------------------------------------------------

  async insertApiKey(k: ApiKeyRecord): Promise<void> {
    await this.db
      .insertInto('api_keys')
      .values({
        id: k.id,
        name: k.name,
        secret_hash: k.secretHash,
        role: k.role,
        created_at: k.createdAt.getTime(),
        expires_at: msOrNull(k.expiresAt),
        revoked_at: msOrNull(k.revokedAt),
        projects_json: JSON.stringify(k.projects),
        last_used_at: msOrNull(k.lastUsedAt),
        created_by: k.createdBy,
        actions_json: JSON.stringify(k.actions ?? []),
      })
      .execute();
  }

  async getApiKey(id: string): Promise<ApiKeyRecord | undefined> {
    const row = await this.db.selectFrom('api_keys').selectAll().where('id', '=', id).executeTakeFirst();
    return row && toApiKey(row);
  }

  // ---- identity and access (0004_auth) ------------------------------------------

  async listApiKeys(): Promise<ApiKeyRecord[]> {
    const rows = await this.db.selectFrom('api_keys').selectAll().orderBy('created_at', 'desc').orderBy('id').execute();
    return rows.map(toApiKey);
  }

  async revokeApiKey(id: string, now: Date): Promise<boolean> {
    const r = await this.db.updateTable('api_keys').set({ revoked_at: now.getTime() }).where('id', '=', id).where('revoked_at', 'is', null).executeTakeFirst();
    return Number(r.numUpdatedRows) === 1;
  }

  async touchApiKey(id: string, now: Date): Promise<void> {
    await this.db.updateTable('api_keys').set({ last_used_at: now.getTime() }).where('id', '=', id).execute();
  }

  async listJoinTokens(q: { status?: JoinTokenStatus; now: Date; limit?: number; offset?: number }): Promise<JoinTokenRecord[]> {
    const ms = q.now.getTime();
    let qb = this.db.selectFrom('join_tokens').selectAll();
    // The same precedence as the DTO's status: revoked, then used, then expired.
    switch (q.status) {
      case 'revoked':
        qb = qb.where('revoked_at', 'is not', null);
        break;
      case 'used':
        qb = qb.where('revoked_at', 'is', null).where('used_at', 'is not', null);
        break;
      case 'expired':
        qb = qb.where('revoked_at', 'is', null).where('used_at', 'is', null).where('expires_at', '<=', ms);
        break;
      case 'active':
        qb = qb.where('revoked_at', 'is', null).where('used_at', 'is', null).where('expires_at', '>', ms);
        break;
      case undefined:
        break;
    }
    qb = qb.orderBy('created_at', 'desc').orderBy('id');
    const limit = checkCount(q.limit, 'limit');
    const offset = checkCount(q.offset, 'offset');
    if (limit !== undefined) qb = qb.limit(limit);
    if (offset !== undefined && offset > 0) qb = (limit === undefined ? qb.limit(Number.MAX_SAFE_INTEGER) : qb).offset(offset);
    return (await qb.execute()).map(toJoinToken);
  }

  async revokeJoinToken(id: string, now: Date): Promise<boolean> {
    const r = await this.db
      .updateTable('join_tokens')
      .set({ revoked_at: now.getTime() })
      .where('id', '=', id)
      .where('revoked_at', 'is', null)
      .where('used_at', 'is', null)
      .executeTakeFirst();
    return Number(r.numUpdatedRows) === 1;
  }

  // ---- agents ---------------------------------------------------------------

  async insertAgent(a: AgentRecord): Promise<void> {
    await this.db
      .insertInto('agents')
      .values({
        id: a.id,
        hostname: a.hostname,
        status: a.status,
        agent_version: a.agentVersion,
        host_json: a.host === null ? null : JSON.stringify(a.host),
        cert_serial: a.certSerial,
        cert_not_after: a.certNotAfter.getTime(),
        prev_cert_serial: a.prevCertSerial ?? null,
        enrolled_at: a.enrolledAt.getTime(),
        last_seen_at: msOrNull(a.lastSeenAt),
        connected_at: msOrNull(a.connectedAt),
        revoked_at: msOrNull(a.revokedAt),
        cert_ca: a.certCa ?? null,
        trusted_cas: a.trustedCas ? JSON.stringify(a.trustedCas) : null,
      })
      .execute();
  }

  private selectAgents() {
    return this.db
      .selectFrom('agents')
      // 0002_policy: the policy version each agent applied, for the agent DTO.
      .leftJoin('agent_policy_status as ps', 'ps.agent_id', 'agents.id')
      .select(['ps.version as ps_version', 'ps.applied as ps_applied', 'ps.error as ps_error', 'ps.updated_at as ps_updated_at'])
      .selectAll('agents')
      .select((eb) =>
        eb
          .selectFrom('containers')
          .select((e) => e.fn.countAll().as('n'))
          .whereRef('containers.agent_id', '=', 'agents.id')
          .where('containers.removed', '=', 0)
          .as('container_count'),
      );
  }

  async getAgent(id: string): Promise<AgentRecord | undefined> {
    const row = await this.selectAgents().where('agents.id', '=', id).executeTakeFirst();
    return row && toAgent(row);
  }

  async listAgents(q: AgentQuery = {}): Promise<AgentRecord[]> {
    let qb = this.selectAgents();
    // Keyset paging on agents_hostname_id (0019_list_paging).
    if (q.after !== undefined) qb = qb.where(sql<SqlBool>`(${sql.ref('agents.hostname')}, ${sql.ref('agents.id')}) > (${q.after.hostname}, ${q.after.id})`);
    qb = qb.orderBy('agents.hostname').orderBy('agents.id');
    const limit = checkCount(q.limit, 'limit');
    if (limit !== undefined) qb = qb.limit(limit);
    const rows = await qb.execute();
    return rows.map(toAgent);
  }

  /** A revoked agent stays revoked: a late hello must not flip it back online. */
  async markAgentConnected(id: string, agentVersion: string, host: HostFacts__Output, now: Date): Promise<void> {
    await this.db
      .updateTable('agents')
      .set(helloAgentColumns({ agentVersion, host, now }))
      .where('id', '=', id)
      .where('status', '!=', 'revoked')
      .execute();
  }

  async touchAgent(id: string, now: Date): Promise<void> {
    await this.db.updateTable('agents').set({ last_seen_at: now.getTime() }).where('id', '=', id).execute();
  }

  /**
   * Many agents' last-seen times in one transaction: one UPDATE per 500 agents
   * (`CASE id WHEN … THEN …`), instead of one statement and commit per heartbeat.
   */
  async touchAgents(seen: ReadonlyMap<string, Date>, stateHashes?: ReadonlyMap<string, string | null>): Promise<void> {
    const entries = [...seen];
    const hashes = [...(stateHashes ?? [])];
    if (entries.length === 0 && hashes.length === 0) return;
    if (this.postgres) return this.touchAgentsPostgres(seen, stateHashes);
    await this.db.transaction().execute(async (trx) => {
      // Inventory state hashes (0020_agent_state_hash), in the same transaction.
      for (let i = 0; i < hashes.length; i += 500) {
        const chunk = hashes.slice(i, i + 500);
        const cases = sql.join(chunk.map(([id, h]) => sql`when ${id} then cast(${h} as text)`), sql` `);
        await trx
          .updateTable('agents')
          .set({ state_hash: sql<string | null>`case id ${cases} end` })
          .where('id', 'in', chunk.map(([id]) => id))
          .execute();
      }
      for (let i = 0; i < entries.length; i += 500) {
        const chunk = entries.slice(i, i + 500);
        const cases = sql.join(chunk.map(([id, at]) => sql`when ${id} then cast(${at.getTime()} as bigint)`), sql` `);
        await trx
          .updateTable('agents')
          .set({ last_seen_at: sql<number>`case id ${cases} end` })
          .where('id', 'in', chunk.map(([id]) => id))
          .execute();
      }
    });
  }
  /**
   * PostgreSQL: every agent of the batch in one statement, from arrays (4 parameters however
   * many agents; no transaction needed for one statement). The portable form above sends a
   * `CASE id WHEN … THEN …` of two parameters per agent, in a transaction, every flush (≤ 1 s):
   * for a replica holding 1,000 agents, Kysely built and pg sent 4,000 parameters a second
   * (BENCHMARKS.md, failover). A hash given as null clears it; an agent given no hash keeps its own.
   */
  private async touchAgentsPostgres(seen: ReadonlyMap<string, Date>, stateHashes?: ReadonlyMap<string, string | null>): Promise<void> {
    const ids = [...new Set([...seen.keys(), ...(stateHashes?.keys() ?? [])])];
    const at = ids.map((id) => seen.get(id)?.getTime() ?? null);
    const setHash = ids.map((id) => stateHashes?.has(id) === true);
    // PostgreSQL text cannot hold U+0000 (the store's plugin replaces it in scalar parameters, not in array elements).
    const hash = ids.map((id) => stateHashes?.get(id)?.replaceAll('\u0000', '\uFFFD') ?? null);
    await sql`update agents set
  last_seen_at = coalesce(v.at, agents.last_seen_at),
  state_hash = case when v.set_hash then v.hash else agents.state_hash end
from unnest(${ids}::text[], ${at}::bigint[], ${setHash}::bool[], ${hash}::text[]) as v(id, at, set_hash, hash)
where agents.id = v.id`.execute(this.db);
  }


  /**
   * 'revoked' is terminal: setting online/offline on a revoked agent is a
   * no-op, so a stale-agent sweep racing a revocation cannot undo it.
   * Revoking records `now` as revokedAt (the first revocation time is kept).
   */
  async setAgentStatus(id: string, status: AgentStatus, now: Date): Promise<void> {
    await this.db
      .updateTable('agents')
      .set(status === 'revoked' ? { status, revoked_at: now.getTime() } : { status })
      .where('id', '=', id)
      .where('status', '!=', 'revoked')
      .execute();
  }

  async replaceAgentCert(id: string, fromSerial: string, to: { serial: string; notAfter: Date; ca?: string }, previous: string | null): Promise<boolean> {
    const r = await this.db
      .updateTable('agents')
      .set({ cert_serial: to.serial, cert_not_after: to.notAfter.getTime(), prev_cert_serial: previous, ...(to.ca !== undefined ? { cert_ca: to.ca } : {}) })
      .where('id', '=', id)
      .where('cert_serial', '=', fromSerial)
      .where('status', '!=', 'revoked')
      .where('revoked_at', 'is', null)
      .executeTakeFirst();
    return Number(r.numUpdatedRows) === 1;
  }

  async retirePreviousCert(id: string, serial: string): Promise<void> {
    await this.db.updateTable('agents').set({ prev_cert_serial: null }).where('id', '=', id).where('cert_serial', '=', serial).where('prev_cert_serial', 'is not', null).execute();
  }

  async setAgentTrustedCas(id: string, fingerprints: string[]): Promise<void> {
    await this.db.updateTable('agents').set({ trusted_cas: JSON.stringify(fingerprints) }).where('id', '=', id).execute();
  }

  // ---- controller replicas (0014_replica_leases) ----
  async claimAgentLease(agentId: string, owner: string, expiresAt: Date): Promise<void> {
    await upsertAgentLease(this.db, agentId, owner, expiresAt).execute();
  }

  /**
   * Here (SQLite) a read and, when taken, two writes in one transaction (SQLite has one
   * writer at a time, so nothing changes the row in between); PostgresStore makes it one
   * statement.
   */
  async acceptAgentHello(h: AgentHelloWrite): Promise<AgentHelloResult> {
    return this.db.transaction().execute(async (trx) => {
      const row = await trx
        .selectFrom('agents')
        .leftJoin('agent_policy_status as ps', 'ps.agent_id', 'agents.id')
        .select(['agents.hostname', 'agents.status', 'agents.revoked_at', 'agents.cert_serial', 'agents.prev_cert_serial', 'agents.trusted_cas', 'agents.state_hash'])
        .select(['ps.version as ps_version', 'ps.applied as ps_applied', 'ps.error as ps_error'])
        .where('agents.id', '=', h.agentId)
        .executeTakeFirst();
      const before = row && toHelloState(row);
      if (!before || !helloAcceptable(before, h.certSerial)) return { accepted: false, ...(before ? { before } : {}) };
      await upsertAgentLease(trx, h.agentId, h.owner, h.leaseExpiresAt).execute();
      await trx.updateTable('agents').set(helloAgentColumns(h)).where('id', '=', h.agentId).where('status', '!=', 'revoked').execute();
      return { accepted: true, before };
    });
  }

  async renewAgentLeases(owner: string, agentIds: readonly string[], expiresAt: Date): Promise<string[]> {
    const lost: string[] = [];
    const until = expiresAt.getTime();
    for (let i = 0; i < agentIds.length; i += 500) {
      const chunk = agentIds.slice(i, i + 500);
      await this.db.updateTable('agent_leases').set({ expires_at: until }).where('owner', '=', owner).where('agent_id', 'in', chunk).execute();
      const rows = await this.db.selectFrom('agent_leases').select(['agent_id', 'owner']).where('agent_id', 'in', chunk).execute();
      const seen = new Map(rows.map((r) => [r.agent_id, r.owner]));
      for (const id of chunk) {
        const holder = seen.get(id);
        if (holder === undefined) {
          // Released by an older stream of the same agent on this replica after the new one claimed it: held again.
          await this.db.insertInto('agent_leases').values({ agent_id: id, owner, expires_at: until }).onConflict((oc) => oc.column('agent_id').doNothing()).execute();
        } else if (holder !== owner) {
          lost.push(id);
        }
      }
    }
    return lost;
  }

  async releaseAgentLease(agentId: string, owner: string): Promise<void> {
    await this.db.deleteFrom('agent_leases').where('agent_id', '=', agentId).where('owner', '=', owner).execute();
  }

  async getAgentLease(agentId: string): Promise<{ owner: string; expiresAt: Date } | undefined> {
    const r = await this.db.selectFrom('agent_leases').select(['owner', 'expires_at']).where('agent_id', '=', agentId).executeTakeFirst();
    return r ? { owner: r.owner, expiresAt: new Date(Number(r.expires_at)) } : undefined;
  }

  async markAgentOfflineUnlessHeld(agentId: string, owner: string, now: Date): Promise<boolean> {
    // One statement: a replica that claims the lease and then marks the agent online either
    // committed its claim before this runs (seen here: no change) or marks it online after
    // (its update waits for this one's row lock and wins).
    const r = await this.db
      .updateTable('agents')
      .set({ status: 'offline' })
      .where('id', '=', agentId)
      .where('status', '=', 'online')
      .where('revoked_at', 'is', null)
      .where(({ not, exists, selectFrom }) =>
        not(exists(selectFrom('agent_leases').select('agent_id').where('agent_id', '=', agentId).where('owner', '!=', owner).where('expires_at', '>', now.getTime()))),
      )
      .executeTakeFirst();
    return Number(r.numUpdatedRows) === 1;
  }

  async markHeldAgentsOnline(owner: string, agentIds: readonly string[], now: Date, seenSince: Date): Promise<string[]> {
    const changed: string[] = [];
    const t = now.getTime();
    const since = seenSince.getTime();
    for (let i = 0; i < agentIds.length; i += 500) {
      const chunk = agentIds.slice(i, i + 500);
      // Cheap when nothing is offline (the usual case): one indexed read, no write.
      const offline = await this.db.selectFrom('agents').select('id').where('id', 'in', chunk).where('status', '=', 'offline').where('revoked_at', 'is', null).where('last_seen_at', '>=', since).execute();
      for (const { id } of offline) {
        // One conditional statement per agent: only while this owner's lease is live, so a
        // replica that lost the stream never sets it online.
        const r = await this.db
          .updateTable('agents')
          .set({ status: 'online' })
          .where('id', '=', id)
          .where('status', '=', 'offline')
          .where('last_seen_at', '>=', since)
          .where('revoked_at', 'is', null)
          .where(({ exists, selectFrom }) => exists(selectFrom('agent_leases').select('agent_id').where('agent_id', '=', id).where('owner', '=', owner).where('expires_at', '>', t)))
          .executeTakeFirst();
        if (Number(r.numUpdatedRows) === 1) changed.push(id);
      }
    }
    return changed;
  }

  async recordRemoteCommand(id: string, now: Date): Promise<boolean> {
    const t = now.getTime();
    // Bounded: rows are only needed while a command is in flight (seconds).
    await this.db.deleteFrom('remote_commands').where('created_at', '<', t - 3_600_000).execute();
    const r = await this.db.insertInto('remote_commands').values({ id, state: 'sent', created_at: t }).onConflict((oc) => oc.column('id').doNothing()).executeTakeFirst();
    return Number(r.numInsertedOrUpdatedRows ?? 0n) === 1;
  }

  async decideRemoteCommand(id: string, to: 'accepted' | 'abandoned'): Promise<boolean> {
    const r = await this.db.updateTable('remote_commands').set({ state: to }).where('id', '=', id).where('state', '=', 'sent').executeTakeFirst();
    return Number(r.numUpdatedRows) === 1;
  }

  async claimJobRun(name: string, owner: string, now: Date, everyMs: number): Promise<boolean> {
    const t = now.getTime();
    // First run ever: the insert wins for exactly one replica.
    const inserted = await this.db
      .insertInto('fleet_jobs')
      .values({ name, owner, last_run_at: t })
      .onConflict((oc) => oc.column('name').doNothing())
      .executeTakeFirst();
    if (Number(inserted.numInsertedOrUpdatedRows ?? 0n) === 1) return true;
    // Later runs: a conditional update on the last run's time; of concurrent callers one matches.
    const r = await this.db
      .updateTable('fleet_jobs')
      .set({ owner, last_run_at: t })
      .where('name', '=', name)
      .where('last_run_at', '<=', t - everyMs)
      .executeTakeFirst();
    return Number(r.numUpdatedRows) === 1;
  }

  async listRevokedAgents(ids: readonly string[]): Promise<string[]> {
    if (ids.length === 0) return [];
    // PostgreSQL: the ids as one array parameter, one statement (the agent link asks every 300 ms
    // about every stream it holds: a replica with 1,000 agents built 1,000 parameters each time).
    if (this.postgres) {
      const r = await sql<{ id: string }>`select id from agents where id = any(${ids.map((id) => id.replaceAll('\u0000', '\uFFFD'))}::text[]) and (status = 'revoked' or revoked_at is not null)`.execute(this.db);
      return r.rows.map((x) => x.id);
    }
    const out: string[] = [];
    // Chunked: PostgreSQL and SQLite both bound the parameters of one statement.
    for (let i = 0; i < ids.length; i += 500) {
      const rows = await this.db
        .selectFrom('agents')
        .select('id')
        .where('id', 'in', ids.slice(i, i + 500))
        .where((eb) => eb.or([eb('status', '=', 'revoked'), eb('revoked_at', 'is not', null)]))
        .execute();
      for (const r of rows) out.push(r.id);
    }
    return out;
  }

  async listStaleOnlineAgents(cutoff: Date): Promise<AgentRecord[]> {
    const rows = await this.selectAgents()
      .where('agents.status', '=', 'online')
      .where((eb) => eb.or([eb('agents.last_seen_at', 'is', null), eb('agents.last_seen_at', '<', cutoff.getTime())]))
      .orderBy('agents.id')
      .execute();
    return rows.map(toAgent);
  }

  // ---- containers -----------------------------------------------------------

  /**
   * Containers missing from the snapshot are marked removed (kept for
   * history like a REMOVE delta would), the rest are upserted live.
   */
  async replaceContainers(agentId: string, containers: ContainerFacts__Output[], now: Date, o: ContainerWriteOptions = {}): Promise<void> {
    const ms = now.getTime();
    const unique = dedupeById(containers);
    await this.db.transaction().execute(async (trx) => {
      await (await this.clearingStateHash(trx, agentId, o))
        .updateTable('containers')
        .set({ removed: 1, updated_at: ms })
        .where('agent_id', '=', agentId)
        .where('removed', '=', 0)
        .execute();
      await upsertMany(trx, agentId, unique, ms);
    });
  }

  async upsertContainer(agentId: string, c: ContainerFacts__Output, now: Date, o: ContainerWriteOptions = {}): Promise<void> {
    const list = dedupeById([c]);
    await this.db.transaction().execute(async (trx) => upsertMany(trx, agentId, list, now.getTime(), await this.clearingStateHash(trx, agentId, o)));
  }

  async removeContainer(agentId: string, containerId: string, now: Date, o: ContainerWriteOptions = {}): Promise<{ name: string; project: string } | undefined> {
    const remove = async (db: QueryCreator<Database>) =>
      (await this.clearingStateHash(db, agentId, o))
        .updateTable('containers')
        .set({ removed: 1, updated_at: now.getTime() })
        .where('agent_id', '=', agentId)
        .where('id', '=', containerId)
        .returning(['name', 'project'])
        .executeTakeFirst();
    // PostgreSQL: one statement, the clear a CTE of it; SQLite: the clear and the write in one transaction.
    const row = o.clearStateHash === true && !this.postgres ? await this.db.transaction().execute(remove) : await remove(this.db);
    return row && { name: row.name, project: row.project };
  }

  /**
   * Where a container write's next statement is built when `o.clearStateHash`: the agent's
   * stored state hash is cleared with it, atomically. On PostgreSQL the clear is a CTE of that
   * statement (one statement, where it used to be a transaction of its own ahead of the write:
   * BEGIN, UPDATE, COMMIT — a replica serving a whole fleet's deltas sends fewer statements,
   * BENCHMARKS.md, failover); on SQLite it runs here, first, and `db` must be a transaction.
   */
  private async clearingStateHash(db: QueryCreator<Database>, agentId: string, o: ContainerWriteOptions): Promise<QueryCreator<Database>> {
    if (o.clearStateHash !== true) return db;
    const clear = (qc: QueryCreator<Database>) => qc.updateTable('agents').set({ state_hash: null }).where('id', '=', agentId).where('state_hash', 'is not', null);
    if (this.postgres) return db.with('state_hash_cleared', clear) as unknown as QueryCreator<Database>;
    await clear(db).execute();
    return db;
  }

  async getContainer(agentId: string, containerId: string): Promise<ContainerRecord | undefined> {
    const row = await this.db
      .selectFrom('containers')
      .selectAll()
      .where('agent_id', '=', agentId)
      .where('id', '=', containerId)
      .executeTakeFirst();
    return row && toContainer(row);
  }

  async findContainers(agentId: string, ref: { idPrefix?: string; names?: string[] }): Promise<ContainerRecord[]> {
    const prefix = ref.idPrefix;
    const names = ref.names ?? [];
    if ((prefix === undefined || prefix === '') && names.length === 0) return [];
    const rows = await this.db
      .selectFrom('containers')
      .selectAll()
      .where('agent_id', '=', agentId)
      .where((eb) => {
        const ors = [];
        // Ids are lowercase hex; lowercasing the prefix gives PostgreSQL's case-sensitive LIKE SQLite's answer.
        if (prefix !== undefined && prefix !== '') ors.push(sql<SqlBool>`${sql.ref('id')} like ${escapeLike(prefix.toLowerCase()) + '%'} escape '\\'`);
        if (names.length > 0) ors.push(eb('name', 'in', names));
        return eb.or(ors);
      })
      .orderBy('id')
      .execute();
    return rows.map((r) => toContainer(r));
  }

  /**
   * Two steps (0019_list_paging, 0023_list_sort_indexes). First the page's keys alone: every
   * sort order has an index in that order (containers_list, containers_name_list,
   * containers_state_list, containers_image_list; the usage sorts container_usage_cpu and
   * container_usage_memory), and every filter but the labels and the rule is a column of it,
   * so the database walks it from the cursor, tests the filters in the index, checks labels
   * and rules only for rows that passed, and stops at `limit` — never reading a non-matching
   * row's facts, never sorting every match. Then the page's rows by primary key.
   */
  async listContainers(q: ContainerQuery): Promise<ContainerRecord[]> {
    // Ascending by agent is the default order, with its own (shorter) cursor.
    const sort = q.sort !== undefined && (q.sort.field !== 'agent' || q.sort.desc) ? q.sort : undefined;
    const desc = q.sort?.desc === true;
    const limit = checkCount(q.limit, 'limit');
    const offset = checkCount(q.offset, 'offset');
    const usageSort = sort?.field === 'cpu' || sort?.field === 'memory';
    const imageRefs = this.postgres && q.image !== undefined && q.image !== '' ? await this.imageRefsMatching(q.image) : undefined;
    // No stored image reference matches: neither does any container.
    if (imageRefs !== undefined && imageRefs.length === 0) return [];
    const searchMatch = !this.postgres && q.search !== undefined ? await this.sqliteSearchMatch(q.search) : undefined;
    const filterOrder = sort === undefined || sort.field === 'agent' ? 'default' : sort.field === 'state' ? 'state' : 'other';
    const conds = this.containerListFilters(q, filterOrder, imageRefs, searchMatch);
    // No parallel workers for a page on PostgreSQL: the walk usually stops after a few thousand
    // index entries, but the planner, underestimating how many rows pass the label and image
    // filters, plans a parallel scan of the whole index, and starting its workers cost ~50 ms a
    // page on a busy 2-core host (10× the scan). On the listReads pool's connections the setting
    // is the session's (one round trip a page); without that pool, SET LOCAL in a transaction
    // of its own (four: BEGIN, SET LOCAL, SELECT, COMMIT).
    const run = async (query: RawBuilder<ContainerKeyRow>): Promise<ContainerKeyRow[]> =>
      this.listReads !== undefined
        ? (await query.execute(this.listReads)).rows
        : this.postgres
          ? await this.db.transaction().execute(async (trx) => {
            await sql`set local max_parallel_workers_per_gather = 0`.execute(trx);
            return (await query.execute(trx)).rows;
          })
          : (await query.execute(this.db)).rows;
    // PostgreSQL, free text the trigram indexes can answer: the page may be read from their
    // bitmap and sorted rather than by a walk of the list's index (decided below, pgSearchProbe).
    const pgSearchIndexed = this.postgres && q.search !== undefined && trigramIndexable(q.search.toLowerCase()) && (await this.pgHasSearchIndexes());
    const runSearchFirst = async (query: RawBuilder<ContainerKeyRow>): Promise<ContainerKeyRow[]> =>
      (this.listReads ?? this.db).transaction().execute(async (trx) => {
        await sql`set local max_parallel_workers_per_gather = 0`.execute(trx);
        await sql`set local enable_indexscan = off`.execute(trx);
        await sql`set local enable_indexonlyscan = off`.execute(trx);
        return (await query.execute(trx)).rows;
      });
    const dir = sql.raw(desc ? 'desc' : 'asc');
    const cmp = sql.raw(desc ? '<' : '>');
    const page = (n: number | undefined) => (n !== undefined ? sql` limit ${n}` : sql``);
    const c = (col: string) => sql.ref(`containers.${col}`);
    let keys: ContainerKeyRow[];
    // The usage sorts (cpu, memory) without an offset walk the usage index in value order and
    // stop at the page (usageSortedKeys): the one statement below joins every container to its
    // usage and sorts them all — on PostgreSQL a hash join and a top-N sort, 13-26 ms of its
    // CPU at 10,000 containers but ~1 s at 200,000 (0024 work, BENCHMARKS.md). On PostgreSQL a
    // filter that bounds the matches by itself (one agent's containers, a rule's open
    // violations) reads those first and sorts them (pgUsageSortedFilterFirst): walking the
    // usage index would probe most of the fleet to find them.
    // A filter few measured containers pass (usageWalkIsSparse: `state=exited`, a rare label)
    // keeps the two walks but finds the measured matches from the filter's side: each match's
    // usage by primary key, only those with a reading sorted (usageSortedKeys, 'matches'), then
    // the unmeasured walk stops at the page. Reading every match and sorting them all cost
    // ~100 ms at 20,000 exited containers (BENCHMARKS.md, session 14).
    const noOffset = !(offset !== undefined && offset > 0);
    const pgBounded = usageSort && noOffset && this.postgres && (q.agentId !== undefined || q.rule !== undefined);
    const sparse = usageSort && noOffset && !pgBounded && (await this.usageWalkIsSparse(sort.field as 'cpu' | 'memory', desc, q, conds, q.after, limit));
    if (usageSort && noOffset && !pgBounded) {
      // From the filter's side the filter should use its own index: the default order's conditions.
      const matchConds = sparse ? this.containerListFilters(q, 'default', imageRefs, searchMatch) : conds;
      keys = await this.usageSortedKeys(sort.field as 'cpu' | 'memory', desc, matchConds, q.after, limit, run, sparse ? 'matches' : 'usage');
    } else if (pgBounded) {
      keys = await run(this.pgUsageSortedFilterFirst(sort.field as 'cpu' | 'memory', desc, conds, q.after, limit));
    } else {
      // The order's columns, each once (the old ORDER BY name, agent_id, name, id is this order:
      // a repeated column orders nothing, but hid the index from SQLite's planner).
      const order =
        sort === undefined || sort.field === 'agent' ? [c('agent_id'), c('name'), c('id')]
        : sort.field === 'name' ? [c('name'), c('agent_id'), c('id')]
        : sort.field === 'state' ? [c('state'), c('agent_id'), c('name'), c('id')]
        : sort.field === 'image' ? [c('image_ref'), c('agent_id'), c('name'), c('id')]
        : undefined;
      const where = [...conds];
      let from = sql`${sql.table('containers')}`;
      let sortValue = sql``;
      if (order === undefined) {
        // cpu/memory with an offset: the latest usage, -1 without one, sorted.
        const col = sql.ref(`container_usage.${sort!.field === 'cpu' ? 'cpu_percent' : 'memory_bytes'}`);
        from = sql`${sql.table('containers')} left join ${sql.table('container_usage')} on ${sql.ref('container_usage.agent_id')} = ${c('agent_id')} and ${sql.ref('container_usage.container_id')} = ${c('id')}`;
        sortValue = sql`, coalesce(${col}, -1) as sort_value`;
        if (q.after !== undefined) {
          const a = q.after;
          if (a.sortValue === undefined) throw new BulkheadError('BK_ERR_INTERNAL', 'a sorted container list needs the position\'s sort value');
          where.push(sql<SqlBool>`(coalesce(${col}, -1), ${c('agent_id')}, ${c('name')}, ${c('id')}) ${cmp} (${a.sortValue}, ${a.agentId}, ${a.name}, ${a.id})`);
        }
        const orderBy = sql.join([sql`coalesce(${col}, -1) ${dir}`, ...[c('agent_id'), c('name'), c('id')].map((e) => sql`${e} ${dir}`)]);
        keys = await run(sql<ContainerKeyRow>`select ${c('agent_id')}, ${c('name')}, ${c('id')}${sortValue} from ${from} where ${sql.join(where, sql` and `)} order by ${orderBy}${page(limit)}${offset !== undefined && offset > 0 ? sql`${limit === undefined ? sql` limit ${Number.MAX_SAFE_INTEGER}` : sql``} offset ${offset}` : sql``}`);
      } else {
        if (sort !== undefined) sortValue = sql`, ${order[0]!} as sort_value`;
        if (q.after !== undefined) {
          const a = q.after;
          if (sort !== undefined && a.sortValue === undefined) throw new BulkheadError('BK_ERR_INTERNAL', 'a sorted container list needs the position\'s sort value');
          const values =
            sort === undefined || sort.field === 'agent' ? [a.agentId, a.name, a.id]
            : sort.field === 'name' ? [a.sortValue!, a.agentId, a.id]
            : [a.sortValue!, a.agentId, a.name, a.id];
          where.push(sql<SqlBool>`(${sql.join(order)}) ${cmp} (${sql.join(values.map((v) => sql`${v}`))})`);
        }
        const orderBy = sql.join(order.map((e) => sql`${e} ${dir}`));
        // Both dialects need a LIMIT before an OFFSET; "no limit" is spelled as a huge one.
        const skip = offset !== undefined && offset > 0 ? sql`${limit === undefined ? sql` limit ${Number.MAX_SAFE_INTEGER}` : sql``} offset ${offset}` : sql``;
        let pgSearchFirst = false;
        if (pgSearchIndexed) {
          // The conditions without the free text: the list's filters and the cursor's position.
          const base = [...this.containerListFilters({ ...q, search: undefined }, filterOrder, imageRefs), ...where.slice(conds.length)];
          pgSearchFirst = limit === undefined || (await this.pgSearchProbe(q.search!, base, orderBy, limit + (offset ?? 0), run));
        }
        keys = await (pgSearchFirst ? runSearchFirst : run)(sql<ContainerKeyRow>`select ${c('agent_id')}, ${c('name')}, ${c('id')}${sortValue} from ${from} where ${sql.join(where, sql` and `)} order by ${orderBy}${page(limit)}${skip}`);
      }
    }
    const usageValues = usageSort;
    if (keys.length === 0) return [];

    // The page's rows in one statement (a round trip per agent would cost a PostgreSQL page
    // dozens), or on SQLite one per PAGE_READ_BATCH keys: a list without a limit (the policy
    // dry-run reads every container) would otherwise pass more parameters than SQLite allows.
    let rows: Selectable<ContainersTable>[] = [];
    if (this.postgres) {
      rows = await pgRowsByKeys<Selectable<ContainersTable>>(this.db, 'containers', 'id', keys.map((k) => ({ agentId: k.agent_id, id: k.id })));
    } else {
      for (let i = 0; i < keys.length; i += PAGE_READ_BATCH) {
        const byAgent = new Map<string, string[]>();
        for (const k of keys.slice(i, i + PAGE_READ_BATCH)) {
          const ids = byAgent.get(k.agent_id);
          if (ids) ids.push(k.id);
          else byAgent.set(k.agent_id, [k.id]);
        }
        rows = rows.concat(await this.db
          .selectFrom('containers')
          .selectAll()
          .where((eb) => eb.or([...byAgent].map(([agentId, ids]) => eb.and([eb('agent_id', '=', agentId), eb('id', 'in', ids)]))))
          .execute());
      }
    }
    const found = new Map(rows.map((r) => [r.agent_id + '\u0000' + r.id, r]));
    const out: ContainerRecord[] = [];
    const keepText = keys.length <= PAGE_TEXT_MAX;
    for (const k of keys) {
      // A row purged between the two steps is left out; its neighbours keep their places.
      const r = found.get(k.agent_id + '\u0000' + k.id);
      if (!r) continue;
      const rec = toContainer(r, keepText);
      // PostgreSQL hands bigint (memory) back as a string.
      if (sort !== undefined) rec.sortValue = usageValues ? toNumber(k.sort_value) : String(k.sort_value);
      out.push(rec);
    }
    return out;
  }

  /**
   * The container list's filters as conditions on `containers` (never empty). On SQLite a
   * filter column that does not lead the sort's index is written `+column`, which keeps the
   * planner from starting at that filter's index (containers_state_list,
   * containers_project_list, the primary key for a rule's containers) and then sorting every
   * match — without statistics it takes any equality for a handful of rows, and `state =
   * 'running'` is nearly all of them. The walk of the sort's index then tests the filter in
   * the index and stops at the page. PostgreSQL keeps statistics (and has no unary + on text).
   */
  private containerListFilters(q: ContainerQuery, order: 'default' | 'state' | 'other', imageRefs?: readonly string[], searchMatch?: string): RawBuilder<SqlBool>[] {
    const c = (col: string) => sql.ref(`containers.${col}`);
    const notLeading = (col: string) => (this.postgres ? c(col) : sql`+${c(col)}`);
    const conds: RawBuilder<SqlBool>[] = [];
    if (q.agentId !== undefined) conds.push(sql<SqlBool>`${c('agent_id')} = ${q.agentId}`);
    if (q.state !== undefined) conds.push(sql<SqlBool>`${order === 'other' ? notLeading('state') : c('state')} = ${q.state}`);
    if (imageRefs !== undefined && imageRefs.length > 0) {
      // The substring filter resolved to the references it matches (imageRefsMatching): the same rows.
      conds.push(sql<SqlBool>`${c('image_ref')} in (${sql.join(imageRefs.map((r) => sql`${r}`))})`);
    } else if (q.image !== undefined && q.image !== '') {
      // lower() on both sides: SQLite's LIKE is case-insensitive, PostgreSQL's is not.
      const pattern = '%' + escapeLike(q.image.toLowerCase()) + '%';
      conds.push(sql<SqlBool>`lower(${c('image_ref')}) like ${pattern} escape '\\'`);
    }
    if (q.search !== undefined && q.search !== '') {
      const text = q.search.toLowerCase();
      // PostgreSQL: a text pg_trgm takes no trigram from (under 3 characters, or no letter or
      // digit) would make the trigram indexes read every entry (a bitmap of all 200,000 rows:
      // 478 ms against the list walk's 151, BENCHMARKS.md); `|| ''` (the same value) hides them.
      const hide = this.postgres && !trigramIndexable(text) ? sql` || ''` : sql``;
      conds.push(
        sql<SqlBool>`(${searchTextMatches(text, c, hide)})`,
      );
      // SQLite: the search index's candidates (a superset of the matches; the test above stays
      // the judge), when few enough to read them first (sqliteSearchMatch).
      if (searchMatch !== undefined) {
        conds.push(
          sql<SqlBool>`(${c('agent_id')}, ${c('id')}) in (select ${sql.ref('k.agent_id')}, ${sql.ref('k.id')} from ${sql.table('container_search')} join ${sql.table('container_search_keys')} as k on ${sql.ref('k.n')} = ${sql.ref('container_search.rowid')} where ${sql.ref('container_search')} match ${searchMatch})`,
        );
      }
    }
    if (q.includeRemoved !== true) conds.push(sql<SqlBool>`${c('removed')} = ${0}`);
    const project = order === 'default' ? c('project') : notLeading('project');
    if (q.projects !== undefined) conds.push(q.projects.length === 0 ? sql<SqlBool>`1 = 0` : sql<SqlBool>`${project} in (${sql.join(q.projects.map((p) => sql`${p}`))})`); // 0004_auth
    if (q.project !== undefined) conds.push(sql<SqlBool>`${project} = ${q.project}`);
    if (q.rule !== undefined) {
      // Open = not acknowledged and not covered by an exemption: what an operator still has to look at.
      // IN (subquery), not a correlated EXISTS: the rule's violations are read once through
      // violations_rule_at; SQLite planned the EXISTS as a walk of each container's agent's
      // violations (10,000 containers × 200 violations each: 1.3 s a page sorted by cpu). The
      // list is then a lookup for the walk of the sort's index, not where the walk starts.
      conds.push(
        sql<SqlBool>`(${notLeading('agent_id')}, ${notLeading('id')}) in (select ${sql.ref('violations.agent_id')}, ${sql.ref('violations.container_id')} from ${sql.table('violations')} where ${sql.ref('violations.rule_id')} = ${q.rule} and ${sql.ref('violations.ack_at')} is null and ${sql.ref('violations.exempted_by')} = '')`,
      );
    }
    for (const { key, value } of (q.labels ?? []).map(parseLabelFilter)) {
      const l = (col: string) => sql.ref(`container_labels.${col}`);
      conds.push(
        sql<SqlBool>`exists (select 1 from ${sql.table('container_labels')} where ${l('agent_id')} = ${c('agent_id')} and ${l('container_id')} = ${c('id')} and ${l('key')} = ${key}${value !== undefined ? sql` and ${l('value')} = ${value}` : sql``})`,
      );
    }
    if (conds.length === 0) conds.push(sql<SqlBool>`1 = 1`);
    return conds;
  }

  /**
   * SQLite: the FTS5 query (container_search, 0025_container_search) whose rows include every
   * container the free-text filter matches, or undefined to keep the walk of the list's index:
   * - under 3 characters (code points) the trigram index cannot answer (it matches nothing);
   * - more than SEARCH_DRIVE_MAX candidates: then the walk finds a page of matches soon (at
   *   least 1 row in 100 of 200,000 matches), and reading every candidate and sorting them
   *   would cost more than it. Counting stops at the bound.
   * The text is lowercased as the filter lowercases it; the tokenizer folds case (Unicode, a
   * superset of SQLite's ASCII-only lower() and LIKE), so folded trigrams of a match are the
   * query's. Inside an FTS5 string only `"` is special (doubled). The id's branch (a prefix)
   * looks for the text's first SEARCH_ID_HEAD characters in the id's first SEARCH_ID_HEAD.
   */
  private async sqliteSearchMatch(search: string): Promise<string | undefined> {
    const chars = [...search.toLowerCase()];
    if (chars.length < 3) return undefined;
    const phrase = (cs: string[]) => '"' + cs.join('').replace(/"/g, '""') + '"';
    const match = `{name image_ref} : ${phrase(chars)} OR id_head : ${phrase(chars.slice(0, SEARCH_ID_HEAD))}`;
    const { rows } = await sql<{ n: number }>`select count(*) as n from (select rowid from ${sql.table('container_search')} where ${sql.ref('container_search')} match ${match} limit ${SEARCH_DRIVE_MAX + 1})`.execute(this.db);
    return Number(rows[0]?.n ?? 0) <= SEARCH_DRIVE_MAX ? match : undefined;
  }

  /** PostgreSQL: whether 0025_container_search's trigram indexes exist (pg_trgm may be missing). */
  private async pgHasSearchIndexes(): Promise<boolean> {
    const r = (await sql<{ n: unknown }>`select count(*) as n from pg_indexes where schemaname = current_schema() and indexname in ('containers_search_name', 'containers_search_image', 'containers_search_id')`.execute(this.db)).rows[0];
    return toNumber(r?.n) === 3;
  }

  /**
   * PostgreSQL: whether a free-text page should be read from the trigram indexes' bitmap and
   * sorted, because the walk of the list's index would not find `need` matches within its
   * next SEARCH_PROBE_ROWS entries (a bounded probe of that walk, which stops at `need` hits).
   * The planner cannot tell: it estimates a substring from a 100-bucket histogram, so a q
   * matching one agent's 100 containers (0.05 %) looked like ~1 % of the rows, and it walked
   * the index expecting a page early — 300+ ms when the matches sat at its far end
   * (BENCHMARKS.md). A q most containers match fills the page in the probe's first rows, and
   * the walk is then cheaper than building the bitmap of every match. Same rows either way.
   */
  private async pgSearchProbe(
    search: string, base: RawBuilder<SqlBool>[], orderBy: RawBuilder<unknown>, need: number,
    run: (q: RawBuilder<ContainerKeyRow>) => Promise<ContainerKeyRow[]>,
  ): Promise<boolean> {
    const text = search.toLowerCase();
    const c = (col: string) => sql.ref(`containers.${col}`);
    const w = (col: string) => sql.ref(`w.${col}`);
    const rows = await run(sql<ContainerKeyRow>`select count(*) as sort_value from (select 1 from (select ${c('name')}, ${c('image_ref')}, ${c('id')} from ${sql.table('containers')} where ${sql.join(base.length > 0 ? base : [sql<SqlBool>`1 = 1`], sql` and `)} order by ${orderBy} limit ${SEARCH_PROBE_ROWS}) as w where ${searchTextMatches(text, w)} limit ${need}) as s`);
    return toNumber(rows[0]?.sort_value) < need;
  }

  /**
   * PostgreSQL: the distinct image references stored whose lowercase contains `image`, to
   * filter by `image_ref in (...)` instead of `lower(image_ref) like '%image%'`. PostgreSQL
   * cannot estimate a substring pattern (it took 1,253 matching rows of 10,000 for 16) and
   * then read a whole covering index and sorted it instead of walking the list's order and
   * stopping at the page; for a list of values it has each value's frequency (the column's
   * most common values), so the plan follows the data. A fleet runs few distinct references
   * (one per image tag), so they are read by a walk of containers_image_list that jumps from
   * one reference to the next (a recursive query: one index probe per distinct reference, not
   * a read of every row; PostgreSQL 15 has no skip scan). The test is the same expression as
   * before, on the same rows' references, so the list is the rows the LIKE matched (removed
   * containers' references included; the list's own filters still apply). Past
   * MAX_IMAGE_REFS distinct references this returns undefined and the caller keeps the LIKE.
   */
  private async imageRefsMatching(image: string): Promise<string[] | undefined> {
    const pattern = '%' + escapeLike(image.toLowerCase()) + '%';
    const ref = sql.ref('refs.ref');
    const col = sql.ref('containers.image_ref');
    const rows = (
      await sql<{ ref: string; hit: boolean }>`with recursive refs(ref) as ((select ${col} from ${sql.table('containers')} order by ${col} limit 1) union all select (select ${col} from ${sql.table('containers')} where ${col} > ${ref} order by ${col} limit 1) from refs where ${ref} is not null) select ${ref}, lower(${ref}) like ${pattern} escape '\\' as hit from refs where ${ref} is not null limit ${MAX_IMAGE_REFS + 1}`.execute(this.db)
    ).rows;
    if (rows.length > MAX_IMAGE_REFS) return undefined;
    return rows.filter((r) => r.hit).map((r) => r.ref);
  }

  /**
   * Page keys sorted by latest CPU or memory (-1 for a container without a reading, so
   * busiest-first puts them last), in two walks: the containers with a reading through
   * container_usage_cpu / _memory in value order (the usage table drives: CROSS JOIN keeps
   * SQLite's planner from starting at a filter's index and sorting every match), then those
   * without one in the default order. Descending, the measured come first; ascending, last.
   * The cursor's value says which walk it is in. The order is the one a single
   * `ORDER BY coalesce(value, -1), agent_id, name, id` gives (what an offset page uses).
   * `measuredFrom: 'matches'` (a filter few measured containers pass, usageWalkIsSparse)
   * finds the measured part from the filter's side instead: every match's usage looked up by
   * primary key and only the matches with a reading sorted — what the filter matches, not
   * the 180,000 usage rows of a fleet's walk, nor a sort of every match with the unmeasured
   * ones; the unmeasured walk after it still stops at the page.
   */
  private async usageSortedKeys(
    field: 'cpu' | 'memory', desc: boolean, conds: RawBuilder<SqlBool>[], after: ContainerPosition | undefined, limit: number | undefined,
    run: (q: RawBuilder<ContainerKeyRow>) => Promise<ContainerKeyRow[]>, measuredFrom: 'usage' | 'matches' = 'usage',
  ): Promise<ContainerKeyRow[]> {
    const c = (col: string) => sql.ref(`containers.${col}`);
    const value = sql.ref(`container_usage.${field === 'cpu' ? 'cpu_percent' : 'memory_bytes'}`);
    const usageAgent = sql.ref('container_usage.agent_id');
    const dir = sql.raw(desc ? 'desc' : 'asc');
    const cmp = sql.raw(desc ? '<' : '>');
    const page = (n: number | undefined) => (n !== undefined ? sql` limit ${n}` : sql``);
    if (after !== undefined && after.sortValue === undefined) throw new BulkheadError('BK_ERR_INTERNAL', 'a sorted container list needs the position\'s sort value');
    const afterValue = after === undefined ? undefined : toNumber(after.sortValue);
    const join = sql<SqlBool>`${c('agent_id')} = ${usageAgent} and ${c('id')} = ${sql.ref('container_usage.container_id')}`;
    // PostgreSQL: the container is looked up per usage row in a subquery it may not flatten
    // (`offset 0`). Flattened, it estimates the two-column join at 0.05 % of its rows (it
    // multiplies the two columns' selectivities), so it hashes both tables and sorts every
    // match (~1 s at 200,000 containers) instead of walking container_usage_cpu/_memory and
    // stopping at the page (an incremental sort of the ties on the value).
    const m = (col: string) => (this.postgres ? sql.ref(`m.${col}`) : c(col));
    // From the matches: SQLite's CROSS JOIN keeps containers (the filter's index) outside; on
    // PostgreSQL both sides stay subqueries (`offset 0`) so that it probes the usage primary
    // key per match rather than hashing all of container_usage.
    const fromMatches = measuredFrom === 'matches';
    const from = this.postgres
      ? fromMatches
        ? sql`(select ${c('agent_id')}, ${c('name')}, ${c('id')} from ${sql.table('containers')} where ${sql.join(conds, sql` and `)} offset 0) as m cross join lateral (select ${sql.ref('container_usage.agent_id')}, ${value} from ${sql.table('container_usage')} where ${sql.ref('container_usage.agent_id')} = ${m('agent_id')} and ${sql.ref('container_usage.container_id')} = ${m('id')} offset 0) as container_usage`
        : sql`${sql.table('container_usage')} cross join lateral (select ${c('agent_id')}, ${c('name')}, ${c('id')} from ${sql.table('containers')} where ${sql.join([join, ...conds], sql` and `)} offset 0) as m`
      : fromMatches
        ? sql`${sql.table('containers')} cross join ${sql.table('container_usage')}`
        : sql`${sql.table('container_usage')} cross join ${sql.table('containers')}`;
    const measured = (pos: ContainerPosition | undefined, n: number | undefined) => {
      const where = this.postgres ? [sql<SqlBool>`1 = 1`] : [join, ...conds];
      if (pos !== undefined) {
        // The first term alone lets the walk start at the position (a row value mixing two tables does not).
        where.push(sql<SqlBool>`${value} ${sql.raw(desc ? '<=' : '>=')} ${afterValue}`);
        where.push(sql<SqlBool>`(${value}, ${usageAgent}, ${m('name')}, ${m('id')}) ${cmp} (${afterValue}, ${pos.agentId}, ${pos.name}, ${pos.id})`);
      }
      return sql<ContainerKeyRow>`select ${m('agent_id')}, ${m('name')}, ${m('id')}, ${value} as sort_value from ${from} where ${sql.join(where, sql` and `)} order by ${value} ${dir}, ${usageAgent} ${dir}, ${m('name')} ${dir}, ${m('id')} ${dir}${page(n)}`;
    };
    const unmeasured = (pos: ContainerPosition | undefined, n: number | undefined) => {
      const where = [
        ...conds,
        sql<SqlBool>`not exists (select 1 from ${sql.table('container_usage')} where ${usageAgent} = ${c('agent_id')} and ${sql.ref('container_usage.container_id')} = ${c('id')})`,
      ];
      if (pos !== undefined) where.push(sql<SqlBool>`(${c('agent_id')}, ${c('name')}, ${c('id')}) ${cmp} (${pos.agentId}, ${pos.name}, ${pos.id})`);
      return sql<ContainerKeyRow>`select ${c('agent_id')}, ${c('name')}, ${c('id')}, -1 as sort_value from ${sql.table('containers')} where ${sql.join(where, sql` and `)} order by ${c('agent_id')} ${dir}, ${c('name')} ${dir}, ${c('id')} ${dir}${page(n)}`;
    };
    const walks: ('measured' | 'unmeasured')[] = desc ? ['measured', 'unmeasured'] : ['unmeasured', 'measured'];
    const cursorWalk = afterValue === undefined ? undefined : afterValue >= 0 ? 'measured' : 'unmeasured';
    const out: ContainerKeyRow[] = [];
    let started = cursorWalk === undefined;
    for (const w of walks) {
      let pos: ContainerPosition | undefined;
      if (!started) {
        if (w !== cursorWalk) continue;
        pos = after;
        started = true;
      }
      const rest = limit === undefined ? undefined : limit - out.length;
      if (rest !== undefined && rest <= 0) break;
      out.push(...(await run(w === 'measured' ? measured(pos, rest) : unmeasured(pos, rest))));
    }
    return out;
  }

  /**
   * Whether walking the usage index (usageSortedKeys' measured walk) would read much of it to
   * fill the page: the filter passes few measured containers — `state=exited` (no exited
   * container has a reading: every usage row is probed, 2 s on PostgreSQL at 200,000), a rare
   * label or project. A bounded probe decides: of the next USAGE_PROBE_ROWS usage rows in walk
   * order (at least 10 a page), do at least `limit` pass the filter? If not, the caller finds
   * the measured part from the matches' side (usageSortedKeys, 'matches'), which costs what the
   * filter matches rather than what the fleet holds. Only where the measured walk is the one
   * the page starts with (busiest first, or a cursor past the unmeasured); never without a
   * limit or a filter.
   */
  private async usageWalkIsSparse(field: 'cpu' | 'memory', desc: boolean, q: ContainerQuery, conds: RawBuilder<SqlBool>[], after: ContainerPosition | undefined, limit: number | undefined): Promise<boolean> {
    if (limit === undefined || limit === 0) return false;
    const filtered = q.agentId !== undefined || q.state !== undefined || q.project !== undefined || q.projects !== undefined || q.rule !== undefined ||
      (q.labels ?? []).length > 0 || (q.image !== undefined && q.image !== '') || (q.search !== undefined && q.search !== '');
    // SQLite with a rule: the walk (the rule's containers a lookup) measured faster than its
    // single statement, which tests the rule row by row (+agent_id, +id) and sorts.
    if (!filtered || (!this.postgres && q.rule !== undefined)) return false;
    const afterValue = after === undefined ? undefined : toNumber(after.sortValue);
    const startsMeasured = desc ? afterValue === undefined || afterValue >= 0 : afterValue !== undefined && afterValue >= 0;
    if (!startsMeasured) return false;
    const value = sql.ref(`container_usage.${field === 'cpu' ? 'cpu_percent' : 'memory_bytes'}`);
    const rows = Math.max(USAGE_PROBE_ROWS, limit * 10);
    const dir = sql.raw(desc ? 'desc' : 'asc');
    const from = afterValue !== undefined ? sql` where ${value} ${sql.raw(desc ? '<=' : '>=')} ${afterValue}` : sql``;
    const u = (col: string) => sql.ref(`u.${col}`);
    // The inner LIMIT stops the probe at the page's worth of hits: under a filter most rows
    // pass, it reads what the walk will, no more.
    const r = (
      await sql<{ hits: unknown }>`select count(*) as hits from (select 1 from (select ${sql.ref('container_usage.agent_id')}, ${sql.ref('container_usage.container_id')} from ${sql.table('container_usage')}${from} order by ${value} ${dir} limit ${rows}) as u where exists (select 1 from ${sql.table('containers')} where ${sql.ref('containers.agent_id')} = ${u('agent_id')} and ${sql.ref('containers.id')} = ${u('container_id')} and ${sql.join(conds, sql` and `)}) limit ${limit}) as hit`.execute(this.db)
    ).rows[0];
    return toNumber(r?.hits) < limit;
  }

  /**
   * PostgreSQL, a usage sort under a filter that bounds the matches by itself (one agent, a
   * rule's open violations): the matches first, each one's latest usage looked up by primary
   * key, then sorted by `coalesce(value, -1), agent_id, name, id` — the order usageSortedKeys
   * walks, so cursors are the same. Both subqueries are kept from being flattened (`offset 0`):
   * flattened, PostgreSQL hashes all of container_usage to join it (see usageSortedKeys).
   */
  private pgUsageSortedFilterFirst(field: 'cpu' | 'memory', desc: boolean, conds: RawBuilder<SqlBool>[], after: ContainerPosition | undefined, limit: number | undefined): RawBuilder<ContainerKeyRow> {
    const c = (col: string) => sql.ref(`containers.${col}`);
    const m = (col: string) => sql.ref(`m.${col}`);
    const value = sql`coalesce(${sql.ref('u.v')}, -1)`;
    const dir = sql.raw(desc ? 'desc' : 'asc');
    const where: RawBuilder<SqlBool>[] = [sql<SqlBool>`1 = 1`];
    if (after !== undefined) {
      if (after.sortValue === undefined) throw new BulkheadError('BK_ERR_INTERNAL', 'a sorted container list needs the position\'s sort value');
      where.push(sql<SqlBool>`(${value}, ${m('agent_id')}, ${m('name')}, ${m('id')}) ${sql.raw(desc ? '<' : '>')} (${toNumber(after.sortValue)}, ${after.agentId}, ${after.name}, ${after.id})`);
    }
    const usage = sql.ref(`container_usage.${field === 'cpu' ? 'cpu_percent' : 'memory_bytes'}`);
    return sql<ContainerKeyRow>`select ${m('agent_id')}, ${m('name')}, ${m('id')}, ${value} as sort_value from (select ${c('agent_id')}, ${c('name')}, ${c('id')} from ${sql.table('containers')} where ${sql.join(conds, sql` and `)} offset 0) as m left join lateral (select ${usage} as v from ${sql.table('container_usage')} where ${sql.ref('container_usage.agent_id')} = ${m('agent_id')} and ${sql.ref('container_usage.container_id')} = ${m('id')} offset 0) as u on true where ${sql.join(where, sql` and `)} order by ${value} ${dir}, ${m('agent_id')} ${dir}, ${m('name')} ${dir}, ${m('id')} ${dir}${limit !== undefined ? sql` limit ${limit}` : sql``}`;
  }

  async purgeRemovedContainers(before: Date): Promise<number> {
    // Labels go with their container by ON DELETE CASCADE.
    const r = await this.db
      .deleteFrom('containers')
      .where('removed', '=', 1)
      .where('updated_at', '<', before.getTime())
      .executeTakeFirst();
    return Number(r.numDeletedRows);
  }

  /**
   * Metrics: the live containers by state, summed from container_counts (0024_summary_counts,
   * kept by triggers per agent, project and state) — a few thousand rows at fleet size, not a
   * GROUP BY over every container (on SQLite that held the event loop 100+ ms per scrape at
   * 200,000 containers). A state whose rows all fell to 0 is left out, as the count of no rows was.
   */
  async countContainersByState(): Promise<Record<string, number>> {
    const rows = await this.db
      .selectFrom('container_counts')
      .select(['state', (eb) => eb.fn.sum<number | string | bigint>('n').as('n')])
      .groupBy('state')
      .having((eb) => eb.fn.sum('n'), '>', 0)
      .execute();
    return Object.fromEntries(rows.map((r) => [r.state, Number(r.n)]));
  }

  // ---- policy (0002_policy) ---------------------------------------------------

  async insertPolicyVersion(p: Omit<PolicyVersionRecord, 'version'>, o: { onlyIfNone?: boolean } = {}): Promise<PolicyVersionRecord> {
    // max+1 inside a transaction; the primary key turns a lost race (two
    // controllers on one PostgreSQL) into a conflict, retried with the next number.
    for (let attempt = 0; ; attempt++) {
      try {
        const inserted = await this.db.transaction().execute(async (trx) => {
          // PostgreSQL: controllers sharing the database queue here instead of racing for max+1 (a burst exhausted the retries).
          if (this.postgres) await sql`lock table policies in share row exclusive mode`.execute(trx);
          const row = await trx.selectFrom('policies').select((eb) => eb.fn.max('version').as('v')).executeTakeFirst();
          // Replicas starting together on an empty database: the first installs the default policy, the others take it.
          if (o.onlyIfNone && row?.v !== null && row?.v !== undefined) return undefined;
          const version = (row?.v === null || row?.v === undefined ? 0 : toNumber(row.v)) + 1;
          await trx
            .insertInto('policies')
            .values({
              version,
              name: p.name,
              yaml: p.yaml,
              json: p.json,
              sha256: p.sha256,
              created_at: p.createdAt.getTime(),
              created_by: p.createdBy,
              comment: p.comment,
            })
            .execute();
          return { ...p, version };
        });
        if (inserted) return inserted;
        const latest = await this.getPolicy();
        if (latest) return latest;
      } catch (e) {
        if (attempt >= 4 || !isUniqueViolation(e)) throw e;
      }
    }
  }

  async getPolicy(version?: number): Promise<PolicyVersionRecord | undefined> {
    let qb = this.db.selectFrom('policies').selectAll();
    qb = version === undefined ? qb.orderBy('version', 'desc').limit(1) : qb.where('version', '=', version);
    const row = await qb.executeTakeFirst();
    return row && toPolicyVersion(row);
  }

  async listPolicyVersions(): Promise<PolicyVersionSummary[]> {
    const rows = await this.db
      .selectFrom('policies')
      .select(['version', 'name', 'sha256', 'created_at', 'created_by', 'comment'])
      .orderBy('version', 'desc')
      .execute();
    return rows.map((r) => ({
      version: toNumber(r.version),
      name: r.name,
      sha256: r.sha256,
      createdAt: toDate(r.created_at),
      createdBy: r.created_by,
      comment: r.comment,
    }));
  }

  async setAgentPolicyStatus(st: AgentPolicyStatusRecord): Promise<void> {
    await this.db
      .insertInto('agent_policy_status')
      .values({ agent_id: st.agentId, version: st.version, applied: st.applied ? 1 : 0, error: st.error, updated_at: st.updatedAt.getTime() })
      .onConflict((oc) =>
        oc.column('agent_id').doUpdateSet((eb) => ({
          version: eb.ref('excluded.version'),
          applied: eb.ref('excluded.applied'),
          error: eb.ref('excluded.error'),
          updated_at: eb.ref('excluded.updated_at'),
        })),
      )
      .execute();
  }

  async getAgentPolicyStatus(agentId: string): Promise<AgentPolicyStatusRecord | undefined> {
    const row = await this.db.selectFrom('agent_policy_status').selectAll().where('agent_id', '=', agentId).executeTakeFirst();
    return row && toPolicyStatus(row);
  }

  async insertViolation(v: ViolationRecord): Promise<boolean> {
    const r = await this.db
      .insertInto('violations')
      .values({
        id: v.id,
        agent_id: v.agentId,
        container_id: v.containerId,
        container_name: v.containerName,
        image_ref: v.imageRef,
        project: v.project,
        rule_id: v.ruleId,
        severity: v.severity,
        mode: v.mode,
        source: v.source,
        message: v.message,
        evidence_json: v.evidenceJson,
        denied: v.denied ? 1 : 0,
        action_type: v.action.type,
        action_result: v.action.result,
        action_error: v.action.error,
        action_duration_ms: Number.isFinite(v.action.durationMs) ? v.action.durationMs : 0,
        at: v.at.getTime(),
        policy_version: v.policyVersion,
        exempted_by: v.exemptedBy,
        alert_pending: v.alertPending ? 1 : null,
      })
      .onConflict((oc) => oc.column('id').doNothing())
      .executeTakeFirst();
    return Number(r.numInsertedOrUpdatedRows ?? 0) > 0;
  }

  async listViolations(q: ViolationQuery): Promise<ViolationRecord[]> {
    let qb = this.db.selectFrom('violations').selectAll();
    if (q.agentId !== undefined) qb = qb.where('agent_id', '=', q.agentId);
    if (q.ruleId !== undefined) qb = qb.where('rule_id', '=', q.ruleId);
    if (q.severity !== undefined) qb = qb.where('severity', '=', q.severity);
    if (q.mode !== undefined) qb = qb.where('mode', '=', q.mode);
    if (q.source !== undefined) qb = qb.where('source', '=', q.source);
    if (q.project !== undefined) qb = qb.where('project', '=', q.project);
    if (q.projects !== undefined) qb = qb.where(inProjects('project', q.projects)); // 0004_auth
    if (q.denied !== undefined) qb = qb.where('denied', '=', q.denied ? 1 : 0);
    if (q.acknowledged !== undefined) qb = qb.where('ack_at', q.acknowledged ? 'is not' : 'is', null); // 0007_violation_ack
    if (q.since !== undefined) qb = qb.where('at', '>=', q.since.getTime());
    if (q.until !== undefined) qb = qb.where('at', '<', q.until.getTime());
    if (q.container !== undefined && q.container !== '') {
      const ref = q.container;
      const bare = ref.startsWith('/') ? ref.slice(1) : ref;
      const lower = ref.toLowerCase();
      qb = qb.where((eb) =>
        eb.or([
          eb('container_id', '=', ref),
          eb('container_name', 'in', [bare, '/' + bare]),
          ...(/^[0-9a-f]{1,64}$/.test(lower) ? [sql<SqlBool>`${sql.ref('container_id')} like ${escapeLike(lower) + '%'} escape '\\'`] : []),
        ]),
      );
    }
    // Keyset paging on violations_at_id / violations_agent_at_id (0019_list_paging).
    if (q.after !== undefined) qb = qb.where(sql<SqlBool>`(${sql.ref('at')}, ${sql.ref('id')}) < (${q.after.at.getTime()}, ${q.after.id})`);
    qb = qb.orderBy('at', 'desc').orderBy('id', 'desc');
    const limit = checkCount(q.limit, 'limit');
    const offset = checkCount(q.offset, 'offset');
    if (limit !== undefined) qb = qb.limit(limit);
    if (offset !== undefined && offset > 0) qb = (limit === undefined ? qb.limit(Number.MAX_SAFE_INTEGER) : qb).offset(offset);
    const rows = await qb.execute();
    return rows.map(toViolation);
  }

  async listAlertPendingViolations(limit: number): Promise<ViolationRecord[]> {
    const rows = await this.db.selectFrom('violations').selectAll().where('alert_pending', '=', 1).orderBy('at').orderBy('id').limit(limit).execute();
    return rows.map(toViolation);
  }

  // ---- violation acknowledgements (0007_violation_ack) ----------------------------

  async getViolation(id: string): Promise<ViolationRecord | undefined> {
    const row = await this.db.selectFrom('violations').selectAll().where('id', '=', id).executeTakeFirst();
    return row && toViolation(row);
  }

  async acknowledgeViolation(id: string, ack: ViolationAck): Promise<boolean> {
    // Conditional on "not acknowledged yet": of two racing acknowledgements exactly one is recorded.
    const r = await this.db
      .updateTable('violations')
      .set({ ack_at: ack.at.getTime(), ack_by_key_id: ack.byKeyId, ack_by_name: ack.byName, ack_comment: ack.comment })
      .where('id', '=', id)
      .where('ack_at', 'is', null)
      .executeTakeFirst();
    return Number(r.numUpdatedRows) > 0;
  }

  async unacknowledgeViolation(id: string): Promise<boolean> {
    const r = await this.db
      .updateTable('violations')
      .set({ ack_at: null, ack_by_key_id: null, ack_by_name: null, ack_comment: null })
      .where('id', '=', id)
      .where('ack_at', 'is not', null)
      .executeTakeFirst();
    return Number(r.numUpdatedRows) > 0;
  }

  async upsertScan(sc: ScanRecord): Promise<void> {
    await this.db
      .insertInto('scans')
      .values({
        digest: sc.digest,
        scanner: sc.scanner,
        scanned_at: sc.scannedAt.getTime(),
        summary_json: JSON.stringify(sc.summary),
        uploaded_at: sc.uploadedAt.getTime(),
      })
      .onConflict((oc) =>
        oc.column('digest').doUpdateSet((eb) => ({
          scanner: eb.ref('excluded.scanner'),
          scanned_at: eb.ref('excluded.scanned_at'),
          summary_json: eb.ref('excluded.summary_json'),
          uploaded_at: eb.ref('excluded.uploaded_at'),
        })),
      )
      .execute();
  }

  async getScan(digest: string): Promise<ScanRecord | undefined> {
    const row = await this.db.selectFrom('scans').selectAll().where('digest', '=', digest).executeTakeFirst();
    return row && toScan(row);
  }

  async listScans(q: { limit?: number; offset?: number } = {}): Promise<ScanRecord[]> {
    let qb = this.db.selectFrom('scans').selectAll().orderBy('scanned_at', 'desc').orderBy('digest');
    const limit = checkCount(q.limit, 'limit');
    const offset = checkCount(q.offset, 'offset');
    if (limit !== undefined) qb = qb.limit(limit);
    if (offset !== undefined && offset > 0) qb = (limit === undefined ? qb.limit(Number.MAX_SAFE_INTEGER) : qb).offset(offset);
    const rows = await qb.execute();
    return rows.map(toScan);
  }
}

// ---- helpers ------------------------------------------------------------------

/** `first`: where the first statement is built (KyselyStore.clearingStateHash), else `trx`. */
async function upsertMany(trx: Transaction<Database>, agentId: string, list: ContainerFacts__Output[], ms: number, first: QueryCreator<Database> = trx): Promise<void> {
  for (let i = 0; i < list.length; i += CONTAINER_BATCH) {
    const batch = list.slice(i, i + CONTAINER_BATCH);
    await (i === 0 ? first : trx)
      .insertInto('containers')
      .values(
        batch.map((c) => ({
          agent_id: agentId,
          id: c.id,
          name: c.name ?? '',
          image_ref: c.imageRef ?? '',
          state: c.state ?? '',
          facts_json: JSON.stringify(c),
          updated_at: ms,
          removed: 0,
          project: containerProject(c), // 0004_auth
        })),
      )
      .onConflict((oc) =>
        oc.columns(['agent_id', 'id']).doUpdateSet((eb) => ({
          name: eb.ref('excluded.name'),
          image_ref: eb.ref('excluded.image_ref'),
          state: eb.ref('excluded.state'),
          facts_json: eb.ref('excluded.facts_json'),
          updated_at: eb.ref('excluded.updated_at'),
          removed: eb.ref('excluded.removed'),
          project: eb.ref('excluded.project'),
        })),
      )
      .execute();
    await trx
      .deleteFrom('container_labels')
      .where('agent_id', '=', agentId)
      .where('container_id', 'in', batch.map((c) => c.id))
      .execute();
    const labels = batch.flatMap((c) =>
      Object.entries(c.labels ?? {}).map(([key, value]) => ({ agent_id: agentId, container_id: c.id, key, value: String(value) })),
    );
    for (let j = 0; j < labels.length; j += LABEL_BATCH) {
      await trx.insertInto('container_labels').values(labels.slice(j, j + LABEL_BATCH)).execute();
    }
  }
}

function dedupeById(list: ContainerFacts__Output[]): ContainerFacts__Output[] {
  // A multi-row ON CONFLICT DO UPDATE may not touch one row twice (PostgreSQL
  // rejects it), so a repeated id keeps its last occurrence.
  const byId = new Map<string, ContainerFacts__Output>();
  for (const c of list) {
    if (typeof c.id !== 'string' || c.id === '') throw new BulkheadError('BK_ERR_PROTOCOL', 'container facts without an id');
    byId.set(c.id, c);
  }
  return [...byId.values()];
}

/** "key" → presence; "key=value" → exact value (split at the first "="). */
export function parseLabelFilter(s: string): { key: string; value?: string } {
  const eq = s.indexOf('=');
  const key = eq < 0 ? s : s.slice(0, eq);
  if (key === '') throw new BulkheadError('BK_ERR_BAD_REQUEST', `label filter "${s}" has an empty key (expected key or key=value)`);
  return eq < 0 ? { key } : { key, value: s.slice(eq + 1) };
}

/** `column IN (projects)`; an empty list matches nothing (a scope with no projects sees nothing). */
export function inProjects(column: string, projects: readonly string[]) {
  return projects.length === 0 ? sql<SqlBool>`1 = 0` : sql<SqlBool>`${sql.ref(column)} in (${sql.join(projects.map((p) => sql`${p}`))})`;
}

/** usageWalkIsSparse: usage rows probed (at least; 10 a page above that). */
const USAGE_PROBE_ROWS = 1000;

/** A key row of the container list's first step. */
interface ContainerKeyRow {
  agent_id: string;
  name: string;
  id: string;
  sort_value?: unknown;
}

function checkCount(n: number | undefined, field: string): number | undefined {
  if (n === undefined) return undefined;
  if (!Number.isSafeInteger(n) || n < 0) throw new BulkheadError('BK_ERR_BAD_REQUEST', `${field} must be a non-negative integer, got ${n}`);
  return n;
}

/**
 * Whether a trigram index can narrow a substring search for `text`: 3 or more characters
 * (code points) with a letter or digit among them (pg_trgm builds trigrams from words only).
 */
function trigramIndexable(text: string): boolean {
  return [...text].length >= 3 && /[\p{L}\p{N}]/u.test(text);
}

/** SQLite: at most this many free-text candidates are read first and sorted (sqliteSearchMatch). */
const SEARCH_DRIVE_MAX = 2000;

/** PostgreSQL: how many list entries the free-text probe reads before preferring the trigram bitmap (pgSearchProbe). */
const SEARCH_PROBE_ROWS = 10_000;

/**
 * The free-text filter (`q`, lowercased by the caller) over a row's name, image reference and
 * id: a substring of the first two, a prefix of the id, `%`, `_` and `\` literal. The one
 * definition of a match; the search indexes only find candidates for it. `hide` (PostgreSQL:
 * `|| ''`) keeps the planner off the trigram indexes for a text they cannot narrow.
 */
function searchTextMatches(text: string, col: (name: string) => ReturnType<typeof sql.ref>, hide: RawBuilder<unknown> = sql``): RawBuilder<SqlBool> {
  const pattern = '%' + escapeLike(text) + '%';
  const idPrefix = escapeLike(text) + '%';
  return sql<SqlBool>`lower(${col('name')}${hide}) like ${pattern} escape '\\' or lower(${col('image_ref')}${hide}) like ${pattern} escape '\\' or ${col('id')} like ${idPrefix} escape '\\'`;
}

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

function toJoinToken(r: Selectable<JoinTokensTable>): JoinTokenRecord {
  return {
    id: r.id,
    secretHash: r.secret_hash,
    createdAt: toDate(r.created_at),
    expiresAt: toDate(r.expires_at),
    usedAt: toDateOrNull(r.used_at),
    usedByAgent: r.used_by_agent,
    revokedAt: toDateOrNull(r.revoked_at),
    description: r.description,
  };
}

function toApiKey(r: Selectable<ApiKeysTable>): ApiKeyRecord {
  return {
    id: r.id,
    name: r.name,
    secretHash: r.secret_hash,
    role: r.role as ApiKeyRecord['role'],
    createdAt: toDate(r.created_at),
    expiresAt: toDateOrNull(r.expires_at),
    revokedAt: toDateOrNull(r.revoked_at),
    projects: parseProjects(r.projects_json),
    lastUsedAt: toDateOrNull(r.last_used_at),
    createdBy: r.created_by,
    actions: parseActions(r.actions_json),
  };
}

function parseActions(json: string | null | undefined): string[] {
  try {
    const v: unknown = JSON.parse(json ?? '[]');
    if (Array.isArray(v)) return v.filter((p): p is string => typeof p === 'string');
  } catch {
    // fall through
  }
  // Unreadable limits: fail closed with an action no route has.
  return ['\u0000unreadable'];
}

function parseProjects(json: string | null | undefined): string[] {
  try {
    const v: unknown = JSON.parse(json ?? '[]');
    return Array.isArray(v) ? v.filter((p): p is string => typeof p === 'string') : [];
  } catch {
    // Unreadable scope: fail closed with a project nobody has.
    return ['\u0000unreadable'];
  }
}

function toAgent(r: Selectable<AgentsTable> & { container_count: unknown } & JoinedPolicyStatus): AgentRecord {
  return {
    id: r.id,
    hostname: r.hostname,
    status: r.status as AgentStatus,
    agentVersion: r.agent_version,
    host: r.host_json === null ? null : (JSON.parse(r.host_json) as HostFacts__Output),
    certSerial: r.cert_serial,
    certNotAfter: toDate(r.cert_not_after),
    ...(r.prev_cert_serial ? { prevCertSerial: r.prev_cert_serial } : {}),
    ...(r.state_hash ? { stateHash: r.state_hash } : {}),
    enrolledAt: toDate(r.enrolled_at),
    lastSeenAt: toDateOrNull(r.last_seen_at),
    connectedAt: toDateOrNull(r.connected_at),
    revokedAt: toDateOrNull(r.revoked_at),
    ...(r.cert_ca !== null && r.cert_ca !== undefined ? { certCa: r.cert_ca } : {}),
    ...(r.trusted_cas !== null && r.trusted_cas !== undefined ? { trustedCas: parseStringArray(r.trusted_cas) } : {}),
    containerCount: r.container_count === null || r.container_count === undefined ? 0 : toNumber(r.container_count),
    // Absent (not null) until the agent reports one, so agent records round-trip as inserted.
    ...withPolicyStatus(r),
  };
}

/** The most rows a read keeps their facts' stored text for (the API's largest page is 1,000, plus the one that says another follows). */
const PAGE_TEXT_MAX = 1001;

/**
 * @param keepText remember the facts' stored text for the API's page writer (stored-facts.ts):
 *   only for a page of at most PAGE_TEXT_MAX rows — a read of every container (the policy
 *   dry-run's, 200,000 at fleet size) would hold each text beside its parsed facts.
 */
function toContainer(r: Selectable<ContainersTable>, keepText = false): ContainerRecord {
  return {
    agentId: r.agent_id,
    id: r.id,
    name: r.name,
    imageRef: r.image_ref,
    state: r.state,
    facts: keepText ? parseStoredFacts<ContainerFacts__Output>(r.facts_json) : (JSON.parse(r.facts_json) as ContainerFacts__Output),
    updatedAt: toDate(r.updated_at),
    removed: toNumber(r.removed) !== 0,
  };
}

// ---- policy rows (0002_policy) ---------------------------------------------------

interface JoinedPolicyStatus {
  ps_version: unknown;
  ps_applied: unknown;
  ps_error: string | null;
  ps_updated_at: unknown;
}

function withPolicyStatus(r: Selectable<AgentsTable> & JoinedPolicyStatus): { policyStatus?: AgentPolicyStatusRecord } {
  if (r.ps_version === null || r.ps_version === undefined) return {};
  return {
    policyStatus: {
      agentId: r.id,
      version: toNumber(r.ps_version),
      applied: toNumber(r.ps_applied) !== 0,
      error: r.ps_error ?? '',
      updatedAt: toDate(r.ps_updated_at),
    },
  };
}

function toPolicyVersion(r: Selectable<PoliciesTable>): PolicyVersionRecord {
  return {
    version: toNumber(r.version),
    name: r.name,
    yaml: r.yaml,
    json: r.json,
    sha256: r.sha256,
    createdAt: toDate(r.created_at),
    createdBy: r.created_by,
    comment: r.comment,
  };
}

function toPolicyStatus(r: Selectable<AgentPolicyStatusTable>): AgentPolicyStatusRecord {
  return { agentId: r.agent_id, version: toNumber(r.version), applied: toNumber(r.applied) !== 0, error: r.error, updatedAt: toDate(r.updated_at) };
}

function toViolation(r: Selectable<ViolationsTable>): ViolationRecord {
  return {
    id: r.id,
    agentId: r.agent_id,
    containerId: r.container_id,
    containerName: r.container_name,
    imageRef: r.image_ref,
    project: r.project,
    ruleId: r.rule_id,
    severity: r.severity,
    mode: r.mode,
    source: r.source,
    message: r.message,
    evidenceJson: r.evidence_json,
    denied: toNumber(r.denied) !== 0,
    action: { type: r.action_type, result: r.action_result, error: r.action_error, durationMs: Number(r.action_duration_ms) },
    at: toDate(r.at),
    policyVersion: toNumber(r.policy_version),
    exemptedBy: r.exempted_by,
    ack:
      r.ack_at === null || r.ack_at === undefined
        ? null
        : { at: toDate(r.ack_at), byKeyId: r.ack_by_key_id ?? '', byName: r.ack_by_name ?? '', comment: r.ack_comment ?? '' },
    ...(r.alert_pending !== null && r.alert_pending !== undefined && toNumber(r.alert_pending) === 1 ? { alertPending: true } : {}),
  };
}

function toScan(r: Selectable<ScansTable>): ScanRecord {
  return {
    digest: r.digest,
    scanner: r.scanner,
    scannedAt: toDate(r.scanned_at),
    summary: JSON.parse(r.summary_json) as ScanRecord['summary'],
    uploadedAt: toDate(r.uploaded_at),
  };
}

/** SQLite: SQLITE_CONSTRAINT_PRIMARYKEY/UNIQUE; PostgreSQL: SQLSTATE 23505. */
function isUniqueViolation(e: unknown): boolean {
  const code = (e as { code?: unknown } | null)?.code;
  return code === '23505' || code === 'SQLITE_CONSTRAINT_PRIMARYKEY' || code === 'SQLITE_CONSTRAINT_UNIQUE';
}

function parseStringArray(json: string): string[] {
  try {
    const v: unknown = JSON.parse(json);
    return Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [];
  } catch {
    return [];
  }
}

/**
 * The agents columns a hello sets (markAgentConnected, acceptAgentHello: plus the trusted CAs
 * when given). A revoked agent is left alone by the callers' WHERE.
 */
export function helloAgentColumns(h: Pick<AgentHelloWrite, 'agentVersion' | 'host' | 'now' | 'trustedCas'>): { agent_version: string; host_json: string; status: 'online'; connected_at: number; last_seen_at: number; trusted_cas?: string } {
  const ms = h.now.getTime();
  return {
    agent_version: h.agentVersion, host_json: JSON.stringify(h.host), status: 'online', connected_at: ms, last_seen_at: ms,
    ...(h.trustedCas !== undefined ? { trusted_cas: JSON.stringify(h.trustedCas) } : {}),
  };
}

/** The columns acceptAgentHello reads (both stores), as stored: PostgreSQL returns bigints as strings. */
export interface HelloStateRow {
  hostname?: string;
  status: string;
  revoked_at: unknown;
  cert_serial: string;
  prev_cert_serial: string | null;
  trusted_cas: string | null;
  state_hash?: string | null;
  ps_version: unknown;
  ps_applied: unknown;
  ps_error: string | null;
}

export function toHelloState(r: HelloStateRow): AgentHelloState {
  return {
    ...(typeof r.hostname === 'string' ? { hostname: r.hostname } : {}),
    status: r.status as AgentStatus,
    revokedAt: toDateOrNull(r.revoked_at),
    certSerial: r.cert_serial,
    ...(r.prev_cert_serial ? { prevCertSerial: r.prev_cert_serial } : {}),
    ...(r.trusted_cas !== null && r.trusted_cas !== undefined ? { trustedCas: parseStringArray(r.trusted_cas) } : {}),
    ...(r.state_hash ? { stateHash: r.state_hash } : {}),
    ...(r.ps_version !== null && r.ps_version !== undefined
      ? { policyStatus: { version: toNumber(r.ps_version), applied: toNumber(r.ps_applied) !== 0, error: r.ps_error ?? '' } }
      : {}),
  };
}

/** An agent's stream lease, taken or moved to `owner` (claimAgentLease, a hello's write); `db` may be a transaction or a CTE's builder. */
export function upsertAgentLease(db: QueryCreator<Database>, agentId: string, owner: string, expiresAt: Date) {
  const expires_at = expiresAt.getTime();
  return db
    .insertInto('agent_leases')
    .values({ agent_id: agentId, owner, expires_at })
    .onConflict((oc) => oc.column('agent_id').doUpdateSet({ owner, expires_at }));
}
