// 0019_list_paging on a database that already holds containers and violations: up keeps
// every row and the lists answer the same; down restores the indexes it replaced; up again
// works. SQLite here, PostgreSQL in list-paging-migration.postgres.test.ts.
import t from 'tap';
import { Migrator } from 'kysely';
import { MIGRATIONS } from '../../src/store/migrations';
import { openStore } from '../../src/store/open-store';
import { agent, facts, hexId } from './fixtures/records';
import { rawDb, testDatabase } from './fixtures/backend';

const T0 = new Date('2026-01-01T00:00:00Z');

t.test('0019_list_paging up, down and up again on a populated database', async (t) => {
  const config = await testDatabase(t);
  const db = rawDb(config);
  const migrator = new Migrator({ db, provider: { getMigrations: async () => ({ ...MIGRATIONS }) }, migrationTableName: 'bulkhead_migration', migrationLockTableName: 'bulkhead_migration_lock' });
  t.equal((await migrator.migrateTo('0018_api_key_actions')).error, undefined, 'the schema before 0019');
  await db.destroy();

  // Rows written through the store's write path onto the schema before 0016.
  let store = await openStore(config, { migrate: false });
  const before: string[] = [];
  for (let a = 0; a < 3; a++) {
    await store.insertAgent(agent(`agt_m${a}`));
    await store.replaceContainers(`agt_m${a}`, Array.from({ length: 12 }, (_, n) => facts({ id: hexId(`m${a}-${n}`), name: `/c${n}`, labels: { team: n % 2 ? 'a' : 'b' } })), T0);
  }
  await store.close();

  store = await openStore(config);
  await store.migrate(); // 0016 on the populated database
  const list = async () => (await store.listContainers({ labels: ['team=a'], limit: 1000 })).map((c) => `${c.agentId}/${c.id}`);
  before.push(...(await list()));
  t.equal(before.length, 18, 'every row listed after up');
  const page1 = await store.listContainers({ labels: ['team=a'], limit: 5 });
  const last = page1.at(-1)!;
  const page2 = await store.listContainers({ labels: ['team=a'], limit: 100, after: { agentId: last.agentId, name: last.name, id: last.id } });
  t.same([...page1, ...page2].map((c) => `${c.agentId}/${c.id}`), before, 'keyset pages add up to the list');
  await store.close();

  const raw = rawDb(config);
  const m = new Migrator({ db: raw, provider: { getMigrations: async () => ({ ...MIGRATIONS }) }, migrationTableName: 'bulkhead_migration', migrationLockTableName: 'bulkhead_migration_lock' });
  t.equal((await m.migrateTo('0018_api_key_actions')).error, undefined, 'down');
  t.equal((await m.migrateToLatest()).error, undefined, 'up again');
  await raw.destroy();

  store = await openStore(config);
  t.teardown(() => store.close());
  t.same(await list(), before, 'the same list after down and up');
});
