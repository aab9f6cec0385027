// What only the PostgreSQL store does, on a private cluster (test/helpers/postgres.ts):
// the URL check and its password-free description, start-up errors that say what is wrong,
// a pool that survives the server dropping its connections, several controllers on one
// database at once (migrations, the hash-chained audit log, policy version numbers, the
// webhook outbox's leases), NUL in text, and integer/float columns coming back as numbers.
// The Store contract itself runs here through store.postgres.test.ts and its siblings.
import t from 'tap';
import { sql, type Kysely } from 'kysely';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { createLogger } from '@bulkhead/shared';
import { PostgresStore, describePostgresUrl } from '../../src/store/postgres-store';
import { describeStore, openStore, storeConfigFor, type StoreConfig } from '../../src/store/open-store';
import type { Store } from '../../src/store/store';
import { verifyAuditChain } from '../../src/audit/audit-chain';
import { resolveControllerOptions } from '../../src/controller-options';
import { main as cli } from '../../src/cli/main';
import type { AuditEntry } from '../../src/audit/audit-store';
import type { DeliveryRecord, WebhookEndpointRecord } from '../../src/alerts/alert-store';
import type { AlertRecord } from '../../src/alerts/alert-types';
import { usePostgres, type PrivatePostgres } from '../../../../test/helpers/postgres';
import { agent, facts, hexId } from './fixtures/records';

const T0 = new Date('2026-06-01T00:00:00Z');
const at = (ms: number) => new Date(T0.getTime() + ms);

async function cluster(t: tap.Test): Promise<PrivatePostgres | undefined> {
  return usePostgres(t); // as root a missing PostgreSQL fails here; otherwise a loud skip
}

async function newDb(pg: PrivatePostgres): Promise<StoreConfig & { kind: 'postgres'; name: string; owner: string; password: string }> {
  const db = await pg.createDatabase();
  return { kind: 'postgres', connectionString: db.url, name: db.name, owner: db.owner, password: db.password };
}

async function open(t: tap.Test, config: StoreConfig, opts: Parameters<typeof openStore>[1] = {}): Promise<Store> {
  const s = await openStore(config, opts);
  t.teardown(() => s.close());
  return s;
}

t.test('database URLs: only postgres(ql)://, described without the password', async (t) => {
  t.equal(describePostgresUrl('postgresql://bulkhead:s3cr3t@db.example.com:6432/fleet?sslmode=verify-full'), 'bulkhead@db.example.com:6432/fleet');
  t.equal(describePostgresUrl('postgres://bulkhead@db/bulkhead'), 'bulkhead@db/bulkhead');
  t.equal(describePostgresUrl('postgresql://bk:pw@/bk%20db?host=%2Fvar%2Frun%2Fpostgresql'), 'bk@/var/run/postgresql/bk db', 'unix socket directory');
  t.equal(describePostgresUrl('postgresql://bk@/'), 'bk@localhost/bk', 'database defaults to the user name');
  t.equal(describePostgresUrl('postgresql:///x'), 'localhost/x');
  for (const bad of ['mysql://u:p@h/d', 'sqlite:///tmp/x.db', 'http://h/d']) {
    t.throws(() => describePostgresUrl(bad), { code: 'BK_ERR_CONFIG_INVALID', message: /unsupported database URL scheme/ }, bad);
  }
  t.throws(() => describePostgresUrl('db.example.com/bulkhead'), { code: 'BK_ERR_CONFIG_INVALID', message: /not a URL/ });
  let msg = '';
  try {
    describePostgresUrl('host=db password=hunter2');
  } catch (e) {
    msg = (e as Error).message;
  }
  t.match(msg, /not a URL/);
  t.notMatch(msg, /hunter2/, 'a bad URL is not echoed (it may hold a password)');

  t.same(storeConfigFor('/var/lib/bk'), { kind: 'sqlite', path: '/var/lib/bk/bulkhead.db' });
  t.same(storeConfigFor('/var/lib/bk', '  '), { kind: 'sqlite', path: '/var/lib/bk/bulkhead.db' }, 'an empty URL means SQLite');
  t.same(storeConfigFor('/var/lib/bk', 'postgresql://u:p@h/d'), { kind: 'postgres', connectionString: 'postgresql://u:p@h/d' });
  t.throws(() => storeConfigFor('/x', 'mysql://u@h/d'), { code: 'BK_ERR_CONFIG_INVALID' });
  t.same(describeStore({ kind: 'postgres', connectionString: 'postgresql://u:hunter2@h/d' }), { kind: 'postgres', location: 'u@h/d' });
  t.same(describeStore({ kind: 'sqlite', path: '/x/bulkhead.db' }), { kind: 'sqlite', location: '/x/bulkhead.db' });

  await t.rejects(PostgresStore.open({ connectionString: 'postgresql://u@h/d', maxConnections: 0 }), { code: 'BK_ERR_CONFIG_INVALID' });
  await t.rejects(PostgresStore.open({ connectionString: 'postgresql://u@h/d', connectTimeoutMs: -1 }), { code: 'BK_ERR_CONFIG_INVALID' });
  await t.rejects(openStore({ kind: 'postgres', connectionString: 'mysql://u@h/d' }), { code: 'BK_ERR_CONFIG_INVALID' });
});

