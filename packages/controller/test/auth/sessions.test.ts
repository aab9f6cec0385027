// Browser sessions over the real HTTPS API (SQLite here; sessions.postgres.test.ts runs
// every assertion on PostgreSQL): login with an API key (body or header) → the
// __Host- cookie with exactly the flags the console relies on; every security header on
// every kind of answer; the CSRF token required on every cookie-authenticated mutating
// request; a stolen session id dead after logout, after idle expiry, after its lifetime
// and after its key's revocation or expiry; logins, failures and logouts in the audit
// chain and throttled like API keys; a viewer's session refused on every mutating route
// (enumerated from the server's own route table).
import t from 'tap';
import { startSecureApi, type Res, type SecureApi } from './fixtures/secure-api';
import { CONTENT_SECURITY_POLICY } from '../../src/api/security-headers';
import { hashSessionId } from '../../src/auth/sessions';
import { openStream } from '../events/fixtures-sse';

const MUTATING = ['POST', 'PUT', 'PATCH', 'DELETE'];

interface Login {
  res: Res;
  cookie: string;
  id: string;
  csrf: string;
}

async function login(api: SecureApi, key: string, how: 'body' | 'header' = 'body'): Promise<Login> {
  const res = how === 'body' ? await api.call('POST', '/v1/session', { key: null, body: { key } }) : await api.call('POST', '/v1/session', { key });
  const set = String([res.headers['set-cookie']].flat()[0] ?? '');
  const id = /^__Host-bulkhead_session=([^;]*)/.exec(set)?.[1] ?? '';
  return { res, cookie: `__Host-bulkhead_session=${id}`, id, csrf: res.json?.csrfToken };
}

/** A call with the session cookie only (no Authorization header), optionally with the CSRF header. */
function withCookie(api: SecureApi, s: Login, method: string, path: string, o: { csrf?: string | null; body?: unknown; headers?: Record<string, string> } = {}): Promise<Res> {
  const csrf = o.csrf === undefined ? s.csrf : o.csrf;
  return api.call(method, path, { key: null, body: o.body, headers: { cookie: s.cookie, ...(csrf !== null ? { 'x-bulkhead-csrf': csrf } : {}), ...(o.headers ?? {}) } });
}

function assertSecurityHeaders(t: tap.Test, headers: Record<string, string | string[] | undefined>, what: string): void {
  t.equal(headers['content-security-policy'], CONTENT_SECURITY_POLICY, `${what}: CSP`);
  const csp = String(headers['content-security-policy']);
  t.match(csp, /frame-ancestors 'none'/, `${what}: frame-ancestors 'none'`);
  t.notMatch(csp, /unsafe-inline|unsafe-eval|https?:|\*/, `${what}: no inline script, no other origin`);
  t.match(csp, /script-src 'self'(;|$)/, `${what}: scripts from the console's origin only`);
  t.equal(headers['x-frame-options'], 'DENY', `${what}: X-Frame-Options`);
  t.match(String(headers['strict-transport-security']), /^max-age=31536000\b/, `${what}: HSTS`);
  t.equal(headers['referrer-policy'], 'no-referrer', `${what}: Referrer-Policy`);
  t.equal(headers['x-content-type-options'], 'nosniff', `${what}: nosniff`);
  t.notOk(headers['access-control-allow-origin'], `${what}: no CORS grant to any origin`);
}

