// createRequestToFacts: a create request yields the facts the container
// will have — checked field by field against what a REAL dockerd makes of
// the same body (toContainerFacts of its inspect) — plus update merging and
// exec escalation.
import t from 'tap';
import Docker from 'dockerode';
import type Dockerode from 'dockerode';
import { effectiveLogConfig, effectiveUlimits, type HostFacts__Output } from '@bulkhead/shared';
import { useEngine, removeLabelledContainers, TEST_LABEL, FILE_LABEL } from '../../../../test/helpers/engine';
import { toContainerFacts, type Facts } from '../../src/docker/container-facts';
import {
  applyNetworkConnect, applyUpdateRequest, createRequestToFacts, execEscalation, execRequestToFacts, pluginToFacts, volumeCreateToFacts, volumesFromOf,
  type ContainerCreateBody,
} from '../../src/authz/create-request';

const [fileKey, fileValue] = FILE_LABEL.split('=') as [string, string];
const LABELS = { [TEST_LABEL.split('=')[0]!]: '1', [fileKey]: fileValue };

/** The test engine's defaults (scripts/engine.sh: daemon.json "{}", no log or ulimit flags). */
const ENGINE_DEFAULTS = {
  daemonDefaults: { logDriver: 'json-file', logOpts: {}, ulimits: [], configKnown: true, unknownReason: '', storageDriver: '', storageBackingFs: '', storageNote: '' },
} as unknown as HostFacts__Output;

/** Facts minus what only exists once the container does (id, state, times, endpoint ids). */
function comparable(f: Facts): Record<string, unknown> {
  const { id: _id, state: _s, createdAtMs: _c, startedAtMs: _st, finishedAtMs: _f, pid: _p, exitCode: _e, restartCount: _r, daemonDefaultsMerged: _d, ...rest } = f;
  return {
    ...rest,
    // dockerd merges its defaults into the log config (at create) and the
    // ulimits (at inspect); the request's, merged as the checks merge them.
    logConfig: effectiveLogConfig(f, ENGINE_DEFAULTS),
    ulimits: effectiveUlimits(f, ENGINE_DEFAULTS).list,
    // dockerd fills in its default IPC mode ("private" or "shareable", a daemon setting).
    ipcMode: f.ipcMode === 'private' || f.ipcMode === 'shareable' ? '' : f.ipcMode,
    // At create dockerd fills in its default masked / read-only path lists
    // where the request left them null (absent in the request's facts, the
    // full lists in inspect) and its default cgroup namespace mode (host on
    // cgroup v1, private on v2): both mean "dockerd's default" to the checks.
    maskedPaths: !f.maskedPaths || f.maskedPaths.values.length >= 10 ? 'dockerd default' : f.maskedPaths.values,
    readonlyPaths: !f.readonlyPaths || f.readonlyPaths.values.length >= 5 ? 'dockerd default' : f.readonlyPaths.values,
    cgroupnsMode: f.cgroupnsMode === undefined || f.cgroupnsMode === 'host' || f.cgroupnsMode === 'private' ? 'dockerd default' : f.cgroupnsMode,
    networks: f.networks.map((n) => n.name),
    mounts: f.mounts.map((m) => ({
      ...m,
      // Anonymous volumes get a generated name; a bind's default propagation
      // follows the host mount it sits on (rprivate, or rslave under a shared one).
      source: m.type === 'volume' && /^[0-9a-f]{64}$/.test(m.source) ? '' : m.source,
      propagation: m.type === 'bind' && (m.propagation === 'rslave' || m.propagation === 'rprivate') ? 'default' : m.propagation,
    })),
  };
}

