// API keys limited to route actions, over EVERY route the server registers (read from
// fastify's route tree, never a list written here): a CI key minted with
// `actions: ["scans.upload"]` uploads a real Trivy report (201) and gets 403 on every other
// /v1 route — a token cannot be made from it either; routes outside /v1 (no credential
// needed) answer it as they answer anyone. Delegation: a limited key cannot mint a wider
// key; an unknown action, or one its role cannot call, is refused at minting.
import t from 'tap';
import { startSecureApi } from './fixtures/secure-api';
import { parseRouteTree } from '../../../../test/helpers/route-tree';

const DIGEST = 'sha256:' + 'c'.repeat(64);
const REPORT = JSON.stringify({
  SchemaVersion: 2, CreatedAt: new Date().toISOString(), ArtifactName: 'registry.example.com/shop/web:v1', ArtifactType: 'container_image',
  Metadata: { ImageID: 'sha256:' + 'd'.repeat(64), RepoDigests: [`registry.example.com/shop/web@${DIGEST}`] },
  Results: [{ Target: 'web', Class: 'os-pkgs', Vulnerabilities: [{ VulnerabilityID: 'CVE-2099-0002', PkgName: 'openssl', InstalledVersion: '1', FixedVersion: '2', Severity: 'HIGH' }] }],
});

t.test('an upload-only key: POST /v1/scans and nothing else', async (t) => {
  const api = await startSecureApi();
  t.teardown(() => api.close());
  const minted = await api.call('POST', '/v1/keys', { body: { name: 'ci-scan-upload', role: 'operator', actions: ['scans.upload'], expiresIn: '365d' } });
  t.equal(minted.status, 201, minted.text);
  t.same(minted.json.actions, ['scans.upload'], 'the answer shows the limit');
  const ci = minted.json.key as string;
  const shown = await api.call('GET', `/v1/keys/${minted.json.id as string}`);
  t.same(shown.json.actions, ['scans.upload'], 'stored');

  const up = await api.call('POST', '/v1/scans', { key: ci, body: REPORT });
  t.equal(up.status, 201, `the upload is allowed: ${up.text}`);
  t.equal(up.json.digest, DIGEST);

  const routes = parseRouteTree(api.app.printRoutes()).filter((r) => r.method !== 'HEAD');
  const v1 = routes.filter((r) => r.url.startsWith('/v1/'));
  t.ok(v1.length >= 30, `found ${v1.length} /v1 routes`);
  const pathOf = (url: string): string => url.replace(/:[A-Za-z_]+/g, (m, i: number, s: string) => (s[i - 1] === '/' ? 'x' : m));
  // Routes behind the credential check are the ones the security layer saw declared; the rest
  // (the OpenAPI document) ask for no credential, and the key changes nothing there.
  const secured = (r: { method: string; url: string }) => api.app.security.routes.some((d) => d.method === r.method && d.url === r.url.replace(/([^/:]):(?!:)/g, '$1::'));
  const open = [...v1.filter((r) => !secured(r)), ...routes.filter((x) => !x.url.startsWith('/v1/'))]
    .filter((x) => x.method === 'GET' && !x.url.includes(':') && !x.url.includes('*'));
  t.ok(open.length >= 1, `open routes: ${open.map((r) => r.url).join(', ')}`);
  for (const r of open) {
    const withKey = await api.call('GET', r.url, { key: ci });
    const without = await api.call('GET', r.url, { key: null });
    t.equal(withKey.status, without.status, `GET ${r.url}: the same answer with or without the key (${without.status})`);
  }
  let refused = 0;
  const guarded = v1.filter(secured);
  for (const r of guarded) {
    if (r.method === 'POST' && r.url === '/v1/scans') continue;
    const res = await api.call(r.method, pathOf(r.url), { key: ci, body: ['POST', 'PUT', 'PATCH'].includes(r.method) ? {} : undefined });
    t.equal(res.status, 403, `${r.method} ${r.url}: 403 (${res.text.slice(0, 160)})`);
    t.equal(res.json?.code, 'BK_ERR_FORBIDDEN', `${r.method} ${r.url}: BK_ERR_FORBIDDEN`);
    t.match(res.json?.detail, /is not among the actions key ak_[0-9a-f]+ "ci-scan-upload" is limited to: scans\.upload/, `${r.method} ${r.url}: the problem names the limit`);
    refused++;
  }
  t.equal(refused, guarded.length - 1, 'every other credentialed /v1 route refused');
  t.equal(guarded.length, api.app.security.routes.length, 'every declared route was tried');
  t.equal(api.app.security.routes.filter((d) => d.action === 'scans.upload').length, 1, 'scans.upload is exactly one route');
});

