// Owns the SQL of the audit trail, portable across SQLite and PostgreSQL like
// KyselyStore: integer-ms times, explicit seq numbers (max + 1 inside the
// append transaction; the primary key turns a lost race into a retry).
import { PostgresAdapter, sql, type Selectable } from 'kysely';
import { BulkheadError } from '@bulkhead/shared';
import type { AuditLogTable, Db } from '../store/schema';
import type { AuditEntry, AuditQuery, AuditRecord, AuditStore } from './audit-store';
import { GENESIS_HASH, canonicalJson, chainHash } from './audit-chain';

export class KyselyAuditStore implements AuditStore {
  /** PostgreSQL: several controllers (or pool connections) may append at once; see append(). */
  private readonly postgres: boolean;

  constructor(private readonly db: Db) {
    this.postgres = db.getExecutor().adapter instanceof PostgresAdapter;
  }

  async append(e: AuditEntry): Promise<AuditRecord> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.db.transaction().execute(async (trx) => {
          // PostgreSQL runs appends from several controllers truly in parallel; under
          // READ COMMITTED each would read the same head and all but one fail on the
          // primary key, so a burst exhausted the retries. The lock makes appenders
          // queue (readers are not blocked). SQLite has a single writer anyway.
          if (this.postgres) await sql`lock table audit_log in share row exclusive mode`.execute(trx);
          const last = await trx.selectFrom('audit_log').select(['seq', 'hash']).orderBy('seq', 'desc').limit(1).executeTakeFirst();
          const seq = last ? toNumber(last.seq) + 1 : 1;
          const prevHash = last?.hash ?? GENESIS_HASH;
          const fields = {
            seq,
            at: e.at.getTime(),
            actorKind: e.actorKind,
            actorId: e.actorId,
            actorName: e.actorName,
            method: e.method,
            route: e.route,
            path: e.path,
            action: e.action,
            targetJson: canonicalJson(e.target),
            clientIp: e.clientIp,
            status: e.status,
            code: e.code,
          };
          const hash = chainHash(prevHash, fields);
          await trx
            .insertInto('audit_log')
            .values({
              seq,
              at: fields.at,
              actor_kind: fields.actorKind,
              actor_id: fields.actorId,
              actor_name: fields.actorName,
              method: fields.method,
              route: fields.route,
              path: fields.path,
              action: fields.action,
              target_json: fields.targetJson,
              client_ip: fields.clientIp,
              status: fields.status,
              code: fields.code,
              prev_hash: prevHash,
              hash,
            })
            .execute();
          return { ...fields, prevHash, hash };
        });
      } catch (err) {
        if (attempt >= 4 || !isUniqueViolation(err)) throw err;
      }
    }
  }

  async list(q: AuditQuery): Promise<AuditRecord[]> {
    let qb = this.db.selectFrom('audit_log').selectAll();
    if (q.actorId !== undefined) qb = qb.where('actor_id', '=', q.actorId);
    if (q.action !== undefined) qb = qb.where('action', '=', q.action);
    if (q.method !== undefined) qb = qb.where('method', '=', q.method);
    if (q.status !== undefined) qb = qb.where('status', '=', q.status);
    if (q.since !== undefined) qb = qb.where('at', '>=', q.since.getTime());
    if (q.until !== undefined) qb = qb.where('at', '<', q.until.getTime());
    qb = qb.orderBy('seq', 'desc');
    if (q.limit !== undefined) qb = qb.limit(q.limit);
    if (q.offset !== undefined && q.offset > 0) qb = (q.limit === undefined ? qb.limit(Number.MAX_SAFE_INTEGER) : qb).offset(q.offset);
    return (await qb.execute()).map(toRecord);
  }

  async scan(afterSeq: number, limit: number): Promise<AuditRecord[]> {
    const rows = await this.db.selectFrom('audit_log').selectAll().where('seq', '>', afterSeq).orderBy('seq').limit(limit).execute();
    return rows.map(toRecord);
  }

  async head(): Promise<{ seq: number; hash: string } | undefined> {
    const row = await this.db.selectFrom('audit_log').select(['seq', 'hash']).orderBy('seq', 'desc').limit(1).executeTakeFirst();
    return row && { seq: toNumber(row.seq), hash: row.hash };
  }
}

function toRecord(r: Selectable<AuditLogTable>): AuditRecord {
  return {
    seq: toNumber(r.seq),
    at: toNumber(r.at),
    actorKind: r.actor_kind,
    actorId: r.actor_id,
    actorName: r.actor_name,
    method: r.method,
    route: r.route,
    path: r.path,
    action: r.action,
    targetJson: r.target_json,
    clientIp: r.client_ip,
    status: toNumber(r.status),
    code: r.code,
    prevHash: r.prev_hash,
    hash: r.hash,
  };
}

/** PostgreSQL hands bigint back as a string; SQLite as a number. */
function toNumber(v: unknown): number {
  if (typeof v === 'number') return v;
  if (typeof v === 'string' || typeof v === 'bigint') return Number(v);
  throw new BulkheadError('BK_ERR_INTERNAL', `expected an integer column, got ${typeof v}`);
}

/** SQLite: SQLITE_CONSTRAINT_PRIMARYKEY/UNIQUE; PostgreSQL: SQLSTATE 23505. */
function isUniqueViolation(e: unknown): boolean {
  const code = (e as { code?: unknown } | null)?.code;
  return code === '23505' || code === 'SQLITE_CONSTRAINT_PRIMARYKEY' || code === 'SQLITE_CONSTRAINT_UNIQUE';
}
