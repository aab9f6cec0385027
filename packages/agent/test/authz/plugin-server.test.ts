// The authorization plugin protocol, spoken to over its unix socket the way
// dockerd does: activation, allow/deny, responses always allowed, and every
// internal failure answered with Allow (fail-open) instead of a crash.
import t from 'tap';
import { request } from 'node:http';
import { createServer } from 'node:net';
import { mkdtempSync, rmSync, statSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLogger } from '@bulkhead/shared';
import { apiVersionLess, AuthzPlugin, goRequestTarget, parseAuthzRequest, queryParam, responseHead, stripVersion, type AuthzDecision, type AuthzRequest, type AuthzResponseHead } from '../../src/authz/plugin-server';

const logger = createLogger({ name: 'authz-plugin-test', level: 'silent' });

function post(socketPath: string, path: string, body: unknown): Promise<{ status: number; json: Record<string, unknown>; type: string }> {
  const data = body === undefined ? '' : typeof body === 'string' ? body : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, path, method: 'POST', headers: { 'Content-Length': Buffer.byteLength(data) } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, json: JSON.parse(Buffer.concat(chunks).toString() || '{}') as Record<string, unknown>, type: String(res.headers['content-type']) }));
    });
    req.on('error', reject);
    req.end(data);
  });
}

const envelope = (method: string, uri: string, body?: unknown) => ({
  User: '',
  RequestMethod: method,
  RequestUri: uri,
  RequestHeaders: { 'Content-Type': 'application/json' },
  ...(body === undefined ? {} : { RequestBody: Buffer.from(JSON.stringify(body)).toString('base64') }),
});

