// End to end: a policy applied at the controller reaches the real
// agent process, which (1) refuses a breaking `docker run` at the Docker API
// through the authorization plugin a real dockerd calls, (2) acts on a
// running container when a rule is switched to enforce, and (3) records every
// finding and action at the controller. Dry-run hits the live fleet without
// changing it.
import t from 'tap';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { ENGINE_SCRIPT, runDocker } from '../helpers/engine';
import { join } from 'node:path';
import { OPS_BIN, apiRequest, run, waitFor } from '../helpers/processes';
import { enrollAgent, startController, tempRoot } from './stack';

const IMAGE = 'bulkhead-test/busybox:1';

function policy(legacyMode: 'monitor' | 'enforce'): string {
  return `apiVersion: bulkhead.dev/v1
kind: Policy
metadata: { name: e2e }
spec:
  rules:
    - id: host.privileged
      description: No privileged containers.
      severity: critical
      mode: enforce
      action: { type: kill }
      check: { type: privileged }
    - id: quotas.memory
      description: Legacy apps must set a memory limit.
      severity: medium
      mode: ${legacyMode}
      action: { type: pause }
      scope: { containerLabels: { app: legacy } }
      check: { type: resource-limits, requireMemory: true, requireCpu: false, requirePids: false }
`;
}

function engineScript(cmd: 'start' | 'stop', dir: string, dockerdArgs = ''): Promise<number> {
  return new Promise((resolve) => {
    const child = spawn('bash', [ENGINE_SCRIPT, cmd, dir], { stdio: 'ignore', env: { ...process.env, BULKHEAD_ENGINE_DOCKERD_ARGS: dockerdArgs } });
    child.on('exit', (code) => resolve(code ?? -1));
  });
}

interface Violation {
  id: string;
  ruleId: string;
  containerName: string;
  mode: string;
  source: string;
  denied: boolean;
  action: { type: string; result: string; error: string; durationMs: number } | null;
  message: string;
}