t.test('login: the cookie, its flags, the CSRF token; every answer carries the security headers', async (t) => {
  const api = await startSecureApi();
  t.teardown(() => api.close());

  const s = await login(api, api.admin.plaintext);
  t.equal(s.res.status, 200, s.res.text);
  const cookies = [s.res.headers['set-cookie']].flat().filter((c): c is string => typeof c === 'string');
  t.equal(cookies.length, 1, 'one cookie');
  const parts = cookies[0]!.split(';').map((p) => p.trim());
  t.match(parts[0], /^__Host-bulkhead_session=bks_[A-Za-z0-9_-]{43}$/, 'the __Host- cookie holds a random session id');
  const attrs = parts.slice(1).map((p) => p.toLowerCase());
  for (const a of ['httponly', 'secure', 'samesite=strict', 'path=/']) t.ok(attrs.includes(a), `cookie is ${a}`);
  t.equal(attrs.find((a) => a.startsWith('max-age=')), 'max-age=28800', 'lives 8 h at most (default)');
  t.notOk(attrs.some((a) => a.startsWith('domain=')), 'no Domain (a __Host- cookie must not have one)');
  t.match(s.res.json, { keyId: api.admin.record.id, keyName: 'root', role: 'admin', projects: [], csrfHeader: 'x-bulkhead-csrf', idleTimeoutSeconds: 900, sessionId: /^ses_[0-9a-f]{16}$/ });
  t.match(s.csrf, /^[A-Za-z0-9_-]{43}$/);
  t.notMatch(s.res.text, s.id, 'the session id is only in the cookie');
  t.notMatch(s.res.text, api.admin.plaintext.slice(-64), 'the key is not echoed');
  t.equal(s.res.headers['cache-control'], 'no-store');
  const stored = await api.store.sessions!.getSession(hashSessionId(s.id));
  t.ok(stored, 'stored under the hash of the id');
  t.equal(await api.store.sessions!.getSession(s.id), undefined, 'not under the id itself');

  // Login with the Authorization header works the same.
  const h = await login(api, api.admin.plaintext, 'header');
  t.equal(h.res.status, 200, h.res.text);
  t.not(h.id, s.id, 'every login a new session');

  // The cookie works on every /v1 route like the key, through the same checks.
  const who = await withCookie(api, s, 'GET', '/v1/auth/whoami', { csrf: null });
  t.equal(who.status, 200, who.text);
  t.match(who.json, { kind: 'session', keyId: api.admin.record.id, role: 'admin' });
  t.equal((await withCookie(api, s, 'GET', '/v1/agents', { csrf: null })).status, 200);
  const again = await withCookie(api, s, 'GET', '/v1/session', { csrf: null });
  t.equal(again.status, 200, again.text);
  t.equal(again.json.csrfToken, s.csrf, 'GET /v1/session gives the same CSRF token back (a reloaded page)');
  t.equal((await api.call('GET', '/v1/session')).status, 404, 'an API key has no session');

  // Security headers on every kind of answer.
  assertSecurityHeaders(t, s.res.headers, 'login');
  assertSecurityHeaders(t, who.headers, 'GET with the cookie');
  assertSecurityHeaders(t, (await api.call('GET', '/v1/agents', { key: null })).headers, '401');
  assertSecurityHeaders(t, (await withCookie(api, s, 'POST', '/v1/keys', { csrf: null, body: {} })).headers, '403 CSRF');
  assertSecurityHeaders(t, (await api.call('GET', '/v1/nope')).headers, '404');
  assertSecurityHeaders(t, (await api.call('POST', '/v1/keys', { body: '{"bad' })).headers, '400');
  assertSecurityHeaders(t, (await api.call('GET', '/healthz', { key: null })).headers, '/healthz');
  assertSecurityHeaders(t, (await api.call('GET', '/v1/openapi.json', { key: null })).headers, 'OpenAPI document');
  const stream = await openStream(`${api.url}/v1/events`, api.ca.certPem, { cookie: s.cookie, origin: 'https://evil.example' });
  t.equal(stream.status, 200);
  assertSecurityHeaders(t, stream.headers as Record<string, string>, 'event stream');
  stream.close();
  assertSecurityHeaders(t, (await api.call('GET', '/v1/agents', { headers: { origin: 'https://evil.example' } })).headers, 'a request from another origin');
});

