// End to end, host audit with real processes: a PRIVATE dockerd
// whose socket is world-writable (chmod 0666) and a deliberately
// misconfigured container on it (CAP_SYS_ADMIN, the host's PID namespace,
// that engine's own socket mounted, no memory/CPU/pids limits, writable
// rootfs) → the built agent audits at start and reports → the built
// controller stores the report, raises lockdown_finding alerts, serves
// GET /v1/agents/{id}/audit (and ?format=cis) → `bulkhead audit HOST`.
// Then the socket fix: the agent restarts with --lockdown-fix
// docker-socket-mode WHILE THE CONTROLLER IS DOWN; the fix is applied
// (socket 0660, owner and group unchanged), the report waits in the agent's
// outbox and arrives when the controller is back, the fix recorded.
// (--privileged cannot run in this sandbox: runc cannot apply the full
// capability set here, so CAP_SYS_ADMIN stands in.)
import t from 'tap';
import { chmodSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { startPrivateEngine } from '../helpers/engine';
import { AGENT_BIN, Daemon, OPS_BIN, run, waitFor } from '../helpers/processes';
import { enrollAgent, startController, tempRoot } from './stack';

interface Finding { id: string; severity: string; subject?: string; fix?: string; evidence?: Record<string, unknown> }
interface CisResult { id: string; result: string; items?: string[]; details?: string }
interface Report {
  agentId: string;
  hostname: string;
  takenAt: string;
  score: number;
  summary: { newFindings: string[]; resolvedFindings: string[]; fixes: { applied: number; failed: number }; hygiene: { images: number } | null; cis: { warn: number } };
  lockdown: Finding[];
  fixes: Array<{ fix: string; path: string; changed: boolean; before?: { mode: string; uid: number; gid: number }; after?: { mode: string; uid: number; gid: number }; error?: string }>;
  cis: { dockerbenchsecurity: string; tests: Array<{ id: string; results: CisResult[] }> };
  hygiene: { counts: { images: number } } | null;
  history: Array<{ takenAt: string }>;
}

t.test('host audit: socket and container findings reach the controller; the socket fix is applied and recorded', async (t) => {
  const engine = await startPrivateEngine({ t });
  const sock = engine.socketPath;
  const root = tempRoot();
  t.teardown(root.cleanup);
  const ctl = await startController(root.dir, { heartbeatInterval: '500ms', offlineAfter: '3s' });
  t.teardown(() => ctl.stop());

  const owner = statSync(sock);
  chmodSync(sock, 0o666);
  const bad = `bk-audit-bad-${process.pid}`;
  const runBad = await engine.docker(['run', '-d', '--network', 'none', '--label', 'bulkhead.test=1', '--name', bad, '--cap-add', 'SYS_ADMIN', '--pid', 'host', '-v', `${sock}:/var/run/docker.sock`, engine.image, 'sleep', '600']);
  t.equal(runBad.code, 0, `misconfigured container started: ${runBad.stderr}`);
  const badId = runBad.stdout.trim();

  // --data-root-threshold 1: the engine's data root sits on a real filesystem, which is more than 1 % used.
  const agent = await enrollAgent(ctl, root.dir, 'agent1', engine.dockerHost, ['--audit-interval', '1h', '--data-root-threshold', '1']);
  agent.start();
  t.teardown(() => agent.stop());
  const auditPath = `/v1/agents/${agent.agentId}/audit`;

  // ---- the first report ----------------------------------------------------------------
  const report = await waitFor('audit report stored', async () => {
    const r = await ctl.get<Report>(auditPath);
    return r.status === 200 ? r.body : undefined;
  }, 90_000, 250);
  await agent.daemon.waitForLog((l) => l['msg'] === 'host audit done');

  const mode = report.lockdown.find((f) => f.id === 'docker-socket.mode');
  t.match(mode, { severity: 'critical', subject: sock, fix: 'dockerSocketMode' }, 'world-writable private socket: critical, fixable');
  t.match(mode?.evidence, { mode: '0666' });
  const mount = report.lockdown.find((f) => f.id === 'container.docker-socket');
  t.match(mount, { severity: 'critical', subject: badId }, 'the container mounting the socket');
  t.equal(mount?.evidence?.['name'], bad);
  t.ok(report.lockdown.some((f) => f.id === 'daemon.no-authorization-plugin'), 'no authorization plugin on this engine');
  t.same(report.fixes, [], 'no fix unless switched on');
  t.ok(report.summary.newFindings.includes(`docker-socket.mode|${sock}`), 'first report: every finding is new');
  t.ok(report.summary.hygiene && report.summary.hygiene.images >= 1, 'image hygiene summary included');

  const cis = new Map(report.cis.tests.flatMap((s) => s.results).map((r) => [r.id, r]));
  const warnFor = (id: string, item: RegExp): void => {
    const r = cis.get(id);
    t.equal(r?.result, 'WARN', `${id} WARN (${r?.details ?? 'missing'})`);
    t.ok((r?.items ?? []).some((i) => item.test(i)), `${id} names the container (${(r?.items ?? []).join(', ')})`);
  };
  const name = new RegExp(`^${bad}`);
  warnFor('5.4', new RegExp(`^${bad}.*SYS_ADMIN`)); // capabilities beyond the default set
  warnFor('5.11', name); // memory limit
  warnFor('5.12', name); // CPU
  warnFor('5.13', name); // read-only rootfs
  warnFor('5.16', name); // host PID namespace
  warnFor('5.29', name); // pids limit
  warnFor('5.32', name); // the Docker socket mounted
  t.equal(cis.get('5.10')?.result, 'PASS', '5.10 host network: --network none passes');
  t.equal(cis.get('5.5')?.result, 'PASS', '5.5 privileged: not privileged');
  t.equal(cis.get('3.16')?.result, 'WARN', '3.16 Docker socket permissions: 0666 is not 660 or stricter');

  const logJson = await ctl.get<{ dockerbenchsecurity: string; tests: unknown[]; checks: number; score: number }>(`${auditPath}?format=cis`);
  t.equal(logJson.status, 200);
  t.equal(logJson.body.dockerbenchsecurity, '1.6.0', '?format=cis: the log.json shape');
  t.same(logJson.body.tests, report.cis.tests);

  const unknown = await ctl.get<{ code: string }>('/v1/agents/agt_00000000000000000000/audit');
  t.equal(unknown.status, 404);
  t.equal(unknown.body.code, 'BK_ERR_NOT_FOUND');

  // ---- alerts ------------------------------------------------------------------------------
  const alerts = await waitFor('lockdown_finding alerts', async () => {
    const r = await ctl.get<{ items: Array<{ type: string; severity: string; ruleId: string; agentId: string; containerName: string | null }> }>(`/v1/alerts?type=lockdown_finding&agent=${agent.agentId}`);
    return r.body.items.some((a) => a.ruleId === 'docker-socket.mode') ? r.body.items : undefined;
  });
  t.match(alerts.find((a) => a.ruleId === 'docker-socket.mode'), { type: 'lockdown_finding', severity: 'critical', agentId: agent.agentId });
  t.match(alerts.find((a) => a.ruleId === 'container.docker-socket'), { severity: 'critical', containerName: bad });

  // ---- the data root filling up: a host finding with the audit report (a new one starts an audit) ----
  const dataRoot = (await engine.docker(['info', '--format', '{{.DockerRootDir}}'])).stdout.trim();
  const full = await waitFor('disk.data-root-full in an audit report', async () => {
    const r = await ctl.get<Report>(auditPath);
    return r.status === 200 ? r.body.lockdown.find((f) => f.id === 'disk.data-root-full') : undefined;
  }, 60_000, 250);
  t.match(full, { severity: 'high', subject: dataRoot }, 'the engine\'s data root, above 1 %');
  t.match(full?.evidence, { thresholdPercent: 1, aboveThreshold: true });
  const dataRootAlert = await waitFor('its lockdown_finding alert', async () => {
    const r = await ctl.get<{ items: Array<{ ruleId: string; severity: string }> }>(`/v1/alerts?type=lockdown_finding&agent=${agent.agentId}`);
    return r.body.items.find((a) => a.ruleId === 'disk.data-root-full');
  });
  t.equal(dataRootAlert.severity, 'high');

  // ---- the CLI, by host name ------------------------------------------------------------------
  const env = { BULKHEAD_API: ctl.apiBase, BULKHEAD_CA: ctl.caFile, BULKHEAD_API_KEY: ctl.adminKey };
  const cli = await run(OPS_BIN, ['audit', report.hostname], env);
  t.equal(cli.code, 0, cli.stderr);
  t.match(cli.stdout, new RegExp(`^critical\\s+docker-socket\\.mode\\s+${sock.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}\\s+new\\s+dockerSocketMode\\s+`, 'm'), 'the socket finding in the table');
  t.match(cli.stdout, /^critical\s+container\.docker-socket\s+[0-9a-f]{64}\s+new\s+-\s+/m);
  t.match(cli.stdout, /^CIS score:\s+[\d.]+ % of scored checks pass/m);
  t.match(cli.stdout, new RegExp(`^5\\.16\\s+WARN\\s+.*${bad}`, 'm'));
  const gate = await run(OPS_BIN, ['audit', agent.agentId, '--fail-on-finding', 'critical'], env);
  t.equal(gate.code, 4, '--fail-on-finding critical: exit 4');
  t.match(gate.stderr, /lockdown finding\(s\) at or above critical/);

  // ---- the socket fix, applied while the controller is down ------------------------------------
  await agent.stop();
  let fixed: Daemon | undefined;
  await ctl.restart(async () => {
    fixed = Daemon.start('agent1-fix', AGENT_BIN, [
      'run', '--state-dir', agent.stateDir, '--docker-host', engine.dockerHost, '--reconcile-interval', '5s',
      '--authz-socket', join(agent.stateDir, 'authz.sock'), '--metrics-listen', '127.0.0.1:0',
      '--audit-interval', '1h', '--lockdown-fix', 'docker-socket-mode',
    ]);
    const applied = await fixed.waitForLog((l) => typeof l['msg'] === 'string' && l['msg'].startsWith('lockdown fix applied'), 60_000);
    t.match(applied, { fix: 'dockerSocketMode', path: sock, before: { mode: '0666' }, after: { mode: '0660' } }, 'the agent logs the fix');
    await fixed.waitForLog((l) => l['msg'] === 'host audit done');
    const st = statSync(sock);
    t.equal(st.mode & 0o7777, 0o660, 'the private socket is 0660 now');
    t.equal(st.uid, owner.uid, 'owner unchanged');
    t.equal(st.uid, 0, 'root owns it');
    t.equal(st.gid, owner.gid, 'group unchanged (dockerd gave it root:docker)');
  });
  t.teardown(() => fixed?.stop());

  const after = await waitFor('the fixed report, delivered after the outage', async () => {
    const r = await ctl.get<Report>(auditPath);
    return r.status === 200 && r.body.takenAt !== report.takenAt ? r.body : undefined;
  }, 60_000, 250);
  t.match(after.fixes, [{ fix: 'dockerSocketMode', path: sock, changed: true, before: { mode: '0666' }, after: { mode: '0660' } }], 'the fix is recorded in the report');
  t.equal(after.fixes[0]?.error, undefined);
  t.equal(after.summary.fixes.applied, 1);
  t.notOk(after.lockdown.some((f) => f.id === 'docker-socket.mode'), 'the finding is gone after the fix');
  t.ok(after.summary.resolvedFindings.includes(`docker-socket.mode|${sock}`), 'and noted as resolved');
  t.ok(after.lockdown.some((f) => f.id === 'container.docker-socket'), 'the socket mount is a policy matter, not a fix');
  t.equal(new Map(after.cis.tests.flatMap((s) => s.results).map((r) => [r.id, r.result])).get('3.16'), 'PASS', '3.16 passes now');
  t.same(after.history.map((h) => h.takenAt), [after.takenAt, report.takenAt], 'history: newest first');
  t.equal((await engine.docker(['version', '--format', '{{.Server.Version}}'])).code, 0, 'the engine still answers on its socket');
});
