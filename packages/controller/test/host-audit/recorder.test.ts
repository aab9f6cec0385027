// What the controller does with a host audit report: shape checks (a bad
// report is dropped, never stored), storing the latest per agent with a
// bounded history (real SQLite store through the real migrations), and one
// lockdown_finding alert per finding that is new since the agent's previous
// report — none for resends, late reports or findings already known.
// recorder.postgres.test.ts runs every assertion on PostgreSQL too.
import t, { type Test } from 'tap';
import { createLogger, type AuditReport__Output } from '@bulkhead/shared';
import { openTestStore } from '../store/fixtures/backend';
import type { Store } from '../../src/store/store';
import type { AlertInput } from '../../src/alerts/alert-types';
import { MIGRATIONS } from '../../src/store/migrations';
import { alertForFinding, findingKey, parseHostAudit, recordHostAudit, summarize, HOST_AUDIT_LIMITS, type RecordHostAuditOptions } from '../../src/host-audit/host-audit-recorder';
import { KyselyHostAuditStore } from '../../src/host-audit/kysely-host-audit-store';
import { HYGIENE, MODE_FIX, NO_AUTHZ, SOCKET_MODE, SOCKET_MOUNT, USERNS, auditReport, cisReport } from './fixtures/reports';

const T0 = Date.parse('2026-11-28T12:00:00Z');
const out = (r: ReturnType<typeof auditReport>) => r as unknown as AuditReport__Output;

async function setup(t: Test): Promise<{ store: Store; alerts: AlertInput[]; logs: string[]; opts: RecordHostAuditOptions }> {
  const store = await openTestStore(t); // SQLite here; PostgreSQL in recorder.postgres.test.ts
  await store.insertAgent({
    id: 'agt_one', hostname: 'web-01', status: 'online', agentVersion: '1', host: null, certSerial: '01', certNotAfter: new Date(T0 + 1e9),
    enrolledAt: new Date(T0), lastSeenAt: null, connectedAt: null, revokedAt: null, containerCount: 0,
  });
  const alerts: AlertInput[] = [];
  const logs: string[] = [];
  const logger = createLogger({ name: 't', level: 'debug', destination: { write: (s: string) => void logs.push(s) } });
  const opts: RecordHostAuditOptions = {
    store,
    logger,
    now: () => new Date(T0 + 5000),
    alerts: {
      raise: async (i) => {
        alerts.push(i);
        return { alertId: 'alr_x', grouped: false, count: 1, deliveries: 0, skipped: false };
      },
    },
  };
  return { store, alerts, logs, opts };
}

t.test('migration 0006_audit sits between 0005 and 0007 and creates host_audits', async (t) => {
  const names = Object.keys(MIGRATIONS).sort();
  t.ok(names.includes('0006_audit'));
  t.ok(names.indexOf('0006_audit') > names.indexOf('0004_auth'));
  if (names.includes('0007_violation_ack')) t.ok(names.indexOf('0006_audit') < names.indexOf('0007_violation_ack'));
  const { store } = await setup(t);
  t.same(await store.hostAudits!.listHostAudits('agt_one'), [], 'table exists, empty');
});

t.test('parseHostAudit refuses what it cannot store or serve', async (t) => {
  const good = auditReport({ takenAtMs: T0, findings: [SOCKET_MODE] });
  const bad = (patch: Partial<ReturnType<typeof auditReport>>) => parseHostAudit(out({ ...good, ...patch }));
  const err = (v: ReturnType<typeof parseHostAudit>) => ('error' in v ? v.error : 'ok');
  t.equal(err(parseHostAudit(undefined)), 'audit message without a body');
  t.match(err(bad({ takenAtMs: 0 })), /not a time/);
  t.match(err(bad({ cisJson: 'x'.repeat(HOST_AUDIT_LIMITS.cis + 1) })), /cis_json is \d+ characters/);
  t.match(err(bad({ cisJson: '{' })), /cis_json is not JSON/);
  t.match(err(bad({ lockdownJson: 'nope' })), /lockdown_json is not JSON/);
  t.match(err(bad({ fixesJson: '[' })), /fixes_json is not JSON/);
  t.match(err(bad({ hygieneJson: '{' })), /hygiene_json is not JSON/);
  t.match(err(bad({ cisJson: '[]' })), /not a CIS report/);
  t.match(err(bad({ cisJson: JSON.stringify({ tests: [{ results: [] }], summary: {} }) })), /section without id/);
  t.match(err(bad({ cisJson: JSON.stringify({ tests: [{ id: '5', results: [{ id: '5.1', desc: 'd', result: 'FAIL' }] }], summary: {} }) })), /section 5 holds a result without/);
  t.match(err(bad({ lockdownJson: '{}' })), /lockdown_json is not an array/);
  t.match(err(bad({ lockdownJson: '[{"severity":"high"}]' })), /without id or title/);
  t.match(err(bad({ lockdownJson: '[{"id":"x","title":"t","severity":"urgent"}]' })), /severity "urgent"/);
  t.match(err(bad({ lockdownJson: '[{"id":"x","title":"t","severity":"low","subject":3}]' })), /non-string subject/);
  t.match(err(bad({ fixesJson: '[1]' })), /not an array of fix records/);
  t.match(err(bad({ hygieneJson: '[]' })), /hygiene_json is not an object/);

  const p = parseHostAudit(out({ ...good, fixesJson: '', hygieneJson: '' }));
  if ('error' in p) throw new Error(p.error);
  t.same(p.fixes, [], 'empty fixes_json is no fixes');
  t.equal(p.hygiene, null, 'empty hygiene_json is no hygiene');
  t.equal(p.raw.fixes, '[]');
  t.equal(p.raw.hygiene, null);
  t.equal(p.takenAt.getTime(), T0);
  // A finding without detail is accepted with an empty one; numbers that are not numbers count 0.
  const loose = parseHostAudit(out({ ...good, lockdownJson: '[{"id":"x","title":"t","severity":"low"}]', cisJson: JSON.stringify({ tests: [], summary: { pass: 'many' } }) }));
  if ('error' in loose) throw new Error(loose.error);
  t.equal(loose.lockdown[0]!.detail, '');
  t.equal(loose.cis.summary.pass, 0);
});

