// The console's transport against the real HTTPS API: @bulkhead/client with its
// FetchTransport and Node's fetch (no Node transport, no hand-made requests) logs in
// with a key, reads with the session cookie, sends the session's X-Bulkhead-CSRF header
// on a mutating request (and a client without the token is refused 403 BK_ERR_CSRF),
// opens the event stream, logs out — after which the old session id is worthless. On the
// way, every typed method of BulkheadClient is called once against its real route.
import t from 'tap';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { startSecureApi } from '../../controller/test/auth/fixtures/secure-api';

const CHILD = join(__dirname, 'fixtures/fetch-session-child.js');

t.test('FetchTransport: session login, CSRF, events, logout against the real API', { skip: existsSync(join(__dirname, '../dist/fetch.js')) ? false : 'build first: npx tsc -b' }, async (t) => {
  const api = await startSecureApi();
  t.teardown(() => api.close());
  const r = await new Promise<{ code: number; stdout: string; stderr: string }>((done) => {
    execFile(process.execPath, [CHILD, api.url, api.admin.plaintext], { env: { PATH: process.env['PATH'] ?? '', NODE_EXTRA_CA_CERTS: api.caFile }, timeout: 60_000 }, (err, stdout, stderr) =>
      done({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr }),
    );
  });
  t.equal(r.code, 0, r.stderr);
  const out = JSON.parse(r.stdout) as Record<string, unknown>;
  t.same(out['login'], { role: 'admin', csrfHeader: 'x-bulkhead-csrf', hasToken: true, cookieNames: ['__Host-bulkhead_session'] }, 'logged in: the cookie set, the token in the answer');
  t.equal(out['sameSession'], true, 'GET /v1/session: the same session');
  t.equal(out['agents'], 0, 'a read with the cookie');
  t.match(out['created'], { name: 'made-in-a-session' }, 'a mutating request with the CSRF header succeeds');
  // Every typed method reached its route: a success, or (for the missing things asked for on purpose) 404.
  const tour = out['tour'] as Record<string, string>;
  t.ok(Object.keys(tour).length >= 38, `${Object.keys(tour).length} calls`);
  for (const [name, result] of Object.entries(tour)) {
    if (name.includes('(missing)')) t.equal(result, '404 BK_ERR_NOT_FOUND', name);
    else if (name.includes('(invalid)')) t.equal(result, '400 BK_ERR_POLICY_INVALID', name);
    else t.equal(result, 'ok', name);
  }
  t.ok((out['policyErrors'] as number) > 0, `an invalid policy's errors reach ApiError.policyErrors (${String(out['policyErrors'])})`);
  t.equal(out['forged'], '403 BK_ERR_CSRF', 'the cookie without the CSRF header is refused');
  t.equal(out['forgedGetAllowed'], 'ok', '(a read needs no CSRF token)');
  t.equal(out['stream'], 'ok', 'the event stream opened with the cookie and ended on abort');
  t.equal(out['logout'], true);
  t.equal(out['cookieDropped'], true, 'the answer drops the cookie');
  t.match(out['afterLogout'], /^401 /, 'the old session id is dead server-side');
  // What the server recorded: the key was made by the session.
  const keys = await api.call('GET', '/v1/keys');
  t.ok((keys.json as { items: Array<{ name: string }> }).items.some((k) => k.name === 'made-in-a-session'), 'the key exists');
  t.notOk((keys.json as { items: Array<{ name: string }> }).items.some((k) => k.name === 'forged'), 'the forged one does not');
});
