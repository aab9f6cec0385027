// Swarm services at the authz door, with a real swarm-mode dockerd as the
// judge, on every engine version. Swarm's executor makes the tasks'
// containers inside dockerd (no create reaches the plugin), so the service
// create/update itself is judged (found in session 8: allowed unread).
//
// Network rule: `swarm init` creates docker_gwbridge and listens on 2377,
// so the engine (containerd and dockerd) runs in a network namespace this
// test creates (`ip netns add`, only `lo`, advertise 127.0.0.1 there) and
// deletes afterwards; nothing touches the host's network.
//
// Per engine, with the docker CLI's own requests: in monitor mode a service
// with --cap-add SYS_ADMIN, --network host and a bind of /etc is allowed and
// dockerd gives its task container exactly that (what the mapping claims);
// enforced, the same create and an update adding SYS_ADMIN are refused
// naming the rules, no service is left, and a compliant service still runs;
// a `docker service rollback` to a bad previous spec is refused too.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { createLogger, parsePolicy } from '@bulkhead/shared';
import { AuthzDecider } from '../../packages/agent/src/authz/authz-decider';
import { AuthzPlugin, DOCKER_PLUGIN_DIR } from '../../packages/agent/src/authz/plugin-server';
import { createDockerClient } from '../../packages/agent/src/docker/client';
import type { PolicyState } from '../../packages/agent/src/policy/policy-holder';
import { ENGINE_VERSIONS, startPrivateEngine, TEST_IMAGE } from '../helpers/engine';

const logger = createLogger({ name: 'swarm-service', level: process.env['BULKHEAD_LOG_LEVEL'] ?? 'silent' });

function policyState(mode: 'enforce' | 'monitor'): PolicyState {
  return {
    policy: parsePolicy(`apiVersion: bulkhead.dev/v1
kind: Policy
metadata: { name: swarm }
spec:
  rules:
    - { id: host.capabilities, description: c, severity: high, mode: ${mode}, action: { type: kill }, check: { type: capabilities } }
    - { id: host.sensitive-mounts, description: m, severity: critical, mode: ${mode}, action: { type: kill }, check: { type: sensitive-mounts } }
    - { id: host.host-namespaces, description: n, severity: critical, mode: ${mode}, action: { type: kill }, check: { type: host-namespaces } }
`, 'swarm.yaml'),
    scans: new Map(), version: 1, source: 'bundle', sha256: `swarm-${mode}`, projectLabel: 'bulkhead.project',
  };
}

const ip = (...args: string[]): void => {
  const r = spawnSync('ip', args, { encoding: 'utf8', timeout: 10_000 });
  if (r.status !== 0) throw new Error(`ip ${args.join(' ')}: ${r.stderr}`);
};

