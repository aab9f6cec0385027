// Swarm services and BuildKit's gRPC API at the authz door (session 8 gaps).
// A service's tasks are containers swarm's executor makes inside dockerd,
// so no create reaches the plugin: `POST /services/create` and
// `/services/{id}/update` are judged as the create the executor would make.
// Bodies below are what the docker CLI (20.10–26.1, cli/command/service/
// opts.go ToService) sends — nulls, an id for `--network host`, CAP_ names.
import t from 'tap';
import type Dockerode from 'dockerode';
import { createLogger, parsePolicy } from '@bulkhead/shared';
import { AuthzDecider, type AuthzDecisionReport } from '../../src/authz/authz-decider';
import { serviceSpecToCreate, createRequestToFacts } from '../../src/authz/create-request';
import { decodeServiceSpec } from '../../src/authz/docker-types';
import { parseAuthzRequest, type AuthzDecision } from '../../src/authz/plugin-server';
import type { PolicyState } from '../../src/policy/policy-holder';

const logger = createLogger({ name: 'authz-service-test', level: 'silent' });

const rules = (mode: 'enforce' | 'monitor', extra = '') => parsePolicy(`
apiVersion: bulkhead.dev/v1
kind: Policy
metadata: { name: svc }
spec:
  rules:
    - { id: host.capabilities, description: c, severity: high, mode: ${mode}, action: { type: kill }, check: { type: capabilities } }
    - { id: host.sensitive-mounts, description: m, severity: critical, mode: ${mode}, action: { type: kill }, check: { type: sensitive-mounts } }
    - { id: host.host-namespaces, description: n, severity: critical, mode: ${mode}, action: { type: kill }, check: { type: host-namespaces } ${extra} }
    - { id: host.root-user, description: r, severity: high, mode: ${mode}, action: { type: stop }, check: { type: root-user } }
    - { id: host.seccomp, description: s, severity: high, mode: ${mode}, action: { type: stop }, check: { type: seccomp-apparmor } }
    - { id: quota.memory, description: q, severity: medium, mode: ${mode}, action: { type: alert }, check: { type: resource-limits, requireCpu: false, requirePids: false, maxMemory: 256m } }
`, 'svc.yaml');

const stateOf = (policy = rules('enforce')): PolicyState => ({ policy, scans: new Map(), version: 3, source: 'bundle', sha256: 'x', projectLabel: 'bulkhead.project' });

const HOST_NET_ID = 'k3l0hostnetid0000000000000';
const OVERLAY_ID = 'q9overlay000000000000000000';

function setup(policy = rules('enforce'), services: Record<string, unknown> = {}) {
  const reports: AuthzDecisionReport[] = [];
  const docker = {
    getImage: (ref: string) => ({
      inspect: async () => {
        if (ref.startsWith('app:1')) return { Id: 'sha256:app', RepoDigests: [], Config: { User: '1000', Env: [] } } as unknown as Dockerode.ImageInspectInfo;
        throw Object.assign(new Error('No such image'), { statusCode: 404 });
      },
    }),
    getContainer: () => ({ inspect: async (): Promise<Dockerode.ContainerInspectInfo> => { throw Object.assign(new Error('no'), { statusCode: 404 }); } }),
    getExec: () => ({ inspect: async (): Promise<Dockerode.ExecInspectInfo> => { throw Object.assign(new Error('no'), { statusCode: 404 }); } }),
    getNetwork: (id: string) => ({
      inspect: async () => {
        if (id === HOST_NET_ID) return { Name: 'host', Id: HOST_NET_ID } as Dockerode.NetworkInspectInfo;
        if (id === OVERLAY_ID) return { Name: 'backend', Id: OVERLAY_ID } as Dockerode.NetworkInspectInfo;
        throw Object.assign(new Error('No such network'), { statusCode: 404 });
      },
    }),
    getService: (id: string) => ({
      inspect: async () => {
        if (services[id]) return services[id];
        throw Object.assign(new Error('No such service'), { statusCode: 404 });
      },
    }),
  };
  const decider = new AuthzDecider({
    policy: () => stateOf(policy),
    containers: { get: () => undefined, inventory: () => [] },
    docker,
    logger,
    onDecision: (r) => reports.push(r),
  });
  const ask = async (uri: string, body?: unknown, raw?: string): Promise<AuthzDecision> => {
    const bytes = raw !== undefined ? Buffer.from(raw) : body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const req = parseAuthzRequest(JSON.stringify({
      RequestMethod: 'POST', RequestUri: uri,
      ...(bytes ? { RequestBody: bytes.toString('base64'), RequestHeaders: { 'Content-Type': 'application/json', 'Content-Length': String(bytes.length) } } : {}),
    }));
    const d = await decider.decide(req);
    await new Promise((r) => setImmediate(r));
    return d;
  };
  return { ask, reports };
}