t.test('delegation and validation of action limits', async (t) => {
  const api = await startSecureApi();
  t.teardown(() => api.close());
  const unknown = await api.call('POST', '/v1/keys', { body: { name: 'x', role: 'operator', actions: ['scans.uploadd'] } });
  t.equal(unknown.status, 400, unknown.text);
  t.match(unknown.json.detail, /unknown action "scans\.uploadd"; actions are: .*scans\.upload/);
  const tooLow = await api.call('POST', '/v1/keys', { body: { name: 'x', role: 'viewer', actions: ['scans.upload'] } });
  t.equal(tooLow.status, 400, tooLow.text);
  t.match(tooLow.json.detail, /action "scans\.upload" needs the operator role or higher; the key's role is viewer/);

  // An admin key limited to minting keys can mint only keys limited within its own actions.
  const minter = await api.call('POST', '/v1/keys', { body: { name: 'minter', role: 'admin', actions: ['keys.create', 'scans.upload'] } });
  t.equal(minter.status, 201, minter.text);
  const mk = minter.json.key as string;
  const wide = await api.call('POST', '/v1/keys', { key: mk, body: { name: 'wide', role: 'operator' } });
  t.equal(wide.status, 403, wide.text);
  t.match(wide.json.detail, /is limited to actions keys\.create, scans\.upload and cannot grant every action to a new key/);
  const other = await api.call('POST', '/v1/keys', { key: mk, body: { name: 'other', role: 'operator', actions: ['violations.acknowledge'] } });
  t.equal(other.status, 403, other.text);
  const within = await api.call('POST', '/v1/keys', { key: mk, body: { name: 'ci', role: 'operator', actions: ['scans.upload'] } });
  t.equal(within.status, 201, within.text);
  t.equal((await api.call('GET', '/v1/keys', { key: mk })).status, 403, 'the minter cannot even list keys');

  // The umbrella action holds its finer ones: a key limited to containers.actions may mint a pause-only key, not a kill+scan one.
  const umbrella = await api.call('POST', '/v1/keys', { body: { name: 'ops', role: 'admin', actions: ['keys.create', 'containers.actions'] } });
  t.equal(umbrella.status, 201, umbrella.text);
  const uk = umbrella.json.key as string;
  const pauseOnly = await api.call('POST', '/v1/keys', { key: uk, body: { name: 'pauser', role: 'operator', actions: ['containers.pause'] } });
  t.equal(pauseOnly.status, 201, `containers.actions covers containers.pause: ${pauseOnly.text}`);
  const beyond = await api.call('POST', '/v1/keys', { key: uk, body: { name: 'x', role: 'operator', actions: ['containers.kill', 'scans.upload'] } });
  t.equal(beyond.status, 403, beyond.text);
  t.match(beyond.json.detail, /is limited to actions keys\.create, containers\.actions and cannot grant actions containers\.kill, scans\.upload/);
  const narrow = await api.call('POST', '/v1/keys', { body: { name: 'narrow', role: 'admin', actions: ['keys.create', 'containers.pause'] } });
  const wider = await api.call('POST', '/v1/keys', { key: narrow.json.key as string, body: { name: 'y', role: 'operator', actions: ['containers.actions'] } });
  t.equal(wider.status, 403, `a pause-only minter cannot grant the umbrella: ${wider.text}`);

  // A token of a limited key: minting one is a route like any other.
  const token = await api.call('POST', '/v1/auth/token', { key: within.json.key as string, body: {} });
  t.equal(token.status, 403, token.text);
  // A key allowed to mint tokens: the token carries the key's limits.
  const tk = await api.call('POST', '/v1/keys', { body: { name: 'tk', role: 'operator', actions: ['auth.token', 'scans.upload'] } });
  t.equal(tk.status, 201, tk.text);
  const tok = await api.call('POST', '/v1/auth/token', { key: tk.json.key as string, body: {} });
  t.equal(tok.status, 200, tok.text);
  const bearer = tok.json.token as string;
  t.equal((await api.call('POST', '/v1/scans', { key: bearer, body: REPORT })).status, 201, 'the token uploads');
  const refused = await api.call('GET', '/v1/containers', { key: bearer });
  t.equal(refused.status, 403, 'the token is limited like its key');
  t.match(refused.json.detail, /is not among the actions token of key ak_[0-9a-f]+ "tk" is limited to: auth\.token, scans\.upload/);
});

t.test('a key limited to some manual container actions, and what the API says a caller may do', async (t) => {
  const api = await startSecureApi();
  t.teardown(() => api.close());
  const minted = await api.call('POST', '/v1/keys', { body: { name: 'pause-only', role: 'operator', actions: ['auth.whoami', 'containers.pause'] } });
  t.equal(minted.status, 201, `containers.pause is an action a key can be limited to: ${minted.text}`);
  const k = minted.json.key as string;
  const act = (action: string) => api.call('POST', '/v1/containers/agt_x/' + 'a'.repeat(64) + '/actions', { key: k, body: { action } });
  for (const action of ['kill', 'stop', 'quarantine', 'unpause', 'release']) {
    const r = await act(action);
    t.equal(r.status, 403, `${action}: 403`);
    t.match(r.json?.detail, new RegExp(`containers\\.${action} is not among the actions key ak_[0-9a-f]+ "pause-only" is limited to: auth\\.whoami, containers\\.pause`), `${action}: the problem names the limit`);
  }
  // Audit entries are written behind the answer: poll briefly (bounded) for the five.
  let refusedLogged: string[] = [];
  for (let i = 0; i < 50 && refusedLogged.length < 5; i++) {
    if (i > 0) await new Promise((r) => setTimeout(r, 100));
    const log = await api.call('GET', '/v1/audit-log?action=containers.actions&status=403');
    refusedLogged = log.json.items.map((e: { target: { manualAction?: string } }) => e.target.manualAction).sort();
  }
  t.same(refusedLogged, ['containers.kill', 'containers.quarantine', 'containers.release', 'containers.stop', 'containers.unpause'], 'the audit trail names each refused action');
  const pause = await act('pause');
  t.not(pause.status, 403, `pause passes the access check (then: ${pause.status} ${pause.json?.code})`);
  const who = await api.call('GET', '/v1/auth/whoami', { key: k });
  t.same([who.json.actions, who.json.allowedActions], [['auth.whoami', 'containers.pause'], ['auth.whoami', 'containers.pause']], 'whoami: the limits, and exactly what they allow');

  // Unlimited keys: everything their role and scope allow, manual actions one by one.
  const op = await api.call('POST', '/v1/keys', { body: { name: 'op', role: 'operator' } });
  const opWho = (await api.call('GET', '/v1/auth/whoami', { key: op.json.key as string })).json;
  t.same(opWho.actions, [], 'not limited');
  for (const a of ['containers.actions', 'containers.pause', 'containers.kill', 'containers.quarantine', 'violations.acknowledge', 'webhooks.test', 'policies.dry-run', 'containers.read']) t.ok(opWho.allowedActions.includes(a), `operator: ${a}`);
  for (const a of ['policies.apply', 'keys.create', 'audit-log.read']) t.notOk(opWho.allowedActions.includes(a), `operator: not ${a}`);
  const viewer = await api.call('POST', '/v1/keys', { body: { name: 'v', role: 'viewer' } });
  const vWho = (await api.call('GET', '/v1/auth/whoami', { key: viewer.json.key as string })).json;
  t.same(vWho.allowedActions.filter((a: string) => !a.endsWith('.read') && !['agents.audit', 'auth.token', 'auth.whoami', 'events.read', 'policies.versions', 'session.login', 'session.logout', 'webhooks.deliveries', 'audit-log.verify', 'containers.usage'].includes(a)), [], 'viewer: reads (and its own session and token) only');
  const scoped = await api.call('POST', '/v1/keys', { body: { name: 's', role: 'operator', projects: ['payments'] } });
  const sWho = (await api.call('GET', '/v1/auth/whoami', { key: scoped.json.key as string })).json;
  t.ok(sWho.allowedActions.includes('containers.kill'), 'scoped operator: acts on its projects\' containers');
  t.notOk(sWho.allowedActions.includes('webhooks.test') || sWho.allowedActions.includes('policies.dry-run') || sWho.allowedActions.includes('agents.audit'), 'but no fleet-wide action');

  // A key limited to containers.actions still does every manual action.
  const all = await api.call('POST', '/v1/keys', { body: { name: 'all-actions', role: 'operator', actions: ['containers.actions'] } });
  const kill = await api.call('POST', '/v1/containers/agt_x/' + 'a'.repeat(64) + '/actions', { key: all.json.key as string, body: { action: 'kill' } });
  t.not(kill.status, 403, `containers.actions grants kill (then: ${kill.status})`);
  const bad = await api.call('POST', '/v1/keys', { body: { name: 'x', role: 'viewer', actions: ['containers.pause'] } });
  t.match([bad.status, bad.json.detail], [400, /containers\.pause" needs the operator role/], 'a viewer key cannot be limited to pause');
});
