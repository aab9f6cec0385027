// The lockdown audit against fixture host trees: socket owner/group/mode
// (bits), docker group members, dockerd on TCP (command line, daemon.json,
// actually listening sockets, TLS verification), authorization plugin,
// daemon settings, and the socket mounted into containers (evaluator).
import t, { type Test } from 'tap';
import { rmSync, symlinkSync } from 'node:fs';
import type { ContainerFacts__Output } from '@bulkhead/shared';
import { auditHost, type LockdownFinding } from '../../src/lockdown/audit-host';
import { loadDaemonConfig, boolSetting, listSetting, objectSetting, sameHostPath, stringSetting, tlsMode } from '../../src/lockdown/daemon-config';
import { GROUPS, HostTree, PASSWD, TCP_HEADER, TCP6_HEADER, tcp6Line, tcpLine } from './fixtures/host-tree';

const ROOT = { uid: 0, gid: 0 };
const ROOT_DOCKER = { uid: 0, gid: 999 };

/** A fully locked-down docker info: no daemon-setting findings come from it. */
const GOOD_INFO = {
  SecurityOptions: ['name=seccomp,profile=default', 'name=userns'],
  LiveRestoreEnabled: true,
  LoggingDriver: 'syslog',
  Plugins: { Authorization: ['bulkhead-authz'] },
  RegistryConfig: { InsecureRegistryCIDRs: ['127.0.0.0/8'], IndexConfigs: { 'docker.io': { Name: 'docker.io', Secure: true } } },
  Swarm: { LocalNodeState: 'inactive' },
};
const GOOD_JSON = JSON.stringify({ icc: false, 'no-new-privileges': true, 'live-restore': true });

function fakeDocker(info: unknown, containers: ContainerFacts__Output[] = []) {
  return {
    info: async () => info,
    // Not used when `containers` is passed to auditHost.
    listContainers: async () => [],
    getContainer: () => ({ inspect: async () => { throw new Error('unused'); } }),
    getImage: () => ({ inspect: async () => { throw new Error('unused'); } }),
    containers,
  };
}

function facts(over: Partial<ContainerFacts__Output>): ContainerFacts__Output {
  return {
    id: 'c'.repeat(64), name: 'web', imageRef: 'nginx:1', imageId: 'sha256:1', imageDigest: '', labels: {}, state: 'running', user: '1000',
    privileged: false, mounts: [], networkMode: 'none', networks: [], pidMode: '', ipcMode: '', utsMode: '', usernsMode: '', capAdd: [], capDrop: [],
    securityOpt: [], readOnlyRootfs: true, memoryLimitBytes: 0, nanoCpus: 0, cpuQuota: 0, cpuPeriod: 0, cpuShares: 0, pidsLimit: 0,
    restartPolicy: 'no', restartMaxRetries: 0, envNames: [], command: [], createdAtMs: 0, startedAtMs: 0, finishedAtMs: 0, exitCode: 0, pid: 0,
    devices: [], imageUser: '', restartCount: 0, secretHits: [], project: '', ...over,
  };
}

const ids = (f: LockdownFinding[]): string[] => f.map((x) => x.id);
const byId = (f: LockdownFinding[], id: string): LockdownFinding | undefined => f.find((x) => x.id === id);

/** A host with good sockets, a dockerd (pid 100) on the default socket and a clean daemon.json. */
async function goodHost(t: Test, dockerdArgv = ['/usr/bin/dockerd', '--containerd=/run/containerd/containerd.sock']): Promise<HostTree> {
  const h = new HostTree();
  t.teardown(() => h.close());
  h.accounts(GROUPS.replace('docker:x:999:alice,bob', 'docker:x:999:'), 'root:x:0:0::/root:/bin/sh\n');
  h.file('etc/docker/daemon.json', GOOD_JSON, 0o644, ROOT);
  await h.socket('run/docker.sock', 0o660, ROOT_DOCKER);
  await h.socket('run/containerd/containerd.sock', 0o660, ROOT);
  h.process({ pid: 100, comm: 'dockerd', argv: dockerdArgv, sockets: [7000] });
  return h;
}

