// The host audit report's way from the agent to the controller, in one
// process with real pieces: the agent's real ControllerLink and AuditOutbox
// (a file in its state directory), the controller's real gRPC server with
// mutual TLS, SQLite store and AlertService. Only the Docker side is absent:
// reports are built by hand. Covers delivery and acknowledgement, lockdown
// findings becoming alerts once, a controller outage (nothing lost, only the
// latest report sent), an agent restart with an unsent report, and a
// malformed report that is dropped without breaking the stream.
import t from 'tap';
import { EventEmitter } from 'node:events';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createLogger, type ContainerDelta, type ContainerFacts } from '../../packages/shared/src/index';
import { initPki } from '../../packages/controller/src/pki/data-dir';
import { openStore } from '../../packages/controller/src/store/open-store';
import { startGrpcServer, type RunningGrpcServer } from '../../packages/controller/src/grpc/grpc-server';
import { createJoinToken } from '../../packages/controller/src/enrollment/join-tokens';
import { Alerting } from '../../packages/controller/src/alerts/alerting';
import { enroll } from '../../packages/agent/src/enroll/enroll';
import { ControllerLink, type LinkInventory } from '../../packages/agent/src/link/controller-link';
import { AuditOutbox } from '../../packages/agent/src/link/audit-outbox';
import type { Store } from '../../packages/controller/src/store/store';
import { NO_AUTHZ, SOCKET_MODE, SOCKET_MOUNT, USERNS, auditReport } from '../../packages/controller/test/host-audit/fixtures/reports';
import { waitFor } from '../helpers/processes';

const silent = createLogger({ name: 'test', level: 'silent' });

const inventory: LinkInventory = {
  inventory: (): ContainerFacts[] => [],
  subscribe(l: (d: ContainerDelta) => void) {
    const ee = new EventEmitter();
    ee.on('d', l);
    return () => ee.off('d', l);
  },
};
const host = async () => ({ hostname: 'web-01', osPlatform: 'linux', cpus: 2, memoryBytes: 1024, dockerVersion: '20.10', cgroupVersion: 1 });

