// Two ways the shared client could be turned against the console (attack review of issue 14):
// - a path parameter "." or ".." is left as is by encodeURIComponent and then resolved by the
//   WHATWG URL parser (what fetch uses) as a dot segment: the request lands on another route;
// - a logout that failed on the wire (the session still alive) must keep the CSRF token, or the
//   retry is refused 403 and the session cannot be ended from this page.
// The transport here is FetchTransport itself over a fetch that records the URL the browser's
// parser makes of it (node's URL is the WHATWG parser) and answers as the controller would.
import t from 'tap';
import { ApiError, BulkheadClient, fillPath } from '../src/index';
import { FetchTransport } from '../src/fetch';

function recording(answer: (url: URL, init: RequestInit) => Response | Promise<Response>): { fetch: typeof fetch; seen: { url: string; method: string; headers: Record<string, string> }[] } {
  const seen: { url: string; method: string; headers: Record<string, string> }[] = [];
  const f = (async (input: string | URL | Request, init: RequestInit = {}) => {
    const url = new URL(String(input), 'https://console.example:8443/console/');
    seen.push({ url: url.pathname, method: String(init.method), headers: { ...(init.headers as Record<string, string>) } });
    return answer(url, init);
  }) as typeof fetch;
  return { fetch: f, seen };
}

/** The call's failure, whether it throws at once or rejects. */
const settle = (f: () => Promise<unknown>): Promise<unknown> => Promise.resolve().then(f);

const json = (status: number, body: unknown) => new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json' } });

t.test('"." and ".." never become path segments (the URL parser would resolve them)', async (t) => {
  // What the browser does with the unguarded path: another route.
  t.equal(new URL(`/v1/containers/x/${encodeURIComponent('..')}`, 'https://c.example').pathname, '/v1/containers/', 'the hazard: ".." climbs a level');
  t.equal(new URL('/v1/containers/x/%2e%2e/actions', 'https://c.example').pathname, '/v1/containers/actions', 'and so does %2e%2e');
  const r = recording(() => json(200, {}));
  const client = new BulkheadClient({ transport: new FetchTransport({ fetch: r.fetch }) });
  for (const bad of ['.', '..']) {
    await t.rejects(settle(() => client.getContainer('agent-1', bad)), TypeError, `getContainer(…, "${bad}") refused`);
    await t.rejects(settle(() => client.containerAction(bad, bad, { action: 'kill' })), TypeError, `containerAction("${bad}", "${bad}") refused`);
    await t.rejects(settle(() => client.acknowledgeViolation(bad)), TypeError);
    t.throws(() => fillPath('/v1/keys/{id}', { id: bad }), TypeError, `fillPath refuses "${bad}"`);
  }
  t.same(r.seen, [], 'nothing was sent');
  // Dots inside a value are fine and stay inside their segment.
  await client.getContainer('agent-1', 'web.1');
  await client.getContainer('agent-1', '...');
  await client.getContainer('agent-1', '%2e%2e');
  t.same(r.seen.map((s) => s.url), ['/v1/containers/agent-1/web.1', '/v1/containers/agent-1/...', '/v1/containers/agent-1/%252e%252e']);
});

t.test('a failed logout keeps the CSRF token for the retry; a confirmed one drops it', async (t) => {
  let mode: 'down' | 'ok' | 'gone' = 'down';
  const r = recording((url, init) => {
    if (url.pathname === '/v1/session' && init.method === 'POST') return json(200, { csrfToken: 'tok', csrfHeader: 'x-bulkhead-csrf', sessionId: 'ses_1' });
    if (url.pathname === '/v1/session' && init.method === 'DELETE') {
      if (mode === 'down') throw new TypeError('Failed to fetch');
      if (mode === 'gone') return json(401, { type: 'about:blank', title: 'Unauthorized', status: 401, code: 'BK_ERR_UNAUTHENTICATED', detail: 'no such session' });
      return json(200, { sessionId: 'ses_1', loggedOut: true });
    }
    return json(404, {});
  });
  const transport = new FetchTransport({ fetch: r.fetch });
  const client = new BulkheadClient({ transport });
  await client.login('bk_ak_x_y');
  t.ok(transport.hasSession);
  await t.rejects(client.logout(), 'the dropped DELETE rejects');
  t.ok(transport.hasSession, 'the token is kept: the session is still alive');
  mode = 'ok';
  t.match(await client.logout(), { loggedOut: true });
  t.same(r.seen.filter((s) => s.method === 'DELETE').map((s) => s.headers['x-bulkhead-csrf']), ['tok', 'tok'], 'the retry carried the CSRF token');
  t.notOk(transport.hasSession, 'a confirmed logout drops the token');

  await client.login('bk_ak_x_y');
  mode = 'gone';
  await t.rejects(client.logout(), ApiError);
  t.notOk(transport.hasSession, 'a 401 (the session had ended) drops it too');
});
