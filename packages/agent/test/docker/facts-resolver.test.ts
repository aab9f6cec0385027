// FactsResolver with a fake engine and the real filesystem (symlinks in a
// temp dir): what it fills in, what it caches and what it reports as failed.
// The real engine is exercised by test/e2e/rule-matrix.test.ts (both doors).
import t from 'tap';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { realpath } from 'node:fs/promises';
import type Dockerode from 'dockerode';
import {
  carryResolution, commonAncestor, FactsResolver, findContainer, localVolumeHostPath, localVolumeHostPaths, parseVolumesFrom, type ResolverDocker,
} from '../../src/docker/facts-resolver';
import type { Facts } from '../../src/docker/container-facts';

const facts = (over: Partial<Facts> = {}): Facts => ({
  id: '', name: 'new', imageRef: 'app:1', imageId: '', imageDigest: '', labels: {}, state: 'created', user: '1000', privileged: false, mounts: [],
  networkMode: 'none', networks: [{ name: 'none', networkId: '', ipAddress: '' }], pidMode: '', ipcMode: '', utsMode: '', usernsMode: '', capAdd: [],
  capDrop: [], securityOpt: [], readOnlyRootfs: false, memoryLimitBytes: 0, nanoCpus: 0, cpuQuota: 0, cpuPeriod: 0, cpuShares: 0, pidsLimit: 0,
  restartPolicy: 'no', restartMaxRetries: 0, envNames: [], command: [], createdAtMs: 0, startedAtMs: 0, finishedAtMs: 0, exitCode: 0, pid: 0,
  devices: [], imageUser: '', restartCount: 0, secretHits: [], project: '', ...over,
});

const notFound = () => Object.assign(new Error('not found'), { statusCode: 404 });
const boom = () => Object.assign(new Error('engine hiccup'), { statusCode: 500 });

type Answer<T> = T | 'missing' | 'fail' | 'hang';
function answer<T>(a: Answer<T> | undefined): Promise<T> {
  if (a === undefined || a === 'missing') return Promise.reject(notFound());
  if (a === 'fail') return Promise.reject(boom());
  if (a === 'hang') return new Promise<T>(() => {});
  return Promise.resolve(a);
}

function engine(o: {
  containers?: Record<string, Answer<Partial<Dockerode.ContainerInspectInfo>>>;
  volumes?: Record<string, Answer<Partial<Dockerode.VolumeInspectInfo>>>;
  networks?: Record<string, Answer<Partial<Dockerode.NetworkInspectInfo>>>;
}) {
  const calls = { container: [] as string[], volume: [] as string[], network: [] as string[] };
  const docker: ResolverDocker = {
    getContainer: (id) => ({ inspect: () => (calls.container.push(id), answer(o.containers?.[id]) as Promise<Dockerode.ContainerInspectInfo>) }),
    getVolume: (name) => ({ inspect: () => (calls.volume.push(name), answer(o.volumes?.[name]) as Promise<Dockerode.VolumeInspectInfo>) }),
    getNetwork: (id) => ({ inspect: () => (calls.network.push(id), answer(o.networks?.[id]) as Promise<Dockerode.NetworkInspectInfo>) }),
  };
  return { docker, calls };
}

const inventory = (list: Facts[]) => ({ get: (id: string) => list.find((f) => f.id === id), inventory: () => list });

const dir = mkdtempSync('/tmp/bk-fr-');
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
mkdirSync(join(dir, 'real/sub'), { recursive: true });
symlinkSync(join(dir, 'real'), join(dir, 'link'));
symlinkSync('/etc', join(dir, 'etc-link'));
const REAL = join(dir, 'real');
// The temp dir itself may sit behind a symlink on some systems.
let realDir = dir;

t.before(async () => {
  realDir = await realpath(dir);
});

