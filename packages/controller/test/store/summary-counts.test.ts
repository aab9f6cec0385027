// 0024_summary_counts: the live-container counts GET /v1/summary reads (container_counts,
// kept by triggers on containers) and its busiest containers (a walk of the usage indexes),
// against the rows themselves after every kind of container write; on SQLite here and on a
// private PostgreSQL cluster in summary-counts.postgres.test.ts.
import t from 'tap';
import { Migrator } from 'kysely';
import { MIGRATIONS } from '../../src/store/migrations';
import { openStore } from '../../src/store/open-store';
import type { ContainerFacts__Output } from '@bulkhead/shared';
import type { Store } from '../../src/store/store';
import type { ContainerUsageRecord } from '../../src/store/usage-store';
import { agent, facts, hexId } from './fixtures/records';
import { openTestStore, rawDb, testDatabase } from './fixtures/backend';

const T0 = new Date('2025-01-01T00:00:00Z');
const at = (ms: number) => new Date(T0.getTime() + ms);
const summaryOf = (store: Store, projects?: string[]) =>
  store.fleetSummary!.summary({ now: at(1000), projects, top: 3, certWarnMs: 0, windowMs: 86_400_000 });

/** The counts the summary must show, from the live rows (a read of every container). */
async function expected(store: Store, projects?: string[]): Promise<{ total: number; byState: Array<{ key: string; count: number }> }> {
  const rows = await store.listContainers({ projects });
  const m = new Map<string, number>();
  for (const r of rows) m.set(r.state, (m.get(r.state) ?? 0) + 1);
  const byState = [...m].map(([key, count]) => ({ key, count })).sort((a, b) => b.count - a.count || (a.key < b.key ? -1 : 1));
  return { total: rows.length, byState };
}

const c = (agentId: string, n: number, over: Partial<ContainerFacts__Output> = {}) =>
  facts({ id: hexId(`${agentId}-${n}`), name: `/c-${n}`, state: n % 3 === 0 ? 'exited' : 'running', project: ['payments', 'search', ''][n % 3]!, ...over });

t.test('container counts follow every container write (snapshot, delta, removal, purge), in and out of scope', async (t) => {
  const store = await openTestStore(t);
  const check = async (what: string) => {
    for (const projects of [undefined, ['payments'], ['search', ''], []]) {
      t.same((await summaryOf(store, projects)).containers, await expected(store, projects), `${what}${projects ? ` (projects ${JSON.stringify(projects)})` : ''}`);
    }
    // The metrics' count (bulkhead_containers by state) reads the same table, unscoped.
    const all = await expected(store);
    t.same(await store.countContainersByState!(), Object.fromEntries(all.byState.map((s) => [s.key, s.count])), `${what} (metrics by state)`);
  };
  for (const a of ['agt_a', 'agt_b']) await store.insertAgent(agent(a));
  await check('empty');
  await store.replaceContainers('agt_a', Array.from({ length: 12 }, (_, n) => c('agt_a', n)), at(1));
  await store.replaceContainers('agt_b', Array.from({ length: 7 }, (_, n) => c('agt_b', n)), at(1));
  await check('first snapshots');
  // A second snapshot: some gone (marked removed), some changed state or project, some new.
  await store.replaceContainers('agt_a', [
    ...Array.from({ length: 8 }, (_, n) => c('agt_a', n, n % 2 === 0 ? { state: 'paused' } : {})),
    c('agt_a', 3, { project: 'search' }),
    c('agt_a', 20), c('agt_a', 21, { state: 'restarting' }),
  ], at(2));
  await check('a snapshot that removes, changes and adds');
  await store.upsertContainer('agt_b', c('agt_b', 2, { state: 'exited', project: 'payments' }), at(3));
  await store.upsertContainer('agt_b', c('agt_b', 30), at(3));
  await store.upsertContainer('agt_b', c('agt_b', 30), at(4)); // the same facts again
  await check('deltas: a change and a new container');
  t.ok(await store.removeContainer('agt_b', hexId('agt_b-1'), at(5)));
  await store.removeContainer('agt_b', hexId('agt_b-1'), at(6)); // removed twice
  await check('a removal');
  await store.upsertContainer('agt_b', c('agt_b', 1), at(7));
  await check('a removed container back');
  t.ok((await store.purgeRemovedContainers!(at(100))) > 0, 'removed rows purged');
  await check('after purging removed rows');
  await store.replaceContainers('agt_a', [], at(200));
  await check('an empty snapshot');
  t.same((await summaryOf(store)).containers.byState.map((s) => s.key).sort(), [...new Set((await store.listContainers({})).map((r) => r.state))].sort(), 'no state left at 0');
});

