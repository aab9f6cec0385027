// Live usage at the controller (issue 4): the container_usage table (real
// SQLite through the real migrations), shaping an agent's UsageReport, and —
// through the real gRPC link and HTTPS API — usage reported by an agent
// showing up in GET /v1/containers, forgotten when the agent says a container
// is gone or when its stream restarts.
import t, { type Test } from 'tap';
import { createLogger, type UsageReport, type UsageReport__Output } from '@bulkhead/shared';
import { openTestStore } from '../store/fixtures/backend';
import type { Store } from '../../src/store/store';
import { MIGRATIONS } from '../../src/store/migrations';
import { RESOURCE_USAGE_FIELDS, usageKey, type ContainerUsageRecord, type ResourceUsageField } from '../../src/store/usage-store';
import { MAX_USAGE_CONTAINERS, recordUsage, usageRecords } from '../../src/usage/usage-recorder';
import { bearer, get, type RunningApi } from '../api/fixtures/api-server';

async function apiGet<T>(api: RunningApi, path: string, key: string): Promise<{ status: number; body: T }> {
  const r = await get(api, path, bearer(key));
  return { status: r.status, body: r.json as T };
}
import { connectFakeAgent, startLinkStack, waitFor } from '../actions/fixtures/link-stack';
import { container } from '../policy/fixtures/fleet';

const T0 = new Date('2026-11-28T12:00:00Z');
const MiB = 1024 * 1024;

async function freshStore(t: Test): Promise<Store> {
  return openTestStore(t); // SQLite here; PostgreSQL in usage.postgres.test.ts
}

/** Not measured: what an agent without disk/network sources (or an older one) leaves in the store. */
const UNMEASURED = Object.fromEntries(RESOURCE_USAGE_FIELDS.map((k) => [k, null])) as Record<ResourceUsageField, null>;

const rec = (agentId: string, containerId: string, over: Partial<ContainerUsageRecord> = {}): ContainerUsageRecord => ({
  agentId, containerId, takenAt: T0, receivedAt: T0, cpuPercent: 12.5, cpuPercentOfQuota: null, cpuLimitCores: 0, memoryBytes: 10 * MiB,
  memoryLimitBytes: 0, pids: 2, pidsLimit: 0, ...UNMEASURED, ...over,
});

/** Everything beyond the cgroup measured. */
const RESOURCES = {
  writableBytes: 200 * MiB, logBytes: 3 * MiB, blkioReadBytes: MiB, blkioWriteBytes: 201 * MiB, blkioReadOps: 12, blkioWriteOps: 1600,
  netRxBytes: 10_000, netTxBytes: 20_000, netRxPackets: 100, netTxPackets: 200, netRxDropped: 1, netTxDropped: 2,
  netRxBytesPerSec: 1234.5, netTxBytesPerSec: 2048, tcpConnections: 2001, sockets: 2003,
};

t.test('migration 0005_usage sorts between 0004 and 0006 and creates container_usage', async (t) => {
  const names = Object.keys(MIGRATIONS).sort();
  t.ok(names.indexOf('0005_usage') > names.indexOf('0004_auth'));
  if (names.includes('0006_audit')) t.ok(names.indexOf('0005_usage') < names.indexOf('0006_audit'));
  const store = await freshStore(t);
  t.same(await store.usage!.getUsage([{ agentId: 'a', containerId: 'c' }]), new Map(), 'table exists, empty');
});

t.test('migration 0012_usage_resources: disk, block IO, network and connection columns round-trip, null = not measured', async (t) => {
  const names = Object.keys(MIGRATIONS).sort();
  t.equal(names.at(-1) === '0012_usage_resources' || names.indexOf('0012_usage_resources') > names.indexOf('0011_violation_alert_pending'), true, 'after 0011');
  const store = await freshStore(t);
  await store.usage!.applyUsage('agt_a', [rec('agt_a', 'full', RESOURCES), rec('agt_a', 'none')], []);
  const got = await store.usage!.getUsage([{ agentId: 'agt_a', containerId: 'full' }, { agentId: 'agt_a', containerId: 'none' }]);
  t.same(got.get(usageKey('agt_a', 'full')), rec('agt_a', 'full', RESOURCES), 'every field round-trips');
  t.same(got.get(usageKey('agt_a', 'none')), rec('agt_a', 'none'), 'not measured: null, not 0');
  // An update that no longer measures a field clears it (no stale disk figure after --no-disk-usage).
  await store.usage!.applyUsage('agt_a', [rec('agt_a', 'full', { ...RESOURCES, writableBytes: null })], []);
  t.equal((await store.usage!.getUsage([{ agentId: 'agt_a', containerId: 'full' }])).get(usageKey('agt_a', 'full'))!.writableBytes, null);
});

