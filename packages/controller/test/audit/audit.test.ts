// The audit trail over the real API and a real SQLite file: what is
// recorded (who, what, target, when, from where, outcome), that concurrent
// calls never fork the chain, and that tampering with the database directly
// — a changed field, a re-hashed row, a deleted row — is found at the right
// seq by the API, by `bulkhead audit-log verify` and offline by
// `bulkhead-controller audit-log verify --data-dir`.
import t from 'tap';
import { join } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { main as controllerCli } from '../../src/cli/main';
import { main as opsCli } from '../../../cli/src/main';
import { GENESIS_HASH, canonicalJson, chainHash, checkRow, verifyAuditChain } from '../../src/audit/audit-chain';
import type { AuditRecord } from '../../src/audit/audit-store';
import { startSecureApi } from '../auth/fixtures/secure-api';

t.test('chain primitives', async (t) => {
  t.equal(canonicalJson({ b: 1, a: { d: [2, { y: 1, x: 'é' }], c: null } }), '{"a":{"c":null,"d":[2,{"x":"é","y":1}]},"b":1}');
  const f = { seq: 1, at: 1, actorKind: 'key', actorId: 'ak_1', actorName: 'n', method: 'POST', route: '/v1/keys', path: '/v1/keys', action: 'keys.create', targetJson: '{}', clientIp: '::1', status: 201, code: '' };
  const h = chainHash(GENESIS_HASH, f);
  t.match(h, /^[0-9a-f]{64}$/);
  const row: AuditRecord = { ...f, prevHash: GENESIS_HASH, hash: h };
  t.equal(checkRow(row, GENESIS_HASH, 1), undefined);
  t.match(checkRow({ ...row, status: 200 }, GENESIS_HASH, 1), /row altered/);
  t.match(checkRow(row, 'f'.repeat(64), 1), /prev_hash/);
  t.match(checkRow(row, GENESIS_HASH, 2), /sequence gap/);
  t.same(await verifyAuditChain({ scan: async () => [] }), { ok: true, checked: 0, firstBadSeq: null, reason: null, head: null });
});