t.test('parity with a real engine: the request maps to what dockerd creates', async (t) => {
  const engine = await useEngine(t);
  const docker = new Docker({ socketPath: engine.socketPath });
  t.teardown(() => removeLabelledContainers(engine));
  const net = `bk-cr-${process.pid}-${Math.random().toString(36).slice(2, 7)}`;
  await engine.dockerOk(['network', 'create', '--internal', net]);
  t.teardown(() => engine.docker(['network', 'rm', net]));

  const bodies: Array<{ what: string; name: string; body: ContainerCreateBody }> = [
    {
      what: 'minimal, image defaults',
      name: `bk-cr-min-${process.pid}`,
      body: { Image: engine.imageUser1000, Labels: LABELS, HostConfig: { NetworkMode: 'none' } },
    },
    {
      what: 'everything a rule looks at',
      name: `bk-cr-max-${process.pid}`,
      body: {
        Image: engine.image,
        User: '0:0',
        Entrypoint: ['/bin/sh', '-c'],
        Cmd: ['sleep 60', '--password', 'Tr0ub4dor-3'],
        Env: ['A=1', 'DB_URL=postgres://u:Tr0ub4dor-3@db/x', 'PATH=/custom'],
        Labels: { ...LABELS, 'bulkhead.project': 'shop' },
        Volumes: { '/data': {} },
        HostConfig: {
          NetworkMode: 'none',
          Privileged: true,
          Binds: ['/tmp:/host-tmp:ro', `bkvol-${process.pid}:/v1`, '/var/lib/../lib/:/h-lib:rshared'],
          Mounts: [{ Type: 'bind', Source: '/etc', Target: '/h-etc', ReadOnly: true }],
          Tmpfs: { '/run': 'rw,size=1m', '/ro': 'ro' },
          CapAdd: ['net_admin', 'CAP_SYS_PTRACE'],
          CapDrop: ['ALL'],
          SecurityOpt: ['no-new-privileges'],
          ReadonlyRootfs: true,
          Memory: 64 * 1024 * 1024,
          NanoCpus: 500_000_000,
          PidsLimit: 50,
          CpuShares: 512,
          RestartPolicy: { Name: 'on-failure', MaximumRetryCount: 2 },
          PidMode: 'host',
          IpcMode: 'private',
          UTSMode: 'host',
          Devices: [{ PathOnHost: '/dev/null', PathInContainer: '/dev/xnull', CgroupPermissions: 'rwm' }],
        },
      },
    },
    {
      what: 'user-defined network, cpu quota, entrypoint only',
      name: `bk-cr-net-${process.pid}`,
      body: {
        Image: engine.image,
        Entrypoint: ['sleep'],
        Labels: LABELS,
        HostConfig: { NetworkMode: net, CpuQuota: 50_000, CpuPeriod: 100_000 },
        NetworkingConfig: { EndpointsConfig: { [net]: {} } },
      },
    },
  ];

  for (const { what, name, body } of bodies) {
    const image = await docker.getImage(body.Image!).inspect();
    const { facts, secretHits } = createRequestToFacts(body, name, image);
    const created = await docker.createContainer({ ...body, name } as Dockerode.ContainerCreateOptions);
    const real = toContainerFacts(await created.inspect(), image);
    t.same(comparable(facts), comparable(real), what);
    t.equal(facts.state, 'created');
    if (what === 'everything a rule looks at') {
      t.same(secretHits.map((h) => h.location).sort(), ['command[4]', 'env:DB_URL'], `${what}: secret hits`);
    }
  }
});

t.test('create: odd bodies do not throw', async (t) => {
  const f = createRequestToFacts({} as ContainerCreateBody, '/n');
  t.equal(f.facts.name, 'n');
  t.equal(f.facts.networkMode, 'default');
  t.same(f.facts.networks.map((n) => n.name), ['bridge']);
  t.equal(f.facts.restartPolicy, 'no');
  const g = createRequestToFacts({ HostConfig: { NetworkMode: 'container:abc', Binds: [], Mounts: [null, 5], Devices: [null] } } as unknown as ContainerCreateBody, '');
  t.same(g.facts.networks, []);
  t.same(g.facts.mounts, []);
  t.same(createRequestToFacts(null as unknown as ContainerCreateBody, '').facts.command, []);
  const anon = createRequestToFacts({ HostConfig: { Binds: ['/only-dest'] } }, '');
  t.same(anon.facts.mounts, [{ type: 'volume', source: '', destination: '/only-dest', readOnly: false, propagation: '' }]);
});

const base = {
  id: 'c1', name: 'web', user: '1000', privileged: false, memoryLimitBytes: 100, nanoCpus: 0, cpuQuota: 0, cpuPeriod: 0, cpuShares: 0,
  pidsLimit: 10, restartPolicy: 'no', restartMaxRetries: 0,
} as Facts;

