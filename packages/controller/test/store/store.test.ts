// The Store contract (src/store/store.ts) — join tokens, API keys, agents,
// containers and their filters — on a real database: SQLite here, and the
// same assertions on a private PostgreSQL cluster in store.postgres.test.ts
// (fixtures/backend.ts picks the backend).
import t from 'tap';
import { BulkheadError } from '@bulkhead/shared';
import { openStore } from '../../src/store/open-store';
import type { Store } from '../../src/store/store';
import { agent, facts, hexId, host, joinToken } from './fixtures/records';
import { openTestStore, testDatabase } from './fixtures/backend';

const T0 = new Date('2025-01-01T00:00:00Z');
const at = (ms: number) => new Date(T0.getTime() + ms);

const freshStore = (t: tap.Test): Promise<Store> => openTestStore(t);

t.test('migrate is idempotent; a reopened store sees the data', async (t) => {
  const config = await testDatabase(t);
  const store = await openStore(config);
  await store.migrate();
  await store.migrate();
  await store.ping();
  await store.insertAgent(agent('agt_a'));
  await store.close();
  const again = await openStore(config);
  t.equal((await again.getAgent('agt_a'))?.id, 'agt_a');
  await again.close();
});

t.test('join tokens', async (t) => {
  const store = await freshStore(t);
  await store.insertJoinToken(joinToken('jt_a'));
  t.same(await store.getJoinToken('jt_a'), joinToken('jt_a'), 'round-trips');
  t.equal(await store.getJoinToken('jt_missing'), undefined);

  t.equal(await store.consumeJoinToken('jt_a', 'agt_1', at(1000)), true, 'first use wins');
  t.equal(await store.consumeJoinToken('jt_a', 'agt_2', at(2000)), false, 'second use refused');
  const used = await store.getJoinToken('jt_a');
  t.equal(used?.usedByAgent, 'agt_1');
  t.same(used?.usedAt, at(1000));

  await store.insertJoinToken(joinToken('jt_exp'));
  t.equal(await store.consumeJoinToken('jt_exp', 'agt_1', new Date('2025-01-01T01:00:00Z')), false, 'expired at expiresAt exactly');
  t.equal(await store.consumeJoinToken('jt_exp', 'agt_1', new Date('2025-01-01T00:59:59.999Z')), true, 'valid one ms before');

  await store.insertJoinToken(joinToken('jt_rev', { revokedAt: at(10) }));
  t.equal(await store.consumeJoinToken('jt_rev', 'agt_1', at(20)), false, 'revoked');
  t.equal(await store.consumeJoinToken('jt_none', 'agt_1', at(20)), false, 'unknown');
});

t.test('a join token is consumed once even by two concurrent connections', async (t) => {
  const config = await testDatabase(t);
  const a = await openStore(config);
  const b = await openStore(config);
  t.teardown(async () => {
    await a.close();
    await b.close();
  });
  for (let i = 0; i < 20; i++) {
    const id = `jt_race${i}`;
    await a.insertJoinToken(joinToken(id));
    const results = await Promise.all([a.consumeJoinToken(id, 'agt_a', at(1)), b.consumeJoinToken(id, 'agt_b', at(1))]);
    t.equal(results.filter(Boolean).length, 1, `exactly one winner (round ${i})`);
    const winner = results[0] ? 'agt_a' : 'agt_b';
    t.equal((await b.getJoinToken(id))?.usedByAgent, winner);
  }
});

t.test('api keys round-trip', async (t) => {
  const store = await freshStore(t);
  const k = {
    id: 'ak_1', name: 'ci', secretHash: hexId('s'), role: 'viewer' as const, createdAt: T0, expiresAt: at(5000), revokedAt: null,
    projects: ['payments', 'search'], lastUsedAt: null, createdBy: 'ak_0', // 0004_auth
    actions: ['scans.upload'], // 0018_api_key_actions
  };
  await store.insertApiKey(k);
  t.same(await store.getApiKey('ak_1'), k);
  const { actions: _a, ...older } = { ...k, id: 'ak_3' };
  await store.insertApiKey(older);
  t.same((await store.getApiKey('ak_3'))?.actions, [], 'a key without limits reads back as not limited');
  t.equal(await store.getApiKey('ak_2'), undefined);
});

