// The HostConfig settings that open a way onto the host without any flag
// the older rules read — device cgroup rules, unmasked system paths, the
// host's cgroup namespace, SELinux labelling switched off by a bare
// "disable", a device path that leaves its allowlisted directory — made on
// a REAL private dockerd 20.10 (the CLI's spellings and the raw API's), read
// back with `docker inspect` through toContainerFacts, and judged by the one
// evaluator under the shipped default policy. Only this file's containers
// are looked at: the engine may be shared with other test files.
import t from 'tap';
import Docker from 'dockerode';
import type Dockerode from 'dockerode';
import { evaluate, parsePolicy, DEFAULT_POLICY_YAML, type Finding, type HostFacts__Output, type Policy } from '@bulkhead/shared';
import { useEngine, LABEL_ARGS, removeLabelledContainers, TEST_LABEL, FILE_LABEL } from '../../../../test/helpers/engine';
import { toContainerFacts, type Facts } from '../../src/docker/container-facts';
import { collectHostFacts } from '../../src/docker/host-facts';

const [fileKey, fileValue] = FILE_LABEL.split('=') as [string, string];
const LABELS = { [TEST_LABEL.split('=')[0]!]: '1', [fileKey]: fileValue };
const uniq = `${process.pid}-${Math.random().toString(36).slice(2, 7)}`;
const NOW = new Date();

/** The shipped default policy with every rule judged, so a finding means "this rule flags it". */
const POLICY: Policy = parsePolicy(DEFAULT_POLICY_YAML);

function findings(facts: Facts, host?: HostFacts__Output, policy = POLICY): Finding[] {
  return evaluate(policy, host ? { container: facts, host } : { container: facts }, { now: NOW });
}

function finding(all: Finding[], ruleId: string): Finding | undefined {
  return all.find((f) => f.ruleId === ruleId);
}