t.test('a locked-down host has no findings', async (t) => {
  const h = await goodHost(t);
  const f = await auditHost({ docker: fakeDocker(GOOD_INFO), containers: [facts({})], hostRoot: h.root, dockerSocketPath: '/var/run/docker.sock' });
  t.same(f, [], JSON.stringify(f, null, 2));
});

t.test('docker socket: world-writable is critical, group-other is high, owner not root is high; fixable', async (t) => {
  const h = new HostTree();
  t.teardown(() => h.close());
  h.accounts(GROUPS, PASSWD);
  await h.socket('run/docker.sock', 0o666, { uid: 1000, gid: 50 });
  await h.socket('run/containerd/containerd.sock', 0o664, { uid: 0, gid: 999 });
  const f = await auditHost({ hostRoot: h.root, dockerSocketPath: '/var/run/docker.sock', containerdSocketPath: '/run/containerd/containerd.sock' });
  const mode = byId(f, 'docker-socket.mode')!;
  t.equal(mode.severity, 'critical');
  t.equal(mode.fix, 'dockerSocketMode');
  t.ok(mode.fixable);
  t.match(mode.detail, /other read, other write/);
  t.match(mode.title, /0666/);
  t.same((mode.evidence as { excessBits: string[] }).excessBits, ['other read', 'other write']);
  const owner = byId(f, 'docker-socket.owner')!;
  t.equal(owner.severity, 'high');
  t.match(owner.detail, /owned by alice \(uid 1000\)/);
  t.equal(owner.fix, 'dockerSocketOwnership');
  const group = byId(f, 'docker-socket.group')!;
  t.match(group.detail, /group staff \(gid 50\).*which may write to it/);
  const ctdGroup = byId(f, 'containerd-socket.group')!;
  t.equal(ctdGroup.severity, 'high');
  t.match(ctdGroup.remediation, /chown root:root/);
  const ctdMode = byId(f, 'containerd-socket.mode')!;
  t.equal(ctdMode.severity, 'low', '0664: other read only');
  t.equal(ctdMode.fix, 'containerdSocketMode');
  t.equal(f[0]!.severity, 'critical', 'sorted most severe first');
  t.equal(byId(f, 'daemon.process-not-found')!.severity, 'info', 'no /proc in this tree');
});

t.test("the containerd socket audited is dockerd's --containerd (or daemon.json containerd), unless one is given", async (t) => {
  const h = await goodHost(t, ['/usr/bin/dockerd', '--containerd=/run/private/ctd.sock']);
  await h.socket('run/private/ctd.sock', 0o666, ROOT);
  const f = await auditHost({ docker: fakeDocker(GOOD_INFO), containers: [facts({})], hostRoot: h.root, dockerSocketPath: '/var/run/docker.sock' });
  const mode = byId(f, 'containerd-socket.mode');
  t.equal(mode?.subject, '/run/private/ctd.sock', 'the socket dockerd was started with, not the default (which is fine)');
  t.equal(mode?.fix, 'containerdSocketMode');
  const given = await auditHost({ docker: fakeDocker(GOOD_INFO), containers: [facts({})], hostRoot: h.root, dockerSocketPath: '/var/run/docker.sock', containerdSocketPath: '/run/containerd/containerd.sock' });
  t.equal(byId(given, 'containerd-socket.mode'), undefined, 'an explicit path wins');

  const j = await goodHost(t, ['/usr/bin/dockerd']);
  j.file('etc/docker/daemon.json', JSON.stringify({ ...JSON.parse(GOOD_JSON), containerd: 'unix:///run/other/ctd.sock' }), 0o644, ROOT);
  await j.socket('run/other/ctd.sock', 0o666, ROOT);
  const fj = await auditHost({ docker: fakeDocker(GOOD_INFO), containers: [facts({})], hostRoot: j.root, dockerSocketPath: '/var/run/docker.sock' });
  t.equal(byId(fj, 'containerd-socket.mode')?.subject, '/run/other/ctd.sock', 'daemon.json, unix:// prefix dropped');
});

