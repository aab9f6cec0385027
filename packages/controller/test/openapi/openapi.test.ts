// The OpenAPI document, fetched from a running server without credentials:
// valid OpenAPI 3.1 by a real validator, listing every route the server
// registered with its method, tags, security and problem+json errors — and
// the server actually answering errors as problem+json with registry codes.
import t from 'tap';
import { ERRORS } from '@bulkhead/shared';
import { bearer, get } from '../api/fixtures/api-server';
import { send } from '../policy/fixtures/policy-api';
import { container } from '../policy/fixtures/fleet';
import { connectFakeAgent, startLinkStack } from '../actions/fixtures/link-stack';
import { OPENAPI_PATH, isConsoleRoute, tagOf } from '../../src/openapi/openapi';

interface Operation {
  tags?: string[];
  security?: unknown[];
  description?: string;
  requestBody?: { required?: boolean; content: Record<string, { schema: Record<string, unknown> }> };
  responses: Record<string, { content?: Record<string, { schema: Record<string, unknown> }> }>;
}
interface Doc {
  openapi: string;
  info: { title: string; version: string };
  paths: Record<string, Record<string, Operation>>;
  components: { securitySchemes: Record<string, unknown>; schemas: Record<string, { required?: string[] }> };
  security: unknown[];
  tags: Array<{ name: string }>;
}

/** Routes from fastify's printRoutes() tree (same format docs.test.ts parses). */
function registeredRoutes(tree: string): Array<{ method: string; url: string }> {
  const routes: Array<{ method: string; url: string }> = [];
  const stack: string[] = [];
  for (const line of tree.split('\n')) {
    const m = /^([│ ]*)[├└]── (.*?)(?: \(([A-Z, ]+)\))?$/.exec(line);
    if (!m) continue;
    stack.length = m[1]!.length / 4;
    stack.push(m[2]!);
    if (m[3]) for (const method of m[3].split(/,\s*/)) routes.push({ method, url: stack.join('') });
  }
  return routes;
}

/** "/v1/containers/:agent/:id" → "/v1/containers/{agent}/{id}"; a colon inside a segment ("policies:dry-run") is literal. */
function openApiPath(url: string): string {
  return url.replace(/\/:([A-Za-z_]\w*)/g, '/{$1}');
}

const PUBLIC = new Set(['/healthz', '/readyz', OPENAPI_PATH]);

