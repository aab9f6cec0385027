// Bearer tokens, API key management and delegation over the real HTTPS API:
// exchange, narrowing and capping; expired, revoked and forged tokens
// refused; keys that try to mint more than they hold refused; failed
// authentication throttled per address and per key.
import t from 'tap';
import { startSecureApi } from './fixtures/secure-api';
import { mintToken } from '../../src/auth/bearer-tokens';

const HOUR = 3_600_000;

t.test('tokens: exchange, use, narrow, cap, and every way to be refused', async (t) => {
  const api = await startSecureApi({ auth: { tokenMaxTtlMs: HOUR } });
  t.teardown(() => api.close());

  const issued = await api.call('POST', '/v1/auth/token');
  t.equal(issued.status, 200, issued.text);
  const tok = issued.json;
  t.match(tok, { tokenType: 'Bearer', keyId: api.admin.record.id, keyName: 'root', role: 'admin', projects: [] });
  t.match(tok.token, /^bkt_[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{43}$/);
  const ttl = Date.parse(tok.expiresAt) - api.now().getTime();
  t.ok(ttl > 14 * 60_000 && ttl <= 15 * 60_000, `default lifetime 15 min (${ttl} ms)`);

  const who = await api.call('GET', '/v1/auth/whoami', { key: tok.token });
  t.equal(who.status, 200, who.text);
  t.match(who.json, { kind: 'token', keyId: api.admin.record.id, role: 'admin', tokenId: /^tok_/ });
  t.equal((await api.call('GET', '/v1/agents', { key: tok.token })).status, 200, 'a token works like its key');
  t.equal((await api.call('POST', '/v1/auth/token', { key: tok.token })).status, 403, 'a token cannot renew itself');

  const long = await api.call('POST', '/v1/auth/token', { body: { ttl: '10h' } });
  const longTtl = Date.parse(long.json.expiresAt) - api.now().getTime();
  t.ok(longTtl <= HOUR && longTtl > HOUR - 5000, `a requested 10h is capped at the maximum (${longTtl} ms)`);
  t.equal((await api.call('POST', '/v1/auth/token', { body: { ttl: 'soon' } })).status, 400, 'bad ttl');

  // A key expiring in 5 minutes gets tokens that end with it.
  const brief = await api.mintKey('brief', 'viewer', { expiresAt: new Date(api.now().getTime() + 5 * 60_000) });
  const bt = await api.call('POST', '/v1/auth/token', { key: brief.plaintext, body: { ttl: '1h' } });
  t.equal(bt.status, 200, bt.text);
  t.ok(Date.parse(bt.json.expiresAt) <= brief.record.expiresAt!.getTime(), 'never outlives its key');

  // Narrowing: fewer rights are fine, more are refused.
  const op = await api.mintKey('op-pay', 'operator', { projects: ['payments', 'search'] });
  const viewerTok = await api.call('POST', '/v1/auth/token', { key: op.plaintext, body: { role: 'viewer', projects: ['payments'] } });
  t.equal(viewerTok.status, 200, viewerTok.text);
  t.match(viewerTok.json, { role: 'viewer', projects: ['payments'] });
  t.match((await api.call('GET', '/v1/auth/whoami', { key: viewerTok.json.token })).json, { role: 'viewer', projects: ['payments'] });
  t.equal((await api.call('POST', '/v1/webhooks', { key: viewerTok.json.token, body: {} })).status, 403, 'the narrowed token has only viewer rights');
  for (const [what, body] of [
    ['higher role', { role: 'admin' }],
    ['every project', { projects: [] }],
    ['another project', { projects: ['billing'] }],
  ] as const) {
    const r = await api.call('POST', '/v1/auth/token', { key: op.plaintext, body });
    t.equal(r.status, 403, `${what}: ${r.text}`);
    t.equal(r.json.code, 'BK_ERR_FORBIDDEN');
  }

  // The largest allowed scope still makes a token that fits in a header.
  const many = Array.from({ length: 50 }, (_, i) => `p${i}-`.padEnd(128, 'x'));
  const wide = await api.call('POST', '/v1/keys', { body: { name: 'wide', role: 'viewer', projects: many } });
  t.equal(wide.status, 201, wide.text);
  const wideTok = await api.call('POST', '/v1/auth/token', { key: wide.json.key });
  t.equal((await api.call('GET', '/v1/auth/whoami', { key: wideTok.json.token })).json.projects.length, 50, 'a 50-project token works');
  t.equal((await api.call('POST', '/v1/keys', { body: { name: 'x', role: 'viewer', projects: [...many, 'one-more'] } })).status, 400, 'at most 50 projects');

  // Forged tokens.
  const [body, sig] = tok.token.split('.') as [string, string];
  const claims = JSON.parse(Buffer.from(body.slice(4), 'base64url').toString()) as Record<string, unknown>;
  const flip = (s: string): string => s.slice(0, 5) + (s[5] === 'A' ? 'B' : 'A') + s.slice(6);
  const viewerClaims = JSON.parse(Buffer.from(viewerTok.json.token.split('.')[0].slice(4), 'base64url').toString()) as Record<string, unknown>;
  const promoted = 'bkt_' + Buffer.from(JSON.stringify({ ...viewerClaims, role: 'admin' })).toString('base64url') + '.' + viewerTok.json.token.split('.')[1];
  const otherSecret = mintToken(Buffer.alloc(32, 7), { kid: api.admin.record.id, role: 'admin', projects: [], now: api.now(), ttlMs: HOUR }).token;
  const extended = 'bkt_' + Buffer.from(JSON.stringify({ ...claims, exp: (claims['exp'] as number) + 86_400 })).toString('base64url') + '.' + sig;
  for (const [what, forged] of [
    ['tampered signature', `${body}.${flip(sig)}`],
    ['claims altered (viewer → admin), old signature', promoted],
    ['claims altered (exp extended), old signature', extended],
    ['signed with another secret', otherSecret],
    ['truncated', tok.token.slice(0, -3)],
    ['not a token at all', 'bkt_garbage'],
  ] as const) {
    const r = await api.call('GET', '/v1/agents', { key: forged });
    t.equal(r.status, 401, `${what}: 401`);
    t.equal(r.json.code, 'BK_ERR_UNAUTHENTICATED');
    t.notMatch(r.text, forged, `${what}: not echoed`);
  }

  // Expired: move the clock past the token's exp.
  api.advance(16 * 60_000);
  const expired = await api.call('GET', '/v1/agents', { key: tok.token });
  t.equal(expired.status, 401);
  t.match(expired.json.detail, /token expired at/);
  t.equal((await api.call('GET', '/v1/agents', { key: long.json.token })).status, 200, 'the 1h token still works');

  // Revoking the key ends its tokens at once.
  const ci = await api.call('POST', '/v1/keys', { body: { name: 'ci', role: 'operator' } });
  t.equal(ci.status, 201, ci.text);
  const ciTok = await api.call('POST', '/v1/auth/token', { key: ci.json.key });
  t.equal((await api.call('GET', '/v1/violations', { key: ciTok.json.token })).status, 200);
  t.equal((await api.call('DELETE', `/v1/keys/${ci.json.id}`)).status, 200);
  const revoked = await api.call('GET', '/v1/violations', { key: ciTok.json.token });
  t.equal(revoked.status, 401);
  t.match(revoked.json.detail, /was revoked/);
  t.equal((await api.call('GET', '/v1/violations', { key: ci.json.key })).status, 401, 'and the key itself');
});

t.test('API keys: create, show once, list, revoke; escalation refused', async (t) => {
  const api = await startSecureApi();
  t.teardown(() => api.close());

  const created = await api.call('POST', '/v1/keys', { body: { name: 'grafana', role: 'viewer', projects: ['payments', 'payments'], expiresIn: '30d' } });
  t.equal(created.status, 201, created.text);
  const k = created.json;
  t.match(k, { id: /^ak_[0-9a-f]{16}$/, name: 'grafana', role: 'viewer', projects: ['payments'], status: 'active', createdBy: api.admin.record.id, revokedAt: null, lastUsedAt: null });
  t.match(k.key, new RegExp(`^bk_${k.id}_[0-9a-f]{64}$`), 'the key, once');
  t.equal(created.headers['location'], `/v1/keys/${k.id}`);
  const stored = await api.store.getApiKey(k.id);
  t.not(stored?.secretHash, k.key.split('_').pop(), 'the store holds a hash, not the secret');
  t.match(stored?.secretHash, /^[0-9a-f]{64}$/);

  const got = await api.call('GET', `/v1/keys/${k.id}`);
  t.equal(got.status, 200);
  t.notOk('key' in got.json, 'never shown again');
  const list = await api.call('GET', '/v1/keys');
  t.same(list.json.items.map((x: { name: string }) => x.name).sort(), ['grafana', 'root']);
  t.notMatch(list.text, /bk_ak_/, 'no secrets in the list');

  // Using a key records it (at most once a minute).
  t.equal((await api.call('GET', '/v1/agents', { key: k.key })).status, 200);
  await api.app.security.drain();
  t.type((await api.call('GET', `/v1/keys/${k.id}`)).json.lastUsedAt, 'string', 'lastUsedAt set');

  // Escalation attempts.
  const operator = await api.mintKey('op', 'operator');
  const r1 = await api.call('POST', '/v1/keys', { key: operator.plaintext, body: { name: 'x', role: 'admin' } });
  t.equal(r1.status, 403, 'an operator cannot mint an admin key');
  t.match(r1.json.detail, /needs the admin role/);
  const adminTok = (await api.call('POST', '/v1/auth/token', { body: { role: 'operator' } })).json.token as string;
  t.equal((await api.call('POST', '/v1/keys', { key: adminTok, body: { name: 'x', role: 'viewer' } })).status, 403, 'nor can an admin key narrowed to operator');

  const payAdmin = await api.mintKey('pay-admin', 'admin', { projects: ['payments'], expiresAt: new Date(api.now().getTime() + 24 * 3_600_000) });
  const attempts: Array<[string, object, number, RegExp?]> = [
    ['every project from a payments admin', { name: 'x', role: 'viewer', expiresIn: '1h' }, 403, /limited to projects payments and cannot grant every project/],
    ['a wider project list', { name: 'x', role: 'viewer', projects: ['payments', 'search'], expiresIn: '1h' }, 403, /cannot grant projects payments, search/],
    ['another project', { name: 'x', role: 'viewer', projects: ['search'], expiresIn: '1h' }, 403],
    ['no expiry from an expiring key', { name: 'x', role: 'viewer', projects: ['payments'] }, 403, /cannot grant no expiry/],
    ['a longer expiry', { name: 'x', role: 'viewer', projects: ['payments'], expiresIn: '30d' }, 403, /expires at .* cannot grant expiry/],
    ['within every bound', { name: 'ok', role: 'admin', projects: ['payments'], expiresIn: '12h' }, 201],
  ];
  for (const [what, body, status, detail] of attempts) {
    const r = await api.call('POST', '/v1/keys', { key: payAdmin.plaintext, body });
    t.equal(r.status, status, `${what}: ${r.text.slice(0, 300)}`);
    if (detail) t.match(r.json.detail, detail);
  }
  const bad = await api.call('POST', '/v1/keys', { body: { name: 'x', role: 'viewer', expiresIn: '1h', expiresAt: new Date().toISOString() } });
  t.equal(bad.status, 400, 'expiresIn and expiresAt together');
  t.equal((await api.call('POST', '/v1/keys', { body: { name: 'x', role: 'root' } })).status, 400, 'unknown role');
  t.equal((await api.call('POST', '/v1/keys', { body: { name: 'x', role: 'viewer', expiresAt: '2000-01-01T00:00:00Z' } })).status, 400, 'expiry in the past');

  // A scoped admin sees and revokes only keys within its projects.
  const seen = (await api.call('GET', '/v1/keys', { key: payAdmin.plaintext })).json.items.map((x: { name: string }) => x.name).sort();
  t.same(seen, ['grafana', 'ok', 'pay-admin']);
  t.equal((await api.call('GET', `/v1/keys/${api.admin.record.id}`, { key: payAdmin.plaintext })).status, 404);
  t.equal((await api.call('DELETE', `/v1/keys/${operator.record.id}`, { key: payAdmin.plaintext })).status, 404);

  // Revoke, twice: the same answer.
  const rv = await api.call('DELETE', `/v1/keys/${k.id}`);
  t.equal(rv.status, 200);
  t.match(rv.json, { status: 'revoked', revokedAt: String });
  const again = await api.call('DELETE', `/v1/keys/${k.id}`);
  t.equal(again.json.revokedAt, rv.json.revokedAt, 'idempotent');
  t.equal((await api.call('DELETE', '/v1/keys/ak_0000000000000000')).status, 404);
  t.equal((await api.call('GET', '/v1/agents', { key: k.key })).status, 401);
});

t.test('join tokens through the API', async (t) => {
  const api = await startSecureApi();
  t.teardown(() => api.close());
  const c = await api.call('POST', '/v1/join-tokens', { body: { ttl: '30m', description: 'rack 4' } });
  t.equal(c.status, 201, c.text);
  t.match(c.json, { id: /^[0-9a-f]{16}$/, status: 'active', description: 'rack 4', caFingerprint: /^sha256:/, usedAt: null, revokedAt: null });
  t.match(c.json.token, new RegExp(`^bkj_${c.json.id}_`));
  const bare = await api.call('POST', '/v1/join-tokens');
  t.equal(bare.status, 201, 'no body: defaults (15m)');
  const list = await api.call('GET', '/v1/join-tokens');
  t.equal(list.json.items.length, 2);
  t.notMatch(list.text, /bkj_/, 'no secrets in the list');
  t.equal((await api.call('POST', '/v1/join-tokens', { body: { ttl: '90d' } })).status, 400, 'at most 30d');

  const rv = await api.call('DELETE', `/v1/join-tokens/${c.json.id}`);
  t.equal(rv.status, 200);
  t.equal(rv.json.status, 'revoked');
  t.same((await api.call('GET', '/v1/join-tokens?status=active')).json.items.map((x: { id: string }) => x.id), [bare.json.id]);
  t.same((await api.call('GET', '/v1/join-tokens?status=revoked')).json.items.map((x: { id: string }) => x.id), [c.json.id]);
  await api.store.consumeJoinToken(bare.json.id, 'agt_x', api.now());
  const used = await api.call('DELETE', `/v1/join-tokens/${bare.json.id}`);
  t.equal(used.status, 409, 'a used token cannot be revoked; revoke its agent');
  t.match(used.json.detail, /agt_x/);
  t.equal((await api.call('DELETE', '/v1/join-tokens/0123456789abcdef')).status, 404);
});

t.test('with the default limits, ten bad secrets for a key from one address do not lock its holder out elsewhere', async (t) => {
  const api = await startSecureApi();
  t.teardown(() => api.close());
  const good = api.admin.plaintext;
  const wrong = good.replace(/.$/, (c) => (c === '0' ? '1' : '0'));
  const inject = (auth: string, ip: string) => api.app.inject({ method: 'GET', url: '/v1/agents', remoteAddress: ip, headers: { authorization: `Bearer ${auth}` } });
  const codes: number[] = [];
  for (let i = 0; i < 15; i++) codes.push((await inject(wrong, '192.0.2.1')).statusCode);
  t.same(codes, [...Array(10).fill(401), ...Array(5).fill(429)], 'ten refusals, then limited');
  t.equal((await inject(good, '198.51.100.7')).statusCode, 200, 'the holder, from another address, gets in');
  const fromA = await inject(good, '192.0.2.1');
  t.equal(fromA.statusCode, 429, 'from the hammering address the key waits, right secret or not');
  t.match(fromA.json().detail, /for key ak_[0-9a-f]{16} from this address \(10 per 60s\)/);
  t.ok(Number(fromA.headers['retry-after']) >= 1, 'with Retry-After');
});

t.test('failed authentication is rate limited per address and per key id at an address', async (t) => {
  const api = await startSecureApi({ auth: { failureLimit: { perAddress: 5, perKeyPerAddress: 3, windowMs: 60_000 } } });
  t.teardown(() => api.close());
  const good = api.admin.plaintext;
  const K = api.admin.record.id;
  const wrong = good.replace(/.$/, (c) => (c === '0' ? '1' : '0'));
  const inject = (auth: string | undefined, ip: string) =>
    api.app.inject({ method: 'GET', url: '/v1/agents', remoteAddress: ip, headers: auth === undefined ? {} : { authorization: `Bearer ${auth}` } });
  const otherKeyId = (i: number) => `bk_ak_${i.toString(16).padStart(16, '0')}_${'0'.repeat(64)}`;

  // Someone hammers key K with wrong secrets from address A: K's holder at address B is unaffected.
  const A = '10.0.0.1';
  const B = '10.0.0.2';
  for (let i = 0; i < 12; i++) {
    const r = await inject(wrong, A);
    t.equal(r.statusCode, i < 3 ? 401 : 429, `bad attempt ${i + 1} for K from A: ${i < 3 ? 'refused' : 'limited'}`);
  }
  t.equal((await inject(good, B)).statusCode, 200, "K's holder at another address is not locked out");
  t.equal((await inject(good, B)).statusCode, 200);

  // From A the same key is limited, even with the right secret, and the problem says why.
  const limited = await inject(good, A);
  t.equal(limited.statusCode, 429, 'K from A is limited');
  t.match(limited.headers['content-type'], /^application\/problem\+json/);
  t.match(limited.json(), { status: 429, code: 'BK_ERR_RATE_LIMITED', detail: new RegExp(`too many failed authentication attempts for key ${K} from this address \\(3 per 60s\\); retry in \\d+s`) });
  const retry = Number(limited.headers['retry-after']);
  t.ok(retry >= 1 && retry <= 60, `Retry-After ${retry}`);
  const other = await api.mintKey('other', 'viewer');
  t.equal((await inject(other.plaintext, A)).statusCode, 200, 'other keys from A still work: the address is under its own limit');

  // Per address: failures from one address add up over every key id, then even the right key waits.
  const C = '10.0.0.3';
  for (let i = 0; i < 5; i++) t.equal((await inject(otherKeyId(i), C)).statusCode, 401);
  const addrLimited = await inject(other.plaintext, C);
  t.equal(addrLimited.statusCode, 429, 'the sixth attempt from that address is refused');
  t.match(addrLimited.json().detail, /from this address \(5 per 60s\)/);
  t.ok(Number(addrLimited.headers['retry-after']) >= 1);
  t.equal((await inject(other.plaintext, '10.0.0.4')).statusCode, 200, 'another address is not affected');
  for (let i = 0; i < 6; i++) t.equal((await inject(undefined, '10.0.0.5')).statusCode, 401, 'no credential at all…');
  t.equal((await inject(good, '10.0.0.5')).statusCode, 200, '…is not counted as a guess');
  const tok = (await api.call('POST', '/v1/auth/token', { key: other.plaintext })).json.token as string;
  t.equal((await inject(tok, B)).statusCode, 200, 'tokens work');

  // The window passes.
  api.advance(61_000);
  t.equal((await inject(good, A)).statusCode, 200, 'after a minute K may try again from A');
  t.equal((await inject(other.plaintext, C)).statusCode, 200, 'and C');

  // The audit trail has the failures, and each limited bucket once.
  await api.app.security.drain();
  const log = await api.call('GET', '/v1/audit-log?limit=1000');
  const entries = log.json.items as Array<{ status: number; clientIp: string; target: Record<string, string>; actorKind: string }>;
  t.equal(entries.filter((e) => e.status === 401).length, 3 + 5 + 6, 'every 401 recorded');
  t.equal(entries.filter((e) => e.status === 429).length, 2, 'one 429 entry per limited bucket');
  t.ok(entries.some((e) => e.status === 401 && e.clientIp === A && e.target['presentedKeyId'] === K), 'who was being tried, and from where');
});