t.test('more restrictive socket modes pass: 0600 root:root and 0660 root:docker', async (t) => {
  for (const [mode, owner] of [[0o600, ROOT], [0o660, ROOT_DOCKER], [0o640, ROOT_DOCKER]] as const) {
    const h = new HostTree();
    h.accounts(GROUPS, PASSWD);
    await h.socket('run/docker.sock', mode, owner);
    const f = await auditHost({ hostRoot: h.root, dockerSocketPath: '/run/docker.sock' });
    t.same(ids(f).filter((i) => i.startsWith('docker-socket')), [], `0${mode.toString(8)} ${owner.gid}`);
    await h.close();
  }
});

t.test('setuid/sticky bits on the socket are a medium finding; missing and non-socket paths', async (t) => {
  const h = new HostTree();
  t.teardown(() => h.close());
  h.accounts(GROUPS, PASSWD);
  await h.socket('run/docker.sock', 0o1660, ROOT_DOCKER);
  h.file('run/containerd/containerd.sock', 'not a socket', 0o600, ROOT);
  const f = await auditHost({ hostRoot: h.root, dockerSocketPath: '/var/run/docker.sock' });
  t.equal(byId(f, 'docker-socket.mode')!.severity, 'medium');
  t.equal(byId(f, 'containerd-socket.not-a-socket')!.severity, 'medium');
  const g = await auditHost({ hostRoot: h.root, dockerSocketPath: '/run/nope.sock', containerdSocketPath: '/run/nope2.sock' });
  t.equal(byId(g, 'docker-socket.missing')!.severity, 'info');
  t.equal(byId(g, 'containerd-socket.missing')!.severity, 'info');
  t.match(byId(g, 'docker-socket.missing')!.detail, /under /);
});

t.test('docker group members: listed (medium) or checked against trusted users (high)', async (t) => {
  const h = new HostTree();
  t.teardown(() => h.close());
  h.accounts(GROUPS, PASSWD);
  const f = await auditHost({ hostRoot: h.root, dockerSocketPath: '/run/docker.sock' });
  const m = byId(f, 'docker-group.members')!;
  t.equal(m.severity, 'medium');
  t.same((m.evidence as { members: string[] }).members, ['alice', 'bob', 'carol'], 'explicit members and carol whose primary group is docker');
  const g = await auditHost({ hostRoot: h.root, dockerSocketPath: '/run/docker.sock', trustedUsers: ['alice'] });
  const u = byId(g, 'docker-group.untrusted-members')!;
  t.equal(u.severity, 'high');
  t.same((u.evidence as { untrusted: string[] }).untrusted, ['bob', 'carol']);
  const k = await auditHost({ hostRoot: h.root, dockerSocketPath: '/run/docker.sock', trustedUsers: ['alice', 'bob', 'carol'] });
  t.notOk(ids(k).some((i) => i.startsWith('docker-group')));
});

