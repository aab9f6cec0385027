// Fault: garbage, oversized and half-open connections, many at a time, on the controller's
// gRPC port and API port and on the agent's authorization-plugin socket — all real processes
// (test/bad-input/ sends crafted inputs to servers inside the test process; this floods the
// running daemons with the crude kinds, together, repeatedly).
//
// Per round and per door: random bytes, 8 MiB of random bytes, connections that never speak,
// and for the TLS ports a TLS record header whose handshake never follows. Meanwhile real work
// goes on: the agent reports violations (plugin denials → its gRPC stream → the store) and an
// API client lists agents. Expected: every bad connection is refused or timed out (the TLS
// ports close half-open ones by themselves), real requests keep being answered during and
// after, nothing reported is lost, both processes stay up, and their open descriptors come
// back to where they were (no leak).
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { connect as netConnect, type Socket } from 'node:net';
import { join } from 'node:path';
import { apiRequest, waitFor } from '../helpers/processes';
import { enrollAgent, startController, tempRoot } from '../e2e/stack';
import { alive, denyPrivilegedPolicy, openFds, pluginCreate } from '../helpers/fault-inject';
import { recordFault } from '../helpers/fault-report';

const DOCKER_HOST = process.env['BULKHEAD_TEST_DOCKER_HOST'];
const ROUNDS = 2;
const GARBAGE = 20;
const HALF_OPEN = 20;
const OVERSIZED = 3;
/** The API drops a connection stuck before its handshake ends after 10 s (docs/limits.md); gRPC sooner. */
const HALF_OPEN_HOLD_MS = 13_000;
const CANARY_BOUND_MS = 2_000;

type Door = { name: 'gRPC' | 'API' | 'plugin'; connect: () => Socket; tls: boolean };

interface Outcome {
  /** The server closed (or reset) the connection before we gave up. */
  closedByServer: boolean;
  ms: number;
}

/** Opens a connection, lets `act` write, and waits for the server to close it (at most `holdMs`). */
function attempt(door: Door, act: (s: Socket) => void, holdMs: number): Promise<Outcome> {
  const started = Date.now();
  return new Promise((resolve) => {
    const s = door.connect();
    let done = false;
    const finish = (closedByServer: boolean): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      s.destroy();
      resolve({ closedByServer, ms: Date.now() - started });
    };
    const timer = setTimeout(() => finish(false), holdMs);
    s.on('connect', () => act(s));
    s.on('data', () => undefined); // whatever it answers (400, a TLS alert): read and drop
    s.on('end', () => finish(true));
    s.on('close', () => finish(true));
    s.on('error', () => finish(true));
  });
}

/** Writes `total` random bytes, respecting back-pressure, until done or the server closes. */
function writeOversized(s: Socket, total: number): void {
  let left = total;
  const chunk = randomBytes(64 * 1024);
  const pump = (): void => {
    while (left > 0 && !s.destroyed) {
      left -= chunk.length;
      if (!s.write(chunk)) {
        s.once('drain', pump);
        return;
      }
    }
    if (!s.destroyed) s.end();
  };
  pump();
}

/** A TLS record header announcing a 512-byte ClientHello that never comes. */
const STUCK_HANDSHAKE = Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01]);

