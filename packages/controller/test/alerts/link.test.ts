// The agent link raises alerts: a violation report becomes an alert (with the
// agent's host name), a stream that ends or heartbeats that stop raise
// agent_offline, and a reconnect after that raises agent_online — over the
// real gRPC server with real mutual TLS, a raw AgentLink client as the agent.
import t from 'tap';
import * as grpc from '@grpc/grpc-js';
import { join } from 'node:path';
import { createLogger, describeCert, issueAgentCertWithDates, loadProto, type AgentMessage, type ControllerMessage__Output } from '@bulkhead/shared';
import { Alerting } from '../../src/alerts/alerting';
import { initPki } from '../../src/pki/data-dir';
import { openStore } from '../../src/store/open-store';
import { startGrpcServer } from '../../src/grpc/grpc-server';
import { eventually } from './fixtures/alerting';

type Call = grpc.ClientDuplexStream<AgentMessage, ControllerMessage__Output>;

const hostFacts = (hostname: string) => ({
  hostname, osPlatform: 'linux', osDistro: 'Debian GNU/Linux', osRelease: '12', kernel: '6.1.0', arch: 'x64', cpus: 2, memoryBytes: 2 ** 31,
  dockerVersion: '27.3.1', dockerApiVersion: '1.47', cgroupVersion: 2, cgroupDriver: 'systemd', labels: {},
});

t.test('violations and agent offline/online become alerts', async (t) => {
  const dir = t.testdir();
  const logger = createLogger({ name: 'link-alerts-test', level: 'silent' });
  const pki = await initPki(join(dir, 'ctl'), ['localhost', '127.0.0.1']);
  const store = await openStore({ kind: 'sqlite', path: join(dir, 'ctl', 'bulkhead.db') });
  const alerting = Alerting.start({ store: store.alerts!, logger, deliver: false });
  const server = await startGrpcServer({ listen: '127.0.0.1:0', store, pki, logger, link: { heartbeatIntervalMs: 200, offlineAfterMs: 1000, alerts: alerting.alerts } });
  t.teardown(async () => {
    await server.shutdown();
    await alerting.stop();
    await store.close();
  });
  const addr = `127.0.0.1:${server.port}`;

  const agentId = 'agt_0123456789abcdef0123';
  const now = Date.now();
  const cert = await issueAgentCertWithDates(pki.ca, agentId, new Date(now - 60_000), new Date(now + 86_400_000));
  await store.insertAgent({
    id: agentId, hostname: 'prod-7', status: 'offline', agentVersion: '', host: null, certSerial: describeCert(cert.certPem).serial,
    certNotAfter: describeCert(cert.certPem).notAfter, enrolledAt: new Date(now), lastSeenAt: null, connectedAt: null, revokedAt: null, containerCount: 0,
  });
  const proto = loadProto();
  const client = new proto.bulkhead.v1.AgentLink(addr, grpc.credentials.createSsl(Buffer.from(pki.ca.certPem), Buffer.from(cert.keyPem), Buffer.from(cert.certPem)));
  t.teardown(() => client.close());

  const connect = () => {
    const call = client.Connect() as Call;
    const received: ControllerMessage__Output[] = [];
    call.on('data', (m: ControllerMessage__Output) => received.push(m));
    call.on('error', () => undefined);
    let seq = 0;
    const write = (m: Omit<AgentMessage, 'seq'>): number => {
      call.write({ seq: ++seq, ...m });
      return seq;
    };
    write({ hello: { agentId, agentVersion: '0.1.0-test', host: hostFacts('prod-7'), startedAtMs: Date.now() } });
    const acked = (n: number) => received.some((m) => m.body === 'ack' && Number(m.ack?.seq) === n);
    // Heartbeats keep the sweeper away; stop() leaves the stream open but silent.
    const beat = setInterval(() => write({ heartbeat: { sentAtMs: Date.now() } }), 150);
    const stop = () => clearInterval(beat);
    const end = () => {
      stop();
      call.end();
    };
    t.teardown(end);
    return { call, write, acked, stop, end };
  };
  const alerts = () => store.alerts!.listAlerts({ agentId });

  const a = connect();
  await eventually('hello acked', () => a.acked(1));
  await alerting.alerts.flush();
  t.same(await alerts(), [], 'a first connection raises nothing');

  const v = a.write({
    violation: {
      id: 'v-1', containerId: 'c'.repeat(64), containerName: '/web', imageRef: 'nginx:1.27', project: 'shop', ruleId: 'host.privileged', severity: 'critical',
      mode: 'enforce', source: 'reaction', message: 'container web runs privileged', evidenceJson: '[]', denied: false,
      action: { type: 'kill', result: 'ok', error: '', durationMs: 41, detail: '' }, atMs: Date.now(), policyVersion: 1, exemptedBy: '',
    },
  });
  await eventually('violation acked', () => a.acked(v));
  const [act] = await eventually('action alert', async () => ((await alerts()).length === 1 ? alerts() : undefined));
  t.match(act, { type: 'action', severity: 'critical', host: 'prod-7', containerName: '/web', ruleId: 'host.privileged', action: 'kill', result: 'ok' });

  // A restart (stream ends, reconnects within offlineAfter) raises nothing.
  a.end();
  const a2 = connect();
  await eventually('reconnected', () => a2.acked(1));
  await new Promise((r) => setTimeout(r, 1500));
  t.same((await alerts()).map((x) => x.type), ['action'], 'a quick reconnect is not an outage');

  // The agent goes away for longer than offlineAfter: agent_offline.
  a2.end();
  await eventually('offline alert', async () => (await alerts()).some((x) => x.type === 'agent_offline'));
  t.match((await alerts()).find((x) => x.type === 'agent_offline'), { severity: 'high', host: 'prod-7', message: /has not reconnected/ });
  // It comes back → agent_online.
  const b = connect();
  await eventually('online alert', async () => (await alerts()).some((x) => x.type === 'agent_online'));
  t.match((await alerts()).find((x) => x.type === 'agent_online'), { severity: 'info', host: 'prod-7', message: /back online/ });

  // Heartbeats stop (the stream stays open, silent) → the sweeper marks it offline.
  b.stop();
  await eventually('second offline alert', async () => (await alerts()).filter((x) => x.type === 'agent_offline').length === 2, 10_000);
  const off = (await alerts()).filter((x) => x.type === 'agent_offline');
  t.ok(off.some((x) => /no heartbeat since/.test(x.message)), 'the sweeper says why');
  b.end();
});
