// The authorization plugin in front of a REAL dockerd started with
// `--authorization-plugin=<unique name>`: the docker CLI's own requests are
// allowed or refused by the policy, with the plugin's message.
import t from 'tap';
import { createLogger, parsePolicy, type Policy } from '@bulkhead/shared';
import { startPrivateEngine, LABEL_ARGS, type PrivateEngine } from '../../../../test/helpers/engine';
import { createDockerClient } from '../../src/docker/client';
import { ContainerWatcher } from '../../src/docker/watcher';
import { AuthzDecider, type AuthzDecisionReport } from '../../src/authz/authz-decider';
import { AuthzPlugin, DOCKER_PLUGIN_DIR } from '../../src/authz/plugin-server';
import type { PolicyState } from '../../src/policy/policy-holder';

const logger = createLogger({ name: 'authz-e2e', level: process.env['BULKHEAD_LOG_LEVEL'] ?? 'silent' });
const PLUGIN = `bulkhead-test-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
const SECRET = 'Tr0ub4dor-3-e2e';

const POLICY: Policy = parsePolicy(`
apiVersion: bulkhead.dev/v1
kind: Policy
metadata: { name: e2e }
spec:
  rules:
    - id: host.privileged
      description: no privileged containers
      severity: critical
      mode: enforce
      action: { type: kill }
      check: { type: privileged }
    - id: quota.memory
      description: memory limit at most 256m
      severity: medium
      mode: enforce
      action: { type: limit, limits: { memory: 256m } }
      check: { type: resource-limits, requireCpu: false, requirePids: false, maxMemory: 256m }
    - id: images.secrets
      description: no secrets in env, labels, command, history
      severity: high
      mode: monitor
      action: { type: alert }
      check: { type: secrets }