t.test('update: zero/absent leave a field unchanged, like dockerd', async (t) => {
  const u = applyUpdateRequest(base, { Memory: 200, NanoCpus: 0, PidsLimit: null, RestartPolicy: { Name: '', MaximumRetryCount: 0 } });
  t.equal(u.memoryLimitBytes, 200);
  t.equal(u.pidsLimit, 10);
  t.equal(u.restartPolicy, 'no');
  const v = applyUpdateRequest(base, { PidsLimit: -1, NanoCpus: 2e9, CpuQuota: 1, CpuPeriod: 2, CpuShares: 3, RestartPolicy: { Name: 'always' } });
  t.equal(v.pidsLimit, 0, '-1 = unlimited');
  t.equal(v.nanoCpus, 2e9);
  t.same([v.cpuQuota, v.cpuPeriod, v.cpuShares], [1, 2, 3]);
  t.equal(v.restartPolicy, 'always');
  t.equal(applyUpdateRequest(base, { Memory: -1 }).memoryLimitBytes, 0);
  t.equal(base.memoryLimitBytes, 100, 'input untouched');
  t.same(applyUpdateRequest(base, null as never), base);
});

t.test('exec: escalation only for privileged or root', async (t) => {
  t.same(execEscalation({ User: 'root' }), { privileged: false, root: true });
  t.same(execEscalation({ User: '0:0' }), { privileged: false, root: true });
  t.same(execEscalation({ User: 'root:wheel' }), { privileged: false, root: true });
  t.same(execEscalation({ User: '1000' }), { privileged: false, root: false });
  t.same(execEscalation({ User: '', Privileged: true }), { privileged: true, root: false });
  t.same(execEscalation({ User: '00' }), { privileged: false, root: true }, 'any spelling of uid 0');
  t.same(execEscalation({ User: '+0' }), { privileged: false, root: true }, 'Go\'s Atoi reads "+0" as 0');
  t.same(execEscalation({ User: '-0:0' }), { privileged: false, root: true });
  t.same(execEscalation({ User: ' 0 :1000' }), { privileged: false, root: false }, 'not a number for runc: an unknown user name, and the exec fails');
  t.same(execEscalation({ User: '10' }), { privileged: false, root: false });
  t.equal(execRequestToFacts(base, { User: '1000' }), undefined);
  t.equal(execRequestToFacts(base, {}), undefined, 'empty User runs as the container user: nothing added');
  const e = execRequestToFacts(base, { User: '0', Privileged: true })!;
  t.equal(e.user, 'root');
  t.equal(e.privileged, true);
  t.equal(execRequestToFacts(base, { Privileged: true })!.user, '1000');
});

t.test('create: volume options of the request are a host path; --volumes-from is listed for the resolver', async (t) => {
  const f = createRequestToFacts({
    Image: 'x',
    HostConfig: {
      VolumesFrom: ['donor:ro', 'other'],
      VolumeDriver: 'local',
      Mounts: [
        { Type: 'volume', Source: 'named', Target: '/a', VolumeOptions: { DriverConfig: { Options: { type: 'none', o: 'bind', device: '/etc/' } } } },
        { Type: 'volume', Target: '/b', ReadOnly: true, VolumeOptions: { DriverConfig: { Name: 'local', Options: { device: '/dev/sda1', type: 'ext4' } } } },
        { Type: 'volume', Source: 'nfs', Target: '/c', VolumeOptions: { DriverConfig: { Options: { type: 'nfs', device: ':/export' } } } },
        { Type: 'volume', Source: 'plugin', Target: '/d', VolumeOptions: { DriverConfig: { Name: 'rexray', Options: { device: '/etc' } } } },
        { Type: 'volume', Source: 'plain', Target: '/e' },
      ],
    },
  }, 'n').facts;
  t.same(f.mounts.map((m) => [m.destination, m.source, m.hostPath]), [
    ['/a', 'named', '/etc'], ['/b', '', '/dev/sda1'], ['/c', 'nfs', undefined], ['/d', 'plugin', undefined], ['/e', 'plain', undefined],
  ]);
  t.same(volumesFromOf({ HostConfig: { VolumesFrom: ['donor:ro', 'other'] } }), ['donor:ro', 'other']);
  t.same(volumesFromOf({}), []);
  t.same(volumesFromOf(null as never), []);
  const plugin = createRequestToFacts({ HostConfig: { VolumeDriver: 'rexray', Mounts: [{ Type: 'volume', Source: 'v', Target: '/v', VolumeOptions: { DriverConfig: { Options: { device: '/etc' } } } }] } }, '').facts;
  t.equal(plugin.mounts[0]!.hostPath, undefined, '--volume-driver of a plugin: not a local bind');
});

