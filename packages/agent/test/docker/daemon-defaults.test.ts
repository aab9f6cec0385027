// dockerd's defaults as the agent reads them: `docker info`, its command
// line (/proc/<pid>/cmdline of the dockerd behind our socket) and its
// daemon.json, under a fake host root. The real-dockerd counterpart is
// daemon-limits.e2e.test.ts.
import t from 'tap';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { collectDaemonDefaults, mountOptionsOf, parseUlimit } from '../../src/docker/daemon-defaults';

const roots: string[] = [];
t.teardown(() => {
  for (const r of roots) rmSync(r, { recursive: true, force: true });
});

const OVERLAY_EXT4 = { Driver: 'overlay2', DriverStatus: [['Backing Filesystem', 'extfs'], ['Supports d_type', 'true']], LoggingDriver: 'json-file', DockerRootDir: '/var/lib/docker' };

/** A host root with one dockerd (pid 4242) started with `argv`, and optionally a daemon.json and a mountinfo. */
function fakeHost(argv: string[], opts: { daemonJson?: string; mountinfo?: string } = {}): string {
  const root = mkdtempSync(join(tmpdir(), 'bk-dd-'));
  roots.push(root);
  mkdirSync(join(root, 'proc/4242'), { recursive: true });
  writeFileSync(join(root, 'proc/4242/comm'), 'dockerd\n');
  writeFileSync(join(root, 'proc/4242/cmdline'), `${['/usr/bin/dockerd', ...argv].join('\0')}\0`);
  if (opts.mountinfo !== undefined) writeFileSync(join(root, 'proc/4242/mountinfo'), opts.mountinfo);
  if (opts.daemonJson !== undefined) {
    mkdirSync(join(root, 'etc/docker'), { recursive: true });
    writeFileSync(join(root, 'etc/docker/daemon.json'), opts.daemonJson);
  }
  return root;
}

const docker = (info: Record<string, unknown>) => ({ info: async () => info });

t.test('command line: --log-opt and --default-ulimit', async (t) => {
  const root = fakeHost(['-H', 'unix:///var/run/docker.sock', '--log-opt', 'max-size=10m', '--log-opt=max-file=3', '--default-ulimit', 'nofile=1024:2048', '--default-ulimit', 'nproc=512']);
  const d = await collectDaemonDefaults({ docker: docker(OVERLAY_EXT4), hostRoot: root });
  t.same(d, {
    logDriver: 'json-file', logOpts: { 'max-size': '10m', 'max-file': '3' },
    ulimits: [{ name: 'nofile', soft: 1024, hard: 2048 }, { name: 'nproc', soft: 512, hard: 512 }],
    configKnown: true, unknownReason: '', storageDriver: 'overlay2', storageBackingFs: 'extfs',
    storageSizeSupported: false, storageNote: 'overlay2 caps the writable layer only on xfs mounted with pquota; the backing filesystem here is extfs',
  });
});

t.test('daemon.json: "log-opts", "default-ulimits", "log-driver"; docker info has the last word on the driver', async (t) => {
  const json = JSON.stringify({ 'log-driver': 'local', 'log-opts': { 'max-size': '5m', 'bad': 1 }, 'default-ulimits': { nofile: { Name: 'nofile', Hard: 64000, Soft: 32000 } } });
  const root = fakeHost([], { daemonJson: json });
  const d = await collectDaemonDefaults({ docker: docker({ ...OVERLAY_EXT4, LoggingDriver: 'local' }), hostRoot: root });
  t.equal(d.logDriver, 'local');
  t.same(d.logOpts, { 'max-size': '5m' }, 'string values only');
  t.same(d.ulimits, [{ name: 'nofile', soft: 32000, hard: 64000 }]);
  // units.Ulimit has no JSON tags: dockerd's decoder matches the field names case-insensitively.
  const lower = fakeHost([], { daemonJson: JSON.stringify({ 'default-ulimits': { nofile: { name: 'nofile', soft: 2000000, hard: 2000000 } } }) });
  t.same((await collectDaemonDefaults({ docker: docker(OVERLAY_EXT4), hostRoot: lower })).ulimits, [{ name: 'nofile', soft: 2000000, hard: 2000000 }], 'lower-case keys read as dockerd reads them');
  const noInfo = await collectDaemonDefaults({ docker: { info: async () => { throw new Error('down'); } }, hostRoot: root });
  t.equal(noInfo.logDriver, 'local', 'without docker info: daemon.json "log-driver"');
  t.equal(noInfo.storageDriver, '');
  t.equal(noInfo.storageSizeSupported, undefined);
  t.match(noInfo.storageNote, /docker info did not answer \(down\)/);
  const plain = await collectDaemonDefaults({ docker: { info: async () => { throw new Error('down'); } }, hostRoot: fakeHost([]) });
  t.equal(plain.logDriver, 'json-file', "nothing says otherwise: dockerd's built-in default");
});