t.test('start-up errors say what is wrong, and never the password', async (t) => {
  const pg = await cluster(t);
  if (!pg) return;
  const db = await pg.createDatabase();
  const wrongPassword = pg.url(db.owner, 'not-the-password-xyz', db.name);
  const err = await openStore({ kind: 'postgres', connectionString: wrongPassword }).then(() => undefined, (e: Error & { code?: string }) => e);
  t.match(err, { code: 'BK_ERR_STARTUP_FAILED', message: new RegExp(`cannot connect to PostgreSQL ${db.owner}@.*/${db.name}: password authentication failed`) });
  t.notMatch(err?.message ?? '', /not-the-password-xyz/);

  const noDb = await openStore({ kind: 'postgres', connectionString: pg.url(db.owner, db.password, 'nope') }).then(() => undefined, (e: Error) => e);
  t.match(noDb, { code: 'BK_ERR_STARTUP_FAILED', message: /database "nope" does not exist/ });

  // Nothing listens on this socket directory: refused at once, not after a TCP timeout.
  const started = Date.now();
  const down = await openStore({ kind: 'postgres', connectionString: `postgresql://u:p@/d?host=${encodeURIComponent(t.testdir())}`, connectTimeoutMs: 3000 }).then(
    () => undefined,
    (e: Error) => e,
  );
  t.match(down, { code: 'BK_ERR_STARTUP_FAILED', message: /cannot connect to PostgreSQL/ });
  t.ok(Date.now() - started < 10_000, 'bounded');

  // migrate: false opens lazily (the offline audit verifier), so nothing is checked yet.
  const lazy = await openStore({ kind: 'postgres', connectionString: wrongPassword }, { migrate: false });
  await t.rejects(lazy.ping(), /password authentication failed/);
  await lazy.close();
});

t.test('the least privileges: a database owner that is not a superuser can migrate and run everything', async (t) => {
  const pg = await cluster(t);
  if (!pg) return;
  const db = await pg.createDatabase();
  const roles = await pg.query<{ rolsuper: boolean; rolcreatedb: boolean; rolcreaterole: boolean }>('select rolsuper, rolcreatedb, rolcreaterole from pg_roles where rolname = $1', [db.owner]);
  t.same(roles, [{ rolsuper: false, rolcreatedb: false, rolcreaterole: false }]);
  const store = await open(t, { kind: 'postgres', connectionString: db.url });
  const tables = await pg.query<{ tablename: string; tableowner: string }>("select tablename, tableowner from pg_tables where schemaname = 'public' order by tablename", [], db.name);
  t.ok(tables.length >= 16, `${tables.length} tables`);
  t.ok(tables.every((x) => x.tableowner === db.owner), 'every table belongs to the owner role');
  t.ok(tables.some((x) => x.tablename === 'bulkhead_migration'));
  await store.audit!.append(entry(0)); // takes the audit_log lock: needs no more than ownership
  t.equal((await store.audit!.head())?.seq, 1);
});

