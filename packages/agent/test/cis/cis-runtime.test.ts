// CIS sections 4 and 5 against a fake fleet of deliberately misconfigured
// containers: the verdict and the flagged containers of every check, and
// the docker-bench-security false results that the shared evaluator fixes
// (0:0 / root:root users, sensitive subpaths, CPU quota vs shares, restart
// policy, daemon-wide no-new-privileges, "if applicable" AppArmor/SELinux).
import t, { type Test } from 'tap';
import { runCisReport } from '../../src/cis/cis-report';
import { isAddInstruction, isUpdateAlone } from '../../src/cis/section-4-images';
import type { CisReport, CisResult } from '../../src/cis/cis-types';
import { HostTree } from '../lockdown/fixtures/host-tree';
import { fakeEngine, type FakeContainer, type FakeEngineOptions } from './fixtures/fake-engine';

const NOW = new Date('2026-11-28T12:00:00Z');
/** A container that passes every section 5 check. */
const GOOD: FakeContainer = {
  name: 'good', user: '10001:10001', readOnly: true, memory: 64 << 20, nanoCpus: 5e8, pidsLimit: 100, securityOpt: ['no-new-privileges:true'],
  health: 'healthy', ulimits: [{ Name: 'nofile', Soft: 1024, Hard: 2048 }], restart: { Name: 'on-failure', MaximumRetryCount: 5 }, appArmor: 'docker-default',
};

async function run(t: Test, o: FakeEngineOptions, hostSetup?: (h: HostTree) => void, only = ['4', '5']): Promise<Map<string, CisResult>> {
  const h = new HostTree();
  t.teardown(() => h.close());
  hostSetup?.(h);
  const report: CisReport = await runCisReport({ docker: fakeEngine(o), hostRoot: h.root, only, now: () => NOW, env: {} });
  return new Map(report.tests.flatMap((s) => s.results).map((r) => [r.id, r]));
}

t.test('a clean container passes every automated section 5 check', async (t) => {
  const r = await run(t, { containers: [GOOD] });
  const notPass = [...r.values()].filter((x) => x.id.startsWith('5.') && x.result !== 'PASS').map((x) => `${x.id} ${x.result}`);
  t.same(notPass, ['5.2 INFO', '5.3 INFO', '5.23 NOTE', '5.24 NOTE', '5.28 INFO'], 'n/a on a host without AppArmor/SELinux, and the manual ones');
  t.equal(r.get('4.1')!.result, 'PASS');
});

t.test('4.1 root user via the evaluator: "", 0, 0:0, root:root, root:adm and an image default of root are all root', async (t) => {
  const r = await run(t, {
    containers: [
      { ...GOOD, name: 'empty', user: '' },
      { ...GOOD, name: 'zero', user: '0' },
      { ...GOOD, name: 'zerozero', user: '0:0' },
      { ...GOOD, name: 'rootroot', user: 'root:root' },
      { ...GOOD, name: 'rootadm', user: 'root:adm' },
      { ...GOOD, name: 'uidgid0', user: '1000:0' },
      { ...GOOD, name: 'named', user: 'app' },
    ],
  });
  const x = r.get('4.1')!;
  t.equal(x.result, 'WARN');
  t.same(x.items, ['empty', 'rootadm', 'rootroot', 'zero', 'zerozero'], 'docker-bench flagged only "empty"');
  t.match(x.details, /zerozero \(container runs as user "0:0", which is root \(uid 0\)\)/);
});