t.test('pure helpers', async (t) => {
  t.equal(localVolumeHostPath('local', { type: 'none', o: 'bind', device: '/etc/ssl/' }), '/etc/ssl');
  t.equal(localVolumeHostPath('', { device: '/dev/sdb1', type: 'ext4' }), '/dev/sdb1', 'default driver, a block device');
  t.equal(localVolumeHostPath('local', { type: 'nfs', device: ':/export' }), undefined, 'nfs');
  t.equal(localVolumeHostPath('local', { type: 'tmpfs', device: 'tmpfs' }), undefined, 'tmpfs');
  t.equal(localVolumeHostPath('rexray', { device: '/etc' }), undefined, 'another driver');
  // dockerd mounts a relative device from its own working directory: "/" under systemd.
  t.equal(localVolumeHostPath('local', { type: 'none', o: 'bind', device: 'etc' }), '/etc', 'relative device');
  t.equal(localVolumeHostPath('local', { type: 'none', o: 'bind', device: '../../etc/' }), '/etc', '.. cannot climb above /');
  t.equal(localVolumeHostPath('local', { type: 'none', o: 'rbind,ro', device: 'var/lib/../run/docker.sock' }), '/var/run/docker.sock');
  t.equal(localVolumeHostPath('local', { type: 'none', o: 'bind', device: 'etc' }, '/srv/engine'), '/srv/engine/etc', 'a known working directory');
  t.equal(localVolumeHostPath('local', { type: 'none', o: 'bind', device: '../../etc' }, '/srv/engine'), '/etc');
  t.equal(localVolumeHostPath('', { type: 'ext4', device: 'dev/sdb1' }), '/dev/sdb1', 'a relative block device');
  t.equal(localVolumeHostPath('', { device: 'etc' }), '/etc', 'no type: mount(2) reads it as a path');
  t.equal(localVolumeHostPath('local', { type: 'tmpfs', o: 'size=1m', device: 'tmpfs' }), undefined, 'tmpfs without bind');
  t.equal(localVolumeHostPath('local', { type: 'nfs', o: 'addr=10.0.0.1', device: 'srv:/export' }), undefined, 'nfs without bind');
  t.equal(localVolumeHostPath('local', { type: 'tmpfs', o: 'bind', device: 'etc' }), '/etc', 'bind ignores the type');
  t.equal(localVolumeHostPath('local', { type: 'none', o: 'bind', device: ' /etc' }), '/ /etc', 'no trimming: mount(2) gets the string as it is');
  t.equal(localVolumeHostPath('local', { type: 'none', o: 'bind', device: '' }), undefined, 'no device');
  t.equal(localVolumeHostPath('local', { type: 'none', o: 'bind' }), undefined, 'no device option');
  // Kernel filesystems: dockerd mounts them in the HOST's namespaces (session 10: type=proc gave a container the host's /proc with /proc/sys writable).
  t.equal(localVolumeHostPath('local', { type: 'proc', device: 'proc' }), '/proc', 'proc: the host\'s /proc');
  t.equal(localVolumeHostPath('', { type: 'proc', device: 'anything' }), '/proc', 'whatever the device');
  t.equal(localVolumeHostPath('local', { type: 'proc' }), '/proc', 'even without a device');
  t.equal(localVolumeHostPath('local', { type: 'sysfs', device: 'sysfs', o: 'ro' }), '/sys');
  t.equal(localVolumeHostPath('local', { type: 'cgroup', device: 'cgroup', o: 'devices' }), '/sys/fs/cgroup');
  t.equal(localVolumeHostPath('local', { type: 'cgroup2', device: 'x' }), '/sys/fs/cgroup');
  t.equal(localVolumeHostPath('local', { type: 'devtmpfs', device: 'udev' }), '/dev');
  t.equal(localVolumeHostPath('local', { type: 'mqueue', device: 'mqueue' }), '/dev/mqueue', 'the host\'s IPC namespace');
  t.equal(localVolumeHostPath('local', { type: 'debugfs', device: 'x' }), '/sys/kernel/debug');
  t.equal(localVolumeHostPath('local', { type: 'proc', o: 'bind', device: '/srv/data' }), '/srv/data', 'bind ignores the type');
  t.equal(localVolumeHostPath('local', { type: 'PROC', device: 'proc' }), '/proc', 'not a type the kernel knows: the device as a path (mount fails)');
  t.equal(localVolumeHostPath('local', { type: 'devpts', device: 'devpts' }), undefined, 'devpts: a new instance of its own');
  t.equal(localVolumeHostPath('local', { type: 'proc', device: 'proc' }, '/srv/engine'), '/proc', 'not relative to the working directory');
  // Overlay: its layers are host directories, read (lowerdir) and written (upperdir, workdir).
  t.same(localVolumeHostPaths('local', { type: 'overlay', device: 'overlay', o: 'lowerdir=/etc,upperdir=/srv/u,workdir=/srv/w' }), ['/etc', '/srv/u', '/srv/w']);
  t.equal(localVolumeHostPath('local', { type: 'overlay', device: 'overlay', o: 'lowerdir=/etc,upperdir=/srv/u,workdir=/srv/w' }), '/', 'judged as the directory holding every layer');
  t.equal(localVolumeHostPath('local', { type: 'overlay', device: 'overlay', o: 'lowerdir=/srv/a:/srv/b,upperdir=/srv/u,workdir=/srv/w' }), '/srv');
  t.same(localVolumeHostPaths('local', { type: 'overlay', device: 'overlay', o: 'lowerdir=srv/a::/srv/b\\:c,upperdir=/srv/u\\,x,workdir=/srv/w,index=off' }), ['/srv/a', '/srv/b:c', '/srv/u,x', '/srv/w'],
    'relative layers from dockerd\'s working directory; escaped ":" and "," as the kernel reads them; data-only "::"');
  t.same(localVolumeHostPaths('local', { type: 'overlay', device: 'overlay', o: 'lowerdir+=/etc,datadir+=/root' }), ['/etc', '/root'], 'the append forms');
  t.equal(localVolumeHostPath('local', { type: 'overlay', device: 'overlay', o: 'index=off' }), undefined, 'no layers: nothing mounted');
  t.equal(localVolumeHostPath('local', { type: 'overlay', device: '/srv/data', o: 'bind' }), '/srv/data', 'bind ignores the type');
  t.equal(commonAncestor(['/srv/a/b', '/srv/a/c', '/srv/ab']), '/srv');
  t.equal(commonAncestor(['/srv/a']), '/srv/a');
  t.same(parseVolumesFrom('web'), { ref: 'web', readOnly: false });
  t.same(parseVolumesFrom('web:ro'), { ref: 'web', readOnly: true });
  t.same(parseVolumesFrom('web:rw'), { ref: 'web', readOnly: false });
  t.same(parseVolumesFrom('web:ro,z'), { ref: 'web', readOnly: true });
  t.same(parseVolumesFrom('web:odd'), { ref: 'web:odd', readOnly: false }, 'not a mode: left to dockerd');
  const a = facts({ id: 'abc1', name: 'a' });
  const b = facts({ id: 'abc2', name: 'b' });
  const inv = inventory([a, b]);
  t.equal(findContainer(inv, 'abc1'), a);
  t.equal(findContainer(inv, '/b'), b);
  t.equal(findContainer(inv, 'abc'), undefined, 'ambiguous prefix');
  t.equal(findContainer(inv, 'zzz'), undefined);
});

