// Authorization-plugin bypasses, end to end — VALUES the plugin must read the
// way dockerd, runc and the kernel read them (classes 6 to 10):
//   6. root spelled otherwise: runc reads a numeric user with Go's Atoi, so
//      "+0" and "-0:0" are uid 0 (create and exec);
//   7. a local volume with a RELATIVE device (`type=none,o=bind,device=etc`):
//      dockerd mounts it relative to its working directory, `/` under
//      systemd, so it binds the host's /etc (`docker volume create`, and a
//      volume declared inline by `--mount … volume-opt=…`);
//   8. settings no check read: DeviceCgroupRules (`b *:* rwm`: every block
//      device), `--security-opt systempaths=unconfined` (the CLI sends empty
//      MaskedPaths/ReadonlyPaths: /proc and /sys unmasked), CgroupnsMode
//      host, and a bare SecurityOpt "disable" (dockerd: label=disable);
//   9. a device path that leaves an allowlist glob: `/dev/net/..` matches
//      `/dev/net/*` as a string, but dockerd walks the directory it names
//      (/dev) and passes EVERY host device in (vda, kvm, loop*, …);
//  10. the plugin's image cache trusting a tag that moved: create from
//      `app:1` (USER 1000), `docker tag <root image> app:1`, create again.
// The docker CLI sends what it can express; raw bytes over the socket what
// it cannot. Each attack must be refused by the real agent's plugin naming
// the rule (host-safety rules in enforce mode, test/helpers/authz-bypass-stack.ts)
// and dockerd must not have created the container / volume / run the exec.
// Each benign control of the same shape must be allowed and run. Every
// attack was first run against a private dockerd WITHOUT the plugin and does
// what the comment next to it says (inspect, `id`, `ls /dev`).
import t from 'tap';
import {
  API, createBody, deadPluginSockets, dockerdCwd, engineVersions, expectAllowed, expectNotCreated, expectRefused, expectRuns, startBypassStack,
  TEST_IMAGE, TEST_IMAGE_USER1000, type BypassStack,
} from '../helpers/authz-bypass-stack';
import { LABEL_ARGS } from '../helpers/engine';

/** `docker create` of a compliant container plus `args` (user 1000 unless args say otherwise). */
function createArgs(name: string, args: string[], image = TEST_IMAGE): string[] {
  const user = args.includes('--user') ? [] : ['--user', '1000'];
  return ['create', '--name', name, '--network', 'none', ...LABEL_ARGS, ...user, ...args, image, 'sleep', '300'];
}

async function cliAttack(t: tap.Test, s: BypassStack, tag: string, why: string, args: string[], rules: string[], image?: string): Promise<void> {
  const name = s.name(tag);
  const r = await s.docker(createArgs(name, args, image));
  expectRefused(t, s, r, rules, `attack: ${why}`);
  await expectNotCreated(t, s, name, `attack: ${why}`);
}

async function cliBenign(t: tap.Test, s: BypassStack, tag: string, why: string, args: string[], check?: (c: NonNullable<Awaited<ReturnType<BypassStack['container']>>>) => void, image?: string): Promise<void> {
  const name = s.name(tag);
  const r = await s.docker(createArgs(name, args, image));
  if (!expectAllowed(t, r, `control: ${why}: create`)) return;
  const c = await expectRuns(t, s, name, `control: ${why}`);
  if (c && check) check(c);
  await s.docker(['rm', '-f', '-v', name]);
}

/** A running compliant container to exec into (one per case: a root exec that got through may get it killed). */
async function running(s: BypassStack, tag: string): Promise<string> {
  const name = s.name(tag);
  await s.dockerOk(['run', '-d', '--name', name, '--network', 'none', ...LABEL_ARGS, '--user', '1000', TEST_IMAGE, 'sleep', '300']);
  return name;
}