t.test('the pool survives the server dropping its connections', async (t) => {
  const pg = await cluster(t);
  if (!pg) return;
  const config = await newDb(pg);
  const lines: string[] = [];
  const logger = createLogger({ name: 'pg-test', level: 'debug', destination: { write: (s: string) => void lines.push(s) } });
  const store = await open(t, config, { logger });
  await store.insertAgent(agent('agt_a'));
  const killed = await pg.query<{ n: string }>('select count(pg_terminate_backend(pid))::text as n from pg_stat_activity where datname = $1 and pid <> pg_backend_pid()', [config.name]);
  t.ok(Number(killed[0]!.n) >= 1, 'idle pooled connections were terminated');
  // Without an 'error' listener on the pool, this would be an uncaught exception ending the process.
  await waitFor(() => lines.some((l) => /pooled PostgreSQL connection failed/.test(l)));
  t.notMatch(lines.join(''), config.password, 'the log names the database, not the password');
  t.equal((await store.getAgent('agt_a'))?.id, 'agt_a', 'the next query opens a new connection');
});

t.test('two controllers starting at once on an empty database both migrate', async (t) => {
  const pg = await cluster(t);
  if (!pg) return;
  const config = await newDb(pg);
  const stores = await Promise.all([openStore(config), openStore(config), openStore(config)]);
  t.teardown(() => Promise.all(stores.map((s) => s.close())));
  const rows = await pg.query<{ name: string }>('select name from bulkhead_migration order by name', [], config.name);
  t.same(rows.map((r) => r.name), [...new Set(rows.map((r) => r.name))], 'each migration recorded once');
  t.ok(rows.length >= 7);
  await stores[1]!.insertAgent(agent('agt_x'));
  t.equal((await stores[2]!.getAgent('agt_x'))?.id, 'agt_x');
});

t.test('overlapping snapshots of one agent (a reconnect racing the old stream) neither fail nor mix', async (t) => {
  const pg = await cluster(t);
  if (!pg) return;
  const config = await newDb(pg);
  const [a, b] = [await open(t, config), await open(t, config)];
  await a.insertAgent(agent('agt_a'));
  const snap = (tag: string, round: number) =>
    Array.from({ length: 20 }, (_, i) => facts({ id: hexId(`c${i}`), name: `/c${i}`, labels: { k1: tag, k2: tag, [`r${round}`]: tag } }));
  const failures: string[] = [];
  for (let round = 0; round < 15; round++) {
    const r = await Promise.allSettled([
      a.replaceContainers('agt_a', snap('a', round), at(round)),
      b.replaceContainers('agt_a', snap('b', round), at(round)),
      a.upsertContainer('agt_a', snap('c', round)[3]!, at(round)),
    ]);
    for (const x of r) if (x.status === 'rejected') failures.push(String((x.reason as Error).message));
  }
  t.same(failures, [], 'no deadlock, no duplicate label row');
  const live = await b.listContainers({ agentId: 'agt_a' });
  t.equal(live.length, 20);
  for (const c of live) {
    const tag = c.facts.labels['k1'];
    t.same((await a.listContainers({ agentId: 'agt_a', labels: [`k2=${tag}`, `r14=${tag}`] })).some((x) => x.id === c.id), true, `${c.name}: its label rows are one snapshot's`);
  }
});

function entry(i: number): AuditEntry {
  return {
    at: at(i), actorKind: 'key', actorId: 'ak_0123456789abcdef', actorName: `ctl-${i % 3}`, method: 'POST', route: '/v1/keys', path: '/v1/keys',
    action: 'keys.create', target: { keyId: `ak_${i}` }, clientIp: '127.0.0.1', status: 201, code: '',
  };
}