t.test('store: latest reading per container, gone and clear forget, lookups across agents', async (t) => {
  const store = await freshStore(t);
  const u = store.usage!;
  await u.applyUsage('agt_a', [rec('agt_a', 'c1'), rec('agt_a', 'c2', { cpuPercentOfQuota: 99.5, cpuLimitCores: 0.5, memoryLimitBytes: 64 * MiB, pidsLimit: 32 })], []);
  await u.applyUsage('agt_b', [rec('agt_b', 'c1', { pids: 7 })], []);
  await u.applyUsage('agt_a', [], []);
  const keys = [{ agentId: 'agt_a', containerId: 'c1' }, { agentId: 'agt_a', containerId: 'c2' }, { agentId: 'agt_b', containerId: 'c1' }, { agentId: 'agt_b', containerId: 'nope' }];
  let got = await u.getUsage(keys);
  t.same([...got.keys()].sort(), [usageKey('agt_a', 'c1'), usageKey('agt_a', 'c2'), usageKey('agt_b', 'c1')]);
  t.same(got.get(usageKey('agt_a', 'c2')), rec('agt_a', 'c2', { cpuPercentOfQuota: 99.5, cpuLimitCores: 0.5, memoryLimitBytes: 64 * MiB, pidsLimit: 32 }), 'round-trips');
  t.equal(got.get(usageKey('agt_b', 'c1'))!.pids, 7, 'same container id on another agent is another row');

  const later = new Date(T0.getTime() + 30_000);
  // The same container twice in one report: the last entry wins, no conflict error.
  await u.applyUsage('agt_a', [rec('agt_a', 'c1', { cpuPercent: 1 }), rec('agt_a', 'c1', { takenAt: later, cpuPercent: 80, memoryBytes: 20 * MiB })], ['c2']);
  got = await u.getUsage(keys);
  t.match(got.get(usageKey('agt_a', 'c1')), { takenAt: later, cpuPercent: 80, memoryBytes: 20 * MiB }, 'newer reading replaces the old');
  t.notOk(got.has(usageKey('agt_a', 'c2')), 'gone: forgotten');
  await u.clearUsage('agt_a');
  got = await u.getUsage(keys);
  t.same([...got.keys()], [usageKey('agt_b', 'c1')], "clear: only that agent's rows go");

  // Many containers: batched statements.
  const many = Array.from({ length: 450 }, (_, i) => rec('agt_c', `c${i}`));
  await u.applyUsage('agt_c', many, []);
  t.equal((await u.getUsage(many.map((r) => ({ agentId: r.agentId, containerId: r.containerId })))).size, 450);
  await u.applyUsage('agt_c', [], many.map((r) => r.containerId));
  t.equal((await u.getUsage(many.map((r) => ({ agentId: r.agentId, containerId: r.containerId })))).size, 0);
});

t.test('usageRecords: quota-less CPU is null, bad ids dropped, times fall back', async (t) => {
  const report = {
    takenAtMs: String(T0.getTime()),
    containers: [
      { containerId: 'a', cpuPercent: 50, cpuPercentOfQuota: 100, cpuLimitCores: 0.5, memoryBytes: '1048576', memoryLimitBytes: '0', pids: '3', pidsLimit: '0', takenAtMs: String(T0.getTime() - 2000) },
      { containerId: 'b', cpuPercent: 150, cpuPercentOfQuota: 0, cpuLimitCores: 0, memoryBytes: '5', memoryLimitBytes: '10', pids: '1', pidsLimit: '4', takenAtMs: '0' },
      { containerId: '', cpuPercent: 1 },
      { containerId: 'x'.repeat(129) },
      { containerId: 'c', cpuPercent: Number.NaN, cpuLimitCores: -1, memoryBytes: '-5', takenAtMs: '0' },
    ],
    gone: ['g', '', 'y'.repeat(200)],
  } as unknown as UsageReport__Output;
  const now = new Date(T0.getTime() + 1000);
  const { rows, gone, dropped } = usageRecords('agt_a', report, now);
  t.equal(dropped, 2);
  t.same(gone, ['g']);
  t.same(rows.map((r) => [r.containerId, r.takenAt.getTime(), r.cpuPercentOfQuota]), [
    ['a', T0.getTime() - 2000, 100],
    ['b', T0.getTime(), null],
    ['c', T0.getTime(), null],
  ], "the container's own reading time, else the report's; no quota → null");
  t.match(rows[0], { memoryBytes: MiB, pids: 3, receivedAt: now });
  t.match(rows[2], { cpuPercent: 0, cpuLimitCores: 0, memoryBytes: 0 }, 'nonsense numbers read as 0');
  const noTime = usageRecords('agt_a', { containers: [{ containerId: 'd' }], gone: [] } as unknown as UsageReport__Output, now);
  t.equal(noTime.rows[0]!.takenAt.getTime(), now.getTime(), 'no time at all: received time');
  const huge = usageRecords('agt_a', { containers: Array.from({ length: MAX_USAGE_CONTAINERS + 3 }, (_, i) => ({ containerId: `c${i}` })), gone: [] } as unknown as UsageReport__Output, now);
  t.same([huge.rows.length, huge.dropped], [MAX_USAGE_CONTAINERS, 3], 'capped per report');

  const lines: string[] = [];
  const logger = createLogger({ name: 't', level: 'debug', destination: { write: (s: string) => void lines.push(s) } });
  const store = await freshStore(t);
  await recordUsage({ store, logger }, 'agt_a', report, now);
  t.match(lines.join(''), /entries without a usable container id dropped/);
  t.equal((await store.usage!.getUsage([{ agentId: 'agt_a', containerId: 'a' }])).size, 1);
  await recordUsage({ store, logger }, 'agt_a', undefined, now);
  await recordUsage({ store: {} as Store, logger }, 'agt_a', report, now);
  t.pass('no report, or a store without usage: ignored');
});

