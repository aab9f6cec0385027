// The policy side of the authz plugin with a fake engine: which requests
// are judged, on which facts, what the denial says, what is reported —
// and that anything odd allows rather than blocks.
import t from 'tap';
import type Dockerode from 'dockerode';
import { createLogger, parsePolicy } from '@bulkhead/shared';
import { AuthzDecider, addedFindings, type AuthzDecisionReport } from '../../src/authz/authz-decider';
import { parseAuthzRequest, type AuthzDecision } from '../../src/authz/plugin-server';
import type { PolicyState } from '../../src/policy/policy-holder';
import type { Facts } from '../../src/docker/container-facts';

const logger = createLogger({ name: 'authz-decider-test', level: 'silent' });

const POLICY = parsePolicy(`
apiVersion: bulkhead.dev/v1
kind: Policy
metadata: { name: unit }
spec:
  rules:
    - id: host.privileged
      description: no privileged
      severity: critical
      mode: enforce
      action: { type: kill }
      check: { type: privileged }
      exemptions:
        - { who: alice, why: debugging, match: { names: [debug-*] } }
    - id: host.root-user
      description: no root
      severity: high
      mode: enforce
      action: { type: stop }
      check: { type: root-user }
    - id: images.secrets
      description: no secrets
      severity: high
      mode: monitor
      action: { type: alert }
      check: { type: secrets }
    - id: quota.memory
      description: memory at most 256m
      severity: medium
      mode: enforce
      action: { type: limit, limits: { memory: 256m } }
      check: { type: resource-limits, requireCpu: false, requirePids: false, maxMemory: 256m }
`, 'unit.yaml');

const state = (over: Partial<PolicyState> = {}): PolicyState => ({
  policy: POLICY, scans: new Map(), version: 4, source: 'bundle', sha256: 'x', projectLabel: 'bulkhead.project', ...over,
});

const IMAGES: Record<string, Partial<Dockerode.ImageInspectInfo>> = {
  'app:1': { Id: 'sha256:app', RepoDigests: [], Config: { User: '1000', Env: ['PATH=/bin'], Labels: {} } as never },
  'root:1': { Id: 'sha256:root', RepoDigests: [], Config: { User: '', Env: [] } as never },
};

const running = (over: Partial<Facts>): Facts => ({
  id: 'a'.repeat(64), name: 'web', imageRef: 'app:1', imageId: 'sha256:app', imageDigest: '', labels: {}, state: 'running', user: '1000',
  privileged: false, mounts: [], networkMode: 'none', networks: [], pidMode: '', ipcMode: '', utsMode: '', usernsMode: '', capAdd: [], capDrop: [],
  securityOpt: [], readOnlyRootfs: false, memoryLimitBytes: 128 * 1024 * 1024, nanoCpus: 0, cpuQuota: 0, cpuPeriod: 0, cpuShares: 0, pidsLimit: 0,
  restartPolicy: 'no', restartMaxRetries: 0, envNames: [], command: ['sleep', '1'], createdAtMs: 1, startedAtMs: 2, finishedAtMs: 0, exitCode: 0,
  pid: 1, devices: [], imageUser: '1000', restartCount: 0, secretHits: [], project: '', ...over,
});