t.test('network connect and volume create', async (t) => {
  const cur = { ...base, networks: [{ name: 'a', networkId: 'ida', ipAddress: '1.2.3.4' }] } as Facts;
  t.same(applyNetworkConnect(cur, { name: 'b', id: 'idb' }).networks.map((n) => n.name), ['a', 'b']);
  t.equal(applyNetworkConnect(cur, { name: 'a', id: 'ida' }), cur, 'already attached');
  t.equal(applyNetworkConnect(cur, { name: 'renamed', id: 'ida' }), cur, 'same network id');
  const v = volumeCreateToFacts({ Name: 'etc', Driver: 'local', DriverOpts: { type: 'none', o: 'bind,ro', device: '/etc' }, Labels: { team: 'x' } })!;
  t.same([v.name, v.labels, v.mounts], ['etc', { team: 'x' }, [{ type: 'volume', source: 'etc', destination: '', readOnly: true, propagation: '', hostPath: '/etc' }]]);
  t.equal(volumeCreateToFacts({ Name: 'n', DriverOpts: { type: 'nfs', device: ':/x' } }), undefined);
  t.equal(volumeCreateToFacts({ Name: 'p', Driver: 'rexray', DriverOpts: { device: '/etc' } }), undefined);
  t.equal(volumeCreateToFacts(null as never), undefined);
});

t.test('plugin enable: the plugin process as dockerd runs it', async (t) => {
  // Shaped like `GET /plugins/{name}/json` on 20.10 / 26.1.
  const f = pluginToFacts({
    Id: 'abc', Name: 'bk/p:1', PluginReference: 'docker.io/bk/p:1',
    Config: {
      User: { UID: 1000, GID: 1000 },
      Mounts: [{ Source: '/data', Destination: '/d', Type: 'bind', Options: ['rbind'] }],
      Linux: { Capabilities: ['CAP_SYS_ADMIN'], AllowAllDevices: true, Devices: [{ Path: '/dev/fuse' }] },
      PidHost: true, IpcHost: false, Network: { Type: 'host' },
    },
    Settings: {
      Mounts: [
        { Source: '/etc/../', Destination: '/d', Type: 'bind', Options: ['rbind'] }, // re-pointed with `docker plugin set`
        { Source: '/etc', Destination: '/e', Type: 'none', Options: ['rbind', 'ro'] }, // a bind by its options
        { Source: 'tmpfs', Destination: '/t', Type: 'tmpfs', Options: [] }, // not a host path
      ],
      Devices: [{ Path: '/dev/sda' }],
    },
  });
  t.equal(f.user, '0:0', 'root whatever Config.User says (dockerd does not apply it)');
  t.same(f.mounts.map((m) => [m.type, m.source, m.destination, m.readOnly]), [['bind', '/', '/d', false], ['bind', '/etc', '/e', true], ['bind', '/data', '/d', false]]);
  t.same(f.capAdd, ['CAP_SYS_ADMIN']);
  t.same([...f.devices].sort(), ['/dev/fuse', '/dev/sda']);
  t.same(f.deviceCgroupRules?.values, ['a *:* rwm'], 'allowAllDevices');
  t.equal(f.pidMode, 'host');
  t.equal(f.ipcMode, '');
  t.equal(f.networkMode, 'host');
  t.equal(f.imageRef, 'docker.io/bk/p:1');
  t.equal(f.name, 'bk/p:1');
  const bare = pluginToFacts({});
  t.equal(bare.user, '0:0');
  t.equal(bare.networkMode, 'none');
  t.same(bare.mounts, []);
});
