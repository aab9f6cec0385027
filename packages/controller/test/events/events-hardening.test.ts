// GET /v1/events against the findings of the console security review, over the real HTTPS
// API (SQLite here; events-hardening.postgres.test.ts runs it on PostgreSQL): a workload
// labelled project `*` (or an alert with project `*`) never reaches another project's
// stream, live or resumed, exactly as GET /v1/containers never lists it; one key cannot
// take every stream slot (429 + Retry-After) and a burst never overshoots the controller's
// bound; HEAD does not hold a slot; refusals for load are not logged as errors; logout and
// key revocation end the streams at once; a Last-Event-ID beyond the newest event gets
// stream.gap and then the live events.
import t from 'tap';
import { request } from 'node:https';
import { startSecureApi, type SecureApi } from '../auth/fixtures/secure-api';
import { openStream, type SseStream } from './fixtures-sse';
import type { SseEvent } from '@bulkhead/client';
import { containerProject } from '../../src/auth/project-scope';

t.setTimeout(180_000);

function stream(api: SecureApi, headers: Record<string, string> = {}, key: string | null = api.admin.plaintext, path = '/v1/events'): Promise<SseStream> {
  return openStream(`${api.url}${path}`, api.ca.certPem, { ...(key !== null ? { authorization: `Bearer ${key}` } : {}), ...headers });
}

const data = (e: SseEvent): Record<string, unknown> => JSON.parse(e.data) as Record<string, unknown>;
const isFleet = (e: SseEvent): boolean => e.id !== undefined;

async function login(api: SecureApi, key: string): Promise<{ cookie: string; csrf: string }> {
  const res = await api.call('POST', '/v1/session', { key: null, body: { key } });
  const set = String([res.headers['set-cookie']].flat()[0] ?? '');
  const id = /^__Host-bulkhead_session=([^;]*)/.exec(set)?.[1] ?? '';
  return { cookie: `__Host-bulkhead_session=${id}`, csrf: res.json?.csrfToken as string };
}

/** One request; resolves with what arrived within `waitMs` (timedOut: the answer had not ended). */
function raw(api: SecureApi, method: string, path: string, headers: Record<string, string>, waitMs = 3000): Promise<{ status: number; text: string; timedOut: boolean }> {
  return new Promise((resolve, reject) => {
    const req = request(`${api.url}${path}`, { method, ca: api.ca.certPem, headers, agent: false }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      const timer = setTimeout(() => {
        req.destroy();
        resolve({ status: res.statusCode ?? 0, text, timedOut: true });
      }, waitMs);
      res.on('end', () => {
        clearTimeout(timer);
        resolve({ status: res.statusCode ?? 0, text, timedOut: false });
      });
    });
    req.on('error', reject);
    req.end();
  });
}