t.test('CSRF: a cookie-authenticated change needs the session\'s token; a cross-site form post is refused', async (t) => {
  const api = await startSecureApi();
  t.teardown(() => api.close());
  const s = await login(api, api.admin.plaintext);
  const other = await login(api, api.admin.plaintext);
  const body = { name: 'from-console', role: 'viewer' };

  for (const [what, csrf] of [['missing', null], ['wrong', 'A'.repeat(43)], ['another session\'s', other.csrf], ['empty', '']] as const) {
    const r = await withCookie(api, s, 'POST', '/v1/keys', { csrf, body });
    t.equal(r.status, 403, `${what} token: 403`);
    t.equal(r.json.code, 'BK_ERR_CSRF', `${what} token: BK_ERR_CSRF`);
    t.match(r.json.detail, /x-bulkhead-csrf/);
  }
  t.equal((await api.store.listApiKeys()).filter((k) => k.name === 'from-console').length, 0, 'nothing was created');
  // What a forged cross-site form sends: the cookie (were SameSite ignored), a form body, no header.
  const form = await api.call('POST', '/v1/keys', {
    key: null, body: 'name=evil&role=admin', headers: { cookie: s.cookie, 'content-type': 'application/x-www-form-urlencoded', origin: 'https://evil.example' },
  });
  t.equal(form.status, 403, 'cross-site form post: 403');
  t.equal(form.json.code, 'BK_ERR_CSRF');
  t.equal((await withCookie(api, s, 'DELETE', '/v1/session', { csrf: null })).status, 403, 'logout needs the token too');

  const ok = await withCookie(api, s, 'POST', '/v1/keys', { body });
  t.equal(ok.status, 201, ok.text);
  t.equal((await withCookie(api, s, 'GET', '/v1/keys', { csrf: null })).status, 200, 'reads need no token');
  // An Authorization header cannot be sent by a forged form: it needs no CSRF token, and a cookie beside it is ignored.
  t.equal((await api.call('POST', '/v1/keys', { body: { name: 'cli', role: 'viewer' }, headers: { cookie: s.cookie } })).status, 201);
});

t.test('with the cookie, only requests from the console\'s own origin (Sec-Fetch-Site) are served', async (t) => {
  const api = await startSecureApi();
  t.teardown(() => api.close());
  const s = await login(api, api.admin.plaintext);
  for (const site of ['same-site', 'cross-site', 'Same-Origin', 'same-origin, same-site']) {
    for (const [method, path] of [['GET', '/v1/session'], ['GET', '/v1/containers'], ['POST', '/v1/keys']] as const) {
      const r = await withCookie(api, s, method, path, { body: method === 'POST' ? { name: 'x', role: 'viewer' } : undefined, headers: { 'sec-fetch-site': site } });
      t.equal(r.status, 403, `${method} ${path}, Sec-Fetch-Site: ${site}: 403`);
      t.equal(r.json.code, 'BK_ERR_CSRF');
      t.match(r.json.detail, /from another origin .* cannot use the session cookie/);
      t.notOk(r.headers['set-cookie'], 'the cookie is not cleared (another page must not log the console out)');
    }
  }
  const events = await openStream(`${api.url}/v1/events`, api.ca.certPem, { cookie: s.cookie, 'sec-fetch-site': 'same-site' });
  events.close();
  t.equal(events.status, 403, 'an EventSource of another origin opens no stream');
  for (const site of ['same-origin', 'none', undefined]) {
    const r = await withCookie(api, s, 'GET', '/v1/session', { headers: site === undefined ? {} : { 'sec-fetch-site': site } });
    t.equal(r.status, 200, `Sec-Fetch-Site: ${site ?? '(absent: not a browser)'}: served`);
  }
  // A key in the Authorization header is not a browser's ambient credential: not asked.
  t.equal((await api.call('GET', '/v1/containers', { headers: { 'sec-fetch-site': 'cross-site' } })).status, 200, 'a key from any origin: served');
  t.equal((await api.store.listApiKeys()).filter((k) => k.name === 'x').length, 0, 'nothing was created');
});

