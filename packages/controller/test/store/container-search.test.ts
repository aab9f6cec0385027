// 0025_container_search: free-text search (GET /v1/containers?q=) by index. The filter's
// semantics are unchanged — `lower(name) like '%q%' or lower(image_ref) like '%q%' or id like
// 'q%'`, % _ \ literal — so every q here is checked against a reference computed over the rows
// by the database evaluating that expression on each row's values as constants (no table, no
// index: the semantics the list had before the index), in the list's own order, walked by
// cursor, in and out of project scope, after every kind of write. On SQLite here, on a
// private PostgreSQL cluster in container-search.postgres.test.ts.
import t from 'tap';
import { Writable } from 'node:stream';
import pino from 'pino';
import { Migrator, sql, type Kysely } from 'kysely';
import { MIGRATIONS, PG_SEARCH_INDEXES } from '../../src/store/migrations';
import { openStore, type StoreConfig } from '../../src/store/open-store';
import type { ContainerFacts__Output } from '@bulkhead/shared';
import type { ContainerQuery, ContainerRecord, Store } from '../../src/store/store';
import { agent, facts, hexId } from './fixtures/records';
import { openTestStore, rawDb, testBackend, testDatabase } from './fixtures/backend';

const T0 = new Date('2025-01-01T00:00:00Z');
const at = (ms: number) => new Date(T0.getTime() + ms);

// Names and images with LIKE's metacharacters, upper case, non-ASCII (upper case whose lower()
// differs by database, combining marks, astral), quotes (FTS5's string delimiter), spaces.
const NAMES = [
  '/web-1', '/Web-2', '/WEB_3', '/api%prod', '/api_prod', '/api\\prod', '/100%_done', '/a"b"c', '/ÄRGER-ä', '/café-é',
  '/İstanbul', '/日本語サービス', '/emoji-🐳-box', '/plain name', '/x', '/xy', '/sim-12-3', '/sim-1-23', '/ngiNX-front', '/zz%zz',
];
const IMAGES = ['nginx:1.27', 'NGINX:Latest', 'registry.example.com/shop/web:2.14.1', 'busybox:1.36', 'Ärger/app:1', 'app_%:v\\1', 'ghcr.io/org/İmg:2'];
const PROJECTS = ['payments', 'search', ''];

const QUERIES = [
  // 1-2 characters (the scan, on SQLite)
  'x', 'xy', '%', '_', '\\', 'ä', 'Ä', '🐳', '日本',
  // 3 and more
  'web', 'WEB', 'web-', 'web_', 'b-2', 'api%', 'api_', 'api\\', '%_d', '100%', 'pi%p', 'i\\p', 'a"b', '"b"', 'ärger', 'ÄRGER', 'rger-ä', 'café', 'CAFÉ', 'é-é',
  'istanbul', 'İstanbul', 'i̇stanbul', '日本語', 'サービス', '-🐳-', 'ain na', 'sim-12-', 'sim-1-', 'nginx', 'NgInX', 'ngin', 'example.com/shop', ':1.3', 'v\\1', '_%:', 'img:2',
  'zz%zz', 'z%z', 'nothing-matches-this', '   ',
];

const cfacts = (agentId: string, n: number, over: Partial<ContainerFacts__Output> = {}) =>
  facts({
    id: hexId(`${agentId}-${n}`), name: NAMES[n % NAMES.length]! + (n >= NAMES.length ? `-${n}` : ''), imageRef: IMAGES[n % IMAGES.length]!,
    state: n % 4 === 0 ? 'exited' : 'running', project: PROJECTS[n % PROJECTS.length]!, ...over,
  });

const key = (r: ContainerRecord) => `${r.agentId}/${r.name}/${r.id}`;

/**
 * The rows the filter matches, by the database evaluating today's expression on each row's
 * values (constants: no index can take part), in the list's order without q.
 */
async function reference(db: Kysely<any>, store: Store, q: string, base: ContainerQuery): Promise<string[]> { // eslint-disable-line @typescript-eslint/no-explicit-any
  const all = await store.listContainers({ ...base });
  if (all.length === 0) return [];
  const text = q.toLowerCase();
  const esc = (s: string) => s.replace(/[\\%_]/g, (c) => '\\' + c);
  const pattern = '%' + esc(text) + '%';
  const prefix = esc(text) + '%';
  const out: string[] = [];
  for (let i = 0; i < all.length; i += 200) {
    const chunk = all.slice(i, i + 200);
    // VALUES names its columns column1… on both databases.
    const rows = (await sql<{ k: string; hit: unknown }>`select column1 as k, (lower(column2) like ${pattern} escape '\\' or lower(column3) like ${pattern} escape '\\' or column4 like ${prefix} escape '\\') as hit from (values ${sql.join(chunk.map((r) => sql`(${key(r)}, ${r.name}, ${r.imageRef}, ${r.id})`))}) as v`.execute(db)).rows;
    for (const r of rows) if (r.hit === true || r.hit === 1) out.push(r.k);
  }
  return out;
}