t.test("a workload labelled project '*' reaches no other project's stream, live or resumed", async (t) => {
  const api = await startSecureApi({ events: { pollMs: 50 } });
  t.teardown(() => api.close());
  const scoped = await api.mintKey('a-only', 'viewer', { projects: ['team-a'] });
  const s = await login(api, scoped.plaintext);
  const live = await stream(api, { cookie: s.cookie }, null);
  t.equal(live.status, 200, live.text);
  const byKey = await stream(api, {}, scoped.plaintext);
  t.equal(byKey.status, 200, byKey.text);
  const admin = await stream(api);

  // What the agent link records for a team-b container labelled bulkhead.project=*.
  const facts = { project: '', labels: { 'bulkhead.project': '*' } };
  t.equal(containerProject(facts), '*', "the label's value is the container's project, an ordinary name");
  api.events.record({ type: 'container.updated', at: new Date(), agentId: 'ag1', project: containerProject(facts), data: { name: 'team-b-secret-db' } });
  // An alert about it carries its project: '*' too (through the real alert service).
  await api.alerting.alerts.raise({ type: 'violation', severity: 'high', message: 'team-b-secret-db runs privileged', project: '*', containerName: 'team-b-secret-db', agentId: 'ag1' });
  api.events.record({ type: 'container.updated', at: new Date(), agentId: 'ag1', project: 'team-b', data: { name: 'control-b' } });
  // Seen by every scope: the agent going offline (its own column, not a project value).
  api.events.record({ type: 'agent.offline', at: new Date(), agentId: 'ag1', everyScope: true, data: { hostname: 'h1' } });
  api.events.record({ type: 'container.updated', at: new Date(), agentId: 'ag1', project: 'team-a', data: { name: 'marker-a' } });
  await api.events.flush();

  // The unscoped admin gets all five (so they were recorded and streamed).
  const all = await admin.waitFor(5, isFleet);
  t.same(all.map((e) => e.event), ['container.updated', 'alert.violation', 'container.updated', 'agent.offline', 'container.updated']);
  t.equal(data(all[0]!).project, '*', "the admin sees the container's project as labelled");
  t.equal(data(all[3]!).project, '', 'an every-scope event carries no project');

  for (const [name, st] of [['session', live], ['key', byKey]] as const) {
    const got = await st.waitFor(2, isFleet);
    await new Promise((r) => setTimeout(r, 300));
    t.same(st.events.filter(isFleet).map((e) => [e.event, data(e).name ?? data(e).hostname]), [['agent.offline', 'h1'], ['container.updated', 'marker-a']], `${name}: only the every-scope event and its own project's`);
    t.equal(got.length, 2);
  }

  // Resumed from the start: the SQL filter agrees.
  const resumed = await stream(api, { 'last-event-id': '0' }, scoped.plaintext);
  const back = await resumed.waitFor(2, isFleet);
  await new Promise((r) => setTimeout(r, 300));
  t.same(resumed.events.filter(isFleet).map((e) => e.event), ['agent.offline', 'container.updated'], 'resumed: the same two');
  t.same(back.map((e) => data(e).name ?? data(e).hostname), ['h1', 'marker-a']);

  // The REST API agrees: GET /v1/alerts for team-a does not list the '*' alert; the admin's does.
  const alertsA = await api.call('GET', '/v1/alerts', { key: scoped.plaintext });
  t.equal(alertsA.status, 200, alertsA.text);
  t.notMatch(alertsA.text, /team-b-secret-db/, "team-a's alert list leaves the '*' alert out");
  const alertsAll = await api.call('GET', '/v1/alerts');
  t.match(alertsAll.text, /team-b-secret-db/, "the admin's list has it");
  for (const st of [live, byKey, admin, resumed]) st.close();
});

t.test('one key cannot take every stream slot; a burst never overshoots; HEAD holds none', async (t) => {
  const api = await startSecureApi({ events: { pollMs: 50, heartbeatMs: 60_000, maxClients: 6, maxClientsPerKey: 2 } });
  t.teardown(() => api.close());
  const viewer = await api.mintKey('v', 'viewer', { projects: ['p1'] });
  const a = await stream(api, {}, viewer.plaintext);
  // A session of the same key counts against the key.
  const s = await login(api, viewer.plaintext);
  const b = await stream(api, { cookie: s.cookie }, null);
  t.same([a.status, b.status], [200, 200]);
  const third = await stream(api, {}, viewer.plaintext);
  t.equal(third.status, 429, 'the key is at its bound');
  t.match(third.text, /BK_ERR_RATE_LIMITED/);
  t.ok(Number(third.headers['retry-after']) >= 1, 'with Retry-After');

  // HEAD: answered at once, and holds no slot.
  for (let i = 0; i < 3; i++) {
    const h = await raw(api, 'HEAD', '/v1/events', { authorization: `Bearer ${api.admin.plaintext}` });
    t.equal(h.timedOut, false, 'HEAD /v1/events is answered, not held open');
    t.not(h.status, 200);
  }
  // Another key still gets in: 4 slots left of 6.
  const other = await stream(api);
  t.equal(other.status, 200, 'other keys are not locked out');
  other.close();
  a.close();
  b.close();
  await new Promise((r) => setTimeout(r, 300));

  // 20 at once from 20 keys against maxClients 6: never more than 6 served.
  const keys = await Promise.all(Array.from({ length: 20 }, (_, i) => api.mintKey(`k${i}`, 'viewer')));
  const burst = await Promise.all(keys.map((k) => stream(api, {}, k.plaintext)));
  const ok = burst.filter((x) => x.status === 200).length;
  t.ok(ok <= 6 && ok >= 1, `at most maxClients served at once (got ${ok})`);
  t.equal(burst.filter((x) => x.status === 503).length, 20 - ok, 'the rest 503');
  t.ok(burst.filter((x) => x.status === 503).every((x) => Number(x.headers['retry-after']) >= 1), '503 with Retry-After');
  for (const x of burst) x.close();
  await new Promise((r) => setTimeout(r, 300));
  // Released again: a new stream gets in.
  const after = await stream(api);
  t.equal(after.status, 200, 'slots are given back when streams close');
  after.close();
  // Refusals for load are not failures: no error-level line with a stack.
  const errors = api.logs().split('\n').filter((l) => /"level":50/.test(l));
  t.same(errors, [], 'nothing logged at error level');
  t.match(api.logs(), /request refused/);
});

