import t from 'tap';
import { request as httpRequest } from 'node:http';
import { connect } from 'node:tls';
import { createLogger } from '@bulkhead/shared';
import { generateApiKey } from '../../src/api/api-keys';
import { createApiServer } from '../../src/api/server';
import { openStore } from '../../src/store/open-store';
import type { Store } from '../../src/store/store';
import { bearer, get, startApi, testPki, type RawResponse } from './fixtures/api-server';
import { IDS, seed } from './fixtures/seed';

const PROBLEM_CT = /^application\/problem\+json/;

function assertProblem(t: tap.Test, res: RawResponse, status: number, code: string): Record<string, unknown> {
  t.equal(res.status, status, `status ${status}`);
  t.match(String(res.headers['content-type']), PROBLEM_CT, 'problem+json');
  const p = res.json as Record<string, unknown>;
  t.match(p, { type: `urn:bulkhead:error:${code}`, title: String, status, detail: String, code }, `problem ${code}`);
  return p;
}

t.test('REST API', async (t) => {
  const api = await startApi();
  t.teardown(() => api.close());
  await seed(api.store);
  const auth = bearer(api.apiKey);

  t.test('health probes need no key', async (t) => {
    const h = await get(api, '/healthz');
    t.equal(h.status, 200);
    t.same(h.json, { status: 'ok' });
    const r = await get(api, '/readyz');
    t.equal(r.status, 200);
    t.same(r.json, { status: 'ready' });
  });

  t.test('authentication', async (t) => {
    const none = await get(api, '/v1/agents');
    const p = assertProblem(t, none, 401, 'BK_ERR_UNAUTHENTICATED');
    t.equal(p['instance'], '/v1/agents');
    t.equal(none.headers['www-authenticate'], 'Bearer realm="bulkhead"');

    const [, , keyId, secret] = /^(bk)_(ak_[0-9a-f]+)_([0-9a-f]+)$/.exec(api.apiKey)!.slice(0) as string[];
    const wrongSecret = `bk_${keyId}_${secret!.replace(/^./, (c) => (c === '0' ? '1' : '0'))}`;
    const unknownId = generateApiKey('never-stored', 'admin').plaintext;
    for (const [what, header] of [
      ['wrong secret', `Bearer ${wrongSecret}`],
      ['unknown key id', `Bearer ${unknownId}`],
      ['malformed key', 'Bearer not-a-key'],
      ['basic scheme', `Basic ${Buffer.from('u:' + api.apiKey).toString('base64')}`],
      ['empty bearer', 'Bearer '],
    ] as const) {
      const res = await get(api, '/v1/agents', { authorization: header });
      assertProblem(t, res, 401, 'BK_ERR_UNAUTHENTICATED');
      t.notMatch(res.text, api.apiKey, `${what}: no key echoed`);
    }
    const wrong = await get(api, '/v1/agents', { authorization: `Bearer ${wrongSecret}` });
    const unknown = await get(api, '/v1/agents', { authorization: `Bearer ${unknownId}` });
    t.equal((wrong.json as { detail: string }).detail, (unknown.json as { detail: string }).detail, 'wrong secret and unknown id look alike');

    const expired = generateApiKey('old', 'viewer', { expiresAt: new Date(Date.now() - 1000) });
    await api.store.insertApiKey(expired.record);
    const e = assertProblem(t, await get(api, '/v1/agents', bearer(expired.plaintext)), 401, 'BK_ERR_UNAUTHENTICATED');
    t.match(e['detail'], /expired/);

    const revoked = generateApiKey('gone', 'viewer');
    await api.store.insertApiKey({ ...revoked.record, revokedAt: new Date() });
    const r = assertProblem(t, await get(api, '/v1/agents', bearer(revoked.plaintext)), 401, 'BK_ERR_UNAUTHENTICATED');
    t.match(r['detail'], /revoked/);

    const ok = await get(api, '/v1/agents', { authorization: `bearer   ${api.apiKey}` });
    t.equal(ok.status, 200, 'scheme is case-insensitive');
    t.equal(ok.headers['cache-control'], 'no-store');
  });

  t.test('agents', async (t) => {
    const res = await get(api, '/v1/agents', auth);
    t.equal(res.status, 200);
    t.match(String(res.headers['content-type']), /^application\/json/);
    const { items } = res.json as { items: Array<Record<string, unknown>> };
    t.same(items.map((a) => a['id']), ['agt_alpha', 'agt_beta']);
    const alpha = items[0]!;
    t.same(Object.keys(alpha).sort(), [
      'agentVersion', 'certNotAfter', 'certSerial', 'connectedAt', 'containerCount', 'enrolledAt', 'host', 'hostname', 'id', 'lastSeenAt', 'policy', 'revokedAt', 'status',
    ]);
    t.match(alpha, {
      hostname: 'alpha', status: 'online', agentVersion: '0.1.0', containerCount: 4, certNotAfter: '2030-01-01T00:00:00.000Z',
      host: { hostname: 'alpha', dockerVersion: '27.3.1', cgroupVersion: 2 }, revokedAt: null,
    });
    t.match(items[1], { status: 'offline', host: null, lastSeenAt: null, connectedAt: null, containerCount: 1 });

    const one = await get(api, '/v1/agents/agt_beta', auth);
    t.equal(one.status, 200);
    t.equal((one.json as { hostname: string }).hostname, 'beta');

    const p = assertProblem(t, await get(api, '/v1/agents/agt_nope', auth), 404, 'BK_ERR_NOT_FOUND');
    t.match(p['detail'], /agt_nope/);
  });

  t.test('container list and filters', async (t) => {
    const names = async (qs: string) => {
      const res = await get(api, `/v1/containers${qs}`, auth);
      t.equal(res.status, 200, `GET ${qs}`);
      return (res.json as { items: Array<{ name: string }> }).items.map((c) => c.name);
    };
    t.same(await names(''), ['/job', '/twin-a', '/twin-b', '/web', '/api']);
    t.same(await names('?agent=agt_beta'), ['/api']);
    t.same(await names('?state=exited'), ['/job']);
    t.same(await names('?image=NGINX'), ['/web', '/api']);
    t.same(await names('?label=team'), ['/web', '/api']);
    t.same(await names('?label=env%3Dprod&label=team%3Dweb'), ['/web'], 'label repeats, all must match');
    t.same(await names('?label=env=prod&agent=agt_beta'), ['/api']);
    t.same(await names('?include_removed=true&image=alpine'), ['/old', '/twin-a', '/twin-b']);

    const page = await get(api, '/v1/containers?limit=2&offset=1', auth);
    t.match(page.json, { limit: 2, offset: 1, nextOffset: 3 });
    const last = await get(api, '/v1/containers?limit=2&offset=3', auth);
    t.match(last.json, { limit: 2, offset: 3, nextOffset: null });
    t.equal((last.json as { items: unknown[] }).items.length, 2);
    t.match((await get(api, '/v1/containers', auth)).json, { limit: 100, offset: 0, nextOffset: null }, 'defaults');

    const c = (await get(api, '/v1/containers?agent=agt_alpha&label=team', auth)).json as { items: Array<Record<string, unknown>> };
    t.same(Object.keys(c.items[0]!).sort(), ['agentId', 'facts', 'id', 'imageRef', 'name', 'removed', 'state', 'updatedAt', 'usage']);
    t.equal(c.items[0]!['usage'], null, 'no usage reported: null');
    t.match(c.items[0], { agentId: 'agt_alpha', id: IDS.web, imageRef: 'nginx:1.27', state: 'running', removed: false, facts: { capAdd: ['NET_ADMIN'], labels: { team: 'web' } } });

    for (const qs of ['?limit=0', '?limit=1001', '?limit=abc', '?offset=-1', '?include_removed=maybe', '?label==x', '?lables=team']) {
      const p = assertProblem(t, await get(api, `/v1/containers${qs}`, auth), 400, 'BK_ERR_BAD_REQUEST');
      t.match(p['detail'], /querystring/, `${qs}: says what is wrong`);
    }
  });

  t.test('single container by id, prefix or name', async (t) => {
    const byId = await get(api, `/v1/containers/agt_alpha/${IDS.web}`, auth);
    t.equal(byId.status, 200);
    t.equal((byId.json as { name: string }).name, '/web');
    for (const ref of [IDS.web.slice(0, 12), IDS.web.slice(0, 20).toUpperCase(), 'web', '%2Fweb']) {
      const res = await get(api, `/v1/containers/agt_alpha/${ref}`, auth);
      t.equal((res.json as { id: string }).id, IDS.web, `resolves ${ref}`);
    }
    // Path parameters up to 1,024 characters reach the route (an image ref runs past fastify's
    // default 100); longer ones are refused by the framework with a problem+json.
    const long = await get(api, `/v1/containers/agt_alpha/${'n'.repeat(200)}`, auth);
    t.equal(long.status, 404, 'a 200-character container ref reaches the route (404 from the store, not the router)');
    const tooLong = assertProblem(t, await get(api, `/v1/containers/agt_alpha/${'n'.repeat(1100)}`, auth), 400, 'BK_ERR_BAD_REQUEST');
    t.equal(tooLong['detail'], 'a path parameter is too long');
    const removed = await get(api, '/v1/containers/agt_alpha/old', auth);
    t.match(removed.json, { id: IDS.old, removed: true }, 'removed containers stay addressable');

    let p = assertProblem(t, await get(api, `/v1/containers/agt_alpha/${IDS.web.slice(0, 11)}`, auth), 404, 'BK_ERR_NOT_FOUND');
    t.match(p['detail'], /at least 12 hex/);
    p = assertProblem(t, await get(api, '/v1/containers/agt_alpha/abcdef012345', auth), 400, 'BK_ERR_BAD_REQUEST');
    t.match(p['detail'], /matches 2 containers/);
    t.equal(((await get(api, `/v1/containers/agt_alpha/${IDS.twinA}`, auth)).json as { name: string }).name, '/twin-a', 'the full id disambiguates');
    p = assertProblem(t, await get(api, '/v1/containers/agt_nope/web', auth), 404, 'BK_ERR_NOT_FOUND');
    t.match(p['detail'], /agent "agt_nope"/);
    p = assertProblem(t, await get(api, '/v1/containers/agt_beta/web', auth), 404, 'BK_ERR_NOT_FOUND');
    t.match(p['detail'], /no container "web" on agent "agt_beta"/);
  });

  t.test('unknown routes are problem+json 404s', async (t) => {
    assertProblem(t, await get(api, '/v2/nothing', auth), 404, 'BK_ERR_NOT_FOUND');
  });

  t.test('HTTPS only, TLS 1.2+', async (t) => {
    const err = await new Promise<Error | undefined>((resolve) => {
      const req = httpRequest(`http://127.0.0.1:${api.port}/healthz`, { agent: false }, (res) => {
        res.resume();
        resolve(undefined);
      });
      req.on('error', resolve);
      req.end();
    });
    t.ok(err, 'plain HTTP gets no HTTP answer');
    const proto = await new Promise<string | null>((resolve, reject) => {
      const s = connect({ host: '127.0.0.1', port: api.port, ca: api.ca.certPem, minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2' }, () => {
        resolve(s.getProtocol());
        s.end();
      });
      s.on('error', reject);
    });
    t.equal(proto, 'TLSv1.2', 'TLS 1.2 is accepted');
    const refused = await new Promise<Error | undefined>((resolve) => {
      const s = connect({ host: '127.0.0.1', port: api.port, ca: api.ca.certPem, minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT@SECLEVEL=0' }, () => {
        s.end();
        resolve(undefined);
      });
      s.on('error', resolve);
    });
    t.ok(refused, 'TLS 1.1 is refused');
  });

  t.test('the Authorization header never reaches the log', async (t) => {
    const logs = api.logs();
    t.match(logs, /request completed/, 'requests are logged');
    t.match(logs, /request refused/, 'refusals are logged');
    t.notMatch(logs, /bk_ak_[0-9a-f]/, 'no API key, valid or not');
    t.notMatch(logs, /"authorization"\s*:/i, 'no authorization field');
    t.notMatch(logs, Buffer.from('u:' + api.apiKey).toString('base64'), 'no Basic credentials');
    t.notMatch(logs, 'not-a-key', 'not even malformed credentials');
  });
});
t.test('redaction holds for anything a handler logs through request.log', async (t) => {
  const lines: string[] = [];
  const logger = createLogger({ name: 'redact-test', level: 'trace', destination: { write: (s: string) => void lines.push(s) } });
  const { server } = await testPki();
  const store = await openStore({ kind: 'sqlite', path: ':memory:' });
  const { record, plaintext } = generateApiKey('t', 'viewer');
  await store.insertApiKey(record);
  const app = await createApiServer({ store, tls: server, logger });
  t.teardown(async () => {
    await app.close();
    await store.close();
  });
  // The kind of debugging line someone might add later.
  app.get('/debug', async (req) => {
    req.log.info({ headers: req.headers }, 'headers');
    req.log.info({ authorization: req.headers.authorization }, 'auth');
    req.log.info({ req: { headers: req.headers } }, 'nested');
    return { ok: true };
  });
  const res = await app.inject({ method: 'GET', url: '/debug', headers: { authorization: `Bearer ${plaintext}` } });
  t.equal(res.statusCode, 200);
  const logs = lines.join('');
  t.match(logs, /"msg":"headers"/);
  t.match(logs, /\[redacted\]/, 'censored');
  t.notMatch(logs, plaintext.split('_').pop()!, 'no secret');
});