t.test('section 5 verdicts for a misconfigured fleet', async (t) => {
  const r = await run(t, {
    info: { SecurityOptions: ['name=seccomp,profile=default', 'name=apparmor'] },
    containers: [
      GOOD,
      { ...GOOD, name: 'priv', privileged: true },
      { ...GOOD, name: 'caps', capAdd: ['CAP_NET_ADMIN', 'CHOWN'] },
      { ...GOOD, name: 'defaultcaps', capAdd: ['CHOWN', 'net_bind_service'] },
      { ...GOOD, name: 'sslrw', binds: [{ source: '/etc/ssl', destination: '/ssl' }] },
      { ...GOOD, name: 'varparent', binds: [{ source: '/var', destination: '/hostvar', rw: false }] },
      { ...GOOD, name: 'procsys', binds: [{ source: '/proc/sys', destination: '/ps' }] },
      { ...GOOD, name: 'tzok', binds: [{ source: '/etc/localtime', destination: '/etc/localtime', rw: false }, { source: '/srv/data', destination: '/data' }] },
      { ...GOOD, name: 'sock', binds: [{ source: '/var/run/docker.sock', destination: '/var/run/docker.sock' }] },
      { ...GOOD, name: 'sshd', processes: ['/usr/sbin/sshd -D', 'sshd: root@pts/0'] },
      { ...GOOD, name: 'ports', ports: { '80/tcp': [{ HostIp: '0.0.0.0', HostPort: '80' }], '8443/tcp': [{ HostIp: '127.0.0.1', HostPort: '8443' }] } },
      { ...GOOD, name: 'hostnet', networkMode: 'host' },
      { ...GOOD, name: 'nomem', memory: 0 },
      { ...GOOD, name: 'nocpu', nanoCpus: 0 },
      { ...GOOD, name: 'sharesonly', nanoCpus: 0, cpuShares: 512 },
      { ...GOOD, name: 'rw', readOnly: false },
      { ...GOOD, name: 'always', restart: { Name: 'always', MaximumRetryCount: 0 } },
      { ...GOOD, name: 'onfail0', restart: { Name: 'on-failure', MaximumRetryCount: 0 } },
      { ...GOOD, name: 'norestart', restart: { Name: 'no', MaximumRetryCount: 0 } },
      { ...GOOD, name: 'hostpid', pidMode: 'host' },
      { ...GOOD, name: 'hostipc', ipcMode: 'host' },
      { ...GOOD, name: 'dev', devices: ['/dev/fuse'] },
      { ...GOOD, name: 'disks', deviceCgroupRules: ['b *:* rwm'] },
      { ...GOOD, name: 'noulimit', ulimits: [] },
      { ...GOOD, name: 'rshared', binds: [{ source: '/srv/x', destination: '/x', propagation: 'rshared' }] },
      { ...GOOD, name: 'hostuts', utsMode: 'host' },
      { ...GOOD, name: 'noseccomp', securityOpt: ['no-new-privileges:true', 'seccomp=unconfined'] },
      { ...GOOD, name: 'cgparent', cgroupParent: '/custom' },
      { ...GOOD, name: 'nonnp', securityOpt: [] },
      { ...GOOD, name: 'nohealth', health: undefined },
      { ...GOOD, name: 'nopids', pidsLimit: 0 },
      { ...GOOD, name: 'bridge', networkMode: 'bridge' },
      { ...GOOD, name: 'hostuserns', usernsMode: 'host' },
      { ...GOOD, name: 'unconfined', securityOpt: ['no-new-privileges', 'apparmor=unconfined'], appArmor: 'unconfined' },
      { ...GOOD, name: 'stopped', privileged: true, state: 'exited' },
    ],
  }, undefined, ['5']);
  const expect: Record<string, [string, string[] | undefined]> = {
    '5.1': ['PASS', undefined],
    '5.2': ['WARN', ['unconfined']],
    '5.3': ['INFO', undefined],
    '5.4': ['WARN', ['caps:NET_ADMIN']],
    '5.5': ['WARN', ['priv']],
    '5.6': ['WARN', ['procsys:/proc/sys', 'sslrw:/etc/ssl', 'varparent:/var']],
    '5.7': ['WARN', ['sshd']],
    '5.8': ['WARN', ['ports:80']],
    '5.9': ['INFO', ['ports:80 ports:8443']],
    '5.10': ['WARN', ['hostnet']],
    '5.11': ['WARN', ['nomem']],
    '5.12': ['WARN', ['nocpu']],
    '5.13': ['WARN', ['rw']],
    '5.14': ['WARN', ['ports:0.0.0.0:80']],
    '5.15': ['WARN', ['always:always', 'onfail0:on-failure:0']],
    '5.16': ['WARN', ['hostpid']],
    '5.17': ['WARN', ['hostipc']],
    '5.18': ['INFO', ['dev', 'disks']],
    '5.19': ['INFO', ['noulimit']],
    '5.20': ['WARN', ['rshared:/x']],
    '5.21': ['WARN', ['hostuts']],
    '5.22': ['WARN', ['noseccomp']],
    '5.23': ['NOTE', undefined],
    '5.24': ['NOTE', undefined],
    '5.25': ['WARN', ['cgparent:/custom']],
    '5.26': ['WARN', ['nonnp']],
    '5.27': ['WARN', ['nohealth']],
    '5.28': ['INFO', undefined],
    '5.29': ['WARN', ['nopids']],
    '5.30': ['WARN', ['bridge']],
    '5.31': ['WARN', ['hostuserns']],
    '5.32': ['WARN', ['sock']],
  };
  for (const [id, [result, items]] of Object.entries(expect)) {
    const x = r.get(id)!;
    t.equal(x.result, result, `${id} ${x.desc}`);
    t.same(x.items ? [...x.items].sort() : undefined, items, `${id} items`);
  }
  t.notOk(r.get('5.6')!.items!.some((i) => i.startsWith('tzok') || i.startsWith('sock')), 'read-only /etc/localtime and /srv are fine; the socket is 5.32');
  t.match(r.get('5.18')!.details, /^Containers with host devices or device cgroup rules: /);
  t.match(r.get('5.5')!.details, /^Containers running in privileged mode: priv$/);
});

