// Managed Docker plugins, judged at `POST /plugins/{name}/enable`, on every
// engine version (20.10 and 26.1) with the real dockerd as the judge.
//
// The attack (found in session 8): `docker plugin create` makes a plugin from
// a LOCAL folder (no registry, no privilege prompt), and `docker plugin
// enable` makes dockerd run its entrypoint as root with whatever config.json
// asks — a bind of the host's "/", CAP_SYS_ADMIN, the host's PID namespace,
// every device. The process is not a container (containerd namespace
// plugins.moby): `docker ps`, engine events and so the reaction path never
// see it. Before the fix the plugin allowed every /plugins/* request unread;
// dockerd then ran the entrypoint even though the enable itself failed
// later (no plugin socket), and it wrote into the host's filesystem.
//
// Each engine: a harmless plugin of the same shape (a bind of a scratch
// directory) is allowed and dockerd runs it (the marker appears: the wiring
// works); each dangerous one is refused naming the rule, and its marker
// never appears. Bounded: ~33 s per engine at load 13-16 on 2 cores (the
// allowed enable waits ~12 s for a plugin socket the busybox entrypoint never
// makes).
import t from 'tap';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createLogger, parsePolicy } from '@bulkhead/shared';
import { AuthzDecider } from '../../packages/agent/src/authz/authz-decider';
import { AuthzPlugin, DOCKER_PLUGIN_DIR } from '../../packages/agent/src/authz/plugin-server';
import { createDockerClient } from '../../packages/agent/src/docker/client';
import type { PolicyState } from '../../packages/agent/src/policy/policy-holder';
import { ENGINE_VERSIONS, startPrivateEngine } from '../helpers/engine';

const logger = createLogger({ name: 'plugin-enable', level: process.env['BULKHEAD_LOG_LEVEL'] ?? 'silent' });

const rule = (id: string, type: string, mode = 'enforce'): string =>
  `    - { id: ${id}, description: ${id}, severity: critical, mode: ${mode}, action: { type: kill }, check: { type: ${type} } }`;

function policyState(rootUser: 'enforce' | 'monitor'): PolicyState {
  return {
    policy: parsePolicy(`apiVersion: bulkhead.dev/v1
kind: Policy
metadata: { name: plugins }
spec:
  rules:
${[
    rule('host.privileged', 'privileged'), rule('host.sensitive-mounts', 'sensitive-mounts'), rule('host.docker-socket', 'docker-socket'),
    rule('host.capabilities', 'capabilities'), rule('host.host-namespaces', 'host-namespaces'), rule('host.devices', 'devices'),
    rule('host.root-user', 'root-user', rootUser),
  ].join('\n')}
`, 'plugins.yaml'),
    scans: new Map(), version: 1, source: 'bundle', sha256: 'plugins', projectLabel: 'bulkhead.project',
  };
}

/** A plugin folder (config.json + a busybox rootfs) whose entrypoint writes `marker` and then idles. */
function pluginDir(root: string, name: string, config: Record<string, unknown>, marker: string): string {
  const dir = join(root, name);
  mkdirSync(join(dir, 'rootfs/bin'), { recursive: true });
  mkdirSync(join(dir, 'rootfs/run/docker/plugins'), { recursive: true });
  copyFileSync('/bin/busybox', join(dir, 'rootfs/bin/busybox'));
  chmodSync(join(dir, 'rootfs/bin/busybox'), 0o755);
  for (const l of ['sh', 'sleep', 'echo', 'id']) symlinkSync('busybox', join(dir, `rootfs/bin/${l}`));
  writeFileSync(join(dir, 'config.json'), JSON.stringify({
    description: `bulkhead test plugin ${name}`, documentation: 'https://example.invalid',
    entrypoint: ['/bin/sh', '-c', `id -u > ${marker}; sleep 30`],
    interface: { types: ['docker.volumedriver/1.0'], socket: 'bk.sock' },
    network: { type: 'none' },
    ...config,
  }));
  return dir;
}

