// Browser sessions against the findings of the console security review, over the real
// HTTPS API (SQLite here; sessions-hardening.postgres.test.ts runs it on PostgreSQL): a
// stale console tab (a logged-out, idle or expired session's cookie) is refused without
// counting as a guess, so it never locks out the valid API keys used from the same
// address, and every such 401 clears the cookie; unknown and malformed session ids still
// count; one key holds at most sessionMaxPerKey live sessions (the oldest logged out); a
// malformed URL gets a problem with the security headers and without the URL echoed.
import t from 'tap';
import { startSecureApi, type Res, type SecureApi } from './fixtures/secure-api';
import { CONTENT_SECURITY_POLICY } from '../../src/api/security-headers';
import { httpsRequest } from '../api/fixtures/api-server';

t.setTimeout(180_000);

async function login(api: SecureApi, key: string): Promise<{ res: Res; cookie: string; csrf: string }> {
  const res = await api.call('POST', '/v1/session', { key: null, body: { key } });
  const set = String([res.headers['set-cookie']].flat()[0] ?? '');
  const id = /^__Host-bulkhead_session=([^;]*)/.exec(set)?.[1] ?? '';
  return { res, cookie: `__Host-bulkhead_session=${id}`, csrf: res.json?.csrfToken as string };
}

const CLEARED = /^__Host-bulkhead_session=; Max-Age=0; Path=\/; HttpOnly; Secure; SameSite=Strict$/;

function clearedCookie(r: Res): boolean {
  return [r.headers['set-cookie']].flat().some((c) => CLEARED.test(String(c)));
}

t.test('a stale console tab is not a guess: keys from the same address keep working; the cookie is cleared', async (t) => {
  const api = await startSecureApi({ auth: { failureLimit: { perAddress: 3, perKeyPerAddress: 3, windowMs: 600_000 }, sessionIdleMs: 60_000 } });
  t.teardown(() => api.close());
  const viewer = await api.mintKey('v', 'viewer');
  const loggedOut = await login(api, viewer.plaintext);
  const idle = await login(api, viewer.plaintext);
  const out = await api.call('DELETE', '/v1/session', { key: null, headers: { cookie: loggedOut.cookie, 'x-bulkhead-csrf': loggedOut.csrf } });
  t.equal(out.status, 200);
  // A tab polling with its logged-out cookie, many times over the limit of 3.
  for (let i = 0; i < 8; i++) {
    const r = await api.call('GET', '/v1/agents', { key: null, headers: { cookie: loggedOut.cookie } });
    t.equal(r.status, 401, `logged-out cookie #${i + 1}: 401, not 429`);
    t.ok(clearedCookie(r), 'the 401 clears the cookie (Max-Age=0, same flags)');
  }
  // The valid keys from that address are not locked out (the limit is 3 in 10 minutes).
  t.equal((await api.call('GET', '/v1/agents')).status, 200, 'the admin key still works from the same address');
  // Idle and past its lifetime: the same.
  api.advance(61_000);
  for (let i = 0; i < 4; i++) {
    const r = await api.call('GET', '/v1/session', { key: null, headers: { cookie: idle.cookie } });
    t.equal(r.status, 401, `idle cookie #${i + 1}: 401`);
    t.ok(clearedCookie(r));
  }
  t.equal((await api.call('GET', '/v1/agents', { key: viewer.plaintext })).status, 200, 'the viewer key still works from the same address');
  api.advance(9 * 3_600_000);
  const ended = await api.call('GET', '/v1/session', { key: null, headers: { cookie: idle.cookie } });
  t.equal(ended.status, 401);
  t.ok(clearedCookie(ended));
  // Still not locked out (the clock moved past the window: no guess counted since then either).
  const admin = await api.call('GET', '/v1/agents');
  t.equal(admin.status, 200, 'the admin key still works from the same address');
  const v = await api.call('GET', '/v1/agents', { key: viewer.plaintext });
  t.equal(v.status, 200, 'the viewer key still works from the same address');

  // Guesses still count: unknown and malformed ids, then 429 for everyone at that address.
  const unknown = `__Host-bulkhead_session=bks_${'A'.repeat(43)}`;
  const r1 = await api.call('GET', '/v1/agents', { key: null, headers: { cookie: unknown } });
  t.equal(r1.status, 401);
  t.ok(clearedCookie(r1), 'an unknown cookie is cleared too');
  const r2 = await api.call('GET', '/v1/agents', { key: null, headers: { cookie: '__Host-bulkhead_session=nope' } });
  t.equal(r2.status, 401);
  await api.call('GET', '/v1/agents', { key: null, headers: { cookie: unknown } });
  const limited = await api.call('GET', '/v1/agents', { key: null, headers: { cookie: unknown } });
  t.equal(limited.status, 429, 'unknown session ids are counted as guesses');
  t.ok(Number(limited.headers['retry-after']) >= 1);
  // A 401 for a missing cookie-less credential sends no Set-Cookie.
  const plain = await api.call('GET', '/v1/agents', { key: 'bk_ak_nope_nope' });
  t.equal(plain.headers['set-cookie'], undefined, 'no cookie cleared when no cookie was the credential');
});

