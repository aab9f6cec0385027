// Owns the SQL of the event stream, portable across SQLite and PostgreSQL.
//
// Readers page by `seq > cursor`, so a row must never become visible after a row with a
// higher seq: that reader would skip it for good. Sequences and serial columns do not
// promise that on PostgreSQL (ids are handed out at insert, rows appear at commit, in any
// order). So seq is max + 1 inside the appending transaction, with the table locked against
// other appenders until commit (as the audit trail does): commit order is seq order,
// whichever replica appends. SQLite has one writer anyway. On PostgreSQL the appending
// transaction also NOTIFYs FLEET_EVENTS_CHANNEL, so readers on every replica wake at commit.
import { PostgresAdapter, sql, type Selectable } from 'kysely';
import type { Db, FleetEventsTable } from '../store/schema';
import { FLEET_EVENTS_CHANNEL, type FleetEventInput, type FleetEventQuery, type FleetEventRecord, type FleetEventStore } from './event-store';

export class KyselyEventStore implements FleetEventStore {
  private readonly postgres: boolean;

  constructor(private readonly db: Db) {
    this.postgres = db.getExecutor().adapter instanceof PostgresAdapter;
  }

  async appendEvents(events: readonly FleetEventInput[]): Promise<number[]> {
    if (events.length === 0) return [];
    if (this.postgres) return this.appendPostgres(events);
    return this.db.transaction().execute(async (trx) => {
      const last = await trx.selectFrom('fleet_events').select((eb) => eb.fn.max('seq').as('m')).executeTakeFirst();
      const first = (last?.m === null || last?.m === undefined ? 0 : Number(last.m)) + 1;
      const rows = events.map((e, i) => ({
        seq: first + i,
        at: e.at.getTime(),
        type: e.type,
        project: e.everyScope === true ? '' : (e.project ?? ''),
        every_scope: e.everyScope === true ? 1 : 0,
        agent_id: e.agentId ?? null,
        data_json: JSON.stringify(e.data),
      }));
      // Bounded parameter counts per statement (7 per row).
      for (let i = 0; i < rows.length; i += 500) await trx.insertInto('fleet_events').values(rows.slice(i, i + 500)).execute();
      return rows.map((r) => r.seq);
    });
  }

  /**
   * PostgreSQL: the same transaction in three round trips instead of six (a replica serving a
   * fleet appends a batch every few tens of milliseconds, and each statement costs the
   * controller CPU: BENCHMARKS.md, failover). `begin` and the table lock go as one simple query;
   * then one statement reads max(seq) — a snapshot taken after the lock, so it sees every
   * committed append — inserts the batch from arrays (7 parameters whatever its size) and
   * NOTIFYs (delivered at commit, only if it commits); then `commit`. Written by hand on one
   * pooled connection because Kysely's transaction sends each of these separately.
   */
  private appendPostgres(events: readonly FleetEventInput[]): Promise<number[]> {
    const col = <T>(f: (e: FleetEventInput) => T): T[] => events.map(f);
    return this.db.connection().execute(async (conn) => {
      try {
        await sql.raw('begin; lock table fleet_events in share row exclusive mode').execute(conn);
        const r = await sql<{ first: unknown; n: unknown }>`with mx as (select coalesce(max(seq), 0) as m from fleet_events),
ins as (
  insert into fleet_events (seq, at, type, project, every_scope, agent_id, data_json)
  select mx.m + v.i, v.at, v.type, v.project, v.every_scope, v.agent_id, v.data_json
  from mx, unnest(${col((e) => e.at.getTime())}::bigint[], ${col((e) => noNul(e.type))}::text[], ${col((e) => noNul(e.everyScope === true ? '' : (e.project ?? '')))}::text[],
    ${col((e) => (e.everyScope === true ? 1 : 0))}::int[], ${col((e) => (e.agentId === undefined || e.agentId === null ? null : noNul(e.agentId)))}::text[],
    ${col((e) => JSON.stringify(e.data))}::text[]) with ordinality as v(at, type, project, every_scope, agent_id, data_json, i)
  returning seq
)
select min(seq) as first, count(*) as n, pg_notify(${FLEET_EVENTS_CHANNEL}, max(seq)::text) from ins`.execute(conn);
        const done = await sql.raw<{ command?: string }>('commit').execute(conn);
        if (done.rows[0]?.command === 'ROLLBACK') throw new Error('appending fleet events: the transaction was rolled back at commit');
        const first = Number(r.rows[0]?.first);
        const n = Number(r.rows[0]?.n);
        if (!Number.isSafeInteger(first) || n !== events.length) throw new Error(`appending fleet events: ${n} of ${events.length} stored`);
        return events.map((_, i) => first + i);
      } catch (err) {
        await sql.raw('rollback').execute(conn).catch(() => undefined);
        throw err;
      }
    });
  }

  async listEvents(q: FleetEventQuery): Promise<FleetEventRecord[]> {
    let query = this.db.selectFrom('fleet_events').selectAll().where('seq', '>', q.after);
    if (q.upTo !== undefined) query = query.where('seq', '<=', q.upTo);
    if (q.projects !== undefined) {
      // Every-scope events, and the scope's own projects by exact name ('' never matches).
      const projects = q.projects.filter((p) => p !== '');
      query = query.where((eb) => (projects.length > 0 ? eb.or([eb('every_scope', '=', 1), eb('project', 'in', projects)]) : eb('every_scope', '=', 1)));
    }
    const rows = await query.orderBy('seq').limit(q.limit).execute();
    return rows.map(toEvent);
  }

  async lastEventSeq(): Promise<number> {
    const r = await this.db.selectFrom('fleet_events').select((eb) => eb.fn.max('seq').as('m')).executeTakeFirst();
    return r?.m === null || r?.m === undefined ? 0 : Number(r.m);
  }

  async firstEventSeq(): Promise<number | undefined> {
    const r = await this.db.selectFrom('fleet_events').select((eb) => eb.fn.min('seq').as('m')).executeTakeFirst();
    return r?.m === null || r?.m === undefined ? undefined : Number(r.m);
  }

  async pruneEvents(before: Date, keep: number): Promise<number> {
    const last = await this.lastEventSeq();
    const r = await this.db
      .deleteFrom('fleet_events')
      .where((eb) => eb.or([eb('at', '<', before.getTime()), eb('seq', '<=', last - keep)]))
      .executeTakeFirst();
    return Number(r.numDeletedRows);
  }
}

/** PostgreSQL text cannot hold U+0000 (the store's plugin replaces it in every other parameter; array elements are not seen by it). */
function noNul(s: string): string {
  return s.includes('\u0000') ? s.replaceAll('\u0000', '\uFFFD') : s;
}

function toEvent(r: Selectable<FleetEventsTable>): FleetEventRecord {
  let data: Record<string, unknown> = {};
  try {
    data = JSON.parse(r.data_json) as Record<string, unknown>;
  } catch {
    data = {};
  }
  return { seq: Number(r.seq), type: r.type, at: new Date(Number(r.at)), project: r.project, everyScope: Number(r.every_scope) === 1, agentId: r.agent_id, data };
}
