// Owns the SQL of reported signature verdicts (table signature_verdicts, migration
// 0021_signature_verdicts), portable across SQLite and PostgreSQL: one upsert per message
// with "newest decided wins" as the conflict condition, so replicas and agents writing the
// same key at once need no read-then-write and no lock of their own.
import { sql } from 'kysely';
import type { SignatureVerdict } from '@bulkhead/shared';
import type { Db } from '../store/schema';
import type { ReportedVerdictRow, SignatureVerdictStore, StoredVerdict } from './signature-verdict-store';

/** Rows per statement (5 parameters each). */
const BATCH = 200;
/** Keys per lookup statement. */
const LOOKUP_BATCH = 500;

export class KyselySignatureVerdictStore implements SignatureVerdictStore {
  constructor(private readonly db: Db) {}

  async recordSignatureVerdicts(agentId: string, rows: readonly ReportedVerdictRow[], now: Date): Promise<number> {
    // One row per key (PostgreSQL refuses to update one row twice in a statement), the newest
    // decided; in key order, so two writers of overlapping keys lock rows in the same order.
    const one = new Map<string, ReportedVerdictRow>();
    for (const r of rows) {
      const had = one.get(r.keySha256);
      if (!had || r.verdict.checkedAt >= had.verdict.checkedAt) one.set(r.keySha256, r);
    }
    const list = [...one.keys()].sort().map((k) => one.get(k)!);
    const at = now.getTime();
    let written = 0;
    for (let i = 0; i < list.length; i += BATCH) {
      const values = list.slice(i, i + BATCH).map((r) => ({
        key_sha256: r.keySha256,
        agent_id: agentId,
        verdict_json: JSON.stringify(r.verdict),
        checked_at: Math.trunc(r.verdict.checkedAt),
        reported_at: at,
      }));
      const res = await this.db
        .insertInto('signature_verdicts')
        .values(values)
        .onConflict((oc) =>
          oc.column('key_sha256')
            .doUpdateSet({
              agent_id: (eb) => eb.ref('excluded.agent_id'),
              verdict_json: (eb) => eb.ref('excluded.verdict_json'),
              checked_at: (eb) => eb.ref('excluded.checked_at'),
              reported_at: (eb) => eb.ref('excluded.reported_at'),
            })
            // Newest decided wins; an older verdict arriving late (a host whose cache is stale,
            // a slow replica) never overwrites a newer one.
            .where(sql<boolean>`excluded.checked_at >= signature_verdicts.checked_at`),
        )
        .executeTakeFirst();
      written += Number(res.numInsertedOrUpdatedRows ?? 0);
    }
    return written;
  }

  async getSignatureVerdicts(keys: readonly string[]): Promise<Map<string, StoredVerdict>> {
    const out = new Map<string, StoredVerdict>();
    const unique = [...new Set(keys)];
    for (let i = 0; i < unique.length; i += LOOKUP_BATCH) {
      const rows = await this.db
        .selectFrom('signature_verdicts')
        .select(['key_sha256', 'agent_id', 'verdict_json', 'reported_at'])
        .where('key_sha256', 'in', unique.slice(i, i + LOOKUP_BATCH))
        .execute();
      for (const r of rows) {
        let verdict: SignatureVerdict;
        try {
          verdict = JSON.parse(r.verdict_json) as SignatureVerdict;
        } catch {
          continue; // validated before it was stored; a hand-edited row is no verdict
        }
        out.set(r.key_sha256, { agentId: r.agent_id, verdict, reportedAt: new Date(Number(r.reported_at)) });
      }
    }
    return out;
  }

  async forgetSignatureVerdicts(agentId: string): Promise<number> {
    const r = await this.db.deleteFrom('signature_verdicts').where('agent_id', '=', agentId).executeTakeFirst();
    return Number(r.numDeletedRows);
  }

  async pruneSignatureVerdicts(before: Date, keep: number): Promise<number> {
    let deleted = Number((await this.db.deleteFrom('signature_verdicts').where('reported_at', '<', before.getTime()).executeTakeFirst()).numDeletedRows);
    // Beyond `keep` rows: the reported_at of the keep-th newest is the cut (portable: no
    // OFFSET without LIMIT, which SQLite lacks). Rows sharing that time go too (one message's rows
    // share it): at most `keep` remain.
    const cut = await this.db.selectFrom('signature_verdicts').select('reported_at').orderBy('reported_at', 'desc').limit(1).offset(Math.max(0, keep)).executeTakeFirst();
    if (cut) {
      deleted += Number((await this.db.deleteFrom('signature_verdicts').where('reported_at', '<=', Number(cut.reported_at)).executeTakeFirst()).numDeletedRows);
    }
    return deleted;
  }
}