t.test('audit log: appends from several controllers at once keep one unbroken chain', async (t) => {
  const pg = await cluster(t);
  if (!pg) return;
  const config = await newDb(pg);
  const stores = await Promise.all([0, 1, 2, 3].map(() => open(t, config)));
  // Each controller serializes its own appends (AuditLog's queue); four of them race each other,
  // and one of them also fires a burst at once (no queue) to push the retry path.
  const perStore = 15;
  await Promise.all([
    ...stores.map(async (s, k) => {
      for (let i = 0; i < perStore; i++) await s.audit!.append(entry(k * 100 + i));
    }),
    Promise.all(Array.from({ length: 20 }, (_, i) => stores[0]!.audit!.append(entry(1000 + i)))),
  ]);
  const total = stores.length * perStore + 20;
  const head = await stores[1]!.audit!.head();
  t.equal(head?.seq, total, 'every append got its own seq');
  const v = await verifyAuditChain(stores[2]!.audit!);
  t.same({ ok: v.ok, checked: v.checked, firstBadSeq: v.firstBadSeq }, { ok: true, checked: total, firstBadSeq: null }, 'the chain verifies end to end');
});

t.test('policy versions from two controllers at once are numbered without gaps or duplicates', async (t) => {
  const pg = await cluster(t);
  if (!pg) return;
  const config = await newDb(pg);
  const [a, b] = [await open(t, config), await open(t, config)];
  const input = (n: string) => ({ name: n, yaml: n, json: '{}', sha256: hexId(n), createdAt: T0, createdBy: 'ak_x', comment: '' });
  const made = await Promise.all(Array.from({ length: 16 }, (_, i) => (i % 2 === 0 ? a : b).insertPolicyVersion(input(`p${i}`))));
  t.same(made.map((p) => p.version).sort((x, y) => x - y), Array.from({ length: 16 }, (_, i) => i + 1));
  t.equal((await b.getPolicy())?.version, 16);
});

function endpoint(id: string): WebhookEndpointRecord {
  return {
    id, name: id, url: 'https://receiver.example/hook', format: 'json', minSeverity: 'low', types: [], projects: [], secret: 'whsec_' + 'A'.repeat(32),
    previousSecret: null, previousSecretExpiresAt: null, headers: {}, enabled: true, allowUnsafeTarget: false, disabledReason: null, createdAt: T0, updatedAt: T0,
  };
}

function alertRec(i: number): AlertRecord {
  return {
    id: `alr_${String(i).padStart(26, '0')}`, type: 'violation', severity: 'high', time: T0, lastSeenAt: T0, count: 1, groupKey: `g${i}`, agentId: 'agt_a', host: 'h',
    containerId: null, containerName: null, image: null, project: null, ruleId: 'r', action: null, result: null, message: `m${i}`,
  };
}

function delivery(i: number, endpointId: string): DeliveryRecord {
  return {
    id: `msg_${String(i).padStart(26, '0')}`, alertId: alertRec(i).id, endpointId, status: 'pending', attempts: 0, retryBase: 0, nextAttemptAt: T0,
    createdAt: T0, updatedAt: T0, deliveredAt: null, lastStatusCode: null, lastError: null, deadReason: null,
  };
}