t.test('one key holds at most sessionMaxPerKey live sessions; the oldest are logged out', async (t) => {
  const api = await startSecureApi({ auth: { sessionMaxPerKey: 3 } });
  t.teardown(() => api.close());
  const viewer = await api.mintKey('v', 'viewer');
  const other = await api.mintKey('o', 'viewer');
  const otherS = await login(api, other.plaintext);
  const sessions = [];
  for (let i = 0; i < 5; i++) {
    sessions.push(await login(api, viewer.plaintext));
    api.advance(10); // distinct creation times: "oldest" is well defined
  }
  t.ok(sessions.every((s) => s.res.status === 200), 'every login succeeds');
  const statuses = [];
  for (const s of sessions) statuses.push((await api.call('GET', '/v1/session', { key: null, headers: { cookie: s.cookie } })).status);
  t.same(statuses, [401, 401, 200, 200, 200], 'the two oldest were logged out, the newest three live');
  t.equal((await api.call('GET', '/v1/session', { key: null, headers: { cookie: otherS.cookie } })).status, 200, "another key's session is untouched");
  t.match(api.logs(), /session logged out: its key opened more sessions than allowed/);
  // A stale tab of a capped session is not counted either (the known-session rule).
  const admin = await api.call('GET', '/v1/agents');
  t.equal(admin.status, 200);
});

t.test('a malformed URL: problem+json with the security headers, the URL not echoed', async (t) => {
  const api = await startSecureApi();
  t.teardown(() => api.close());
  for (const path of ['/v1/agents/%E0%A4%A', '/v1/agents/' + '%41'.repeat(400) + '%E0%A4%A', '/v1/images/' + 'a'.repeat(1100)]) {
    const r = await httpsRequest(`${api.url}${path}`, api.ca.certPem, 'GET', { headers: { authorization: `Bearer ${api.admin.plaintext}` } });
    t.equal(r.status, 400, `${path.slice(0, 30)}…: 400`);
    t.equal(r.headers['content-security-policy'], CONTENT_SECURITY_POLICY, 'CSP');
    t.equal(r.headers['x-frame-options'], 'DENY', 'no framing');
    t.ok(r.headers['strict-transport-security'], 'HSTS');
    t.equal(r.headers['x-content-type-options'], 'nosniff');
    t.match(String(r.headers['content-type']), /^application\/problem\+json/);
    const body = JSON.parse(r.text) as Record<string, unknown>;
    t.equal(body.code, 'BK_ERR_BAD_REQUEST');
    t.notMatch(r.text, /%E0|aaaaaaaa|AAAA/, 'the raw URL is not echoed');
  }
  t.notMatch(api.logs(), /"level":50/, 'not logged as a failure');
});
