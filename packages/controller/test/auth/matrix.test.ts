// The role × scope matrix over EVERY /v1 route the server registers: each
// route must declare a least role (the server refuses to start otherwise),
// docs/security.md must list it with that role, and every credential —
// viewer, operator, admin, each unscoped and scoped to a project, plus a
// narrowed token — is allowed exactly when its role suffices and, for
// fleet-wide routes, when it is not limited to projects. Then project
// scoping: a scoped key sees only its project's containers, violations and
// alerts (paging included) and gets 404 for anything else.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import Fastify, { type FastifyInstance } from 'fastify';
import { createLogger } from '@bulkhead/shared';
import { ApiSecurity } from '../../src/auth/api-security';
import { roleAtLeast, type Role } from '../../src/auth/roles';
import type { Store } from '../../src/store/store';
import { testPki } from '../api/fixtures/api-server';
import { startSecureApi, type Res } from './fixtures/secure-api';
import { CONTAINERS, seedScopedFleet } from './fixtures/scoped-fleet';
import { openStream } from '../events/fixtures-sse';
import { parseRouteTree } from '../../../../test/helpers/route-tree';

const SECURITY_DOC = resolve(__dirname, '../../../../docs/security.md');

t.test('a /v1 route without a declared role stops the server from starting', async (t) => {
  await t.rejects(createApiServerWith((v1) => v1.get('/sneaky', async () => ({ ok: true }))), /GET \/v1\/sneaky declares no least role/);
  const ok = await createApiServerWith((v1) => v1.get('/fine', { config: { role: 'viewer' } }, async () => ({ ok: true })));
  await ok.close();
});

/** Builds a server and lets `extra` add routes inside the secured /v1 scope. */
async function createApiServerWith(extra: (v1: FastifyInstance) => void): Promise<FastifyInstance> {
  const { server } = await testPki();
  const logger = createLogger({ name: 't', level: 'silent' });
  const app = Fastify({ https: { key: server.keyPem, cert: server.certPem } });
  const security = new ApiSecurity({ store: {} as unknown as Store, logger, now: () => new Date() });
  await app.register(
    async (v1) => {
      security.install(v1);
      extra(v1);
    },
    { prefix: '/v1' },
  );
  await app.ready();
  return app;
}

