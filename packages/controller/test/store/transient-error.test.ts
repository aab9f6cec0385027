// Which store errors the agent link and alerts retry (store/transient-error.ts).
// The errors are the ones the drivers really throw (codes and messages of pg,
// pg-pool, better-sqlite3 and Node), checked one by one.
import t from 'tap';
import { BulkheadError } from '@bulkhead/shared';
import { isTransientStoreError, retryDelayMs } from '../../src/store/transient-error';

const withCode = (code: string, message = 'x') => Object.assign(new Error(message), { code });

t.test('transient: the database is briefly unable to answer', async (t) => {
  t.ok(isTransientStoreError(new Error('timeout exceeded when trying to connect')), 'pg-pool: no connection within the wait');
  t.ok(isTransientStoreError(new Error('Connection terminated unexpectedly')), 'pg: connection dropped');
  t.ok(isTransientStoreError(new Error('Client has encountered a connection error and is not queryable')), 'pg: a dead connection reused');
  t.ok(isTransientStoreError(withCode('57P01', 'terminating connection due to administrator command')), 'a terminated backend');
  t.ok(isTransientStoreError(withCode('40P01', 'deadlock detected')), 'deadlock');
  t.ok(isTransientStoreError(withCode('40001')), 'serialization failure');
  t.ok(isTransientStoreError(withCode('53300')), 'too many connections');
  t.ok(isTransientStoreError(withCode('08006')), 'connection failure class');
  t.ok(isTransientStoreError(withCode('ECONNREFUSED')), 'server not listening');
  t.ok(isTransientStoreError(withCode('SQLITE_BUSY')), 'SQLite busy');
  t.ok(isTransientStoreError(new BulkheadError('BK_ERR_INTERNAL', 'storing failed', { cause: withCode('40P01') })), 'found in the cause chain');
});

t.test('not transient: retrying would change nothing', async (t) => {
  t.notOk(isTransientStoreError(withCode('23505', 'duplicate key')), 'a constraint');
  t.notOk(isTransientStoreError(withCode('42P01', 'relation does not exist')), 'a bad query');
  t.notOk(isTransientStoreError(withCode('53100', 'disk full')), 'a full disk (BK_ERR_STORE_FULL handles it)');
  t.notOk(isTransientStoreError(withCode('SQLITE_FULL')), 'SQLite full');
  t.notOk(isTransientStoreError(new BulkheadError('BK_ERR_PROTOCOL', 'delta without a container id')), 'a protocol error');
  t.notOk(isTransientStoreError(new BulkheadError('BK_ERR_AGENT_REVOKED', 'revoked', { cause: withCode('40P01') })), 'a decision, whatever caused it');
  t.notOk(isTransientStoreError(undefined));
  t.notOk(isTransientStoreError('timeout'));
});

t.test('back-off: doubling from 100 ms, capped, jittered ±20 %', async (t) => {
  for (let i = 0; i < 50; i++) {
    const d0 = retryDelayMs(0);
    t.ok(d0 >= 80 && d0 <= 120, `first ${d0}`);
    const d3 = retryDelayMs(3);
    t.ok(d3 >= 640 && d3 <= 960, `fourth ${d3}`);
    const d20 = retryDelayMs(20, 5000);
    t.ok(d20 >= 4000 && d20 <= 6000, `capped ${d20}`);
  }
});