t.test('dockerd on TCP from its command line: no TLS is critical, loopback-only is high, tlsverify is low', async (t) => {
  const cases: Array<[string[], string | undefined, RegExp]> = [
    [['dockerd', '-H', 'unix:///var/run/docker.sock', '-H', 'tcp://0.0.0.0:2375'], 'critical', /NO TLS/],
    [['dockerd', '-H', 'unix:///var/run/docker.sock', '--host=tcp://127.0.0.1:2375'], 'high', /loopback only/],
    [['dockerd', '-H', 'unix:///var/run/docker.sock', '-H', 'tcp://0.0.0.0:2376', '--tls', '--tlscert=/c', '--tlskey=/k'], 'critical', /WITHOUT client certificate verification/],
    [['dockerd', '-H', 'unix:///var/run/docker.sock', '-H', 'tcp://0.0.0.0:2376', '--tlsverify', '--tlscacert=/ca', '--tlscert=/c', '--tlskey=/k'], 'low', /client certificate verification/],
    [['dockerd', '-H', 'unix:///var/run/docker.sock', '-H', 'tcp://127.0.0.1:2376', '--tlsverify'], undefined, /./],
  ];
  for (const [argv, sev, re] of cases) {
    const h = await goodHost(t, argv);
    const f = await auditHost({ docker: fakeDocker(GOOD_INFO), containers: [], hostRoot: h.root, dockerSocketPath: '/var/run/docker.sock' });
    const tcp = byId(f, 'daemon.tcp-configured');
    if (sev === undefined) {
      t.equal(tcp, undefined, argv.join(' '));
      continue;
    }
    t.equal(tcp?.severity, sev, argv.join(' '));
    t.match(tcp!.detail, re);
    t.equal((tcp!.evidence as { source: string }).source, 'cmdline');
  }
});

t.test('dockerd on TCP from daemon.json hosts, confirmed by a listening socket it holds', async (t) => {
  const h = new HostTree();
  t.teardown(() => h.close());
  h.accounts(GROUPS, 'root:x:0:0::/root:/bin/sh\n');
  h.file('etc/docker/daemon.json', JSON.stringify({ hosts: ['unix:///var/run/docker.sock', 'tcp://0.0.0.0:2375'] }), 0o644, ROOT);
  await h.socket('run/docker.sock', 0o660, ROOT_DOCKER);
  h.process({ pid: 200, comm: 'dockerd', argv: ['/usr/bin/dockerd'], sockets: [9001], tcp: TCP_HEADER + tcpLine(0, '0.0.0.0', 2375, 9001) + tcpLine(1, '0.0.0.0', 22, 1) });
  const f = await auditHost({ docker: fakeDocker(GOOD_INFO), containers: [], hostRoot: h.root, dockerSocketPath: '/var/run/docker.sock' });
  const tcp = byId(f, 'daemon.tcp-configured')!;
  t.equal(tcp.severity, 'critical');
  t.equal((tcp.evidence as { source: string }).source, 'daemon.json');
  t.same((tcp.evidence as { listening: string[] }).listening, ['0.0.0.0:2375']);
  t.match(tcp.detail, /Listening now on 0\.0\.0\.0:2375/);
  t.equal(byId(f, 'daemon.tcp-listening'), undefined, 'the listener is explained by the config; port 22 is not dockerd\'s');
});

t.test('a TCP listener not in the config (socket activation, -H fd://) is found from /proc; swarm ports are not', async (t) => {
  const h = await goodHost(t, ['/usr/bin/dockerd', '-H', 'fd://']);
  // Replace dockerd 100 with one that holds TCP listeners.
  h.process({
    pid: 101, comm: 'dockerd', argv: ['/usr/bin/dockerd', '-H', 'fd://'], sockets: [7000, 8001, 8002, 8003],
    tcp: TCP_HEADER + tcpLine(0, '127.0.0.1', 2375, 8001) + tcpLine(1, '0.0.0.0', 2377, 8002),
    tcp6: TCP6_HEADER + tcp6Line(0, '::', 7946, 8003),
  });
  const f = await auditHost({ docker: fakeDocker({ ...GOOD_INFO, Swarm: { LocalNodeState: 'active' } }), containers: [], hostRoot: h.root, dockerSocketPath: '/var/run/docker.sock', dockerdPid: 101 });
  const l = byId(f, 'daemon.tcp-listening')!;
  t.equal(l.severity, 'high', 'loopback only, no TLS');
  t.same((l.evidence as { listeners: Array<{ port: number }> }).listeners.map((x) => x.port), [2375]);
  const g = await auditHost({ docker: fakeDocker(GOOD_INFO), containers: [], hostRoot: h.root, dockerSocketPath: '/var/run/docker.sock', dockerdPid: 101 });
  t.equal(byId(g, 'daemon.tcp-listening')!.severity, 'critical', 'without swarm, 2377 and [::]:7946 are unexplained wildcard listeners');
  t.match(byId(g, 'daemon.tcp-listening')!.title, /\[::\]:7946/);
});

