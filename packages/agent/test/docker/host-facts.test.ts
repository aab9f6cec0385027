import t from 'tap';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, hostname, cpus, arch, release } from 'node:os';
import { join } from 'node:path';
import type Dockerode from 'dockerode';
import { collectHostFacts, detectCgroupVersion, parseOsRelease } from '../../src/docker/host-facts';

const siLoaded = (): boolean => Object.keys(require.cache).some((k) => k.includes('/node_modules/systeminformation/'));

const roots: string[] = [];
t.teardown(() => {
  for (const r of roots) rmSync(r, { recursive: true, force: true });
});

function fakeRoot(opts: { cgroupV2?: boolean; osRelease?: string; libOnly?: boolean }): string {
  const root = mkdtempSync(join(tmpdir(), 'bk-hostfacts-'));
  roots.push(root);
  mkdirSync(join(root, 'sys/fs/cgroup/unified'), { recursive: true });
  // a hybrid host has cgroup.controllers only under unified/
  writeFileSync(join(root, 'sys/fs/cgroup/unified/cgroup.controllers'), 'cpu io memory pids\n');
  if (opts.cgroupV2) writeFileSync(join(root, 'sys/fs/cgroup/cgroup.controllers'), 'cpu io memory pids\n');
  if (opts.osRelease !== undefined) {
    const dir = opts.libOnly ? 'usr/lib' : 'etc';
    mkdirSync(join(root, dir), { recursive: true });
    writeFileSync(join(root, dir, 'os-release'), opts.osRelease);
  }
  return root;
}

type Engine = Pick<Dockerode, 'version' | 'info'>;
const engine = (info: Record<string, unknown>, version: Record<string, unknown> = { Version: '20.10.24+dfsg1', ApiVersion: '1.41' }): Engine => ({
  version: async () => version,
  info: async () => info,
}) as unknown as Engine;

t.test('systeminformation is not loaded until host facts are collected', async (t) => {
  t.notOk(siLoaded(), 'importing host-facts does not load it');
  await collectHostFacts(engine({ CgroupVersion: '1', CgroupDriver: 'cgroupfs' }));
  t.ok(siLoaded(), 'collecting does');
});

t.test('collects OS, hardware, engine and labels', async (t) => {
  const root = fakeRoot({ osRelease: 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\nVERSION_ID="12"\nID=debian\n' });
  const labels = { env: 'prod', rack: 'r1' };
  const started = performance.now();
  const f = await collectHostFacts(engine({ CgroupVersion: '2', CgroupDriver: 'systemd' }), { labels, hostRoot: root });
  const took = performance.now() - started;
  t.same(f, {
    hostname: hostname(),
    osPlatform: 'linux',
    osDistro: 'Debian GNU/Linux',
    osRelease: '12',
    kernel: release(),
    arch: arch(),
    cpus: cpus().length,
    memoryBytes: f.memoryBytes,
    dockerVersion: '20.10.24+dfsg1',
    dockerApiVersion: '1.41',
    cgroupVersion: 2,
    cgroupDriver: 'systemd',
    labels,
    // No dockerd under the fake root: the defaults are there, marked unknown.
    daemonDefaults: f.daemonDefaults,
  });
  t.equal(f.daemonDefaults?.configKnown, false);
  t.match(f.daemonDefaults?.unknownReason, /the dockerd behind \/var\/run\/docker.sock was not found/);
  t.ok(f.memoryBytes > 64 * 1024 * 1024, `memory ${f.memoryBytes}`);
  t.not(f.labels, labels, 'labels copied, not shared');
  t.ok(took < 500, `took ${took.toFixed(1)} ms`);
});

t.test('cgroup version: engine first, filesystem when the engine does not say', async (t) => {
  const table: Array<[string, Record<string, unknown>, boolean, number]> = [
    ['engine says 1', { CgroupVersion: '1' }, true, 1],
    ['engine says 2', { CgroupVersion: '2' }, false, 2],
    ['old engine, unified host', {}, true, 2],
    ['old engine, hybrid host', {}, false, 1],
    ['garbage from engine, hybrid host', { CgroupVersion: 'x' }, false, 1],
  ];
  for (const [name, info, v2, want] of table) {
    const f = await collectHostFacts(engine(info), { hostRoot: fakeRoot({ cgroupV2: v2 }) });
    t.equal(f.cgroupVersion, want, name);
    t.equal(f.cgroupDriver, '', `${name}: no driver reported → ""`);
  }
  t.equal(await detectCgroupVersion(fakeRoot({ cgroupV2: true })), 2);
  t.equal(await detectCgroupVersion(fakeRoot({})), 1);
});

t.test('os-release from /usr/lib when /etc has none; nothing when neither', async (t) => {
  const f = await collectHostFacts(engine({}), { hostRoot: fakeRoot({ osRelease: 'NAME=Alpine Linux\nVERSION_ID=3.20.1\n', libOnly: true }) });
  t.equal(f.osDistro, 'Alpine Linux');
  t.equal(f.osRelease, '3.20.1');
  const g = await collectHostFacts(engine({}), { hostRoot: fakeRoot({}) });
  t.equal(g.osDistro, '');
  t.equal(g.osRelease, '');
});

t.test('parseOsRelease', async (t) => {
  t.same(parseOsRelease('NAME="Ubuntu"\nVERSION_ID="24.04"\n# comment\nID=ubuntu\nBAD LINE\nQ=\'single\'\nE="a \\"q\\" b"\n'), {
    NAME: 'Ubuntu', VERSION_ID: '24.04', ID: 'ubuntu', Q: 'single', E: 'a "q" b',
  });
});

t.test('an unreachable engine is BK_ERR_DOCKER_UNAVAILABLE', async (t) => {
  const down = { version: async () => { throw new Error('connect ENOENT'); }, info: async () => ({}) } as unknown as Engine;
  await t.rejects(collectHostFacts(down), { code: 'BK_ERR_DOCKER_UNAVAILABLE' });
});
