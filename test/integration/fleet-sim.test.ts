// The fleet path at CI size: the fleet simulator (bench/lib/fleet-sim.js) with
// 50 agents × 20 containers against the built controller as a real process on
// SQLite. Every agent has its own join token (minted through the API), its own
// key and certificate from the real Enroll RPC and its own mutual-TLS stream
// (the agent's ControllerLink). Asserts that every snapshot is stored, every
// container is visible through the API with its facts, churn (starts, stops
// with removal) is reflected exactly, and every violation report is stored.
// Needs the built packages (`npx tsc -b`), as the other end-to-end tests do.
import t from 'tap';
import { X509Certificate } from 'node:crypto';
import { join } from 'node:path';
import { Fleet, apiClient, startController } from '../../bench/lib/fleet-sim';

const AGENTS = 50;
const CONTAINERS = 20;

t.test('fleet simulator: 50 agents × 20 containers against a real controller on SQLite', async (t) => {
  const dir = t.testdir();
  const controller = await startController({ dir });
  t.teardown(() => controller.stop());
  const api = apiClient({ port: controller.apiPort, ca: controller.ca, apiKey: controller.adminApiKey, maxSockets: 4 });
  t.teardown(() => api.close());
  const fleet = new Fleet({ controller, api, agents: AGENTS, containers: CONTAINERS, stateDir: join(dir, 'agents'), seed: 7 });
  t.teardown(() => fleet.stop());

  await fleet.enrollAll();
  const ids = new Set(fleet.hosts.map((h) => h.agentId));
  t.equal(ids.size, AGENTS, 'every simulated agent has its own identity');
  const serials = new Set(fleet.hosts.map((h) => new X509Certificate(h.credentials.certPem).serialNumber));
  t.equal(serials.size, AGENTS, 'and its own certificate');
  t.ok(fleet.hosts.every((h) => new X509Certificate(h.credentials.certPem).checkIssued(new X509Certificate(controller.ca))), 'issued by the controller CA');
  const tokens = await api.all('/v1/join-tokens?status=used');
  t.equal(tokens.length, AGENTS, 'one join token used per agent');

  const snap = await fleet.connectAll({ timeoutMs: 60_000 });
  t.equal(snap.stored, AGENTS, `every snapshot acknowledged (after ${Math.round(snap.allMs ?? NaN)} ms)`);

  const key = (agentId: string, id: string) => `${agentId}/${id}`;
  const expected = () => {
    const m = new Map<string, string>();
    for (const h of fleet.hosts) for (const c of h.inventory.items.values()) m.set(key(h.agentId, c.id!), c.state!);
    return m;
  };
  const stored = async (query = '') => {
    const m = new Map<string, { state: string; removed: boolean; name: string }>();
    for (const c of await api.all(`/v1/containers${query}`)) m.set(key(c.agentId, c.id), c);
    return m;
  };

  // Snapshots: exactly the simulated inventory, per agent and in total.
  let want = expected();
  let got = await stored();
  t.equal(got.size, AGENTS * CONTAINERS, 'every container of every snapshot is stored');
  t.same([...got.keys()].sort(), [...want.keys()].sort(), 'the API lists exactly the simulated containers');
  const agents: { id: string; status: string; containerCount: number }[] = (await api.get('/v1/agents')).json.items; // not paged
  t.equal(agents.filter((a) => ids.has(a.id) && a.status === 'online').length, AGENTS, 'every agent online');
  t.ok(agents.filter((a) => ids.has(a.id)).every((a) => a.containerCount === CONTAINERS), 'every agent reports its container count');

  // One container through the API, with its facts.
  const h0 = fleet.hosts[3]!;
  const c0 = h0.inventory.random()!;
  const one = await api.get(`/v1/containers/${h0.agentId}/${c0.id}`);
  t.equal(one.status, 200);
  t.match(one.json, { agentId: h0.agentId, id: c0.id, name: c0.name, imageRef: c0.imageRef, state: 'running', removed: false }, 'one container as reported');
  t.same(one.json.facts.labels, c0.labels, 'with its labels');

  // Churn: new containers, stopped-and-removed ones, violation reports.
  const before = new Set(want.keys());
  const stopChurn = fleet.startChurn({ startsPerS: 40, stopsPerS: 40, violationsPerS: 30 });
  await new Promise((r) => setTimeout(r, 3000));
  stopChurn();
  t.ok(fleet.counts.starts >= 60 && fleet.counts.stops >= 60 && fleet.counts.violations >= 45, `churn ran: ${JSON.stringify(fleet.counts)}`);
  t.ok(await fleet.drained(30_000), 'the controller acknowledged every message');

  want = expected();
  got = await stored();
  t.same([...got.keys()].sort(), [...want.keys()].sort(), 'after churn the API lists exactly the live simulated containers');
  t.ok([...want].every(([k, state]) => got.get(k)?.state === state), 'each in its simulated state');
  t.equal(new Set(fleet.started).size, fleet.counts.starts);
  t.equal(new Set(fleet.stopped).size, fleet.counts.stops);
  const stoppedSet = new Set(fleet.stopped);
  t.ok(fleet.started.every((k) => got.has(k) !== stoppedSet.has(k)), 'every started container is listed unless churn stopped it again');
  t.ok(fleet.stopped.every((k) => !got.has(k)), 'no stopped-and-removed container is listed');
  t.ok([...before].filter((k) => !want.has(k)).every((k) => stoppedSet.has(k)), 'only stopped containers left the list');
  const withRemoved = await stored('?include_removed=true');
  t.ok(fleet.stopped.every((k) => withRemoved.get(k)?.removed === true && withRemoved.get(k)?.state === 'exited'), 'stopped ones are kept as removed, exited');

  const running = await api.all('/v1/containers?state=running&label=team%3Dpayments');
  const wantRunningPayments = fleet.hosts.flatMap((h) => [...h.inventory.items.values()].filter((c) => c.labels!.team === 'payments').map((c) => key(h.agentId, c.id!)));
  t.same(running.map((c) => key(c.agentId, c.id)).sort(), wantRunningPayments.sort(), 'filters by state and label see the same fleet');

  const violations = await api.all('/v1/violations');
  const seen = new Map(violations.map((v) => [v.id as string, v.agentId as string]));
  t.equal(fleet.violationIds.length, fleet.counts.violations);
  t.ok(fleet.violationIds.every((v) => seen.get(v.id) === v.agentId), `every one of ${fleet.violationIds.length} violation reports is stored, under its agent`);
  t.equal(fleet.counts.reconnects, 0, 'no stream was lost');
});
