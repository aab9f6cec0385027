// GET /v1/events over the real HTTPS API (SQLite here; events.postgres.test.ts runs every
// assertion on PostgreSQL, plus two controller replicas on one database): events arrive
// live (alerts raised through the real alert service, and recorded events); a client
// resuming with Last-Event-ID gets exactly what it missed, in order, then the live ones; a
// project-scoped key or session never receives another project's (or a projectless)
// event, live or on resume; heartbeats flow; a client that stops reading is cut off while
// the others carry on; a revoked key's or logged-out session's stream ends.
import t from 'tap';
import { openStore } from '../../src/store/open-store';
import { startSecureApi, type SecureApi } from '../auth/fixtures/secure-api';
import { FleetEvents } from '../../src/events/fleet-events';
import { newDatabase, openTestStore, testBackend } from '../store/fixtures/backend';
import { openStream, type SseStream } from './fixtures-sse';
import type { SseEvent } from '@bulkhead/client';
import type { FleetEventInput } from '../../src/events/event-store';
import { PgReplicaBus } from '../../src/replicas/pg-replica-bus';
import { createLogger } from '@bulkhead/shared';

const FAST_HUB = { pollMs: 50, heartbeatMs: 300 };
t.setTimeout(240_000);

function stream(api: SecureApi, headers: Record<string, string> = {}, key: string | null = api.admin.plaintext, path = '/v1/events'): Promise<SseStream> {
  return openStream(`${api.url}${path}`, api.ca.certPem, { ...(key !== null ? { authorization: `Bearer ${key}` } : {}), ...headers });
}

const data = (e: SseEvent): Record<string, unknown> => JSON.parse(e.data) as Record<string, unknown>;
const isFleet = (e: SseEvent): boolean => e.id !== undefined;

async function record(api: SecureApi, evs: Array<Omit<FleetEventInput, 'at'>>): Promise<void> {
  for (const e of evs) api.events.record(e);
  await api.events.flush();
}

t.test('live events, resume with Last-Event-ID without loss or duplicates, heartbeats', async (t) => {
  const api = await startSecureApi({ events: FAST_HUB });
  t.teardown(() => api.close());
  await record(api, [{ type: 'container.updated', project: 'payments', data: { name: '/before' } }]);

  const s = await stream(api);
  t.equal(s.status, 200, s.text);
  t.match(String(s.headers['content-type']), /^text\/event-stream/);
  t.equal(s.headers['cache-control'], 'no-store');
  // A real alert through the alert service: a violation in project payments.
  await api.alerting.alerts.raise({ type: 'violation', message: 'web runs as root', agentId: 'agt_one', containerId: 'c'.repeat(64), containerName: '/web', project: 'payments', ruleId: 'no-root', severity: 'high' });
  await api.events.flush();
  const [v] = await s.waitFor(1, isFleet);
  t.equal(v!.event, 'alert.violation');
  t.match(data(v!), { type: 'alert.violation', project: 'payments', agentId: 'agt_one', severity: 'high', ruleId: 'no-root', containerName: '/web', message: 'web runs as root', alertId: /./ });
  t.notOk(s.events.some((e) => data(e)['name'] === '/before'), 'a new stream starts now, not with history');

  await record(api, Array.from({ length: 4 }, (_, i) => ({ type: 'container.updated' as const, project: 'payments', agentId: 'agt_one', data: { name: `/live-${i}` } })));
  const live = await s.waitFor(5, isFleet);
  const ids = live.map((e) => Number(e.id));
  t.same(ids, [...ids].sort((a, b) => a - b), 'in order');
  t.equal(new Set(ids).size, 5, 'no duplicates');
  const lastSeen = live[live.length - 1]!.id!;
  await s.waitFor(1, () => s.parser.comments >= 3, 5_000).catch(() => undefined);
  t.ok(s.parser.comments >= 2, `heartbeat comments arrive (${s.parser.comments})`);
  s.close();

  // Missed while away: more than one read's worth (batch 500), then more arrive live.
  const missed = Array.from({ length: 1203 }, (_, i) => ({ type: 'container.updated' as const, project: i % 2 ? 'payments' : 'search', data: { n: i } }));
  await record(api, missed);
  const r = await stream(api, { 'last-event-id': lastSeen });
  t.equal(r.status, 200, r.text);
  const back = await r.waitFor(1203, isFleet, 30_000);
  t.same(back.map((e) => data(e)['n']), missed.map((_, i) => i), 'exactly the missed events, in order');
  t.equal(Number(back[0]!.id), Number(lastSeen) + 1, 'starting right after Last-Event-ID');
  await record(api, [{ type: 'agent.online', agentId: 'agt_two', data: { hostname: 'two' } }]);
  const after = await r.waitFor(1204, isFleet);
  t.equal(after[1203]!.event, 'agent.online', 'then live');
  const all = after.map((e) => Number(e.id));
  t.equal(new Set(all).size, all.length, 'no duplicates across catch-up and live');
  t.same(all, Array.from({ length: all.length }, (_, i) => Number(lastSeen) + 1 + i), 'no gaps');
  r.close();

  // ?lastEventId= (a first connection resuming) works like the header; garbage is refused.
  const q = await stream(api, {}, api.admin.plaintext, `/v1/events?lastEventId=${all[all.length - 2]}`);
  t.same((await q.waitFor(1, isFleet)).map((e) => e.event), ['agent.online']);
  q.close();
  const bad = await stream(api, { 'last-event-id': 'abc' });
  t.equal(bad.status, 400);
  t.match(bad.text, /BK_ERR_BAD_REQUEST/);

  // Events pruned meanwhile: the client is told, then gets what is left.
  const top = all[all.length - 1]!;
  await record(api, [{ type: 'container.updated', project: 'payments', data: { n: 'kept' } }]);
  await api.store.events!.pruneEvents(new Date(0), 1);
  const gap = await stream(api, { 'last-event-id': String(top - 5) });
  const [g] = await gap.waitFor(1, (e) => e.event === 'stream.gap');
  t.match(JSON.parse(g!.data), { after: top - 5, firstAvailable: top + 1 });
  t.same((await gap.waitFor(1, isFleet)).map((e) => data(e)['n']), ['kept']);
  gap.close();
  t.equal((await stream(api, {}, null)).status, 401, 'no credential: 401');
});