t.test('role × scope matrix over every /v1 route', async (t) => {
  const api = await startSecureApi();
  t.teardown(() => api.close());
  await seedScopedFleet(api.store, api.alerting);

  // ---- every route declares a role, and the docs say the same ---------------------------
  const declared = api.app.security.routes;
  const registered = parseRouteTree(api.app.printRoutes())
    .filter((r) => r.url.startsWith('/v1/') && r.method !== 'HEAD' && r.url !== '/v1/openapi.json');
  t.ok(registered.length >= 30, `found ${registered.length} /v1 routes`);
  for (const r of registered) {
    const url = r.url.replace(/([^/:]):(?!:)/g, '$1::');
    t.ok(declared.some((d) => d.method === r.method && d.url === url), `${r.method} ${r.url} went through the role check`);
  }
  const doc = readFileSync(SECURITY_DOC, 'utf8');
  for (const d of declared) {
    const shown = `${d.method} ${d.url.replace('::', ':')}`;
    const row = doc.split('\n').find((l) => l.startsWith(`| \`${shown}\``));
    if (!row) {
      t.fail(`docs/security.md lists ${shown}`);
      continue;
    }
    const cells = row.split('|').map((c) => c.trim());
    t.equal(cells[2], d.role, `docs/security.md: ${shown} needs ${d.role}`);
    t.equal(cells[3] === 'fleet-wide', d.fleetWide === true, `docs/security.md: ${shown} scope column`);
  }

  // ---- credentials ------------------------------------------------------------------------
  type Cred = { label: string; key: string; role: Role; scoped: boolean };
  const creds: Cred[] = [];
  for (const role of ['viewer', 'operator', 'admin'] as const) {
    creds.push({ label: role, key: (await api.mintKey(role, role)).plaintext, role, scoped: false });
    creds.push({ label: `${role}@payments`, key: (await api.mintKey(`${role}-pay`, role, { projects: ['payments'] })).plaintext, role, scoped: true });
  }
  const narrowed = await api.call('POST', '/v1/auth/token', { body: { role: 'viewer' } });
  t.equal(narrowed.status, 200, narrowed.text);
  creds.push({ label: 'admin token narrowed to viewer', key: narrowed.json.token as string, role: 'viewer', scoped: false });

  const pathOf = (url: string): string => url.replace(/::/g, ':').replace(/:[A-Za-z_]+/g, (m, i: number, s: string) => (s[i - 1] === '/' ? 'x' : m));
  for (const route of declared) {
    const path = pathOf(route.url);
    t.test(`${route.method} ${route.url} (${route.role}${route.fleetWide ? ', fleet-wide' : ''})`, async (t) => {
      for (const c of creds) {
        const body = ['POST', 'PUT', 'PATCH'].includes(route.method) ? {} : undefined;
        let res: Res;
        if (route.url === '/v1/events') {
          // A stream that does not end: the status and the problem, if any, then hang up.
          const s = await openStream(`${api.url}${path}`, api.ca.certPem, { authorization: `Bearer ${c.key}` });
          s.close();
          res = { status: s.status, headers: s.headers, text: s.text, json: s.status === 200 ? undefined : JSON.parse(s.text) };
        } else {
          res = await api.call(route.method, path, { key: c.key, body });
        }
        const roleOk = roleAtLeast(c.role, route.role);
        const allowed = roleOk && !(route.fleetWide && c.scoped);
        if (allowed && c.key.startsWith('bkt_') && route.url === '/v1/auth/token') {
          t.equal(res.status, 403, `${c.label}: a token cannot renew itself`);
          t.match(res.json?.detail, /only an API key/);
        } else if (allowed && c.key.startsWith('bkt_') && route.method === 'POST' && route.url === '/v1/session') {
          t.equal(res.status, 403, `${c.label}: a token cannot open a session`);
          t.match(res.json?.detail, /log in with an API key/);
        } else if (allowed) {
          t.notOk([401, 403, 429].includes(res.status), `${c.label}: allowed (got ${res.status} ${res.json?.code ?? ''})`);
        } else {
          t.equal(res.status, 403, `${c.label}: refused with 403 (${res.text.slice(0, 200)})`);
          t.equal(res.json?.code, 'BK_ERR_FORBIDDEN', `${c.label}: BK_ERR_FORBIDDEN`);
          if (!roleOk) t.match(res.json?.detail, new RegExp(`needs the ${route.role} role`), `${c.label}: the problem names the role`);
          else t.match(res.json?.detail, /not limited to projects/, `${c.label}: the problem says why`);
        }
      }
      const anon = await api.call(route.method, path, { key: null, body: route.method === 'GET' ? undefined : {} });
      t.equal(anon.status, 401, 'no credential: 401');
    });
  }
});

