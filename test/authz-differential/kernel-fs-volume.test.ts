// A `local`-driver volume of a kernel filesystem or an overlay, judged as the
// host paths it exposes, on every engine version with the real dockerd as the
// judge (found in session 10). The local driver mounts a volume as dockerd,
// in the HOST's namespaces, then binds it into the container:
//   docker volume create -o type=proc -o device=proc v; docker run -v v:/x …
// gives the container the host's /proc — every host process, and /proc/sys
// WRITABLE (kernel.core_pattern runs a program as root on the host) where the
// container's own /proc/sys is read-only; `type=sysfs` the host's /sys
// read-write, `type=cgroup` the host's cgroup roots; an `overlay` with
// `lowerdir=/etc` the host's /etc. sensitive-mounts judged only a volume's
// `device` as a path, so none of these were refused — nor were they seen by
// the reaction path (the same mapping).
//
// Per engine: in monitor mode, a container with such a volume sees the host's
// processes (dockerd's pid) and a writable /proc/sys, and an overlay volume
// shows the host's /etc (dockerd acts on it). Enforced: the volume create,
// a create with the volume by name, the inline `--mount …volume-opt=type=sysfs`
// form and the start of a container created in monitor mode are refused
// naming sensitive-mounts, and nothing was created. A tmpfs volume (nothing
// of the host) is still allowed. Nothing here writes to the host: /proc/sys
// is only tested for write access (access(2), which sees a read-only mount).
import t from 'tap';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { createLogger, parsePolicy } from '@bulkhead/shared';
import type { PolicyState } from '../../packages/agent/src/policy/policy-holder';
import { startJudgedEngine } from './judged-engine';
import { ENGINE_VERSIONS, LABEL_ARGS, TEST_IMAGE } from '../helpers/engine';

const logger = createLogger({ name: 'kernel-fs-volume', level: process.env['BULKHEAD_LOG_LEVEL'] ?? 'silent' });

function policyState(mode: 'enforce' | 'monitor'): PolicyState {
  return {
    policy: parsePolicy(`apiVersion: bulkhead.dev/v1
kind: Policy
metadata: { name: kernel-fs }
spec:
  rules:
    - { id: host.sensitive-mounts, description: no sensitive mounts, severity: critical, mode: ${mode}, action: { type: kill }, check: { type: sensitive-mounts } }
    - { id: host.privileged, description: no privileged, severity: critical, mode: enforce, action: { type: kill }, check: { type: privileged } }
`, 'kernel-fs.yaml'),
    scans: new Map(), version: 1, source: 'bundle', sha256: `kernel-fs-${mode}`, projectLabel: 'bulkhead.project',
  };
}

const RUN = ['run', '--rm', '--network', 'none', ...LABEL_ARGS];

