// CIS sections 1, 2, 3, 6 and 7 against fixture host trees: auditd rules,
// partitions, daemon settings from a PARSED daemon.json and the dockerd
// command line, file ownership and permission BITS, swarm.
import t, { type Test } from 'tap';
import { runCisReport } from '../../src/cis/cis-report';
import { isSeparatePartition, parseMountinfo, versionParts } from '../../src/cis/section-1-host';
import { watchedPaths } from '../../src/cis/check-helpers';
import type { CisResult } from '../../src/cis/cis-types';
import { GROUPS, HostTree, PASSWD, TCP_HEADER, tcpLine } from '../lockdown/fixtures/host-tree';
import { fakeEngine, type FakeEngineOptions } from './fixtures/fake-engine';

const NOW = new Date('2026-11-28T12:00:00Z');
const ROOT = { uid: 0, gid: 0 };

async function run(t: Test, h: HostTree, only: string[], o: FakeEngineOptions = {}, extra: Record<string, unknown> = {}): Promise<Map<string, CisResult>> {
  const report = await runCisReport({ docker: fakeEngine(o), hostRoot: h.root, only, now: () => NOW, env: {}, ...extra });
  return new Map(report.tests.flatMap((s) => s.results).map((r) => [r.id, r]));
}

function tree(t: Test): HostTree {
  const h = new HostTree();
  t.teardown(() => h.close());
  return h;
}

t.test('section 1: auditd rules matched by path token, recursive dir watches, real binary locations', async (t) => {
  const h = tree(t);
  h.accounts(GROUPS, PASSWD);
  h.file('etc/audit/audit.rules', '# generated\n-w /usr/bin/docker -k docker\n');
  h.file('etc/audit/rules.d/docker.rules', [
    '-w /usr/sbin/dockerd -k docker',
    '-w /etc/docker/ -k docker',
    '-a exit,always -F path=/run/containerd -F perm=war -k docker',
    '-a always,exit -F dir=/lib/systemd/system -k docker',
    '; a comment',
  ].join('\n'));
  h.file('etc/audit/rules.d/ignored.conf', '-w /usr/bin/containerd -k docker\n');
  h.file('usr/sbin/dockerd', '').file('usr/bin/containerd', '').file('usr/sbin/runc', '').file('etc/default/docker', '');
  h.file('lib/systemd/system/docker.service', '').file('lib/systemd/system/docker.socket', '');
  h.file('etc/docker/daemon.json', '{}');
  h.process({ pid: 77, comm: 'dockerd', argv: ['/usr/sbin/dockerd', '-H', 'fd://'], exe: '/usr/sbin/dockerd' });
  h.file('proc/1/mountinfo', [
    '22 1 254:0 / / rw,relatime - ext4 /dev/vda rw',
    '30 22 254:16 / /var/lib/docker rw,relatime - ext4 /dev/vdb rw',
    '31 22 254:0 /srv/x /srv/x rw - ext4 /dev/vda rw',
  ].join('\n'));
  const r = await run(t, h, ['1'], {}, { trustedUsers: ['alice'] });
  const v = (id: string): string => `${r.get(id)!.result}${r.get(id)!.details ? ` ${r.get(id)!.details}` : ''}`;
  t.equal(v('1.1.1'), 'PASS /var/lib/docker is a separate partition');
  t.equal(v('1.1.2'), 'WARN doubtfulusers: bob carol');
  t.equal(v('1.1.3'), 'PASS Audited: /usr/sbin/dockerd', "the running dockerd's executable, not /usr/bin/dockerd");
  t.equal(v('1.1.4'), 'PASS Audited: /run/containerd');
  t.equal(v('1.1.5'), 'INFO Directory not found');
  t.equal(v('1.1.6'), 'PASS Audited: /etc/docker', 'trailing slash in the rule');
  t.equal(v('1.1.7'), 'PASS Audited: /lib/systemd/system/docker.service', 'dir= watches are recursive');
  t.equal(v('1.1.8'), 'INFO File not found');
  t.equal(v('1.1.10'), 'WARN No audit rule for /etc/default/docker');
  t.equal(v('1.1.11'), 'PASS Audited: /etc/docker/daemon.json', 'covered by the /etc/docker watch');
  t.equal(v('1.1.13'), 'INFO File not found');
  t.equal(v('1.1.14'), 'WARN No audit rule for /usr/bin/containerd', 'a *.conf in rules.d is not loaded; /usr/bin/docker does not cover it');
  t.equal(v('1.1.18'), 'WARN No audit rule for /usr/sbin/runc', 'found where Debian installs it');
  t.equal(v('1.2.1'), 'NOTE');
  t.equal(v('1.2.2'), 'INFO Using 20.10.24, verify is it up to date as deemed necessary');
  const cur = await run(t, h, ['1.2.2', '1.1.1', '1.1.2'], { version: '26.10.0', info: { DockerRootDir: '/srv/x' } });
  t.equal(cur.get('1.2.2')!.result, 'PASS');
  t.equal(cur.get('1.2.2')!.scored, false);
  t.equal(cur.get('1.1.1')!.result, 'WARN', 'a bind mount is not a separate partition');
  t.equal(cur.get('1.1.2')!.result, 'INFO');
  t.same(cur.get('1.1.2')!.items, ['alice', 'bob', 'carol']);
});

