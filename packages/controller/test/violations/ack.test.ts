// Operators acknowledge violations (issue 5): the store's conditional
// acknowledge/unacknowledge, the 0007_violation_ack migration on a database
// that already holds violations, and the real HTTPS API — who/when/comment
// recorded, the first acknowledgement kept (409 on a second), the
// `acknowledged` filter, project scoping (404 outside the credential's
// projects), comment validation, and the entries in the hash-chained audit log.
import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Kysely, SqliteDialect } from 'kysely';
import BetterSqlite3 from 'better-sqlite3';
import { openStore } from '../../src/store/open-store';
import { MIGRATIONS, migrateToLatest } from '../../src/store/migrations';
import type { Store, ViolationRecord } from '../../src/store/store';
import { MAX_ACK_COMMENT } from '../../src/api/routes/violations';
import { main as cli } from '../../../cli/src/main';
import { startSecureApi } from '../auth/fixtures/secure-api';
import { usePostgres } from '../../../../test/helpers/postgres';
import { CONTAINERS, seedScopedFleet } from '../auth/fixtures/scoped-fleet';

const T0 = new Date('2026-01-01T00:00:00Z');

function violation(id: string, over: Partial<ViolationRecord> = {}): ViolationRecord {
  return {
    id,
    agentId: 'agt_one',
    containerId: 'c'.repeat(64),
    containerName: '/web',
    imageRef: 'busybox:1',
    project: 'payments',
    ruleId: 'no-root',
    severity: 'high',
    mode: 'monitor',
    source: 'reconcile',
    message: 'runs as root',
    evidenceJson: '[]',
    denied: false,
    action: { type: '', result: '', error: '', durationMs: 0 },
    at: T0,
    policyVersion: 1,
    exemptedBy: '',
    ...over,
  };
}