t.test('daemon settings: authz plugin, icc, userns, live-restore, no-new-privileges, insecure registries, log driver, invalid daemon.json', async (t) => {
  const h = await goodHost(t);
  h.file('etc/docker/daemon.json', '{ "icc": true, ', 0o644, ROOT);
  const info = {
    SecurityOptions: ['name=seccomp,profile=default'],
    LiveRestoreEnabled: false,
    LoggingDriver: 'json-file',
    Plugins: { Authorization: null },
    RegistryConfig: { InsecureRegistryCIDRs: ['127.0.0.0/8', '10.0.0.0/8'], IndexConfigs: { 'reg.local:5000': { Name: 'reg.local:5000', Secure: false }, 'docker.io': { Secure: true } } },
  };
  const f = await auditHost({ docker: fakeDocker(info), containers: [], hostRoot: h.root, dockerSocketPath: '/var/run/docker.sock' });
  t.same(ids(f).filter((i) => i.startsWith('daemon.')).sort(), [
    'daemon.icc', 'daemon.insecure-registries', 'daemon.json-invalid', 'daemon.live-restore', 'daemon.log-driver', 'daemon.no-authorization-plugin',
    'daemon.no-new-privileges', 'daemon.userns-remap',
  ]);
  t.same((byId(f, 'daemon.insecure-registries')!.evidence as { registries: string[] }).registries, ['10.0.0.0/8', 'reg.local:5000']);
  t.equal(byId(f, 'daemon.log-driver')!.severity, 'low');
  t.equal(byId(f, 'daemon.json-invalid')!.severity, 'high');
  // log driver none, icc disabled on the command line, no default bridge at all.
  const g = await auditHost({
    docker: fakeDocker({ ...GOOD_INFO, LoggingDriver: 'none' }), containers: [], hostRoot: h.root, dockerSocketPath: '/var/run/docker.sock',
    dockerdPid: 100,
  });
  t.equal(byId(g, 'daemon.log-driver')!.severity, 'medium');
  const h2 = await goodHost(t, ['dockerd', '--bridge=none', '--userns-remap=default', '--no-new-privileges', '--authorization-plugin=x']);
  h2.file('etc/docker/daemon.json', '{}', 0o644, ROOT);
  const k = await auditHost({ docker: fakeDocker({ ...GOOD_INFO, SecurityOptions: [], Plugins: {} }), containers: [], hostRoot: h2.root, dockerSocketPath: '/var/run/docker.sock' });
  t.same(ids(k), [], 'flags on the command line count; no bridge means icc does not apply');
});