t.test('agents: batched last-seen times (touchAgents), each agent its own time, in chunks of 500', async (t) => {
  const store = await freshStore(t);
  t.ok(store.touchAgents, 'the SQL store batches last-seen writes');
  const ids = Array.from({ length: 1203 }, (_, i) => `agt_${String(i).padStart(5, '0')}`);
  for (const id of ids) await store.insertAgent(agent(id, { hostname: id }));
  await store.insertAgent(agent('agt_untouched', { hostname: 'untouched' }));
  const seen = new Map(ids.map((id, i) => [id, at(10_000 + i)]));
  await store.touchAgents!(seen);
  const all = await store.listAgents();
  const wrong = all.filter((a) => seen.has(a.id) && a.lastSeenAt?.getTime() !== seen.get(a.id)!.getTime());
  t.same(wrong.map((a) => a.id), [], 'every agent has its own last-seen time (across three chunks)');
  t.equal(all.find((a) => a.id === 'agt_untouched')?.lastSeenAt, null, 'agents not in the batch are left alone');
  await store.touchAgents!(new Map());
  t.pass('an empty batch writes nothing');
  // State hashes ride along: set, left alone when not given, cleared by null, and an agent may
  // come with a hash and no last-seen time (its time is kept).
  const [a, b, c] = ids as [string, string, string];
  await store.touchAgents!(new Map([[a, at(50_000)]]), new Map([[a, 'sha256:a'], [b, 'sha256:b\u0000x']]));
  const get = async (id: string) => store.getAgent(id);
  t.equal((await get(a))?.stateHash, 'sha256:a');
  t.equal((await get(a))?.lastSeenAt?.getTime(), at(50_000).getTime());
  t.equal((await get(b))?.lastSeenAt?.getTime(), at(10_001).getTime(), 'a hash without a time keeps the time');
  t.match((await get(b))?.stateHash, /^sha256:b.x$/, 'a NUL in a hash is stored (U+FFFD on PostgreSQL)');
  await store.touchAgents!(new Map([[a, at(60_000)], [c, at(60_000)]]), new Map([[b, null]]));
  t.equal((await get(a))?.stateHash, 'sha256:a', 'no hash given: kept');
  t.equal((await get(a))?.lastSeenAt?.getTime(), at(60_000).getTime());
  t.equal((await get(b))?.stateHash, undefined, 'null clears it');
  t.equal((await get(c))?.stateHash, undefined);
});

t.test('listRevokedAgents: of the ids asked about, those revoked (status or revokedAt), however many ids', async (t) => {
  const store = await freshStore(t);
  const ids = Array.from({ length: 1100 }, (_, i) => `agt_r${String(i).padStart(5, '0')}`);
  for (const id of ids) await store.insertAgent(agent(id, { hostname: id }));
  await store.setAgentStatus(ids[3]!, 'revoked', at(1));
  await store.setAgentStatus(ids[1050]!, 'revoked', at(1));
  await store.insertAgent(agent('agt_rat', { hostname: 'rat', status: 'online', revokedAt: at(2) }));
  await store.insertAgent(agent('agt_rnot', { hostname: 'rnot' }));
  await store.setAgentStatus('agt_rnot', 'revoked', at(1));
  const got = await store.listRevokedAgents!([...ids, 'agt_rat', 'agt_unknown']);
  t.same([...got].sort(), [ids[3], ids[1050], 'agt_rat'].sort(), 'revoked by status or by revokedAt, across chunks; one not asked about is not listed');
  t.same(await store.listRevokedAgents!([]), [], 'no ids: none');
});