t.test('a stolen session id stops working: logout, idle timeout, lifetime, key revoked or expired', async (t) => {
  const api = await startSecureApi({ auth: { sessionIdleMs: 10_000, sessionMaxLifetimeMs: 60_000 } });
  t.teardown(() => api.close());
  const works = async (s: Login): Promise<Res> => withCookie(api, s, 'GET', '/v1/agents', { csrf: null });

  // Logout.
  const a = await login(api, api.admin.plaintext);
  t.equal(a.res.headers['set-cookie']?.toString().match(/Max-Age=(\d+)/)?.[1], '60', 'the cookie lives as long as the session');
  t.equal((await works(a)).status, 200);
  const out = await withCookie(api, a, 'DELETE', '/v1/session');
  t.equal(out.status, 200, out.text);
  t.match(String(out.headers['set-cookie']), /^__Host-bulkhead_session=; Max-Age=0; Path=\/; HttpOnly; Secure; SameSite=Strict$/, 'the browser is told to drop the cookie');
  const stolen = await works(a);
  t.equal(stolen.status, 401, 'after logout the id is dead server-side');
  t.match(stolen.json.detail, /logged out or expired/);
  t.equal((await withCookie(api, a, 'DELETE', '/v1/session')).status, 401, 'logging out twice: 401');
  t.ok((await api.store.sessions!.pruneSessions(api.now())) >= 1, 'an ended session is pruned');
  t.equal(await api.store.sessions!.getSession(hashSessionId(a.id)), undefined, 'and gone from the store');
  assertSecurityHeaders(t, stolen.headers, 'dead session');

  // Idle: used within the timeout it lives on; 10 s unused, it is over.
  const b = await login(api, api.admin.plaintext);
  for (let i = 0; i < 3; i++) {
    api.advance(8_000);
    t.equal((await works(b)).status, 200, `used again after 8 s (${i + 1})`);
  }
  api.advance(10_001);
  const idle = await works(b);
  t.equal(idle.status, 401, 'idle past the timeout');
  t.match(idle.json.detail, /idle timeout/);

  // Lifetime: however busy, it ends 60 s after login.
  const c = await login(api, api.admin.plaintext);
  for (let i = 0; i < 7; i++) {
    api.advance(8_000);
    t.equal((await works(c)).status, 200, `busy session at ${(i + 1) * 8}s`);
  }
  api.advance(5_000);
  const old = await works(c);
  t.equal(old.status, 401, 'past the maximum lifetime');
  t.match(old.json.detail, /maximum lifetime/);

  // The key revoked: its sessions end at once.
  const op = await api.call('POST', '/v1/keys', { body: { name: 'ops', role: 'operator' } });
  const d = await login(api, op.json.key);
  t.equal((await works(d)).status, 200);
  t.equal((await api.call('DELETE', `/v1/keys/${op.json.id}`)).status, 200);
  const revoked = await works(d);
  t.equal(revoked.status, 401);
  t.match(revoked.json.detail, /was revoked/);

  // The key expiring: the session never outlives it.
  const brief = await api.mintKey('brief', 'viewer', { expiresAt: new Date(api.now().getTime() + 30_000) });
  const e = await login(api, brief.plaintext);
  t.ok(Date.parse(e.res.json.expiresAt) <= brief.record.expiresAt!.getTime(), 'session ends with its key');
  api.advance(5_000);
  t.equal((await works(e)).status, 200);
  api.advance(26_000);
  t.equal((await works(e)).status, 401, 'key expired: session over');

  // A token cannot open a session, nor can a session open another.
  const tok = await api.call('POST', '/v1/auth/token');
  const viaToken = await api.call('POST', '/v1/session', { key: tok.json.token });
  t.equal(viaToken.status, 403, viaToken.text);
  const f = await login(api, api.admin.plaintext);
  t.equal((await withCookie(api, f, 'POST', '/v1/session', { body: {} })).status, 401, 'the cookie is no credential for POST /v1/session');
  t.equal((await withCookie(api, f, 'POST', '/v1/auth/token', { body: {} })).status, 403, 'nor can a session mint bearer tokens');
  // A forged session id of the right shape.
  t.equal((await works({ ...f, cookie: '__Host-bulkhead_session=bks_' + 'A'.repeat(43) })).status, 401);
});

