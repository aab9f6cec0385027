// Owns describing a PostgreSQL URL without its password. Apart from postgres-store.ts so that
// choosing the store (open-store.ts) does not load pg: a controller on SQLite never needs it,
// and loading it was ~4 % of every start-up.
import { BulkheadError } from '@bulkhead/shared';

/**
 * "user@host:port/database" for logs and errors: never the password, and
 * no other query parameters than the socket directory.
 */
export function describePostgresUrl(connectionString: string): string {
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(connectionString)?.[1]?.toLowerCase();
  if (scheme === undefined) throw new BulkheadError('BK_ERR_CONFIG_INVALID', 'the database URL is not a URL (expected postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE)');
  if (scheme !== 'postgres' && scheme !== 'postgresql') {
    throw new BulkheadError('BK_ERR_CONFIG_INVALID', `unsupported database URL scheme "${scheme}" (expected postgresql:// or postgres://)`);
  }
  // As pg parses it: "user:pw@/db?host=/socket/dir" has an empty host, which WHATWG URL refuses.
  let u: URL;
  let noHost = false;
  try {
    try {
      u = new URL(connectionString);
    } catch {
      u = new URL(connectionString.replace('@/', '@bulkhead-no-host/'));
      noHost = true;
    }
  } catch {
    throw new BulkheadError('BK_ERR_CONFIG_INVALID', 'the database URL is not a valid URL (expected postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE)');
  }
  const user = u.username !== '' ? decodeURIComponent(u.username) + '@' : '';
  const socketDir = u.searchParams.get('host');
  const hostname = noHost ? '' : u.hostname;
  const host = socketDir ?? (hostname !== '' ? hostname + (u.port !== '' ? ':' + u.port : '') : 'localhost');
  const database = decodeURIComponent(u.pathname.replace(/^\//, '')) || (u.username !== '' ? decodeURIComponent(u.username) : '');
  return `${user}${host}/${database}`;
}