async function startPlugin(t: tap.Test, evaluate: (req: AuthzRequest) => AuthzDecision | Promise<AuthzDecision>, extra: { decisionTimeoutMs?: number; failClosed?: (req: AuthzRequest | undefined) => boolean; onResponse?: (res: AuthzResponseHead) => void } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'bk-authz-'));
  const socketPath = join(dir, 'plugins', 'bk-test.sock');
  const plugin = await AuthzPlugin.start({ socketPath, evaluate, logger, ...extra });
  t.teardown(async () => {
    await plugin.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  return { plugin, socketPath, dir };
}

t.test('the response phase tells onResponse the request\'s method and routed path, read from the envelope\'s head, and still allows', async (t) => {
  const heads: AuthzResponseHead[] = [];
  const { plugin, socketPath } = await startPlugin(t, () => ({ allow: true }), { onResponse: (h) => { heads.push(h); if (h.path === '/boom') throw new Error('hook failed'); } });
  const big = Buffer.alloc(96 * 1024, 'x').toString('base64');
  for (const [method, uri] of [['POST', '/v1.41/commit?container=src&repo=app&tag=1'], ['post', '/v1.41/c%6Fmmit?repo=app'], ['DELETE', '/images/app:1'], ['GET', '/v1.45/containers/json'], ['POST', '/boom']] as const) {
    // As dockerd sends it: the request's fields first, then the response's (its body up to 1 MiB).
    const res = await post(socketPath, '/AuthZPlugin.AuthZRes', { ...envelope(method, uri), ResponseStatusCode: 200, ResponseBody: big });
    t.same(res.json, { Allow: true }, `${method} ${uri}: allowed`);
  }
  t.same(heads, [
    { method: 'POST', path: '/commit' }, { method: 'POST', path: '/commit' }, { method: 'DELETE', path: '/images/app:1' }, { method: 'GET', path: '/containers/json' }, { method: 'POST', path: '/boom' },
  ], 'percent-encoding decoded as dockerd routes it; the version stripped; a failing hook ignored');
  t.equal(plugin.stats.requests, 0, 'responses are not counted as decisions');
  t.same(responseHead(Buffer.from(JSON.stringify({ User: 'x\"RequestMethod\":\"GET', RequestMethod: 'POST', RequestUri: '/v1.41//commit' }))), { method: 'POST', path: '/commit' }, 'a user name cannot fake the method; the path normalized');
  t.same(responseHead(Buffer.from('{"User":"","ResponseStatusCode":200}')), { method: '', path: undefined }, 'nothing readable: unknown');
  t.same(responseHead(Buffer.from('{"RequestMethod":"POST","RequestUri":"/v1.41/commit\\x"}')), { method: 'POST', path: undefined }, 'a target that is no JSON string: unknown, no throw');
});

t.test('activation, allow, deny, responses; socket 0600 in a created dir', async (t) => {
  const seen: AuthzRequest[] = [];
  const { plugin, socketPath } = await startPlugin(t, (req) => {
    seen.push(req);
    const body = req.json() as { HostConfig?: { Privileged?: boolean } } | undefined;
    return body?.HostConfig?.Privileged ? { allow: false, msg: 'no privileged' } : { allow: true };
  });
  t.equal(statSync(socketPath).mode & 0o777, 0o600);

  const act = await post(socketPath, '/Plugin.Activate', undefined);
  t.same(act.json, { Implements: ['authz'] });
  t.match(act.type, /application\/vnd\.docker\.plugins\.v1\+json/);

  const deny = await post(socketPath, '/AuthZPlugin.AuthZReq', envelope('POST', '/v1.41/containers/create?name=x', { Image: 'a', HostConfig: { Privileged: true } }));
  t.same(deny.json, { Allow: false, Msg: 'no privileged' });
  const allow = await post(socketPath, '/AuthZPlugin.AuthZReq', envelope('POST', '/v1.41/containers/create', { Image: 'a' }));
  t.same(allow.json, { Allow: true });
  const res = await post(socketPath, '/AuthZPlugin.AuthZRes', { ...envelope('POST', '/v1.41/containers/create', { HostConfig: { Privileged: true } }), ResponseStatusCode: 201 });
  t.same(res.json, { Allow: true }, 'responses are never vetoed');
  const unknown = await post(socketPath, '/Nope', {});
  t.equal(unknown.status, 404);

  t.equal(seen.length, 2, 'evaluate is called for AuthZReq only');
  t.equal(seen[0]!.path, '/containers/create');
  t.equal(seen[0]!.query.get('name'), 'x');
  t.equal(seen[0]!.method, 'POST');
  t.same(plugin.stats, { requests: 2, allowed: 1, denied: 1, failOpen: 0, failClosed: 0 });
});

t.test('fail-open: malformed requests, evaluator errors, slow or bad decisions', async (t) => {
  let mode = 'throw';
  const { plugin, socketPath } = await startPlugin(t, (req) => {
    if (mode === 'throw') throw new Error('evaluator bug');
    if (mode === 'reject') return Promise.reject(new Error('async bug'));
    if (mode === 'slow') return new Promise<AuthzDecision>((r) => setTimeout(() => r({ allow: false, msg: 'too late' }), 500));
    if (mode === 'garbage') return undefined as unknown as AuthzDecision;
    req.json();
    return { allow: false, msg: 'unreachable' };
  }, { decisionTimeoutMs: 100 });
  const ask = () => post(socketPath, '/AuthZPlugin.AuthZReq', envelope('POST', '/v1.41/containers/create', { Image: 'a' }));
  for (const m of ['throw', 'reject', 'slow', 'garbage']) {
    mode = m;
    t.same((await ask()).json, { Allow: true }, `${m} → allow`);
  }
  mode = 'parse';
  const badBody = { ...envelope('POST', '/v1.41/containers/create'), RequestBody: Buffer.from('{nope').toString('base64') };
  t.same((await post(socketPath, '/AuthZPlugin.AuthZReq', badBody)).json, { Allow: true }, 'body that is not JSON → allow');
  t.same((await post(socketPath, '/AuthZPlugin.AuthZReq', '{{{')).json, { Allow: true }, 'envelope that is not JSON → allow');
  t.same((await post(socketPath, '/AuthZPlugin.AuthZReq', { RequestMethod: 'GET' })).json, { Allow: true }, 'no RequestUri → allow');
  t.equal(plugin.stats.failOpen, 7);
});

t.test('fail-closed while the policy enforces: every undecidable request is refused, with the reason', async (t) => {
  let mode = 'throw';
  let closed: boolean | 'throw' = true;
  const { plugin, socketPath } = await startPlugin(t, () => {
    if (mode === 'throw') throw new Error('evaluator bug');
    if (mode === 'slow') return new Promise<AuthzDecision>((r) => setTimeout(() => r({ allow: true }), 500));
    return Promise.reject(new Error('async bug'));
  }, { decisionTimeoutMs: 100, failClosed: () => {
    if (closed === 'throw') throw new Error('policy unknown');
    return closed;
  } });
  const ask = () => post(socketPath, '/AuthZPlugin.AuthZReq', envelope('POST', '/v1.41/containers/create', { Image: 'a' }));
  for (const m of ['throw', 'slow', 'reject']) {
    mode = m;
    const r = (await ask()).json;
    t.equal(r['Allow'], false, `${m} → refused`);
    t.match(r['Msg'], /Bulkhead could not decide on this request \(.+\) and refuses it because the policy has rules in enforce mode/);
  }
  t.equal((await post(socketPath, '/AuthZPlugin.AuthZReq', '{{{')).json['Allow'], false, 'an unreadable envelope is refused too');
  closed = 'throw';
  t.equal((await ask()).json['Allow'], false, 'a failing failClosed counts as closed');
  closed = false;
  t.equal((await ask()).json['Allow'], true, 'nothing enforced: allowed and logged');
  t.same(plugin.stats, { requests: 6, allowed: 1, denied: 5, failOpen: 1, failClosed: 5 });
});

t.test('request targets read the way Go reads them', async (t) => {
  const path = (uri: string) => parseAuthzRequest(JSON.stringify({ RequestMethod: 'POST', RequestUri: uri }));
  for (const [uri, want] of [
    ['/v1.41/containers/create', '/containers/create'],
    ['foo:/v1.41/containers/create', '/containers/create'],
    ['http:/v1.41/containers/x/start', '/containers/x/start'],
    ['HTTP://host:2375/v1.41/containers/create?name=a', '/containers/create'],
    ['a+b-c.d:/v1.41/exec/abc/start', '/exec/abc/start'],
    ['x://v1.41/containers/create', '/containers/create'],
    ['x:///v1.41/containers/create', '/containers/create'],
    ['/v1.41/containers/%63reate', '/containers/create'],
    ['/v1.41/containers/a%2Fb/start', '/containers/a/b/start'],
    ['/v1.41/containers/create?', '/containers/create'],
    ['//v1.41/containers/create', '/containers/create'],
    ['*', '/*'],
    ['/v1.41/containers/caf\u00e9/start', '/containers/caf\u00e9/start'],
  ] as const) {
    const r = path(uri);
    t.equal(r.path, want, uri);
    t.equal(r.targetError, undefined, `${uri}: readable`);
  }
  t.equal(path('HTTP://host:2375/v1.41/containers/create?name=a').query.get('name'), 'a', 'the query of an absolute target');
  t.equal(path('/v1.23/containers/x/start').apiVersion, '1.23');
  t.equal(path('foo:/v1.23/containers/x/start').apiVersion, '1.23');
  t.equal(path('/containers/x/start').apiVersion, '');
  for (const [uri, why] of [
    ['foo:v1.41/containers/create', /opaque/],
    ['v1.41/containers/create', /invalid request target/],
    [':/v1.41/containers/create', /missing protocol scheme/],
    ['/v1.41/containers/%ZZ/start', /bad percent-escape/],
    ['/v1.41/containers/%4/start', /bad percent-escape/],
    ['/v1.41/containers/create\u0001', /control character/],
  ] as const) {
    const r = path(uri);
    t.equal(r.path, '', `${uri}: no path`);
    t.match(r.targetError, why, uri);
  }
  t.equal(apiVersionLess('1.23', '1.24'), true);
  t.equal(apiVersionLess('1.9', '1.24'), true);
  t.equal(apiVersionLess('1.24', '1.24'), false);
  t.equal(apiVersionLess('1.41', '1.24'), false);
  t.equal(apiVersionLess('2', '1.24'), false);
  t.equal(apiVersionLess('1.24.0', '1.24'), false);
  t.equal(goRequestTarget('/v1.41/x?a=1').ok, true);
});

t.test('start-up: stale socket replaced, live socket refused, stop removes the socket', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'bk-authz-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const socketPath = join(dir, 'p.sock');
  // A live listener owns the path.
  const other = createServer();
  await new Promise<void>((r) => other.listen(socketPath, r));
  await t.rejects(AuthzPlugin.start({ socketPath, evaluate: () => ({ allow: true }), logger }), { code: 'BK_ERR_STARTUP_FAILED' });
  // Leave the file behind without a listener (a crashed agent).
  await new Promise<void>((r) => other.close(() => r()));
  const { writeFileSync } = await import('node:fs');
  writeFileSync(socketPath, '');
  const plugin = await AuthzPlugin.start({ socketPath, evaluate: () => ({ allow: true }), logger });
  t.same((await post(socketPath, '/Plugin.Activate', undefined)).json, { Implements: ['authz'] });
  await plugin.stop();
  await plugin.stop();
  t.notOk(existsSync(socketPath), 'socket removed');
  await t.rejects(AuthzPlugin.start({ socketPath: 'relative.sock', evaluate: () => ({ allow: true }), logger }), { code: 'BK_ERR_CONFIG_INVALID' });
});