t.test('readiness and internal errors', async (t) => {
  let ready = false;
  const api = await startApi({ ready: () => ready });
  t.teardown(() => api.close());

  assertProblem(t, await get(api, '/readyz'), 503, 'BK_ERR_NOT_READY');
  ready = true;
  t.equal((await get(api, '/readyz')).status, 200);

  // Break the store: readiness fails, and a failing query is a bare 500.
  const store = api.store as Store & Record<string, unknown>;
  store['ping'] = () => Promise.reject(new Error('SQLITE_CANTOPEN /var/lib/secret/path'));
  store['listAgents'] = () => Promise.reject(new Error('SQLITE_CORRUPT /var/lib/secret/path'));
  const r = assertProblem(t, await get(api, '/readyz'), 503, 'BK_ERR_NOT_READY');
  t.match(r['detail'], /store unavailable/);
  const res = await get(api, '/v1/agents', bearer(api.apiKey));
  const p = assertProblem(t, res, 500, 'BK_ERR_INTERNAL');
  t.notMatch(res.text, /secret\/path|SQLITE/, 'internals stay in the log');
  t.match(p['detail'], /internal error/);
  t.match(api.logs(), /SQLITE_CORRUPT \/var\/lib\/secret\/path/, 'but the log has them');
  t.notMatch(api.logs(), api.apiKey.split('_').pop()!, 'and still no key');
});