t.test('the audit trail records, chains and catches tampering', async (t) => {
  const api = await startSecureApi();
  t.teardown(() => api.close());
  const viewer = await api.mintKey('dash', 'viewer');

  // A mix of calls: successes, a refused role, failed authentication, a validation error.
  const k = await api.call('POST', '/v1/keys', { body: { name: 'ci', role: 'operator' } });
  t.equal(k.status, 201);
  t.equal((await api.call('DELETE', `/v1/keys/${k.json.id}`)).status, 200);
  const jt = await api.call('POST', '/v1/join-tokens', { body: { description: 'x' } });
  t.equal((await api.call('POST', '/v1/keys', { key: viewer.plaintext, body: { name: 'x', role: 'viewer' } })).status, 403);
  t.equal((await api.call('GET', '/v1/keys', { key: viewer.plaintext })).status, 403, 'a refused read is recorded too');
  t.equal((await api.call('GET', '/v1/agents', { key: 'bk_ak_0123456789abcdef_' + '1'.repeat(64) })).status, 401);
  t.equal((await api.call('GET', '/v1/agents', { key: viewer.plaintext })).status, 200, 'a successful read is not');
  t.equal((await api.call('POST', '/v1/keys', { body: { name: '' } })).status, 400);
  const tok = await api.call('POST', '/v1/auth/token', { key: viewer.plaintext });
  t.equal((await api.call('POST', '/v1/webhooks', { key: tok.json.token, body: {} })).status, 403);

  const page = await api.call('GET', '/v1/audit-log?limit=100');
  t.equal(page.status, 200, page.text);
  const items = page.json.items as Array<Record<string, any>>; // eslint-disable-line @typescript-eslint/no-explicit-any
  t.same(items.map((e) => e.seq), [9, 8, 7, 6, 5, 4, 3, 2, 1], 'newest first, nothing else (no GET 200s)');
  const bySeq = (n: number) => items.find((e) => e.seq === n)!;
  t.match(bySeq(1), {
    actorKind: 'key', actorId: api.admin.record.id, actorName: 'root', method: 'POST', route: '/v1/keys', path: '/v1/keys', action: 'keys.create',
    target: { keyId: k.json.id, location: `/v1/keys/${k.json.id}` }, clientIp: '127.0.0.1', status: 201, code: '', prevHash: GENESIS_HASH,
  });
  t.match(bySeq(2), { action: 'keys.revoke', route: '/v1/keys/:id', target: { id: k.json.id }, status: 200 });
  t.match(bySeq(3), { action: 'join-tokens.create', target: { joinTokenId: jt.json.id }, status: 201 });
  t.notMatch(JSON.stringify(bySeq(3)), jt.json.token, 'no secrets in the trail');
  t.match(bySeq(4), { actorId: viewer.record.id, actorName: 'dash', action: 'keys.create', status: 403, code: 'BK_ERR_FORBIDDEN' });
  t.match(bySeq(5), { method: 'GET', action: 'keys.read', status: 403 });
  t.match(bySeq(6), { actorKind: 'anonymous', actorId: '', method: 'GET', status: 401, code: 'BK_ERR_UNAUTHENTICATED', target: { presentedKeyId: 'ak_0123456789abcdef' } });
  t.match(bySeq(7), { status: 400, code: 'BK_ERR_BAD_REQUEST' });
  t.match(bySeq(8), { action: 'auth.token', status: 200, target: { issuedTokenId: /^tok_/ } });
  t.match(bySeq(9), { actorKind: 'token', actorId: viewer.record.id, target: { tokenId: bySeq(8).target.issuedTokenId }, status: 403 });
  for (let i = 2; i <= 9; i++) t.equal(bySeq(i).prevHash, bySeq(i - 1).hash, `seq ${i} links to ${i - 1}`);

  const filtered = await api.call('GET', `/v1/audit-log?actor=${viewer.record.id}&status=403`);
  t.same(filtered.json.items.map((e: { seq: number }) => e.seq), [9, 5, 4]);
  t.same((await api.call('GET', '/v1/audit-log?action=keys.revoke')).json.items.map((e: { seq: number }) => e.seq), [2]);
  t.same((await api.call('GET', '/v1/audit-log?since=1h&limit=2')).json.nextOffset, 2, 'paged');

  // Concurrent writes never fork the chain.
  await Promise.all(Array.from({ length: 40 }, () => api.call('POST', '/v1/auth/token', { key: viewer.plaintext })));
  const ok = await api.call('GET', '/v1/audit-log/verify');
  t.equal(ok.status, 200);
  t.match(ok.json, { ok: true, firstBadSeq: null, reason: null, head: { hash: /^[0-9a-f]{64}$/ } });
  t.ok(ok.json.checked >= 49, `all entries checked (${ok.json.checked})`);
  const env = { BULKHEAD_API: api.url, BULKHEAD_CA: api.caFile, BULKHEAD_API_KEY: api.admin.plaintext, XDG_CONFIG_HOME: join(api.dir, 'cfg') };
  const run = async (argv: string[]) => {
    let out = '';
    let err = '';
    const code = await opsCli(argv, { out: (s) => void (out += s), err: (s) => void (err += s), env });
    return { code, out, err };
  };
  const cliOk = await run(['audit-log', 'verify']);
  t.equal(cliOk.code, 0, cliOk.err);
  t.match(cliOk.out, /audit chain OK: \d+ entries verified; head seq \d+ hash [0-9a-f]{64}/);

  // Tamper with the database directly.
  await api.app.security.drain();
  const db = new BetterSqlite3(join(api.dir, 'bulkhead.db'));
  t.teardown(() => db.close());
  db.prepare('UPDATE audit_log SET status = 201 WHERE seq = 4').run(); // hide a refused attempt

  const broken = await api.call('GET', '/v1/audit-log/verify');
  t.match(broken.json, { ok: false, firstBadSeq: 4, reason: /row altered/, head: null });
  const cliBroken = await run(['audit-log', 'verify']);
  t.equal(cliBroken.code, 1, 'bulkhead audit-log verify exits 1');
  t.match(cliBroken.out, /audit chain BROKEN at seq 4: hash does not match the row/);
  const cliJson = await run(['--json', 'audit-log', 'verify']);
  t.equal(cliJson.code, 1);
  t.equal(JSON.parse(cliJson.out).firstBadSeq, 4);

  let out = '';
  const offline = await controllerCli(['audit-log', 'verify', '--data-dir', api.dir], { out: (s) => void (out += s), err: () => undefined });
  t.equal(offline, 1, 'bulkhead-controller audit-log verify exits 1');
  t.match(out, /BROKEN at seq 4/);

  // A tamperer who also recomputes the row's hash breaks the link to the next one.
  const row = db.prepare('SELECT * FROM audit_log WHERE seq = 4').get() as Record<string, string | number>;
  const fields = {
    seq: 4, at: Number(row['at']), actorKind: String(row['actor_kind']), actorId: String(row['actor_id']), actorName: String(row['actor_name']),
    method: String(row['method']), route: String(row['route']), path: String(row['path']), action: String(row['action']),
    targetJson: String(row['target_json']), clientIp: String(row['client_ip']), status: Number(row['status']), code: String(row['code']),
  };
  db.prepare('UPDATE audit_log SET hash = ? WHERE seq = 4').run(chainHash(String(row['prev_hash']), fields));
  t.match((await api.call('GET', '/v1/audit-log/verify')).json, { ok: false, firstBadSeq: 5, reason: /prev_hash/ });

  // Put it back, then delete a row instead.
  db.prepare('UPDATE audit_log SET status = 403, hash = ? WHERE seq = 4').run(chainHash(String(row['prev_hash']), { ...fields, status: 403 }));
  t.match((await api.call('GET', '/v1/audit-log/verify')).json, { ok: true }, 'restored exactly: verifies again');
  db.prepare('DELETE FROM audit_log WHERE seq = 7').run();
  t.match((await api.call('GET', '/v1/audit-log/verify')).json, { ok: false, firstBadSeq: 8, reason: /sequence gap/ });
  out = '';
  t.equal(await controllerCli(['audit-log', 'verify', '--data-dir', api.dir, '--json'], { out: (s) => void (out += s), err: () => undefined }), 1);
  t.match(JSON.parse(out), { ok: false, firstBadSeq: 8 });
});

t.test('offline verify of a healthy and of a missing data directory', async (t) => {
  const api = await startSecureApi({ withPolicy: false });
  await api.call('POST', '/v1/auth/token');
  await api.app.security.drain();
  const dir = api.dir;
  let out = '';
  let err = '';
  t.equal(await controllerCli(['audit-log', 'verify', '--data-dir', dir], { out: (s) => void (out += s), err: (s) => void (err += s) }), 0, err);
  t.match(out, /audit chain OK: 1 entry verified/);
  await api.close();
  err = '';
  t.equal(await controllerCli(['audit-log', 'verify', '--data-dir', dir], { out: () => undefined, err: (s) => void (err += s) }), 1);
  t.match(err, /BK_ERR_NOT_INITIALIZED/);
});
