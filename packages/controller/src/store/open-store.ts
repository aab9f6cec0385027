// Owns choosing and opening the Store from configuration: the embedded
// SQLite file in the data directory (default), or a PostgreSQL server named
// by a database URL (--database-url / BULKHEAD_DATABASE_URL).
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { BulkheadError, type Logger } from '@bulkhead/shared';
import type { Store } from './store';
import { SqliteStore } from './sqlite-store';
// pg is loaded only when PostgreSQL is configured (see postgres-url.ts).
import type * as PostgresStoreModule from './postgres-store';
import { describePostgresUrl } from './postgres-url';

export type StoreConfig =
  | { kind: 'sqlite'; path: string; busyTimeoutMs?: number }
  | { kind: 'postgres'; connectionString: string; maxConnections?: number; connectTimeoutMs?: number };

export interface OpenStoreOptions {
  /**
   * The data directory is initialized (its CA exists): an SQLite file that is
   * missing or empty then means the store was lost or truncated, not a new
   * install, and opening it would start the controller on an empty store.
   */
  existing?: boolean;
  /** Run migrations before returning. Default true (migrate() is idempotent). */
  migrate?: boolean;
  /** PostgreSQL: connect once before returning, failing with BK_ERR_STARTUP_FAILED. Default: as `migrate`. */
  checkConnection?: boolean;
  /** Where PostgreSQL's dropped idle connections are reported (warn). */
  logger?: Logger;
}

/** The SQLite file's name inside the data directory (pki/data-dir.ts names it too). */
export const SQLITE_FILE = 'bulkhead.db';

/**
 * The store a controller data directory uses: PostgreSQL when a database URL
 * is given (an empty string counts as none), else `DATA_DIR/bulkhead.db`.
 */
export function storeConfigFor(dataDir: string, databaseUrl?: string): StoreConfig {
  const url = databaseUrl?.trim() ?? '';
  if (url === '') return { kind: 'sqlite', path: join(dataDir, SQLITE_FILE) };
  describePostgresUrl(url); // throws BK_ERR_CONFIG_INVALID for anything but postgres(ql)://
  return { kind: 'postgres', connectionString: url };
}

/** For logs: where the store is, never a password. */
export function describeStore(config: StoreConfig): { kind: StoreConfig['kind']; location: string } {
  return { kind: config.kind, location: config.kind === 'sqlite' ? config.path : describePostgresUrl(config.connectionString) };
}

export async function openStore(config: StoreConfig, opts: OpenStoreOptions = {}): Promise<Store> {
  let store: Store;
  switch (config.kind) {
    case 'sqlite':
      if (opts.existing) refuseLostSqliteStore(config.path);
      store = await SqliteStore.open(config);
      break;
    case 'postgres': {
      const logger = opts.logger;
      const { PostgresStore } = require('./postgres-store') as typeof PostgresStoreModule;
      const pg = await PostgresStore.open({
        ...config,
        onIdleError: (err) => logger?.warn({ err: err.message, database: pg.description }, 'a pooled PostgreSQL connection failed; it is replaced on next use'),
      });
      store = pg;
      if (opts.checkConnection ?? opts.migrate ?? true) {
        try {
          await pg.checkConnection();
        } catch (e) {
          await pg.close().catch(() => undefined);
          throw e;
        }
      }
      break;
    }
    default:
      throw new BulkheadError('BK_ERR_CONFIG_INVALID', `unknown store kind "${(config as { kind: unknown }).kind}" (expected sqlite or postgres)`);
  }
  if (opts.migrate ?? true) {
    try {
      await store.migrate();
    } catch (e) {
      await store.close().catch(() => undefined);
      throw e;
    }
    if (config.kind === 'postgres') {
      // Without pg_trgm the controller runs, and q= scans (same results, slower): one warning.
      const search = await (store as PostgresStoreModule.PostgresStore).ensureSearchIndexes();
      if (search.missing.length > 0) {
        opts.logger?.warn(
          { missing: search.missing, err: search.reason },
          'free-text search (GET /v1/containers?q=) has no trigram index: it scans every container (same results, slower at fleet size). ' +
            'Fix: as a role allowed to, run `CREATE EXTENSION pg_trgm;` in this database (or allow it on a managed server), then restart the controller; it creates the indexes at start',
        );
      }
    }
  }
  return store;
}

function refuseLostSqliteStore(path: string): void {
  if (path === ':memory:') return;
  const size = existsSync(path) ? statSync(path).size : -1;
  if (size > 0) return;
  throw new BulkheadError(
    'BK_ERR_CONFIG_INVALID',
    `${path} is ${size < 0 ? 'missing' : 'empty'} though this data directory is initialized (its CA exists): the store was lost or truncated. ` +
      'Restore it from a backup; starting on an empty store would forget every agent, API key, policy and violation. ' +
      'To start over on purpose, move the data directory away and run `bulkhead-controller init` (every agent enrolls again).',
  );
}
