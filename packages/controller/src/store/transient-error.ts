// Owns recognizing "the store is briefly unable to answer" among the errors
// the SQLite and PostgreSQL drivers throw: a full connection pool, a dropped
// or refused connection, a deadlock or serialization failure, a busy SQLite
// file. Such a write is retried (with back-off) instead of failing the agent
// stream or dropping an alert: the same write succeeds once the database has
// caught up. Anything else (a constraint, a bad query, a full disk) is not.
import { BulkheadError } from '@bulkhead/shared';

/** PostgreSQL SQLSTATEs worth retrying: serialization failure, deadlock, too many connections, out of memory, server shutting down / restarting, lock not available, query cancelled (statement_timeout). */
const PG_TRANSIENT = new Set(['40001', '40P01', '53300', '53200', '57P01', '57P02', '57P03', '55P03', '57014']);
/** Node socket errors while talking to the database server. */
const NET_TRANSIENT = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN', 'ENOTCONN']);
/** pg / pg-pool raise these as plain Errors without a code. */
const PG_MESSAGES = /timeout exceeded when trying to connect|Connection terminated|connection timeout|Client has encountered a connection error|terminating connection/i;

/**
 * True for an error (or any error in its `cause` chain) that says the store is
 * momentarily unavailable or contended, so the same operation may succeed when
 * retried. A full disk is not transient here (storeFullError handles it).
 */
export function isTransientStoreError(err: unknown): boolean {
  for (let e = err, depth = 0; typeof e === 'object' && e !== null && depth < 8; e = (e as { cause?: unknown }).cause, depth++) {
    if (e instanceof BulkheadError && e.code !== 'BK_ERR_INTERNAL') return false; // the protocol or a limit said no: retrying changes nothing
    const code = String((e as { code?: unknown }).code ?? '');
    const message = String((e as { message?: unknown }).message ?? '');
    if (PG_TRANSIENT.has(code) || code.startsWith('08') || NET_TRANSIENT.has(code)) return true;
    if (code === 'SQLITE_BUSY' || code.startsWith('SQLITE_BUSY_') || code === 'SQLITE_LOCKED' || code.startsWith('SQLITE_LOCKED_')) return true;
    if (PG_MESSAGES.test(message)) return true;
  }
  return false;
}

/** Back-off before retry number `attempt` (0-based): 100 ms doubling, capped at `maxMs`, ±20 % jitter. */
export function retryDelayMs(attempt: number, maxMs = 5000): number {
  const base = Math.min(maxMs, 100 * 2 ** Math.min(attempt, 16));
  return Math.round(base * (0.8 + Math.random() * 0.4));
}
