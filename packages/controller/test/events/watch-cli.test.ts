// `bulkhead watch` against the real HTTPS API: prints events live, one line each or NDJSON,
// filters by type prefix, resumes with --since-id, stops after --count, and exits 1 when
// its key is revoked (the stream's `stream.end` reason `credential`).
import t from 'tap';
import { main, type OpsCliIo } from '../../../cli/src/main';
import { startSecureApi } from '../auth/fixtures/secure-api';
import { eventually } from '../alerts/fixtures/alerting';

t.test('bulkhead watch', async (t) => {
  const api = await startSecureApi({ events: { pollMs: 50, heartbeatMs: 200 } });
  t.teardown(() => api.close());
  const env = { BULKHEAD_API: api.url, BULKHEAD_CA: api.caFile, BULKHEAD_API_KEY: api.admin.plaintext };
  const start = (argv: string[], e: Record<string, string> = env) => {
    const r = { out: '', err: '', code: undefined as number | undefined };
    const io: Partial<OpsCliIo> = { out: (s) => void (r.out += s), err: (s) => void (r.err += s), env: e };
    const done = main(argv, io).then((c) => void (r.code = c));
    return { r, done };
  };

  const table = start(['watch', '--count', '3']);
  const json = start(['--json', 'watch', '--type', 'alert.violation', '--count', '1']);
  await new Promise((res) => setTimeout(res, 500)); // both connected
  api.events.record({ type: 'container.updated', project: 'payments', agentId: 'agt_one', data: { containerId: 'a'.repeat(64), name: '/web', image: 'nginx:1.27', state: 'running' } });
  await api.alerting.alerts.raise({ type: 'violation', message: 'web runs privileged', project: 'payments', agentId: 'agt_one', severity: 'critical', ruleId: 'host.privileged' });
  api.events.record({ type: 'agent.offline', agentId: 'agt_two', everyScope: true, data: { hostname: 'two', message: 'agent two is offline' } });
  await api.events.flush();
  await Promise.all([table.done, json.done]);
  t.equal(table.r.code, 0, table.r.err);
  const lines = table.r.out.trimEnd().split('\n');
  t.equal(lines.length, 3, 'exits after --count events');
  t.match(lines[0], /^\S+Z {2}#\d+ {2}container\.updated {2}payments {2}web running \(nginx:1\.27\) on agt_one$/);
  t.match(lines[1], /alert\.violation {2}payments {2}\[critical\] web runs privileged$/);
  t.match(lines[2], /agent\.offline {2}- {2}agent two is offline$/);
  t.equal(json.r.code, 0, json.r.err);
  const obj = JSON.parse(json.r.out.trim()) as Record<string, unknown>;
  t.match(obj, { type: 'alert.violation', project: 'payments', severity: 'critical', ruleId: 'host.privileged' }, '--json: the event as NDJSON, only the type asked for');

  // --since-id: the events after that id, then exits at --count.
  const firstId = /#(\d+)/.exec(lines[0]!)![1]!;
  const resumed = start(['watch', '--since-id', firstId, '--count', '2']);
  await resumed.done;
  t.equal(resumed.r.code, 0, resumed.r.err);
  t.same(resumed.r.out.trimEnd().split('\n'), lines.slice(1), 'resumed: exactly the two events after it');

  // Revoked key: the stream ends, the command exits 1 saying why.
  const ops = await api.call('POST', '/v1/keys', { body: { name: 'ops', role: 'operator' } });
  const w = start(['watch'], { ...env, BULKHEAD_API_KEY: ops.json.key });
  await new Promise((res) => setTimeout(res, 400));
  t.equal((await api.call('DELETE', `/v1/keys/${ops.json.id}`)).status, 200);
  await eventually('watch exits', () => w.r.code !== undefined, 10_000);
  t.equal(w.r.code, 1);
  t.match(w.r.err, /BK_ERR_UNAUTHENTICATED.*revoked or expired/);
  // And a wrong key is refused at once.
  const bad = start(['watch'], { ...env, BULKHEAD_API_KEY: 'bk_ak_0000000000000000_' + '0'.repeat(64) });
  await bad.done;
  t.equal(bad.r.code, 1);
  t.match(bad.r.err, /BK_ERR_UNAUTHENTICATED/);
});
