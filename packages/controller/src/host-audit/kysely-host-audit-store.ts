// Owns the SQL of the host audit reports (table host_audits, migrations
// 0006_audit and 0008_audit_prune), portable across SQLite and PostgreSQL like KyselyStore:
// integer-ms times, JSON as text, ON CONFLICT DO NOTHING for resends.
import type { Selectable } from 'kysely';
import { BulkheadError } from '@bulkhead/shared';
import type { Db, HostAuditsTable } from '../store/schema';
import {
  HOST_AUDIT_HISTORY, HOST_AUDIT_PRUNE_HISTORY, type HostAuditHeader, type HostAuditPruneEntry, type HostAuditRecord, type HostAuditStore, type HostAuditSummary,
} from './host-audit-store';

export class KyselyHostAuditStore implements HostAuditStore {
  constructor(private readonly db: Db) {}

  async insertHostAudit(r: HostAuditRecord, keep = HOST_AUDIT_HISTORY, keepPruned = HOST_AUDIT_PRUNE_HISTORY): Promise<boolean> {
    if (!Number.isSafeInteger(keep) || keep < 1) throw new BulkheadError('BK_ERR_INTERNAL', `host audit history must keep at least 1 report, got ${keep}`);
    if (!Number.isSafeInteger(keepPruned) || keepPruned < 0) throw new BulkheadError('BK_ERR_INTERNAL', `host audit prune history must be a count ≥ 0, got ${keepPruned}`);
    const pruned = r.pruneJson ? Math.max(0, Math.trunc(r.summary.prune?.removed ?? 0)) : 0;
    return this.db.transaction().execute(async (trx) => {
      const res = await trx
        .insertInto('host_audits')
        .values({
          agent_id: r.agentId,
          taken_at: r.takenAt.getTime(),
          received_at: r.receivedAt.getTime(),
          score: Number.isFinite(r.summary.score) ? r.summary.score : 0,
          summary_json: JSON.stringify(r.summary),
          cis_json: r.cisJson,
          lockdown_json: r.lockdownJson,
          fixes_json: r.fixesJson,
          hygiene_json: r.hygieneJson,
          prune_json: r.pruneJson ?? null,
          pruned,
        })
        .onConflict((oc) => oc.columns(['agent_id', 'taken_at']).doNothing())
        .executeTakeFirst();
      if (Number(res.numInsertedOrUpdatedRows ?? 0) === 0) return false;
      // The oldest report still kept; everything older goes.
      const cutoff = await trx
        .selectFrom('host_audits')
        .select('taken_at')
        .where('agent_id', '=', r.agentId)
        .orderBy('taken_at', 'desc')
        .offset(keep - 1)
        .limit(1)
        .executeTakeFirst();
      if (!cutoff) return true;
      const cut = toNumber(cutoff.taken_at);
      await trx.deleteFrom('host_audits').where('agent_id', '=', r.agentId).where('taken_at', '<', cut).where('pruned', '=', 0).execute();
      // Reports that pruned something: the newest keepPruned of them stay, even beyond `keep`.
      const pruneCutoff = keepPruned === 0
        ? undefined
        : await trx
            .selectFrom('host_audits')
            .select('taken_at')
            .where('agent_id', '=', r.agentId)
            .where('pruned', '>', 0)
            .orderBy('taken_at', 'desc')
            .offset(keepPruned - 1)
            .limit(1)
            .executeTakeFirst();
      let old = trx.deleteFrom('host_audits').where('agent_id', '=', r.agentId).where('taken_at', '<', cut).where('pruned', '>', 0);
      if (pruneCutoff) old = old.where('taken_at', '<', toNumber(pruneCutoff.taken_at));
      else if (keepPruned > 0) return true; // fewer than keepPruned such reports: all stay
      await old.execute();
      return true;
    });
  }

  async latestHostAudit(agentId: string): Promise<HostAuditRecord | undefined> {
    const row = await this.db.selectFrom('host_audits').selectAll().where('agent_id', '=', agentId).orderBy('taken_at', 'desc').limit(1).executeTakeFirst();
    return row && toRecord(row);
  }

  async listHostAudits(agentId: string, limit = HOST_AUDIT_HISTORY): Promise<HostAuditHeader[]> {
    const rows = await this.db
      .selectFrom('host_audits')
      .select(['agent_id', 'taken_at', 'received_at', 'summary_json'])
      .where('agent_id', '=', agentId)
      .orderBy('taken_at', 'desc')
      .limit(limit)
      .execute();
    return rows.map((row) => ({ agentId: row.agent_id, takenAt: toDate(row.taken_at), receivedAt: toDate(row.received_at), summary: JSON.parse(row.summary_json) as HostAuditSummary }));
  }

  async listHostAuditPrunes(agentId: string, limit = HOST_AUDIT_HISTORY + HOST_AUDIT_PRUNE_HISTORY): Promise<HostAuditPruneEntry[]> {
    const rows = await this.db
      .selectFrom('host_audits')
      .select(['agent_id', 'taken_at', 'received_at', 'prune_json'])
      .where('agent_id', '=', agentId)
      .where('prune_json', 'is not', null)
      .orderBy('taken_at', 'desc')
      .limit(limit)
      .execute();
    return rows.map((row) => ({ agentId: row.agent_id, takenAt: toDate(row.taken_at), receivedAt: toDate(row.received_at), pruneJson: row.prune_json ?? '' }));
  }
}

function toRecord(row: Selectable<HostAuditsTable>): HostAuditRecord {
  return {
    agentId: row.agent_id,
    takenAt: toDate(row.taken_at),
    receivedAt: toDate(row.received_at),
    summary: JSON.parse(row.summary_json) as HostAuditSummary,
    cisJson: row.cis_json,
    lockdownJson: row.lockdown_json,
    fixesJson: row.fixes_json,
    hygieneJson: row.hygiene_json,
    pruneJson: row.prune_json,
  };
}

/** PostgreSQL returns bigint as a string, SQLite as a number. */
function toNumber(v: unknown): number {
  if (typeof v === 'number') return v;
  if (typeof v === 'string' || typeof v === 'bigint') return Number(v);
  throw new BulkheadError('BK_ERR_INTERNAL', `expected an integer column, got ${typeof v}`);
}

function toDate(v: unknown): Date {
  return new Date(toNumber(v));
}
