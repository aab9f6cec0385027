// The agent link and the alert service record the fleet's events (what GET /v1/events
// serves): an agent connecting, its snapshot (one event per project), containers created,
// changing state and removed (each in its container's project), a violation's alert, and
// the agent going offline — over the real gRPC server with real mutual TLS and a raw
// AgentLink client as the agent, the controller's FleetEvents recorder on a real store.
import t from 'tap';
import * as grpc from '@grpc/grpc-js';
import { join } from 'node:path';
import { createLogger, describeCert, issueAgentCertWithDates, loadProto, type AgentMessage, type ControllerMessage__Output } from '@bulkhead/shared';
import { Alerting } from '../../src/alerts/alerting';
import { initPki } from '../../src/pki/data-dir';
import { openStore } from '../../src/store/open-store';
import { startGrpcServer } from '../../src/grpc/grpc-server';
import { FleetEvents } from '../../src/events/fleet-events';
import { eventually } from '../alerts/fixtures/alerting';
import { facts } from '../store/fixtures/records';

type Call = grpc.ClientDuplexStream<AgentMessage, ControllerMessage__Output>;

const hostFacts = (hostname: string) => ({
  hostname, osPlatform: 'linux', osDistro: 'Debian GNU/Linux', osRelease: '12', kernel: '6.1.0', arch: 'x64', cpus: 2, memoryBytes: 2 ** 31,
  dockerVersion: '27.3.1', dockerApiVersion: '1.47', cgroupVersion: 2, cgroupDriver: 'systemd', labels: {},
});

t.test('the link records agent, container and alert events', async (t) => {
  const dir = t.testdir();
  const logger = createLogger({ name: 'link-events-test', level: 'silent' });
  const pki = await initPki(join(dir, 'ctl'), ['localhost', '127.0.0.1']);
  const store = await openStore({ kind: 'sqlite', path: join(dir, 'ctl', 'bulkhead.db') });
  const events = new FleetEvents({ store: store.events!, logger });
  const alerting = Alerting.start({ store: store.alerts!, logger, deliver: false, events });
  const server = await startGrpcServer({ listen: '127.0.0.1:0', store, pki, logger, link: { heartbeatIntervalMs: 200, offlineAfterMs: 800, alerts: alerting.alerts, events } });
  t.teardown(async () => {
    await server.shutdown();
    await alerting.stop();
    await events.stop();
    await store.close();
  });

  const agentId = 'agt_0123456789abcdef0123';
  const now = Date.now();
  const cert = await issueAgentCertWithDates(pki.ca, agentId, new Date(now - 60_000), new Date(now + 86_400_000));
  await store.insertAgent({
    id: agentId, hostname: 'prod-7', status: 'offline', agentVersion: '', host: null, certSerial: describeCert(cert.certPem).serial,
    certNotAfter: describeCert(cert.certPem).notAfter, enrolledAt: new Date(now), lastSeenAt: null, connectedAt: null, revokedAt: null, containerCount: 0,
  });
  const proto = loadProto();
  const client = new proto.bulkhead.v1.AgentLink(`127.0.0.1:${server.port}`, grpc.credentials.createSsl(Buffer.from(pki.ca.certPem), Buffer.from(cert.keyPem), Buffer.from(cert.certPem)));
  t.teardown(() => client.close());
  const call = client.Connect() as Call;
  const received: ControllerMessage__Output[] = [];
  call.on('data', (m: ControllerMessage__Output) => received.push(m));
  call.on('error', () => undefined);
  let seq = 0;
  const write = (m: Omit<AgentMessage, 'seq'>): number => {
    call.write({ seq: ++seq, ...m });
    return seq;
  };
  const acked = (n: number): boolean => received.some((m) => m.body === 'ack' && Number(m.ack?.seq) === n);
  const all = async () => {
    await events.flush();
    return store.events!.listEvents({ after: 0, limit: 1000 });
  };

  const hello = write({ hello: { agentId, agentVersion: '0.1.0-test', host: hostFacts('prod-7'), startedAtMs: Date.now() } });
  await eventually('hello acked', () => acked(hello));
  const beat = setInterval(() => write({ heartbeat: { sentAtMs: Date.now() } }), 100);
  t.teardown(() => clearInterval(beat));
  const web = facts({ id: 'a'.repeat(64), name: '/pay-web', labels: { 'bulkhead.project': 'payments' } });
  const db = facts({ id: 'b'.repeat(64), name: '/pay-db', project: 'payments' });
  const lone = facts({ id: 'c'.repeat(64), name: '/lone' });
  const snap = write({ snapshot: { containers: [web, db, lone] } });
  await eventually('snapshot acked', () => acked(snap));
  const up = write({ delta: { kind: 'UPSERT', containerId: web.id, container: { ...web, state: 'paused' } } });
  const rm = write({ delta: { kind: 'REMOVE', containerId: db.id } });
  await eventually('deltas acked', () => acked(up) && acked(rm));
  const v = write({
    violation: {
      id: 'v-1', containerId: web.id, containerName: '/pay-web', imageRef: 'busybox:1', project: 'payments', ruleId: 'host.privileged', severity: 'critical',
      mode: 'audit', source: 'reaction', message: 'container pay-web runs privileged', evidenceJson: '[]', denied: false, atMs: Date.now(), policyVersion: 1, exemptedBy: '',
    },
  });
  await eventually('violation acked', () => acked(v));
  await eventually('violation alert event', async () => (await all()).some((e) => e.type === 'alert.violation'));

  const evs = await all();
  t.same(evs.map((e) => e.seq), evs.map((_, i) => i + 1), 'ordered ids from 1');
  t.match(evs[0], { type: 'agent.online', agentId, project: '', everyScope: true, data: { hostname: 'prod-7' } });
  const snaps = evs.filter((e) => e.type === 'container.snapshot');
  t.same(snaps.map((e) => [e.project, e.data['containers']]).sort(), [['', 1], ['payments', 2]], 'one snapshot event per project, with counts');
  t.match(evs.find((e) => e.type === 'container.updated'), { project: 'payments', agentId, data: { containerId: web.id, name: '/pay-web', state: 'paused', image: 'busybox:1' } });
  t.match(evs.find((e) => e.type === 'container.removed'), { project: 'payments', data: { containerId: db.id, name: '/pay-db' } }, "a removed container keeps its project (scoped streams see it)");
  t.match(evs.find((e) => e.type === 'alert.violation'), { project: 'payments', agentId, data: { severity: 'critical', ruleId: 'host.privileged', containerName: '/pay-web', message: /runs privileged/ } });

  // The agent goes away: agent.offline once the grace has passed.
  clearInterval(beat);
  call.end();
  await eventually('offline event', async () => (await all()).some((e) => e.type === 'agent.offline'), 10_000);
  t.match((await all()).find((e) => e.type === 'agent.offline'), { agentId, project: '', everyScope: true, data: { message: /offline/ } });
});