t.test('mountinfo and version helpers', async (t) => {
  const m = parseMountinfo('22 1 254:0 / / rw - ext4 /dev/vda rw\n40 22 0:50 / /mnt/with\\040space rw - tmpfs t rw\n41 22 254:0 /a /var/lib/docker rw - ext4 /dev/vda rw\nshort line\n');
  t.equal(m[1]!.mountPoint, '/mnt/with space');
  t.ok(isSeparatePartition(m, '/mnt/with space'));
  t.notOk(isSeparatePartition(m, '/var/lib/docker'), 'same device as /');
  t.notOk(isSeparatePartition(m, '/nope'));
  t.notOk(isSeparatePartition(m, '/'));
  t.same(versionParts('20.10.24+dfsg1'), [20, 10]);
  t.equal(versionParts('dev'), undefined);
  t.same(watchedPaths(['-w /a/ -k x', '-a always,exit -F path=/b -F perm=w', '-F dir=/c', 'path=/d']), [
    { path: '/a', recursive: true }, { path: '/b', recursive: false }, { path: '/c', recursive: true },
  ]);
});

t.test('section 1 without mountinfo, docker group or audit files', async (t) => {
  const h = tree(t);
  const r = await run(t, h, ['1.1.1', '1.1.2', '1.1.3'], {}, { procRoot: h.path('noproc') });
  t.match(r.get('1.1.1')!.details, /Cannot read mountinfo/);
  t.equal(r.get('1.1.2')!.details, 'No users in the docker group');
  t.equal(r.get('1.1.3')!.result, 'WARN');
});

t.test('section 2: daemon.json is PARSED (a decoy string does not pass), command line wins, info counts', async (t) => {
  const h = tree(t);
  h.process({ pid: 9, comm: 'dockerd', argv: ['dockerd', '--iptables=false', '--default-ulimit', 'nofile=100:200', '--storage-opt', 'dm.basesize=20G', '-H', 'unix:///var/run/docker.sock'] });
  h.file('etc/docker/daemon.json', JSON.stringify({ labels: ['icc=false', '"icc": false', 'no-new-privileges'], 'log-level': 'debug', 'userland-proxy': true }));
  const r = await run(t, h, ['2'], { info: { LiveRestoreEnabled: true, ExperimentalBuild: true, RegistryConfig: { InsecureRegistryCIDRs: ['127.0.0.0/8', '10.0.0.0/8'] } } });
  const v = (id: string): string => `${r.get(id)!.result}${r.get(id)!.details ? ` ${r.get(id)!.details}` : ''}`;
  t.equal(v('2.1'), 'NOTE');
  t.equal(v('2.2'), 'WARN icc is not set (default true)', 'the grep-fooling decoys are labels, not settings');
  t.equal(v('2.3'), 'WARN log-level is "debug" (/etc/docker/daemon.json)');
  t.equal(v('2.4'), 'WARN iptables=false (dockerd command line)');
  t.equal(v('2.5'), 'WARN Insecure registries: 10.0.0.0/8');
  t.equal(v('2.6'), 'PASS Storage driver: overlay2');
  t.equal(v('2.7'), 'INFO Docker daemon not listening on TCP');
  t.equal(v('2.8'), 'PASS Default ulimits: nofile=100:200');
  t.equal(v('2.9'), 'WARN');
  t.equal(v('2.10'), 'PASS');
  t.equal(v('2.11'), 'WARN Storage options: dm.basesize=20G');
  t.equal(v('2.12'), 'WARN');
  t.equal(v('2.13'), 'WARN Log driver: json-file');
  t.equal(v('2.14'), 'WARN');
  t.equal(v('2.15'), 'PASS');
  t.equal(v('2.16'), 'WARN');
  t.equal(v('2.17'), 'INFO Seccomp: name=seccomp,profile=default');
  t.equal(v('2.18'), 'WARN Experimental features are enabled');
});