t.test('needed: only when something can be resolved', async (t) => {
  const r = new FactsResolver(engine({}));
  t.equal(r.needed(facts()), false, 'no mounts, network none');
  t.equal(r.needed(facts({ mounts: [{ type: 'tmpfs', source: '', destination: '/t', readOnly: false, propagation: '' }] })), false);
  t.equal(r.needed(facts({ mounts: [{ type: 'volume', source: '', destination: '/v', readOnly: false, propagation: '' }] })), false, 'anonymous volume');
  t.equal(r.needed(facts({ mounts: [{ type: 'volume', source: 'data', destination: '/v', readOnly: false, propagation: '' }] })), true);
  t.equal(r.needed(facts({ mounts: [{ type: 'bind', source: '/srv', destination: '/v', readOnly: false, propagation: '' }] })), true);
  t.equal(r.needed(facts({ mounts: [{ type: 'bind', source: '/srv', destination: '/v', readOnly: false, propagation: '' }] }), { kinds: new Set(['networks']) }), false, 'kind not asked for');
  t.equal(r.needed(facts(), { volumesFrom: ['web'] }), true);
  t.equal(r.needed(facts({ ipcMode: 'container:web' })), true);
  t.equal(r.needed(facts({ networks: [{ name: 'shop', networkId: '', ipAddress: '' }] })), false, 'networks only for requests');
  t.equal(r.needed(facts({ networks: [{ name: 'shop', networkId: '', ipAddress: '' }] }), { networks: true }), true);
});