t.test('logout and key revocation end the open streams at once', async (t) => {
  // Heartbeat check far away: only the immediate ending can close them within the test.
  const api = await startSecureApi({ events: { pollMs: 50, heartbeatMs: 120_000 } });
  t.teardown(() => api.close());
  const viewer = await api.mintKey('v', 'viewer');
  const s = await login(api, viewer.plaintext);
  const other = await login(api, viewer.plaintext);
  const bySession = await stream(api, { cookie: s.cookie }, null);
  const byOther = await stream(api, { cookie: other.cookie }, null);
  t.same([bySession.status, byOther.status], [200, 200]);
  const out = await api.call('DELETE', '/v1/session', { key: null, headers: { cookie: s.cookie, 'x-bulkhead-csrf': s.csrf } });
  t.equal(out.status, 200, out.text);
  const how = await Promise.race([bySession.closed, new Promise((r) => setTimeout(() => r('still open'), 5000))]);
  t.equal(how, 'end', "the logged-out session's stream ended");
  t.same(bySession.events.filter((e) => e.event === 'stream.end').map((e) => data(e).reason), ['credential']);
  await new Promise((r) => setTimeout(r, 200));
  api.events.record({ type: 'container.updated', at: new Date(), project: '', data: { name: 'still-here' } });
  await api.events.flush();
  await byOther.waitFor(1, isFleet);
  t.pass("the key's other session keeps its stream");

  const byKey = await stream(api, {}, viewer.plaintext);
  const bystander = await stream(api);
  const rev = await api.call('DELETE', `/v1/keys/${viewer.record.id}`);
  t.equal(rev.status, 200, rev.text);
  for (const [name, st] of [['key', byKey], ['session', byOther]] as const) {
    const h = await Promise.race([st.closed, new Promise((r) => setTimeout(() => r('still open'), 5000))]);
    t.equal(h, 'end', `the revoked key's ${name} stream ended`);
  }
  api.events.record({ type: 'container.updated', at: new Date(), project: '', data: { name: 'after-revoke' } });
  await api.events.flush();
  const [late] = await bystander.waitFor(1, isFleet);
  t.equal(data(late!).name, 'after-revoke', "other keys' streams carry on");
  bystander.close();
});

t.test('Last-Event-ID beyond the newest event: stream.gap, then the live events', async (t) => {
  const api = await startSecureApi({ events: { pollMs: 50 } });
  t.teardown(() => api.close());
  api.events.record({ type: 'container.updated', at: new Date(), project: '', data: { name: 'one' } });
  await api.events.flush();
  const top = await api.store.events!.lastEventSeq();
  const st = await stream(api, { 'last-event-id': '999999' });
  t.equal(st.status, 200);
  const [g] = await st.waitFor(1, (e) => e.event === 'stream.gap', 5000);
  t.same(data(g!), { after: 999999, firstAvailable: top + 1, reason: 'unknown_id' });
  api.events.record({ type: 'container.updated', at: new Date(), project: '', data: { name: 'two' } });
  await api.events.flush();
  const [e] = await st.waitFor(1, isFleet, 5000);
  t.equal(data(e!).name, 'two', 'the next event arrives (not held back until the fleet reaches 999999)');
  t.equal(Number(e!.id), top + 1);
  st.close();
});