t.test('project scoping: lists filtered in the store (paging right), single objects out of scope are 404', async (t) => {
  const api = await startSecureApi();
  t.teardown(() => api.close());
  await seedScopedFleet(api.store, api.alerting);
  const pay = (await api.mintKey('pay', 'operator', { projects: ['payments'] })).plaintext;
  const both = (await api.mintKey('both', 'viewer', { projects: ['payments', 'search'] })).plaintext;
  const C = CONTAINERS;

  const names = async (key: string, qs = ''): Promise<string[]> => {
    const r = await api.call('GET', `/v1/containers${qs}`, { key });
    t.equal(r.status, 200, r.text);
    return (r.json.items as Array<{ name: string }>).map((c) => c.name);
  };
  t.same((await names(api.admin.plaintext)).sort(), Object.values(C).map((c) => c.name).sort(), 'unscoped: every container');
  t.same((await names(pay)).sort(), ['/pay-db', '/pay-job', '/pay-web'], 'payments: label and facts.project both count');
  t.same((await names(both)).sort(), ['/pay-db', '/pay-job', '/pay-web', '/search-api']);
  // Paging is computed after scoping: 3 visible containers, pages of 2.
  const p1 = await api.call('GET', '/v1/containers?limit=2', { key: pay });
  t.match(p1.json, { limit: 2, offset: 0, nextOffset: 2 });
  t.equal(p1.json.items.length, 2);
  const p2 = await api.call('GET', '/v1/containers?limit=2&offset=2', { key: pay });
  t.match(p2.json, { nextOffset: null });
  t.equal(p2.json.items.length, 1, 'last page has the third, nothing from other projects');
  t.same(await names(pay, '?agent=agt_one&label=bulkhead.project%3Dsearch'), [], 'a filter cannot reach outside the scope');

  // Single containers: in scope by id or name; out of scope looks like nothing at all.
  t.equal((await api.call('GET', `/v1/containers/agt_one/${C.payWeb.id}`, { key: pay })).status, 200);
  t.equal((await api.call('GET', '/v1/containers/agt_two/pay-db', { key: pay })).status, 200);
  for (const ref of [C.searchApi.id, 'search-api', C.loose.id.slice(0, 12), 'loose']) {
    const r = await api.call('GET', `/v1/containers/agt_one/${ref}`, { key: pay });
    t.equal(r.status, 404, `${ref}: 404`);
    t.equal(r.json.code, 'BK_ERR_NOT_FOUND');
  }
  t.equal((await api.call('GET', `/v1/containers/agt_one/${C.searchApi.id}`, { key: both })).status, 200);
  // A manual action on an out-of-scope container is a 404 too (never reaches the agent).
  const act = await api.call('POST', `/v1/containers/agt_one/${C.searchApi.id}/actions`, { key: pay, body: { action: 'pause' } });
  t.equal(act.status, 404, `action out of scope: ${act.text}`);

  // Violations.
  const vio = async (key: string, qs = ''): Promise<string[]> => {
    const r = await api.call('GET', `/v1/violations${qs}`, { key });
    t.equal(r.status, 200, r.text);
    return (r.json.items as Array<{ containerName: string }>).map((v) => v.containerName).sort();
  };
  t.same(await vio(pay), ['/pay-db', '/pay-job', '/pay-web']);
  t.same(await vio(pay, '?project=search'), [], 'asking for another project yields nothing');
  t.equal((await vio(api.admin.plaintext)).length, 5);
  const vp = await api.call('GET', '/v1/violations?limit=2&offset=2', { key: pay });
  t.match(vp.json, { nextOffset: null });
  t.equal(vp.json.items.length, 1);
  // Acknowledging: in scope works; another project's (or no project's) violation is a 404, and stays unacknowledged.
  t.equal((await api.call('POST', '/v1/violations/v-payWeb/acknowledge', { key: pay, body: { comment: 'ours' } })).status, 200);
  for (const id of ['v-searchApi', 'v-loose']) {
    t.equal((await api.call('POST', `/v1/violations/${id}/acknowledge`, { key: pay, body: {} })).status, 404, `ack ${id} out of scope: 404`);
    t.equal((await api.call('POST', `/v1/violations/${id}/unacknowledge`, { key: pay })).status, 404, `unack ${id} out of scope: 404`);
  }
  t.same(await vio(api.admin.plaintext, '?acknowledged=true'), ['/pay-web'], 'only the in-scope acknowledgement was recorded');

  // Alerts: fleet alerts without a project are not shown to scoped keys.
  const alerts = async (key: string): Promise<string[]> => {
    let items: Array<{ type: string; project: string | null; containerName: string | null }> = [];
    for (let i = 0; i < 100; i++) {
      const r = await api.call('GET', '/v1/alerts', { key });
      t.equal(r.status, 200, r.text);
      items = r.json.items;
      if (key !== api.admin.plaintext || items.length >= 6) break;
      await new Promise((res) => setTimeout(res, 25));
    }
    return items.map((a) => `${a.type}:${a.containerName ?? '-'}`).sort();
  };
  t.equal((await alerts(api.admin.plaintext)).length, 6, 'unscoped: 5 violations + agent_offline');
  t.same(await alerts(pay), ['violation:/pay-db', 'violation:/pay-job', 'violation:/pay-web']);

  // Agents are fleet-level: readable by scoped keys, revocable only by unscoped admins.
  t.equal((await api.call('GET', '/v1/agents', { key: pay })).json.items.length, 2);
  const scopedAdmin = (await api.mintKey('adm-pay', 'admin', { projects: ['payments'] })).plaintext;
  t.equal((await api.call('POST', '/v1/agents/agt_two/revoke', { key: scopedAdmin })).status, 403);
});
