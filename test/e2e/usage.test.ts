// End to end, cgroup quotas: live usage drives policy and reaches
// the controller. Real processes only — a private dockerd, the built agent
// (usage sampled from cgroup files every second, reports every 2 s) and the
// built controller with its HTTPS API:
//   - a policy with live-usage rules in enforce mode, applied through the API;
//   - a CPU-burning busybox (`--cpus 0.5`) is paused (engine inspect
//     State.Paused) within the rule's window — not before it has held for
//     forSeconds — and the violation, source "usage", is recorded at the
//     controller; a quiet container under the same rule is left alone;
//   - a fork-happy container (pids above 50 % of its limit) and one filling
//     tmpfs (memory above 50 % of its limit) are paused by their rules;
//   - usage shows up in GET /v1/containers.
// Timing appears only as generous hang bounds (60 s).
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { startPrivateEngine } from '../helpers/engine';
import { apiRequest, waitFor } from '../helpers/processes';
import { enrollAgent, startController, tempRoot } from './stack';

const FOR_SECONDS = 5;
// A burner gets its whole 0.5 CPU on an idle host; 50 % of it leaves room for a busy CI
// machine (2 cores shared with other test files), far above a sleeping container's 0 %.
const CPU_ABOVE = 50;
const HANG_MS = 60_000;

interface Violation {
  ruleId: string;
  containerId: string;
  containerName: string;
  mode: string;
  source: string;
  message: string;
  at: string;
  action: { type: string; result: string; error: string; durationMs: number } | null;
}

interface Usage {
  cpuPercent: number;
  cpuPercentOfQuota: number | null;
  memoryBytes: number;
  memoryLimitBytes: number;
  pids: number;
  pidsLimit: number;
  takenAt: string;
}

interface Item {
  id: string;
  name: string;
  state: string;
  usage: Usage | null;
}

function policy(run: string): string {
  const rule = (id: string, kase: string, check: string) => `    - id: ${id}
      description: ${id} is paused when it hogs its quota.
      severity: medium
      mode: enforce
      action: { type: pause }
      scope: { containerLabels: { bk-usage-run: "${run}", bk-usage-case: ${kase} } }
      check: ${check}
`;
  return `apiVersion: bulkhead.dev/v1
kind: Policy
metadata: { name: e2e-usage }
spec:
  rules:
${rule('usage.cpu', 'cpu', `{ type: cpu-usage, abovePercent: ${CPU_ABOVE}, forSeconds: ${FOR_SECONDS} }`)}${rule('usage.pids', 'pids', '{ type: pids-usage, abovePercent: 50, forSeconds: 2 }')}${rule('usage.memory', 'mem', '{ type: memory-usage, abovePercent: 50, forSeconds: 2 }')}`;
}