t.test('audit reports: delivered, acknowledged, alerted once, coalesced across an outage', async (t) => {
  const dir = t.testdir();
  const pki = await initPki(join(dir, 'ctl'), ['localhost', '127.0.0.1']);
  const store: Store = await openStore({ kind: 'sqlite', path: join(dir, 'ctl', 'bulkhead.db') });
  const alerting = Alerting.start({ store: store.alerts!, logger: silent, deliver: false });
  const link = { heartbeatIntervalMs: 150, offlineAfterMs: 600, alerts: alerting.alerts };
  let server: RunningGrpcServer = await startGrpcServer({ listen: '127.0.0.1:0', store, pki, logger: silent, link });
  const addr = `127.0.0.1:${server.port}`;
  t.teardown(async () => {
    await server.shutdown();
    await alerting.stop();
    await store.close();
  });

  const { token } = await createJoinToken(store, 60_000, new Date());
  const stateDir = join(dir, 'agent');
  const creds = await enroll({ controller: addr, token, caFingerprint: pki.caFingerprint, stateDir, hostname: 'web-01' });
  const agentId = creds.identity.agentId;
  const slot = join(stateDir, 'spool', 'audit.json');
  const startLink = async () => {
    const outbox = await AuditOutbox.open({ path: slot, logger: silent });
    const l = new ControllerLink({ credentials: creds, inventory, hostFacts: host, logger: silent, minBackoffMs: 50, maxBackoffMs: 300, auditOutbox: outbox });
    l.start();
    return { l, outbox };
  };
  let { l: agentLink, outbox } = await startLink();
  t.teardown(() => agentLink.stop());
  await waitFor('connected', async () => agentLink.state === 'connected');

  const lockdownAlerts = async () => (await store.alerts!.listAlerts({ types: ['lockdown_finding'], limit: 100, offset: 0 })).map((a) => `${a.severity} ${a.ruleId}`).sort();
  const latest = async () => (await store.hostAudits!.latestHostAudit(agentId))?.takenAt.getTime();
  const T0 = Date.now() - 3600_000;

  // 1. Delivered; acknowledged once stored, which empties the outbox.
  await agentLink.reportAudit(auditReport({ takenAtMs: T0, findings: [SOCKET_MODE, SOCKET_MOUNT, NO_AUTHZ] }));
  await waitFor('stored', async () => (await latest()) === T0);
  await waitFor('acknowledged', async () => outbox.pending === undefined && !existsSync(slot));
  await alerting.alerts.flush();
  t.same(await lockdownAlerts(), ['critical container.docker-socket', 'critical docker-socket.mode', 'medium daemon.no-authorization-plugin'], 'one alert per finding, severity from the finding');
  const stored = await store.alerts!.listAlerts({ types: ['lockdown_finding'], limit: 10, offset: 0 });
  t.ok(stored.every((a) => a.agentId === agentId && a.host === 'web-01'), 'alerts carry the agent and its host name');
  t.equal(stored.find((a) => a.ruleId === 'container.docker-socket')?.containerName, 'ci-runner');

  // 2. The next report: one new finding alerts; a finding already known does not; a resend changes nothing.
  const r2 = auditReport({ takenAtMs: T0 + 60_000, findings: [SOCKET_MOUNT, NO_AUTHZ, USERNS] });
  await agentLink.reportAudit(r2);
  await waitFor('second stored', async () => (await latest()) === T0 + 60_000);
  await agentLink.reportAudit(r2);
  await waitFor('resend acknowledged', async () => outbox.pending === undefined);
  await alerting.alerts.flush();
  t.same(await lockdownAlerts(), ['critical container.docker-socket', 'critical docker-socket.mode', 'medium daemon.no-authorization-plugin', 'medium daemon.userns-remap']);
  t.same((await store.hostAudits!.latestHostAudit(agentId))?.summary.resolvedFindings, ['docker-socket.mode|/var/run/docker.sock']);

  // 3. Controller outage: two audits meanwhile; only the latest waits (on disk) and arrives.
  await server.shutdown();
  await waitFor('link notices', async () => agentLink.state !== 'connected', 5000);
  await agentLink.reportAudit(auditReport({ takenAtMs: T0 + 120_000, findings: [NO_AUTHZ] }));
  await agentLink.reportAudit(auditReport({ takenAtMs: T0 + 180_000, findings: [NO_AUTHZ, USERNS] }));
  t.equal(Number(JSON.parse(readFileSync(slot, 'utf8')).takenAtMs), T0 + 180_000, 'the newest report replaced the unsent one on disk');

  // 4. …and the agent restarts before the controller is back: the report survives in the outbox.
  agentLink.stop();
  ({ l: agentLink, outbox } = await startLink());
  t.equal(Number(outbox.pending?.takenAtMs), T0 + 180_000, 'recovered from the state directory');
  server = await startGrpcServer({ listen: addr, store, pki, logger: silent, link });
  await waitFor('reconnected', async () => agentLink.state === 'connected', 15_000);
  await waitFor('latest delivered after the outage', async () => (await latest()) === T0 + 180_000, 10_000);
  await waitFor('outbox emptied', async () => outbox.pending === undefined && !existsSync(slot));
  t.same((await store.hostAudits!.listHostAudits(agentId)).map((h) => h.takenAt.getTime() - T0), [180_000, 60_000, 0], 'the superseded report was never sent');

  // 5. A malformed report is acknowledged and dropped; the stream stays up and the next one is stored.
  await agentLink.reportAudit({ ...auditReport({ takenAtMs: T0 + 240_000 }), cisJson: '{"not":"a report"}' });
  await waitFor('malformed acknowledged', async () => outbox.pending === undefined);
  t.equal(await latest(), T0 + 180_000, 'not stored');
  t.equal(agentLink.state, 'connected');
  await agentLink.reportAudit(auditReport({ takenAtMs: T0 + 300_000, findings: [] }));
  await waitFor('stored after the malformed one', async () => (await latest()) === T0 + 300_000);
  t.same((await store.hostAudits!.latestHostAudit(agentId))?.summary.resolvedFindings.sort(), ['daemon.no-authorization-plugin|', 'daemon.userns-remap|']);
  await alerting.alerts.flush();
  t.equal((await lockdownAlerts()).length, 4, 'resolved findings raise nothing');
});