`, 'e2e.yaml');

t.test('authz plugin against a real dockerd', async (t) => {
  let policy: PolicyState = { policy: POLICY, scans: new Map(), version: 12, source: 'bundle', sha256: 'e2e', projectLabel: 'bulkhead.project' };
  const reports: AuthzDecisionReport[] = [];
  let watcher: ContainerWatcher | undefined;
  let docker: ReturnType<typeof createDockerClient> | undefined;
  const decider = new AuthzDecider({
    policy: () => policy,
    // The watcher exists only once the engine does; until then nothing is in the inventory.
    containers: { get: (id) => watcher?.get(id), inventory: () => watcher?.inventory() ?? [] },
    docker: { getImage: (ref) => docker!.getImage(ref), getContainer: (id) => docker!.getContainer(id), getExec: (id) => docker!.getExec(id) },
    logger,
    onDecision: (r) => reports.push(r),
  });
  // The plugin must answer before dockerd needs it (engine.sh imports the test images through it).
  const plugin = await AuthzPlugin.start({ socketPath: `${DOCKER_PLUGIN_DIR}/${PLUGIN}.sock`, evaluate: (req) => decider.decide(req), logger });
  let engine: PrivateEngine | undefined;
  // Engine first, plugin last: stopping the engine goes through the plugin.
  t.teardown(async () => {
    await watcher?.stop();
    await engine?.stop();
    await plugin.stop();
  });
  engine = await startPrivateEngine({ dockerdArgs: [`--authorization-plugin=${PLUGIN}`], t });
  docker = createDockerClient({ dockerHost: engine.dockerHost });
  watcher = await ContainerWatcher.start({ docker, logger, reconcileIntervalMs: 0 });
  const e = engine;
  const run = (args: string[]) => e.docker(['run', '--rm', '--network', 'none', ...LABEL_ARGS, ...args]);

  await t.test('a privileged docker run is denied with the rule in the message', async (t) => {
    const r = await run(['--privileged', '--memory', '64m', e.image, 'true']);
    t.not(r.code, 0);
    t.match(r.stderr, new RegExp(`authorization denied by plugin ${PLUGIN}: Bulkhead policy "e2e" v12 denies this request`));
    t.match(r.stderr, /\[host\.privileged\] \(critical\)/);
    t.match(r.stderr, /add an exemption to rule host\.privileged in the policy \(bulkhead policy apply\)/);
    const rep = reports.find((x) => x.denied && x.route === 'create');
    t.ok(rep, 'reported');
    t.same(rep!.violations.map((v) => [v.ruleId, v.source, v.denied, v.policyVersion]), [['host.privileged', 'authz', true, 12]]);
  });

  await t.test('a compliant docker run is allowed', async (t) => {
    const r = await run(['--memory', '64m', e.image, 'sh', '-c', 'echo hello']);
    t.equal(r.code, 0, r.stderr);
    t.equal(r.stdout.trim(), 'hello');
  });

  await t.test('a monitor-mode rule allows but reports (without the secret)', async (t) => {
    const before = reports.length;
    const r = await run(['--memory', '64m', '-e', `DB_URL=postgres://app:${SECRET}@db/app`, e.image, 'true']);
    t.equal(r.code, 0, r.stderr);
    const rep = reports.slice(before).find((x) => x.route === 'create');
    t.ok(rep);
    t.equal(rep!.denied, false);
    t.same(rep!.violations.map((v) => [v.ruleId, v.mode, v.denied]), [['images.secrets', 'monitor', false]]);
    t.match(rep!.violations[0]!.evidenceJson, /env:DB_URL/);
    t.notOk(JSON.stringify(reports).includes(SECRET));
  });

  const name = `bk-authz-${process.pid}`;
  await e.dockerOk(['run', '-d', '--name', name, '--network', 'none', ...LABEL_ARGS, '--memory', '64m', e.image, 'sleep', '120']);

  await t.test('exec --privileged (or as root with a root rule) is denied; a plain exec is not', async (t) => {
    const denied = await e.docker(['exec', '--privileged', name, 'true']);
    t.not(denied.code, 0);
    t.match(denied.stderr, /authorization denied by plugin .*\[host\.privileged\]/s);
    const plain = await e.docker(['exec', name, 'true']);
    t.equal(plain.code, 0, plain.stderr);
    t.ok(reports.some((x) => x.route === 'exec' && x.denied));
  });

  await t.test('an update raising limits above the max is denied; within it, allowed', async (t) => {
    const up = await e.docker(['update', '--memory', '512m', '--memory-swap', '1g', name]);
    t.not(up.code, 0);
    t.match(up.stderr, /\[quota\.memory\].*exceeds the maximum 256 MiB/s);
    const ok = await e.docker(['update', '--memory', '128m', '--memory-swap', '256m', name]);
    t.equal(ok.code, 0, ok.stderr);
    t.equal(await e.dockerOk(['inspect', '-f', '{{.HostConfig.Memory}}', name]), String(128 * 1024 * 1024));
  });

  await t.test('start: a container created before the policy is refused once the policy is in force', async (t) => {
    const saved = policy;
    policy = { ...policy, policy: undefined, source: 'none' };
    const old = `bk-authz-old-${process.pid}`;
    await e.dockerOk(['create', '--name', old, '--network', 'none', ...LABEL_ARGS, '--privileged', '--memory', '64m', e.image, 'sleep', '60']);
    policy = saved;
    const r = await e.docker(['start', old]);
    t.not(r.code, 0);
    t.match(r.stderr, /\[host\.privileged\]/);
    t.equal(await e.dockerOk(['inspect', '-f', '{{.State.Status}}', old]), 'created');
  });

  await t.test('decision latency', async (t) => {
    const ms = reports.map((r) => r.decisionMs).sort((a, b) => a - b);
    t.comment(`authz decisions with findings: n=${ms.length} max=${ms.at(-1)?.toFixed(2)} ms; plugin stats ${JSON.stringify(plugin.stats)}`);
    t.equal(plugin.stats.failOpen, 0, 'nothing failed open');
    t.ok(ms.every((x) => x < 1000));
  });
});