function setup(over: { state?: PolicyState; inventory?: Facts[]; imageFails?: boolean } = {}) {
  const inventory = over.inventory ?? [running({})];
  const calls = { image: 0, container: 0 };
  const reports: AuthzDecisionReport[] = [];
  const docker = {
    getImage: (ref: string) => ({
      inspect: async () => {
        calls.image++;
        if (over.imageFails) throw Object.assign(new Error('engine hiccup'), { statusCode: 500 });
        const img = IMAGES[ref];
        if (!img) throw Object.assign(new Error('No such image'), { statusCode: 404 });
        return img as Dockerode.ImageInspectInfo;
      },
    }),
    getContainer: (_ref: string) => ({
      inspect: async (): Promise<Dockerode.ContainerInspectInfo> => {
        calls.container++;
        throw Object.assign(new Error('No such container'), { statusCode: 404 });
      },
    }),
    getExec: () => ({ inspect: async (): Promise<Dockerode.ExecInspectInfo> => { throw Object.assign(new Error('No such exec'), { statusCode: 404 }); } }),
  };
  const decider = new AuthzDecider({
    policy: () => over.state ?? state(),
    containers: { get: (id) => inventory.find((f) => f.id === id), inventory: () => inventory },
    docker,
    logger,
    onDecision: (r) => reports.push(r),
  });
  const ask = async (method: string, uri: string, body?: unknown): Promise<AuthzDecision> => {
    const req = parseAuthzRequest(JSON.stringify({
      RequestMethod: method, RequestUri: uri, ...(body === undefined ? {} : { RequestBody: Buffer.from(JSON.stringify(body)).toString('base64') }),
    }));
    const d = await decider.decide(req);
    await new Promise((r) => setImmediate(r));
    return d;
  };
  return { decider, ask, calls, reports };
}

t.test('fast path: reads, non-container routes and no policy are allowed without parsing', async (t) => {
  const { decider, calls } = setup();
  const req = (method: string, uri: string) => parseAuthzRequest(JSON.stringify({ RequestMethod: method, RequestUri: uri, RequestBody: 'bm90IGpzb24=' }));
  t.same(decider.decide(req('GET', '/v1.41/containers/json')), { allow: true }, 'synchronous answer');
  t.same(decider.decide(req('POST', '/v1.41/images/create?fromImage=x')), { allow: true });
  t.same(decider.decide(req('POST', '/v1.41/containers/abc/kill')), { allow: true });
  t.same(decider.decide(req('DELETE', '/v1.41/containers/abc')), { allow: true });
  const none = setup({ state: state({ policy: undefined, source: 'none', version: 0 }) });
  t.same(none.decider.decide(req('POST', '/v1.41/containers/create')), { allow: true }, 'no policy in force: nothing enforced');
  t.equal(calls.image, 0);
});

t.test('create: enforce findings deny with rule ids, severities and how to get an exemption', async (t) => {
  const { ask, reports, calls } = setup();
  const d = await ask('POST', '/v1.41/containers/create?name=bad', { Image: 'root:1', HostConfig: { Privileged: true, Memory: 100 * 1024 * 1024 } });
  t.equal(d.allow, false);
  t.match(d.msg, /Bulkhead policy "unit" v4 denies this request/);
  t.match(d.msg, /\[host\.privileged\] \(critical\) container bad: container runs with --privileged/);
  t.match(d.msg, /\[host\.root-user\] \(high\)/);
  t.match(d.msg, /add an exemption to rule host\.privileged, host\.root-user in the policy \(bulkhead policy apply\)/);
  t.equal(reports.length, 1);
  const r = reports[0]!;
  t.equal(r.route, 'create');
  t.equal(r.denied, true);
  t.equal(r.container.name, 'bad');
  t.same(r.violations.map((v) => [v.ruleId, v.source, v.denied, v.policyVersion]), [['host.privileged', 'authz', true, 4], ['host.root-user', 'authz', true, 4]]);
  t.ok(r.decisionMs >= 0);

  // The image inspect is cached by ref.
  await ask('POST', '/v1.41/containers/create', { Image: 'root:1', HostConfig: { Memory: 100 * 1024 * 1024 } });
  t.equal(calls.image, 1);
});

t.test('create: a tag moved onto another image is judged as that image after the image event', async (t) => {
  const { ask, decider, calls } = setup();
  const body = { Image: 'app:1', HostConfig: { Memory: 64 * 1024 * 1024 } };
  t.same(await ask('POST', '/v1.41/containers/create', body), { allow: true }, 'app:1 runs as USER 1000');
  const before = IMAGES['app:1'];
  IMAGES['app:1'] = IMAGES['root:1']!;
  t.teardown(() => {
    IMAGES['app:1'] = before!;
  });
  t.same(await ask('POST', '/v1.41/containers/create', body), { allow: true }, 'still cached: the tag event has not arrived');
  decider.forgetImages();
  const d = await ask('POST', '/v1.41/containers/create', body);
  t.equal(d.allow, false, 'after `docker tag root:1 app:1` the create is judged on the root image');
  t.match(d.msg, /host\.root-user/);
  t.equal(calls.image, 2);
});