t.test('request parsing: the path dockerd routes on, however it is spelled', async (t) => {
  t.equal(stripVersion('/v1.41/containers/create'), '/containers/create');
  t.equal(stripVersion('/containers/create'), '/containers/create');
  t.equal(stripVersion('/v1.41.0/containers/create'), '/containers/create');
  t.equal(stripVersion('/v1.41//containers/create/'), '/containers/create');
  t.equal(parseAuthzRequest(JSON.stringify({ RequestMethod: 'POST', RequestUri: '/v1.41/containers/cr%65ate' })).path, '/containers/create', 'percent-encoded');
  t.equal(stripVersion('/v1.41/containers/x/../create'), '/containers/create');
  t.equal(stripVersion('/v1.41/containers/%ZZ/start'), '/containers/%ZZ/start');
  t.equal(stripVersion('/_ping'), '/_ping');
  // The plain-path shortcut agrees with the full decoding on the edges.
  t.equal(stripVersion('/v1.41'), '/', 'the version alone');
  t.equal(stripVersion('/v1.41/v1.40/containers/create'), '/v1.40/containers/create', 'one version prefix is stripped, as before');
  t.equal(stripVersion('/v1.41/containers/my.app/start'), '/containers/my.app/start', 'dots in a name');
  t.equal(stripVersion('/v1.41/containers/../containers/create'), '/containers/create');
  t.equal(stripVersion('/v1.41/containers/create/.'), '/containers/create');
  for (const [uri, want] of [
    ['/v1.41/containers/create?name=web', 'web'], ['/x?a=1&name=a%2Db&b=2', 'a-b'], ['/x?name=a+b', 'a b'],
    ['/x?name', ''], ['/x?names=y', undefined], ['/x', undefined], ['/x?a=1&name=first&name=second', 'first'],
  ] as const) {
    t.equal(queryParam(uri, 'name'), want, `queryParam ${uri}`);
    if (want !== undefined) t.equal(new URLSearchParams(uri.slice(uri.indexOf('?') + 1)).get('name'), want, '  as URLSearchParams reads it');
  }
  // Where Go's url.ParseQuery (dockerd's r.FormValue) differs from URLSearchParams.
  for (const [uri, want] of [
    ['/x?n%61me=first&name=second', 'first'], // the key is unescaped too
    ['/x?name=%ZZ&name=b', 'b'], // a bad escape skips the pair (dockerd then answers 400)
    ['/x?name=a;b&name=c', 'c'], // so does a ";"
    ['/x?name=%e2%82%ac', '\u20ac'],
  ] as const) t.equal(queryParam(uri, 'name'), want, `queryParam as Go reads ${uri}`);
  const r = parseAuthzRequest(JSON.stringify({ RequestMethod: 'post', RequestUri: 'http://docker/v1.41/containers/create?name=a' }));
  t.equal(r.path, '/containers/create', 'absolute-form target');
  t.equal(r.method, 'POST');
  t.equal(r.hasBody, false);
  t.equal(r.json(), undefined);
  t.throws(() => parseAuthzRequest('null'));
});