t.test('bind sources: symlinks resolved, missing tails kept, failures fall back to the literal path', async (t) => {
  const r = new FactsResolver(engine({}));
  const bind = (source: string) => ({ type: 'bind', source, destination: '/x', readOnly: true, propagation: 'rprivate' });
  const { facts: f, failures } = await r.resolve(facts({
    mounts: [bind(join(dir, 'link')), bind(join(realDir, 'real')), bind(join(dir, 'link/new/deeper')), bind('/nonexistent-bk/x')],
  }));
  t.same(failures, []);
  t.equal(f.mounts[0]!.hostPath, join(realDir, 'real'), 'a symlink resolves');
  t.equal(f.mounts[1]!.hostPath, undefined, 'no symlink: nothing added');
  t.equal(f.mounts[2]!.hostPath, join(realDir, 'real/new/deeper'), 'a path dockerd would create below a symlink');
  t.equal(f.mounts[3]!.hostPath, undefined, 'nothing exists: the literal path');

  let calls = 0;
  let now = 0;
  const slow = new FactsResolver({
    ...engine({}), realpathTimeoutMs: 20, clock: () => now,
    realpath: async (p) => {
      calls++;
      if (p === '/hang') return new Promise<string>(() => {});
      if (p === '/denied') throw Object.assign(new Error('EACCES'), { code: 'EACCES' });
      return `/real${p}`;
    },
  });
  const one = async (source: string, fresh = false) => (await slow.resolve(facts({ mounts: [bind(source)] }), { freshPaths: fresh })).facts.mounts[0]!.hostPath;
  t.equal(await one('/hang'), undefined, 'realpath too slow: the literal path is judged');
  t.equal(await one('/denied'), undefined, 'realpath refused: the literal path');
  t.equal(await one('/a'), '/real/a');
  const before = calls;
  t.equal(await one('/a'), '/real/a');
  t.equal(calls, before, 'cached');
  t.equal(await one('/a', true), '/real/a');
  t.equal(calls, before + 1, 'freshPaths skips the cache');
  now += 5000;
  await one('/a');
  t.equal(calls, before + 2, 'expired after the TTL');
});

t.test('volumes: a local volume bound to a host path, from the engine; failures reported', async (t) => {
  const { docker, calls } = engine({
    volumes: {
      etc: { Name: 'etc', Driver: 'local', Options: { type: 'none', o: 'bind,ro', device: join(dir, 'link') } },
      plain: { Name: 'plain', Driver: 'local', Options: null },
      other: { Name: 'other', Driver: 'rexray', Options: { device: '/etc' } },
      flaky: 'fail',
    },
  });
  const r = new FactsResolver({ docker });
  const vol = (source: string, hostPath?: string) => ({ type: 'volume', source, destination: `/${source || 'anon'}`, readOnly: false, propagation: '', ...(hostPath ? { hostPath } : {}) });
  const { facts: f, failures } = await r.resolve(facts({
    mounts: [vol('etc'), vol('plain'), vol('other'), vol('new', '/etc/ssl'), vol('', join(dir, 'link')), vol('flaky')],
  }));
  const byName = Object.fromEntries(f.mounts.map((m) => [m.source || 'anon', m.hostPath]));
  t.equal(byName['etc'], join(realDir, 'real'), 'device, with its symlinks resolved');
  t.equal(byName['plain'], undefined);
  t.equal(byName['other'], undefined, 'another driver binds no host path we know of');
  t.equal(byName['new'], '/etc/ssl', 'not there yet: the options of the request apply');
  t.equal(byName['anon'], join(realDir, 'real'), 'anonymous volume with options from the request');
  t.same(failures.map((x) => [x.kind, x.what, x.why]), [['mounts', 'the options of volume flaky (mounted at /flaky)', 'engine hiccup']]);
  t.same(calls.volume.sort(), ['etc', 'flaky', 'new', 'other', 'plain'], 'one inspect per named volume');

  // The same container again (watcher): the volume results are carried over.
  calls.volume.length = 0;
  const again = await r.resolve(facts({ mounts: [vol('etc')] }), { previous: f });
  t.equal(again.facts.mounts[0]!.hostPath, join(realDir, 'real'));
  t.same(calls.volume, [], 'no inspect: an in-use volume cannot change');

  // At start (freshPaths) the options are read again: the driver mounts `device` afresh, following its links as they are then;
  // and the facts of a fresh inspect passed as their own `previous` were never resolved.
  calls.volume.length = 0;
  const atStart = await r.resolve(facts({ mounts: [vol('etc')] }), { previous: f, freshPaths: true });
  t.equal(atStart.facts.mounts[0]!.hostPath, join(realDir, 'real'));
  t.same(calls.volume, ['etc'], 'inspected again at start');
  calls.volume.length = 0;
  const unresolved = await r.resolve(facts({ mounts: [vol('etc')] }), { previous: facts({ mounts: [vol('etc')] }), freshPaths: true });
  t.equal(unresolved.facts.mounts[0]!.hostPath, join(realDir, 'real'), 'a fresh inspect as previous: looked up');

  // Kernel filesystems and overlay layers, each layer with its symlinks resolved.
  const kernel = new FactsResolver(engine({
    volumes: {
      hp: { Name: 'hp', Driver: 'local', Options: { type: 'proc', device: 'proc' } },
      ov: { Name: 'ov', Driver: 'local', Options: { type: 'overlay', device: 'overlay', o: `lowerdir=${join(dir, 'link')},upperdir=${join(dir, 'u')},workdir=${join(dir, 'w')}` } },
      ovetc: { Name: 'ovetc', Driver: 'local', Options: { type: 'overlay', device: 'overlay', o: `lowerdir=${join(dir, 'etc-link')},upperdir=${join(dir, 'u')},workdir=${join(dir, 'w')}` } },
    },
  }));
  const k = await kernel.resolve(facts({ mounts: [vol('hp'), vol('ov'), vol('ovetc')] }));
  t.equal(k.facts.mounts.find((m) => m.source === 'hp')!.hostPath, '/proc', 'type=proc: the host\'s /proc');
  t.equal(k.facts.mounts.find((m) => m.source === 'ov')!.hostPath, realDir, 'overlay: the directory holding every layer, symlinks resolved');
  t.equal(k.facts.mounts.find((m) => m.source === 'ovetc')!.hostPath, '/', 'a layer linked to /etc: the layers span / (each layer resolved, not their ancestor)');

  const existing = new FactsResolver(engine({ volumes: { named: { Name: 'named', Driver: 'local', Options: {} } } }));
  const ex = await existing.resolve(facts({ mounts: [vol('named', '/etc')] }));
  t.equal(ex.facts.mounts[0]!.hostPath, undefined, 'an existing volume is used as it is (request options ignored, as by dockerd)');

  const noVolumes = new FactsResolver({ docker: { getContainer: engine({}).docker.getContainer } });
  const nv = await noVolumes.resolve(facts({ mounts: [vol('x')] }));
  t.match(nv.failures[0]!.why, /cannot inspect volumes/);

  const hang = new FactsResolver({ ...engine({ volumes: { slow: 'hang' } }), clock: () => performance.now() });
  const h = await hang.resolve(facts({ mounts: [vol('slow')] }), { deadline: performance.now() + 30 });
  t.match(h.failures[0]!.why, /inspect of volume slow took longer than \d+ ms/, 'bounded by the deadline');
});