for (const version of ENGINE_VERSIONS) {
  t.test(`Docker ${version}: swarm services judged at the door`, async (t) => {
    let state = policyState('monitor');
    let docker: ReturnType<typeof createDockerClient> | undefined;
    const decider = new AuthzDecider({
      policy: () => state,
      containers: { get: () => undefined, inventory: () => [] },
      docker: {
        getImage: (ref) => docker!.getImage(ref), getContainer: (id) => docker!.getContainer(id), getExec: (id: string) => docker!.getExec(id),
        getNetwork: (id: string) => docker!.getNetwork(id), getService: (id: string) => docker!.getService(id),
      },
      logger,
    });
    const name = `bk-sw-${process.pid.toString(36)}${Math.random().toString(36).slice(2, 6)}`;
    const ns = name;
    ip('netns', 'add', ns);
    // Registered first: runs after the engine's teardown (tap runs them in reverse order).
    t.teardown(() => ip('netns', 'del', ns));
    ip('-n', ns, 'link', 'set', 'lo', 'up');
    const plugin = await AuthzPlugin.start({ socketPath: `${DOCKER_PLUGIN_DIR}/${name}.sock`, evaluate: (req) => decider.decide(req), logger, failClosed: () => decider.enforcing() });
    t.teardown(() => plugin.stop());
    const e = await startPrivateEngine({ version, dockerdArgs: [`--authorization-plugin=${name}`], netns: ns, t });
    t.teardown(async () => { await e.docker(['swarm', 'leave', '--force'], { timeoutMs: 30_000 }); });
    docker = createDockerClient({ dockerHost: e.dockerHost });
    await e.dockerOk(['swarm', 'init', '--advertise-addr', '127.0.0.1', '--listen-addr', '127.0.0.1:2377'], { timeoutMs: 60_000 });
    const svc = (svcName: string, extra: string[]) => e.docker(['service', 'create', '-d', '--name', svcName, '--restart-condition', 'none', '--no-resolve-image', ...extra, TEST_IMAGE, 'sleep', '300'], { timeoutMs: 60_000 });
    const BAD = ['--cap-add', 'SYS_ADMIN', '--network', 'host', '--mount', 'type=bind,source=/etc,target=/h,readonly'];
    const taskContainer = async (svcName: string): Promise<string> => {
      for (let i = 0; i < 100; i++) {
        const id = (await e.dockerOk(['ps', '-q', '--filter', `label=com.docker.swarm.service.name=${svcName}`])).split('\n')[0] ?? '';
        if (id !== '') return id;
        await new Promise((r) => setTimeout(r, 200));
      }
      return '';
    };

    // Monitor mode: dockerd runs the task with what the spec says.
    const mon = await svc('mon', BAD);
    t.equal(mon.code, 0, `monitor mode: the service is created (${mon.stderr.trim()})`);
    const id = await taskContainer('mon');
    t.not(id, '', 'its task container runs');
    if (id !== '') {
      const hc = JSON.parse(await e.dockerOk(['inspect', '--format', '{{json .HostConfig}}', id])) as { NetworkMode: string; CapAdd: string[] | null; Mounts: { Type: string; Source: string }[] | null };
      t.equal(hc.NetworkMode, 'host', 'dockerd: the task is in the host\'s network namespace');
      t.match(hc.CapAdd ?? [], ['CAP_SYS_ADMIN'], 'dockerd: with CAP_SYS_ADMIN');
      t.match(hc.Mounts ?? [], [{ Type: 'bind', Source: '/etc' }], 'dockerd: with the host\'s /etc bound');
    }
    // Made compliant (still monitor mode): its previous spec is the bad one.
    const fixed = await e.docker(['service', 'update', '-d', '--cap-drop', 'SYS_ADMIN', '--network-rm', 'host', '--mount-rm', '/h', 'mon'], { timeoutMs: 60_000 });
    t.equal(fixed.code, 0, `monitor mode: the service is updated (${fixed.stderr.trim()})`);
    const now = JSON.parse(await e.dockerOk(['service', 'inspect', '--format', '{{json .Spec.TaskTemplate}}', 'mon'])) as { ContainerSpec: { CapabilityAdd?: string[]; Mounts?: unknown[] }; Networks?: unknown[] };
    t.notMatch(JSON.stringify(now.ContainerSpec.CapabilityAdd ?? []), 'SYS_ADMIN', 'the current spec adds no SYS_ADMIN (so the rollback\'s body is compliant)');
    t.same([now.ContainerSpec.Mounts ?? [], now.Networks ?? []], [[], []], 'nor binds /etc nor uses the host network');

    state = policyState('enforce');
    // `docker service rollback` sends the current spec with ?rollback=previous; dockerd applies the stored previous one.
    const rb = await e.docker(['service', 'rollback', '-d', 'mon'], { timeoutMs: 60_000 });
    t.not(rb.code, 0, 'enforced: a rollback to the bad previous spec is refused');
    t.match(rb.stderr, '[host.capabilities]', 'judged on the previous spec, not on the body');
    await e.docker(['service', 'rm', 'mon']);

    const refused = await svc('enf', BAD);
    t.not(refused.code, 0, 'enforced: refused');
    t.match(refused.stderr, new RegExp(`authorization denied by plugin ${name}: Bulkhead policy "swarm" v1 denies this request:`), 'by the plugin');
    for (const rule of ['host.capabilities', 'host.sensitive-mounts', 'host.host-namespaces']) t.match(refused.stderr, `[${rule}]`, `names ${rule}`);
    t.equal(await e.dockerOk(['service', 'ls', '-q', '--filter', 'name=enf']), '', 'no service was created');

    const ok = await svc('good', []);
    t.equal(ok.code, 0, `enforced: a compliant service is allowed (${ok.stderr.trim()})`);
    t.not(await taskContainer('good'), '', 'and its task runs');
    const upd = await e.docker(['service', 'update', '-d', '--cap-add', 'SYS_ADMIN', 'good'], { timeoutMs: 60_000 });
    t.not(upd.code, 0, 'enforced: an update adding SYS_ADMIN is refused');
    t.match(upd.stderr, '[host.capabilities]');
    const spec = JSON.parse(await e.dockerOk(['service', 'inspect', '--format', '{{json .Spec.TaskTemplate.ContainerSpec}}', 'good'])) as { CapabilityAdd?: string[] };
    t.same(spec.CapabilityAdd ?? [], [], 'the service is unchanged');
    t.equal(plugin.stats.failOpen, 0);
  });
}