t.test('agents: lifecycle, container count, stale detection', async (t) => {
  const store = await freshStore(t);
  await store.insertAgent(agent('agt_b', { hostname: 'beta' }));
  await store.insertAgent(agent('agt_a', { hostname: 'alpha' }));
  t.same((await store.listAgents()).map((a) => a.id), ['agt_a', 'agt_b'], 'ordered by hostname');
  t.same(await store.getAgent('agt_a'), agent('agt_a', { hostname: 'alpha' }), 'round-trips');

  await store.markAgentConnected('agt_a', '0.1.0', host('alpha'), at(1000));
  let a = await store.getAgent('agt_a');
  t.equal(a?.status, 'online');
  t.equal(a?.agentVersion, '0.1.0');
  t.same(a?.host, host('alpha'));
  t.same(a?.connectedAt, at(1000));
  t.same(a?.lastSeenAt, at(1000));

  await store.touchAgent('agt_a', at(5000));
  a = await store.getAgent('agt_a');
  t.same(a?.lastSeenAt, at(5000));
  t.same(a?.connectedAt, at(1000), 'touch leaves connectedAt');

  await store.markAgentConnected('agt_b', '0.1.0', host('beta'), at(1000));
  t.same((await store.listStaleOnlineAgents(at(3000))).map((x) => x.id), ['agt_b'], 'only b is stale at 3s');
  t.same((await store.listStaleOnlineAgents(at(1000))).map((x) => x.id), [], 'strictly older than the cutoff');
  await store.setAgentStatus('agt_b', 'offline', at(3000));
  t.same((await store.listStaleOnlineAgents(at(9000))).map((x) => x.id), ['agt_a'], 'offline agents are not stale');

  await store.replaceContainers('agt_a', [facts({ id: hexId('1') }), facts({ id: hexId('2') })], at(6000));
  await store.removeContainer('agt_a', hexId('2'), at(7000));
  t.equal((await store.getAgent('agt_a'))?.containerCount, 1, 'removed containers are not counted');
  t.equal((await store.listAgents()).find((x) => x.id === 'agt_b')?.containerCount, 0);

  await store.setAgentStatus('agt_a', 'revoked', at(8000));
  await store.setAgentStatus('agt_a', 'offline', at(9000));
  await store.markAgentConnected('agt_a', '0.2.0', host('alpha'), at(9500));
  a = await store.getAgent('agt_a');
  t.equal(a?.status, 'revoked', 'revocation is terminal');
  t.same(a?.revokedAt, at(8000));
  t.equal(a?.agentVersion, '0.1.0', 'a revoked agent’s hello is not recorded');
});