t.test('--volumes-from: the donor\'s mounts, read-only when asked, the request\'s own mounts win', async (t) => {
  const donor = facts({
    id: 'd'.repeat(64), name: 'donor', mounts: [
      { type: 'bind', source: '/etc/ssl', destination: '/certs', readOnly: false, propagation: 'rprivate' },
      { type: 'bind', source: '/srv/a', destination: '/a', readOnly: true, propagation: 'rprivate' },
      { type: 'tmpfs', source: '', destination: '/tmp', readOnly: false, propagation: '' },
      { type: 'bind', source: '/srv/img', destination: '/img', readOnly: false, propagation: 'rprivate' },
    ],
  });
  const { docker, calls } = engine({
    containers: {
      remote: { Id: 'r'.repeat(64), Name: '/remote', Mounts: [{ Type: 'bind', Source: '/var/run/docker.sock', Destination: '/s', RW: true, Mode: '', Propagation: 'rprivate' }] as never, HostConfig: {} as never, Config: {} as never, State: {} as never },
      flaky: 'fail',
    },
  });
  const r = new FactsResolver({ docker, containers: inventory([donor]), realpath: async (p) => p });
  const own = [
    { type: 'bind', source: '/srv/mine', destination: '/a', readOnly: false, propagation: 'rprivate' },
    { type: 'volume', source: '', destination: '/img', readOnly: false, propagation: '' },
  ];
  const { facts: f, failures } = await r.resolve(facts({ mounts: own }), { volumesFrom: ['donor:ro', 'remote', 'ghost', 'flaky'] });
  const m = Object.fromEntries(f.mounts.map((x) => [x.destination, [x.source, x.readOnly]]));
  t.same(m['/certs'], ['/etc/ssl', true], ':ro makes inherited mounts read-only');
  t.same(m['/a'], ['/srv/mine', false], 'the request\'s bind wins');
  t.same(m['/img'], ['/srv/img', true], 'an image VOLUME yields to an inherited mount');
  t.equal(m['/tmp'], undefined, 'tmpfs is not inherited');
  t.same(m['/s'], ['/var/run/docker.sock', false], 'a donor not in the inventory is inspected');
  t.same(calls.container.sort(), ['flaky', 'ghost', 'remote']);
  t.same(failures.map((x) => x.what), ['the mounts of container flaky (--volumes-from flaky)'], 'ghost: not found, dockerd refuses it itself');
});