t.test('webhook outbox: controllers sharing a database never lease the same delivery twice', async (t) => {
  const pg = await cluster(t);
  if (!pg) return;
  const config = await newDb(pg);
  const stores = await Promise.all([0, 1, 2].map(() => open(t, config)));
  const alerts = stores[0]!.alerts!;
  await alerts.insertEndpoint(endpoint('wh_0000000000000001'));
  const n = 300;
  await alerts.writeAlerts(async (ctx) => {
    for (let i = 0; i < n; i++) await ctx.insert({ alert: alertRec(i), deliveries: [delivery(i, 'wh_0000000000000001')] });
  });
  // Every controller's workers claim in small batches until nothing is left, all at once.
  const claimedBy = new Map<string, number>();
  let doubles = 0;
  await Promise.all(
    stores.flatMap((s, k) =>
      [0, 1, 2].map(async () => {
        for (;;) {
          const got = await s.alerts!.claimDue(at(1000), 7, 60_000, []);
          if (got.length === 0) return;
          for (const c of got) {
            if (claimedBy.has(c.delivery.id)) doubles++;
            claimedBy.set(c.delivery.id, k);
            t.equal(c.alert.id, c.delivery.alertId);
          }
        }
      }),
    ),
  );
  t.equal(doubles, 0, 'no delivery leased twice');
  t.equal(claimedBy.size, n, 'every delivery leased once');
  t.ok(new Set(claimedBy.values()).size > 1, 'the work was actually shared');

  // The claim tokens fence results: only the lease holder's result is recorded.
  const [c1] = await stores[0]!.alerts!.claimDue(at(120_000), 1, 60_000, []); // the 60 s leases have lapsed: re-claimable
  t.ok(c1);
  const attempt = { deliveryId: c1!.delivery.id, attempt: 1, at: at(120_001), statusCode: 200, latencyMs: 5, error: null, outcome: 'delivered' as const, nextAttemptAt: null };
  t.equal(await stores[1]!.alerts!.recordAttempts([{ deliveryId: c1!.delivery.id, claimToken: 'not-the-token', attempt, status: 'delivered' }], at(120_002)), 0, 'a stale token records nothing');
  t.equal(await stores[1]!.alerts!.recordAttempts([{ deliveryId: c1!.delivery.id, claimToken: c1!.claimToken, attempt, status: 'delivered' }], at(120_002)), 1);
  const d = await stores[2]!.alerts!.getDelivery(c1!.delivery.id);
  t.match(d, { status: 'delivered', attempts: 1, lastStatusCode: 200 });
  t.same(d?.deliveredAt, at(120_002));
  t.same((await stores[2]!.alerts!.endpointStats(['wh_0000000000000001'])).get('wh_0000000000000001'), { pending: n - 1, delivered: 1, dead: 0 }, 'counts come back as numbers');
});

t.test('NUL in text is stored as U+FFFD instead of failing the write; JSON keeps it exactly', async (t) => {
  const pg = await cluster(t);
  if (!pg) return;
  const store = await open(t, await newDb(pg));
  await store.insertAgent(agent('agt_a'));
  const c = facts({ id: hexId('nul'), name: '/web', labels: { 'evil\u0000key': 'a\u0000b', ok: 'yes' } });
  await store.replaceContainers('agt_a', [c], T0);
  const got = await store.getContainer('agt_a', c.id);
  t.same(got?.facts.labels, { 'evil\u0000key': 'a\u0000b', ok: 'yes' }, 'facts (JSON) round-trip exactly');
  t.same((await store.listContainers({ labels: ['evil\u0000key=a\u0000b'] })).map((x) => x.id), [c.id], 'a filter with the same NUL still matches');
  t.same((await store.listContainers({ labels: ['evil\uFFFDkey'] })).map((x) => x.id), [c.id]);
  await store.insertJoinToken({ id: 'jt_nul', secretHash: 'h', createdAt: T0, expiresAt: at(1000), usedAt: null, usedByAgent: null, revokedAt: null, description: 'rack\u00004' });
  t.equal((await store.getJoinToken('jt_nul'))?.description, 'rack\uFFFD4');
});

t.test("the container list's key statements run without parallel workers, in one round trip from 8 connections", async (t) => {
  const pg = await cluster(t);
  if (!pg) return;
  const config = await newDb(pg);
  type Pools = { db: Kysely<unknown>; listReads?: Kysely<unknown> };
  const setting = async (db: Kysely<unknown>) => (await sql<{ v: string }>`select current_setting('max_parallel_workers_per_gather') as v`.execute(db)).rows[0]!.v;
  const big = await PostgresStore.open({ connectionString: config.connectionString, maxConnections: 8 });
  t.teardown(() => big.close());
  await big.migrate();
  const pools = big as unknown as Pools;
  t.ok(pools.listReads, 'a separate pool for list reads');
  // Both of its connections (two at once open the second): each set up before its first statement.
  t.same(await Promise.all([setting(pools.listReads!), setting(pools.listReads!)]), ['0', '0'], 'no parallel workers on the list pool');
  t.not(await setting(pools.db), '0', "the other statements keep the server's setting");
  await big.insertAgent(agent('agt_a'));
  await big.replaceContainers('agt_a', [facts({ id: hexId('l1'), name: '/one' }), facts({ id: hexId('l2'), name: '/two' })], T0);
  t.same((await big.listContainers({ state: 'running', limit: 1 })).map((c) => c.name), ['/one'], 'a page through it');

  const small = await PostgresStore.open({ connectionString: config.connectionString, maxConnections: 4 });
  t.teardown(() => small.close());
  t.equal((small as unknown as Pools).listReads, undefined, 'below 8 connections, no separate pool');
  t.same((await small.listContainers({ state: 'running', limit: 1, after: { agentId: 'agt_a', name: '/one', id: hexId('l1') } })).map((c) => c.name), ['/two'], 'the page in a SET LOCAL transaction');
  t.not(await setting((small as unknown as Pools).db), '0', 'SET LOCAL did not outlive its transaction');
});