t.test('containers: replace, upsert, remove', async (t) => {
  const store = await freshStore(t);
  await store.insertAgent(agent('agt_a'));
  await store.insertAgent(agent('agt_b'));
  const [c1, c2, c3] = [hexId('c1'), hexId('c2'), hexId('c3')];

  await store.replaceContainers('agt_a', [facts({ id: c1, name: '/web', labels: { tier: 'front' } }), facts({ id: c2, name: '/db' })], at(1));
  await store.replaceContainers('agt_b', [facts({ id: c1, name: '/same-id-other-host' })], at(1));
  t.same((await store.listContainers({ agentId: 'agt_a' })).map((c) => c.name), ['/db', '/web']);

  const web = await store.getContainer('agt_a', c1);
  t.equal(web?.imageRef, 'busybox:1');
  t.equal(web?.state, 'running');
  t.equal(web?.removed, false);
  t.same(web?.updatedAt, at(1));
  t.same(web?.facts, facts({ id: c1, name: '/web', labels: { tier: 'front' } }), 'facts round-trip');
  t.equal((await store.getContainer('agt_b', c1))?.name, '/same-id-other-host', 'keyed by (agent, id)');

  // A new snapshot: c2 gone, c1 changed, c3 new.
  await store.replaceContainers('agt_a', [facts({ id: c1, name: '/web', state: 'exited', labels: {} }), facts({ id: c3, name: '/cache' })], at(2));
  t.same((await store.listContainers({ agentId: 'agt_a' })).map((c) => c.name), ['/cache', '/web']);
  const gone = await store.getContainer('agt_a', c2);
  t.equal(gone?.removed, true, 'missing from the snapshot → removed');
  t.same(gone?.updatedAt, at(2));
  t.same((await store.listContainers({ agentId: 'agt_a', includeRemoved: true })).map((c) => c.name), ['/cache', '/db', '/web']);
  t.same(await store.listContainers({ agentId: 'agt_a', labels: ['tier'] }), [], 'labels were replaced too');
  t.equal((await store.getContainer('agt_b', c1))?.removed, false, 'other agents untouched');

  // Upsert revives and updates; remove marks.
  await store.upsertContainer('agt_a', facts({ id: c2, name: '/db', state: 'running', labels: { role: 'db' } }), at(3));
  t.equal((await store.getContainer('agt_a', c2))?.removed, false);
  t.same((await store.listContainers({ labels: ['role=db'] })).map((c) => c.id), [c2]);
  await store.removeContainer('agt_a', c2, at(4));
  t.equal((await store.getContainer('agt_a', c2))?.removed, true);
  t.same(await store.listContainers({ labels: ['role=db'] }), []);
  t.same((await store.listContainers({ labels: ['role=db'], includeRemoved: true })).map((c) => c.id), [c2], 'removed keep their labels');

  // Duplicate ids in a snapshot: last one wins.
  await store.replaceContainers('agt_b', [facts({ id: c3, name: '/first' }), facts({ id: c3, name: '/second' })], at(5));
  t.same((await store.listContainers({ agentId: 'agt_b' })).map((c) => c.name), ['/second']);

  await t.rejects(store.replaceContainers('agt_a', [facts({ id: '' })], at(6)), { code: 'BK_ERR_PROTOCOL' });
  await t.rejects(store.replaceContainers('agt_unknown', [facts({ id: c1 })], at(6)), 'foreign key: agent must exist');
});

t.test('replaceContainers is one transaction', async (t) => {
  const store = await freshStore(t);
  await store.insertAgent(agent('agt_a'));
  await store.replaceContainers('agt_a', [facts({ id: hexId('keep'), name: '/keep' })], at(1));
  // 150 containers span two batches; the second batch fails to serialize.
  const snapshot = Array.from({ length: 150 }, (_, i) => facts({ id: hexId(`n${i}`), name: `/n${i}` }));
  (snapshot[120] as unknown as Record<string, unknown>)['pid'] = 10n; // JSON.stringify throws on BigInt
  await t.rejects(store.replaceContainers('agt_a', snapshot, at(2)));
  const after = await store.listContainers({ agentId: 'agt_a', includeRemoved: true });
  t.same(after.map((c) => [c.name, c.removed]), [['/keep', false]], 'nothing of the failed snapshot is visible');
});

