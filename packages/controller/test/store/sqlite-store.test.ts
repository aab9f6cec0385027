// What only the embedded SQLite store does: a private (0600) WAL file in a
// 0700 directory, and openStore's kind check. The Store contract itself is
// in store.test.ts (run on SQLite and on PostgreSQL).
import t from 'tap';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { SqliteStore } from '../../src/store/sqlite-store';
import { openStore } from '../../src/store/open-store';
import { agent } from './fixtures/records';

function tempDir(t: tap.Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'bk-store-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

t.test('opens a private WAL database and migrates idempotently', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'sub', 'controller.db');
  const store = await SqliteStore.open({ path });
  await store.migrate();
  await store.migrate();
  await store.ping();
  t.equal(statSync(path).mode & 0o777, 0o600, 'database file is 0600');
  t.equal(statSync(join(dir, 'sub')).mode & 0o777, 0o700, 'created parent directory is 0700');
  await store.insertAgent(agent('agt_a'));
  const raw = new BetterSqlite3(path, { readonly: true });
  t.equal(raw.pragma('journal_mode', { simple: true }), 'wal');
  raw.close();
  t.equal(statSync(path + '-wal').mode & 0o777, 0o600, 'WAL file inherits 0600');
  await store.close();

  // Reopening sees the data and does not re-run migrations.
  const again = await openStore({ kind: 'sqlite', path });
  t.equal((await again.getAgent('agt_a'))?.id, 'agt_a');
  await again.close();
});

t.test('openStore rejects an unknown kind', async (t) => {
  await t.rejects(openStore({ kind: 'mysql' } as never), { code: 'BK_ERR_CONFIG_INVALID' });
});
