// Owns checking the audit chain straight from the database file, with no
// controller running (`bulkhead-controller audit-log verify --data-dir DIR`):
// an auditor can verify a copy of the data directory. Reads only; never
// migrates.
import { existsSync } from 'node:fs';
import { BulkheadError } from '@bulkhead/shared';
import { dataDirPaths } from '../pki/data-dir';
import { openStore } from '../store/open-store';
import { verifyAuditChain, type AuditVerifyResult } from './audit-chain';
export { describeVerifyResult } from './audit-chain';

export async function verifyAuditLogOffline(dataDir: string): Promise<AuditVerifyResult> {
  const path = dataDirPaths(dataDir).db;
  if (!existsSync(path)) throw new BulkheadError('BK_ERR_NOT_INITIALIZED', `${path} does not exist; is ${dataDir} a controller data directory?`);
  const store = await openStore({ kind: 'sqlite', path }, { migrate: false });
  try {
    if (!store.audit) throw new BulkheadError('BK_ERR_INTERNAL', 'this store keeps no audit trail');
    try {
      return await verifyAuditChain(store.audit);
    } catch (cause) {
      if (/no such table: audit_log/.test(String((cause as Error).message))) {
        throw new BulkheadError('BK_ERR_NOT_INITIALIZED', `${path} has no audit_log table yet; it is created when a controller of this version first starts`, { cause });
      }
      throw cause;
    }
  } finally {
    await store.close();
  }
}
