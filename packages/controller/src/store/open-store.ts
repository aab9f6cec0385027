// Owns choosing and opening the Store from configuration.
import { BulkheadError } from '@bulkhead/shared';
import type { Store } from './store';
import { SqliteStore } from './sqlite-store';
import { PostgresStore } from './postgres-store';

export type StoreConfig =
  | { kind: 'sqlite'; path: string; busyTimeoutMs?: number }
  | { kind: 'postgres'; connectionString: string; maxConnections?: number };

export interface OpenStoreOptions {
  /** Run migrations before returning. Default true (migrate() is idempotent). */
  migrate?: boolean;
}

export async function openStore(config: StoreConfig, opts: OpenStoreOptions = {}): Promise<Store> {
  let store: Store;
  switch (config.kind) {
    case 'sqlite':
      store = await SqliteStore.open(config);
      break;
    case 'postgres':
      store = await PostgresStore.open(config);
      break;
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
  }
  return store;
}