t.test('a project-scoped key or session never receives another project\'s events', async (t) => {
  const api = await startSecureApi({ events: FAST_HUB });
  t.teardown(() => api.close());
  const pay = await api.mintKey('pay', 'viewer', { projects: ['payments'] });
  const login = await api.call('POST', '/v1/session', { key: null, body: { key: pay.plaintext } });
  const cookie = `__Host-bulkhead_session=${/=([^;]*)/.exec(String([login.headers['set-cookie']].flat()[0]))![1]}`;
  const admin = await stream(api);
  const scoped = await stream(api, {}, pay.plaintext);
  const session = await stream(api, { cookie }, null);
  t.equal(session.status, 200, session.text);
  const mix: Array<Omit<FleetEventInput, 'at'>> = [];
  for (let i = 0; i < 60; i++) mix.push({ type: 'container.updated', project: ['payments', 'search', '', 'payments-old'][i % 4]!, data: { n: i } });
  mix.push({ type: 'agent.offline', agentId: 'agt_two', everyScope: true, data: { hostname: 'two' } });
  await record(api, mix);
  await api.alerting.alerts.raise({ type: 'agent_offline', message: 'agent two is offline', agentId: 'agt_two' });
  await api.alerting.alerts.raise({ type: 'violation', message: 'search runs as root', project: 'search', agentId: 'agt_one' });
  await api.alerting.alerts.raise({ type: 'violation', message: 'pay runs as root', project: 'payments', agentId: 'agt_one' });
  await api.events.flush();
  const everything = await admin.waitFor(64, isFleet);
  t.equal(everything.length, 64, 'an unscoped key sees every event, projectless ones too');
  const wanted = everything.filter((e) => data(e)['project'] === 'payments' || e.event === 'agent.offline').map((e) => e.id);
  t.equal(wanted.length, 17, '15 payments container events + 1 violation + the agent going offline (agents are readable by every scope)');
  for (const [who, s] of [['scoped key', scoped], ['scoped session', session]] as const) {
    const got = await s.waitFor(17, isFleet);
    await new Promise((r) => setTimeout(r, 300)); // anything else that might come
    const fleet = s.events.filter(isFleet);
    t.same(fleet.map((e) => e.id), wanted, `${who}: exactly the payments events`);
    t.notOk(fleet.some((e) => data(e)['project'] !== 'payments' && e.event !== 'agent.offline'), `${who}: never another project's event, nor a projectless alert`);
    t.ok(got.length === 17);
  }
  // On resume (read from the store, filtered in SQL) too.
  const resumed = await stream(api, { 'last-event-id': '0' }, pay.plaintext);
  await resumed.waitFor(17, isFleet);
  await new Promise((r) => setTimeout(r, 300));
  t.same(resumed.events.filter(isFleet).map((e) => e.id), wanted, 'resumed scoped stream: the same events only');
  for (const s of [admin, scoped, session, resumed]) s.close();
});