t.test('namespaces: the joined container\'s mode, followed through joins', async (t) => {
  const hostPid = facts({ id: 'h'.repeat(64), name: 'hostpid', pidMode: 'host', ipcMode: 'host', networkMode: 'host' });
  const chained = facts({ id: 'c'.repeat(64), name: 'chained', pidMode: `container:${'h'.repeat(64)}` });
  const resolvedJoin = facts({ id: 'j'.repeat(64), name: 'resolved', pidMode: 'container:zzz', effectivePidMode: 'host' });
  const privatePid = facts({ id: 'p'.repeat(64), name: 'private', pidMode: '' , networkMode: 'default' });
  const loop = Array.from({ length: 7 }, (_, i) => facts({ id: `l${i}`, name: `l${i}`, pidMode: `container:l${i + 1}` }));
  const { docker, calls } = engine({
    containers: {
      remote: { Id: 'x'.repeat(64), Name: '/remote', HostConfig: { IpcMode: 'host' } as never, Config: {} as never, State: {} as never, Mounts: [] },
      flaky: 'fail',
    },
  });
  const r = new FactsResolver({ docker, containers: inventory([hostPid, chained, resolvedJoin, privatePid, ...loop]) });
  const one = async (over: Partial<Facts>) => r.resolve(facts(over));
  t.equal((await one({ pidMode: 'container:hostpid' })).facts.effectivePidMode, 'host');
  t.equal((await one({ pidMode: 'container:chained' })).facts.effectivePidMode, 'host', 'through a join');
  t.equal((await one({ pidMode: 'container:resolved' })).facts.effectivePidMode, 'host', 'a target already resolved');
  t.equal((await one({ pidMode: 'container:private' })).facts.effectivePidMode, '');
  t.equal((await one({ networkMode: 'container:private', networks: [] })).facts.effectiveNetworkMode, 'default');
  t.equal((await one({ ipcMode: 'container:remote' })).facts.effectiveIpcMode, 'host', 'inspected when not in the inventory');
  const ghost = await one({ pidMode: 'container:ghost' });
  t.same([ghost.facts.effectivePidMode, ghost.failures], [undefined, []], 'not found: unresolved, dockerd refuses it');
  const flaky = await one({ pidMode: 'container:flaky' });
  t.same(flaky.failures.map((x) => [x.kind, x.what]), [['namespaces', 'the pid namespace of container flaky (--pid container:flaky)']]);
  const deep = await one({ pidMode: 'container:l0' });
  t.match(deep.failures[0]!.why, /more than 5 containers joined/);
  calls.container.length = 0;
  const prev = facts({ pidMode: 'container:flaky', effectivePidMode: 'host' });
  t.equal((await r.resolve(facts({ pidMode: 'container:flaky' }), { previous: prev })).facts.effectivePidMode, 'host', 'carried over from the previous facts');
  t.same(calls.container, []);
});

t.test('networks: names, ids and id prefixes to the canonical network', async (t) => {
  const id = 'a1'.repeat(32);
  const { docker, calls } = engine({ networks: { a1a1a1: { Name: 'shop', Id: id }, [id]: { Name: 'shop', Id: id }, flaky: 'fail' } });
  const known = facts({ id: 'k'.repeat(64), name: 'known', networks: [{ name: 'blog', networkId: 'b2'.repeat(32), ipAddress: '' }] });
  const r = new FactsResolver({ docker, containers: inventory([known]) });
  const nets = (...names: string[]) => facts({ networkMode: names[0]!, networks: names.map((name) => ({ name, networkId: '', ipAddress: '' })) });
  const a = await r.resolve(nets('a1a1a1', id, 'blog', 'none', 'ghost', 'flaky'), { networks: true });
  t.same(a.facts.networks.map((n) => [n.name, n.networkId]), [['blog', 'b2'.repeat(32)], ['flaky', ''], ['ghost', ''], ['none', ''], ['shop', id]], 'canonical, one entry per network');
  t.same(a.failures.map((x) => [x.kind, x.what]), [['networks', 'which network "flaky" is']]);
  t.same(calls.network.sort(), ['a1a1a1', 'flaky', 'ghost', id].sort(), 'the inventory answered for "blog"; keywords never asked');
  calls.network.length = 0;
  await r.resolve(nets('a1a1a1', 'ghost'), { networks: true });
  t.same(calls.network, ['ghost'], 'found networks are cached, missing ones are not');
  const none = new FactsResolver({ docker: { getContainer: docker.getContainer } });
  t.match((await none.resolve(nets('x'), { networks: true })).failures[0]!.why, /cannot inspect networks/);
});

