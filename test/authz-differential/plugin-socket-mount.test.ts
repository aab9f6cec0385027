// A container must not be able to reach dockerd's plugin directory: with
// /run/docker/plugins bound in, a root container replaces the Bulkhead
// plugin's socket with a symlink to a socket the attacker serves, and from
// then on dockerd asks the attacker's "plugin" (found in session 8; the
// default sensitive paths covered /run/docker.sock and /run/containerd but
// not /run/docker). Judged by the real dockerd, 20.10 and 26.1: after such a
// run, is a privileged container created?
import t from 'tap';
import { createServer } from 'node:http';
import { lstatSync, mkdtempSync, rmSync } from 'node:fs';
import { createLogger, parsePolicy } from '@bulkhead/shared';
import { AuthzDecider } from '../../packages/agent/src/authz/authz-decider';
import { AuthzPlugin, DOCKER_PLUGIN_DIR } from '../../packages/agent/src/authz/plugin-server';
import { createDockerClient } from '../../packages/agent/src/docker/client';
import type { PolicyState } from '../../packages/agent/src/policy/policy-holder';
import { ENGINE_VERSIONS, LABEL_ARGS, startPrivateEngine, TEST_IMAGE } from '../helpers/engine';

const logger = createLogger({ name: 'plugin-socket-mount', level: process.env['BULKHEAD_LOG_LEVEL'] ?? 'silent' });

const policy: PolicyState = {
  policy: parsePolicy(`apiVersion: bulkhead.dev/v1
kind: Policy
metadata: { name: plugin-dir }
spec:
  rules:
    - { id: host.privileged, description: no privileged, severity: critical, mode: enforce, action: { type: kill }, check: { type: privileged } }
    - { id: host.sensitive-mounts, description: no sensitive mounts, severity: critical, mode: enforce, action: { type: kill }, check: { type: sensitive-mounts } }
    - { id: host.docker-socket, description: no engine socket, severity: critical, mode: enforce, action: { type: kill }, check: { type: docker-socket } }
`, 'plugin-dir.yaml'),
  scans: new Map(), version: 1, source: 'bundle', sha256: 'plugin-dir', projectLabel: 'bulkhead.project',
};

for (const version of ENGINE_VERSIONS) {
  t.test(`Docker ${version}: the plugin directory cannot be bound into a container`, async (t) => {
    let docker: ReturnType<typeof createDockerClient> | undefined;
    const decider = new AuthzDecider({
      policy: () => policy,
      containers: { get: () => undefined, inventory: () => [] },
      docker: { getImage: (ref) => docker!.getImage(ref), getContainer: (id) => docker!.getContainer(id), getExec: (id: string) => docker!.getExec(id) },
      logger,
    });
    const name = `bk-psm-${process.pid.toString(36)}${Math.random().toString(36).slice(2, 6)}`;
    const socket = `${DOCKER_PLUGIN_DIR}/${name}.sock`;
    const plugin = await AuthzPlugin.start({ socketPath: socket, evaluate: (req) => decider.decide(req), logger, failClosed: () => decider.enforcing() });
    // The attacker's own "plugin": allows everything (a local user can run one anywhere).
    const scratch = mkdtempSync('/tmp/bk-psm-');
    const fake = createServer((req, res) => {
      req.resume();
      req.on('end', () => res.end(req.url === '/Plugin.Activate' ? '{"Implements":["authz"]}' : '{"Allow":true}'));
    });
    await new Promise<void>((resolve) => fake.listen(`${scratch}/fake.sock`, resolve));
    t.teardown(async () => {
      await new Promise<void>((resolve) => fake.close(() => resolve()));
      fake.closeAllConnections();
      await plugin.stop();
      rmSync(socket, { force: true });
      rmSync(scratch, { recursive: true, force: true });
    });
    const e = await startPrivateEngine({ version, dockerdArgs: [`--authorization-plugin=${name}`], t });
    docker = createDockerClient({ dockerHost: e.dockerHost });

    for (const dir of ['/run/docker/plugins', '/run/docker', '/var/run/docker/plugins']) {
      const swap = await e.docker(['run', '--rm', '--network', 'none', ...LABEL_ARGS, '-v', `${dir}:/p`, TEST_IMAGE, 'sh', '-c',
        `cd /p${dir.endsWith('/plugins') ? '' : '/plugins'} && rm -f ${name}.sock && ln -s ${scratch}/fake.sock ${name}.sock`]);
      t.not(swap.code, 0, `-v ${dir}: refused`);
      t.match(swap.stderr, new RegExp(`authorization denied by plugin ${name}: .*\\[host\\.sensitive-mounts\\]`, 's'), `-v ${dir}: by sensitive-mounts`);
      t.notOk(lstatSync(socket).isSymbolicLink(), `-v ${dir}: the plugin socket is still Bulkhead's`);
    }
    // dockerd keeps using an open connection to the real socket; it closes idle ones after
    // 90 s (and ours after 120 s). Drop them now rather than wait: dockerd dials the path again.
    (plugin as unknown as { server: { closeAllConnections(): void } }).server.closeAllConnections();
    const priv = await e.docker(['create', '--privileged', '--network', 'none', ...LABEL_ARGS, TEST_IMAGE, 'true']);
    t.not(priv.code, 0, 'a privileged create is still refused');
    t.match(priv.stderr, /\[host\.privileged\]/);
  });
}