t.test('garbage, oversized and half-open connections on every door', { skip: !DOCKER_HOST ? 'needs BULKHEAD_TEST_DOCKER_HOST' : false }, async (t) => {
  const root = tempRoot();
  t.teardown(root.cleanup);
  const ctl = await startController(root.dir, { heartbeatInterval: '500ms', offlineAfter: '3s' });
  t.teardown(() => ctl.stop());
  t.equal((await apiRequest(ctl.apiBase, 'PUT', '/v1/policies', ctl.caPem, ctl.adminKey, denyPrivilegedPolicy('connections'), 'application/yaml')).status, 200);
  const agent = await enrollAgent(ctl, root.dir, 'agent', DOCKER_HOST!, ['--audit-interval', '0']);
  agent.start();
  t.teardown(() => agent.stop());
  await waitFor('agent online with the policy', async () => (await ctl.get<{ policy: { applied: boolean } | null }>(`/v1/agents/${agent.agentId}`)).body.policy?.applied, 30_000);
  const socket = join(agent.stateDir, 'authz.sock');
  const grpcPort = Number(ctl.grpcAddr.split(':')[1]);
  const apiPort = Number(new URL(ctl.apiBase).port);
  const doors: Door[] = [
    { name: 'gRPC', connect: () => netConnect(grpcPort, '127.0.0.1'), tls: true },
    { name: 'API', connect: () => netConnect(apiPort, '127.0.0.1'), tls: true },
    { name: 'plugin', connect: () => netConnect(socket), tls: false },
  ];
  const ctlPid = ctl.daemon.child.pid!;
  const agentPid = agent.daemon.child.pid!;
  // Let start-up settle before taking the descriptor baseline.
  await new Promise((r) => setTimeout(r, 1000));
  const fdBase = { controller: openFds(ctlPid), agent: openFds(agentPid) };

  const names: string[] = [];
  let injected = 0;
  let worstCanary = 0;
  let canaries = 0;
  let canaryFailures = 0;
  let worstRecover = 0;
  const notClosed: Record<string, number> = { gRPC: 0, API: 0, plugin: 0 };
  /** The slowest close by the server, per door and kind (ms). */
  const slowestClose: Record<string, number> = {};
  for (let round = 1; round <= ROUNDS; round++) {
    const floods: Promise<Outcome & { door: string; kind: string }>[] = [];
    for (const door of doors) {
      const tag = (kind: string) => (o: Outcome) => ({ ...o, door: door.name, kind });
      for (let i = 0; i < GARBAGE; i++) floods.push(attempt(door, (s) => s.end(randomBytes(4096)), 10_000).then(tag('garbage')));
      for (let i = 0; i < OVERSIZED; i++) floods.push(attempt(door, (s) => writeOversized(s, 8 * 1024 * 1024), 15_000).then(tag('oversized')));
      for (let i = 0; i < HALF_OPEN; i++) {
        // Half of them never speak; the other half stop mid-handshake (or mid-request on the plugin).
        const act = i % 2 === 0 ? () => undefined : (s: Socket) => s.write(door.tls ? STUCK_HANDSHAKE : 'POST /AuthZPlugin.AuthZReq HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"Requ');
        floods.push(attempt(door, act, HALF_OPEN_HOLD_MS).then(tag('half-open')));
      }
    }
    injected += floods.length;

    // Real work during the flood: reports through the agent, reads through the API.
    let flooding = true;
    const settled = Promise.all(floods).finally(() => (flooding = false));
    let i = 0;
    while (flooding) {
      const name = `fb-conn-r${round}-${i++}`;
      const t0 = Date.now();
      try {
        const [p, a] = await Promise.all([pluginCreate(socket, name, { timeoutMs: 5_000 }), ctl.get('/v1/agents')]);
        if (p.allow !== false || a.status !== 200) canaryFailures++;
      } catch {
        canaryFailures++;
      }
      names.push(name);
      canaries++;
      worstCanary = Math.max(worstCanary, Date.now() - t0);
      await new Promise((r) => setTimeout(r, 250));
    }
    const outcomes = await settled;
    for (const o of outcomes) {
      // The plugin holds silent connections up to 120 s by design (dockerd is its only client).
      if (!o.closedByServer && !(o.door === 'plugin' && o.kind === 'half-open')) notClosed[o.door]!++;
      if (o.closedByServer) slowestClose[`${o.door} ${o.kind}`] = Math.max(slowestClose[`${o.door} ${o.kind}`] ?? 0, o.ms);
    }
    t.ok(alive(ctlPid) && alive(agentPid), `round ${round}: both processes up`);
    const since = Date.now();
    const want = new Set(names);
    const seen = await waitFor(`round ${round}: every report stored`, async () => {
      const items = (await ctl.get<{ items: { containerName: string }[] }>('/v1/violations?limit=1000')).body.items;
      const s = new Set(items.filter((v) => want.has(v.containerName)).map((v) => v.containerName));
      return s.size === want.size ? s : undefined;
    }, 20_000).catch(() => new Set<string>());
    worstRecover = Math.max(worstRecover, Date.now() - since);
    t.equal(names.filter((n) => !seen.has(n)).length, 0, `round ${round}: no report lost`);
  }
  t.equal(canaryFailures, 0, `every real request answered during the floods (${canaries} canaries, slowest ${worstCanary} ms)`);
  t.ok(worstCanary < CANARY_BOUND_MS * 3, `slowest canary ${worstCanary} ms`);
  t.same(notClosed, { gRPC: 0, API: 0, plugin: 0 }, 'every garbage, oversized or stuck connection was closed by the server');
  t.notOk(agent.daemon.lines.some((l) => l['msg'] === 'controller link down'), 'the agent\'s link never dropped');
  // No descriptor leak: back near the baseline once the connections are gone.
  const fds = await waitFor('descriptors back to the baseline', async () => {
    const now = { controller: openFds(ctlPid), agent: openFds(agentPid) };
    return now.controller <= fdBase.controller + 5 && now.agent <= fdBase.agent + 5 ? now : undefined;
  }, 15_000).catch(() => ({ controller: openFds(ctlPid), agent: openFds(agentPid) }));
  t.ok(fds.controller <= fdBase.controller + 5 && fds.agent <= fdBase.agent + 5, `open descriptors: controller ${fdBase.controller} → ${fds.controller}, agent ${fdBase.agent} → ${fds.agent}`);
  const lost = names.length - (await ctl.get<{ items: { containerName: string }[] }>('/v1/violations?limit=1000')).body.items.filter((v) => names.includes(v.containerName)).length;
  recordFault({
    fault: `garbage/oversized/half-open connections on gRPC, API and plugin socket (${(GARBAGE + OVERSIZED + HALF_OPEN)} per door per round, at once)`,
    injected,
    produced: names.length,
    delivered: names.length - lost,
    lost,
    recoverMs: worstRecover,
    items: 'violation reports made during the floods',
    note: `slowest real request during the floods ${worstCanary} ms; closed by the server within: ${Object.entries(slowestClose).map(([k, v]) => `${k} ${v} ms`).join(', ')} (plugin half-open: held by design, 120 s idle); fds controller ${fdBase.controller}→${fds.controller}, agent ${fdBase.agent}→${fds.agent}`,
  });
});