t.test('concurrent lookups of the same thing share one request', async (t) => {
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  let n = 0;
  const docker: ResolverDocker = {
    getContainer: () => ({ inspect: async () => { throw notFound(); } }),
    getVolume: () => ({ inspect: async () => { n++; await gate; return { Name: 'v', Driver: 'local', Options: { device: '/etc' } } as never; } }),
  };
  const r = new FactsResolver({ docker, realpath: async (p) => p });
  const vol = { type: 'volume', source: 'v', destination: '/v', readOnly: false, propagation: '' };
  const both = Promise.all([r.resolve(facts({ mounts: [vol] })), r.resolve(facts({ mounts: [vol] }))]);
  await new Promise((res) => setImmediate(res));
  release();
  const [a, b] = await both;
  t.equal(n, 1);
  t.equal(a.facts.mounts[0]!.hostPath, '/etc');
  t.equal(b.facts.mounts[0]!.hostPath, '/etc');
});

t.test('carryResolution and the watcher hook', async (t) => {
  const prev = facts({
    pidMode: 'container:x', effectivePidMode: 'host',
    mounts: [{ type: 'volume', source: 'etc', destination: '/e', readOnly: false, propagation: '', hostPath: '/etc' }, { type: 'bind', source: '/srv', destination: '/s', readOnly: false, propagation: '' }],
  });
  const fresh = facts({ pidMode: 'container:x', mounts: prev.mounts.map(({ hostPath: _h, ...m }) => m) });
  const carried = carryResolution(fresh, prev);
  t.equal(carried.mounts[0]!.hostPath, '/etc');
  t.equal(carried.effectivePidMode, 'host');
  t.equal(carryResolution(facts({ pidMode: 'container:y' }), prev).effectivePidMode, undefined, 'another join: not carried');

  const warned: unknown[] = [];
  const r = new FactsResolver(engine({ volumes: { v: 'fail' } }));
  const hook = r.watcherHook({ warn: (o: unknown) => warned.push(o) } as never);
  const plain = facts();
  t.equal(await hook(plain, undefined), plain, 'nothing to resolve: the same object');
  const out = await hook(facts({ mounts: [{ type: 'volume', source: 'v', destination: '/v', readOnly: false, propagation: '' }] }), undefined);
  t.equal(out.mounts[0]!.hostPath, undefined, 'best effort');
  t.equal(warned.length, 1, 'the failure is logged');

  // A restart mounts the volumes afresh (their device links followed as they are then): options read again.
  const { docker: d2, calls: c2 } = engine({ volumes: { lv: { Name: 'lv', Driver: 'local', Options: { type: 'none', o: 'bind', device: join(dir, 'etc-link') } } } });
  const hook2 = new FactsResolver({ docker: d2 }).watcherHook({ warn: () => undefined } as never);
  const lvMount = { type: 'volume', source: 'lv', destination: '/v', readOnly: false, propagation: '' };
  const before = facts({ startedAtMs: 1, mounts: [{ ...lvMount, hostPath: join(realDir, 'u') }] });
  const same = await hook2(facts({ startedAtMs: 1, mounts: [lvMount] }), before);
  t.equal(same.mounts[0]!.hostPath, join(realDir, 'u'), 'same run: carried over');
  t.same(c2.volume, [], 'no inspect');
  const restarted = await hook2(facts({ startedAtMs: 2, mounts: [lvMount] }), before);
  t.equal(restarted.mounts[0]!.hostPath, '/etc', 'restarted: the device link is followed again');
  t.same(c2.volume, ['lv']);
  t.ok(REAL);
});
