import t from 'tap';
import { runCases, type CheckCase } from './run-cases';
import {
  DEFAULT_MASKED_PATHS, DEFAULT_READONLY_PATHS, goAtoi, hasNoNewPrivileges, isRootUser, normalizeDevicePath, parseDeviceCgroupRule, uidOf,
} from '../../src/policy/checks/host';
import { policyFromJson, PolicyValidationError } from '../../src/policy/parse';
import type { Mount__Output } from '../../src/proto/index';
import { host, policyOf, rule } from './helpers';

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
  t.ok(isRootUser(':100'), 'no user part means root');
  t.notOk(isRootUser('rooty'));
  t.notOk(isRootUser('10'));
});

t.test('root-user: every spelling runc reads as uid 0 (strconv.Atoi on the part before the first ":")', async (t) => {
  const root = ['', '0', '00', '+0', '-0', '+000', '-000', '-0:0', '+0:root', '0:', ':', ':0', 'root', 'root:', 'root:0:extra', '0:1000:x',
    '0'.repeat(40), `+${'0'.repeat(40)}`];
  for (const u of root) t.ok(isRootUser(u), `${JSON.stringify(u)} is root`);
  const notRoot = [
    ' 0', '0 ', ' root ', 'root ', ' root', 'ROOT', 'Root', '+', '-', '++0', '+-0', '0x0', '0o0', '0b0', '0_0', '0.0', '1e0', '\uff10',
    '1', '+1', '-1', '1000:0', 'root0', '9223372036854775808', '-9223372036854775809', '9223372036854775807', '00000000000000000001',
  ];
  for (const u of notRoot) t.notOk(isRootUser(u), `${JSON.stringify(u)} is not root`);
  runCases(t, [
    { name: '+0 as --user', check: { type: 'root-user' }, facts: { user: '+0' }, broken: true, detail: /"\+0", which is root/ },
    { name: '-0:0 as --user', check: { type: 'root-user' }, facts: { user: '-0:0' }, broken: true },
    { name: 'image USER -0', check: { type: 'root-user' }, facts: { user: '', imageUser: '-0' }, broken: true, detail: /image's default user "-0"/ },
    { name: '" 0" is no user runc can find', check: { type: 'root-user' }, facts: { user: ' 0' }, broken: false },
  ]);
});

t.test('uidOf and goAtoi follow Go', async (t) => {
  t.equal(uidOf(''), undefined, 'empty: the default user');
  t.equal(uidOf(':5'), undefined);
  t.equal(uidOf('+0'), 0);
  t.equal(uidOf('-0'), 0);
  t.ok(Object.is(uidOf('-0'), 0), 'no negative zero');
  t.equal(uidOf('1000:1000'), 1000);
  t.equal(uidOf('-5'), -5, 'a number, which runc refuses as out of range');
  t.equal(uidOf('root'), 'name');
  t.equal(uidOf(' 0'), 'name');
  t.equal(uidOf('99999999999999999999'), 'name', 'beyond Go int range: not a number to Atoi');
  t.equal(goAtoi('9223372036854775807'), 9223372036854775807);
  t.equal(goAtoi('-9223372036854775808'), -9223372036854775808);
  t.equal(goAtoi('9223372036854775808'), undefined);
  t.equal(goAtoi(''), undefined);
  t.equal(goAtoi('+'), undefined);
  t.equal(goAtoi('12a'), undefined);
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
    { name: "dockerd's plugin directory (authz socket)", check, facts: { mounts: [bind('/run/docker/plugins')] }, broken: true },
    { name: "dockerd's exec-root through /var/run", check, facts: { mounts: [bind('/var/run/docker')] }, broken: true },
    { name: "the agent's state (key, policy bundle)", check, facts: { mounts: [bind('/var/lib/bulkhead-agent/agent.key')] }, broken: true },
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
  for (const v of ['1', 't', 'T', 'TRUE', 'true', 'True']) t.ok(hasNoNewPrivileges([`no-new-privileges=${v}`]), `ParseBool reads ${v} as true`);
  for (const v of ['0', 'f', 'FALSE', 'yes', 'tRuE']) t.notOk(hasNoNewPrivileges([`no-new-privileges=${v}`]), `${v} is not true to ParseBool`);
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

t.test('host-namespaces: the cgroup namespace, judged where the evidence is fair', async (t) => {
  const check = { type: 'host-namespaces' };
  const v1 = { ...host(), cgroupVersion: 1 };
  const v2 = { ...host(), cgroupVersion: 2 };
  const anywhere = { type: 'host-namespaces', cgroupnsOnCgroupV1: true };
  runCases(t, [
    { name: 'host cgroupns on a cgroup v2 host', check, host: v2, facts: { cgroupnsMode: 'host' }, broken: true, detail: /cgroup namespace \(--cgroupns host\)/ },
    { name: 'private on v2', check, host: v2, facts: { cgroupnsMode: 'private' }, broken: false },
    { name: 'not set (a request leaving the default) on v2', check, host: v2, broken: false },
    { name: 'host on a cgroup v1 host: the engine default for every container', check, host: v1, facts: { cgroupnsMode: 'host' }, broken: false },
    { name: 'host, host unknown', check, facts: { cgroupnsMode: 'host' }, broken: false },
    { name: 'host on v1 with cgroupnsOnCgroupV1', check: anywhere, host: v1, facts: { cgroupnsMode: 'host' }, broken: true },
    { name: 'host, host unknown, with cgroupnsOnCgroupV1', check: anywhere, facts: { cgroupnsMode: 'host' }, broken: true },
    { name: 'private on v1 with cgroupnsOnCgroupV1', check: anywhere, host: v1, facts: { cgroupnsMode: 'private' }, broken: false },
    { name: 'cgroup not among the namespaces', check: { type: 'host-namespaces', namespaces: ['pid'] }, host: v2, facts: { cgroupnsMode: 'host' }, broken: false },
    { name: 'cgroup alone', check: { type: 'host-namespaces', namespaces: ['cgroup'] }, host: v2, facts: { cgroupnsMode: 'host', pidMode: 'host' }, broken: true, evidence: 1 },
  ]);
});

t.test('seccomp-apparmor', async (t) => {
  const check = { type: 'seccomp-apparmor' };
  runCases(t, [
    { name: 'defaults', check, broken: false },
    { name: 'custom seccomp profile', check, facts: { securityOpt: ['seccomp=/etc/docker/seccomp.json'] }, broken: false },
    { name: 'seccomp=unconfined', check, facts: { securityOpt: ['seccomp=unconfined'] }, broken: true, detail: /seccomp is unconfined/ },
    { name: 'inline profile allowing by default', check, facts: { securityOpt: ['seccomp={"defaultAction":"SCMP_ACT_ALLOW"}'] }, broken: true, detail: /as good as unconfined.*SCMP_ACT_ALLOW/ },
    { name: 'inline profile logging by default, key in another case', check, facts: { securityOpt: ['seccomp={"DEFAULTACTION":"SCMP_ACT_LOG","syscalls":[]}'] }, broken: true, detail: /SCMP_ACT_LOG/ },
    { name: 'inline profile, a later duplicate allows (Go: last wins)', check, facts: { securityOpt: ['seccomp={"defaultAction":"SCMP_ACT_ERRNO","DefaultAction":"SCMP_ACT_ALLOW"}'] }, broken: true },
    { name: 'inline allowlist profile (default errno)', check, facts: { securityOpt: ['seccomp={"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW"}]}'] }, broken: false },
    { name: 'inline profile that does not parse (dockerd refuses it at start)', check, facts: { securityOpt: ['seccomp={"defaultAction":'] }, broken: false },
    { name: 'seccomp:unconfined', check, facts: { securityOpt: ['seccomp:unconfined'] }, broken: true },
    { name: 'apparmor=unconfined', check, facts: { securityOpt: ['apparmor=unconfined'] }, broken: true, detail: /AppArmor/ },
    { name: 'label=disable', check, facts: { securityOpt: ['label=disable'] }, broken: true },
    { name: 'selinux off by param', check: { type: 'seccomp-apparmor', selinux: false }, facts: { securityOpt: ['label=disable'] }, broken: false },
    { name: 'seccomp off by param', check: { type: 'seccomp-apparmor', seccomp: false }, facts: { securityOpt: ['seccomp=unconfined'] }, broken: false },
    { name: 'bare "disable" is label=disable to dockerd', check, facts: { securityOpt: ['disable'] }, broken: true, detail: /"disable", which dockerd reads as label=disable/ },
    { name: 'label:disable', check, facts: { securityOpt: ['label:disable'] }, broken: true, detail: /disabled \(label:disable\)/ },
    { name: 'apparmor:unconfined', check, facts: { securityOpt: ['apparmor:unconfined'] }, broken: true, detail: /AppArmor/ },
    { name: 'SELinux type spc_t', check, facts: { securityOpt: ['label=type:spc_t'] }, broken: true, detail: /unconfined type spc_t/ },
    { name: 'SELinux type unconfined_t, colon form', check, facts: { securityOpt: ['label:type:unconfined_t'] }, broken: true },
    { name: 'a confined SELinux type', check, facts: { securityOpt: ['label=type:container_t', 'label=level:s0:c100,c200'] }, broken: false },
    { name: 'bare "disable" with selinux off', check: { type: 'seccomp-apparmor', selinux: false }, facts: { securityOpt: ['disable', 'label=type:spc_t'] }, broken: false },
    { name: '"disable=x" is not the bare form', check, facts: { securityOpt: ['disable=x'] }, broken: false },
    { name: 'all three at once', check, facts: { securityOpt: ['seccomp:unconfined', 'apparmor=unconfined', 'disable'] }, broken: true, evidence: 3 },
  ]);
});

t.test('system-paths', async (t) => {
  const check = { type: 'system-paths' };
  const list = (values: readonly string[]) => ({ values: [...values] });
  runCases(t, [
    { name: 'absent lists: dockerd defaults', check, broken: false },
    { name: 'the default lists as dockerd fills them in', check, facts: { maskedPaths: list(DEFAULT_MASKED_PATHS), readonlyPaths: list(DEFAULT_READONLY_PATHS) }, broken: false },
    {
      name: 'a newer engine\'s longer defaults', check,
      facts: { maskedPaths: list([...DEFAULT_MASKED_PATHS, '/proc/interrupts', '/sys/devices/virtual/powercap']), readonlyPaths: list(DEFAULT_READONLY_PATHS) }, broken: false,
    },
    {
      name: 'systempaths=unconfined (both lists empty)', check, facts: { maskedPaths: list([]), readonlyPaths: list([]) }, broken: true, evidence: 2,
      detail: /\/proc\/kcore.* are not masked \(MaskedPaths is empty: --security-opt systempaths=unconfined\)[^]*\/proc\/sysrq-trigger are writable/,
    },
    {
      name: 'a list that leaves one out', check, facts: { maskedPaths: list(DEFAULT_MASKED_PATHS.filter((p) => p !== '/proc/kcore')) }, broken: true, evidence: 1,
      detail: /^\/proc\/kcore is not masked \(MaskedPaths leaves them out\)$/,
    },
    { name: 'readonly list without /proc/sys', check, facts: { readonlyPaths: list(['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sysrq-trigger']) }, broken: true, detail: /^\/proc\/sys is writable/ },
    { name: 'a parent covers its children', check, facts: { maskedPaths: list(['/proc/', '/sys/firmware']), readonlyPaths: list([]) }, broken: false },
    { name: 'masked covers read-only', check, facts: { maskedPaths: list([...DEFAULT_MASKED_PATHS, ...DEFAULT_READONLY_PATHS]), readonlyPaths: list([]) }, broken: false },
    { name: 'a sibling does not cover', check, facts: { maskedPaths: list([...DEFAULT_MASKED_PATHS.filter((p) => p !== '/sys/firmware'), '/sys/firmware-x']) }, broken: true },
    { name: 'custom requirement', check: { type: 'system-paths', maskedPaths: ['/proc/kcore'], readonlyPaths: [] }, facts: { maskedPaths: list(['/proc/kcore']), readonlyPaths: list([]) }, broken: false },
    { name: 'custom requirement broken', check: { type: 'system-paths', maskedPaths: ['/proc/interrupts'] }, facts: { maskedPaths: list(DEFAULT_MASKED_PATHS) }, broken: true, detail: /\/proc\/interrupts is not masked/ },
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

t.test('devices: host paths as dockerd opens them', async (t) => {
  const net = { type: 'devices', allowed: ['/dev/net/*'] };
  runCases(t, [
    { name: '/dev/net/.. is all of /dev', check: net, facts: { devices: ['/dev/net/..'] }, broken: true, detail: /host device \/dev\/net\/\.\. \(that is \/dev\) is passed/ },
    { name: 'a trailing slash is the directory', check: net, facts: { devices: ['/dev/net/'] }, broken: true, detail: /\(that is \/dev\/net\)/ },
    { name: 'climbing out through ..', check: net, facts: { devices: ['/dev/net/../sda'] }, broken: true },
    { name: 'CLI form with ..', check: net, facts: { devices: ['/dev/net/..:/dev/x:rwm'] }, broken: true },
    { name: 'a relative path is relative to /', check: net, facts: { devices: ['dev/net/tun'] }, broken: false },
    { name: 'double slashes', check: net, facts: { devices: ['//dev//net//tun'] }, broken: false },
    { name: 'the allowed device itself', check: net, facts: { devices: ['/dev/net/tun'] }, broken: false },
  ]);
  t.equal(normalizeDevicePath('/dev/net/..'), '/dev');
  t.equal(normalizeDevicePath('dev/../dev/sda/'), '/dev/sda');
});

t.test('devices: device cgroup rules', async (t) => {
  const check = { type: 'devices' };
  const rules = (...values: string[]) => ({ deviceCgroupRules: { values } });
  const usb = { type: 'devices', allowedCgroupRules: ['c 189:* rwm'] };
  runCases(t, [
    { name: 'empty list', check, facts: rules(), broken: false },
    { name: 'block devices: the host disks', check, facts: rules('b *:* rwm'), broken: true, detail: /"b \*:\* rwm" allows block devices — the host's disks, and with mknod/ },
    { name: 'a specific block device without mknod', check, facts: rules('b 8:0 rw'), broken: true, detail: /^device cgroup rule "b 8:0 rw" allows block devices — the host's disks$/ },
    { name: 'every device', check, facts: rules('a *:* rwm'), broken: true, detail: /allows every host device/ },
    { name: 'type a ignores its numbers', check, facts: rules('a 1:3 r'), broken: true, detail: /allows every host device$/ },
    { name: 'any character device', check, facts: rules('c *:* m'), broken: true, detail: /every character device \(any major number\), and with mknod/ },
    { name: 'one character device', check, facts: rules('c 1:3 rw'), broken: true, detail: /allows host character devices 1:3$/ },
    { name: 'a rule dockerd refuses', check, facts: rules('a'), broken: true, detail: /"a" is not one dockerd accepts/ },
    { name: 'devices and rules together', check, facts: { devices: ['/dev/fuse'], ...rules('c 10:229 rwm', 'b 8:* r') }, broken: true, evidence: 3 },
    { name: 'allowed by type and major', check: usb, facts: rules('c 189:3 rw', 'c 189:* rwm'), broken: false },
    { name: 'another major', check: usb, facts: rules('c 188:0 r'), broken: true, detail: /and is not in the allowed list/ },
    { name: 'another type', check: usb, facts: rules('b 189:0 r'), broken: true },
    { name: 'a wider number than allowed', check: usb, facts: rules('c *:* r'), broken: true },
    { name: 'more access than allowed', check: { type: 'devices', allowedCgroupRules: ['c 189:* r'] }, facts: rules('c 189:1 rw'), broken: true },
    { name: 'an exact minor', check: { type: 'devices', allowedCgroupRules: ['c 10:200 rwm'] }, facts: rules('c 10:200 rw', 'c 10:201 r'), broken: true, evidence: 1 },
    { name: 'an "a" entry allows everything', check: { type: 'devices', allowedCgroupRules: ['a *:* rwm'] }, facts: rules('b 8:0 rwm', 'a *:* rw'), broken: false },
    { name: 'an unparsable rule is never allowed', check: { type: 'devices', allowedCgroupRules: ['a *:* rwm'] }, facts: rules('b 8:0'), broken: true },
    { name: 'device allowlist does not allow rules', check: { type: 'devices', allowed: ['*'] }, facts: rules('c 1:1 r'), broken: true },
  ]);
  t.same(parseDeviceCgroupRule('c 189:* rwm'), { type: 'c', major: '189', minor: '*', access: 'rwm' });
  for (const bad of ['a', 'b *:*', 'x 1:1 r', 'c 1:1 rwx', 'c 1:1 rwmr', 'c 1:1  r', ' c 1:1 r', 'c 1:1 r ', 'c -1:1 r', 'c 1:1 ']) {
    t.equal(parseDeviceCgroupRule(bad), undefined, `${JSON.stringify(bad)} is refused as dockerd refuses it`);
  }
  let errors: string[] = [];
  try {
    policyFromJson(policyOf(rule({ type: 'devices', allowedCgroupRules: ['c 189:* rwm', 'b *:*'] })));
  } catch (e) {
    errors = (e as PolicyValidationError).errors.map((x) => x.path);
  }
  t.same(errors, ['spec.rules[0].check.allowedCgroupRules[1]'], 'an allowlist entry must be a rule dockerd accepts');
});