for (const version of engineVersions()) {
  t.test(`dockerd ${version}: values read the way dockerd, runc and the kernel read them`, async (t) => {
    // On a cgroup v1 host (this machine) dockerd gives every container the host's cgroup
    // namespace by default, so `--cgroupns host` would ask for nothing more; with the
    // v2 default (private), as configured here, it is the escalation it is on a v2 host.
    const s = await startBypassStack(t, { version, dockerdArgs: ['--default-cgroupns-mode=private'] });

    await t.test('class 6: root spelled otherwise ("+0", "-0:0")', async (t) => {
      // runc: strconv.Atoi("+0") == 0, Atoi("-0") == 0 → uid 0 (checked with `id` on an engine without the plugin).
      for (const [i, u] of ['+0', '-0:0', '+0:+0', '00'].entries()) {
        await cliAttack(t, s, `c6-u${i}`, `create --user ${u}`, ['--user', u], ['hs.root-user']);
      }
      // The same through the raw API, the key in another case as well.
      const raw = s.name('c6-raw');
      const r = await s.raw('POST', `/${API}/containers/create?name=${raw}`, createBody({ user: '+0' }));
      expectRefused(t, s, r, ['hs.root-user'], 'attack: create with "user": "+0"');
      await expectNotCreated(t, s, raw, 'attack: create with "user": "+0"');

      for (const [i, u] of ['+0', '-0:0'].entries()) {
        const c = await running(s, `x6-u${i}`);
        const ex = await s.docker(['exec', '-u', u, c, 'id', '-u']);
        expectRefused(t, s, ex, ['hs.root-user'], `attack: exec -u ${u}`);
        t.notMatch(ex.stdout, /^0$/m, `attack: exec -u ${u}: the exec did not run as root (its output: ${JSON.stringify(ex.stdout.trim())})`);
      }

      await cliBenign(t, s, 'c6-ok', 'create --user +1000 (uid 1000 the same way)', ['--user', '+1000'], (c) => t.equal(c.Config.User, '+1000'));
      await cliBenign(t, s, 'c6-ok2', 'create --user +1000:0 (root group only)', ['--user', '+1000:0']);
      const c = await running(s, 'x6-ok');
      const ex = await s.docker(['exec', '-u', '+1000', c, 'id', '-u']);
      if (expectAllowed(t, ex, 'control: exec -u +1000')) t.equal(ex.stdout.trim(), '1000', 'control: exec -u +1000 ran as uid 1000');
    });

    await t.test('class 7: a local volume with a relative device binds a host path', async (t) => {
      t.comment(`dockerd's working directory: ${dockerdCwd(s.engine)} (a relative device resolves against it; / under systemd)`);
      const vol = s.name('v7-etc');
      const v = await s.docker(['volume', 'create', '--driver', 'local', '--opt', 'type=none', '--opt', 'o=bind', '--opt', 'device=etc', vol]);
      expectRefused(t, s, v, ['hs.sensitive-mounts'], 'attack: volume create type=none,o=bind,device=etc');
      t.equal(await s.volumeExists(vol), false, 'attack: dockerd did not create the volume');
      const dotdot = s.name('v7-dotdot');
      const v2 = await s.docker(['volume', 'create', '--driver', 'local', '--opt', 'type=none', '--opt', 'o=bind', '--opt', 'device=tmp/../etc', dotdot]);
      expectRefused(t, s, v2, ['hs.sensitive-mounts'], 'attack: volume create …,device=tmp/../etc');
      t.equal(await s.volumeExists(dotdot), false, 'attack: dockerd did not create the volume');

      const inline = s.name('v7-inline');
      await cliAttack(t, s, 'c7-inline', '--mount type=volume with volume-opt device=etc', [
        '--mount', `type=volume,source=${inline},target=/x,volume-driver=local,volume-opt=type=none,volume-opt=o=bind,volume-opt=device=etc`,
      ], ['hs.sensitive-mounts']);
      t.equal(await s.volumeExists(inline), false, 'attack: dockerd did not create the inline volume');
      await cliAttack(t, s, 'c7-anon', 'an anonymous --mount type=volume with volume-opt device=etc', [
        '--mount', 'type=volume,target=/x,volume-driver=local,volume-opt=type=none,volume-opt=o=bind,volume-opt=device=etc',
      ], ['hs.sensitive-mounts']);

      const okVol = s.name('v7-ok');
      const vo = await s.docker(['volume', 'create', '--driver', 'local', '--opt', 'type=none', '--opt', 'o=bind', '--opt', `device=${s.safeDir}`, okVol]);
      expectAllowed(t, vo, 'control: volume create bound to an application directory');
      await cliBenign(t, s, 'c7-ok', 'a container using that volume', ['-v', `${okVol}:/x`]);
      // Judging it takes an inspect of a volume that does not exist yet, which dockerd answers
      // only after asking every plugin socket in /run/docker/plugins: a dead one there (another
      // test's leftover) makes that ~15 s, and the plugin then refuses (fail-closed).
      const dead = await deadPluginSockets();
      const why = dead.length > 0 ? { todo: `dead plugin sockets on this machine make dockerd's own volume lookup take ~15 s: ${dead.join(', ')}` } : {};
      await t.test('control: an inline volume bound to an application directory', why, async (t) => {
        const okInline = s.name('v7-ok-inline');
        await cliBenign(t, s, 'c7-ok-inline', '--mount type=volume with volume-opt device=<application dir>', [
          '--mount', `type=volume,source=${okInline},target=/x,volume-driver=local,volume-opt=type=none,volume-opt=o=bind,volume-opt=device=${s.safeDir}`,
        ]);
      });
    });

    await t.test('class 8: settings no check read', async (t) => {
      // Every block device, read, write and mknod: the host's disks.
      await cliAttack(t, s, 'c8-dcr', "--device-cgroup-rule 'b *:* rwm'", ['--device-cgroup-rule', 'b *:* rwm'], ['hs.devices', 'hs.privileged']);
      await cliAttack(t, s, 'c8-dcr-c', "--device-cgroup-rule 'a *:* rwm' (every device)", ['--device-cgroup-rule', 'a *:* rwm'], ['hs.devices', 'hs.privileged']);
      // The CLI turns it into "MaskedPaths": [], "ReadonlyPaths": [] (dockerd would refuse the option itself).
      await cliAttack(t, s, 'c8-sys', '--security-opt systempaths=unconfined', ['--security-opt', 'systempaths=unconfined'], ['hs.system-paths', 'hs.seccomp-apparmor', 'hs.sensitive-mounts']);
      const mp = s.name('c8-masked');
      const mr = await s.raw('POST', `/${API}/containers/create?name=${mp}`, createBody({ User: '1000' }, { MaskedPaths: [], ReadonlyPaths: [] }));
      expectRefused(t, s, mr, ['hs.system-paths', 'hs.seccomp-apparmor', 'hs.sensitive-mounts'], 'attack: raw "MaskedPaths": [], "ReadonlyPaths": []');
      await expectNotCreated(t, s, mp, 'attack: raw empty MaskedPaths');
      await cliAttack(t, s, 'c8-cgns', '--cgroupns host', ['--cgroupns', 'host'], ['hs.host-namespaces']);
      // The CLI refuses a bare "disable"; dockerd takes it as label=disable.
      for (const [i, opts] of [['disable'], ['no-new-privileges', 'disable']].entries()) {
        const name = s.name(`c8-disable${i}`);
        const r = await s.raw('POST', `/${API}/containers/create?name=${name}`, createBody({ User: '1000' }, { SecurityOpt: opts }));
        expectRefused(t, s, r, ['hs.seccomp-apparmor'], `attack: raw SecurityOpt ${JSON.stringify(opts)}`);
        await expectNotCreated(t, s, name, `attack: raw SecurityOpt ${JSON.stringify(opts)}`);
      }

      await cliBenign(t, s, 'c8-ok-cgns', '--cgroupns private', ['--cgroupns', 'private'], (c) => t.equal(c.HostConfig['CgroupnsMode'], 'private'));
      await cliBenign(t, s, 'c8-ok-nnp', '--security-opt no-new-privileges', ['--security-opt', 'no-new-privileges']);
      for (const [tag, why, hc] of [
        ['c8-ok-raw-nnp', 'raw SecurityOpt ["no-new-privileges"] (bare, like "disable")', { SecurityOpt: ['no-new-privileges'] }],
        ['c8-ok-raw-dcr', 'raw "DeviceCgroupRules": []', { DeviceCgroupRules: [] }],
        ['c8-ok-raw-cg', 'raw "CgroupnsMode": "private"', { CgroupnsMode: 'private' }],
      ] as const) {
        const name = s.name(tag);
        const r = await s.raw('POST', `/${API}/containers/create?name=${name}`, createBody({ User: '1000' }, hc));
        if (expectAllowed(t, r, `control: ${why}: create`)) await expectRuns(t, s, name, `control: ${why}`);
        await s.docker(['rm', '-f', name]);
      }
      // No cgroupns setting at all: dockerd's default (private, as configured) applies.
      await cliBenign(t, s, 'c8-ok-default', 'no cgroupns setting (the engine default applies)', [], (c) => t.equal(c.HostConfig['CgroupnsMode'], 'private', 'control: the default is private here'));
    });

    await t.test('class 9: a device path that leaves the allowlist (/dev/net/.. vs /dev/net/*)', async (t) => {
      // dockerd walks /dev/net/.. (= /dev) and adds every host device at its own path.
      await cliAttack(t, s, 'c9-cli', '--device /dev/net/..:/dev/hostdev', ['--device', '/dev/net/..:/dev/hostdev'], ['hs.devices']);
      await cliAttack(t, s, 'c9-cli2', '--device /dev/net/../vda', ['--device', '/dev/net/../vda:/dev/xvda'], ['hs.devices']);
      const name = s.name('c9-raw');
      const r = await s.raw('POST', `/${API}/containers/create?name=${name}`, createBody({ User: '1000' }, {
        Devices: [{ PathOnHost: '/dev/net/..', PathInContainer: '/dev/hostdev', CgroupPermissions: 'rwm' }],
      }));
      expectRefused(t, s, r, ['hs.devices'], 'attack: raw PathOnHost "/dev/net/.."');
      await expectNotCreated(t, s, name, 'attack: raw PathOnHost "/dev/net/.."');
      await cliBenign(t, s, 'c9-ok', '--device /dev/net/tun (on the allowlist)', ['--device', '/dev/net/tun']);
    });

    await t.test('class 10: a tag that moves is judged by the image it names now', async (t) => {
      const app = `bkab-app-${s.uniq}:1`;
      await s.dockerOk(['tag', TEST_IMAGE_USER1000, app]);
      // No --user: the image's USER decides.
      const first = s.name('c10-first');
      const a = await s.docker(['create', '--name', first, '--network', 'none', ...LABEL_ARGS, app, 'sleep', '300']);
      if (expectAllowed(t, a, `control: create from ${app} (USER 1000)`)) await expectRuns(t, s, first, `control: create from ${app} (USER 1000)`);
      // Within the plugin's 30 s image cache: the tag now names the root image.
      await s.dockerOk(['tag', TEST_IMAGE, app]);
      const second = s.name('c10-moved');
      const b = await s.docker(['create', '--name', second, '--network', 'none', ...LABEL_ARGS, app, 'sleep', '300']);
      expectRefused(t, s, b, ['hs.root-user'], `attack: create from ${app} after "docker tag <root image> ${app}"`);
      await expectNotCreated(t, s, second, `attack: create from ${app} after the tag moved`);
      // And back: the cache must not refuse the compliant image now either.
      await s.dockerOk(['tag', TEST_IMAGE_USER1000, app]);
      const third = s.name('c10-back');
      const c = await s.docker(['create', '--name', third, '--network', 'none', ...LABEL_ARGS, app, 'sleep', '300']);
      if (expectAllowed(t, c, `control: create from ${app} once it names the USER 1000 image again`)) {
        const i = await expectRuns(t, s, third, `control: create from ${app} once it names the USER 1000 image again`);
        t.equal(i?.Config.User, '1000', 'control: it runs as the image user 1000 (inspect)');
      }
    });

    await t.test('the plugin never answered "allow" because it could not decide (fail-open)', async (t) => {
      const failOpen = s.agentLog().filter((l) => /fail-open/.test(String(l['msg'])));
      t.same(failOpen.map((l) => `${String(l['method'])} ${String(l['path'])}: ${JSON.stringify(l['err'])}`), [], 'no fail-open decisions in the agent log');
    });
  });
}