t.test('a container write clears the agent\'s state hash atomically with it (clearStateHash)', async (t) => {
  const store = await freshStore(t);
  await store.insertAgent(agent('agt_a'));
  await store.insertAgent(agent('agt_b'));
  const hash = async (id = 'agt_a') => (await store.getAgent(id))?.stateHash;
  const names = async () => (await store.listContainers({ agentId: 'agt_a' })).map((c) => c.name);
  const setHashes = () => store.touchAgents!(new Map(), new Map([['agt_a', 'sha256:a'], ['agt_b', 'sha256:b']]));
  const [c1, c2, c3, c4] = [hexId('h1'), hexId('h2'), hexId('h3'), hexId('h4')];
  await setHashes();
  await store.replaceContainers('agt_a', [facts({ id: c1, name: '/c1' })], at(1));
  await store.upsertContainer('agt_a', facts({ id: c2, name: '/c2' }), at(1));
  await store.removeContainer('agt_a', c2, at(1));
  t.equal(await hash(), 'sha256:a', 'without the option the hash is kept');

  await store.replaceContainers('agt_a', [facts({ id: c1, name: '/c1' }), facts({ id: c2, name: '/c2' })], at(2), { clearStateHash: true });
  t.equal(await hash(), undefined, 'a snapshot clears it');
  t.equal(await hash('agt_b'), 'sha256:b', 'another agent\'s hash is kept');
  t.same(await names(), ['/c1', '/c2'], 'and the snapshot is stored');
  await setHashes();
  await store.upsertContainer('agt_a', facts({ id: c3, name: '/c3', labels: { k: 'v' } }), at(3), { clearStateHash: true });
  t.equal(await hash(), undefined, 'an upsert clears it');
  t.same(await names(), ['/c1', '/c2', '/c3']);
  t.same((await store.listContainers({ labels: ['k=v'] })).map((c) => c.id), [c3], 'with its labels');
  await setHashes();
  await store.removeContainer('agt_a', c1, at(4), { clearStateHash: true });
  t.equal(await hash(), undefined, 'a remove clears it');
  t.same(await names(), ['/c2', '/c3']);
  t.equal(await hash('agt_b'), 'sha256:b');
  await store.upsertContainer('agt_a', facts({ id: c4, name: '/c4' }), at(5), { clearStateHash: true });
  await store.removeContainer('agt_a', c4, at(5), { clearStateHash: true });
  t.same(await names(), ['/c2', '/c3'], 'with no hash stored the writes are stored as ever');

  // A write that fails changes neither the containers nor the hash: the hash still describes them.
  await setHashes();
  const snapshot = Array.from({ length: 150 }, (_, i) => facts({ id: hexId(`f${i}`), name: `/f${i}` }));
  (snapshot[120] as unknown as Record<string, unknown>)['pid'] = 10n; // JSON.stringify throws on BigInt, in the second batch
  await t.rejects(store.replaceContainers('agt_a', snapshot, at(6), { clearStateHash: true }));
  t.equal(await hash(), 'sha256:a', 'a failed snapshot leaves the hash');
  t.same(await names(), ['/c2', '/c3'], 'and the containers');
  await t.rejects(store.replaceContainers('agt_unknown', [facts({ id: c1 })], at(6), { clearStateHash: true }), 'foreign key: agent must exist');
  const bad = facts({ id: c4, name: '/bad' });
  (bad as unknown as Record<string, unknown>)['pid'] = 10n;
  await t.rejects(store.upsertContainer('agt_a', bad, at(7), { clearStateHash: true }));
  t.equal(await hash(), 'sha256:a', 'a failed upsert leaves the hash');
  t.same(await names(), ['/c2', '/c3']);
});

t.test('container filters', async (t) => {
  const store = await freshStore(t);
  await store.insertAgent(agent('agt_a'));
  await store.insertAgent(agent('agt_b'));
  await store.replaceContainers(
    'agt_a',
    [
      facts({ id: hexId('a1'), name: '/web', imageRef: 'nginx:1.27', labels: { env: 'prod', team: 'web', url: 'a=b' } }),
      facts({ id: hexId('a2'), name: '/job', imageRef: 'bulkhead-test/BusyBox:1', state: 'exited', labels: { env: 'dev' } }),
      facts({ id: hexId('a3'), name: '/pct', imageRef: 'weird%_image', labels: { env: 'prod' } }),
    ],
    at(1),
  );
  await store.replaceContainers('agt_b', [facts({ id: hexId('b1'), name: '/api', imageRef: 'registry/nginx-api:2', labels: { env: 'prod', team: 'api' } })], at(1));
  const names = async (q: Parameters<Store['listContainers']>[0]) => (await store.listContainers(q)).map((c) => c.name);

  t.same(await names({}), ['/job', '/pct', '/web', '/api'], 'ordered by agent, name');
  t.same(await names({ agentId: 'agt_b' }), ['/api']);
  t.same(await names({ state: 'exited' }), ['/job']);
  t.same(await names({ image: 'nginx' }), ['/web', '/api'], 'image substring');
  t.same(await names({ image: 'busybox' }), ['/job'], 'image match is case-insensitive');
  t.same(await names({ image: '%' }), ['/pct'], '% is literal, not a wildcard');
  t.same(await names({ image: 'd_i' }), [], '_ is literal, not a wildcard');
  t.same(await names({ labels: ['team'] }), ['/web', '/api'], 'label present');
  t.same(await names({ labels: ['env=prod'] }), ['/pct', '/web', '/api'], 'label value');
  t.same(await names({ labels: ['env=prod', 'team=api'] }), ['/api'], 'labels AND');
  t.same(await names({ labels: ['url=a=b'] }), ['/web'], 'value may contain =');
  t.same(await names({ labels: ['env='] }), [], 'empty value is a value');
  t.same(await names({ labels: ['env=prod'], image: 'nginx', agentId: 'agt_a' }), ['/web'], 'filters combine');
  t.same(await names({ limit: 2 }), ['/job', '/pct']);
  t.same(await names({ limit: 2, offset: 2 }), ['/web', '/api']);
  t.same(await names({ offset: 3 }), ['/api'], 'offset without limit');
  t.same(await names({ labels: ['env=prod'], limit: 1, offset: 1 }), ['/web'], 'paging applies after label filtering');
  await t.rejects(store.listContainers({ labels: ['=x'] }), new BulkheadError('BK_ERR_BAD_REQUEST', 'label filter "=x" has an empty key (expected key or key=value)'));
  await t.rejects(store.listContainers({ limit: -1 }), { code: 'BK_ERR_BAD_REQUEST' });
});

