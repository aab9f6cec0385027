// Owns the embedded SQLite database: opening the file privately (0600 from
// creation), the connection pragmas, and nothing else — every query lives in
// KyselyStore so PostgreSQL runs the same SQL.
import { closeSync, mkdirSync, openSync } from 'node:fs';
import { dirname } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { Kysely, SqliteDialect, SqliteDriver, type DatabaseConnection, type Driver } from 'kysely';
import { BulkheadError } from '@bulkhead/shared';
import type { Database } from './schema';
import { KyselyStore } from './kysely-store';

export interface SqliteStoreOptions {
  /** Database file; ":memory:" for a throwaway in-process database (tests). */
  path: string;
  /** How long a writer waits for another connection's lock. Default 5000 ms. */
  busyTimeoutMs?: number;
}

export class SqliteStore extends KyselyStore {
  private constructor(db: Kysely<Database>, readonly path: string) {
    super(db);
  }

  /** Opens (creating if needed) the database file. Call migrate() before use. */
  static open(opts: SqliteStoreOptions): Promise<SqliteStore> {
    const busyTimeoutMs = opts.busyTimeoutMs ?? 5000;
    if (!Number.isSafeInteger(busyTimeoutMs) || busyTimeoutMs < 0) {
      throw new BulkheadError('BK_ERR_CONFIG_INVALID', `sqlite busyTimeoutMs must be a non-negative integer, got ${busyTimeoutMs}`);
    }
    let raw: BetterSqlite3.Database;
    try {
      if (opts.path !== ':memory:') {
        // SQLite would create the file with the umask's mode (often 0644);
        // creating it ourselves makes it 0600 from the first byte, and SQLite
        // gives the -wal/-shm files the main file's mode.
        mkdirSync(dirname(opts.path), { recursive: true, mode: 0o700 });
        closeSync(openSync(opts.path, 'a', 0o600));
      }
      raw = new BetterSqlite3(opts.path);
    } catch (cause) {
      throw new BulkheadError('BK_ERR_CONFIG_INVALID', `cannot open SQLite database ${opts.path}: ${(cause as Error).message}`, { cause });
    }
    try {
      // WAL lets the REST API read while the agent link writes; NORMAL
      // synchronous is durable across application crashes in WAL mode.
      raw.pragma('journal_mode = WAL');
      raw.pragma('synchronous = NORMAL');
      raw.pragma(`busy_timeout = ${busyTimeoutMs}`);
      raw.pragma('foreign_keys = ON');
    } catch (cause) {
      raw.close();
      throw new BulkheadError('BK_ERR_CONFIG_INVALID', `cannot configure SQLite database ${opts.path}: ${(cause as Error).message}`, { cause });
    }
    const db = new Kysely<Database>({ dialect: new KeepFirstErrorSqliteDialect(raw) });
    return Promise.resolve(new SqliteStore(db, opts.path));
  }
}

/**
 * SQLite rolls a transaction back by itself on some errors (SQLITE_FULL,
 * SQLITE_IOERR, SQLITE_NOMEM, …). Kysely's ROLLBACK after the failed
 * statement then fails with "cannot rollback - no transaction is active",
 * and that error replaces the real one: a full disk would be reported as
 * a confusing SQLITE_ERROR. Rolling back only an open transaction keeps
 * the first error.
 */
class KeepFirstErrorSqliteDialect extends SqliteDialect {
  constructor(private readonly raw: BetterSqlite3.Database) {
    super({ database: raw });
  }

  override createDriver(): Driver {
    const raw = this.raw;
    return new (class extends SqliteDriver {
      override async rollbackTransaction(connection: DatabaseConnection): Promise<void> {
        if (!raw.inTransaction) return; // SQLite already rolled it back
        await super.rollbackTransaction(connection);
      }
    })({ database: raw });
  }
}