t.test('swarm membership: a worker or a manager among others is high (its tasks bypass the plugin), the only manager medium, no swarm nothing', async (t) => {
  const h = await goodHost(t);
  const audit = async (swarm: unknown) => auditHost({ docker: fakeDocker({ ...GOOD_INFO, Swarm: swarm }), containers: [], hostRoot: h.root, dockerSocketPath: '/var/run/docker.sock', dockerdPid: 100 });
  for (const state of ['inactive', '', undefined]) t.notOk(byId(await audit({ LocalNodeState: state }), 'daemon.swarm-member'), `state ${String(state)}: no finding`);
  const worker = byId(await audit({ LocalNodeState: 'active', NodeID: 'self1', ControlAvailable: false, RemoteManagers: [{ NodeID: 'mgr1', Addr: '192.0.2.1:2377' }] }), 'daemon.swarm-member')!;
  t.equal(worker.severity, 'high', 'a worker');
  t.match(worker.title, /managed from 192\.0\.2\.1:2377/);
  t.match(worker.detail, /a worker.*never judged by this host's authorization plugin/s);
  t.match(worker.remediation, /docker swarm leave/);
  t.same(worker.evidence, { state: 'active', nodeId: 'self1', manager: false, nodes: null, remoteManagers: ['192.0.2.1:2377'] });
  const peer = byId(await audit({ LocalNodeState: 'active', NodeID: 'self1', ControlAvailable: true, Nodes: 2, Managers: 2, RemoteManagers: [{ NodeID: 'self1', Addr: '192.0.2.2:2377' }, { NodeID: 'mgr1', Addr: '192.0.2.1:2377' }] }), 'daemon.swarm-member')!;
  t.equal(peer.severity, 'high', 'a manager with another manager');
  t.same((peer.evidence as { remoteManagers: string[] }).remoteManagers, ['192.0.2.1:2377'], 'itself is not listed among the other managers');
  t.equal(byId(await audit({ LocalNodeState: 'active', NodeID: 'self1', ControlAvailable: true, Nodes: 2, Managers: 2, RemoteManagers: null }), 'daemon.swarm-member')!.severity, 'high', 'two managers counted, their addresses unknown');
  const onlyManager = byId(await audit({ LocalNodeState: 'active', NodeID: 'self1', ControlAvailable: true, Nodes: 3, Managers: 1, RemoteManagers: [{ NodeID: 'self1', Addr: '192.0.2.2:2377' }] }), 'daemon.swarm-member')!;
  t.equal(onlyManager.severity, 'medium', 'the only manager (its services come through its own API, judged there)');
  t.match(onlyManager.title, /only manager \(3 nodes\)/);
  const alone = byId(await audit({ LocalNodeState: 'active', NodeID: 'self1', ControlAvailable: true, Nodes: 1, Managers: 1, RemoteManagers: [{ NodeID: 'self1', Addr: '127.0.0.1:2377' }] }), 'daemon.swarm-member')!;
  t.equal(alone.severity, 'medium', 'a swarm of one');
  t.match(alone.title, /only manager \(1 node\)/);
  t.equal(byId(await audit({ LocalNodeState: 'pending', NodeID: '', ControlAvailable: false, RemoteManagers: null }), 'daemon.swarm-member')!.severity, 'high', 'joining (pending) counts');
});

t.test('the Docker socket mounted into a container: critical, via the evaluator, including a private engine socket and parent dirs', async (t) => {
  const h = await goodHost(t);
  const containers = [
    facts({ id: 'a'.repeat(64), name: '/sock', mounts: [{ type: 'bind', source: '/var/run/docker.sock', destination: '/var/run/docker.sock', readOnly: true, propagation: '' }] }),
    facts({ id: 'b'.repeat(64), name: '/parent', mounts: [{ type: 'bind', source: '/run', destination: '/hostrun', readOnly: false, propagation: '' }] }),
    facts({ id: 'c'.repeat(64), name: '/private', mounts: [{ type: 'bind', source: '/tmp/bk-x/docker.sock', destination: '/d.sock', readOnly: false, propagation: '' }] }),
    facts({ id: 'd'.repeat(64), name: '/clean', mounts: [{ type: 'volume', source: 'data', destination: '/data', readOnly: false, propagation: '' }] }),
  ];
  const f = await auditHost({ docker: fakeDocker(GOOD_INFO), containers, hostRoot: h.root, dockerSocketPath: '/tmp/bk-x/docker.sock' });
  const hits = f.filter((x) => x.id === 'container.docker-socket');
  t.same(hits.map((x) => (x.evidence as { name: string }).name).sort(), ['parent', 'private', 'sock']);
  t.ok(hits.every((x) => x.severity === 'critical' && !x.fixable));
  t.match(hits.find((x) => x.subject === 'a'.repeat(64))!.detail, /read-only does not protect a socket/);
});

t.test('the container list comes from the engine when no facts are given', async (t) => {
  const h = await goodHost(t);
  const inspect = {
    Id: 'e'.repeat(64), Name: '/viaapi', Image: 'sha256:1', Created: '2026-01-01T00:00:00Z',
    Config: { Image: 'x:1', User: '1000', Labels: {}, Env: [] },
    HostConfig: { NetworkMode: 'none', ReadonlyRootfs: true },
    State: { Status: 'running', Pid: 1, StartedAt: '2026-01-01T00:00:00Z' },
    Mounts: [{ Type: 'bind', Source: '/var/run/docker.sock', Destination: '/s', RW: true, Propagation: 'rprivate' }],
  };
  const docker = {
    info: async () => GOOD_INFO,
    listContainers: async () => [{ Id: inspect.Id }, { Id: 'gone' }],
    getContainer: (id: string) => ({
      inspect: async () => {
        if (id === 'gone') throw Object.assign(new Error('no such container'), { statusCode: 404 });
        return inspect;
      },
    }),
    getImage: () => ({ inspect: async () => ({ Config: { User: '' } }) }),
  };
  const f = await auditHost({ docker: docker as never, hostRoot: h.root, dockerSocketPath: '/var/run/docker.sock' });
  t.same(f.map((x) => x.id), ['container.docker-socket']);
});

t.test('daemon config: which dockerd, settings precedence, hosts, TLS', async (t) => {
  const h = new HostTree();
  t.teardown(() => h.close());
  h.process({ pid: 300, comm: 'dockerd', argv: ['dockerd', '--host', 'unix:///tmp/a/docker.sock', '--config-file', '/tmp/a/daemon.json'] });
  h.process({ pid: 301, comm: 'dockerd', argv: ['dockerd', '-H', 'fd://'], sockets: [4242] });
  h.process({ pid: 302, comm: 'dockerd', argv: ['dockerd', '--config-file', '/etc/b.json'] });
  h.file('etc/b.json', JSON.stringify({ hosts: ['unix:///run/b.sock'], 'log-level': 'debug', 'insecure-registries': ['x:1'], 'default-ulimits': { nofile: {} } }));
  h.file('tmp/a/daemon.json', JSON.stringify({ icc: false, 'live-restore': 'true', debug: true }));
  h.file('proc/net/unix', 'Num       RefCount Protocol Flags    Type St Inode Path\n0000000000000000: 00000002 00000000 00010000 0001 01 4242 /run/docker.sock\n');
  const a = await loadDaemonConfig({ hostRoot: h.root, dockerSocketPath: '/tmp/a/docker.sock' });
  t.equal(a.pid, 300);
  t.equal(a.pidSource, 'cmdline');
  t.equal(a.daemonJsonPath, '/tmp/a/daemon.json', "dockerd's --config-file");
  t.same(boolSetting(a, 'icc'), { value: false, source: 'daemon.json' });
  t.same(boolSetting(a, 'live-restore'), { value: true, source: 'daemon.json' }, 'a string "true" too');
  t.equal(boolSetting(a, 'tlsverify'), undefined);
  t.equal(a.hostsSource, 'cmdline');
  t.equal(a.infoError, 'no Docker client');
  const b = await loadDaemonConfig({ hostRoot: h.root, dockerSocketPath: '/var/run/b.sock' });
  t.equal(b.pid, 302, 'found through its daemon.json hosts (/var/run ≡ /run)');
  t.same(stringSetting(b, 'log-level'), { value: 'debug', source: 'daemon.json' });
  t.same(listSetting(b, 'insecure-registry', 'insecure-registries'), [{ value: 'x:1', source: 'daemon.json' }]);
  t.ok(objectSetting(b, 'default-ulimits'));
  t.equal(objectSetting(b, 'hosts'), undefined, 'an array is not an object setting');
  t.equal(b.hostsSource, 'daemon.json');
  const c = await loadDaemonConfig({ hostRoot: h.root, dockerSocketPath: '/var/run/docker.sock' });
  t.equal(c.pid, 301, 'holds the socket (socket activation)');
  t.equal(c.pidSource, 'socket');
  t.equal(c.hostsSource, 'cmdline');
  const d = await loadDaemonConfig({ hostRoot: h.root, dockerSocketPath: '/run/unknown.sock' });
  t.equal(d.pid, undefined);
  t.equal(d.pidSource, 'none');
  t.equal(d.hostsSource, 'default');
  t.same(d.hosts.map((x) => x.raw), ['unix:///var/run/docker.sock']);
  const e = await loadDaemonConfig({ hostRoot: h.root, dockerSocketPath: '/x', dockerdPid: 301, daemonJsonPath: '/tmp/a/daemon.json', docker: { info: async () => { throw new Error('down'); } } });
  t.equal(e.pidSource, 'given');
  t.equal(e.infoError, 'down');
  t.equal(tlsMode(e), 'none');
  t.ok(sameHostPath('/var/run/docker.sock', '/run/docker.sock/'));
  // Only one dockerd: it is the one, whatever its flags say.
  const h2 = new HostTree();
  t.teardown(() => h2.close());
  h2.process({ pid: 5, comm: 'dockerd', argv: ['dockerd', '-H', 'fd://'] });
  h2.file('etc/docker/daemon.json', '[1,2]');
  const only = await loadDaemonConfig({ hostRoot: h2.root, dockerSocketPath: '/run/docker.sock' });
  t.equal(only.pidSource, 'only');
  t.equal(only.daemonJsonError, 'not a JSON object');
  h2.file('etc/docker/daemon.json', '');
  t.equal((await loadDaemonConfig({ hostRoot: h2.root })).daemonJsonError, undefined, 'an empty daemon.json is fine');
  h2.dir('etc/docker/daemon.json.d');
  t.match((await loadDaemonConfig({ hostRoot: h2.root, daemonJsonPath: '/etc/docker/daemon.json.d' })).daemonJsonError, /cannot read/);
});

t.test('daemon config: a process merely calling itself dockerd is not the daemon', async (t) => {
  const h = new HostTree();
  t.teardown(() => h.close());
  const ns = (pid: number | 'self', id: number) => {
    h.dir(`proc/${pid}/ns`);
    symlinkSync(`pid:[${id}]`, h.path(`proc/${pid}/ns/pid`));
  };
  const status = (pid: number, uid: number) => h.file(`proc/${pid}/status`, `Name:\tdockerd\nUid:\t${uid}\t${uid}\t${uid}\t${uid}\n`);
  ns('self', 4026531836);
  // The real daemon: root, the agent's PID namespace, socket-activated (it holds our socket).
  h.process({ pid: 10, comm: 'dockerd', argv: ['dockerd', '-H', 'fd://'], sockets: [7777] });
  status(10, 0);
  ns(10, 4026531836);
  // A user's process named dockerd whose argv names our socket and lax defaults.
  h.process({ pid: 20, comm: 'dockerd', argv: ['dockerd', '-H', 'unix:///run/docker.sock', '--log-opt', 'max-size=10m'] });
  status(20, 1000);
  ns(20, 4026531836);
  // A root process inside a container (its own PID namespace), doing the same.
  h.process({ pid: 30, comm: 'dockerd', argv: ['dockerd', '-H', 'unix:///run/docker.sock', '--default-ulimit', 'nofile=1024:1024'] });
  status(30, 0);
  ns(30, 4026532999);
  h.file('proc/net/unix', 'Num       RefCount Protocol Flags    Type St Inode Path\n0000000000000000: 00000002 00000000 00010000 0001 01 7777 /run/docker.sock\n');
  const c = await loadDaemonConfig({ hostRoot: h.root, dockerSocketPath: '/var/run/docker.sock' });
  t.equal(c.pid, 10, 'the dockerd holding the socket');
  t.equal(c.pidSource, 'socket');
  // Without the real one, neither impostor is taken for it, not even as "the only dockerd".
  rmSync(h.path('proc/10'), { recursive: true, force: true });
  const none = await loadDaemonConfig({ hostRoot: h.root, dockerSocketPath: '/var/run/docker.sock' });
  t.equal(none.pid, undefined);
  t.equal(none.pidSource, 'none');
});