t.test('policy is enforced at the Docker API and after start', async (t) => {
  const root = tempRoot();
  t.teardown(root.cleanup);
  const ctl = await startController(root.dir, { heartbeatInterval: '500ms', offlineAfter: '3s' });
  t.teardown(() => ctl.stop());
  const put = (yaml: string) => apiRequest<{ version: number }>(ctl.apiBase, 'PUT', '/v1/policies', ctl.caPem, ctl.adminKey, yaml, 'application/yaml');

  const applied = await put(policy('monitor'));
  t.equal(applied.status, 200, `policy accepted: ${JSON.stringify(applied.body)}`);
  const v1 = applied.body.version;

  // The plugin must be serving before the engine that uses it starts.
  const pluginName = `bk-e2e-${process.pid}-${randomBytes(3).toString('hex')}`;
  const pluginSocket = `/run/docker/plugins/${pluginName}.sock`;
  const engineDir = mkdtempSync('/tmp/bkp-');
  const dockerHost = `unix://${engineDir}/docker.sock`;
  const agent = await enrollAgent(ctl, root.dir, 'agent', dockerHost, ['--authz-socket', pluginSocket]);
  agent.start();
  await waitFor('plugin socket', async () => existsSync(pluginSocket), 20_000);
  t.equal(await engineScript('start', engineDir, `--authorization-plugin=${pluginName}`), 0, 'engine with the plugin started');
  // Teardown runs last-registered first: stop the engine while the plugin still answers.
  t.teardown(async () => {
    await agent.stop();
    rmSync(pluginSocket, { force: true });
  });
  t.teardown(async () => {
    await engineScript('stop', engineDir);
    rmSync(engineDir, { recursive: true, force: true });
  });
  const docker = (args: string[]) => runDocker(dockerHost, args);

  await waitFor('agent applied the policy', async () => {
    const r = await ctl.get<{ policy: { version: number; applied: boolean } | null; status: string }>(`/v1/agents/${agent.agentId}`);
    return r.body.status === 'online' && r.body.policy?.version === v1 && r.body.policy.applied;
  }, 30_000);
  t.pass('the agent reports the policy version it applied');

  // (1) Prevention.
  const denied = await docker(['run', '-d', '--network', 'none', '--privileged', '--name', 'bk-priv', IMAGE, 'sleep', '60']);
  t.not(denied.code, 0, 'privileged run refused');
  t.match(denied.stderr, /authorization denied by plugin/);
  t.match(denied.stderr, /host\.privileged/, 'the denial names the rule');
  t.match(denied.stderr, /exemption/, 'and says how to get an exemption');
  const ok = await docker(['run', '-d', '--network', 'none', '--memory', '64m', '--name', 'bk-ok', IMAGE, 'sleep', '600']);
  t.equal(ok.code, 0, `compliant run allowed: ${ok.stderr}`);

  // A monitor-mode breach is allowed and recorded.
  const legacy = await docker(['run', '-d', '--network', 'none', '--label', 'app=legacy', '--name', 'bk-legacy', IMAGE, 'sleep', '600']);
  t.equal(legacy.code, 0, 'monitor-mode rule does not block');

  const violations = async () => (await ctl.get<{ items: Violation[] }>('/v1/violations?limit=200')).body.items;
  const deniedRec = await waitFor('denial recorded', async () => (await violations()).find((v) => v.ruleId === 'host.privileged' && v.denied));
  t.match(deniedRec, { source: 'authz', mode: 'enforce' });
  const monitorRec = await waitFor('monitor finding recorded', async () => (await violations()).find((v) => v.ruleId === 'quotas.memory' && v.containerName === 'bk-legacy'));
  t.equal(monitorRec.mode, 'monitor');

  // Operators acknowledge violations: the `bulkhead` CLI, as a process, against the running controller.
  const cliEnv = { BULKHEAD_API: ctl.apiBase, BULKHEAD_CA: ctl.caFile, BULKHEAD_API_KEY: ctl.adminKey, XDG_CONFIG_HOME: join(root.dir, 'cli-cfg') };
  const ack = await run(OPS_BIN, ['violations', 'ack', deniedRec.id, '--comment', 'e2e: expected denial'], cliEnv);
  t.equal(ack.code, 0, `bulkhead violations ack: ${ack.stderr}`);
  t.match(ack.stdout, /^Acknowledged:\s+by admin \(ak_[0-9a-f]{16}\) at /m, 'who acknowledged');
  const acked = await run(OPS_BIN, ['violations', '--acknowledged'], cliEnv);
  t.equal(acked.code, 0, acked.stderr);
  t.match(acked.stdout, new RegExp(`^${deniedRec.id}\\s+.*\\s+authz\\s+denied\\s+admin \\d+[sm] ago\\s+host\\.privileged`, 'm'), 'the table shows who acknowledged it');
  t.notMatch(acked.stdout, monitorRec.id, 'only acknowledged ones');
  const open = JSON.parse((await run(OPS_BIN, ['--json', 'violations', '--unacknowledged'], cliEnv)).stdout) as { items: Violation[] };
  t.ok(open.items.some((v) => v.id === monitorRec.id) && !open.items.some((v) => v.id === deniedRec.id), '--unacknowledged leaves it out');
  const twice = await run(OPS_BIN, ['violations', 'ack', deniedRec.id], cliEnv);
  t.equal(twice.code, 1, 'a second acknowledgement is refused');
  t.match(twice.stderr, /BK_ERR_CONFLICT: .*already acknowledged by admin/);
  // The audit log is written from a queue after the answer: wait for both entries.
  const entries = await waitFor('acknowledgements audited', async () => {
    const trail = await run(OPS_BIN, ['--json', 'audit-log', '--action', 'violations.acknowledge'], cliEnv);
    if (trail.code !== 0) throw new Error(`bulkhead audit-log: ${trail.stderr}`);
    const items = (JSON.parse(trail.stdout) as { items: Array<{ status: number; target: Record<string, string> }> }).items;
    return items.length >= 2 ? items : undefined;
  });
  t.same(entries.map((e) => [e.status, e.target['id']]).sort(), [[200, deniedRec.id], [409, deniedRec.id]], 'both calls are in the audit log');
  t.equal((await run(OPS_BIN, ['audit-log', 'verify'], cliEnv)).code, 0, 'and the chain verifies');

  // (3) Dry-run: a candidate that pauses legacy apps would hit bk-legacy only, and changes nothing.
  const dry = await apiRequest<Record<string, unknown>>(ctl.apiBase, 'POST', '/v1/policies:dry-run', ctl.caPem, ctl.adminKey, policy('enforce'), 'application/yaml');
  t.equal(dry.status, 200, 'dry-run answered');
  const dryText = JSON.stringify(dry.body);
  t.match(dryText, /bk-legacy/, 'dry-run hits the live container');
  t.notMatch(dryText, /"bk-ok"/, 'and not the compliant one');
  const still = await docker(['inspect', '-f', '{{.State.Status}}', 'bk-legacy']);
  t.equal(still.stdout.trim(), 'running', 'dry-run changed nothing');

  // (2) Reaction: switch the rule to enforce; the running container is paused.
  const v2 = (await put(policy('enforce'))).body.version;
  t.ok(v2 > v1, 'new policy version');
  await waitFor('legacy container paused', async () => (await docker(['inspect', '-f', '{{.State.Paused}}', 'bk-legacy'])).stdout.trim() === 'true', 30_000);
  t.pass('enforced rule paused the running container (engine inspect)');
  const action = await waitFor('action recorded', async () =>
    (await violations()).find((v) => v.ruleId === 'quotas.memory' && v.mode === 'enforce' && v.action?.type === 'pause'),
  );
  t.equal(action.action?.result, 'ok', 'the action and its result are on record');
  t.ok((action.action?.durationMs ?? -1) >= 0, 'with its timing');
  t.equal((await docker(['inspect', '-f', '{{.State.Running}} {{.State.Paused}}', 'bk-ok'])).stdout.trim(), 'true false', 'compliant container untouched');

  await docker(['rm', '-f', 'bk-ok', 'bk-legacy']);
});
