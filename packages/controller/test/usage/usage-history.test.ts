// Recent usage history at the controller: the container_usage_history ring (migration
// 0022_usage_history) on the real store (SQLite here, PostgreSQL in
// usage-history.postgres.test.ts) — at most one point per interval, the oldest dropped past 60,
// forgotten with the container's usage, kept for running containers across a snapshot — and
// GET /v1/containers/:agent/:id/usage through the real HTTPS API, scoped like the container.
import t, { type Test } from 'tap';
import type { UsageReport } from '@bulkhead/shared';
import { openTestStore } from '../store/fixtures/backend';
import type { Store } from '../../src/store/store';
import { MIGRATIONS } from '../../src/store/migrations';
import { RESOURCE_USAGE_FIELDS, type ContainerUsageRecord, type ResourceUsageField } from '../../src/store/usage-store';
import { decodePoints, encodePoint, parseHistoryInterval, USAGE_HISTORY_POINTS, USAGE_POINT_CHARS } from '../../src/store/usage-history';
import { bearer, get, httpsRequest } from '../api/fixtures/api-server';
import { connectFakeAgent, startLinkStack, waitFor } from '../actions/fixtures/link-stack';
import { container } from '../policy/fixtures/fleet';

const T0 = Date.parse('2026-11-28T12:00:00Z'); // a whole minute
const MiB = 1024 * 1024;
const UNMEASURED = Object.fromEntries(RESOURCE_USAGE_FIELDS.map((k) => [k, null])) as Record<ResourceUsageField, null>;

const rec = (agentId: string, containerId: string, atMs: number, over: Partial<ContainerUsageRecord> = {}): ContainerUsageRecord => ({
  agentId, containerId, takenAt: new Date(atMs), receivedAt: new Date(atMs), cpuPercent: 12.5, cpuPercentOfQuota: null, cpuLimitCores: 0,
  memoryBytes: 10 * MiB, memoryLimitBytes: 0, pids: 2, pidsLimit: 0, ...UNMEASURED, ...over,
});

async function freshStore(t: Test): Promise<Store> {
  return openTestStore(t);
}

t.test('migration 0022_usage_history is the newest usage migration and sorts after 0021', async (t) => {
  const names = Object.keys(MIGRATIONS).sort();
  t.ok(names.indexOf('0022_usage_history') > names.indexOf('0021_signature_verdicts'));
  const store = await freshStore(t);
  t.same(await store.usage!.getUsageHistory('a', 'c'), [], 'table exists, empty');
});

t.test('codec: fixed width, every figure round-trips to float32, null = not measured', async (t) => {
  const full = rec('a', 'c', T0 + 1500, {
    cpuPercent: 49.6, memoryBytes: 24 * MiB + 7, pids: 3, writableBytes: 200 * MiB, logBytes: 3 * MiB, blkioReadBytes: 5e9, blkioWriteBytes: 201 * MiB,
    netRxBytesPerSec: 1234.5, netTxBytesPerSec: 2048, tcpConnections: 2001,
  });
  const enc = encodePoint(full);
  t.equal(enc.length, USAGE_POINT_CHARS);
  t.match(enc, /^[A-Za-z0-9+/]+$/, 'base64 without padding: concatenable text');
  const [p] = decodePoints(enc + enc.slice(0, 10)); // a trailing partial record is ignored
  t.equal(p!.at.getTime(), T0 + 1000, 'to the second');
  t.equal(p!.cpuPercent!.toFixed(3), '49.600');
  t.equal(p!.memoryBytes, 24 * MiB + 8, 'float32: ~7 significant digits');
  t.equal(p!.blkioReadBytes, 5e9);
  t.equal(p!.tcpConnections, 2001);
  const none = decodePoints(encodePoint(rec('a', 'c', T0)))[0]!;
  t.same([none.writableBytes, none.logBytes, none.netRxBytesPerSec, none.tcpConnections], [null, null, null, null]);
  t.throws(() => parseHistoryInterval('500ms'), /whole seconds between 1s and 1h/);
  t.throws(() => parseHistoryInterval('2h'), /whole seconds/);
  t.equal(parseHistoryInterval(undefined), 60_000);
  t.equal(parseHistoryInterval('2s'), 2000);
});

