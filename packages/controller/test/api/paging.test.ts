// Keyset paging of GET /v1/containers, /v1/violations and /v1/agents (0019_list_paging,
// src/api/cursor.ts) through the real HTTPS API on a real store: SQLite here, PostgreSQL
// in paging.postgres.test.ts. Walking a list page by page with nextCursor returns every
// row exactly once, in the list's order, with every filter combination, even while rows
// are inserted and removed between pages; a cursor that is not the list's own is a clear
// 400; page sizes are bounded.
import t from 'tap';
import type { ViolationRecord } from '../../src/store/store';
import { agent, facts, hexId } from '../store/fixtures/records';
import { ApiClient } from '../../../cli/src/client';
import { bearer, get, startApi, type RunningApi } from './fixtures/api-server';
import { SerializerSelector } from '@fastify/fast-json-stringify-compiler';
import { ContainerPageSchema } from '../../src/api/dto';

const T0 = new Date('2026-01-01T00:00:00Z');
const IMAGES = ['nginx:1.27', 'redis:7.2', 'Registry.example.com/shop/REDIS-cache:1', 'busybox:1'];
const TEAMS = ['payments', 'search', 'data'];

interface Page<T> { items: T[]; limit: number; offset?: number; nextOffset?: number | null; nextCursor: string | null }
type C = { agentId: string; id: string; name: string; state: string; imageRef: string; removed: boolean; facts: { labels: Record<string, string> } };

async function json<T>(api: RunningApi, path: string): Promise<{ status: number; body: T }> {
  const r = await get(api, path, bearer(api.apiKey));
  return { status: r.status, body: r.json as T };
}

/** Follows nextCursor from the first page; `between` runs after each page. Bounded. */
async function walk<T>(t: tap.Test, api: RunningApi, path: string, between?: (page: number, last: T[]) => Promise<void>): Promise<T[]> {
  const out: T[] = [];
  let cursor: string | null = null;
  for (let i = 0; i < 500; i++) {
    const sep = path.includes('?') ? '&' : '?';
    const r: { status: number; body: Page<T> } = await json<Page<T>>(api, cursor === null ? path : `${path}${sep}cursor=${encodeURIComponent(cursor)}`);
    if (r.status !== 200) {
      t.fail(`${path}: HTTP ${r.status} ${JSON.stringify(r.body)}`);
      return out;
    }
    if (cursor !== null && 'nextOffset' in r.body) t.equal(r.body.nextOffset, null, 'no nextOffset when paging by cursor');
    out.push(...r.body.items);
    cursor = r.body.nextCursor;
    if (cursor === null) return out;
    await between?.(i, r.body.items);
  }
  t.fail('more than 500 pages');
  return out;
}

const key = (c: { agentId: string; id: string }) => `${c.agentId}/${c.id}`;

async function seedContainers(api: RunningApi): Promise<void> {
  for (let a = 0; a < 4; a++) {
    const agentId = `agt_p${a}`;
    await api.store.insertAgent(agent(agentId, { hostname: `host-${a % 2}` })); // two agents per hostname: ties on the sort key
    const list = Array.from({ length: 30 }, (_, n) =>
      facts({
        id: hexId(`${agentId}-${n}`),
        // Repeated names on one agent: ties broken by id.
        name: `/c-${n % 10}`,
        imageRef: IMAGES[n % IMAGES.length]!,
        state: n % 5 === 0 ? 'exited' : 'running',
        labels: { team: TEAMS[(n + a) % TEAMS.length]!, ...(n % 2 === 0 ? { tier: 'front' } : {}) },
      }),
    );
    await api.store.replaceContainers(agentId, list, T0);
  }
  await api.store.removeContainer('agt_p1', hexId('agt_p1-3'), T0);
}