t.test('summary, keys and the alert a finding raises', async (t) => {
  const p = parseHostAudit(out(auditReport({ takenAtMs: T0, findings: [SOCKET_MODE, SOCKET_MOUNT, NO_AUTHZ], fixes: [MODE_FIX, { fix: 'containerdSocketMode', changed: false, error: 'EPERM', message: 'm' }], hygiene: HYGIENE })));
  if ('error' in p) throw new Error(p.error);
  const s = summarize(p, ['a'], ['b']);
  t.same(s.lockdown, { total: 3, critical: 2, high: 0, medium: 1, low: 0, info: 0 });
  t.same(s.fixes, { applied: 1, failed: 1 });
  t.same(s.hygiene, { images: 5, stale: 2, dangling: 1, staleBytes: 3 * 1024 * 1024 });
  t.same(s.cis, { checks: 7, score: -1, pass: 2, warn: 3, info: 1, note: 1, percent: 40 });
  t.equal(s.score, 40);
  t.same([s.newFindings, s.resolvedFindings], [['a'], ['b']]);
  t.equal(summarize({ ...p, hygiene: { no: 'counts' } }, [], []).hygiene, null, 'hygiene without counts (an error) summarizes to null');

  t.equal(findingKey(SOCKET_MODE), 'docker-socket.mode|/var/run/docker.sock');
  t.equal(findingKey(NO_AUTHZ), 'daemon.no-authorization-plugin|');
  const when = new Date(T0);
  t.same(alertForFinding('agt_one', 'web-01', p.lockdown[1]!, when), {
    type: 'lockdown_finding', severity: 'critical', time: when, agentId: 'agt_one', host: 'web-01', ruleId: 'container.docker-socket',
    containerId: SOCKET_MOUNT.subject, containerName: 'ci-runner', image: 'ci:1', message: 'A container mounts the Docker socket: container "ci-runner" mounts /var/run/docker.sock',
  }, 'a container finding names the container');
  const a = alertForFinding('agt_one', undefined, p.lockdown[2]!, when);
  t.same(a, { type: 'lockdown_finding', severity: 'medium', time: when, agentId: 'agt_one', ruleId: 'daemon.no-authorization-plugin', message: 'No authorization plugin' });
  t.notOk('containerId' in alertForFinding('agt_one', 'h', p.lockdown[0]!, when), 'a socket finding is not about a container');
});