/** What `docker service create --name NAME [opts] IMAGE sleep 1d` sends (CLI 20.10–26.1), with `container` merged into ContainerSpec. */
function cliSpec(container: Record<string, unknown> = {}, task: Record<string, unknown> = {}) {
  return {
    Name: 'web', Labels: {},
    TaskTemplate: {
      ContainerSpec: {
        Image: 'app:1@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef', Labels: null, Args: ['sleep', '1d'], Env: null,
        Privileges: { CredentialSpec: null, SELinuxContext: null }, Init: false, StopGracePeriod: 10000000000, Healthcheck: {}, DNSConfig: {}, Isolation: 'default',
        ...container,
      },
      Resources: { Limits: { MemoryBytes: 64 * 1024 * 1024 }, Reservations: {} },
      RestartPolicy: { Condition: 'any', MaxAttempts: 0 }, Placement: {}, ForceUpdate: 0, Runtime: 'container',
      ...task,
    },
    Mode: { Replicated: { Replicas: 1 } }, UpdateConfig: { Parallelism: 1, FailureAction: 'pause', Order: 'stop-first' },
    RollbackConfig: { Parallelism: 1, FailureAction: 'pause', Order: 'stop-first' }, EndpointSpec: { Mode: 'vip' },
  };
}

const mapped = (spec: unknown) => {
  const d = decodeServiceSpec(Buffer.from(JSON.stringify(spec)));
  if (!d.ok) throw new Error(d.error);
  const m = serviceSpecToCreate(d.body);
  return { m, facts: createRequestToFacts(m.body, m.name).facts };
};

t.test('serviceSpecToCreate: the executor\'s container, field by field', async (t) => {
  const { m, facts } = mapped(cliSpec({
    Command: ['/bin/app'], Args: ['--x'], User: '1000:1000', Env: ['A=1'], Labels: { team: 'pay' }, ReadOnly: true,
    CapabilityAdd: ['CAP_SYS_ADMIN'], CapabilityDrop: ['ALL'],
    Mounts: [{ Type: 'bind', Source: '/etc', Target: '/h', ReadOnly: true }, { Type: 'tmpfs', Target: '/t' }],
    Ulimits: [{ Name: 'nofile', Soft: 1024, Hard: 2048 }],
    Privileges: { CredentialSpec: null, SELinuxContext: { Disable: true }, Seccomp: { Mode: 'unconfined' }, AppArmor: { Mode: 'disabled' }, NoNewPrivileges: true },
  }, { Resources: { Limits: { MemoryBytes: 1 << 30, NanoCPUs: 500_000_000, Pids: 100 } }, LogDriver: { Name: 'json-file', Options: { 'max-size': '10m' } } }));
  t.same(m.unmappable, []);
  t.equal(facts.name, 'web');
  t.same(facts.command, ['/bin/app', '--x'], 'Command replaces the entrypoint, Args are its arguments');
  t.equal(facts.user, '1000:1000');
  t.same(facts.labels, { team: 'pay', 'com.docker.swarm.service.name': 'web' }, 'container labels, plus the service name label the tasks carry');
  t.equal(facts.readOnlyRootfs, true);
  t.same(facts.capAdd, ['CAP_SYS_ADMIN']);
  t.same(facts.capDrop, ['ALL']);
  t.match(facts.mounts, [{ type: 'bind', source: '/etc', destination: '/h', readOnly: true }]);
  t.equal(facts.memoryLimitBytes, 1 << 30);
  t.equal(facts.nanoCpus, 500_000_000);
  t.equal(facts.pidsLimit, 100);
  t.same(facts.securityOpt.sort(), ['apparmor=unconfined', 'label=disable', 'no-new-privileges=true', 'seccomp=unconfined']);
  t.match(facts.logConfig, { type: 'json-file', config: { 'max-size': '10m' } });
  t.equal(facts.restartPolicy, 'no', 'swarm restarts tasks itself');
});