t.test('busiest: the top readings of live containers in scope, ties by agent then id, exactly', async (t) => {
  const store = await openTestStore(t);
  const live: Array<{ agentId: string; id: string; project: string; cpu: number; mem: number }> = [];
  for (const a of ['agt_a', 'agt_b', 'agt_c']) {
    await store.insertAgent(agent(a));
    const list = Array.from({ length: 15 }, (_, n) => c(a, n, { state: 'running' }));
    await store.replaceContainers(a, list, at(1));
    const usage: ContainerUsageRecord[] = list.map((f, n) => ({
      // Few distinct values: ties straddle the top 3 in every scope.
      agentId: a, containerId: f.id, takenAt: at(1), receivedAt: at(1), cpuPercent: [50, 50, 49.5, 10][n % 4]!, cpuPercentOfQuota: null, cpuLimitCores: 1,
      memoryBytes: [4096, 8192, 8192][n % 3]!, memoryLimitBytes: 0, pids: 1, pidsLimit: 0,
    }));
    await store.usage!.applyUsage(a, usage, []);
    for (const [n, f] of list.entries()) live.push({ agentId: a, id: f.id, project: f.project, cpu: usage[n]!.cpuPercent, mem: usage[n]!.memoryBytes });
  }
  // A removed container with the highest reading is not counted.
  await store.removeContainer('agt_a', hexId('agt_a-0'), at(2));
  const alive = live.filter((x) => x.id !== hexId('agt_a-0'));
  const tie = (a: { agentId: string; id: string }, b: { agentId: string; id: string }) => (a.agentId < b.agentId ? -1 : a.agentId > b.agentId ? 1 : a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
  for (const projects of [undefined, ['payments'], ['search', ''], []]) {
    const inScope = alive.filter((x) => projects === undefined || projects.includes(x.project));
    const s = await summaryOf(store, projects);
    t.same(s.busiest.cpu.map((x) => `${x.agentId}/${x.id}/${x.cpuPercent}`), [...inScope].sort((a, b) => b.cpu - a.cpu || tie(a, b)).slice(0, 3).map((x) => `${x.agentId}/${x.id}/${x.cpu}`), `cpu, projects ${JSON.stringify(projects)}`);
    t.same(s.busiest.memory.map((x) => `${x.agentId}/${x.id}/${x.memoryBytes}`), [...inScope].sort((a, b) => b.mem - a.mem || tie(a, b)).slice(0, 3).map((x) => `${x.agentId}/${x.id}/${x.mem}`), `memory, projects ${JSON.stringify(projects)}`);
  }
});

t.test('0024_summary_counts on a populated database counts the rows already there; down and up again', async (t) => {
  const config = await testDatabase(t);
  const migrateTo = async (name?: string) => {
    const db = rawDb(config);
    const m = new Migrator({ db, provider: { getMigrations: async () => ({ ...MIGRATIONS }) }, migrationTableName: 'bulkhead_migration', migrationLockTableName: 'bulkhead_migration_lock' });
    const r = name === undefined ? await m.migrateToLatest() : await m.migrateTo(name);
    await db.destroy();
    return r.error;
  };
  t.equal(await migrateTo('0023_list_sort_indexes'), undefined, 'the schema before 0024');
  let store = await openStore(config, { migrate: false });
  for (const a of ['agt_a', 'agt_b']) {
    await store.insertAgent(agent(a));
    await store.replaceContainers(a, Array.from({ length: 10 }, (_, n) => c(a, n)), at(1));
  }
  await store.removeContainer('agt_a', hexId('agt_a-1'), at(2));
  await store.close();
  t.equal(await migrateTo(), undefined, '0024 up');
  store = await openStore(config);
  t.same((await summaryOf(store)).containers, await expected(store), 'counts of the rows written before the migration');
  t.same((await summaryOf(store, ['payments'])).containers, await expected(store, ['payments']), 'in scope');
  await store.close();
  t.equal(await migrateTo('0023_list_sort_indexes'), undefined, 'down');
  store = await openStore(config, { migrate: false });
  await store.upsertContainer('agt_b', c('agt_b', 40), at(3)); // no triggers: nothing counts it
  await store.close();
  t.equal(await migrateTo(), undefined, 'up again');
  store = await openStore(config);
  t.teardown(() => store.close());
  t.same((await summaryOf(store)).containers, await expected(store), 'counts again, the row written while down included');
  await store.upsertContainer('agt_b', c('agt_b', 41), at(4));
  t.same((await summaryOf(store)).containers, await expected(store), 'and kept after');
});