t.test('recordHostAudit: store, diff against the previous report, alert once per new finding', async (t) => {
  const { store, alerts, logs, opts } = await setup(t);
  const r1 = await recordHostAudit(opts, 'agt_one', out(auditReport({ takenAtMs: T0, findings: [SOCKET_MODE, SOCKET_MOUNT, NO_AUTHZ], hygiene: HYGIENE })));
  t.same(r1, { stored: true, newFindings: [findingKey(SOCKET_MODE), findingKey(SOCKET_MOUNT), findingKey(NO_AUTHZ)], resolvedFindings: [], alerts: 3 });
  t.same(alerts.map((a) => [a.type, a.severity, a.ruleId, a.host]), [
    ['lockdown_finding', 'critical', 'docker-socket.mode', 'web-01'],
    ['lockdown_finding', 'critical', 'container.docker-socket', 'web-01'],
    ['lockdown_finding', 'medium', 'daemon.no-authorization-plugin', 'web-01'],
  ], 'first report: every finding is new');
  const latest = await store.hostAudits!.latestHostAudit('agt_one');
  t.equal(latest?.takenAt.getTime(), T0);
  t.equal(latest?.receivedAt.getTime(), T0 + 5000);
  t.equal(JSON.parse(latest!.hygieneJson!).counts.stale, 2);

  // The same report again (the agent's ack was lost): nothing changes, nothing is raised.
  t.same(await recordHostAudit(opts, 'agt_one', out(auditReport({ takenAtMs: T0, findings: [SOCKET_MODE] }))), { stored: false, reason: 'duplicate', newFindings: [], resolvedFindings: [], alerts: 0 });
  t.equal(alerts.length, 3);

  // The socket was fixed; userns-remap is new.
  const r2 = await recordHostAudit(opts, 'agt_one', out(auditReport({ takenAtMs: T0 + 3600_000, findings: [SOCKET_MOUNT, NO_AUTHZ, USERNS], fixes: [MODE_FIX] })));
  t.same(r2.newFindings, [findingKey(USERNS)]);
  t.same(r2.resolvedFindings, [findingKey(SOCKET_MODE)]);
  t.equal(alerts.length, 4);
  t.equal(alerts[3]!.ruleId, 'daemon.userns-remap');
  t.match(logs.join(''), /lockdown findings resolved/);
  t.match(logs.join(''), /agent applied a lockdown fix/);

  // A report older than the latest (delivered late) goes to the history only.
  const late = await recordHostAudit(opts, 'agt_one', out(auditReport({ takenAtMs: T0 + 1800_000, findings: [SOCKET_MODE, SOCKET_MOUNT] })));
  t.same(late, { stored: true, newFindings: [], resolvedFindings: [], alerts: 0 });
  t.equal((await store.hostAudits!.latestHostAudit('agt_one'))?.takenAt.getTime(), T0 + 3600_000, 'still the newest');
  t.same((await store.hostAudits!.listHostAudits('agt_one')).map((h) => h.takenAt.getTime()), [T0 + 3600_000, T0 + 1800_000, T0], 'history newest first');

  // Malformed: logged and dropped.
  t.same(await recordHostAudit(opts, 'agt_one', out({ ...auditReport({ takenAtMs: T0 + 7200_000 }), lockdownJson: '{' })), { stored: false, reason: 'malformed', newFindings: [], resolvedFindings: [], alerts: 0 });
  t.match(logs.join(''), /dropped a malformed host audit report/);

  // Without a host audit store (a test fake) there is nothing to do.
  t.same((await recordHostAudit({ ...opts, store: { getAgent: store.getAgent.bind(store) } }, 'agt_one', out(auditReport({ takenAtMs: T0 })))).reason, 'unsupported');

  // Without an alert sink reports are still stored.
  const quiet = await recordHostAudit({ ...opts, alerts: undefined }, 'agt_one', out(auditReport({ takenAtMs: T0 + 9000_000, findings: [SOCKET_MODE] })));
  t.equal(quiet.stored, true);
  t.equal(quiet.alerts, 0);
  t.equal(alerts.length, 4);

  // A raise that fails is logged, not thrown.
  const failing = await recordHostAudit({ ...opts, alerts: { raise: async () => Promise.reject(new Error('db down')) } }, 'agt_one', out(auditReport({ takenAtMs: T0 + 9900_000, findings: [USERNS] })));
  t.equal(failing.alerts, 1);
  await new Promise((r) => setImmediate(r));
  t.match(logs.join(''), /raising an alert failed/);
});

t.test('history is bounded per agent; an unreadable previous report makes everything new', async (t) => {
  const { store, alerts, opts } = await setup(t);
  for (let i = 0; i < 5; i++) await recordHostAudit({ ...opts, keep: 3 }, 'agt_one', out(auditReport({ takenAtMs: T0 + i * 1000, findings: [NO_AUTHZ] })));
  t.same((await store.hostAudits!.listHostAudits('agt_one')).map((h) => h.takenAt.getTime()), [T0 + 4000, T0 + 3000, T0 + 2000]);
  t.same((await store.hostAudits!.listHostAudits('agt_one', 1)).length, 1);
  t.equal(alerts.length, 1, 'a finding present all along alerts once');
  await t.rejects(store.hostAudits!.insertHostAudit((await store.hostAudits!.latestHostAudit('agt_one'))!, 0), /at least 1/);

  // Another agent's history is its own.
  await recordHostAudit(opts, 'agt_two', out(auditReport({ takenAtMs: T0, findings: [NO_AUTHZ] })));
  t.equal(alerts.length, 2);
  t.equal((await store.hostAudits!.listHostAudits('agt_one')).length, 3);

  // A stored report whose findings cannot be read (not an array): everything counts as new.
  const direct = new KyselyHostAuditStore((store as unknown as { db: ConstructorParameters<typeof KyselyHostAuditStore>[0] }).db);
  const prev = (await direct.latestHostAudit('agt_one'))!;
  await direct.insertHostAudit({ ...prev, takenAt: new Date(T0 + 10_000), lockdownJson: '{"not":"a list"}' });
  t.equal((await recordHostAudit(opts, 'agt_one', out(auditReport({ takenAtMs: T0 + 11_000, findings: [NO_AUTHZ] })))).alerts, 1);
  await direct.insertHostAudit({ ...prev, takenAt: new Date(T0 + 12_000), lockdownJson: 'garbage' });
  t.equal((await recordHostAudit(opts, 'agt_one', out(auditReport({ takenAtMs: T0 + 13_000, findings: [NO_AUTHZ] })))).alerts, 1);
  t.ok(cisReport({}).summary, 'fixture: an empty report is still a report');
});