t.test('integers and floats come back as numbers, large ones exactly', async (t) => {
  const pg = await cluster(t);
  if (!pg) return;
  const store = await open(t, await newDb(pg));
  const big = 64 * 1024 ** 3 + 7; // > 2^32
  await store.usage!.applyUsage('agt_a', [{
    agentId: 'agt_a', containerId: 'c1', takenAt: T0, receivedAt: at(1), cpuPercent: 12.25, cpuPercentOfQuota: 99.5, cpuLimitCores: 1.5,
    memoryBytes: big, memoryLimitBytes: big + 1, pids: 3, pidsLimit: 4096,
  }], []);
  const u = (await store.usage!.getUsage([{ agentId: 'agt_a', containerId: 'c1' }])).values().next().value!;
  t.same(u, {
    agentId: 'agt_a', containerId: 'c1', takenAt: T0, receivedAt: at(1), cpuPercent: 12.25, cpuPercentOfQuota: 99.5, cpuLimitCores: 1.5,
    memoryBytes: big, memoryLimitBytes: big + 1, pids: 3, pidsLimit: 4096,
    // Disk, network and connections not measured in this record: null, not 0 (issue 15).
    writableBytes: null, logBytes: null, blkioReadBytes: null, blkioWriteBytes: null, blkioReadOps: null, blkioWriteOps: null,
    netRxBytes: null, netTxBytes: null, netRxPackets: null, netTxPackets: null, netRxDropped: null, netTxDropped: null,
    netRxBytesPerSec: null, netTxBytesPerSec: null, tcpConnections: null, sockets: null,
  });
  t.equal(typeof u.memoryBytes, 'number');
  // The resource columns (0012_usage_resources) are bigint too: numbers, exactly.
  await store.usage!.applyUsage('agt_a', [{
    agentId: 'agt_a', containerId: 'c2', takenAt: T0, receivedAt: at(1), cpuPercent: 1, cpuPercentOfQuota: 0, cpuLimitCores: 0,
    memoryBytes: 1, memoryLimitBytes: 0, pids: 1, pidsLimit: 0,
    writableBytes: big, logBytes: big + 2, blkioReadBytes: big + 3, blkioWriteBytes: 4, blkioReadOps: 5, blkioWriteOps: 6,
    netRxBytes: big + 7, netTxBytes: 8, netRxPackets: 9, netTxPackets: 10, netRxDropped: 0, netTxDropped: 0,
    netRxBytesPerSec: 1.5, netTxBytesPerSec: 2.25, tcpConnections: 2000, sockets: 2001,
  }], []);
  const r = (await store.usage!.getUsage([{ agentId: 'agt_a', containerId: 'c2' }])).values().next().value!;
  t.match(r, { writableBytes: big, logBytes: big + 2, blkioReadBytes: big + 3, netRxBytes: big + 7, netRxBytesPerSec: 1.5, netTxBytesPerSec: 2.25, tcpConnections: 2000, sockets: 2001 });
  t.equal(typeof r.writableBytes, 'number');
  await store.insertAgent(agent('agt_a'));
  await store.replaceContainers('agt_a', [facts({ id: hexId('1') }), facts({ id: hexId('2'), state: 'exited' })], T0);
  t.same(await store.countContainersByState!(), { running: 1, exited: 1 });
  t.equal((await store.getAgent('agt_a'))?.containerCount, 2);
});

async function waitFor(pred: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 20));
  }
}