t.test('unknown: no dockerd found, or a daemon.json dockerd could not have started with', async (t) => {
  const empty = mkdtempSync(join(tmpdir(), 'bk-dd-'));
  roots.push(empty);
  const none = await collectDaemonDefaults({ docker: docker(OVERLAY_EXT4), hostRoot: empty, dockerSocketPath: '/run/x.sock' });
  t.equal(none.configKnown, false);
  t.equal(none.logDriver, 'json-file', 'the driver is still known from docker info');
  t.same(none.logOpts, {});
  t.match(none.unknownReason, /the dockerd behind \/run\/x.sock was not found in .*\/proc, so its command line is unknown/);
  const bad = await collectDaemonDefaults({ docker: docker(OVERLAY_EXT4), hostRoot: fakeHost([], { daemonJson: '{"log-opts":' }) });
  t.equal(bad.configKnown, false);
  t.match(bad.unknownReason, /\/etc\/docker\/daemon.json: invalid JSON/);
  const blind = await collectDaemonDefaults({ docker: docker({}), hostRoot: empty });
  t.equal(blind.logDriver, '', 'no info, no dockerd: the driver is unknown too');
});

t.test('storage: which drivers can cap a writable layer', async (t) => {
  const xfs = (opts: string) => `29 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw\n40 29 8:17 / /var/lib/docker rw,relatime - xfs /dev/sdb1 rw,attr2,inode64,${opts}\n`;
  const info = { ...OVERLAY_EXT4, DriverStatus: [['Backing Filesystem', 'xfs']] };
  const pq = await collectDaemonDefaults({ docker: docker(info), hostRoot: fakeHost([], { mountinfo: xfs('prjquota') }) });
  t.equal(pq.storageSizeSupported, true);
  t.equal(pq.storageNote, 'overlay2 on xfs with project quota');
  const nopq = await collectDaemonDefaults({ docker: docker(info), hostRoot: fakeHost([], { mountinfo: xfs('noquota') }) });
  t.equal(nopq.storageSizeSupported, false);
  t.match(nopq.storageNote, /only on xfs mounted with pquota; \/var\/lib\/docker is xfs without it/);
  const unread = await collectDaemonDefaults({ docker: docker(info), hostRoot: fakeHost([]) });
  t.equal(unread.storageSizeSupported, undefined, 'xfs, mount table unreadable: unknown');
  for (const driver of ['devicemapper', 'btrfs', 'zfs']) {
    t.equal((await collectDaemonDefaults({ docker: docker({ Driver: driver }), hostRoot: fakeHost([]) })).storageSizeSupported, true, driver);
  }
  const snap = await collectDaemonDefaults({ docker: docker({ Driver: 'overlayfs', DriverStatus: [['driver-type', 'io.containerd.snapshotter.v1']] }), hostRoot: fakeHost([]) });
  t.equal(snap.storageSizeSupported, false, 'the containerd snapshotter has no size option');
});

t.test('parseUlimit and mountOptionsOf', async (t) => {
  t.same(parseUlimit('nofile=1024:2048'), { name: 'nofile', soft: 1024, hard: 2048 });
  t.same(parseUlimit('nproc=10'), { name: 'nproc', soft: 10, hard: 10 });
  t.equal(parseUlimit('NOFILE=1'), undefined);
  t.same(parseUlimit('nofile=+1024:+2048'), { name: 'nofile', soft: 1024, hard: 2048 }, 'a leading + as strconv.ParseInt takes it');
  t.equal(parseUlimit('nofile'), undefined);
  const root = fakeHost([], { mountinfo: '29 1 8:1 / / rw - ext4 /dev/sda1 rw,errors=remount-ro\n41 29 8:2 / /var/lib/docker\\040x rw - xfs /dev/sdb rw,prjquota\n' });
  t.same(await mountOptionsOf(join(root, 'proc/4242/mountinfo'), '/var/lib/docker x/overlay2'), ['rw', 'rw', 'prjquota'], 'the longest mount point, \\040 unescaped');
  t.same(await mountOptionsOf(join(root, 'proc/4242/mountinfo'), '/var/lib/docker'), ['rw', 'rw', 'errors=remount-ro']);
  t.equal(await mountOptionsOf(join(root, 'nope'), '/'), undefined);
});
