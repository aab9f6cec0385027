// Owns the SQL of browser sessions, portable across SQLite and PostgreSQL like KyselyStore.
import type { Selectable } from 'kysely';
import type { Db, SessionsTable } from '../store/schema';
import type { SessionRecord, SessionStore } from './session-store';

export class KyselySessionStore implements SessionStore {
  constructor(private readonly db: Db) {}

  async insertSession(s: SessionRecord): Promise<void> {
    await this.db
      .insertInto('sessions')
      .values({
        id_hash: s.idHash,
        key_id: s.keyId,
        created_at: s.createdAt.getTime(),
        last_used_at: s.lastUsedAt.getTime(),
        expires_at: s.expiresAt.getTime(),
        revoked_at: s.revokedAt?.getTime() ?? null,
        client_ip: s.clientIp,
      })
      .execute();
  }

  async getSession(idHash: string): Promise<SessionRecord | undefined> {
    const row = await this.db.selectFrom('sessions').selectAll().where('id_hash', '=', idHash).executeTakeFirst();
    return row && toSession(row);
  }

  async touchSession(idHash: string, at: Date): Promise<void> {
    await this.db.updateTable('sessions').set({ last_used_at: at.getTime() }).where('id_hash', '=', idHash).where('last_used_at', '<', at.getTime()).execute();
  }

  async revokeSession(idHash: string, at: Date): Promise<boolean> {
    const r = await this.db.updateTable('sessions').set({ revoked_at: at.getTime() }).where('id_hash', '=', idHash).where('revoked_at', 'is', null).executeTakeFirst();
    return Number(r.numUpdatedRows) === 1;
  }

  async capSessions(keyId: string, keep: number, at: Date): Promise<string[]> {
    // Capped at every login, so a key has at most keep + 1 live rows here: reading them all is bounded.
    const live = await this.db
      .selectFrom('sessions')
      .select(['id_hash'])
      .where('key_id', '=', keyId)
      .where('revoked_at', 'is', null)
      .where('expires_at', '>', at.getTime())
      .orderBy('created_at', 'desc')
      .orderBy('id_hash')
      .execute();
    const over = live.slice(keep).map((r) => r.id_hash);
    if (over.length === 0) return [];
    await this.db.updateTable('sessions').set({ revoked_at: at.getTime() }).where('id_hash', 'in', over).where('revoked_at', 'is', null).execute();
    return over;
  }

  async pruneSessions(expiredBefore: Date): Promise<number> {
    const r = await this.db
      .deleteFrom('sessions')
      .where((eb) => eb.or([eb('expires_at', '<', expiredBefore.getTime()), eb('revoked_at', 'is not', null)]))
      .executeTakeFirst();
    return Number(r.numDeletedRows);
  }
}

function toSession(r: Selectable<SessionsTable>): SessionRecord {
  return {
    idHash: r.id_hash,
    keyId: r.key_id,
    createdAt: new Date(Number(r.created_at)),
    lastUsedAt: new Date(Number(r.last_used_at)),
    expiresAt: new Date(Number(r.expires_at)),
    revokedAt: r.revoked_at === null ? null : new Date(Number(r.revoked_at)),
    clientIp: r.client_ip,
  };
}