t.test('store: one point per interval, the first reading of it; ring capped at 60, oldest dropped', async (t) => {
  const store = await freshStore(t);
  const u = store.usage!;
  // Reports every 30 s for 70 minutes, CPU = the minute number: 140 readings, 70 intervals.
  for (let i = 0; i < 140; i++) {
    const at = T0 + i * 30_000;
    await u.applyUsage('agt_a', [rec('agt_a', 'c1', at, { cpuPercent: i }), rec('agt_a', 'c2', at, { cpuPercent: 1000 + i })], []);
    if (i === 3) {
      const early = await u.getUsageHistory('agt_a', 'c1');
      t.same(early.map((p) => p.cpuPercent), [0, 2], 'readings 0..3 (2 minutes): the first reading of each minute');
    }
  }
  const h = await u.getUsageHistory('agt_a', 'c1');
  t.equal(h.length, USAGE_HISTORY_POINTS, '60 kept');
  t.same(h.map((p) => p.cpuPercent), Array.from({ length: 60 }, (_, k) => (k + 10) * 2), 'minutes 10..69, oldest first: the first 10 dropped');
  t.same(h.map((p) => p.at.getTime()), Array.from({ length: 60 }, (_, k) => T0 + (k + 10) * 60_000));
  t.equal((await u.getUsageHistory('agt_a', 'c2'))[59]!.cpuPercent, 1138, 'another container, its own ring');
  const latest = (await u.getUsage([{ agentId: 'agt_a', containerId: 'c1' }])).get('agt_a/c1');
  t.equal(latest!.cpuPercent, 139, 'the latest reading is still every report');

  // Another interval: 10 s points.
  await u.applyUsage('agt_b', [rec('agt_b', 'c', T0)], [], { historyIntervalMs: 10_000 });
  await u.applyUsage('agt_b', [rec('agt_b', 'c', T0 + 5_000)], [], { historyIntervalMs: 10_000 });
  await u.applyUsage('agt_b', [rec('agt_b', 'c', T0 + 10_000)], [], { historyIntervalMs: 10_000 });
  t.equal((await u.getUsageHistory('agt_b', 'c')).length, 2);

  // A clock that went back by more than the ring's span restarts the count instead of stalling.
  await u.applyUsage('agt_b', [rec('agt_b', 'c', T0 - 2 * 3_600_000)], [], { historyIntervalMs: 10_000 });
  const back = await u.getUsageHistory('agt_b', 'c');
  t.equal(back.at(-1)!.at.getTime(), T0 - 2 * 3_600_000);
  await u.applyUsage('agt_b', [rec('agt_b', 'c', T0 - 2 * 3_600_000 + 3_000)], [], { historyIntervalMs: 10_000 });
  t.equal((await u.getUsageHistory('agt_b', 'c')).length, back.length, 'and then one per interval again');
});

t.test('store: gone forgets the history with the usage, in batches', async (t) => {
  const store = await freshStore(t);
  const u = store.usage!;
  await u.applyUsage('agt_a', [rec('agt_a', 'run', T0), rec('agt_a', 'stopped', T0), rec('agt_a', 'gone', T0)], []);
  await u.applyUsage('agt_a', [], ['gone']);
  t.same(await u.getUsageHistory('agt_a', 'gone'), [], 'gone: history forgotten');
  t.equal((await u.getUsageHistory('agt_a', 'run')).length, 1);

  // Many containers: batched statements.
  const many = Array.from({ length: 450 }, (_, i) => rec('agt_c', `c${i}`, T0));
  await u.applyUsage('agt_c', many, []);
  await u.applyUsage('agt_c', many.map((r) => ({ ...r, takenAt: new Date(T0 + 60_000) })), []);
  t.equal((await u.getUsageHistory('agt_c', 'c449')).length, 2, 'every batch appends');
  await u.applyUsage('agt_c', [], many.map((r) => r.containerId));
  t.same(await u.getUsageHistory('agt_c', 'c449'), [], 'every batch forgets');
});