t.test('create: the response phase of a request that can move a tag drops the cached images; others keep them', async (t) => {
  const { ask, decider, calls } = setup();
  const body = { Image: 'app:1', HostConfig: { Memory: 64 * 1024 * 1024 } };
  await ask('POST', '/v1.41/containers/create', body);
  t.equal(calls.image, 1);
  let expected = 1;
  for (const [method, path, drops] of [
    ['GET', '/images/json', false], ['HEAD', '/commit', false], ['POST', '/containers/create', false], ['POST', '/containers/x/start', false], ['POST', '/exec/x/start', false],
    ['POST', '/commit', true], ['POST', '/images/app:1/tag', true], ['POST', '/images/create', true], ['POST', '/images/load', true], ['DELETE', '/images/app:1', true],
    ['POST', '/images/prune', true], ['POST', '/build', true], ['POST', '/grpc', true], ['POST', '/session', true], ['POST', undefined, true], ['', '', true],
  ] as const) {
    decider.responded({ method, path });
    await ask('POST', '/v1.41/containers/create', body);
    if (drops) expected++;
    t.equal(calls.image, expected, `${method} ${String(path)}: ${drops ? 'dropped (inspected again)' : 'kept'}`);
  }
});

t.test('create: compliant allowed; image USER counts; monitor findings allowed but reported', async (t) => {
  const { ask, reports } = setup();
  t.same(await ask('POST', '/v1.41/containers/create?name=ok', { Image: 'app:1', HostConfig: { Memory: 64 * 1024 * 1024 } }), { allow: true });
  t.equal(reports.length, 0, 'no findings, no report');
  const d = await ask('POST', '/v1.41/containers/create?name=leaky', { Image: 'app:1', Env: ['DB_URL=postgres://u:Tr0ub4dor-3@db/x'], HostConfig: { Memory: 64 * 1024 * 1024 } });
  t.same(d, { allow: true });
  t.equal(reports.length, 1);
  t.equal(reports[0]!.denied, false);
  t.same(reports[0]!.violations.map((v) => [v.ruleId, v.mode, v.denied]), [['images.secrets', 'monitor', false]]);
  t.notOk(JSON.stringify(reports).includes('Tr0ub4dor'), 'the secret never reaches a report');
});

