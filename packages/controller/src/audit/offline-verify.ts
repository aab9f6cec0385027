// Owns checking the audit chain straight from the database, with no
// controller running (`bulkhead-controller audit-log verify --data-dir DIR
// [--database-url URL]`): an auditor can verify a copy of the data directory
// (or the PostgreSQL database). Reads only; never migrates.
import { existsSync } from 'node:fs';
import { BulkheadError } from '@bulkhead/shared';
import { dataDirPaths } from '../pki/data-dir';
import { describeStore, openStore, storeConfigFor } from '../store/open-store';
import { verifyAuditChain, type AuditVerifyResult } from './audit-chain';
export { describeVerifyResult } from './audit-chain';

/** `databaseUrl`: the PostgreSQL store the controller uses (--database-url); absent = the data directory's SQLite file. */
export async function verifyAuditLogOffline(dataDir: string, databaseUrl?: string): Promise<AuditVerifyResult> {
  const config = storeConfigFor(dataDir, databaseUrl);
  const path = config.kind === 'sqlite' ? dataDirPaths(dataDir).db : describeStore(config).location;
  if (config.kind === 'sqlite' && !existsSync(path)) throw new BulkheadError('BK_ERR_NOT_INITIALIZED', `${path} does not exist; is ${dataDir} a controller data directory?`);
  const store = await openStore(config, { migrate: false, checkConnection: true });
  try {
    if (!store.audit) throw new BulkheadError('BK_ERR_INTERNAL', 'this store keeps no audit trail');
    try {
      return await verifyAuditChain(store.audit);
    } catch (cause) {
      // SQLite's words, then PostgreSQL's.
      if (/no such table: audit_log|relation "audit_log" does not exist/.test(String((cause as Error).message))) {
        throw new BulkheadError('BK_ERR_NOT_INITIALIZED', `${path} has no audit_log table yet; it is created when a controller of this version first starts`, { cause });
      }
      throw cause;
    }
  } finally {
    await store.close();
  }
}
