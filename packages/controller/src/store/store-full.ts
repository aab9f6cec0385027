// Owns recognizing "the store's disk is full" among the errors the SQLite and
// PostgreSQL drivers throw, so the API and the agent link can say so
// (BK_ERR_STORE_FULL) instead of a bare internal error.
import { BulkheadError } from '@bulkhead/shared';

/**
 * BK_ERR_STORE_FULL for an error (or any error in its `cause` chain) that
 * means the store's disk is full: SQLite's SQLITE_FULL (and an I/O error
 * carrying ENOSPC), PostgreSQL's disk_full (SQLSTATE 53100), Node's ENOSPC.
 * undefined for anything else.
 */
export function storeFullError(err: unknown): BulkheadError | undefined {
  for (let e = err, depth = 0; typeof e === 'object' && e !== null && depth < 8; e = (e as { cause?: unknown }).cause, depth++) {
    if (e instanceof BulkheadError && e.code === 'BK_ERR_STORE_FULL') return e;
    const code = String((e as { code?: unknown }).code ?? '');
    const message = String((e as { message?: unknown }).message ?? '');
    if (code === 'SQLITE_FULL' || code === '53100' || code === 'ENOSPC' || (code.startsWith('SQLITE_IOERR') && /ENOSPC|no space/i.test(message))) {
      return new BulkheadError('BK_ERR_STORE_FULL', `the controller's store is out of disk space (${code}: ${message.slice(0, 200)}); nothing more is stored until space is freed`, { cause: err });
    }
  }
  return undefined;
}
