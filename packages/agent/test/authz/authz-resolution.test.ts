// The decider's lookups beyond the request (docker/facts-resolver.ts) with a
// fake engine: --volumes-from, volumes, symlinks, joined namespaces and
// networks by id at create; the start, network-connect and volume-create
// routes; fail-closed when a lookup an enforce rule needs fails; and the
// fast path that looks nothing up.
import t from 'tap';
import { mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import type Dockerode from 'dockerode';
import { createLogger, parsePolicy } from '@bulkhead/shared';
import { AuthzDecider, type AuthzDecisionReport, type AuthzDocker } from '../../src/authz/authz-decider';
import { parseAuthzRequest, type AuthzDecision } from '../../src/authz/plugin-server';
import type { PolicyState } from '../../src/policy/policy-holder';
import type { Facts } from '../../src/docker/container-facts';

const logger = createLogger({ name: 'authz-resolution-test', level: 'silent' });

const POLICY_YAML = `
apiVersion: bulkhead.dev/v1
kind: Policy
metadata: { name: unit }
spec:
  rules:
    - id: host.mounts
      description: no sensitive mounts
      severity: critical
      mode: enforce
      action: { type: kill }
      check: { type: sensitive-mounts }
      scope: { containerLabels: { guarded: "*" } }
    - id: host.namespaces
      description: no host namespaces
      severity: critical
      mode: enforce
      action: { type: kill }
      check: { type: host-namespaces }
    - id: iso.networks
      description: one project per network
      severity: high
      mode: enforce
      action: { type: quarantine }
      check: { type: project-network-sharing }
    - id: iso.root
      description: no root
      severity: high
      mode: monitor
      action: { type: alert }
      check: { type: root-user }
`;
const POLICY = parsePolicy(POLICY_YAML, 'unit.yaml');
const MONITOR_ONLY = parsePolicy(POLICY_YAML.replaceAll('mode: enforce', 'mode: monitor'), 'monitor.yaml');
const NO_LOOKUP_RULES = parsePolicy(`
apiVersion: bulkhead.dev/v1
kind: Policy
metadata: { name: plain }
spec:
  rules:
    - { id: host.privileged, description: x, severity: high, mode: enforce, action: { type: kill }, check: { type: privileged } }
`, 'plain.yaml');

const state = (policy = POLICY): PolicyState => ({ policy, scans: new Map(), version: 7, source: 'bundle', sha256: 'x', projectLabel: 'bulkhead.project' });

const running = (over: Partial<Facts>): Facts => ({
  id: 'a'.repeat(64), name: 'web', imageRef: 'app:1', imageId: 'sha256:app', imageDigest: '', labels: {}, state: 'running', user: '1000',
  privileged: false, mounts: [], networkMode: 'none', networks: [], pidMode: '', ipcMode: '', utsMode: '', usernsMode: '', capAdd: [], capDrop: [],
  securityOpt: [], readOnlyRootfs: false, memoryLimitBytes: 0, nanoCpus: 0, cpuQuota: 0, cpuPeriod: 0, cpuShares: 0, pidsLimit: 0,
  restartPolicy: 'no', restartMaxRetries: 0, envNames: [], command: ['sleep', '1'], createdAtMs: 1, startedAtMs: 2, finishedAtMs: 0, exitCode: 0,
  pid: 1, devices: [], imageUser: '1000', restartCount: 0, secretHits: [], project: '', ...over,
});

const SHOP_ID = 'c3'.repeat(32);
const dir = mkdtempSync('/tmp/bk-azr-');
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const etcLink = join(dir, 'etc-link');
symlinkSync('/etc', etcLink);

function setup(o: { policy?: PolicyState['policy']; inventory?: Facts[]; failVolumes?: boolean; failNetworks?: boolean } = {}) {
  const inventory = o.inventory ?? [
    running({ id: 'd'.repeat(64), name: 'donor', mounts: [{ type: 'bind', source: '/etc/ssl', destination: '/certs', readOnly: true, propagation: 'rprivate' }] }),
    running({ id: 'h'.repeat(64), name: 'hostpid', pidMode: 'host' }),
    running({ id: 'o'.repeat(64), name: 'other', labels: { 'bulkhead.project': 'other' }, networks: [{ name: 'shop', networkId: SHOP_ID, ipAddress: '' }] }),
    running({ id: 'm'.repeat(64), name: 'mine', labels: { 'bulkhead.project': 'a' }, networks: [{ name: 'safe', networkId: 'e5'.repeat(32), ipAddress: '' }] }),
    running({ id: 'l'.repeat(64), name: 'linked', state: 'exited', labels: { guarded: '1' }, mounts: [{ type: 'bind', source: join(dir, 'later'), destination: '/x', readOnly: true, propagation: 'rprivate' }] }),
  ];
  const calls = { image: 0, container: 0, volume: 0, network: 0 };
  const reports: AuthzDecisionReport[] = [];
  const fail = () => Promise.reject(Object.assign(new Error('engine hiccup'), { statusCode: 500 }));
  const missing = () => Promise.reject(Object.assign(new Error('not found'), { statusCode: 404 }));
  const docker: AuthzDocker = {
    getExec: () => ({ inspect: missing as never }),
    getImage: () => ({ inspect: async () => (calls.image++, { Id: 'sha256:app', RepoDigests: [], Config: { User: '1000', Env: [] } } as never) }),
    getContainer: () => ({ inspect: () => (calls.container++, missing()) }),
    getVolume: (name) => ({
      inspect: () => {
        calls.volume++;
        if (o.failVolumes) return fail();
        if (name === 'etcvol') return Promise.resolve({ Name: name, Driver: 'local', Options: { type: 'none', o: 'bind', device: '/etc' } } as unknown as Dockerode.VolumeInspectInfo);
        return missing();
      },
    }),
    getNetwork: (ref) => ({
      inspect: () => {
        calls.network++;
        if (o.failNetworks) return fail();
        if (SHOP_ID.startsWith(ref)) return Promise.resolve({ Name: 'shop', Id: SHOP_ID } as Dockerode.NetworkInspectInfo);
        return missing();
      },
    }),
  };
  const decider = new AuthzDecider({
    policy: () => state(o.policy ?? POLICY),
    containers: { get: (id) => inventory.find((f) => f.id === id), inventory: () => inventory },
    docker,
    logger,
    onDecision: (r) => reports.push(r),
  });
  const request = (method: string, uri: string, body?: unknown) => parseAuthzRequest(JSON.stringify({
    RequestMethod: method, RequestUri: uri, ...(body === undefined ? {} : { RequestBody: Buffer.from(JSON.stringify(body)).toString('base64') }),
  }));
  const ask = async (method: string, uri: string, body?: unknown): Promise<AuthzDecision> => {
    const d = await decider.decide(request(method, uri, body));
    await new Promise((r) => setImmediate(r));
    return d;
  };
  const create = (name: string, hc: Record<string, unknown>, labels: Record<string, string> = { guarded: '1' }) =>
    ask('POST', `/v1.41/containers/create?name=${name}`, { Image: 'app:1', Labels: labels, HostConfig: { NetworkMode: 'none', ...hc } });
  return { decider, ask, create, request, calls, reports };
}

t.test('create: what the request leaves to the engine and the host is looked up', async (t) => {
  const { create, reports } = setup();
  const vf = await create('vf', { VolumesFrom: ['donor:ro'] });
  t.equal(vf.allow, false, '--volumes-from a container mounting /etc/ssl');
  t.match(vf.msg, /\[host\.mounts\] \(critical\) container vf: host path \/etc\/ssl mounted read-only at \/certs is under the sensitive path \/etc/);
  t.same(reports.at(-1)!.violations.map((v) => [v.ruleId, v.denied]), [['host.mounts', true]]);
  const vol = await create('vol', { Binds: ['etcvol:/x:ro'] });
  t.match(vol.msg, /volume etcvol \(host path \/etc\) mounted read-only at \/x is a sensitive path/);
  const link = await create('link', { Binds: [`${etcLink}/ssl:/x:ro`] });
  t.match(link.msg, /resolves to \/etc\/ssl/);
  const pid = await create('pid', { PidMode: 'container:hostpid' }, {});
  t.match(pid.msg, /\[host\.namespaces\].*joins the PID namespace of container hostpid, which is the host's/);
  const net = await create('net', { NetworkMode: SHOP_ID.slice(0, 8) }, { 'bulkhead.project': 'a' });
  t.match(net.msg, /\[iso\.networks\].*shares network shop with other of project other/);
  t.same(await create('safe', { VolumesFrom: ['mine'], NetworkMode: 'safe' }, { 'bulkhead.project': 'a', guarded: '1' }), { allow: true }, 'nothing sensitive behind the lookups');
});

t.test('create: fast path — nothing to look up, or no rule that would read it', async (t) => {
  const { decider, request, calls } = setup();
  const body = { Image: 'app:1', Labels: {}, HostConfig: { NetworkMode: 'none', Memory: 1 } };
  const first = decider.decide(request('POST', '/v1.41/containers/create?name=a', body));
  t.ok(first instanceof Promise, 'the first create of an image waits for its inspect');
  t.same(await first, { allow: true });
  const second = decider.decide(request('POST', '/v1.41/containers/create?name=b', body));
  t.notOk(second instanceof Promise, 'then the decision is synchronous');
  t.same(second, { allow: true });
  t.same([calls.image, calls.volume, calls.network, calls.container], [1, 0, 0, 0]);

  const plain = setup({ policy: NO_LOOKUP_RULES });
  await plain.create('x', { Binds: ['etcvol:/x', `${etcLink}:/y`], VolumesFrom: ['donor'], NetworkMode: 'shop', PidMode: 'container:hostpid' });
  t.same([plain.calls.volume, plain.calls.network, plain.calls.container], [0, 0, 0], 'a policy without such rules looks nothing up');
});

t.test('fail-closed: a failed lookup refuses the request when an enforce rule in scope needs it', async (t) => {
  const { create, reports } = setup({ failVolumes: true, failNetworks: true });
  const d = await create('flaky', { Binds: ['data:/x'] });
  t.equal(d.allow, false);
  t.match(d.msg, /Bulkhead policy "unit" v7 denies this request:\n- \[host\.mounts\] \(critical\) Bulkhead could not check this request and refuses it \(fail-closed, the rule is in enforce mode\): cannot learn the options of volume data \(mounted at \/x\): engine hiccup/);
  const r = reports.at(-1)!;
  t.same([r.route, r.denied, r.violations.map((v) => [v.ruleId, v.denied])], ['create', true, [['host.mounts', true]]], 'the refusal is recorded');
  t.same(await create('unguarded', { Binds: ['data:/x'] }, {}), { allow: true }, 'the rule needing it is out of scope: judged on what is known');
  const n = await create('net', { NetworkMode: 'shopnet' }, {});
  t.match(n.msg, /\[iso\.networks\].*cannot learn which network "shopnet" is: engine hiccup/);

  const monitor = setup({ policy: MONITOR_ONLY, failVolumes: true });
  t.same(await monitor.create('m', { Binds: ['data:/x'] }), { allow: true }, 'monitor rules only: never refused');
});

t.test('start: bind sources resolved afresh', async (t) => {
  const { ask } = setup();
  t.same(await ask('POST', '/v1.41/containers/linked/start'), { allow: true }, 'the path does not exist yet');
  symlinkSync('/etc', join(dir, 'later'));
  const d = await ask('POST', '/v1.41/containers/linked/start');
  t.equal(d.allow, false, 're-pointed to /etc after create: refused at start');
  t.match(d.msg, /host path .*later \(resolves to \/etc\)/);
});

t.test('network connect: judged as the container plus that network', async (t) => {
  const { ask, reports, calls } = setup();
  const d = await ask('POST', `/v1.41/networks/${SHOP_ID.slice(0, 12)}/connect`, { Container: 'mine' });
  t.equal(d.allow, false);
  t.match(d.msg, /\[iso\.networks\].*container mine: shares network shop with other of project other/);
  t.equal(reports.at(-1)!.route, 'network-connect');
  t.same(await ask('POST', '/v1.41/networks/shop/connect', { Container: 'other' }), { allow: true }, 'its own project');
  t.same(await ask('POST', '/v1.41/networks/ghost/connect', { Container: 'mine' }), { allow: true }, 'no such network: dockerd answers');
  t.same(await ask('POST', '/v1.41/networks/shop/connect', { Container: 'ghost' }), { allow: true }, 'no such container: dockerd answers');
  t.same(await ask('POST', '/v1.41/networks/shop/connect', {}), { allow: true });
  t.same(await ask('POST', '/v1.41/networks/bridge/connect', { Container: 'mine' }), { allow: true }, 'the default bridge is not shared with anyone here');
  t.same(await ask('POST', '/v1.41/networks/shop/disconnect', { Container: 'mine' }), { allow: true }, 'disconnect is never judged');
  t.same(await ask('POST', '/v1.41/networks/create', { Name: 'x' }), { allow: true });
  const before = calls.network;
  const plain = setup({ policy: NO_LOOKUP_RULES });
  t.same(await plain.ask('POST', '/v1.41/networks/shop/connect', { Container: 'mine' }), { allow: true });
  t.equal(plain.calls.network + plain.calls.container, 0, 'no network rule: not even parsed');
  t.ok(calls.network > before || calls.network > 0);
  const failing = setup({ failNetworks: true });
  const f = await failing.ask('POST', '/v1.41/networks/shopnet/connect', { Container: 'mine' });
  t.match(f.msg, /\[iso\.networks\].*cannot learn which network "shopnet" is/, 'fail-closed');
});

t.test('volume create: a local volume bound to a sensitive host path is refused by the host-path rules only', async (t) => {
  const { ask, reports } = setup();
  const d = await ask('POST', '/v1.41/volumes/create', { Name: 'v1', Driver: 'local', DriverOpts: { type: 'none', o: 'bind', device: `${etcLink}/ssl` }, Labels: { guarded: '1' } });
  t.equal(d.allow, false);
  t.match(d.msg, /\[host\.mounts\] \(critical\) container v1: volume v1 \(host path \/etc\/ssl\) mounted read-write at \(not mounted yet\) is under the sensitive path \/etc/);
  t.same(reports.at(-1)!.violations.map((v) => v.ruleId), ['host.mounts'], 'root-user (monitor) and the rest do not judge a volume');
  t.same(await ask('POST', '/v1.41/volumes/create', { Name: 'v2', DriverOpts: { o: 'bind,ro', device: dir }, Labels: { guarded: '1' } }), { allow: true }, 'an application dir');
  t.same(await ask('POST', '/v1.41/volumes/create', { Name: 'v3', DriverOpts: { device: '/etc' } }), { allow: true }, 'out of the rule\'s scope');
  t.same(await ask('POST', '/v1.41/volumes/create', { Name: 'v4', Driver: 'nfs-plugin', DriverOpts: { device: '/etc' }, Labels: { guarded: '1' } }), { allow: true }, 'another driver');
  t.same(await ask('POST', '/v1.41/volumes/create', { Name: 'v5' }), { allow: true }, 'a plain volume');
  const plain = setup({ policy: NO_LOOKUP_RULES });
  t.same(await plain.ask('POST', '/v1.41/volumes/create', { Name: 'v1', DriverOpts: { device: '/etc' }, Labels: { guarded: '1' } }), { allow: true });
});

t.test('exec: any spelling of uid 0 is root', async (t) => {
  const { ask, reports } = setup({ inventory: [running({ name: 'web', labels: {} })] });
  const d = await ask('POST', '/v1.41/containers/web/exec', { Cmd: ['sh'], User: '00:0' });
  t.same(d, { allow: true }, 'root-user is in monitor mode here: allowed');
  t.same(reports.map((r) => [r.route, r.findings.map((f) => f.ruleId)]), [['exec', ['iso.root']]], 'but judged as root and reported');
});

t.test('monitor-mode rules are evaluated after the answer, for the report, in policy order', async (t) => {
  const { decider, request, reports } = setup({ policy: MONITOR_ONLY });
  const body = { Image: 'app:1', User: '0', Labels: { guarded: '1' }, HostConfig: { NetworkMode: 'none', PidMode: 'host', Tmpfs: { '/t': '' } } };
  t.same(await decider.decide(request('POST', '/v1.41/containers/create?name=m1', body)), { allow: true });
  await new Promise((r) => setImmediate(r));
  reports.length = 0;
  const d = decider.decide(request('POST', '/v1.41/containers/create?name=m2', body));
  t.notOk(d instanceof Promise, 'nothing to look up: a synchronous answer');
  t.same(d, { allow: true });
  t.equal(reports.length, 0, 'no rule evaluated or reported before the answer');
  await new Promise((r) => setImmediate(r));
  t.same(reports.map((r) => [r.denied, r.findings.map((f) => f.ruleId)]), [[false, ['host.namespaces', 'iso.root']]]);

  const mixed = parsePolicy(POLICY_YAML.replace(/(id: iso\.networks[\s\S]*?)mode: enforce/, '$1mode: monitor'), 'mixed.yaml');
  const m = setup({ policy: mixed });
  const denied = await m.create('m3', { Binds: ['/etc:/e'], NetworkMode: 'shop' }, { guarded: '1', 'bulkhead.project': 'a' });
  t.equal(denied.allow, false);
  t.same(m.reports.map((r) => [r.denied, r.findings.map((f) => [f.ruleId, f.mode])]), [[true, [['host.mounts', 'enforce'], ['iso.networks', 'monitor']]]], 'the denial\'s report carries the monitor findings too');
});

t.test('a policy that cannot refuse answers every request at once and judges it for the report afterwards', async (t) => {
  const { decider, request, reports, calls } = setup({ policy: MONITOR_ONLY, failVolumes: true });
  const req = request('POST', '/v1.41/containers/create?name=later', { Image: 'app:1', User: '0', Labels: { guarded: '1' }, HostConfig: { Binds: ['/etc:/e', 'data:/d'] } });
  const d = decider.decide(req);
  t.same(d, { allow: true }, 'synchronous, before the image is even inspected');
  t.equal(calls.image, 0);
  for (let i = 0; i < 20 && reports.length === 0; i++) await new Promise((r) => setTimeout(r, 5));
  t.same(reports.map((r) => [r.route, r.denied, r.findings.map((f) => f.ruleId)]), [['create', false, ['host.mounts', 'iso.root']]], 'judged afterwards (a failed lookup refuses nothing here)');
  t.ok(reports[0]!.decisionMs < 50, 'decisionMs: when the answer was given');
  t.same(decider.decide(request('POST', '/v1.41/containers/web/start')), { allow: true });
  t.same(decider.decide(request('POST', '/v1.41/containers/create', 5)), { allow: true }, 'a body it cannot judge is logged, not thrown');
  await new Promise((r) => setTimeout(r, 10));
  t.equal(reports.length, 1);
});