t.test('through the link: reported usage shows in GET /v1/containers and the single-container route', async (t) => {
  const s = await startLinkStack(t);
  const web = container('web', { state: 'running' });
  const job = container('job', { state: 'running' });
  const agent = await connectFakeAgent(t, s, 'host-usage', [web, job]);
  let seq = 1000;
  const send = (usage: UsageReport) => agent.call.write({ seq: ++seq, usage });
  const now = Date.now();
  send({
    takenAtMs: now,
    containers: [
      { containerId: web.id, cpuPercent: 49.6, cpuPercentOfQuota: 99.2, cpuLimitCores: 0.5, memoryBytes: 24 * MiB, memoryLimitBytes: 64 * MiB, pids: 3, pidsLimit: 32, takenAtMs: now - 500, ...RESOURCES },
      { containerId: job.id, cpuPercent: 0.2, cpuPercentOfQuota: 0, cpuLimitCores: 0, memoryBytes: MiB, memoryLimitBytes: 0, pids: 1, pidsLimit: 0, takenAtMs: now - 500 },
    ],
    gone: [],
  });
  type Item = { id: string; usage: { cpuPercent: number; cpuPercentOfQuota: number | null; memoryBytes: number; memoryLimitBytes: number; pids: number; pidsLimit: number; takenAt: string } | null };
  const list = async () => (await apiGet<{ items: Item[] }>(s.api, `/v1/containers?agent=${agent.agentId}`, s.keys.viewer)).body.items;
  const items = await waitFor('usage listed', async () => {
    const l = await list();
    return l.every((c) => c.usage !== null) ? l : undefined;
  });
  const w = items.find((c) => c.id === web.id)!;
  t.same(w.usage, { cpuPercent: 49.6, cpuPercentOfQuota: 99.2, memoryBytes: 24 * MiB, memoryLimitBytes: 64 * MiB, pids: 3, pidsLimit: 32, takenAt: new Date(now - 500).toISOString(), ...RESOURCES }, 'disk, block IO, network and connections too');
  t.match(items.find((c) => c.id === job.id)!.usage, UNMEASURED, 'fields the agent did not send (proto3 optional): null');
  t.equal(items.find((c) => c.id === job.id)!.usage!.cpuPercentOfQuota, null, 'no quota: null, not 0');
  const one = await apiGet<Item>(s.api, `/v1/containers/${agent.agentId}/web`, s.keys.viewer);
  t.equal(one.status, 200);
  t.equal(one.body.usage?.memoryBytes, 24 * MiB, 'the single-container route shows it too');

  send({ takenAtMs: now + 30_000, containers: [], gone: [job.id] });
  await waitFor('gone forgotten', async () => (await list()).find((c) => c.id === job.id)?.usage === null);
  t.pass('a container the agent no longer samples has no usage');

  // A new snapshot (what every new stream starts with) clears the agent's usage until it reports again.
  agent.call.write({ seq: ++seq, snapshot: { containers: [web, job], takenAtMs: Date.now() } });
  await waitFor('snapshot clears usage', async () => (await list()).every((c) => c.usage === null));
  t.pass('usage cleared by a snapshot');

  // Removed containers never show usage, even if a row lingers.
  send({ takenAtMs: now + 60_000, containers: [{ containerId: web.id, cpuPercent: 1, cpuPercentOfQuota: 2, cpuLimitCores: 0.5, memoryBytes: 1, memoryLimitBytes: 0, pids: 1, pidsLimit: 0, takenAtMs: now }], gone: [] });
  await waitFor('usage again', async () => (await list()).find((c) => c.id === web.id)?.usage !== null);
  agent.call.write({ seq: ++seq, delta: { kind: 'REMOVE', containerId: web.id, eventAction: 'destroy', eventTimeMs: Date.now() } });
  const removed = await waitFor('removed', async () => {
    const r = (await apiGet<{ items: Array<Item & { removed: boolean }> }>(s.api, `/v1/containers?agent=${agent.agentId}&include_removed=true`, s.keys.viewer)).body.items;
    return r.find((c) => c.id === web.id && c.removed);
  });
  t.equal(removed.usage, null, 'a removed container shows no usage');
});