// PostgreSQL resolves the image substring to the stored references it matches while there are
// at most 1,000 distinct ones, and tests the substring row by row beyond: both give these rows.
t.test('container image filter: removed rows, many distinct references, with paging', async (t) => {
  const store = await freshStore(t);
  await store.insertAgent(agent('agt_a'));
  await store.insertAgent(agent('agt_b'));
  await store.replaceContainers('agt_a', [
    facts({ id: hexId('r1'), name: '/cache', imageRef: 'Redis:7' }),
    facts({ id: hexId('r2'), name: '/old', imageRef: 'redis-old:6' }),
    facts({ id: hexId('r3'), name: '/web', imageRef: 'nginx:1' }),
  ], at(1));
  await store.removeContainer('agt_a', hexId('r2'), at(2));
  const names = async (q: Parameters<Store['listContainers']>[0]) => (await store.listContainers(q)).map((c) => `${c.agentId}${c.name}`);
  t.same(await names({ image: 'redis' }), ['agt_a/cache'], 'a removed container is left out');
  t.same(await names({ image: 'redis', includeRemoved: true }), ['agt_a/cache', 'agt_a/old'], "its reference still matches with include_removed");
  t.same(await names({ image: 'redis-old' }), [], "only the removed container runs it: nothing live");
  // 1,100 distinct references (each container its own build tag): past the resolved-list bound.
  const many = Array.from({ length: 1100 }, (_, i) => facts({ id: hexId(`m${i}`), name: `/m${String(i).padStart(4, '0')}`, imageRef: `registry/app:${i % 3 === 0 ? 'Redis-' : 'build-'}${i}` }));
  await store.replaceContainers('agt_b', many, at(3));
  const expect = ['agt_a/cache', ...many.filter((_, i) => i % 3 === 0).map((c) => `agt_b${c.name}`)];
  t.same(await names({ image: 'REDIS' }), expect, 'every match, in order, with 1,103 distinct references');
  const paged: string[] = [];
  for (let offset = 0; offset < expect.length; offset += 100) paged.push(...(await names({ image: 'redis', limit: 100, offset })));
  t.same(paged, expect, 'page by page');
  const byName = await store.listContainers({ image: 'redis', sort: { field: 'name', desc: true }, limit: 5 });
  t.same(byName.map((c) => c.name), [...expect].map((k) => k.slice(5)).sort().reverse().slice(0, 5), 'sorted by name, descending');
  t.same(await names({ image: 'build-1099' }), ['agt_b/m1099']);
  t.same(await names({ image: 'no-such' }), []);
});