for (const version of ENGINE_VERSIONS) {
  t.test(`Docker ${version}: kernel-filesystem and overlay volumes are judged as the host paths they show`, async (t) => {
    let state = policyState('monitor');
    const { engine: e, pluginName: name, plugin } = await startJudgedEngine(t, version, 'bk-kfs', () => state, logger);
    const dockerdPid = e.dockerdPid;
    const scratch = mkdtempSync('/tmp/bk-kfs-');
    for (const d of ['u', 'w']) mkdirSync(`${scratch}/${d}`);
    t.teardown(() => rmSync(scratch, { recursive: true, force: true }));
    const denied = new RegExp(`authorization denied by plugin ${name}: .*\\[host\\.sensitive-mounts\\]`, 's');

    // Monitor mode: what dockerd does with such volumes.
    await e.dockerOk(['volume', 'create', '-o', 'type=proc', '-o', 'device=proc', 'hostproc']);
    const seen = await e.docker([...RUN, '-v', 'hostproc:/x', TEST_IMAGE, 'sh', '-c',
      // Mount options, not a write: /x is one read-write proc mount (nothing over /x/sys), the container's own /proc/sys is read-only.
      `cat /x/${dockerdPid}/comm; awk '$2 == "/x" || $2 ~ "^/x/" || $2 == "/proc/sys" { split($4, o, ","); print "MNT", $2, o[1] }' /proc/mounts`]);
    t.equal(seen.code, 0, `monitor mode: allowed (${seen.stderr})`);
    t.match(seen.stdout, /^dockerd$/m, 'monitor mode: the container sees the host\'s processes (dockerd, by its host pid)');
    const mnt = seen.stdout.split('\n').filter((l) => l.startsWith('MNT ')).sort();
    t.same(mnt, ['MNT /proc/sys ro', 'MNT /x rw'], 'monitor mode: the host\'s /proc (its /sys included) is mounted read-write, while the container\'s own /proc/sys is read-only');
    await e.dockerOk(['volume', 'create', '-o', 'type=overlay', '-o', 'device=overlay', '-o', `o=lowerdir=/etc,upperdir=${scratch}/u,workdir=${scratch}/w`, 'hostetc']);
    const etc = await e.docker([...RUN, '-v', 'hostetc:/x', TEST_IMAGE, 'sh', '-c', 'cat /x/hostname']);
    t.equal(etc.stdout.trim(), readFileSync('/etc/hostname', 'utf8').trim(), 'monitor mode: an overlay volume shows the host\'s /etc');
    const created = await e.dockerOk(['create', '--network', 'none', ...LABEL_ARGS, '-v', 'hostproc:/x', TEST_IMAGE, 'true']);

    state = policyState('enforce');
    const vol = await e.docker(['volume', 'create', '-o', 'type=proc', '-o', 'device=proc', 'hostproc2']);
    t.not(vol.code, 0, 'enforced: volume create type=proc refused');
    t.match(vol.stderr, denied, 'by sensitive-mounts');
    t.match(vol.stderr, /host path \/proc/, 'naming the host path it shows');
    t.not((await e.docker(['volume', 'inspect', 'hostproc2'])).code, 0, 'no volume was created');
    for (const [what, args] of [
      ['-v of an existing proc volume', ['-v', 'hostproc:/x']],
      ['-v of an existing overlay volume (lowerdir=/etc)', ['-v', 'hostetc:/x']],
      ['--mount volume-opt=type=sysfs', ['--mount', 'type=volume,source=hostsys,target=/x,volume-opt=type=sysfs,volume-opt=device=sysfs']],
      ['--mount volume-opt=type=cgroup', ['--mount', 'type=volume,source=hostcg,target=/x,volume-opt=type=cgroup,volume-opt=device=cgroup,volume-opt=o=devices']],
    ] as const) {
      const r = await e.docker([...RUN, ...args, TEST_IMAGE, 'true']);
      t.not(r.code, 0, `enforced: ${what} refused`);
      t.match(r.stderr, denied, `${what}: by sensitive-mounts`);
      t.match(r.stderr, /\(host path \/(?:proc|sys|sys\/fs\/cgroup)?\)/, `${what}: naming the host path it shows`);
    }
    t.not((await e.docker(['volume', 'inspect', 'hostsys'])).code, 0, 'the inline sysfs volume was not created');
    const start = await e.docker(['start', created]);
    t.not(start.code, 0, 'enforced: the start of a container created in monitor mode with the proc volume is refused');
    t.match(start.stderr, denied);

    // A local volume's device is mounted afresh when its first user starts, through the symlinks as they are THEN:
    // a link re-pointed at /etc between create and start gave the container /etc (both engines). Judged at start again.
    symlinkSync(`${scratch}/u`, `${scratch}/link`);
    await e.dockerOk(['volume', 'create', '-o', 'type=none', '-o', 'o=bind', '-o', `device=${scratch}/link`, 'linked']);
    const linked = await e.dockerOk(['create', '--network', 'none', ...LABEL_ARGS, '-v', 'linked:/x', TEST_IMAGE, 'sh', '-c', 'cat /x/hostname 2>/dev/null; exit 0']);
    rmSync(`${scratch}/link`);
    symlinkSync('/etc', `${scratch}/link`);
    const relinked = await e.docker(['start', '-a', linked]);
    t.not(relinked.code, 0, 'enforced: the start of a container whose volume\'s device link now points at /etc is refused');
    t.match(relinked.stderr, denied);
    t.notMatch(relinked.stdout, /\S/, 'nothing of /etc was read');

    // Control: a tmpfs volume is nothing of the host's (existing volumes only: an inspect of a missing one can
    // take 15 s while another test's stale socket sits in dockerd's plugin folder, and the door then fails closed).
    await e.dockerOk(['volume', 'create', '-o', 'type=tmpfs', '-o', 'device=tmpfs', '-o', 'o=size=1m', 'scratchtmp']);
    const ok = await e.docker([...RUN, '-v', 'scratchtmp:/x', TEST_IMAGE, 'true']);
    t.equal(ok.code, 0, `enforced: a tmpfs volume is still allowed (${ok.stderr})`);
    rmSync(`${scratch}/link`);
    symlinkSync(`${scratch}/u`, `${scratch}/link`);
    const back = await e.docker(['start', '-a', linked]);
    t.equal(back.code, 0, `enforced: the same container starts once the link points at a plain directory again (${back.stderr})`);
    t.equal(plugin.stats.failOpen, 0);
  });
}