t.test('5.26 with daemon-wide no-new-privileges: only an explicit opt-out is flagged', async (t) => {
  const r = await run(t, {
    containers: [{ ...GOOD, name: 'inherits', securityOpt: [] }, { ...GOOD, name: 'optout', securityOpt: ['no-new-privileges=false'] }],
  }, (h) => h.file('etc/docker/daemon.json', '{"no-new-privileges": true}'), ['5.26']);
  t.same(r.get('5.26')!.items, ['optout']);
});

t.test('5.3 on an SELinux host; 5.7 without `top`', async (t) => {
  const r = await run(t, {
    info: { SecurityOptions: ['name=selinux'] },
    containers: [
      { ...GOOD, name: 'labelled' },
      { ...GOOD, name: 'nolabel', securityOpt: ['no-new-privileges', 'label=disable'] },
      // dockerd reads a bare "disable" as label=disable, and accepts the ":" form.
      { ...GOOD, name: 'bare', securityOpt: ['no-new-privileges', 'disable'] },
      { ...GOOD, name: 'colon', securityOpt: ['no-new-privileges', 'label:disable'] },
    ],
    noTop: true,
  }, undefined, ['5.3', '5.7']);
  t.same([...r.get('5.3')!.items!].sort(), ['bare', 'colon', 'nolabel']);
  t.equal(r.get('5.7')!.result, 'INFO');
  t.match(r.get('5.7')!.details, /Could not list processes/);
  const s = await run(t, { info: { SecurityOptions: ['name=selinux'] }, containers: [GOOD] }, undefined, ['5.3']);
  t.equal(s.get('5.3')!.result, 'PASS');
});

t.test('section 4: content trust, HEALTHCHECK, update alone, ADD (not a base rootfs)', async (t) => {
  const h = new HostTree();
  t.teardown(() => h.close());
  const docker = fakeEngine({
    containers: [GOOD],
    images: [
      { id: 'sha256:aaa', tags: ['good:1'], healthcheck: true, history: ['/bin/sh -c #(nop) ADD file:0a1b2c in / ', 'RUN /bin/sh -c apt-get update && apt-get install -y curl # buildkit', 'COPY app /app # buildkit'] },
      { id: 'sha256:bbb', tags: ['nohc:1', 'nohc:latest'], history: ['RUN /bin/sh -c apt-get update # buildkit'] },
      { id: 'sha256:cccccccccccccccccccc', tags: [], history: ['ADD https://example.com/x.tgz /opt/ # buildkit'] },
    ],
  });
  const withTrust = await runCisReport({ docker, hostRoot: h.root, only: ['4'], now: () => NOW, env: { DOCKER_CONTENT_TRUST: '1' } });
  const r = new Map(withTrust.tests.flatMap((s) => s.results).map((x) => [x.id, x]));
  t.equal(r.get('4.5')!.result, 'PASS');
  t.same(r.get('4.6')!.items, ['cccccccccccc', 'nohc:1,nohc:latest']);
  t.same(r.get('4.7')!.items, ['nohc:1,nohc:latest']);
  t.equal(r.get('4.7')!.result, 'INFO', 'manual: for review');
  t.same(r.get('4.9')!.items, ['cccccccccccc']);
  for (const id of ['4.2', '4.3', '4.4', '4.8', '4.10', '4.11', '4.12']) t.equal(r.get(id)!.result, 'NOTE', id);
  const noTrust = await runCisReport({ docker, hostRoot: h.root, only: ['4.5'], now: () => NOW, env: {} });
  t.equal(noTrust.tests[0]!.results[0]!.result, 'WARN');
  const none = await run(t, {}, undefined, ['4.1', '4.6', '4.7']);
  t.equal(none.get('4.1')!.result, 'INFO');
  t.equal(none.get('4.6')!.details, 'No images found');
});

t.test('history heuristics', async (t) => {
  t.ok(isUpdateAlone('/bin/sh -c apt-get update'));
  t.ok(isUpdateAlone('RUN /bin/sh -c yum makecache # buildkit'));
  t.notOk(isUpdateAlone('/bin/sh -c apt-get update && apt-get install -y curl'));
  t.notOk(isUpdateAlone('/bin/sh -c apk update && apk add curl'));
  t.notOk(isUpdateAlone('/bin/sh -c apt-get update && apt-get dist-upgrade -y'));
  t.notOk(isUpdateAlone('/bin/sh -c echo update'));
  t.ok(isAddInstruction('/bin/sh -c #(nop) ADD https://x/y.tgz /'));
  t.ok(isAddInstruction('ADD app.tar /srv/ # buildkit'));
  t.notOk(isAddInstruction('/bin/sh -c #(nop) ADD file:4b03b5f551e3fbdf47ec609712007327828f7530cc3455c43bbcdcaf449a75a9 in / '));
  t.notOk(isAddInstruction('/bin/sh -c #(nop) COPY file:abc in /app'));
  t.notOk(isAddInstruction('/bin/sh -c echo ADD'));
});