t.test('live usage: a CPU burner is paused within its rule\'s window, a quiet one is not, usage reaches the API', async (t) => {
  // A dedicated engine: the agent samples and acts on every container it sees.
  const engine = await startPrivateEngine({ t });
  const root = tempRoot();
  t.teardown(root.cleanup);
  const ctl = await startController(root.dir, { heartbeatInterval: '500ms', offlineAfter: '5s' });
  t.teardown(() => ctl.stop());

  const run = randomBytes(4).toString('hex');
  const applied = await apiRequest<{ version: number }>(ctl.apiBase, 'PUT', '/v1/policies', ctl.caPem, ctl.adminKey, policy(run), 'application/yaml');
  t.equal(applied.status, 200, `policy with usage rules accepted: ${JSON.stringify(applied.body)}`);

  const agent = await enrollAgent(ctl, root.dir, 'agent', engine.dockerHost, ['--no-authz', '--usage-interval', '1s', '--usage-report-interval', '2s']);
  agent.start();
  t.teardown(() => agent.stop());
  await waitFor('agent applied the policy', async () => {
    const r = await ctl.get<{ policy: { version: number; applied: boolean } | null; status: string }>(`/v1/agents/${agent.agentId}`);
    return r.body.status === 'online' && r.body.policy?.version === applied.body.version && r.body.policy.applied;
  }, 30_000);
  await agent.daemon.waitForLog((l) => l['msg'] === 'usage monitor started');

  const labels = (kase: string) => ['--label', `bk-usage-run=${run}`, '--label', `bk-usage-case=${kase}`];
  const start = async (name: string, args: string[]): Promise<string> => {
    const r = await engine.docker(['run', '-d', '--network', 'none', '--name', name, ...args]);
    t.equal(r.code, 0, `${name} started: ${r.stderr.trim()}`);
    return r.stdout.trim();
  };
  const quietId = await start(`bk-quiet-${run}`, [...labels('cpu'), '--cpus', '0.5', engine.image, 'sleep', '600']);
  const burnerId = await start(`bk-burner-${run}`, [...labels('cpu'), '--cpus', '0.5', engine.image, 'sh', '-c', 'while :; do :; done']);
  const forkerId = await start(`bk-forker-${run}`, [...labels('pids'), '--pids-limit', '32', engine.image, 'sh', '-c', 'for i in $(seq 24); do sleep 600 & done; wait']);
  const fillerId = await start(`bk-filler-${run}`, [
    ...labels('mem'), '--memory', '64m', '--tmpfs', '/fill:size=60m', engine.image, 'sh', '-c', 'dd if=/dev/zero of=/fill/blob bs=1M count=40 2>/dev/null; sleep 600',
  ]);
  const inspect = async (id: string, fmt: string) => (await engine.docker(['inspect', '-f', fmt, id])).stdout.trim();
  const startedAt = Date.parse(await inspect(burnerId, '{{.State.StartedAt}}'));

  // Usage reaches the controller while everything runs.
  const items = async () => (await ctl.get<{ items: Item[] }>(`/v1/containers?agent=${agent.agentId}&limit=100`)).body.items;
  const quietUsage = await waitFor('usage of the quiet container in GET /v1/containers', async () => (await items()).find((c) => c.id === quietId && c.usage)?.usage, HANG_MS);
  t.ok(quietUsage.memoryBytes > 0, `memory working set reported (${quietUsage.memoryBytes} bytes)`);
  t.ok(quietUsage.pids >= 1, 'its sleep counted');
  t.equal(quietUsage.memoryLimitBytes, 0, 'no memory limit: 0');
  t.ok(quietUsage.cpuPercentOfQuota !== null && quietUsage.cpuPercentOfQuota < CPU_ABOVE, `a quota, and far below it (${quietUsage.cpuPercentOfQuota} %)`);
  t.ok(Math.abs(Date.now() - Date.parse(quietUsage.takenAt)) < HANG_MS, 'taken recently');

  // The burner is paused by the cpu-usage rule.
  await waitFor('burner paused', async () => (await inspect(burnerId, '{{.State.Paused}}')) === 'true', HANG_MS, 200);
  t.pass('the CPU burner is paused (engine inspect State.Paused)');
  const violations = async () => (await ctl.get<{ items: Violation[] }>('/v1/violations?limit=200')).body.items;
  const cpuRec = await waitFor('cpu violation recorded', async () => (await violations()).find((v) => v.ruleId === 'usage.cpu' && v.containerId === burnerId), HANG_MS);
  t.match(cpuRec, { mode: 'enforce', source: 'usage', containerName: `bk-burner-${run}`, action: { type: 'pause', result: 'ok' } }, 'recorded with what was done');
  t.match(cpuRec.message, /CPU at \d+(\.\d+)? % of its CPU quota \(0\.5 CPUs\) for [\d.]+ s/, 'the message says how far above, for how long');
  const heldMs = Date.parse(cpuRec.at) - startedAt;
  t.ok(heldMs >= FOR_SECONDS * 1000 - 300 && heldMs < HANG_MS, `paused after the rule's ${FOR_SECONDS} s had passed, not before (${heldMs} ms after start)`);

  // The other rules.
  await waitFor('forker paused', async () => (await inspect(forkerId, '{{.State.Paused}}')) === 'true', HANG_MS, 200);
  t.pass('pids above 50 % of the limit: paused');
  await waitFor('filler paused', async () => (await inspect(fillerId, '{{.State.Paused}}')) === 'true', HANG_MS, 200);
  t.pass('memory above 50 % of the limit: paused');
  const recs = await waitFor('pids and memory violations recorded', async () => {
    const all = await violations();
    const p = all.find((v) => v.ruleId === 'usage.pids' && v.containerId === forkerId);
    const m = all.find((v) => v.ruleId === 'usage.memory' && v.containerId === fillerId);
    return p && m ? { p, m } : undefined;
  }, HANG_MS);
  t.match(recs.p, { source: 'usage', action: { type: 'pause', result: 'ok' } }, 'pids: recorded with its action');
  t.match(recs.p.message, /processes\/threads, \d+(\.\d+)? % of its pids limit 32/, 'pids: the message names the count and the limit');
  t.match(recs.m.message, /memory at \d+(\.\d+)? % of its limit \([\d.]+ MiB of 64 MiB\)/, 'memory: the message names the working set and the limit');

  // The quiet container ran under the same rule the whole time and was left alone.
  t.equal(await inspect(quietId, '{{.State.Running}} {{.State.Paused}}'), 'true false', 'the quiet container still runs, not paused');
  t.notOk((await violations()).some((v) => v.containerId === quietId), 'and has no violation');

  // A paused container is no longer sampled: its usage goes from the API.
  await waitFor('burner usage gone', async () => (await items()).find((c) => c.id === burnerId)?.usage === null, HANG_MS);
  t.pass('paused: no usage reported any more');

  await engine.docker(['rm', '-f', quietId, burnerId, forkerId, fillerId]);
});
