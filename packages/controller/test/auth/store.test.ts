// The store side of identity and access (migration 0004_auth): key
// listing, revocation and last use; join-token listing by status and
// revocation; the containers.project column, including its backfill of
// containers stored before the migration.
// Runs on SQLite here and on PostgreSQL in store.postgres.test.ts.
import t from 'tap';
import { Migrator } from 'kysely';
import { openStore } from '../../src/store/open-store';
import { MIGRATIONS } from '../../src/store/migrations';
import { generateApiKey } from '../../src/api/api-keys';
import { createJoinToken } from '../../src/enrollment/join-tokens';
import { agent, facts, hexId } from '../store/fixtures/records';
import { openTestStore, rawDb, testDatabase } from '../store/fixtures/backend';

t.test('api keys and join tokens', async (t) => {
  const store = await openTestStore(t);
  const t0 = new Date('2026-01-01T00:00:00Z');
  const a = generateApiKey('a', 'admin', { now: t0 });
  const b = generateApiKey('b', 'viewer', { now: new Date(t0.getTime() + 1000), projects: ['p'], createdBy: a.record.id });
  await store.insertApiKey(a.record);
  await store.insertApiKey(b.record);
  t.same((await store.listApiKeys()).map((k) => k.name), ['b', 'a'], 'newest first');
  t.same((await store.getApiKey(b.record.id))?.projects, ['p']);
  t.equal((await store.getApiKey(b.record.id))?.createdBy, a.record.id);
  await store.touchApiKey(b.record.id, new Date(t0.getTime() + 5000));
  t.same((await store.getApiKey(b.record.id))?.lastUsedAt, new Date(t0.getTime() + 5000));
  t.equal(await store.revokeApiKey(b.record.id, new Date(t0.getTime() + 6000)), true);
  t.equal(await store.revokeApiKey(b.record.id, new Date(t0.getTime() + 7000)), false, 'once');
  t.same((await store.getApiKey(b.record.id))?.revokedAt, new Date(t0.getTime() + 6000), 'the first time is kept');
  t.equal(await store.revokeApiKey('ak_nope', t0), false);

  const now = new Date();
  const active = await createJoinToken(store, 60_000, now, 'active');
  const expired = await createJoinToken(store, 1000, new Date(now.getTime() - 10_000), 'expired');
  const used = await createJoinToken(store, 60_000, now, 'used');
  const revoked = await createJoinToken(store, 60_000, now, 'revoked');
  await store.consumeJoinToken(used.record.id, 'agt_u', now);
  t.equal(await store.revokeJoinToken(revoked.record.id, now), true);
  t.equal(await store.revokeJoinToken(used.record.id, now), false, 'a used token is not revoked');
  t.equal(await store.revokeJoinToken(revoked.record.id, now), false);
  const ids = async (status?: 'active' | 'used' | 'expired' | 'revoked') => (await store.listJoinTokens({ status, now })).map((x) => x.description).sort();
  t.same(await ids(), ['active', 'expired', 'revoked', 'used']);
  t.same(await ids('active'), ['active']);
  t.same(await ids('expired'), ['expired']);
  t.same(await ids('used'), ['used']);
  t.same(await ids('revoked'), ['revoked']);
  t.equal((await store.listJoinTokens({ now, limit: 2, offset: 3 })).length, 1, 'paged');
  void active;
  void expired;
});

t.test('containers.project: set on write, backfilled by the migration, filtered in SQL', async (t) => {
  const config = await testDatabase(t);
  // A database as it was before 0004_auth, with containers in it.
  const db = rawDb(config);
  const migrator = new Migrator({ db, provider: { getMigrations: async () => ({ ...MIGRATIONS }) }, migrationTableName: 'bulkhead_migration', migrationLockTableName: 'bulkhead_migration_lock' });
  t.equal((await migrator.migrateTo('0003_alerts')).error, undefined);
  const ins = (id: string, f: object | string) =>
    db.insertInto('containers').values({ agent_id: 'agt_a', id, name: `/${id}`, image_ref: 'x', state: 'running', facts_json: typeof f === 'string' ? f : JSON.stringify(f), updated_at: 1, removed: 0 }).execute();
  await db.insertInto('agents').values({ id: 'agt_a', hostname: 'a', status: 'offline', agent_version: '', host_json: null, cert_serial: '1', cert_not_after: 1, enrolled_at: 1, last_seen_at: null, connected_at: null, revoked_at: null }).execute();
  await ins('c1', { labels: { 'bulkhead.project': 'pay' } });
  await ins('c2', { project: 'search', labels: { 'bulkhead.project': 'pay' } });
  await ins('c3', { labels: {} });
  await ins('c4', 'not json at all');
  await db.destroy();

  const store = await openStore(config);
  t.teardown(() => store.close());
  const check = rawDb(config);
  t.same(await check.selectFrom('containers').select(['id', 'project']).orderBy('id').execute(), [
    { id: 'c1', project: 'pay' }, { id: 'c2', project: 'search' }, { id: 'c3', project: '' }, { id: 'c4', project: '' },
  ], 'backfilled from facts.project, else the label (unreadable facts: none)');
  await check.deleteFrom('containers').where('id', '=', 'c4').execute(); // unreadable facts cannot come from an agent; only the migration had to survive them
  await check.destroy();

  await store.insertAgent(agent('agt_b'));
  await store.replaceContainers('agt_b', [facts({ id: hexId('x'), name: '/x', labels: { 'bulkhead.project': 'pay' } }), facts({ id: hexId('y'), name: '/y' })], new Date());
  const names = async (projects?: string[]) => (await store.listContainers({ projects })).map((c) => c.name).sort();
  t.same(await names(['pay']), ['/c1', '/x']);
  t.same(await names(['pay', 'search']), ['/c1', '/c2', '/x']);
  t.same(await names([]), [], 'an empty scope sees nothing');
  t.equal((await names()).length, 5);
  await store.upsertContainer('agt_b', facts({ id: hexId('x'), name: '/x', labels: { 'bulkhead.project': 'search' } }), new Date());
  t.same(await names(['search']), ['/c2', '/x'], 'a relabelled container moves project');
});
