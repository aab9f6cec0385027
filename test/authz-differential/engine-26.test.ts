// The second engine version of the test infrastructure: Docker 26.1 (Debian
// trixie's, unpacked by scripts/engine-26.sh) starts as a private engine,
// runs and execs busybox containers, and consults an authorization plugin —
// the real Bulkhead one here, refusing a privileged `docker run`.
// It FAILS (never skips) where 26.1 cannot be had: see test/helpers/engine.ts.
import t from 'tap';
import { createLogger, parsePolicy } from '@bulkhead/shared';
import { AuthzDecider } from '../../packages/agent/src/authz/authz-decider';
import { AuthzPlugin, DOCKER_PLUGIN_DIR } from '../../packages/agent/src/authz/plugin-server';
import { createDockerClient } from '../../packages/agent/src/docker/client';
import type { PolicyState } from '../../packages/agent/src/policy/policy-holder';
import { availableEngineVersions, ENGINE_VERSIONS, LABEL_ARGS, startPrivateEngine, TEST_IMAGE_USER1000, type PrivateEngine } from '../helpers/engine';

const logger = createLogger({ name: 'engine-26', level: process.env['BULKHEAD_LOG_LEVEL'] ?? 'silent' });
const PLUGIN = `bk-e26-${process.pid.toString(36)}${Math.random().toString(36).slice(2, 6)}`;

t.test('Docker 26.1: run, exec and an authorization plugin', async (t) => {
  t.same([...ENGINE_VERSIONS], ['20.10', '26.1']);
  const policy: PolicyState = {
    policy: parsePolicy(`apiVersion: bulkhead.dev/v1
kind: Policy
metadata: { name: e26 }
spec:
  rules:
    - { id: host.privileged, description: no privileged, severity: critical, mode: enforce, action: { type: kill }, check: { type: privileged } }
`, 'e26.yaml'),
    scans: new Map(), version: 1, source: 'bundle', sha256: 'e26', projectLabel: 'bulkhead.project',
  };
  let docker: ReturnType<typeof createDockerClient> | undefined;
  const decider = new AuthzDecider({
    policy: () => policy,
    containers: { get: () => undefined, inventory: () => [] },
    docker: { getImage: (ref) => docker!.getImage(ref), getContainer: (id) => docker!.getContainer(id), getExec: (id: string) => docker!.getExec(id) },
    logger,
  });
  const plugin = await AuthzPlugin.start({ socketPath: `${DOCKER_PLUGIN_DIR}/${PLUGIN}.sock`, evaluate: (req) => decider.decide(req), logger });
  let engine: PrivateEngine | undefined;
  t.teardown(async () => {
    await engine?.stop();
    await plugin.stop();
  });
  engine = await startPrivateEngine({ version: '26.1', dockerdArgs: [`--authorization-plugin=${PLUGIN}`], t });
  docker = createDockerClient({ dockerHost: engine.dockerHost });
  const e = engine;
  t.equal(e.version, '26.1');
  t.ok(availableEngineVersions().includes('26.1'), 'listed as available once fetched');
  t.match(await e.dockerOk(['version', '--format', '{{.Server.Version}} {{.Server.APIVersion}}']), /^26\.1\.\d+\S* 1\.45$/, 'server 26.1, API 1.45');

  const hi = await e.docker(['run', '--rm', '--network', 'none', ...LABEL_ARGS, TEST_IMAGE_USER1000, 'sh', '-c', 'echo hi; id -u']);
  t.equal(hi.code, 0, hi.stderr);
  t.equal(hi.stdout.trim(), 'hi\n1000', 'run');

  const name = `bk-e26-${process.pid}`;
  await e.dockerOk(['run', '-d', '--name', name, '--network', 'none', ...LABEL_ARGS, TEST_IMAGE_USER1000, 'sleep', '120']);
  t.equal(await e.dockerOk(['exec', name, 'id', '-u']), '1000', 'exec');
  t.equal(await e.dockerOk(['exec', '-u', '0', name, 'id', '-u']), '0', 'exec as another user');

  const denied = await e.docker(['run', '--rm', '--privileged', '--network', 'none', ...LABEL_ARGS, TEST_IMAGE_USER1000, 'true']);
  t.not(denied.code, 0);
  t.match(denied.stderr, new RegExp(`authorization denied by plugin ${PLUGIN}: .*\\[host\\.privileged\\]`, 's'), 'the plugin refuses a privileged run');
  t.equal(plugin.stats.failOpen, 0);
  await e.dockerOk(['rm', '-f', name]);
});
