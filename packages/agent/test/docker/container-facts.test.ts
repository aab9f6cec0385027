// toContainerFacts against inspect output captured from a real dockerd 20.10
// (fixtures/inspect-*.json; host paths rewritten to /var/lib/docker and
// /srv/app-config). image-with-digests.json is a real image inspect with
// RepoDigests added by hand: imported images have none and nothing can be
// pulled here.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type Dockerode from 'dockerode';
import {
  toContainerFacts, dockerTimeToMs, envNames, hostConfigFacts, normalizeCapability, imageDigest, type Facts,
} from '../../src/docker/container-facts';
import { deviceHostPath, devicePaths, presentList } from '../../src/docker/docker-json';

const fixture = <T>(name: string): T => JSON.parse(readFileSync(join(__dirname, 'fixtures', name), 'utf8')) as T;
const inspect = (name: string): Dockerode.ContainerInspectInfo => fixture(`inspect-${name}.json`);
const image = (name: string): Dockerode.ImageInspectInfo => fixture(`${name}.json`);

const NONE_NET = 'd8b47c1d332d26ba1e0f114d9828d02f9d713cb581e600acf1505b1d9859678b';

t.test('web1: every field of a container with many options set', async (t) => {
  const f = toContainerFacts(inspect('web1'), image('image-with-digests'));
  const expected: Facts = {
    id: '547e7530e32d5dd169ddcce028881ec89fa706e7199a0e76ddce8dfdaa4f3615',
    name: 'web-1',
    imageRef: 'bulkhead-test/busybox:1',
    imageId: 'sha256:bf1b3d8faf96a2ee673204a073599aeabbcef3639936fdba5d93e9b750c0084e',
    // No digest for this repository, so the first one.
    imageDigest: `web@sha256:${'1'.repeat(64)}`,
    // Every repo digest: where the image came from (rule scopes by image match them too).
    repoDigests: { values: [`web@sha256:${'1'.repeat(64)}`, `registry.example.com/team/web@sha256:${'2'.repeat(64)}`] },
    labels: { app: 'web', 'bulkhead.test': '1' },
    state: 'running',
    user: '1000:1000',
    privileged: false,
    mounts: [
      { type: 'volume', source: 'data1', destination: '/data', readOnly: false, propagation: '' },
      { type: 'bind', source: '/srv/app-config', destination: '/host', readOnly: true, propagation: 'rprivate' },
      // --tmpfs appears only in HostConfig.Tmpfs
      { type: 'tmpfs', source: '', destination: '/tmp', readOnly: false, propagation: '' },
    ],
    networkMode: 'none',
    networks: [{ name: 'none', networkId: NONE_NET, ipAddress: '' }],
    pidMode: '',
    ipcMode: 'private',
    utsMode: '',
    usernsMode: '',
    capAdd: ['CAP_NET_ADMIN'],
    capDrop: ['ALL'],
    securityOpt: ['no-new-privileges'],
    readOnlyRootfs: true,
    memoryLimitBytes: 64 * 1024 * 1024,
    nanoCpus: 500_000_000,
    cpuQuota: 0,
    cpuPeriod: 0,
    cpuShares: 0,
    pidsLimit: 100,
    restartPolicy: 'on-failure',
    restartMaxRetries: 3,
    envNames: ['DB_PASSWORD', 'API_TOKEN', 'PLAIN'],
    command: ['sh', '-c', 'sleep 1000'],
    createdAtMs: Date.parse('2026-11-28T16:23:41.575Z'),
    startedAtMs: Date.parse('2026-11-28T16:23:41.762Z'),
    finishedAtMs: 0,
    exitCode: 0,
    pid: 5861,
    devices: ['/dev/null'],
    imageUser: '',
    restartCount: 0,
    secretHits: [],
    project: '',
    // dockerd 20.10's defaults, filled in at create because the request had none.
    maskedPaths: { values: ['/proc/asound', '/proc/acpi', '/proc/kcore', '/proc/keys', '/proc/latency_stats', '/proc/timer_list', '/proc/timer_stats', '/proc/sched_debug', '/proc/scsi', '/sys/firmware'] },
    readonlyPaths: { values: ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'] },
    // This engine runs on a cgroup v1 host, where "host" is the default.
    cgroupnsMode: 'host',
    // The fixture predates default log-opts: json-file as dockerd stored it.
    logConfig: { type: 'json-file', config: {} },
    daemonDefaultsMerged: true,
  };
  t.same(f, expected);
  t.same(Object.keys(f).sort(), Object.keys(expected).sort(), 'no extra fields');
});

t.test('env values never appear in the facts', async (t) => {
  const ins = inspect('web1');
  const secrets = ['hunter2-s3cr3t', 'tok=en==xyz', 'en==xyz', 'hunter2'];
  // Make sure the fixture really carries them, so the test means something.
  for (const s of secrets) t.ok(JSON.stringify(ins).includes(s), `fixture contains ${s}`);
  const out = JSON.stringify(toContainerFacts(ins, image('image-with-digests')));
  for (const s of secrets) t.notOk(out.includes(s), `${s} is not in the facts`);
  t.notOk(out.includes('DB_PASSWORD='), 'no NAME= form either');
});

interface Case {
  name: string;
  inspect: Dockerode.ContainerInspectInfo;
  image?: Dockerode.ImageInspectInfo;
  expect: Partial<Facts>;
}

const cases: Case[] = [
  {
    // dockerd copies the image's USER into the container's Config.User at
    // create time, so `user` already shows it.
    name: 'paused, image with USER, null Env, entrypoint from image',
    inspect: inspect('paused'),
    image: image('image-user'),
    expect: {
      name: 'paused', state: 'paused', user: '1000', imageUser: '1000', envNames: [], command: ['sh', '-c', 'sleep 1000'],
      imageRef: 'bulkhead-test/busybox-user:1', imageDigest: '', restartPolicy: 'no', pidsLimit: 0, capAdd: [], capDrop: [],
      securityOpt: [], devices: [], mounts: [], finishedAtMs: 0,
    },
  },
  {
    name: 'created only: zero times, --mount tmpfs and bind with propagation',
    inspect: inspect('created-only'),
    expect: {
      state: 'created', startedAtMs: 0, finishedAtMs: 0, pid: 0, exitCode: 0, command: ['true'],
      mounts: [
        { type: 'bind', source: '/srv/app-config', destination: '/h', readOnly: false, propagation: 'rslave' },
        { type: 'tmpfs', source: '', destination: '/scratch', readOnly: false, propagation: '' },
      ],
      // not connected yet: dockerd leaves the network id empty
      networks: [{ name: 'none', networkId: '', ipAddress: '' }],
    },
  },
  {
    name: 'user-defined network with an address',
    inspect: inspect('netted'),
    expect: {
      state: 'running', networkMode: 'bk-int',
      networks: [{ name: 'bk-int', networkId: '9a78820938e0d1a1cbcb3cbd9109a310af361248a355affb00c91193dfee3b9e', ipAddress: '172.17.0.2' }],
    },
  },
  {
    name: 'exited with a code',
    inspect: inspect('exited'),
    expect: {
      state: 'exited', exitCode: 3, pid: 0, command: ['sh', '-c', 'exit 3'],
      startedAtMs: Date.parse('2026-11-28T16:29:44.255Z'), finishedAtMs: Date.parse('2026-11-28T16:29:44.254Z'),
    },
  },
  {
    name: 'privileged with host namespaces (failed to start here: state created, exit 128)',
    inspect: inspect('priv'),
    expect: {
      privileged: true, pidMode: 'host', ipcMode: 'host', utsMode: 'host', usernsMode: 'host', state: 'created', exitCode: 128,
      restartPolicy: 'always', securityOpt: ['label=disable'], envNames: ['HOME'],
    },
  },
];

t.test('privileged: dockerd leaves MaskedPaths and ReadonlyPaths null, so the facts have none', async (t) => {
  const f = toContainerFacts(inspect('priv'));
  t.equal(f.maskedPaths, undefined);
  t.equal(f.readonlyPaths, undefined);
  t.equal(f.deviceCgroupRules, undefined, 'DeviceCgroupRules null');
  t.notOk('deviceCgroupRules' in f, 'not even as a key');
});

t.test('hostConfigFacts: device cgroup rules, system paths, cgroup namespace, device paths', async (t) => {
  const h = hostConfigFacts({
    DeviceCgroupRules: ['b *:* rwm', 7, 'c 1:3 r'],
    MaskedPaths: [],
    ReadonlyPaths: ['/proc/sys', null],
    CgroupnsMode: 'host',
    Devices: [{ PathOnHost: '/dev/net/..' }, { PathOnHost: 'dev/fuse' }, { PathOnHost: '/dev/net/tun/' }, { PathOnHost: '' }, null],
  });
  t.same(h.deviceCgroupRules, { values: ['b *:* rwm', 'c 1:3 r'] });
  t.same(h.maskedPaths, { values: [] }, 'an empty list stays: nothing is masked');
  t.same(h.readonlyPaths, { values: ['/proc/sys'] });
  t.equal(h.cgroupnsMode, 'host');
  t.same(h.devices, ['/dev', '/dev/fuse', '/dev/net/tun'], 'device paths as dockerd opens them');
  const none = hostConfigFacts({ DeviceCgroupRules: [], MaskedPaths: null, CgroupnsMode: '' });
  for (const k of ['deviceCgroupRules', 'maskedPaths', 'readonlyPaths', 'cgroupnsMode']) t.notOk(k in none, `${k}: left out when unset`);
  t.same(hostConfigFacts({ MaskedPaths: 'not a list' }).maskedPaths, undefined);
  t.same(presentList(['/a', 1]), { values: ['/a'] });
  t.equal(presentList(null), undefined);
  t.equal(deviceHostPath('/dev/net/../'), '/dev');
  t.equal(deviceHostPath('/'), '/');
  t.same(devicePaths('nope'), []);
});

t.test('hostConfigFacts: log config, ulimits, block-IO throttles, storage options', async (t) => {
  const h = hostConfigFacts({
    LogConfig: { Type: 'json-file', Config: { 'max-size': '10m', n: 1 } },
    Ulimits: [{ Name: 'nofile', Soft: 1024, Hard: 2048 }, null, { Soft: 1 }],
    BlkioDeviceReadBps: [{ Path: '/dev/sda', Rate: 10 }], BlkioDeviceWriteIOps: [{ Path: '/dev/sdb', Rate: 5 }, 'x'],
    BlkioWeight: 300,
    StorageOpt: { size: '10G' },
  });
  t.same(h.logConfig, { type: 'json-file', config: { 'max-size': '10m' } });
  t.same(h.ulimits, { values: [{ name: 'nofile', soft: 1024, hard: 2048 }] }, 'nameless and null entries dropped');
  t.same(h.blkioThrottles, { values: [{ kind: 'read-bps', path: '/dev/sda', rate: 10 }, { kind: 'write-iops', path: '/dev/sdb', rate: 5 }] }, 'the weight is no throttle');
  t.same(h.storageOpt, { values: { size: '10G' } });
  const none = hostConfigFacts({ Ulimits: [], BlkioDeviceReadBps: null, StorageOpt: {} });
  for (const k of ['logConfig', 'ulimits', 'blkioThrottles', 'storageOpt']) t.notOk(k in none, `${k}: left out when unset`);
  t.equal(toContainerFacts({ Id: 'y' } as unknown as Dockerode.ContainerInspectInfo).daemonDefaultsMerged, true, 'an inspect has dockerd\'s defaults in');
});

t.test('table: fixtures from a real engine', async (t) => {
  for (const c of cases) {
    const f = toContainerFacts(c.inspect, c.image);
    t.match(f, c.expect, c.name);
    t.equal(f.name.startsWith('/'), false, `${c.name}: no leading slash`);
  }
});

t.test('tolerates Docker nulls and missing sections', async (t) => {
  const sparse = {
    Id: 'abc', Name: '/x', Image: 'sha256:1', Created: '2026-01-01T00:00:00Z',
    State: { Status: 'exited', StartedAt: DOCKER_ZERO, FinishedAt: DOCKER_ZERO },
    Config: { Image: 'x', Env: null, Cmd: null, Entrypoint: null, Labels: null, User: '' },
    HostConfig: { CapAdd: null, CapDrop: null, SecurityOpt: null, Devices: null, PidsLimit: null, Memory: 0, RestartPolicy: { Name: '' } },
    Mounts: null,
    NetworkSettings: { Networks: null },
  } as unknown as Dockerode.ContainerInspectInfo;
  const f = toContainerFacts(sparse);
  t.match(f, {
    id: 'abc', name: 'x', labels: {}, envNames: [], command: [], capAdd: [], capDrop: [], securityOpt: [], devices: [],
    mounts: [], networks: [], pidsLimit: 0, restartPolicy: 'no', restartMaxRetries: 0, createdAtMs: Date.parse('2026-01-01T00:00:00Z'),
    startedAtMs: 0, finishedAtMs: 0, imageUser: '', imageDigest: '',
  });
  const bare = toContainerFacts({ Id: 'y' } as unknown as Dockerode.ContainerInspectInfo);
  t.equal(bare.id, 'y');
  t.equal(bare.state, '');
  t.same(bare.mounts, []);
});

const DOCKER_ZERO = '0001-01-01T00:00:00Z';

t.test('mount order does not depend on dockerd map order', async (t) => {
  const a = inspect('web1');
  const b = inspect('web1');
  b.Mounts = [...b.Mounts].reverse();
  t.same(toContainerFacts(a).mounts, toContainerFacts(b).mounts);
});

t.test('tmpfs ro option and no duplicate when also in Mounts', async (t) => {
  const i = inspect('created-only');
  i.HostConfig.Tmpfs = { '/scratch': 'size=1m', '/ro': 'ro,size=64k' };
  const m = toContainerFacts(i).mounts;
  t.same(m.map((x) => x.destination), ['/h', '/ro', '/scratch']);
  t.equal(m.find((x) => x.destination === '/ro')?.readOnly, true);
});

t.test('dockerTimeToMs', async (t) => {
  const table: Array<[string | undefined | null, number]> = [
    ['0001-01-01T00:00:00Z', 0],
    ['', 0],
    [undefined, 0],
    [null, 0],
    ['not a time', 0],
    ['2026-11-28T16:23:41.575690027Z', Date.UTC(2026, 10, 28, 16, 23, 41, 575)],
    ['2026-11-28T18:23:41.5+02:00', Date.UTC(2026, 10, 28, 16, 23, 41, 500)],
  ];
  for (const [input, want] of table) t.equal(dockerTimeToMs(input), want, String(input));
});

t.test('envNames splits on the first "=" and keeps names once', async (t) => {
  const table: Array<[string[] | null, string[]]> = [
    [['A=1', 'B=x=y=z', 'C=', 'D'], ['A', 'B', 'C', 'D']],
    [['PATH=/bin', 'PATH=/usr/bin'], ['PATH']],
    [['=weird', ''], []],
    [null, []],
  ];
  for (const [input, want] of table) t.same(envNames(input), want, JSON.stringify(input));
});

t.test('normalizeCapability', async (t) => {
  const table: Array<[string, string]> = [
    ['NET_ADMIN', 'CAP_NET_ADMIN'], ['cap_sys_admin', 'CAP_SYS_ADMIN'], ['CAP_CHOWN', 'CAP_CHOWN'], ['all', 'ALL'], ['ALL', 'ALL'],
  ];
  for (const [input, want] of table) t.equal(normalizeCapability(input), want, input);
  const i = inspect('web1');
  i.HostConfig.CapAdd = ['net_admin', 'CAP_NET_ADMIN', 'SYS_PTRACE'];
  t.same(toContainerFacts(i).capAdd, ['CAP_NET_ADMIN', 'CAP_SYS_PTRACE'], 'older engines: normalized and deduplicated');
});

t.test('imageDigest', async (t) => {
  const img = image('image-with-digests');
  const table: Array<[string, Dockerode.ImageInspectInfo | undefined, string]> = [
    ['registry.example.com/team/web:2.1', img, `registry.example.com/team/web@sha256:${'2'.repeat(64)}`],
    ['web', img, `web@sha256:${'1'.repeat(64)}`],
    ['other:1', img, `web@sha256:${'1'.repeat(64)}`],
    ['busybox:1', image('image-user'), ''],
    [`reg:5000/x@sha256:${'a'.repeat(64)}`, undefined, `reg:5000/x@sha256:${'a'.repeat(64)}`],
    ['busybox:1', undefined, ''],
    // Compared normalised, as dockerd resolves names: "docker.io/library/web" is "web".
    ['docker.io/library/web:1', img, `web@sha256:${'1'.repeat(64)}`],
    ['index.docker.io/library/web', img, `web@sha256:${'1'.repeat(64)}`],
    ['docker.io/library/x:1', { RepoDigests: [`a/y@sha256:${'3'.repeat(64)}`, `x@sha256:${'4'.repeat(64)}`] } as Dockerode.ImageInspectInfo, `x@sha256:${'4'.repeat(64)}`],
  ];
  for (const [ref, im, want] of table) t.equal(imageDigest(ref, im), want, ref);
});

t.test('pure: same input, same output, input not mutated', async (t) => {
  const i = inspect('web1');
  const before = JSON.stringify(i);
  t.same(toContainerFacts(i), toContainerFacts(i));
  t.equal(JSON.stringify(i), before);
});