t.test('logins, failures and logouts in the audit chain; failed logins throttled like API keys', async (t) => {
  const api = await startSecureApi({ auth: { failureLimit: { perAddress: 30, perKeyPerAddress: 5 } } });
  t.teardown(() => api.close());
  const s = await login(api, api.admin.plaintext);
  const wrong = api.admin.plaintext.slice(0, -4) + (api.admin.plaintext.endsWith('0000') ? '1111' : '0000');
  const bad = await api.call('POST', '/v1/session', { key: null, body: { key: wrong } });
  t.equal(bad.status, 401);
  t.equal(bad.json.code, 'BK_ERR_UNAUTHENTICATED');
  t.equal((await withCookie(api, s, 'DELETE', '/v1/session')).status, 200);
  await api.app.security.audit!.flush();
  const rows = (await api.store.audit!.list({ limit: 50 })).map((r) => ({ ...r, target: JSON.parse(r.targetJson) as Record<string, string> }));
  const login200 = rows.find((r) => r.action === 'session.login' && r.status === 200);
  t.ok(login200, 'the login is in the audit trail');
  t.equal(login200?.actorId, api.admin.record.id);
  t.match(login200?.target, { sessionId: /^ses_/ });
  const failed = rows.find((r) => r.action === 'session.login' && r.status === 401);
  t.ok(failed, 'the failed login too');
  t.equal(failed?.target['presentedKeyId'], api.admin.record.id, 'naming the key id presented');
  t.equal(failed?.code, 'BK_ERR_UNAUTHENTICATED');
  const logout = rows.find((r) => r.action === 'session.logout' && r.status === 200);
  t.ok(logout, 'the logout too');
  t.equal(logout?.actorKind, 'session');
  t.equal(logout?.target['sessionId'], login200?.target['sessionId'], 'the same session');
  t.notMatch(JSON.stringify(rows), api.admin.plaintext.slice(-64), 'no secret in the audit trail');
  t.notMatch(JSON.stringify(rows), s.id, 'no session id in the audit trail');
  t.match(await api.app.security.audit!.verify(), { ok: true }, 'the chain verifies');

  // Throttled: 4 more failures for this key from this address, then 429 even with the right key.
  for (let i = 0; i < 4; i++) t.equal((await api.call('POST', '/v1/session', { key: null, body: { key: wrong } })).status, 401);
  const limited = await api.call('POST', '/v1/session', { key: null, body: { key: api.admin.plaintext } });
  t.equal(limited.status, 429, limited.text);
  t.equal(limited.json.code, 'BK_ERR_RATE_LIMITED');
  t.ok(Number(limited.headers['retry-after']) >= 1, 'Retry-After');
  // Guessing session ids counts against the address.
  const guesser = await startSecureApi({ auth: { failureLimit: { perAddress: 3 } } });
  t.teardown(() => guesser.close());
  for (let i = 0; i < 3; i++) {
    const r = await guesser.call('GET', '/v1/agents', { key: null, headers: { cookie: `__Host-bulkhead_session=bks_${String(i).repeat(43)}` } });
    t.equal(r.status, 401);
  }
  t.equal((await guesser.call('GET', '/v1/agents', { key: null, headers: { cookie: `__Host-bulkhead_session=bks_${'9'.repeat(43)}` } })).status, 429, 'guessing session ids: throttled');
});

t.test("a viewer's session gets 403 on every mutating route (the server's own route table)", async (t) => {
  const api = await startSecureApi();
  t.teardown(() => api.close());
  const viewer = await api.mintKey('watcher', 'viewer');
  const s = await login(api, viewer.plaintext);
  t.equal(s.res.status, 200, s.res.text);
  const pathOf = (url: string): string => url.replace(/::/g, ':').replace(/:[A-Za-z_]+/g, (m, i: number, str: string) => (str[i - 1] === '/' ? 'x' : m));
  const mutating = api.app.security.routes.filter((r) => MUTATING.includes(r.method));
  t.ok(mutating.length >= 15, `${mutating.length} mutating routes registered`);
  let checked = 0;
  for (const r of mutating) {
    // Routes a viewer may call: its own session (login takes a key, logout ends it) and token exchange (keys only).
    if (r.url === '/v1/session') continue;
    const res = await withCookie(api, s, r.method, pathOf(r.url), { body: ['POST', 'PUT', 'PATCH'].includes(r.method) ? {} : undefined });
    t.equal(res.status, 403, `${r.method} ${r.url}: 403 (${res.text.slice(0, 160)})`);
    t.equal(res.json?.code, 'BK_ERR_FORBIDDEN', `${r.method} ${r.url}: BK_ERR_FORBIDDEN`);
    checked++;
  }
  t.equal(checked, mutating.filter((r) => r.url !== '/v1/session').length, `all ${checked} other mutating routes refused`);
  t.equal((await withCookie(api, s, 'GET', '/v1/violations', { csrf: null })).status, 200, 'reads are allowed');
  t.equal((await withCookie(api, s, 'DELETE', '/v1/session')).status, 200, 'and logging out');
});