// The policy dry-run reads every container with one unlimited list: its rows must come back at
// fleet size (the OR of keys it was read with passed more parameters than SQLite allows).
t.test('a list without a limit reads every row: 34,000 containers', async (t) => {
  const store = await freshStore(t);
  for (const a of ['agt_a', 'agt_b']) {
    await store.insertAgent(agent(a));
    await store.replaceContainers(a, Array.from({ length: 17_000 }, (_, i) => facts({ id: hexId(`${a}-${i}`), name: `/c${String(i).padStart(5, '0')}` })), at(1));
  }
  const all = await store.listContainers({});
  t.equal(all.length, 34_000, 'every container');
  t.equal(new Set(all.map((c) => `${c.agentId}/${c.id}`)).size, 34_000, 'each once');
  t.same([all[0]!.name, all[16_999]!.name, all[17_000]!.agentId, all[33_999]!.name], ['/c00000', '/c16999', 'agt_b', '/c16999'], 'in the list order');
});

t.test('findContainers and purgeRemovedContainers', async (t) => {
  const store = await freshStore(t);
  await store.insertAgent(agent('agt_a'));
  const id = hexId('x');
  await store.replaceContainers('agt_a', [facts({ id, name: '/web' }), facts({ id: hexId('y'), name: '/db' })], at(1));
  t.same((await store.findContainers!('agt_a', { idPrefix: id.slice(0, 12) })).map((c) => c.id), [id]);
  t.same((await store.findContainers!('agt_a', { idPrefix: id.slice(0, 12).toUpperCase() })).map((c) => c.id), [id], 'an id prefix matches in any case (SQLite and PostgreSQL alike)');
  t.same((await store.findContainers!('agt_a', { names: ['web', '/web'] })).map((c) => c.id), [id]);
  t.same(await store.findContainers!('agt_a', {}), []);
  t.same(await store.findContainers!('agt_a', { idPrefix: '%' }), [], 'prefix is literal');

  await store.removeContainer('agt_a', id, at(10));
  t.equal(await store.purgeRemovedContainers!(at(10)), 0, 'not older than the cutoff');
  t.equal(await store.purgeRemovedContainers!(at(11)), 1);
  t.equal(await store.getContainer('agt_a', id), undefined);
  t.equal((await store.listContainers({ includeRemoved: true })).length, 1);
});

t.test('acceptAgentHello: a replica takes over a dead replica\'s lease and marks the agent online in one write', async (t) => {
  const store = await freshStore(t);
  const FP = `sha256:${'a'.repeat(64)}`;
  const hello = (agentId: string, over: Partial<Parameters<NonNullable<Store['acceptAgentHello']>>[0]> = {}) =>
    store.acceptAgentHello!({ agentId, certSerial: 'ab12', owner: 'rep_B', leaseExpiresAt: at(16_000), agentVersion: '1.2.3', host: host(`h-${agentId}`), now: at(1000), ...over });
  await store.insertAgent(agent('agt_h'));
  await store.touchAgents!(new Map(), new Map([['agt_h', 'sha256:inv']]));
  // Replica A held the stream, then died: its lease row stays (unexpired) until someone takes it.
  await store.claimAgentLease!('agt_h', 'rep_A', at(15_000));
  await store.setAgentTrustedCas!('agt_h', [FP]);
  await store.setAgentPolicyStatus({ agentId: 'agt_h', version: 3, applied: true, error: '', updatedAt: at(500) });
  await store.setAgentStatus('agt_h', 'online', at(500));
  const r = await hello('agt_h', { host: host('h-new') });
  t.same(r, {
    accepted: true,
    before: { hostname: 'host-h', status: 'online', revokedAt: null, certSerial: 'ab12', trustedCas: [FP], stateHash: 'sha256:inv', policyStatus: { version: 3, applied: true, error: '' } },
  }, 'taken; returns the agent as it was, with its policy status');
  t.same(await store.getAgentLease!('agt_h'), { owner: 'rep_B', expiresAt: at(16_000) }, 'the lease is B\'s now, with B\'s expiry');
  const rec = await store.getAgent('agt_h');
  t.equal(rec?.status, 'online');
  t.equal(rec?.agentVersion, '1.2.3');
  t.equal(rec?.host?.hostname, 'h-new');
  t.same(rec?.connectedAt, at(1000));
  t.same(rec?.lastSeenAt, at(1000));
  t.same(rec?.trustedCas, [FP], 'trusted CAs not given: left as stored');
  // A's stream ending late (its process was only stalled) leaves the agent online: B holds it.
  t.equal(await store.markAgentOfflineUnlessHeld!('agt_h', 'rep_A', at(2000)), false, 'the old holder cannot mark it offline');
  t.equal((await store.getAgent('agt_h'))?.status, 'online');

  // No lease row at all (first hello ever), and new trusted CAs.
  await store.insertAgent(agent('agt_i'));
  t.same(await hello('agt_i', { trustedCas: [FP] }), { accepted: true, before: { hostname: 'host-i', status: 'offline', revokedAt: null, certSerial: 'ab12' } }, 'nothing reported yet: no CAs, hash or policy status before');
  t.equal((await store.getAgentLease!('agt_i'))?.owner, 'rep_B');
  t.same((await store.getAgent('agt_i'))?.trustedCas, [FP], 'given trusted CAs are stored');
});