t.test('serviceSpecToCreate: read as Go reads it, and what cannot be mapped', async (t) => {
  // Case-folded keys, a repeated TaskTemplate merged, a later scalar winning.
  const raw = '{"name":"w","taskTemplate":{"containerSpec":{"Image":"app:1","User":"1000"}},"TASKTEMPLATE":{"ContainerSpec":{"capabilityadd":["SYS_ADMIN"],"User":"0"}}}';
  const d = decodeServiceSpec(Buffer.from(raw));
  t.ok(d.ok);
  const m = serviceSpecToCreate((d as { body: Record<string, unknown> }).body);
  const facts = createRequestToFacts(m.body, m.name).facts;
  t.equal(facts.user, '0', 'the later User wins');
  t.same(facts.capAdd, ['CAP_SYS_ADMIN'], 'the second TaskTemplate merges into the first');
  t.equal(facts.imageRef, 'app:1', 'the first ContainerSpec\'s Image is kept');
  t.notOk(decodeServiceSpec(Buffer.from('{"TaskTemplate":{"ContainerSpec":{"CapabilityAdd":"SYS_ADMIN"}}}')).ok, 'a string where Go wants []string is an error, as for dockerd');
  const custom = mapped(cliSpec({ Privileges: { Seccomp: { Mode: 'custom', Profile: Buffer.from('{"defaultAction":"SCMP_ACT_ALLOW"}').toString('base64') } } }));
  t.same(custom.facts.securityOpt, ['seccomp={"defaultAction":"SCMP_ACT_ALLOW"}'], 'a custom profile is passed as the create\'s seccomp=<json>');
  t.match(mapped(cliSpec({}, { PluginSpec: { Name: 'x' }, Runtime: 'plugin' })).m.unmappable, [/PluginSpec/, /Runtime "plugin"/]);
  t.match(mapped(cliSpec({ Mounts: [{ Type: 'cluster', Source: 'vol', Target: '/x' }] })).m.unmappable, [/Mounts\[0\]\.Type "cluster"/]);
  t.match(mapped(cliSpec({ Privileges: { Seccomp: { Mode: 'weird' } } })).m.unmappable, [/Seccomp\.Mode "weird"/]);
  t.same(mapped({ Name: 'n', Networks: [{ Target: 'x' }], TaskTemplate: {} }).m.networks, ['x'], 'the deprecated top-level Networks when the task has none');
});

t.test('services/create: judged with the one evaluator, denied in enforce mode with the usual explanation', async (t) => {
  const { ask, reports } = setup();
  t.same(await ask('/v1.41/services/create', cliSpec({ User: '1000' })), { allow: true }, 'a compliant service is allowed');
  const cap = await ask('/v1.41/services/create', cliSpec({ User: '1000', CapabilityAdd: ['CAP_SYS_ADMIN'] }));
  t.equal(cap.allow, false);
  t.match(cap.msg, /Bulkhead policy "svc" v3 denies this request:\n- \[host\.capabilities\] \(high\) .*SYS_ADMIN.*\nFix the container configuration, or add an exemption to rule host\.capabilities/s);
  const bind = await ask('/v1.45/services/create', cliSpec({ User: '1000', Mounts: [{ Type: 'bind', Source: '/', Target: '/host' }] }));
  t.match(bind.msg, /\[host\.sensitive-mounts\]/);
  const net = await ask('/v1.41/services/create', cliSpec({ User: '1000' }, { Networks: [{ Target: HOST_NET_ID }] }));
  t.match(net.msg, /\[host\.host-namespaces\].*network/s, '`--network host` (sent as the host network\'s id) is the host\'s network namespace');
  t.same(await ask('/v1.41/services/create', cliSpec({ User: '1000' }, { Networks: [{ Target: OVERLAY_ID }] })), { allow: true }, 'an overlay network is not');
  const root = await ask('/v1.41/services/create', cliSpec({ User: '0' }));
  t.match(root.msg, /\[host\.root-user\]/);
  const unknownImage = await ask('/v1.41/services/create', cliSpec({ Image: 'elsewhere:2' }));
  t.match(unknownImage.msg, /\[host\.root-user\]/, 'an image not on this node, no user in the spec: judged as root');
  const mem = await ask('/v1.41/services/create', cliSpec({ User: '1000' }, { Resources: { Limits: { MemoryBytes: 1 << 30 } } }));
  t.match(mem.msg, /\[quota\.memory\]/);
  const sec = await ask('/v1.41/services/create', cliSpec({ User: '1000', Privileges: { Seccomp: { Mode: 'unconfined' } } }));
  t.match(sec.msg, /\[host\.seccomp\]/);
  t.ok(reports.some((r) => r.route === 'service' && r.denied && r.container.name === 'web'), 'refusals reported under route "service"');
});