t.test('GET /v1/openapi.json', async (t) => {
  const s = await startLinkStack(t);
  const res = await get(s.api, OPENAPI_PATH);
  t.equal(res.status, 200, 'served without credentials');
  t.match(String(res.headers['content-type']), /^application\/json/);
  const doc = res.json as Doc;

  t.test('is valid OpenAPI 3.1', async (t) => {
    t.equal(doc.openapi, '3.1.0');
    // An ES module: a dynamic import from this CommonJS test.
    const { Validator } = await import('@seriousme/openapi-schema-validator');
    const result = await new Validator().validate(doc as never);
    t.same(result.errors, undefined, 'no validation errors');
    t.equal(result.valid, true);
    t.match(doc.info, { title: /Bulkhead/, version: /^\d+\.\d+\.\d+/ });
  });

  t.test('lists every registered route', async (t) => {
    const all = registeredRoutes(s.api.app.printRoutes()).filter((r) => r.method !== 'HEAD');
    // The web console's pages are not API operations: served, but not in the document.
    const consoleRoutes = all.filter((r) => isConsoleRoute(r.url));
    t.same(consoleRoutes.map((r) => r.url).sort(), ['/', '/console', '/console/', '/console/assets/:file'], 'the console routes are registered');
    for (const r of consoleRoutes) t.notOk(doc.paths[openApiPath(r.url)], `${r.url} is not in the document`);
    const routes = all.filter((r) => !isConsoleRoute(r.url));
    t.ok(routes.length >= 20, `${routes.length} routes registered`);
    for (const r of routes) {
      const path = openApiPath(r.url);
      const op = doc.paths[path]?.[r.method.toLowerCase()];
      if (!op) {
        t.fail(`${r.method} ${r.url} is missing from the document (as ${path})`);
        continue;
      }
      t.same(op.tags, [tagOf(r.url)], `${r.method} ${r.url}: tagged`);
      t.not(op.tags![0], 'other', `${r.method} ${r.url}: has a real tag`);
      if (PUBLIC.has(r.url)) t.same(op.security, [], `${r.method} ${r.url}: no credentials needed`);
      else if (r.method === 'POST' && r.url === '/v1/session') t.same(op.security, [{ bearer: [] }, {}], 'login: the key in the Authorization header, or in the body');
      else t.equal(op.security, undefined, `${r.method} ${r.url}: the document-wide bearer requirement applies`);
      for (const range of ['4XX', '5XX']) {
        t.same(op.responses[range]?.content?.['application/problem+json']?.schema, { $ref: '#/components/schemas/Problem' }, `${r.method} ${r.url}: ${range} is a problem`);
      }
      t.ok(Object.keys(op.responses).some((k) => k.startsWith('2')), `${r.method} ${r.url}: documents its success`);
    }
    const documented = Object.entries(doc.paths).flatMap(([p, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${p}`));
    t.equal(documented.length, routes.length, 'and nothing else');
  });

  t.test('security scheme, Problem, tags', async (t) => {
    t.match(doc.components.securitySchemes['bearer'], { type: 'http', scheme: 'bearer' });
    t.match(doc.components.securitySchemes['session'], { type: 'apiKey', in: 'cookie', name: '__Host-bulkhead_session' });
    t.same(doc.security, [{ bearer: [] }, { session: [] }]);
    t.same(doc.components.schemas['Problem']?.required, ['type', 'title', 'status', 'detail', 'code']);
    const used = new Set(Object.values(doc.paths).flatMap((ops) => Object.values(ops).flatMap((o) => o.tags ?? [])));
    for (const tag of used) t.ok(doc.tags.some((x) => x.name === tag), `tag ${tag} is declared`);
  });

  t.test('generated from the schemas that validate requests', async (t) => {
    const op = doc.paths['/v1/containers/{agent}/{id}/actions']?.['post'];
    t.ok(op, 'the actions route');
    const body = op!.requestBody!.content['application/json']!.schema as { properties: Record<string, Record<string, unknown>>; required: string[]; additionalProperties: boolean };
    t.same(body.required, ['action']);
    t.equal(body.additionalProperties, false);
    const actions = (body.properties['action']!['anyOf'] as Array<{ enum: string[] }>).flatMap((a) => a.enum);
    t.same(actions, ['pause', 'unpause', 'kill', 'stop', 'quarantine', 'release']);
    t.match(body.properties['stopTimeoutSeconds'], { type: 'integer', minimum: 0, maximum: 20 });
    t.match(op!.description, /operator role/);
    const list = doc.paths['/v1/containers']?.['get'] as unknown as { parameters: Array<{ name: string; in: string; required?: boolean; schema: { default?: unknown } }> };
    t.ok(list.parameters.some((p) => p.name === 'include_removed' && p.in === 'query'), 'query parameters');
    const limit = list.parameters.find((p) => p.name === 'limit');
    t.match(limit, { in: 'query', required: false, schema: { default: 100 } }, 'a query parameter with a default is not required (typed clients may leave it out)');
    t.ok(doc.paths['/v1/policies']?.['put']?.requestBody?.content['application/yaml'], 'the policy document body');
    t.equal(op!.requestBody!.required, true, 'a body the route needs is required');
    const ack = doc.paths['/v1/violations/{id}/acknowledge']?.['post'];
    t.equal(ack?.requestBody?.required, false, 'an optional body (config.bodyOptional) is not required');
  });
});

t.test('every error the server answers is problem+json with a registry code', async (t) => {
  const s = await startLinkStack(t);
  // A container on an agent that then goes away: the action route answers "offline".
  const agent = await connectFakeAgent(t, s, 'host-x', [container('web')]);
  agent.close();
  await new Promise((r) => setTimeout(r, 300));
  const key = bearer(s.keys.operator);
  const json = { ...key, 'content-type': 'application/json' };
  const actions = `/v1/containers/${agent.agentId}/web/actions`;
  const samples: Array<[string, string, string, { body?: string; headers?: Record<string, string> }, number]> = [
    ['no credentials', 'GET', '/v1/agents', {}, 401],
    ['malformed key', 'GET', '/v1/containers', { headers: { authorization: 'Bearer nope' } }, 401],
    ['no such route', 'GET', '/v1/nope', { headers: key }, 404],
    ['no such method', 'DELETE', '/v1/agents', { headers: key }, 404],
    ['bad query', 'GET', '/v1/containers?limit=0', { headers: key }, 400],
    ['unknown query parameter', 'GET', '/v1/containers?colour=red', { headers: key }, 400],
    ['unknown agent', 'GET', '/v1/agents/agt_missing', { headers: key }, 404],
    ['role too low', 'POST', actions, { body: '{"action":"pause"}', headers: { ...bearer(s.keys.viewer), 'content-type': 'application/json' } }, 403],
    ['invalid body', 'POST', actions, { body: '{"action":"explode"}', headers: json }, 400],
    ['not JSON', 'POST', actions, { body: '{"action":', headers: json }, 400],
    ['wrong media type', 'POST', actions, { body: '<pause/>', headers: { ...key, 'content-type': 'application/xml' } }, 415],
    ['text instead of JSON', 'POST', actions, { body: 'pause', headers: { ...key, 'content-type': 'text/plain' } }, 400],
    ['body too large', 'POST', actions, { body: JSON.stringify({ action: 'pause', pad: 'x'.repeat(70_000) }), headers: json }, 413],
    ['agent offline', 'POST', actions, { body: '{"action":"pause"}', headers: json }, 409],
    ['no policy service', 'GET', '/v1/policies', { headers: key }, 503],
  ];
  for (const [what, method, path, o, status] of samples) {
    const res = await send(s.api, method, path, o);
    t.equal(res.status, status, `${what}: ${status} (${res.text.slice(0, 200)})`);
    t.match(String(res.headers['content-type']), /^application\/problem\+json/, `${what}: problem+json`);
    const p = res.json as { code: string; status: number; type: string; title: string; detail: string };
    t.ok(p && p.code in ERRORS, `${what}: ${p?.code} is in the registry`);
    t.equal(p.status, status, `${what}: status repeated in the body`);
    t.equal(p.type, `urn:bulkhead:error:${p.code}`, `${what}: type`);
    t.equal(p.title, ERRORS[p.code as keyof typeof ERRORS].message, `${what}: title is the code's message`);
    t.type(p.detail, 'string');
  }
});
