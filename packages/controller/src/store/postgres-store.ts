// Owns the PostgreSQL connection pool. Queries are KyselyStore's, shared
// with SQLite; this file only knows how to reach the server.
import { Kysely, PostgresDialect } from 'kysely';
import { Pool } from 'pg';
import type { Database } from './schema';
import { KyselyStore } from './kysely-store';

export interface PostgresStoreOptions {
  /** libpq-style URL, e.g. postgres://bulkhead@db/bulkhead?sslmode=verify-full */
  connectionString: string;
  /** Pool size. Default 10. */
  maxConnections?: number;
}

export class PostgresStore extends KyselyStore {
  private constructor(db: Kysely<Database>) {
    super(db);
  }

  /** Creates the pool lazily (no connection is made until the first query). */
  static open(opts: PostgresStoreOptions): Promise<PostgresStore> {
    const pool = new Pool({ connectionString: opts.connectionString, max: opts.maxConnections ?? 10 });
    return Promise.resolve(new PostgresStore(new Kysely<Database>({ dialect: new PostgresDialect({ pool }) })));
  }
}