t.test('through the link and the API: history from usage reports, kept across a snapshot while running, scoped like the container', async (t) => {
  const s = await startLinkStack(t, { usageHistoryIntervalMs: 1000 });
  const web = container('web', { state: 'running', labels: { 'bulkhead.project': 'payments' } });
  const job = container('job', { state: 'running', labels: { 'bulkhead.project': 'shop' } });
  const agent = await connectFakeAgent(t, s, 'host-history', [web, job]);
  let seq = 1000;
  const send = (usage: UsageReport) => agent.call.write({ seq: ++seq, usage });
  const base = Date.now() - 10_000;
  for (let i = 0; i < 4; i++) {
    send({
      takenAtMs: base + i * 2000,
      containers: [web, job].map((c) => ({ containerId: c.id, cpuPercent: 10 + i, cpuPercentOfQuota: 0, cpuLimitCores: 0, memoryBytes: (20 + i) * MiB, memoryLimitBytes: 0, pids: 1, pidsLimit: 0, takenAtMs: base + i * 2000 })),
      gone: [],
    });
  }
  type H = { agentId: string; containerId: string; intervalSeconds: number; windowSeconds: number; points: Array<{ at: string; cpuPercent: number; memoryBytes: number; writableBytes: number | null }> };
  const hist = async (ref: string, key = s.keys.viewer) => {
    const r = await get(s.api, `/v1/containers/${agent.agentId}/${ref}/usage`, bearer(key));
    return { status: r.status, body: r.json as H & { code?: string } };
  };
  const h = await waitFor('4 points', async () => {
    const r = await hist('web');
    return r.status === 200 && r.body.points.length === 4 ? r.body : undefined;
  });
  t.match(h, { agentId: agent.agentId, containerId: web.id, intervalSeconds: 1, windowSeconds: 60 });
  t.same(h.points.map((p) => p.cpuPercent), [10, 11, 12, 13], 'oldest first');
  t.equal(h.points[3]!.memoryBytes, 23 * MiB);
  t.equal(h.points[0]!.writableBytes, null, 'not measured: null');
  t.equal(h.points[0]!.at, new Date(Math.floor(base / 1000) * 1000).toISOString());

  // Scope: a key limited to "shop" cannot see the "payments" container or its history.
  const key = s.keys.scoped;
  const other = await hist('web', key);
  t.equal(other.status, 404, "another project's history: 404, like the container");
  t.equal(other.body.code, 'BK_ERR_NOT_FOUND');
  t.equal((await get(s.api, `/v1/containers/${agent.agentId}/web`, bearer(key))).status, 404, 'the container itself: 404 too');
  t.equal((await hist(web.id, key)).status, 404, 'by full id too');
  const own = await hist('job', key);
  t.equal(own.status, 200, 'its own project: 200');
  t.equal(own.body.points.length, 4);

  // A snapshot of the same running containers (a reconnect) keeps their history.
  agent.call.write({ seq: ++seq, snapshot: { containers: [web, { ...job, state: 'exited' }], takenAtMs: Date.now() } });
  await waitFor('usage cleared by the snapshot', async () => {
    const r = (await get(s.api, `/v1/containers/${agent.agentId}/web`, bearer(s.keys.viewer))).json as { usage: unknown };
    return r.usage === null;
  });
  t.equal((await hist('web')).body.points.length, 4, 'running: history kept across the snapshot');
  t.same((await hist('job')).body.points, [], 'no longer running: history forgotten');

  // Removed: none, whatever lingers.
  agent.call.write({ seq: ++seq, delta: { kind: 'REMOVE', containerId: web.id, eventAction: 'destroy', eventTimeMs: Date.now() } });
  await waitFor('removed', async () => ((await hist('web')).body.points ?? []).length === 0);
  t.pass('a removed container has no history');
  t.equal((await hist('nope')).status, 404, 'unknown container: 404');
});

t.test('a revoked agent: its usage and history are forgotten, its containers stay as history', async (t) => {
  const s = await startLinkStack(t, { usageHistoryIntervalMs: 1000 });
  const web = container('web', { state: 'running' });
  const agent = await connectFakeAgent(t, s, 'host-revoked-usage', [web]);
  const at = Date.now() - 2000;
  agent.call.write({
    seq: 2000,
    usage: { takenAtMs: at, containers: [{ containerId: web.id, cpuPercent: 7, cpuPercentOfQuota: 0, cpuLimitCores: 0, memoryBytes: 5 * MiB, memoryLimitBytes: 0, pids: 1, pidsLimit: 0, takenAtMs: at }], gone: [] },
  });
  await waitFor('a history point', async () => (await s.store.usage!.getUsageHistory(agent.agentId, web.id)).length === 1);
  const res = await httpsRequest(`${s.api.url}/v1/agents/${agent.agentId}/revoke`, s.api.ca.certPem, 'POST', { headers: bearer(s.keys.admin) });
  t.equal(res.status, 200, 'revoked');
  t.same(await s.store.usage!.getUsageHistory(agent.agentId, web.id), [], 'history forgotten');
  t.equal((await s.store.usage!.getUsage([{ agentId: agent.agentId, containerId: web.id }])).size, 0, 'latest usage forgotten');
  const row = (await get(s.api, `/v1/containers/${agent.agentId}/web`, bearer(s.keys.viewer))).json as { id: string; usage: unknown };
  t.equal(row.id, web.id, 'the container row stays');
  t.equal(row.usage, null, 'without usage');
});