t.test('create: exemptions apply; missing image allowed (the CLI must be able to pull); unreadable body denied', async (t) => {
  const { ask, reports } = setup();
  const ex = await ask('POST', '/v1.41/containers/create?name=debug-1', { Image: 'app:1', HostConfig: { Privileged: true, Memory: 1024 } });
  t.same(ex, { allow: true });
  t.equal(reports[0]!.violations[0]!.exemptedBy, 'alice: debugging');
  t.same(await ask('POST', '/v1.41/containers/create', { Image: 'not-pulled:1', HostConfig: { Privileged: true } }), { allow: true });
  const unread = await ask('POST', '/v1.41/containers/create');
  t.equal(unread.allow, false);
  t.match(unread.msg, /Bulkhead cannot check this request and refuses it \(fail-closed/);
  const lenient = new AuthzDecider({
    policy: () => state(), containers: { get: () => undefined, inventory: () => [] }, docker: { getImage: () => ({ inspect: async () => ({}) as never }), getContainer: () => ({ inspect: async () => ({}) as never }), getExec: () => ({ inspect: async () => ({}) as never }) },
    logger, denyUnreadableCreate: false,
  });
  t.same(await lenient.decide(parseAuthzRequest(JSON.stringify({ RequestMethod: 'POST', RequestUri: '/containers/create' }))), { allow: true });
});

t.test('create: engine errors reject (the plugin server then allows and logs)', async (t) => {
  const { decider } = setup({ imageFails: true });
  const req = parseAuthzRequest(JSON.stringify({ RequestMethod: 'POST', RequestUri: '/containers/create', RequestBody: Buffer.from('{"Image":"app:1"}').toString('base64') }));
  await t.rejects(Promise.resolve(decider.decide(req)), /engine hiccup/);
});

t.test('update: judged on the merged facts, only for what it makes worse', async (t) => {
  const { ask, reports } = setup({ inventory: [running({}), running({ id: 'b'.repeat(64), name: 'fat', memoryLimitBytes: 1024 ** 3 })] });
  const up = await ask('POST', '/v1.41/containers/web/update', { Memory: 512 * 1024 * 1024 });
  t.equal(up.allow, false, 'raising memory above the max');
  t.match(up.msg, /\[quota\.memory\].*exceeds the maximum 256 MiB/);
  t.equal(reports.at(-1)!.route, 'update');
  t.same(await ask('POST', `/v1.41/containers/${'a'.repeat(12)}/update`, { Memory: 200 * 1024 * 1024 }), { allow: true }, 'by id prefix; within max');
  t.same(await ask('POST', '/v1.41/containers/fat/update', { Memory: 200 * 1024 * 1024 }), { allow: true }, 'lowering into compliance is allowed');
  t.same(await ask('POST', '/v1.41/containers/fat/update', { PidsLimit: 100 }), { allow: true }, 'an unrelated change to a violating container is not refused');
  t.same(await ask('POST', '/v1.41/containers/nope/update', { Memory: 1 }), { allow: true }, 'unknown container: dockerd answers 404');
});

t.test('exec: privileged or root execs judged as such; plain execs untouched', async (t) => {
  const { ask, calls } = setup();
  t.same(await ask('POST', '/v1.41/containers/web/exec', { Cmd: ['true'] }), { allow: true });
  t.same(await ask('POST', '/v1.41/containers/web/exec', { Cmd: ['true'], User: '1000' }), { allow: true });
  t.equal(calls.container, 0);
  const priv = await ask('POST', '/v1.41/containers/web/exec', { Cmd: ['sh'], Privileged: true });
  t.equal(priv.allow, false);
  t.match(priv.msg, /host\.privileged/);
  t.notMatch(priv.msg, /root-user/);
  const root = await ask('POST', '/v1.41/containers/web/exec', { Cmd: ['sh'], User: 'root' });
  t.equal(root.allow, false);
  t.match(root.msg, /host\.root-user/);
});

t.test('start: stored facts judged (containers created before the policy); only denials reported', async (t) => {
  const bad = running({ id: 'c'.repeat(64), name: 'old-priv', privileged: true, state: 'exited' });
  const leaky = running({ id: 'd'.repeat(64), name: 'leaky', command: ['run', '--password', 'Tr0ub4dor-3'] });
  const { ask, reports } = setup({ inventory: [running({}), bad, leaky] });
  const d = await ask('POST', '/v1.41/containers/old-priv/start');
  t.equal(d.allow, false);
  t.match(d.msg, /host\.privileged/);
  t.equal(reports.length, 1);
  t.same(await ask('POST', '/v1.41/containers/web/start'), { allow: true });
  t.same(await ask('POST', '/v1.41/containers/leaky/restart'), { allow: true });
  t.equal(reports.length, 1, 'monitor findings at start are left to the reaction path');
  t.same(await ask('POST', '/v1.41/containers/ghost/start'), { allow: true });
});

t.test('addedFindings compares rule and evidence', async (t) => {
  const f = (ruleId: string, detail: string) => ({ ruleId, severity: 'low' as const, mode: 'enforce' as const, action: { type: 'alert' as const }, message: '', evidence: [{ location: 'x', detail }] });
  t.same(addedFindings([f('a', '1')], [f('a', '1'), f('b', '1')]).map((x) => x.ruleId), ['b']);
  t.same(addedFindings([f('a', '1')], [f('a', '2')]).map((x) => x.ruleId), ['a'], 'same rule, worse evidence');
});