/** Every page of `q` by cursor at `limit`. */
async function walk(store: Store, q: ContainerQuery, limit: number): Promise<string[]> {
  const out: string[] = [];
  let after: ContainerQuery['after'];
  for (let guard = 0; guard < 1000; guard++) {
    const page = await store.listContainers({ ...q, limit, after });
    out.push(...page.map(key));
    if (page.length < limit) return out;
    const l = page[page.length - 1]!;
    after = { agentId: l.agentId, name: l.name, id: l.id, sortValue: l.sortValue };
  }
  throw new Error('no end to the pages');
}

async function checkAll(t: tap.Test, store: Store, db: Kysely<any>, what: string): Promise<number> { // eslint-disable-line @typescript-eslint/no-explicit-any
  let matched = 0;
  const bases: ContainerQuery[] = [{}, { projects: ['search', ''], includeRemoved: true }, { state: 'running', sort: { field: 'name', desc: true } }];
  const failures: string[] = [];
  for (const base of bases) {
    for (const q of QUERIES) {
      const want = await reference(db, store, q, base);
      matched += want.length;
      for (const limit of [2, 1000]) {
        const got = await walk(store, { ...base, search: q }, limit);
        if (JSON.stringify(got) !== JSON.stringify(want)) failures.push(`q=${JSON.stringify(q)} ${JSON.stringify(base)} limit ${limit}: got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);
      }
      // Offset paging too (the console's page numbers).
      const page2 = await store.listContainers({ ...base, search: q, limit: 2, offset: 2 });
      if (JSON.stringify(page2.map(key)) !== JSON.stringify(want.slice(2, 4))) failures.push(`q=${JSON.stringify(q)} ${JSON.stringify(base)} offset 2`);
    }
  }
  t.same(failures, [], `${what}: ${QUERIES.length} q × ${bases.length} scopes/orders × limits 2, 1000 by cursor and an offset page equal the reference`);
  return matched;
}

/** SQLite: the search index holds exactly the containers' keys (the triggers kept it). */
async function checkIndexInSync(t: tap.Test, db: Kysely<any>, what: string): Promise<void> { // eslint-disable-line @typescript-eslint/no-explicit-any
  if (testBackend() !== 'sqlite') {
    const idx = (await sql<{ name: string }>`select indexname as name from pg_indexes where tablename = 'containers'`.execute(db)).rows.map((r) => r.name);
    t.same(PG_SEARCH_INDEXES.filter((i) => !idx.includes(i)), [], `${what}: the trigram indexes exist`);
    return;
  }
  const rows = (await sql<{ agent_id: string; id: string; name: string; image_ref: string }>`select agent_id, id, name, image_ref from containers`.execute(db)).rows;
  const keys = (await sql<{ n: number }>`select count(*) as n from container_search_keys`.execute(db)).rows[0]!.n;
  t.equal(Number(keys), rows.length, `${what}: one search key per container`);
  const missing: string[] = [];
  for (const r of rows) {
    // Each container is found by its own name's and image's text (when 3+ characters).
    for (const [col, v] of [['name', r.name], ['image_ref', r.image_ref]] as const) {
      if ([...v].length < 3) continue;
      const hit = await sql<{ id: string }>`select k.id from container_search join container_search_keys k on k.n = container_search.rowid where container_search match ${`${col} : "${v.replace(/"/g, '""')}"`} and k.agent_id = ${r.agent_id} and k.id = ${r.id}`.execute(db);
      if (hit.rows.length !== 1) missing.push(`${r.agent_id}/${r.id} ${col}=${v}`);
    }
  }
  t.same(missing, [], `${what}: every container found in the index by its current text`);
}

t.test('q= gives the rows the filter matches, in order, by cursor, after every kind of write', async (t) => {
  const config = await testDatabase(t);
  const store = await openStore(config);
  const db = rawDb(config);
  t.teardown(async () => {
    await store.close();
    await db.destroy();
  });
  for (const a of ['agt_a', 'agt_b', 'agt_c']) await store.insertAgent(agent(a));
  await store.replaceContainers('agt_a', Array.from({ length: 30 }, (_, n) => cfacts('agt_a', n)), at(1));
  await store.replaceContainers('agt_b', Array.from({ length: 25 }, (_, n) => cfacts('agt_b', n + 3)), at(1));
  await store.replaceContainers('agt_c', Array.from({ length: 8 }, (_, n) => cfacts('agt_c', n)), at(1));
  const matched = await checkAll(t, store, db, 'first snapshots');
  t.ok(matched > 500, `the queries match rows (${matched} in all): the comparison is not of empty lists`);
  await checkIndexInSync(t, db, 'first snapshots');

  // A second snapshot renames, re-images, removes and adds; deltas change and remove.
  await store.replaceContainers('agt_a', [
    ...Array.from({ length: 20 }, (_, n) => cfacts('agt_a', n, n % 3 === 0 ? { name: `/renamed-${n}-WEB%`, imageRef: 'Quay.io/Renamed_\\img:9' } : {})),
    cfacts('agt_a', 40, { name: '/new-ÄRGER_%' }), cfacts('agt_a', 41),
  ], at(2));
  await store.upsertContainer('agt_b', cfacts('agt_b', 5, { name: '/moved-café', imageRef: 'nginx:1.28' }), at(3));
  await store.upsertContainer('agt_b', cfacts('agt_b', 6), at(3)); // unchanged text
  await store.upsertContainer('agt_b', cfacts('agt_b', 70, { name: '/delta-new-web' }), at(3));
  t.ok(await store.removeContainer('agt_b', hexId('agt_b-7'), at(4)));
  await checkAll(t, store, db, 'after snapshot changes, deltas and removals');
  await checkIndexInSync(t, db, 'after snapshot changes, deltas and removals');

  t.ok((await store.purgeRemovedContainers!(at(100))) > 0, 'removed rows purged');
  await checkAll(t, store, db, 'after purging removed rows');
  await checkIndexInSync(t, db, 'after purging');

  await store.replaceContainers('agt_b', [], at(200));
  await checkAll(t, store, db, 'after an empty snapshot');
  // An agent's deletion takes its containers by cascade.
  await sql`delete from agents where id = 'agt_c'`.execute(db);
  t.same(await store.listContainers({ agentId: 'agt_c', includeRemoved: true }), [], 'agt_c\'s containers went with it');
  await checkAll(t, store, db, 'after an agent deleted');
  await checkIndexInSync(t, db, 'after an agent deleted');
});

t.test('id prefixes: any case, 3 to 64 characters, and not the middle of an id', async (t) => {
  const store = await openTestStore(t);
  await store.insertAgent(agent('agt_a'));
  const list = Array.from({ length: 12 }, (_, n) => cfacts('agt_a', n));
  await store.replaceContainers('agt_a', list, at(1));
  const id = list[4]!.id;
  for (const len of [3, 5, 11, 12, 13, 20, 64]) {
    for (const q of [id.slice(0, len), id.slice(0, len).toUpperCase()]) {
      const got = (await store.listContainers({ search: q })).map((r) => r.id);
      t.ok(got.includes(id), `prefix of ${len} (${q === id.slice(0, len) ? 'lower' : 'upper'} case) finds the container`);
      t.same(got, list.filter((c) => c.id.startsWith(q.toLowerCase()) || c.name.toLowerCase().includes(q.toLowerCase()) || c.imageRef.toLowerCase().includes(q.toLowerCase())).map((c) => c.id).sort((a, b) => {
        const ca = list.find((c) => c.id === a)!; const cb = list.find((c) => c.id === b)!;
        return ca.name < cb.name ? -1 : ca.name > cb.name ? 1 : a < b ? -1 : 1;
      }), `prefix of ${len}: exactly the rows matching`);
    }
  }
  // The id's middle is not a prefix: only a name or image could match it (none does here).
  t.same(await store.listContainers({ search: id.slice(20, 32) }), [], 'a piece from the middle of an id matches nothing');
});

async function migrateTo(config: StoreConfig, name?: string): Promise<unknown> {
  const db = rawDb(config);
  const m = new Migrator({ db, provider: { getMigrations: async () => ({ ...MIGRATIONS }) }, migrationTableName: 'bulkhead_migration', migrationLockTableName: 'bulkhead_migration_lock' });
  const r = name === undefined ? await m.migrateToLatest() : await m.migrateTo(name);
  await db.destroy();
  return r.error;
}

t.test('0025_container_search on a populated database indexes the rows already there; down and up again', async (t) => {
  const config = await testDatabase(t);
  t.equal(await migrateTo(config, '0024_summary_counts'), undefined, 'the schema before 0025');
  let store = await openStore(config, { migrate: false });
  for (const a of ['agt_a', 'agt_b']) {
    await store.insertAgent(agent(a));
    await store.replaceContainers(a, Array.from({ length: 24 }, (_, n) => cfacts(a, n)), at(1));
  }
  await store.removeContainer('agt_a', hexId('agt_a-2'), at(2));
  await store.close();
  t.equal(await migrateTo(config), undefined, '0025 up');
  const db = rawDb(config);
  t.teardown(() => db.destroy());
  store = await openStore(config);
  await checkAll(t, store, db, 'rows written before the migration');
  await checkIndexInSync(t, db, 'rows written before the migration');
  await store.close();
  t.equal(await migrateTo(config, '0024_summary_counts'), undefined, 'down');
  if (testBackend() === 'sqlite') {
    t.same((await sql<{ name: string }>`select name from sqlite_master where name like 'container_search%'`.execute(db)).rows, [], 'down leaves no search table or trigger');
  } else {
    t.same((await sql<{ name: string }>`select indexname as name from pg_indexes where indexname like 'containers_search%'`.execute(db)).rows, [], 'down leaves no search index');
  }
  store = await openStore(config, { migrate: false });
  await store.upsertContainer('agt_b', cfacts('agt_b', 40, { name: '/written-while-down' }), at(3));
  await store.close();
  t.equal(await migrateTo(config), undefined, 'up again');
  store = await openStore(config);
  t.teardown(() => store.close());
  t.same((await store.listContainers({ search: 'while-down' })).map((r) => r.name), ['/written-while-down'], 'the row written while down is found');
  await checkAll(t, store, db, 'up again');
  await checkIndexInSync(t, db, 'up again');
});

t.test('PostgreSQL without pg_trgm: the controller starts, q= scans with the same results, one warning names the fix', { skip: testBackend() === 'postgres' ? false : 'PostgreSQL only: an extension the role may not create' }, async (t) => {
  const config = await testDatabase(t);
  if (config.kind !== 'postgres') return;
  const db = rawDb(config);
  t.teardown(() => db.destroy());
  // The owner gives up CREATE on its database: a trusted extension then cannot be created,
  // as on a managed server that does not offer pg_trgm.
  await sql.raw(`do $$ begin execute format('revoke create on database %I from current_user', current_database()); end $$`).execute(db);
  const lines: Array<{ level: number; msg: string; missing?: string[]; err?: string }> = [];
  const logger = pino({ level: 'info' }, new Writable({ write(chunk, _e, cb) { lines.push(JSON.parse(String(chunk))); cb(); } }));
  const store = await openStore(config, { logger });
  t.teardown(() => store.close());
  const warns = lines.filter((l) => l.level === 40 && /free-text search/.test(l.msg));
  t.equal(warns.length, 1, 'one warning');
  t.match(warns[0]?.msg ?? '', /CREATE EXTENSION pg_trgm/, 'it names the fix');
  t.same(warns[0]?.missing, [...PG_SEARCH_INDEXES], 'and the indexes missing');
  t.match(warns[0]?.err ?? '', /permission denied/, 'and why');
  await store.insertAgent(agent('agt_a'));
  await store.replaceContainers('agt_a', Array.from({ length: 24 }, (_, n) => cfacts('agt_a', n)), at(1));
  await checkAll(t, store, db, 'without the indexes');
  // The operator allows it again: the next start creates the indexes.
  await sql.raw(`do $$ begin execute format('grant create on database %I to current_user', current_database()); end $$`).execute(db);
  const again = await openStore(config, { logger });
  await again.close();
  t.equal(lines.filter((l) => l.level === 40 && /free-text search/.test(l.msg)).length, 1, 'no new warning at the next start');
  const idx = (await sql<{ name: string }>`select indexname as name from pg_indexes where tablename = 'containers'`.execute(db)).rows.map((r) => r.name);
  t.same(PG_SEARCH_INDEXES.filter((i) => !idx.includes(i)), [], 'the next start created the indexes');
  await checkAll(t, store, db, 'with the indexes created at start');
});
