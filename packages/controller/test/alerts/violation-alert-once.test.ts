// A violation report raises its alert exactly once, even when the controller dies between
// storing the violation and committing the alert. The agent drops a report from its spool
// once the violation is stored (the ack), so nobody would send it again: the stored row says
// its alert is still due (alertPending), the alert's own transaction clears that, and a
// controller starting up raises what is still due — before it serves any stream.
// (Found while writing test/faults/kill-controller.test.ts; the window is a few milliseconds
// wide, so that test's SIGKILLs seldom land in it: this test sets up the state a crash leaves.)
import t from 'tap';
import * as grpc from '@grpc/grpc-js';
import { join } from 'node:path';
import { createLogger, describeCert, issueAgentCertWithDates, loadProto, type AgentMessage, type ControllerMessage__Output } from '@bulkhead/shared';
import { Alerting } from '../../src/alerts/alerting';
import { initPki } from '../../src/pki/data-dir';
import { openStore } from '../../src/store/open-store';
import { startGrpcServer } from '../../src/grpc/grpc-server';
import type { ViolationRecord } from '../../src/store/store';
import { eventually } from './fixtures/alerting';

type Call = grpc.ClientDuplexStream<AgentMessage, ControllerMessage__Output>;

const hostFacts = (hostname: string) => ({
  hostname, osPlatform: 'linux', osDistro: 'Debian GNU/Linux', osRelease: '12', kernel: '6.1.0', arch: 'x64', cpus: 2, memoryBytes: 2 ** 31,
  dockerVersion: '27.3.1', dockerApiVersion: '1.47', cgroupVersion: 2, cgroupDriver: 'systemd', labels: {},
});

t.test('a violation stored without its alert gets it at the next start, once', async (t) => {
  const dir = t.testdir();
  const logger = createLogger({ name: 'violation-alert-once', level: 'silent' });
  const pki = await initPki(join(dir, 'ctl'), ['localhost', '127.0.0.1']);
  const store = await openStore({ kind: 'sqlite', path: join(dir, 'ctl', 'bulkhead.db') });
  const alerting = Alerting.start({ store: store.alerts!, logger, deliver: false });
  t.teardown(async () => {
    await alerting.stop();
    await store.close();
  });
  const agentId = 'agt_0123456789abcdef0123';
  const now = Date.now();
  const cert = await issueAgentCertWithDates(pki.ca, agentId, new Date(now - 60_000), new Date(now + 86_400_000));
  await store.insertAgent({
    id: agentId, hostname: 'prod-7', status: 'offline', agentVersion: '', host: null, certSerial: describeCert(cert.certPem).serial,
    certNotAfter: describeCert(cert.certPem).notAfter, enrolledAt: new Date(now), lastSeenAt: null, connectedAt: null, revokedAt: null, containerCount: 0,
  });
  const alerts = () => store.alerts!.listAlerts({ agentId });

  // What a controller killed after the violation's insert and before its alert's commit leaves behind.
  const stored: ViolationRecord = {
    id: 'v-crash', agentId, containerId: 'a'.repeat(64), containerName: '/job', imageRef: 'busybox:1', project: '', ruleId: 'faults.root', severity: 'high',
    mode: 'enforce', source: 'reaction', message: 'container job runs as root', evidenceJson: '[]', denied: false,
    action: { type: 'kill', result: 'ok', error: '', durationMs: 12 }, at: new Date(now - 1000), policyVersion: 3, exemptedBy: '', alertPending: true,
  };
  t.equal(await store.insertViolation(stored), true);
  t.same((await store.listAlertPendingViolations(10)).map((v) => v.id), ['v-crash'], 'the row says its alert is due');

  const start = () => startGrpcServer({ listen: '127.0.0.1:0', store, pki, logger, link: { heartbeatIntervalMs: 200, offlineAfterMs: 1000, alerts: alerting.alerts } });
  let server = await start();
  await alerting.alerts.flush();
  const first = await alerts();
  t.equal(first.length, 1, 'the start raised the missing alert');
  t.match(first[0], { type: 'action', action: 'kill', result: 'ok', ruleId: 'faults.root', containerName: '/job', host: 'prod-7', severity: 'high' });
  t.same(await store.listAlertPendingViolations(10), [], 'and cleared the mark with it');

  // A second start raises nothing more.
  await server.shutdown();
  server = await start();
  await alerting.alerts.flush();
  t.equal((await alerts()).length, 1, 'a later start does not raise it again');

  // Live: a report is stored with the mark, its alert clears it; the same report re-sent after a reconnect raises nothing.
  const proto = loadProto();
  const client = new proto.bulkhead.v1.AgentLink(`127.0.0.1:${server.port}`, grpc.credentials.createSsl(Buffer.from(pki.ca.certPem), Buffer.from(cert.keyPem), Buffer.from(cert.certPem)));
  t.teardown(async () => {
    client.close();
    await server.shutdown();
  });
  const report: AgentMessage['violation'] = {
    id: 'v-live', containerId: 'b'.repeat(64), containerName: '/web', imageRef: 'busybox:1', project: '', ruleId: 'faults.root', severity: 'high',
    mode: 'enforce', source: 'reaction', message: 'container web runs as root', evidenceJson: '[]', denied: false,
    action: { type: 'kill', result: 'ok', error: '', durationMs: 9, detail: '' }, atMs: Date.now(), policyVersion: 3, exemptedBy: '',
  };
  for (let round = 0; round < 2; round++) {
    const call = client.Connect() as Call;
    const received: ControllerMessage__Output[] = [];
    call.on('data', (m: ControllerMessage__Output) => received.push(m));
    call.on('error', () => undefined);
    call.write({ seq: 1, hello: { agentId, agentVersion: '0.1.0-test', host: hostFacts('prod-7'), startedAtMs: Date.now() } });
    call.write({ seq: 2, violation: report });
    await eventually('violation acked', () => received.some((m) => m.body === 'ack' && Number(m.ack?.seq) === 2));
    await alerting.alerts.flush();
    call.end();
  }
  const live = (await alerts()).filter((a) => a.containerName === '/web');
  t.equal(live.length, 1, 'one alert for the live report, re-sent or not');
  t.equal(live[0]!.count, 1, 'the re-send was not folded in as a repeat either');
  t.same(await store.listAlertPendingViolations(10), [], 'no violation is left with its alert due');
});