t.test('a client that stops reading is cut off; the others are not; ended credentials end their streams', async (t) => {
  const api = await startSecureApi({ events: { ...FAST_HUB, maxBufferBytes: 64 * 1024, slowAfterMs: 1_000 } });
  t.teardown(() => api.close());
  const slow = await stream(api);
  const fast = await stream(api);
  slow.pause();
  // ~16 MB of events: far past the socket buffers on loopback and the 64 KiB bound.
  const pad = 'x'.repeat(4000);
  const N = 4000;
  for (let i = 0; i < N; i += 500) {
    await api.store.events!.appendEvents(Array.from({ length: Math.min(500, N - i) }, (_, j) => ({ type: 'container.updated' as const, at: new Date(), project: 'payments', data: { n: i + j, pad } })));
  }
  const got = await fast.waitFor(N, isFleet, 120_000);
  t.equal(got.length, N, 'a reading client got every event');
  // The server's side: the slow one was cut off (it cannot notice while it does not read).
  for (let i = 0; i < 300 && !/event stream client not reading: cut off/.test(api.logs()); i++) await new Promise((r) => setTimeout(r, 100));
  t.match(api.logs(), /"maxBufferBytes":65536,"backedUpMs":\d+,"msg":"event stream client not reading: cut off/, 'the slow client was cut off');
  slow.resume();
  const how = await Promise.race([slow.closed, new Promise<string>((r) => setTimeout(() => r('still open'), 30_000))]);
  t.not(how, 'still open', `reading again, it finds its connection closed (${how})`);
  const slowGot = slow.events.filter(isFleet).length;
  t.ok(slowGot < N, `it had got ${slowGot} of ${N} events: the rest stayed in the database, not in the controller's memory`);
  fast.close();

  // A revoked key's stream ends at its next heartbeat; so does a logged-out session's.
  const ops = await api.call('POST', '/v1/keys', { body: { name: 'ops', role: 'operator' } });
  const opsStream = await stream(api, {}, ops.json.key);
  const login = await api.call('POST', '/v1/session', { key: null, body: { key: api.admin.plaintext } });
  const cookie = `__Host-bulkhead_session=${/=([^;]*)/.exec(String([login.headers['set-cookie']].flat()[0]))![1]}`;
  const sesStream = await stream(api, { cookie }, null);
  t.equal((await api.call('DELETE', `/v1/keys/${ops.json.id}`)).status, 200);
  const [end] = await opsStream.waitFor(1, (e) => e.event === 'stream.end', 10_000);
  t.same(JSON.parse(end!.data), { reason: 'credential' });
  t.equal(await opsStream.closed, 'end');
  t.equal((await api.call('DELETE', '/v1/session', { key: null, headers: { cookie, 'x-bulkhead-csrf': login.json.csrfToken } })).status, 200);
  await sesStream.waitFor(1, (e) => e.event === 'stream.end', 10_000);
  t.equal(await sesStream.closed, 'end', 'a logged-out session\'s stream ends');
});

t.test('"from now on" starts before the 200: an event recorded as soon as the stream answers is on it', async (t) => {
  const store = await openStore(await newDatabase('unused'));
  // The hub's first read of the newest event id, made slow: an event committed while it is
  // under way must not be counted as already seen by a client that has its 200.
  const events = store.events!;
  const lastEventSeq = events.lastEventSeq.bind(events);
  let reads = 0;
  events.lastEventSeq = async () => {
    reads++;
    await new Promise((r) => setTimeout(r, 400));
    return lastEventSeq();
  };
  const api = await startSecureApi({ events: FAST_HUB, store });
  t.teardown(() => api.close());
  const s = await stream(api);
  t.equal(s.status, 200, s.text);
  await record(api, [{ type: 'container.updated', project: 'payments', data: { name: '/right-after-200' } }]);
  const [e] = await s.waitFor(1, isFleet, 5_000);
  t.equal(data(e!)['name'], '/right-after-200', 'the event recorded right after the 200 arrives');
  t.ok(reads >= 1, 'the slow read was the one that fixed the start');
  s.close();
});

t.test('appendEvents: a batch (over 500) gets consecutive seqs in its order, every value as given', async (t) => {
  const store = (await openTestStore(t)).events!;
  const odd = 'pay"me\\ {a,b} \'x\' NULL';
  const first = await store.appendEvents([{ type: 'agent.online', at: new Date(1000), everyScope: true, project: 'ignored', agentId: 'agt_1', data: { n: 0 } }]);
  const batch: FleetEventInput[] = Array.from({ length: 700 }, (_, i) => ({
    type: 'container.updated', at: new Date(2000 + i), project: i === 1 ? odd : i === 2 ? 'nul\u0000here' : 'payments', ...(i % 2 === 0 ? { agentId: `agt_${i}` } : {}), data: { n: i + 1, s: 'x\u0000"' },
  }));
  const seqs = await store.appendEvents(batch);
  t.same(seqs, Array.from({ length: 700 }, (_, i) => first[0]! + 1 + i), 'consecutive seqs after the last one, in the batch\'s order');
  const got = await store.listEvents({ after: 0, limit: 1000 });
  t.equal(got.length, 701);
  t.match(got[0], { seq: first[0], type: 'agent.online', everyScope: true, project: '', agentId: 'agt_1', data: { n: 0 } }, 'an every-scope event has no project');
  t.same(got.map((e) => (e.data as { n: number }).n), Array.from({ length: 701 }, (_, i) => i), 'stored in order');
  t.same(got.map((e) => e.at.getTime()).slice(1, 4), [2000, 2001, 2002]);
  t.equal(got[2]!.project, odd, 'quotes, backslashes, braces and the word NULL kept as given');
  t.equal(got[3]!.project, testBackend() === 'postgres' ? 'nul\uFFFDhere' : 'nul\u0000here', 'a NUL in text: U+FFFD on PostgreSQL, as every other write');
  t.equal(got[1]!.agentId, 'agt_0');
  t.equal(got[2]!.agentId, null, 'no agent: null');
  t.same(got[1]!.data, { n: 1, s: 'x\u0000"' }, 'the data round-trips exactly (JSON escapes NUL)');
});

t.test('controller replicas on one PostgreSQL database: a stream sees every replica\'s events, in one order', { skip: testBackend() === 'postgres' ? false : 'PostgreSQL only (events.postgres.test.ts)' }, async (t) => {
  const config = await newDatabase('unused');
  const a = await startSecureApi({ events: FAST_HUB, store: await openStore(config) });
  t.teardown(() => a.close());
  const b = await startSecureApi({ events: FAST_HUB, store: await openStore(config) });
  t.teardown(() => b.close());
  const onB = await stream(b, {}, a.admin.plaintext); // one database: A's key works on B
  t.equal(onB.status, 200, onB.text);
  await a.alerting.alerts.raise({ type: 'violation', message: 'raised on A', project: 'payments' });
  await a.events.flush();
  const [first] = await onB.waitFor(1, isFleet);
  t.equal(data(first!)['message'], 'raised on A', "B's stream carries A's event");
  // Both replicas appending at once (separate connections): every event once, ids without gaps.
  const ra = new FleetEvents({ store: a.store.events!, logger: a.app.log as never });
  const rb = new FleetEvents({ store: b.store.events!, logger: b.app.log as never });
  for (let i = 0; i < 300; i++) {
    ra.record({ type: 'container.updated', project: 'payments', data: { from: 'a', i } });
    rb.record({ type: 'container.updated', project: 'payments', data: { from: 'b', i } });
    if (i % 50 === 0) await new Promise((r) => setImmediate(r));
  }
  await Promise.all([ra.flush(), rb.flush()]);
  const got = await onB.waitFor(601, isFleet, 30_000);
  const ids = got.map((e) => Number(e.id));
  t.same(ids, Array.from({ length: 601 }, (_, i) => ids[0]! + i), 'consecutive ids, in order, none twice');
  for (const from of ['a', 'b']) {
    t.same(got.filter((e) => data(e)['from'] === from).map((e) => data(e)['i']), Array.from({ length: 300 }, (_, i) => i), `all of ${from}'s events, in its order`);
  }
  const onA = await stream(a, { 'last-event-id': String(ids[0]) });
  t.equal((await onA.waitFor(600, isFleet, 30_000)).length, 600, 'a resume on the other replica gets the same events');
  onA.close();
  onB.close();
});

t.test('PostgreSQL: a stream wakes on LISTEN/NOTIFY when another replica commits an event; the poll is the fallback', { skip: testBackend() === 'postgres' ? false : 'PostgreSQL only (events.postgres.test.ts)' }, async (t) => {
  const config = await newDatabase('unused');
  if (config.kind !== 'postgres') throw new Error('postgres expected');
  const logger = createLogger({ name: 'bus', level: 'silent' });
  const secret = Buffer.alloc(32, 7);
  const busB = await PgReplicaBus.connect({ connectionString: config.connectionString, logger, secret });
  t.teardown(() => busB.close());
  // Polls every 20 s: an event reaching B's stream within seconds came by the wake-up.
  const SLOW_POLL = { pollMs: 20_000, fallbackPollMs: 20_000, heartbeatMs: 300 };
  const a = await startSecureApi({ events: FAST_HUB, store: await openStore(config) });
  t.teardown(() => a.close());
  const b = await startSecureApi({ events: { ...SLOW_POLL, wakeups: busB.fleetEvents }, store: await openStore(config) });
  t.teardown(() => b.close());
  t.equal(busB.fleetEvents?.listening, true, 'B listens');
  const onB = await stream(b, {}, a.admin.plaintext);
  t.equal(onB.status, 200, onB.text);
  await new Promise((r) => setTimeout(r, 300)); // B's first read (at subscribe) is done; its next poll is 20 s away
  const times: number[] = [];
  for (let i = 0; i < 5; i++) {
    const started = performance.now();
    await a.store.events!.appendEvents([{ type: 'container.updated', at: new Date(), project: 'payments', data: { from: 'a', i } }]);
    const got = await onB.waitFor(i + 1, isFleet, 10_000);
    times.push(performance.now() - started);
    t.equal(data(got[i]!)['i'], i, `event ${i} committed on A arrived on B`);
  }
  // Generous: a wake-up takes milliseconds; only a stall (or no wake-up: the 20 s poll) fails this.
  t.ok(Math.max(...times) < 5_000, `committed on A → on B's stream in ${times.map((x) => x.toFixed(0)).join(', ')} ms (poll every 20 s)`);
  t.comment(`measured: NOTIFY wake-up, A commit → B stream: ${times.map((x) => x.toFixed(0)).join(', ')} ms`);
  onB.close();

  // Without a listening connection (closed bus, or SQLite) the hub polls every pollMs.
  const closedBus = await PgReplicaBus.connect({ connectionString: config.connectionString, logger, secret });
  await closedBus.close();
  t.equal(closedBus.fleetEvents?.listening, false, 'a closed bus does not listen');
  const c = await startSecureApi({ events: { pollMs: 200, fallbackPollMs: 20_000, heartbeatMs: 300, wakeups: closedBus.fleetEvents }, store: await openStore(config) });
  t.teardown(() => c.close());
  const onC = await stream(c, {}, a.admin.plaintext);
  await new Promise((r) => setTimeout(r, 300));
  const started = performance.now();
  await a.store.events!.appendEvents([{ type: 'container.updated', at: new Date(), project: 'payments', data: { from: 'a', poll: true } }]);
  await onC.waitFor(1, isFleet, 10_000);
  const ms = performance.now() - started;
  t.ok(ms < 5_000, `not listening: the event came by the ${200} ms poll after ${ms.toFixed(0)} ms`);
  onC.close();
});