t.test('section 2: a hardened daemon passes; TLS variants; invalid daemon.json is a WARN, not a PASS', async (t) => {
  const h = tree(t);
  h.process({ pid: 9, comm: 'dockerd', argv: ['dockerd', '-H', 'unix:///var/run/docker.sock', '-H', 'tcp://0.0.0.0:2376', '--tlsverify', '--tlscacert=/etc/docker/ca.pem', '--tlscert=/etc/docker/cert.pem', '--tlskey=/etc/docker/key.pem', '--cgroup-parent=/x', '--seccomp-profile=/etc/docker/seccomp.json'] });
  h.file('etc/docker/daemon.json', JSON.stringify({ icc: false, 'log-level': 'info', 'no-new-privileges': true, 'userland-proxy': false, 'userns-remap': 'default', 'authorization-plugins': ['authz'], 'default-ulimits': { nofile: { Name: 'nofile', Hard: 64000, Soft: 64000 } } }));
  const r = await run(t, h, ['2'], { info: { LoggingDriver: 'syslog', LiveRestoreEnabled: true, SecurityOptions: ['name=rootless'] } });
  for (const id of ['2.1', '2.2', '2.3', '2.7', '2.8', '2.9', '2.12', '2.13', '2.14', '2.15', '2.16', '2.17']) t.equal(r.get(id)!.result, 'PASS', `${id} ${r.get(id)!.details ?? ''}`);
  t.equal(r.get('2.10')!.result, 'INFO', 'a cgroup parent is to be confirmed');
  h.process({ pid: 9, comm: 'dockerd', argv: ['dockerd', '-H', 'tcp://0.0.0.0:2376', '--tls', '--tlscert=/c', '--tlskey=/k', '--seccomp-profile=unconfined'] });
  const tls = await run(t, h, ['2.7', '2.17'], {}, { dockerdPid: 9 });
  t.match(tls.get('2.7')!.details, /with TLS, but no verification/);
  t.equal(tls.get('2.17')!.result, 'WARN');
  h.process({ pid: 10, comm: 'dockerd', argv: ['dockerd', '-H', 'tcp://0.0.0.0:2375'] });
  h.file('etc/docker/daemon.json', '{ "icc": false,');
  const bad = await run(t, h, ['2.2', '2.3', '2.4', '2.5', '2.7', '2.14', '2.16'], {}, { dockerdPid: 10 });
  for (const id of ['2.2', '2.3', '2.4', '2.5', '2.14', '2.16']) t.match(bad.get(id)!.details, /daemon\.json: invalid JSON/, `${id}: unknown settings are not a pass`);
  t.match(bad.get('2.7')!.details, /without TLS: tcp:\/\/0\.0\.0\.0:2375/);
});

t.test('section 3: ownership and permission BITS (600 passes "644 or more restrictive"; 0664 does not)', async (t) => {
  const h = tree(t);
  h.accounts(GROUPS, PASSWD);
  h.process({ pid: 9, comm: 'dockerd', argv: ['dockerd', '--tlscacert', '/etc/docker/ca.pem', '--tlscert=/etc/docker/cert.pem', '--tlskey=/etc/docker/key.pem'] });
  h.file('lib/systemd/system/docker.service', '', 0o644, ROOT);
  h.file('etc/systemd/system/docker.socket', '', 0o640, { uid: 1000, gid: 0 });
  h.dir('etc/docker', 0o755, ROOT);
  h.file('etc/docker/daemon.json', '{}', 0o600, ROOT);
  h.file('etc/docker/certs.d/reg:5000/ca.crt', '', 0o444, ROOT);
  h.file('etc/docker/certs.d/reg:5000/client.cert', '', 0o644, ROOT);
  h.file('etc/docker/ca.pem', '', 0o444, ROOT);
  h.file('etc/docker/cert.pem', '', 0o400, { uid: 0, gid: 50 });
  h.file('etc/docker/key.pem', '', 0o600, ROOT);
  h.file('etc/default/docker', '', 0o664, ROOT);
  await h.socket('run/docker.sock', 0o600, { uid: 0, gid: 999 });
  await h.socket('run/containerd/containerd.sock', 0o660, ROOT);
  const r = await run(t, h, ['3']);
  const res = (id: string): string => r.get(id)!.result;
  t.equal(res('3.1'), 'PASS');
  t.equal(res('3.2'), 'PASS');
  t.equal(res('3.3'), 'WARN', '/etc/systemd/system wins over /lib and is owned by alice');
  t.same(r.get('3.3')!.items, ['/etc/systemd/system/docker.socket(alice:root)']);
  t.equal(res('3.4'), 'PASS', '0640 is more restrictive than 644');
  t.equal(res('3.5'), 'PASS');
  t.equal(res('3.6'), 'PASS');
  t.equal(res('3.7'), 'PASS');
  t.equal(res('3.8'), 'WARN');
  t.same(r.get('3.8')!.items, ['/etc/docker/certs.d/reg:5000/client.cert(0644: owner write)']);
  t.equal(res('3.9'), 'PASS');
  t.equal(res('3.10'), 'PASS');
  t.equal(res('3.11'), 'WARN', 'group staff');
  t.equal(res('3.12'), 'PASS', '0400 ≤ 0444');
  t.equal(res('3.13'), 'PASS');
  t.equal(res('3.14'), 'WARN', '0600 is not 400');
  t.equal(res('3.15'), 'PASS', 'root:docker');
  t.equal(res('3.16'), 'PASS', '0600 ≤ 0660');
  t.equal(res('3.17'), 'PASS');
  t.equal(res('3.18'), 'PASS', '0600 is more restrictive than 644 (docker-bench\'s false WARN)');
  t.equal(res('3.19'), 'PASS');
  t.equal(res('3.20'), 'WARN', '0664 has group write');
  t.equal(r.get('3.21')!.details, 'File not found');
  t.equal(res('3.23'), 'PASS');
  t.equal(res('3.24'), 'PASS');
  const empty = await run(t, tree(t), ['3.1', '3.7', '3.9', '3.14', '3.15']);
  t.same([...empty.values()].map((x) => `${x.result} ${x.details}`), [
    'INFO File not found', 'INFO Directory not found', 'INFO No TLS CA certificate found', 'INFO No TLS Key found', 'INFO File not found',
  ]);
});