for (const version of ENGINE_VERSIONS) {
  t.test(`Docker ${version}: plugin enable is judged on what the plugin would run with`, async (t) => {
    let state = policyState('monitor');
    let docker: ReturnType<typeof createDockerClient> | undefined;
    const decider = new AuthzDecider({
      policy: () => state,
      containers: { get: () => undefined, inventory: () => [] },
      docker: {
        getImage: (ref) => docker!.getImage(ref), getContainer: (id) => docker!.getContainer(id), getExec: (id: string) => docker!.getExec(id),
        getPlugin: (name: string, remote: string | undefined) => docker!.getPlugin(name, remote),
      },
      logger,
    });
    const pluginName = `bk-pe-${process.pid.toString(36)}${Math.random().toString(36).slice(2, 6)}`;
    const plugin = await AuthzPlugin.start({ socketPath: `${DOCKER_PLUGIN_DIR}/${pluginName}.sock`, evaluate: (req) => decider.decide(req), logger, failClosed: () => decider.enforcing() });
    const scratch = mkdtempSync('/tmp/bk-pe-');
    const proof = mkdtempSync('/tmp/bk-pe-proof-');
    t.teardown(async () => {
      await plugin.stop();
      rmSync(scratch, { recursive: true, force: true });
      rmSync(proof, { recursive: true, force: true });
    });
    const e = await startPrivateEngine({ version, dockerdArgs: [`--authorization-plugin=${pluginName}`], t });
    docker = createDockerClient({ dockerHost: e.dockerHost });

    /** Creates the plugin (allowed: the tarball is not JSON), then tries to enable it. */
    const attempt = async (name: string, config: Record<string, unknown>, marker: string, set?: string) => {
      const ref = `bk-test/${name}:1`;
      await e.dockerOk(['plugin', 'create', ref, pluginDir(scratch, name, config, marker)]);
      if (set) await e.dockerOk(['plugin', 'set', ref, set]);
      const r = await e.docker(['plugin', 'enable', '--timeout', '3', ref], { timeoutMs: 45_000 });
      await e.docker(['plugin', 'rm', '-f', ref]);
      return r;
    };
    const bindScratch = { mounts: [{ source: proof, destination: '/out', type: 'bind', options: ['rbind', 'rw'] }] };

    // Control: same shape, nothing forbidden (root-user only monitored here). dockerd runs it.
    // It declares uid 1000, which dockerd does not apply: it writes the uid it ran as.
    const ok = await attempt('control', { ...bindScratch, user: { uid: 1000, gid: 1000 } }, '/out/control');
    t.notMatch(ok.stderr, /authorization denied/, `control allowed (${ok.stderr.trim().slice(0, 200)})`);
    t.ok(existsSync(join(proof, 'control')), 'dockerd ran the allowed plugin (it wrote into the bound scratch directory)');
    t.equal(existsSync(join(proof, 'control')) ? readFileSync(join(proof, 'control'), 'utf8').trim() : '', '0', 'as uid 0, whatever its config says');

    const refused = async (name: string, config: Record<string, unknown>, ruleId: string, set?: string) => {
      const marker = `ran-${name}`;
      const r = await attempt(name, { ...bindScratch, ...config }, `/out/${marker}`, set);
      t.not(r.code, 0, `${name}: enable fails`);
      t.match(r.stderr, new RegExp(`authorization denied by plugin ${pluginName}: .*\\[${ruleId.replace('.', '\\.')}\\]`, 's'), `${name}: refused by ${ruleId}`);
      t.notOk(existsSync(join(proof, marker)), `${name}: dockerd never ran it`);
    };
    await refused('hostroot', { mounts: [{ source: '/', destination: '/host', type: 'bind', options: ['rbind', 'rw'] }, ...bindScratch.mounts] }, 'host.sensitive-mounts');
    // A "none" mount with the rbind option is a bind all the same (runc reads the options).
    await refused('noneopt', { mounts: [{ source: '/etc', destination: '/hostetc', type: 'none', options: ['rbind'] }, ...bindScratch.mounts] }, 'host.sensitive-mounts');
    // A settable mount re-pointed with `docker plugin set` while disabled.
    await refused('settable', {
      mounts: [{ name: 'data', source: '/tmp', destination: '/data', type: 'bind', options: ['rbind'], settable: ['source'] }, ...bindScratch.mounts],
    }, 'host.sensitive-mounts', 'data.source=/');
    // A bind of a symlink: runc follows it, so it is judged where it leads.
    symlinkSync('/', join(scratch, 'to-root'));
    await refused('symlink', { mounts: [{ source: join(scratch, 'to-root'), destination: '/host', type: 'bind', options: ['rbind'] }, ...bindScratch.mounts] }, 'host.sensitive-mounts');
    await refused('sysadmin', { linux: { capabilities: ['CAP_SYS_ADMIN'] } }, 'host.capabilities');
    await refused('pidhost', { pidhost: true }, 'host.host-namespaces');
    await refused('alldevices', { linux: { allowAllDevices: true } }, 'host.devices');
    // dockerd ignores the config's user (the plugin runs as uid 0): with root-user
    // enforced, even the harmless plugin declaring uid 1000 is refused.
    state = policyState('enforce');
    await refused('user1000', { user: { uid: 1000, gid: 1000 } }, 'host.root-user');
    t.equal(plugin.stats.failOpen, 0, 'nothing allowed by failure');
  });
}