t.test('settings no older rule read, as dockerd stores them, are flagged', async (t) => {
  const engine = await useEngine(t);
  const docker = new Docker({ socketPath: engine.socketPath });
  t.teardown(() => removeLabelledContainers(engine));
  const host = await collectHostFacts(docker);

  /** `docker create` with the CLI (as a user types it), then inspect. */
  const cli = async (name: string, args: string[]): Promise<Facts> => {
    const id = await engine.dockerOk(['create', '--name', `bk-cf-${name}-${uniq}`, '--network', 'none', ...LABEL_ARGS, ...args, engine.image, 'sleep', '60']);
    return toContainerFacts(await docker.getContainer(id).inspect());
  };
  /** `POST /containers/create` with a raw body (what a client other than the CLI may send), then inspect. */
  const api = async (name: string, hostConfig: Record<string, unknown>): Promise<Facts> => {
    const c = await docker.createContainer({
      name: `bk-cf-${name}-${uniq}`, Image: engine.image, Cmd: ['sleep', '60'], Labels: LABELS,
      HostConfig: { NetworkMode: 'none', ...hostConfig },
    } as Dockerode.ContainerCreateOptions);
    return toContainerFacts(await c.inspect());
  };

  await t.test('a plain container: dockerd fills in its default system paths, nothing is flagged by the new rules', async (t) => {
    const f = await cli('plain', []);
    t.ok(f.maskedPaths && f.maskedPaths.values.includes('/proc/kcore'), 'default masked paths filled in');
    t.ok(f.readonlyPaths && f.readonlyPaths.values.includes('/proc/sys'), 'default read-only paths filled in');
    t.equal(f.deviceCgroupRules, undefined);
    // dockerd's own default: host on cgroup v1 (this kind of machine), private on v2.
    t.equal(f.cgroupnsMode, host.cgroupVersion === 2 ? 'private' : 'host', `cgroupns default on cgroup v${host.cgroupVersion}`);
    const all = findings(f, host);
    for (const id of ['host.system-paths', 'host.devices', 'host.host-namespaces']) t.notOk(finding(all, id), `${id} not flagged`);
  });

  await t.test("--device-cgroup-rule 'b *:* rwm': the host's disks", async (t) => {
    const f = await cli('cgrule', ['--device-cgroup-rule', 'b *:* rwm', '--device-cgroup-rule', 'c 1:3 r']);
    t.same(f.deviceCgroupRules, { values: ['b *:* rwm', 'c 1:3 r'] });
    const d = finding(findings(f, host), 'host.devices');
    t.ok(d, 'host.devices flags it');
    t.equal(d?.action.type, 'kill', 'and the default action is kill');
    t.match(d?.evidence.map((e) => e.detail).join('\n'), /"b \*:\* rwm" allows block devices — the host's disks/);
    t.equal(d?.evidence.length, 2, 'one piece of evidence per rule');
  });

  await t.test('--security-opt systempaths=unconfined: the CLI sends empty lists, dockerd keeps them', async (t) => {
    const f = await cli('sysp', ['--security-opt', 'systempaths=unconfined']);
    t.same(f.maskedPaths, { values: [] });
    t.same(f.readonlyPaths, { values: [] });
    t.notOk(f.securityOpt.some((o) => o.includes('systempaths')), 'the CLI turns the option into the lists; dockerd never sees it');
    const s = finding(findings(f, host), 'host.system-paths');
    t.ok(s, 'host.system-paths flags it');
    t.equal(s?.evidence.length, 2);
    t.match(s?.evidence.map((e) => e.detail).join('\n'), /\/proc\/sysrq-trigger are writable/);
  });

  await t.test('--cgroupns host: flagged where the host is cgroup v2, and where the policy asks everywhere', async (t) => {
    const f = await cli('cgns', ['--cgroupns', 'host']);
    t.equal(f.cgroupnsMode, 'host');
    const p = await cli('cgnsp', ['--cgroupns', 'private']);
    t.equal(p.cgroupnsMode, 'private');
    const v2 = { ...host, cgroupVersion: 2 };
    t.ok(finding(findings(f, v2), 'host.host-namespaces'), 'flagged on a cgroup v2 host');
    t.notOk(finding(findings(p, v2), 'host.host-namespaces'), 'private is not');
    t.equal(!!finding(findings(f, host), 'host.host-namespaces'), host.cgroupVersion === 2, `on this host (cgroup v${host.cgroupVersion}) as the version says`);
    const everywhere = parsePolicy(DEFAULT_POLICY_YAML.replace('type: host-namespaces', 'type: host-namespaces\n        cgroupnsOnCgroupV1: true'));
    t.ok(finding(findings(f, { ...host, cgroupVersion: 1 }, everywhere), 'host.host-namespaces'), 'with cgroupnsOnCgroupV1, on v1 too');
  });

  await t.test('raw API: SecurityOpt ["disable"] and MaskedPaths []', async (t) => {
    const f = await api('rawdisable', { SecurityOpt: ['disable'], MaskedPaths: [] });
    t.same(f.securityOpt, ['disable'], 'dockerd accepts and stores the bare form');
    t.same(f.maskedPaths, { values: [] }, 'a non-null empty list is kept: nothing masked');
    t.ok(f.readonlyPaths && f.readonlyPaths.values.length >= 5, 'ReadonlyPaths null: dockerd filled in its defaults');
    const all = findings(f, host);
    t.match(finding(all, 'host.seccomp-apparmor')?.evidence[0]?.detail, /"disable", which dockerd reads as label=disable/);
    t.match(finding(all, 'host.system-paths')?.evidence.map((e) => e.detail).join('\n'), /\/proc\/kcore.* are not masked/);
  });

  await t.test('raw API: the ":" forms dockerd still accepts', async (t) => {
    const f = await api('rawcolon', { SecurityOpt: ['label:disable', 'seccomp:unconfined'] });
    t.same(f.securityOpt, ['label:disable', 'seccomp:unconfined']);
    const details = finding(findings(f, host), 'host.seccomp-apparmor')?.evidence.map((e) => e.detail) ?? [];
    t.same(details.sort(), ['SELinux labelling is disabled (label:disable)', 'seccomp is unconfined']);
  });

  await t.test('a device path that leaves its allowlisted directory: dockerd passes the whole of /dev', async (t) => {
    // What dockerd does with it: it walks the directory and passes every
    // device under it — at its HOST path, since the walk's cleaned paths no
    // longer start with "/dev/net/.." to be replaced by the container path.
    const ls = async (extra: string[]) =>
      new Set((await engine.dockerOk(['run', '--rm', '--network', 'none', ...LABEL_ARGS, ...extra, engine.image, 'ls', '/dev'])).split(/\s+/));
    const plain = await ls([]);
    const seen = await ls(['--device', '/dev/net/..:/hostdev:r']);
    const added = [...seen].filter((x) => !plain.has(x));
    t.ok(added.includes('net') && added.length > 1, `/dev/net/.. passed the host's /dev: ${added.join(' ')}`);
    const f = await api('devdotdot', { Devices: [{ PathOnHost: '/dev/net/..', PathInContainer: '/hostdev', CgroupPermissions: 'r' }] });
    t.same(f.devices, ['/dev'], 'the facts carry the path dockerd opens');
    const allowNet = parsePolicy(DEFAULT_POLICY_YAML.replace('type: devices', "type: devices\n        allowed: ['/dev/net/*']"));
    const d = finding(findings(f, host, allowNet), 'host.devices');
    t.ok(d, 'not allowed by /dev/net/*');
    t.match(d?.evidence[0]?.detail, /host device \/dev is passed into the container and is not in the allowed list/);
    const tun = await api('devtun', { Devices: [{ PathOnHost: '/dev/net/tun', PathInContainer: '/dev/net/tun', CgroupPermissions: 'rwm' }] });
    t.notOk(finding(findings(tun, host, allowNet), 'host.devices'), 'the allowed device itself passes');
  });
});