t.test('section 6: image and container sprawl', async (t) => {
  const h = tree(t);
  const r = await run(t, h, ['6'], {
    containers: [{ name: 'a' }, { name: 'b', state: 'exited' }],
    images: [{ id: `sha256:${'1'.repeat(64)}`, tags: ['used:1'] }, { id: 'sha256:2', tags: ['unused:1'] }],
  });
  t.equal(r.get('6.1')!.details, 'There are currently: 2 images, 1 of them not used by any container');
  t.same(r.get('6.1')!.items, ['unused:1']);
  t.equal(r.get('6.2')!.details, 'There are currently a total of 2 containers, with 1 of them currently running');
});

t.test('section 7: swarm active', async (t) => {
  const h = tree(t);
  h.process({ pid: 9, comm: 'dockerd', argv: ['dockerd'], sockets: [5], tcp: TCP_HEADER + tcpLine(0, '0.0.0.0', 2377, 5) });
  const swarm = { LocalNodeState: 'active', ControlAvailable: true, Managers: 2, Cluster: { Spec: { EncryptionConfig: { AutoLockManagers: false }, CAConfig: { NodeCertExpiry: 7776000000000000 } } } };
  const r = await run(t, h, ['5.1', '7'], {
    info: { Swarm: swarm },
    networks: [{ Name: 'ingress', Driver: 'overlay', Options: {} }, { Name: 'secure', Driver: 'overlay', Options: { encrypted: '' } }],
  });
  const v = (id: string): string => `${r.get(id)!.result}${r.get(id)!.details ? ` ${r.get(id)!.details}` : ''}`;
  t.equal(v('5.1'), 'WARN Swarm mode is active');
  t.equal(v('7.1'), 'WARN Managers: 2');
  t.equal(v('7.2'), 'WARN Swarm management port 2377 listens on all interfaces');
  t.equal(v('7.3'), 'WARN Unencrypted overlay networks: ingress');
  t.equal(v('7.4'), 'NOTE');
  t.equal(v('7.5'), 'WARN');
  t.equal(v('7.7'), 'INFO Node certificate expiry: 2160 hours');
  const good = await run(t, h, ['7.1', '7.2', '7.5', '7.7'], {
    info: { Swarm: { ...swarm, Managers: 3, ControlAvailable: false, Cluster: null } },
  }, { procRoot: h.path('noproc') });
  t.equal(good.get('7.1')!.result, 'PASS');
  t.equal(good.get('7.2')!.result, 'INFO', 'no dockerd process to look at');
  t.equal(good.get('7.5')!.details, 'This node is not a swarm manager');
  t.equal(good.get('7.7')!.result, 'NOTE');
  h.process({ pid: 9, comm: 'dockerd', argv: ['dockerd'], sockets: [5], tcp: TCP_HEADER + tcpLine(0, '10.0.0.5', 2377, 5) });
  const bound = await run(t, h, ['7.2', '7.5'], { info: { Swarm: { ...swarm, Cluster: { Spec: { EncryptionConfig: { AutoLockManagers: true } } } } } });
  t.equal(bound.get('7.2')!.result, 'PASS');
  t.equal(bound.get('7.5')!.result, 'PASS');
});
