// A full disk under the store is named as such (BK_ERR_STORE_FULL), to the API
// client and to the agent, from the errors the drivers really throw.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import * as grpc from '@grpc/grpc-js';
import { BulkheadError } from '@bulkhead/shared';
import { storeFullError } from '../../src/store/store-full';
import { SqliteStore } from '../../src/store/sqlite-store';
import { toProblem } from '../../src/api/problem';
import { toServiceError } from '../../src/grpc/service-error';

t.test('SQLite on a full file system: SQLITE_FULL becomes BK_ERR_STORE_FULL', { skip: process.getuid?.() !== 0 ? 'needs root to mount a small tmpfs' : false }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'bk-store-full-'));
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=256k', 'tmpfs', dir]);
  t.teardown(() => {
    execFileSync('umount', ['-l', dir]);
    rmSync(dir, { recursive: true, force: true });
  });
  const db = new Database(join(dir, 'x.db'));
  t.teardown(() => db.close());
  db.pragma('journal_mode = WAL');
  db.exec('CREATE TABLE t (v TEXT)');
  const insert = db.prepare('INSERT INTO t VALUES (?)');
  let thrown: unknown;
  try {
    for (let i = 0; i < 1000; i++) insert.run('x'.repeat(4096));
  } catch (err) {
    thrown = err;
  }
  t.ok(thrown, 'the disk filled up');
  const full = storeFullError(thrown);
  t.equal(full?.code, 'BK_ERR_STORE_FULL', `recognized: ${String((thrown as Error).message)}`);
  const { problem, internal } = toProblem(thrown);
  t.match(problem, { status: 507, code: 'BK_ERR_STORE_FULL' });
  t.ok(internal, 'logged as an error');
  t.match(toServiceError(new BulkheadError('BK_ERR_INTERNAL', undefined, { cause: thrown })), { code: grpc.status.UNAVAILABLE, details: /^BK_ERR_STORE_FULL: / });
  t.equal(db.prepare('SELECT count(*) AS n FROM t').get() !== undefined, true, 'reads still work');
});

t.test('other errors are not taken for a full disk', async (t) => {
  t.equal(storeFullError(new Error('boom')), undefined);
  t.equal(storeFullError(Object.assign(new Error('disk I/O error'), { code: 'SQLITE_IOERR_WRITE' })), undefined);
  t.equal(storeFullError(Object.assign(new Error('could not extend file: No space left on device'), { code: '53100' }))?.code, 'BK_ERR_STORE_FULL', 'PostgreSQL disk_full');
  t.equal(storeFullError(null), undefined);
  t.equal(toProblem(new Error('boom')).problem.code, 'BK_ERR_INTERNAL');
});

t.test('a transaction SQLite rolled back by itself keeps its own error (not "cannot rollback")', { skip: process.getuid?.() !== 0 ? 'needs root to mount a small tmpfs' : false }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'bk-store-full-'));
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', dir]);
  t.teardown(() => {
    execFileSync('umount', ['-l', dir]);
    rmSync(dir, { recursive: true, force: true });
  });
  const store = await SqliteStore.open({ path: join(dir, 'bulkhead.db') });
  t.teardown(() => store.close());
  await store.migrate();
  let thrown: unknown;
  try {
    for (let i = 0; i < 200; i++) {
      await store.insertPolicyVersion({ name: `p${i}`, yaml: 'y'.repeat(20_000), json: '{}', sha256: 'x', createdAt: new Date(), createdBy: 'test', comment: '' });
    }
  } catch (err) {
    thrown = err;
  }
  t.match(thrown, { code: 'SQLITE_FULL' }, `the first error: ${String((thrown as Error | undefined)?.message)}`);
  t.equal(storeFullError(thrown)?.code, 'BK_ERR_STORE_FULL');
  t.equal((await store.getPolicy(1))?.name, 'p0', 'the store still reads');
});