t.test('services/{id}/update: the whole new spec; rollback=previous judges the stored previous spec', async (t) => {
  const bad = cliSpec({ User: '1000', CapabilityAdd: ['CAP_SYS_ADMIN'] });
  const { ask } = setup(rules('enforce'), { s1: { ID: 's1', Spec: cliSpec({ User: '1000' }), PreviousSpec: bad }, s2: { ID: 's2', Spec: cliSpec({ User: '1000' }) } });
  t.match((await ask('/v1.41/services/s1/update?version=5', bad)).msg, /\[host\.capabilities\]/);
  t.same(await ask('/v1.41/services/s1/update?version=5', cliSpec({ User: '1000' })), { allow: true });
  const rb = await ask('/v1.41/services/s1/update?version=6&rollback=previous', cliSpec({ User: '1000' }));
  t.match(rb.msg, /\[host\.capabilities\]/, 'the body is not what a rollback applies');
  t.same(await ask('/v1.41/services/s2/update?version=6&rollback=previous', cliSpec({ User: '1000' })), { allow: true }, 'no previous spec: dockerd refuses it itself');
});

t.test('services: what the door cannot decide is refused in enforce mode, naming the field', async (t) => {
  const { ask } = setup();
  const plugin = await ask('/v1.41/services/create', cliSpec({ User: '1000' }, { PluginSpec: { Name: 'evil', Remote: 'evil:latest' }, Runtime: 'plugin' }));
  t.equal(plugin.allow, false);
  t.match(plugin.msg, /cannot check this request.*TaskTemplate\.PluginSpec/s);
  const typeErr = await ask('/v1.41/services/create', undefined, '{"TaskTemplate":{"ContainerSpec":{"Mounts":{}}}}');
  t.match(typeErr.msg, /dockerd's decoder would not accept it either/);
  const noBody = await ask('/v1.41/services/create');
  t.equal(noBody.allow, false, 'no body passed to the plugin: refused');
  const unknownNet = await ask('/v1.41/services/create', cliSpec({ User: '1000' }, { Networks: [{ Target: 'nosuchnet' }] }));
  t.same(unknownNet, { allow: true }, 'a network that does not exist: dockerd refuses the service itself');
  const monitor = setup(rules('monitor'));
  t.same(await monitor.ask('/v1.41/services/create', cliSpec({}, { PluginSpec: { Name: 'evil' } })), { allow: true }, 'monitor mode never refuses');
  t.same(await monitor.ask('/v1.41/services/create', cliSpec({ CapabilityAdd: ['CAP_SYS_ADMIN'] })), { allow: true });
  await new Promise((r) => setTimeout(r, 100)); // judged after the answer, for the report
  t.ok(monitor.reports.some((r) => r.route === 'service' && !r.denied && r.findings.some((f) => f.ruleId === 'host.capabilities')), 'monitor findings reported');
});

t.test('POST /grpc (BuildKit\'s gRPC API) is refused while host-namespaces is enforced; /session and /build?version=2 are not', async (t) => {
  const { ask } = setup();
  const g = await ask('/grpc');
  t.equal(g.allow, false);
  t.match(g.msg, /\[host\.host-namespaces\].*BuildKit's gRPC API.*DOCKER_BUILDKIT=0 docker build.*buildkit-grpc/s);
  t.equal((await ask('/v1.45/grpc')).allow, false, 'with a version prefix too');
  t.same(await ask('/session'), { allow: true }, '/session runs nothing by itself');
  t.same(await ask('/v1.41/build?version=2&networkmode=none'), { allow: true }, 'a classic BuildKit build is judged at /build');
  t.equal((await ask('/v1.41/build?version=2&networkmode=host')).allow, false);
  t.same(await setup(rules('monitor')).ask('/grpc'), { allow: true }, 'monitor mode: allowed');
  const exempt = setup(rules('enforce', ', exemptions: [ { who: ops, why: buildx CI, match: { names: [buildkit-grpc] } } ]'));
  t.same(await exempt.ask('/grpc'), { allow: true }, 'an exemption matching names: [buildkit-grpc] lets it through');
  const other = setup(parsePolicy(`
apiVersion: bulkhead.dev/v1
kind: Policy
metadata: { name: p }
spec:
  rules:
    - { id: host.privileged, description: p, severity: critical, mode: enforce, action: { type: kill }, check: { type: privileged } }
`, 'p.yaml'));
  t.same(await other.ask('/grpc'), { allow: true }, 'no enforced rule judges builds: allowed');
});

t.test('POST /swarm/join is refused while a host rule is enforced; /swarm/init only on a non-loopback listen address', async (t) => {
  const { ask, reports } = setup();
  const join = { ListenAddr: '0.0.0.0:2377', AdvertiseAddr: '', DataPathAddr: '', RemoteAddrs: ['192.0.2.1:2377'], JoinToken: 'SWMTKN-1-x', Availability: '' };
  const j = await ask('/v1.41/swarm/join', join);
  t.equal(j.allow, false);
  t.match(j.msg, /\[host\.capabilities\].*POST \/swarm\/join runs the tasks.*exempt names: \[swarm-join\]/is);
  t.match(j.msg, /\[host\.host-namespaces\]/);
  t.notMatch(j.msg, /\[quota\.memory\]/, 'only the host rules refuse it');
  t.equal((await ask('/swarm/join')).allow, false, 'without a body or version prefix too');
  t.match(reports.find((r) => r.route === 'swarm'), { denied: true, container: { name: 'swarm-join' } }, 'recorded like any denial');
  const init = (listen: string) => ask('/v1.45/swarm/init', { ListenAddr: listen, AdvertiseAddr: '127.0.0.1', ForceNewCluster: false, Spec: {} });
  for (const ok of ['127.0.0.1:2377', '127.0.0.1', 'tcp://127.0.0.1:2377', '127.9.8.7:4000', '[::1]:2377']) t.same(await init(ok), { allow: true }, `init listening on ${ok}`);
  for (const bad of ['0.0.0.0:2377', ':2377', '', 'lo:2377', '192.0.2.1:2377', '127.0.0.1.nip.io:2377', '[::]:2377', '127.0.0.256:2377']) {
    const d = await init(bad);
    t.equal(d.allow, false, `init listening on ${JSON.stringify(bad)} refused`);
    t.match(d.msg, /not loopback.*exempt names: \[swarm-init\]/is);
  }
  t.equal((await ask('/swarm/init', undefined, '{"listenaddr":"127.0.0.1:2377","ListenAddr":"0.0.0.0:2377"}')).allow, false, 'read as Go reads it: the last key wins, case-folded');
  t.same(await ask('/swarm/init', undefined, '{"listenaddr":"0.0.0.0:2377","ListenAddr":"127.0.0.1:2377"}'), { allow: true });
  t.equal((await ask('/swarm/init', undefined, '{"ListenAddr":1}')).allow, false, 'a body dockerd rejects: refused (fail-closed)');
  t.same(await ask('/swarm/update?version=3', { Name: 'default' }), { allow: true }, '/swarm/update is not refused');
  t.same(await ask('/nodes/abc/update?version=3', { Role: 'manager' }), { allow: true }, 'nor a node promotion');
  t.same(await setup(rules('monitor')).ask('/swarm/join', join), { allow: true }, 'monitor mode: allowed (fail-open)');
  const exemptAll = ', exemptions: [ { who: ops, why: our swarm, match: { names: [swarm-join] } } ]';
  const exempt = setup(parsePolicy(`
apiVersion: bulkhead.dev/v1
kind: Policy
metadata: { name: p }
spec:
  rules:
    - { id: host.capabilities, description: c, severity: high, mode: enforce, action: { type: kill }, check: { type: capabilities } ${exemptAll} }
    - { id: host.sensitive-mounts, description: m, severity: critical, mode: enforce, action: { type: kill }, check: { type: sensitive-mounts } ${exemptAll} }
`, 'p.yaml'));
  t.same(await exempt.ask('/swarm/join', join), { allow: true }, 'exemptions matching names: [swarm-join] let it through');
  t.equal((await exempt.ask('/swarm/init', { ListenAddr: '0.0.0.0:2377' })).allow, false, 'but not a remote-listening init (its own name)');
  const other = setup(parsePolicy(`
apiVersion: bulkhead.dev/v1
kind: Policy
metadata: { name: p }
spec:
  rules:
    - { id: quota.memory, description: q, severity: medium, mode: enforce, action: { type: alert }, check: { type: resource-limits, requireCpu: false, requirePids: false, maxMemory: 256m } }
`, 'p.yaml'));
  t.same(await other.ask('/swarm/join', join), { allow: true }, 'no host rule enforced: allowed');
});