t.test('acceptAgentHello refuses, writing nothing, an unknown or revoked agent and a certificate not its own', async (t) => {
  const store = await freshStore(t);
  const hello = (agentId: string, certSerial: string) =>
    store.acceptAgentHello!({ agentId, certSerial, owner: 'rep_B', leaseExpiresAt: at(16_000), agentVersion: '9', host: host('h-x'), now: at(1000), trustedCas: [] });
  t.same(await hello('agt_none', 'ab12'), { accepted: false }, 'not enrolled');
  t.equal(await store.getAgentLease!('agt_none'), undefined, 'no lease for an unknown agent');

  // A revoked agent stays revoked (a late hello must not flip it back online), and gets no lease.
  await store.insertAgent(agent('agt_r'));
  await store.setAgentStatus('agt_r', 'revoked', at(500));
  const r = await hello('agt_r', 'ab12');
  t.equal(r.accepted, false);
  t.equal(r.before?.status, 'revoked');
  t.equal((await store.getAgent('agt_r'))?.status, 'revoked');
  t.equal((await store.getAgent('agt_r'))?.agentVersion, '', 'nothing of the hello written');
  t.equal(await store.getAgentLease!('agt_r'), undefined, 'no lease for a revoked agent');
  // revokedAt alone (a revocation's timestamp with another status) refuses too.
  await store.insertAgent(agent('agt_ra', { status: 'online', revokedAt: at(400) }));
  t.same((await hello('agt_ra', 'ab12')).accepted, false, 'revokedAt set: refused');
  t.equal(await store.getAgentLease!('agt_ra'), undefined);

  // Serials: the current or the previous one, compared as canonicalSerial does (case, leading zeros).
  await store.insertAgent(agent('agt_c', { certSerial: '00AB12', prevCertSerial: '0Cd3' }));
  const w = await hello('agt_c', 'ef');
  t.same(w, { accepted: false, before: { hostname: 'host-c', status: 'offline', revokedAt: null, certSerial: '00AB12', prevCertSerial: '0Cd3' } }, 'another serial: refused');
  t.equal(await store.getAgentLease!('agt_c'), undefined, 'and no lease');
  t.equal((await store.getAgent('agt_c'))?.status, 'offline', 'nor online');
  t.equal((await hello('agt_c', 'ab12')).accepted, true, 'the current serial, stored upper-case with leading zeros');
  t.equal((await hello('agt_c', 'cd3')).accepted, true, 'the previous serial (its renewal answer never arrived)');
  t.equal((await hello('agt_c', '0ab12')).accepted, false, 'a serial given non-canonical does not match');
  await store.insertAgent(agent('agt_d', { certSerial: 'ab12', prevCertSerial: '' }));
  t.equal((await hello('agt_d', '')).accepted, false, 'an empty previous serial matches nothing');
});