t.test('keyset paging', async (t) => {
  const api = await startApi();
  t.teardown(() => api.close());
  await seedContainers(api);

  t.test('containers: every filter combination, any page size, each row once in list order', async (t) => {
    const filters = [
      '',
      'state=running',
      'state=running&label=team=payments&image=redis',
      'label=tier',
      'label=tier&label=team=search',
      'agent=agt_p2&state=exited',
      'image=REDIS',
      'include_removed=true',
      'include_removed=true&state=running&label=team=data',
      'label=team=nobody',
    ];
    for (const f of filters) {
      const all = (await json<Page<C>>(api, `/v1/containers?limit=1000&${f}`)).body.items;
      for (const limit of [1, 7, 1000]) {
        const walked = await walk<C>(t, api, `/v1/containers?limit=${limit}&${f}`);
        t.same(walked.map(key), all.map(key), `${f || 'no filter'}, limit ${limit}: the same rows in the same order`);
      }
      // The filters themselves, checked against the rows' own fields.
      const q = new URLSearchParams(f);
      for (const c of all) {
        if (q.get('state')) t.equal(c.state, q.get('state'));
        if (q.get('image')) t.match(c.imageRef.toLowerCase(), q.get('image')!.toLowerCase());
        if (q.get('agent')) t.equal(c.agentId, q.get('agent'));
        for (const l of q.getAll('label')) {
          const [k, v] = l.split('=');
          t.ok(k! in c.facts.labels && (v === undefined || c.facts.labels[k!] === v), `${key(c)} has ${l}`);
        }
        if (q.get('include_removed') !== 'true') t.equal(c.removed, false);
      }
    }
    const all = (await json<Page<C>>(api, '/v1/containers?limit=1000')).body.items;
    t.equal(all.length, 119, '4 × 30 live containers, one removed');
    const combined = (await json<Page<C>>(api, '/v1/containers?limit=1000&state=running&label=team=payments&image=redis')).body.items;
    const expected = all.filter((c) => c.state === 'running' && c.facts.labels['team'] === 'payments' && c.imageRef.toLowerCase().includes('redis'));
    t.ok(expected.length > 3, 'the combined filter matches several rows');
    t.same(combined.map(key), expected.map(key), 'filters combine with AND');
  });

  t.test('containers: rows inserted and removed between pages', async (t) => {
    const before = (await json<Page<C>>(api, '/v1/containers?limit=1000&label=tier')).body.items.map(key);
    const removedDuring = new Set<string>();
    const insertedDuring = new Set<string>();
    await api.store.insertAgent(agent('agt_p9'));
    let n = 0;
    const walked = await walk<C>(t, api, '/v1/containers?limit=6&label=tier', async (page, last) => {
      // Remove one row not seen yet and one already seen; insert one row before the
      // position (agt_p0, name /a…) and one after it (agt_p9).
      const unseen = before.filter((k) => !last.some((c) => key(c) === k)).at(-1 - page);
      if (unseen !== undefined) {
        const [agentId, id] = unseen.split('/');
        await api.store.removeContainer(agentId!, id!, T0);
        removedDuring.add(unseen);
      }
      await api.store.removeContainer(last[0]!.agentId, last[0]!.id, T0);
      for (const agentId of ['agt_p0', 'agt_p9']) {
        const id = hexId(`new-${n++}`);
        await api.store.upsertContainer(agentId, facts({ id, name: '/a-new', labels: { tier: 'front' } }), T0);
        insertedDuring.add(`${agentId}/${id}`);
      }
    });
    const keys = walked.map(key);
    t.equal(new Set(keys).size, keys.length, 'no row twice');
    const missing = before.filter((k) => !removedDuring.has(k) && !keys.includes(k));
    t.same(missing, [], 'every row that stayed throughout is on some page');
    t.ok(keys.every((k) => before.includes(k) || insertedDuring.has(k)), 'nothing else');
    t.ok(keys.some((k) => k.startsWith('agt_p9/')), 'rows inserted after the position are reached');
    t.notOk(keys.some((k) => k.startsWith('agt_p0/') && insertedDuring.has(k) && walked.findIndex((c) => key(c) === k) > 6), 'rows inserted before the position do not shift later pages');
  });

  t.test('violations: newest first, ties on time, filters, inserts between pages', async (t) => {
    const v = (i: number, over: Partial<ViolationRecord> = {}): ViolationRecord => ({
      id: `v_${String(i).padStart(4, '0')}`, agentId: `agt_p${i % 3}`, containerId: hexId(`c${i}`), containerName: '/c', imageRef: 'nginx:1', project: '',
      ruleId: 'r', severity: i % 2 === 0 ? 'high' : 'low', mode: 'enforce', source: 'reconcile', message: 'm', evidenceJson: '[]', denied: false,
      action: { type: '', result: '', error: '', durationMs: 0 },
      at: new Date(T0.getTime() + Math.floor(i / 4) * 1000), // four per second: ties on `at`, broken by id
      policyVersion: 1, exemptedBy: '', ...over,
    });
    for (let i = 0; i < 60; i++) await api.store.insertViolation(v(i));
    type V = { id: string; at: string; severity: string; agentId: string };
    for (const f of ['', 'severity=high', 'severity=low&agent=agt_p1']) {
      const all = (await json<Page<V>>(api, `/v1/violations?limit=1000&${f}`)).body.items;
      for (const limit of [1, 7]) t.same((await walk<V>(t, api, `/v1/violations?limit=${limit}&${f}`)).map((x) => x.id), all.map((x) => x.id), `${f || 'no filter'}, limit ${limit}`);
    }
    const all = (await json<Page<V>>(api, '/v1/violations?limit=1000')).body.items;
    t.same(all.map((x) => x.id), [...all].sort((a, b) => (a.at === b.at ? (a.id < b.id ? 1 : -1) : a.at < b.at ? 1 : -1)).map((x) => x.id), 'newest first, then id descending');
    let k = 1000;
    const walked = await walk<V>(t, api, '/v1/violations?limit=5', async () => {
      await api.store.insertViolation(v(k++, { at: new Date(T0.getTime() + 3_600_000) })); // newer than everything: before the position
    });
    t.same(walked.map((x) => x.id), all.map((x) => x.id), 'new violations do not shift the pages being walked');
  });

  t.test('agents: paged by hostname then id, and inserts between pages', async (t) => {
    for (let i = 0; i < 20; i++) await api.store.insertAgent(agent(`agt_q${String(i).padStart(2, '0')}`, { hostname: `zz-${i % 6}` }));
    type A = { id: string; hostname: string };
    const first = await json<Page<A>>(api, '/v1/agents');
    t.equal(first.status, 200);
    t.equal(first.body.limit, 100, 'default page size');
    t.equal(first.body.nextCursor, null, 'one page holds them all');
    const all = first.body.items;
    t.equal(all.length, 25);
    for (const limit of [1, 3, 24, 25]) t.same((await walk<A>(t, api, `/v1/agents?limit=${limit}`)).map((a) => a.id), all.map((a) => a.id), `limit ${limit}`);
    let n = 0;
    const walked = await walk<A>(t, api, '/v1/agents?limit=4', async () => {
      await api.store.insertAgent(agent(`agt_new${n}`, { hostname: 'aaa' })); // sorts first: before the position
      await api.store.insertAgent(agent(`agt_zzz${n++}`, { hostname: 'zzzz' })); // sorts last: reached
    });
    const ids = walked.map((a) => a.id);
    t.equal(new Set(ids).size, ids.length, 'no agent twice');
    t.same(all.map((a) => a.id).filter((id) => !ids.includes(id)), [], 'every agent there from the start is listed');
    t.ok(ids.includes('agt_zzz0'), 'agents added after the position are reached');
  });

  t.test('the CLI client follows every page', async (t) => {
    const client = new ApiClient({ baseUrl: api.url, apiKey: api.apiKey, caPem: api.ca.certPem });
    const agents = (await json<Page<{ id: string }>>(api, '/v1/agents?limit=1000')).body.items;
    t.ok(agents.length > 3);
    t.same((await client.listAllAgents(3)).items.map((a) => a.id), agents.map((a) => a.id), 'bulkhead agents: every agent, pages of 3');
    const containers = (await json<Page<C>>(api, '/v1/containers?limit=1000&state=running')).body.items;
    t.same((await client.listAllContainers({ state: 'running' }, Infinity, 7)).map(key), containers.map(key), 'every container, pages of 7');
    t.same((await client.listAllContainers({ state: 'running' }, 10, 7)).map(key), containers.slice(0, 10).map(key), 'at most max');
  });

  // The route writes each container's facts as the stored JSON text (src/store/stored-facts.ts)
  // instead of serializing the parsed object: the body must stay what the route's schema
  // serializer writes for the same page, with awkward text in keys and values.
  t.test('containers: the body is byte for byte what the schema serializer writes, facts as stored', async (t) => {
    const agentId = 'agt_zfacts';
    await api.store.insertAgent(agent(agentId));
    const awkward = ['é ü 中 😀', 'quote " back \\ slash /', 'line\u2028sep\u2029', 'ctl \u0001 \t \n', '"facts":{}', '{"facts":{}}', 'nul \u0000', 'lone \ud800 half', ''];
    const list = awkward.map((v, n) =>
      facts({ id: hexId(`${agentId}-${n}`), name: `/f-${n}`, labels: { team: v, '10': 'ten', '2': 'two', [`k ${v}`]: v }, envNames: [v, '"facts":{}'], command: [v] }));
    await api.store.replaceContainers(agentId, list, T0);
    const serialize = SerializerSelector()()({ schema: ContainerPageSchema, method: 'GET', url: '/v1/containers', httpStatus: '200' }) as (doc: unknown) => string;
    const stored = new Map(list.map((f) => [f.name, JSON.parse(JSON.stringify(f)) as unknown]));
    let seen = 0;
    for (const path of [`/v1/containers?agent=${agentId}`, `/v1/containers?agent=${agentId}&limit=4`, `/v1/containers?agent=${agentId}&limit=4&sort=-name`, `/v1/containers?agent=${agentId}&limit=2&offset=3`, '/v1/containers?limit=1000']) {
      const r = await get(api, path, bearer(api.apiKey));
      t.equal(r.status, 200, `${path}: 200`);
      t.equal(r.headers['content-type'], 'application/json; charset=utf-8', 'JSON, as before');
      t.equal(r.text, serialize(r.json), `${path}: the schema serializer's bytes for the same page`);
      for (const item of (r.json as Page<C>).items) {
        if (item.agentId !== agentId) continue;
        t.same(item.facts, stored.get(item.name), `${item.name}: the facts stored`);
        seen++;
      }
    }
    t.equal(seen, 9 + 4 + 4 + 2 + 9, 'every page had its facts');
    await api.store.replaceContainers(agentId, [], T0);
  });

  t.test('offset paging still works, and says where the cursor would go', async (t) => {
    const p1 = (await json<Page<C>>(api, '/v1/containers?limit=10&state=running')).body;
    t.match(p1, { limit: 10, offset: 0, nextOffset: 10, nextCursor: String });
    const p2 = (await json<Page<C>>(api, '/v1/containers?limit=10&state=running&offset=10')).body;
    const c2 = (await json<Page<C>>(api, `/v1/containers?limit=10&state=running&cursor=${encodeURIComponent(p1.nextCursor!)}`)).body;
    t.same(c2.items.map(key), p2.items.map(key), 'offset and cursor reach the same second page');
    const last = (await json<Page<C>>(api, '/v1/containers?limit=1000&state=running')).body;
    t.match(last, { nextOffset: null, nextCursor: null }, 'the last page says so both ways');
  });

  t.test('bad cursors and page sizes are a clear 400', async (t) => {
    const vc = (await json<Page<unknown>>(api, '/v1/violations?limit=1')).body.nextCursor!;
    const ac = (await json<Page<unknown>>(api, '/v1/agents?limit=1')).body.nextCursor!;
    const cc = (await json<Page<unknown>>(api, '/v1/containers?limit=1')).body.nextCursor!;
    const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
    const cases: Array<[string, RegExp]> = [
      ['/v1/containers?cursor=not*base64', /querystring\/cursor is not a cursor of GET \/v1\/containers \(not base64url\)/],
      ['/v1/containers?cursor=Zm9v', /querystring\/cursor .*unreadable/],
      [`/v1/containers?cursor=${b64(['containers', 1, 'agt', 'n'])}`, /wrong shape/],
      [`/v1/containers?cursor=${b64(['containers', 1, 'agt', 'n', 7])}`, /wrong shape/],
      [`/v1/containers?cursor=${b64(['containers', 99, 'a', 'b', 'c'])}`, /unknown version/],
      [`/v1/containers?cursor=${vc}`, /belongs to GET \/v1\/violations/],
      [`/v1/violations?cursor=${cc}`, /belongs to GET \/v1\/containers/],
      [`/v1/violations?cursor=${b64(['violations', 1, 'yesterday', 'v_1'])}`, /wrong shape/],
      [`/v1/agents?cursor=${vc}`, /belongs to GET \/v1\/violations/],
      [`/v1/containers?cursor=${'A'.repeat(2049)}`, /querystring\/cursor must NOT have more than 2048 characters/],
      [`/v1/containers?cursor=${cc}&offset=5`, /cursor and querystring\/offset cannot be combined/],
      [`/v1/violations?cursor=${vc}&offset=5`, /cannot be combined/],
      [`/v1/containers?cursor=${cc}&cursor=${cc}`, /querystring\/cursor/],
      ['/v1/agents?limit=0', /querystring\/limit/],
      ['/v1/agents?limit=1001', /querystring\/limit/],
      ['/v1/agents?limit=1e2', /querystring\/limit/],
      ['/v1/agents?offset=3', /additional properties/],
      ['/v1/containers?limit=1001', /querystring\/limit/],
      ['/v1/violations?limit=1001', /querystring\/limit/],
    ];
    for (const [path, detail] of cases) {
      const r = await json<Record<string, unknown>>(api, path);
      t.equal(r.status, 400, `${path.slice(0, 80)}: 400`);
      t.equal(r.body['code'], 'BK_ERR_BAD_REQUEST', 'BK_ERR_BAD_REQUEST');
      t.match(String(r.body['detail']), detail, `says why: ${String(r.body['detail']).slice(0, 120)}`);
    }
    t.equal((await json(api, `/v1/agents?cursor=${ac}`)).status, 200, "the list's own cursor is fine");
  });
});
