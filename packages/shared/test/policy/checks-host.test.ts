import t from 'tap';
import { runCases, type CheckCase } from './run-cases';
import { hasNoNewPrivileges, isRootUser } from '../../src/policy/checks/host';
import type { Mount__Output } from '../../src/proto/index';

const bind = (source: string, readOnly = false, destination = '/mnt'): Mount__Output => ({ type: 'bind', source, destination, readOnly, propagation: 'rprivate' });

t.test('root-user', async (t) => {
  const check = { type: 'root-user' };
  const cases: CheckCase[] = [
    { name: 'uid', check, facts: { user: '10001' }, broken: false },
    { name: 'uid:gid', check, facts: { user: '1000:1000' }, broken: false },
    { name: 'named user', check, facts: { user: 'app' }, broken: false },
    { name: 'non-root user in root group', check, facts: { user: '1000:0' }, broken: false },
    { name: '0', check, facts: { user: '0' }, broken: true, detail: /"0", which is root/ },
    { name: 'root', check, facts: { user: 'root' }, broken: true },
    { name: '0:0', check, facts: { user: '0:0' }, broken: true },
    { name: 'root:root', check, facts: { user: 'root:root' }, broken: true },
    { name: '0:1000', check, facts: { user: '0:1000' }, broken: true },
    { name: 'root:wheel', check, facts: { user: 'root:wheel' }, broken: true },
    { name: 'leading zeros', check, facts: { user: '000' }, broken: true },
    { name: 'empty user, image user empty', check, facts: { user: '', imageUser: '' }, broken: true, detail: /no user is set/ },
    { name: 'empty user, image default user root', check, facts: { user: '', imageUser: 'root' }, broken: true, detail: /image's default user "root"/ },
    { name: 'empty user, image default user 0:0', check, facts: { user: '', imageUser: '0:0' }, broken: true },
    { name: 'empty user, image user node', check, facts: { user: '', imageUser: 'node' }, broken: false },
    { name: 'explicit non-root overrides a root image', check, facts: { user: '1000', imageUser: 'root' }, broken: false },
    { name: 'explicit root overrides a non-root image', check, facts: { user: '0', imageUser: 'node' }, broken: true },
  ];
  runCases(t, cases);
  t.ok(isRootUser(' root '));
  t.ok(isRootUser(':100'), 'no user part means root');
  t.notOk(isRootUser('rooty'));
  t.notOk(isRootUser('10'));
});

t.test('privileged', async (t) => {
  runCases(t, [
    { name: 'not privileged', check: { type: 'privileged' }, broken: false },
    { name: 'privileged', check: { type: 'privileged' }, facts: { privileged: true }, broken: true, detail: /--privileged/ },
  ]);
});

t.test('sensitive-mounts', async (t) => {
  const check = { type: 'sensitive-mounts' };
  runCases(t, [
    { name: 'no mounts', check, broken: false },
    { name: 'volume named like a path is not a bind', check, facts: { mounts: [{ type: 'volume', source: 'etc', destination: '/etc', readOnly: false, propagation: '' }] }, broken: false },
    { name: 'application dir', check, facts: { mounts: [bind('/srv/app/data')] }, broken: false },
    { name: '/etc', check, facts: { mounts: [bind('/etc')] }, broken: true, detail: /is a sensitive path/ },
    { name: '/etc subpath', check, facts: { mounts: [bind('/etc/ssl')] }, broken: true, detail: /under the sensitive path \/etc/ },
    { name: '/etcetera is not /etc', check, facts: { mounts: [bind('/etcetera')] }, broken: false },
    { name: '/ itself', check, facts: { mounts: [bind('/', true)] }, broken: true },
    { name: '/ does not make everything sensitive', check, facts: { mounts: [bind('/home/app')] }, broken: false },
    { name: 'trailing slash', check, facts: { mounts: [bind('/etc/')] }, broken: true },
    { name: 'double slash', check, facts: { mounts: [bind('//etc//passwd')] }, broken: true },
    { name: 'dot-dot escape', check, facts: { mounts: [bind('/srv/../etc/shadow')] }, broken: true },
    { name: 'dot-dot staying outside', check, facts: { mounts: [bind('/etc/../srv/app')] }, broken: false },
    { name: '/var/lib/docker subpath', check, facts: { mounts: [bind('/var/lib/docker/volumes/x')] }, broken: true },
    { name: '/proc read-only (not an exception)', check, facts: { mounts: [bind('/proc', true)] }, broken: true },
    { name: 'parent of a sensitive path', check, facts: { mounts: [bind('/var')] }, broken: true, detail: /contains the sensitive path \/var\/lib\/docker/ },
    { name: 'parent matching off', check: { type: 'sensitive-mounts', matchParents: false }, facts: { mounts: [bind('/var')] }, broken: false },
    { name: '/var/log is fine', check, facts: { mounts: [bind('/var/log/app')] }, broken: false },
    { name: 'read-only exception', check, facts: { mounts: [bind('/etc/localtime', true)] }, broken: false },
    { name: 'read-only exception subpath', check, facts: { mounts: [bind('/etc/ssl/certs/ca-certificates.crt', true)] }, broken: false },
    { name: 'exception needs read-only', check, facts: { mounts: [bind('/etc/localtime', false)] }, broken: true, detail: /read-write/ },
    { name: 'custom exception', check: { type: 'sensitive-mounts', readOnlyExceptions: ['/proc'] }, facts: { mounts: [bind('/proc', true, '/host/proc')] }, broken: false },
    { name: 'custom exceptions replace defaults', check: { type: 'sensitive-mounts', readOnlyExceptions: ['/proc'] }, facts: { mounts: [bind('/etc/localtime', true)] }, broken: true },
    { name: 'added path', check: { type: 'sensitive-mounts', addPaths: ['/srv/secrets'] }, facts: { mounts: [bind('/srv/secrets/x')] }, broken: true },
    { name: 'removed path', check: { type: 'sensitive-mounts', removePaths: ['/dev'] }, facts: { mounts: [bind('/dev/shm')] }, broken: false },
    { name: 'replaced list', check: { type: 'sensitive-mounts', paths: ['/data'] }, facts: { mounts: [bind('/etc')] }, broken: false },
    { name: 'docker socket', check, facts: { mounts: [bind('/var/run/docker.sock', true)] }, broken: true },
    { name: 'several mounts, two bad', check, facts: { mounts: [bind('/srv/x'), bind('/sys', true), bind('/boot/grub')] }, broken: true, evidence: 2 },
  ]);
});

t.test('docker-socket', async (t) => {
  const check = { type: 'docker-socket' };
  runCases(t, [
    { name: 'no socket', check, facts: { mounts: [bind('/srv/app')] }, broken: false },
    { name: 'socket', check, facts: { mounts: [bind('/var/run/docker.sock')] }, broken: true, detail: /runtime socket/ },
    { name: 'socket read-only is still bad', check, facts: { mounts: [bind('/var/run/docker.sock', true)] }, broken: true, detail: /read-only does not protect/ },
    { name: '/run/docker.sock', check, facts: { mounts: [bind('/run/docker.sock')] }, broken: true },
    { name: 'parent dir /var/run', check, facts: { mounts: [bind('/var/run')] }, broken: true, detail: /contains the runtime socket/ },
    { name: 'parent dir /run', check, facts: { mounts: [bind('/run/')] }, broken: true },
    { name: 'root fs', check, facts: { mounts: [bind('/', true)] }, broken: true },
    { name: 'containerd socket', check, facts: { mounts: [bind('/run/containerd/containerd.sock')] }, broken: true },
    { name: 'sibling is fine', check, facts: { mounts: [bind('/var/run/app.sock')] }, broken: false },
    { name: 'custom socket path', check: { type: 'docker-socket', socketPaths: ['/srv/docker/docker.sock'] }, facts: { mounts: [bind('/srv/docker')] }, broken: true },
  ]);
});

t.test('capabilities', async (t) => {
  const check = { type: 'capabilities' };
  runCases(t, [
    { name: 'none added', check, broken: false },
    { name: 'harmless cap', check, facts: { capAdd: ['NET_BIND_SERVICE'] }, broken: false },
    { name: 'SYS_ADMIN', check, facts: { capAdd: ['SYS_ADMIN'] }, broken: true, detail: /SYS_ADMIN/ },
    { name: 'CAP_ prefix in facts', check, facts: { capAdd: ['CAP_SYS_PTRACE'] }, broken: true },
    { name: 'lower case', check, facts: { capAdd: ['cap_net_admin'] }, broken: true },
    { name: 'ALL', check, facts: { capAdd: ['ALL'] }, broken: true, detail: /all capabilities/ },
    { name: 'DAC_READ_SEARCH and SYS_MODULE', check, facts: { capAdd: ['DAC_READ_SEARCH', 'CAP_SYS_MODULE', 'CHOWN'] }, broken: true, evidence: 2 },
    { name: 'custom forbidden list with CAP_ spelling', check: { type: 'capabilities', forbidden: ['CAP_NET_RAW'] }, facts: { capAdd: ['NET_RAW'] }, broken: true },
    { name: 'custom forbidden list allows others', check: { type: 'capabilities', forbidden: ['NET_RAW'] }, facts: { capAdd: ['SYS_ADMIN'] }, broken: false },
    { name: 'ALL breaks any forbidden list', check: { type: 'capabilities', forbidden: ['NET_RAW'] }, facts: { capAdd: ['ALL'] }, broken: true },
    { name: 'allowlist mode passes', check: { type: 'capabilities', allowed: ['NET_BIND_SERVICE', 'CAP_CHOWN'] }, facts: { capAdd: ['CAP_NET_BIND_SERVICE', 'CHOWN'] }, broken: false },
    { name: 'allowlist mode breaks', check: { type: 'capabilities', allowed: ['NET_BIND_SERVICE'] }, facts: { capAdd: ['SETUID'] }, broken: true },
    { name: 'drop ALL required and present', check: { type: 'capabilities', requireDropAll: true }, facts: { capDrop: ['ALL'] }, broken: false },
    { name: 'drop ALL required and missing', check: { type: 'capabilities', requireDropAll: true }, facts: { capDrop: ['NET_RAW'] }, broken: true, detail: /cap-drop ALL/ },
  ]);
});

t.test('no-new-privileges', async (t) => {
  const check = { type: 'no-new-privileges' };
  runCases(t, [
    { name: 'bare', check, facts: { securityOpt: ['no-new-privileges'] }, broken: false },
    { name: ':true', check, facts: { securityOpt: ['no-new-privileges:true'] }, broken: false },
    { name: '=true', check, facts: { securityOpt: ['no-new-privileges=true'] }, broken: false },
    { name: 'missing', check, facts: { securityOpt: [] }, broken: true, detail: /not set/ },
    { name: ':false', check, facts: { securityOpt: ['no-new-privileges:false'] }, broken: true },
    { name: 'other options only', check, facts: { securityOpt: ['seccomp=default.json'] }, broken: true },
  ]);
  t.notOk(hasNoNewPrivileges(['no-new-privileges:true', 'no-new-privileges=false']), 'last one wins');
});

t.test('read-only-rootfs', async (t) => {
  runCases(t, [
    { name: 'read-only', check: { type: 'read-only-rootfs' }, facts: { readOnlyRootfs: true }, broken: false },
    { name: 'writable', check: { type: 'read-only-rootfs' }, facts: { readOnlyRootfs: false }, broken: true },
  ]);
});

t.test('host-namespaces', async (t) => {
  const check = { type: 'host-namespaces' };
  runCases(t, [
    { name: 'private', check, broken: false },
    { name: 'host network', check, facts: { networkMode: 'host' }, broken: true, detail: /network namespace/ },
    { name: 'host pid', check, facts: { pidMode: 'host' }, broken: true },
    { name: 'host ipc', check, facts: { ipcMode: 'host' }, broken: true },
    { name: 'host uts', check, facts: { utsMode: 'host' }, broken: true },
    { name: 'host userns', check, facts: { usernsMode: 'host' }, broken: true },
    { name: 'all of them', check, facts: { networkMode: 'host', pidMode: 'host', ipcMode: 'host', utsMode: 'host', usernsMode: 'host' }, broken: true, evidence: 5 },
    { name: 'shareable ipc is not host', check, facts: { ipcMode: 'shareable' }, broken: false },
    { name: 'container pid is not host', check, facts: { pidMode: 'container:abc' }, broken: false },
    { name: 'only pid selected', check: { type: 'host-namespaces', namespaces: ['pid'] }, facts: { networkMode: 'host' }, broken: false },
    { name: 'only pid selected, pid host', check: { type: 'host-namespaces', namespaces: ['pid'] }, facts: { pidMode: 'host' }, broken: true },
  ]);
});

t.test('seccomp-apparmor', async (t) => {
  const check = { type: 'seccomp-apparmor' };
  runCases(t, [
    { name: 'defaults', check, broken: false },
    { name: 'custom seccomp profile', check, facts: { securityOpt: ['seccomp=/etc/docker/seccomp.json'] }, broken: false },
    { name: 'seccomp=unconfined', check, facts: { securityOpt: ['seccomp=unconfined'] }, broken: true, detail: /seccomp is unconfined/ },
    { name: 'seccomp:unconfined', check, facts: { securityOpt: ['seccomp:unconfined'] }, broken: true },
    { name: 'apparmor=unconfined', check, facts: { securityOpt: ['apparmor=unconfined'] }, broken: true, detail: /AppArmor/ },
    { name: 'label=disable', check, facts: { securityOpt: ['label=disable'] }, broken: true },
    { name: 'selinux off by param', check: { type: 'seccomp-apparmor', selinux: false }, facts: { securityOpt: ['label=disable'] }, broken: false },
    { name: 'seccomp off by param', check: { type: 'seccomp-apparmor', seccomp: false }, facts: { securityOpt: ['seccomp=unconfined'] }, broken: false },
  ]);
});

t.test('devices', async (t) => {
  const check = { type: 'devices' };
  runCases(t, [
    { name: 'no devices', check, broken: false },
    { name: 'a device', check, facts: { devices: ['/dev/sda'] }, broken: true, detail: /\/dev\/sda/ },
    { name: 'CLI form host:container:perms', check, facts: { devices: ['/dev/fuse:/dev/fuse:rwm'] }, broken: true, detail: /host device \/dev\/fuse / },
    { name: 'allowlisted glob', check: { type: 'devices', allowed: ['/dev/nvidia*'] }, facts: { devices: ['/dev/nvidia0', '/dev/nvidiactl'] }, broken: false },
    { name: 'outside the allowlist', check: { type: 'devices', allowed: ['/dev/nvidia*'] }, facts: { devices: ['/dev/nvidia0', '/dev/mem'] }, broken: true, evidence: 1, detail: /not in the allowed list/ },
  ]);
});