function tempDir(t: tap.Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'bk-ack-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

async function storeChecks(t: tap.Test, store: Store): Promise<void> {
  await store.migrate();
  await store.insertViolation(violation('v1', { at: new Date(T0.getTime() + 1) }));
  await store.insertViolation(violation('v2'));
  // An ack on the record handed to insertViolation is ignored: only acknowledgeViolation records one.
  await store.insertViolation(violation('v3', { at: new Date(T0.getTime() - 1), ack: { at: T0, byKeyId: 'ak_x', byName: 'x', comment: 'sneaky' } }));

  t.equal((await store.getViolation('v1'))?.ack, null, 'not acknowledged at first');
  t.equal(await store.getViolation('nope'), undefined);
  const ack = { at: new Date(T0.getTime() + 5000), byKeyId: 'ak_0123456789abcdef', byName: 'on-call', comment: 'INC-42' };
  t.equal(await store.acknowledgeViolation('v1', ack), true, 'first acknowledgement recorded');
  t.equal(await store.acknowledgeViolation('v1', { ...ack, byName: 'someone else' }), false, 'a second one is not');
  t.equal(await store.acknowledgeViolation('nope', ack), false, 'unknown id');
  t.same((await store.getViolation('v1'))?.ack, ack, 'who, when and why round-trip');

  const ids = async (acknowledged?: boolean) => (await store.listViolations({ acknowledged })).map((v) => v.id);
  t.same(await ids(), ['v1', 'v2', 'v3']);
  t.same(await ids(true), ['v1']);
  t.same(await ids(false), ['v2', 'v3']);
  t.same((await store.listViolations({ acknowledged: true, project: 'search' })).length, 0, 'combines with other filters');

  t.equal(await store.unacknowledgeViolation('v2'), false, 'nothing to clear');
  t.equal(await store.unacknowledgeViolation('v1'), true);
  t.equal((await store.getViolation('v1'))?.ack, null);
  t.same(await ids(true), []);
  t.equal(await store.acknowledgeViolation('v1', { ...ack, comment: '' }), true, 'acknowledged again after clearing');
  t.equal((await store.getViolation('v1'))?.ack?.comment, '');
}

t.test('store (SQLite): acknowledge and unacknowledge are conditional, the filter follows them', async (t) => {
  const store: Store = await openStore({ kind: 'sqlite', path: join(tempDir(t), 'c.db') });
  t.teardown(() => store.close());
  await storeChecks(t, store);
});

// The same on a real PostgreSQL (Debian's `postgresql` package), started privately on a unix socket (test/helpers/postgres.ts).
t.test('store (PostgreSQL): the same, after every migration ran there', async (t) => {
  const pg = await usePostgres(t);
  if (pg === undefined) return; // skipped loudly (not root, not installed); as root a missing PostgreSQL fails
  const store: Store = await openStore({ kind: 'postgres', connectionString: (await pg.createDatabase()).url });
  t.teardown(() => store.close());
  await storeChecks(t, store);
});

t.test('migration 0007_violation_ack keeps existing violations and runs down again', async (t) => {
  const path = join(tempDir(t), 'old.db');
  const db = new Kysely<any>({ dialect: new SqliteDialect({ database: new BetterSqlite3(path) }) }); // eslint-disable-line @typescript-eslint/no-explicit-any
  t.teardown(() => db.destroy());
  // The schema as it was before acknowledgements: every migration named before 0007.
  const before = Object.keys(MIGRATIONS).filter((n) => n < '0007_violation_ack').sort();
  for (const n of before) await MIGRATIONS[n]!.up(db);
  const row = { id: 'old', agent_id: 'a', container_id: 'c', container_name: '/c', image_ref: 'i', project: 'p', rule_id: 'r', severity: 'high', mode: 'monitor', source: 'reconcile', message: 'm', evidence_json: '[]', denied: 0, action_type: '', action_result: '', action_error: '', action_duration_ms: 0, at: 1, policy_version: 1, exempted_by: '' };
  await db.insertInto('violations').values(row).execute();
  await MIGRATIONS['0007_violation_ack']!.up(db);
  const after = await db.selectFrom('violations').selectAll().where('id', '=', 'old').executeTakeFirstOrThrow();
  t.match(after, { id: 'old', ack_at: null, ack_by_key_id: null, ack_by_name: null, ack_comment: null }, 'existing rows are unacknowledged');
  await MIGRATIONS['0007_violation_ack']!.down!(db);
  const cols = (await db.introspection.getTables()).find((x) => x.name === 'violations')!.columns.map((c) => c.name);
  t.notOk(cols.some((c) => c.startsWith('ack_')), 'down drops the columns');
  t.ok(cols.includes('exempted_by'));
});

t.test('migrateToLatest applies 0007 in name order on a fresh database', async (t) => {
  const db = new Kysely<any>({ dialect: new SqliteDialect({ database: new BetterSqlite3(join(tempDir(t), 'n.db')) }) }); // eslint-disable-line @typescript-eslint/no-explicit-any
  t.teardown(() => db.destroy());
  await migrateToLatest(db);
  const names = (await db.selectFrom('bulkhead_migration').select('name').orderBy('timestamp').orderBy('name').execute()).map((r) => r.name as string);
  t.same(names, [...names].sort(), 'executed in name order');
  t.ok(names.includes('0007_violation_ack'));
  t.equal(names.at(-1), Object.keys(MIGRATIONS).sort().at(-1), 'all of them');
});

t.test('API: acknowledge, filter, refuse a second acknowledgement, unacknowledge; all audited', async (t) => {
  const api = await startSecureApi();
  t.teardown(() => api.close());
  await seedScopedFleet(api.store, api.alerting);
  const op = await api.mintKey('on-call', 'operator');
  const viewer = await api.mintKey('dash', 'viewer');

  const list = async (qs = '', key = op.plaintext) => {
    const r = await api.call('GET', `/v1/violations${qs}`, { key });
    t.equal(r.status, 200, r.text);
    return r.json.items as Array<{ id: string; acknowledged: boolean; acknowledgement: null | Record<string, string> }>;
  };
  t.ok((await list()).every((v) => v.acknowledged === false && v.acknowledgement === null), 'nothing acknowledged yet');

  const before = Date.now();
  const ack = await api.call('POST', '/v1/violations/v-payWeb/acknowledge', { key: op.plaintext, body: { comment: 'INC-1234: known, fix in next release\n\tsecond line' } });
  t.equal(ack.status, 200, ack.text);
  t.match(ack.json, {
    id: 'v-payWeb',
    acknowledged: true,
    acknowledgement: { byKeyId: op.record.id, byName: 'on-call', comment: 'INC-1234: known, fix in next release\n\tsecond line' },
  });
  const at = Date.parse(ack.json.acknowledgement.at);
  t.ok(at >= before - 1000 && at <= Date.now() + 1000, 'when');

  t.same((await list('?acknowledged=true')).map((v) => v.id), ['v-payWeb']);
  t.notOk((await list('?acknowledged=false')).some((v) => v.id === 'v-payWeb'));
  t.equal((await list('?acknowledged=false')).length, 4);
  t.match((await list('?acknowledged=true', viewer.plaintext))[0], { acknowledgement: { byName: 'on-call' } }, 'viewers see who acknowledged');
  t.equal((await api.call('GET', '/v1/violations?acknowledged=maybe', { key: op.plaintext })).status, 400, 'the filter is a boolean');

  // The first acknowledgement is the record.
  const again = await api.call('POST', '/v1/violations/v-payWeb/acknowledge', { key: api.admin.plaintext, body: { comment: 'mine now' } });
  t.equal(again.status, 409, again.text);
  t.equal(again.json.code, 'BK_ERR_CONFLICT');
  t.match(again.json.detail, new RegExp(`already acknowledged by on-call \\(${op.record.id}\\) at .*unacknowledge it first`));
  t.equal((await list('?acknowledged=true'))[0]!.acknowledgement!['comment'], 'INC-1234: known, fix in next release\n\tsecond line', 'unchanged');

  // Viewers cannot.
  const vw = await api.call('POST', '/v1/violations/v-payJob/acknowledge', { key: viewer.plaintext, body: {} });
  t.equal(vw.status, 403);
  t.match(vw.json.detail, /needs the operator role/);

  // Without a body (curl -X POST), with an empty object, through a bearer token.
  const bare = await api.call('POST', '/v1/violations/v-payJob/acknowledge', { key: op.plaintext });
  t.equal(bare.status, 200, `no body: ${bare.text}`);
  t.equal(bare.json.acknowledgement.comment, '');
  const token = (await api.call('POST', '/v1/auth/token', { key: op.plaintext, body: {} })).json.token as string;
  const viaToken = await api.call('POST', '/v1/violations/v-payDb/acknowledge', { key: token, body: {} });
  t.equal(viaToken.status, 200, viaToken.text);
  t.match(viaToken.json.acknowledgement, { byKeyId: op.record.id, byName: 'on-call' }, 'a token acknowledges as its key');

  // Validation.
  for (const [body, why] of [
    [{ comment: 'x'.repeat(MAX_ACK_COMMENT + 1) }, 'too long'],
    [{ comment: 'bell\u0007' }, 'control character'],
    [{ comment: 'esc\u001b[31mred' }, 'terminal escape'],
    [{ comment: { text: 'a' } }, 'not a string'],
    [{ comment: 'ok', by: 'someone' }, 'unknown field'],
    ['not json', 'not JSON'],
  ] as const) {
    const r = await api.call('POST', '/v1/violations/v-searchApi/acknowledge', { key: op.plaintext, body });
    t.equal(r.status, 400, `${why}: ${r.text}`);
  }
  t.equal((await api.call('POST', '/v1/violations/v-searchApi/acknowledge', { key: op.plaintext, body: { comment: 'x'.repeat(MAX_ACK_COMMENT) } })).status, 200, 'exactly the maximum is fine');
  const unknown = await api.call('POST', '/v1/violations/nope/acknowledge', { key: op.plaintext, body: {} });
  t.equal(unknown.status, 404);
  t.equal(unknown.json.code, 'BK_ERR_NOT_FOUND');
  t.match(unknown.json.detail, /violation nope not found/);

  // Unacknowledge.
  const un = await api.call('POST', '/v1/violations/v-payWeb/unacknowledge', { key: op.plaintext });
  t.equal(un.status, 200, un.text);
  t.match(un.json, { id: 'v-payWeb', acknowledged: false, acknowledgement: null });
  const un2 = await api.call('POST', '/v1/violations/v-payWeb/unacknowledge', { key: op.plaintext });
  t.equal(un2.status, 409);
  t.match(un2.json.detail, /is not acknowledged/);
  t.equal((await api.call('POST', '/v1/violations/v-payWeb/unacknowledge', { key: viewer.plaintext })).status, 403);
  t.equal((await api.call('POST', '/v1/violations/nope/unacknowledge', { key: op.plaintext })).status, 404);
  const reack = await api.call('POST', '/v1/violations/v-payWeb/acknowledge', { key: api.admin.plaintext, body: { comment: 'replaced' } });
  t.equal(reack.status, 200, 'after clearing, another operator may acknowledge');
  t.match(reack.json.acknowledgement, { byName: 'root', comment: 'replaced' });

  // Two acknowledgements racing: exactly one wins.
  const race = await Promise.all([1, 2, 3].map((i) => api.call('POST', '/v1/violations/v-loose/acknowledge', { key: op.plaintext, body: { comment: `racer ${i}` } })));
  t.same(race.map((r) => r.status).sort(), [200, 409, 409], 'one acknowledgement, two conflicts');

  // Every call above is in the hash-chained audit log, outcome included, and the chain holds.
  await api.app.security.drain();
  const log = await api.call('GET', '/v1/audit-log?action=violations.acknowledge&limit=1000');
  t.equal(log.status, 200, log.text);
  const entries = log.json.items as Array<{ actorId: string; actorName: string; actorKind: string; status: number; code: string; target: Record<string, string>; route: string }>;
  const first = entries.find((e) => e.target['id'] === 'v-payWeb' && e.status === 200 && e.actorId === op.record.id);
  t.match(first, { actorName: 'on-call', actorKind: 'key', route: '/v1/violations/:id/acknowledge', target: { id: 'v-payWeb', project: 'payments', comment: 'INC-1234: known, fix in next release\n\tsecond line' } });
  t.ok(entries.some((e) => e.target['id'] === 'v-payWeb' && e.status === 409 && e.code === 'BK_ERR_CONFLICT'), 'the refused second acknowledgement too');
  t.ok(entries.some((e) => e.target['id'] === 'v-payJob' && e.status === 403 && e.actorId === viewer.record.id), 'and the viewer refused');
  t.ok(entries.some((e) => e.target['id'] === 'v-payDb' && e.actorKind === 'token'), 'and the one made through a token');
  const unlog = await api.call('GET', '/v1/audit-log?action=violations.unacknowledge');
  t.ok((unlog.json.items as typeof entries).some((e) => e.target['id'] === 'v-payWeb' && e.status === 200 && e.target['project'] === 'payments'));
  const verify = await api.call('GET', '/v1/audit-log/verify');
  t.equal(verify.status, 200, verify.text);
  t.equal(verify.json.ok, true, 'the chain verifies');
});

t.test('API: project scoping — only violations in the credential\'s projects, others 404', async (t) => {
  const api = await startSecureApi();
  t.teardown(() => api.close());
  await seedScopedFleet(api.store, api.alerting);
  const pay = await api.mintKey('pay-oncall', 'operator', { projects: ['payments'] });
  const payViewer = await api.mintKey('pay-dash', 'viewer', { projects: ['payments'] });

  for (const id of ['v-searchApi', 'v-loose']) {
    const r = await api.call('POST', `/v1/violations/${id}/acknowledge`, { key: pay.plaintext, body: { comment: 'not mine' } });
    t.equal(r.status, 404, `${id}: out of scope looks absent (${r.text})`);
    t.match(r.json.detail, new RegExp(`violation ${id} not found`));
    t.equal((await api.store.getViolation(id))?.ack, null, `${id}: nothing recorded`);
  }
  const mine = await api.call('POST', '/v1/violations/v-payWeb/acknowledge', { key: pay.plaintext, body: { comment: 'mine' } });
  t.equal(mine.status, 200, mine.text);
  t.equal(mine.json.project, 'payments');

  // Another project's acknowledged violation is not revealed through the filter either.
  t.equal((await api.call('POST', '/v1/violations/v-searchApi/acknowledge', { body: {} })).status, 200, 'an unscoped admin acknowledges search');
  const seen = await api.call('GET', '/v1/violations?acknowledged=true', { key: payViewer.plaintext });
  t.same((seen.json.items as Array<{ id: string }>).map((v) => v.id), ['v-payWeb']);
  t.equal((await api.call('POST', '/v1/violations/v-searchApi/unacknowledge', { key: pay.plaintext })).status, 404, 'unacknowledge is scoped too');
  t.equal((await api.call('POST', '/v1/violations/v-payWeb/unacknowledge', { key: pay.plaintext })).status, 200);
  t.equal(CONTAINERS.searchApi.project, 'search');
});

t.test('CLI: bulkhead violations ack / unack / list with the ACK column and filters', async (t) => {
  const api = await startSecureApi();
  t.teardown(() => api.close());
  await seedScopedFleet(api.store, api.alerting);
  const op = await api.mintKey('on-call', 'operator');
  const viewer = await api.mintKey('dash', 'viewer');
  const env = { BULKHEAD_API: api.url, BULKHEAD_CA: api.caFile, BULKHEAD_API_KEY: op.plaintext, XDG_CONFIG_HOME: join(api.dir, 'cfg') };
  const run = async (argv: string[], e: Record<string, string | undefined> = env) => {
    let out = '';
    let err = '';
    const code = await cli(argv, { out: (s) => void (out += s), err: (s) => void (err += s), env: e, now: () => api.now() });
    return { code, out, err };
  };

  const ack = await run(['violations', 'ack', 'v-payWeb', '--comment', 'INC-1234: fix in next release']);
  t.equal(ack.code, 0, ack.err);
  t.match(ack.out, /^Violation:\s+v-payWeb$/m);
  t.match(ack.out, /^Rule:\s+no-root \(high\)$/m);
  t.match(ack.out, /^Container:\s+pay-web on agt_one$/m);
  t.match(ack.out, new RegExp(`^Acknowledged:\\s+by on-call \\(${op.record.id}\\) at \\d{4}-`, 'm'));
  t.match(ack.out, /^Comment:\s+INC-1234: fix in next release$/m);

  const again = await run(['violations', 'ack', 'v-payWeb']);
  t.equal(again.code, 1, 'a second acknowledgement is an API error');
  t.match(again.err, /BK_ERR_CONFLICT: violation v-payWeb was already acknowledged by on-call .* \(HTTP 409\)/);

  const json = await run(['--json', 'violations', 'ack', 'v-payJob']);
  t.equal(json.code, 0, json.err);
  t.match(JSON.parse(json.out), { id: 'v-payJob', acknowledged: true, acknowledgement: { byName: 'on-call', comment: '' } });

  const table = await run(['violations']);
  t.equal(table.code, 0, table.err);
  const lines = table.out.trimEnd().split('\n');
  t.match(lines[0], /^ID\s+TIME\s+AGENT\s+CONTAINER\s+RULE\s+SEVERITY\s+MODE\s+SOURCE\s+OUTCOME\s+ACK\s+MESSAGE$/);
  t.match(table.out, /^v-payWeb\s+\S+ ago\s+agt_one\s+pay-web\s+no-root\s+high\s+monitor\s+reconcile\s+recorded\s+on-call \d+s ago\s+\/pay-web runs as root$/m);
  t.match(table.out, /^v-searchApi\s+.*\s+recorded\s+-\s+\/search-api runs as root$/m, 'unacknowledged: "-"');

  const ids = async (argv: string[]) => (JSON.parse((await run(['--json', 'violations', ...argv])).out) as { items: Array<{ id: string }> }).items.map((v) => v.id).sort();
  t.same(await ids(['--acknowledged']), ['v-payJob', 'v-payWeb']);
  t.same(await ids(['--unacknowledged']), ['v-loose', 'v-payDb', 'v-searchApi']);
  t.same(await ids(['list', '--unacknowledged', '--limit', '1']).then((x) => x.length), 1);
  t.equal((await run(['violations', '--acknowledged', '--unacknowledged'])).code, 2, 'both filters at once: usage error');

  const viewerAck = await run(['violations', 'ack', 'v-loose'], { ...env, BULKHEAD_API_KEY: viewer.plaintext });
  t.equal(viewerAck.code, 1);
  t.match(viewerAck.err, /BK_ERR_FORBIDDEN: .*needs the operator role.*\(HTTP 403\)/);
  const missing = await run(['violations', 'ack', 'no-such-violation']);
  t.equal(missing.code, 1);
  t.match(missing.err, /BK_ERR_NOT_FOUND: violation no-such-violation not found \(HTTP 404\)/);
  const long = await run(['violations', 'ack', 'v-loose', '--comment', 'x'.repeat(MAX_ACK_COMMENT + 1)]);
  t.equal(long.code, 1);
  t.match(long.err, /BK_ERR_BAD_REQUEST: body\/comment must NOT have more than 1024 characters/);
  t.equal((await run(['violations', 'ack'])).code, 2, 'the id is required');

  const un = await run(['violations', 'unack', 'v-payWeb']);
  t.equal(un.code, 0, un.err);
  t.equal(un.out, 'cleared the acknowledgement of violation v-payWeb\n');
  const un2 = await run(['violations', 'unack', 'v-payWeb']);
  t.equal(un2.code, 1);
  t.match(un2.err, /BK_ERR_CONFLICT: violation v-payWeb is not acknowledged/);
  const unJson = await run(['--json', 'violations', 'unack', 'v-payJob']);
  t.match(JSON.parse(unJson.out), { id: 'v-payJob', acknowledged: false, acknowledgement: null });
  t.same(await ids(['--acknowledged']), []);

  for (const argv of [['violations'], ['violations', 'list'], ['violations', 'ack'], ['violations', 'unack']]) {
    const r = await run([...argv, '--help'], {});
    t.equal(r.code, 0, argv.join(' '));
    t.match(r.out, /Examples?:/, `${argv.join(' ')} has examples`);
  }
});