t.test('controller options: --database-url picks PostgreSQL, anything else but empty is refused at start-up', async (t) => {
  t.equal(resolveControllerOptions({ dataDir: '/d' }).databaseUrl, undefined, 'default: SQLite in the data directory');
  t.equal(resolveControllerOptions({ dataDir: '/d', databaseUrl: '' }).databaseUrl, undefined, 'empty (an unset variable in an env file) = SQLite');
  t.equal(resolveControllerOptions({ dataDir: '/d', databaseUrl: ' postgresql://bk@db/bk ' }).databaseUrl, 'postgresql://bk@db/bk');
  t.throws(() => resolveControllerOptions({ dataDir: '/d', databaseUrl: 'sqlite:///d/bulkhead.db' }), { code: 'BK_ERR_CONFIG_INVALID' });
});

t.test('CLI on PostgreSQL: init, token create and audit-log verify; a failed init leaves nothing behind', async (t) => {
  const pg = await cluster(t);
  if (!pg) return;
  const db = await newDb(pg);
  const io = () => {
    const o = { out: '', err: '' };
    return { o, io: { out: (s: string) => void (o.out += s), err: (s: string) => void (o.err += s) } };
  };
  const base = t.testdir(); // once: each call empties it
  const dir = join(base, 'ctl');

  // Unreachable database: nothing is written, so init can simply be run again.
  const down = io();
  t.equal(await cli(['init', '--data-dir', dir, '--database-url', `postgresql://bk@/bk?host=${encodeURIComponent(base)}`], down.io), 1);
  t.match(down.o.err, /BK_ERR_STARTUP_FAILED: cannot connect to PostgreSQL bk@/);
  t.notOk(existsSync(dir), 'no half-initialized data directory');

  const init = io();
  t.equal(await cli(['init', '--data-dir', dir, '--database-url', db.connectionString, '--json'], init.io), 0, init.o.err);
  const out = JSON.parse(init.o.out) as { store: { kind: string; location: string }; adminApiKey: string };
  t.same(out.store, { kind: 'postgres', location: `${db.owner}@${pg.dir}/${db.name}` });
  t.notOk(existsSync(join(dir, 'bulkhead.db')));
  t.match(init.o.err, /password in --database-url is visible to other local users/, 'warned: the password was on the command line');
  t.notMatch(init.o.out + init.o.err, db.password);

  const text = io();
  t.equal(await cli(['init', '--data-dir', join(base, 'ctl2'), '--database-url', db.connectionString], text.io), 0, 'a second data directory on the same database (migrations are idempotent)');
  t.match(text.o.out, new RegExp(`store: +PostgreSQL .*/${db.name}`));

  const token = io();
  t.equal(await cli(['token', 'create', '--data-dir', dir, '--database-url', db.connectionString, '--json'], token.io), 0, token.o.err);
  const tokenId = /^bkj_([0-9a-f]{16})_/.exec((JSON.parse(token.o.out) as { token: string }).token)?.[1];
  const stored = await pg.query<{ id: string }>('select id from join_tokens', [], db.name);
  t.equal(stored.length, 1, 'the token is in PostgreSQL');
  t.match(stored[0]?.id, tokenId!, 'the one just minted');

  const verify = io();
  t.equal(await cli(['audit-log', 'verify', '--data-dir', dir, '--database-url', db.connectionString, '--json'], verify.io), 0, verify.o.err);
  t.match(JSON.parse(verify.o.out), { ok: true, checked: 0 });

  // A database no controller has migrated yet.
  const empty = await newDb(pg);
  const notYet = io();
  t.equal(await cli(['audit-log', 'verify', '--data-dir', dir, '--database-url', empty.connectionString], notYet.io), 1);
  t.match(notYet.o.err, /BK_ERR_NOT_INITIALIZED: .*has no audit_log table yet/);
  const wrong = io();
  t.equal(await cli(['audit-log', 'verify', '--data-dir', dir, '--database-url', pg.url(db.owner, 'nope', db.name)], wrong.io), 1);
  t.match(wrong.o.err, /BK_ERR_STARTUP_FAILED: cannot connect to PostgreSQL/);
});
