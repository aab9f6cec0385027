// The decider reads every judged request the way dockerd does: Go's JSON
// (folded keys, repeated keys, trailing data, legacy top-level host
// config), Go's request targets, legacy start bodies, exec start judged on
// the stored exec — and refuses, naming why, what it cannot read while the
// policy enforces. Raw request bytes throughout (JSON.stringify could not
// even express most of these bodies).
import t from 'tap';
import type Dockerode from 'dockerode';
import { createLogger, parsePolicy } from '@bulkhead/shared';
import { AuthzDecider, type AuthzDecisionReport } from '../../src/authz/authz-decider';
import { parseAuthzRequest, type AuthzDecision } from '../../src/authz/plugin-server';
import type { PolicyState } from '../../src/policy/policy-holder';
import type { Facts } from '../../src/docker/container-facts';

const logger = createLogger({ name: 'authz-dockerd-reading-test', level: 'silent' });

const ENFORCE = parsePolicy(`
apiVersion: bulkhead.dev/v1
kind: Policy
metadata: { name: unit }
spec:
  rules:
    - { id: host.privileged, description: p, severity: critical, mode: enforce, action: { type: kill }, check: { type: privileged } }
    - { id: host.root-user, description: r, severity: high, mode: enforce, action: { type: kill }, check: { type: root-user } }
    - { id: host.mounts, description: m, severity: critical, mode: enforce, action: { type: kill }, check: { type: sensitive-mounts } }
    - { id: quota, description: q, severity: medium, mode: enforce, action: { type: alert }, check: { type: resource-limits, requireCpu: false, requirePids: false, maxMemory: 256m } }
`, 'unit.yaml');
const MONITOR = parsePolicy(`
apiVersion: bulkhead.dev/v1
kind: Policy
metadata: { name: mon }
spec:
  rules:
    - { id: host.privileged, description: p, severity: critical, mode: monitor, action: { type: kill }, check: { type: privileged } }
`, 'mon.yaml');

const state = (policy = ENFORCE): PolicyState => ({ policy, scans: new Map(), version: 7, source: 'bundle', sha256: 'x', projectLabel: 'bulkhead.project' });

const running = (over: Partial<Facts> = {}): Facts => ({
  id: 'c'.repeat(64), name: 'web', imageRef: 'app:1', imageId: 'sha256:app', imageDigest: '', labels: {}, state: 'created', user: '1000',
  privileged: false, mounts: [], networkMode: 'none', networks: [], pidMode: '', ipcMode: '', utsMode: '', usernsMode: '', capAdd: [], capDrop: [],
  securityOpt: [], readOnlyRootfs: false, memoryLimitBytes: 128 * 1024 * 1024, nanoCpus: 0, cpuQuota: 0, cpuPeriod: 0, cpuShares: 0, pidsLimit: 0,
  restartPolicy: 'no', restartMaxRetries: 0, envNames: [], command: ['sleep', '1'], createdAtMs: 1, startedAtMs: 0, finishedAtMs: 0, exitCode: 0,
  pid: 0, devices: [], imageUser: '1000', restartCount: 0, secretHits: [], project: '', ...over,
} as Facts);

const EXECS: Record<string, Partial<Dockerode.ExecInspectInfo>> = {
  rootexec: { ID: 'rootexec', ContainerID: 'c'.repeat(64), ProcessConfig: { user: '+0', privileged: false } as never },
  privexec: { ID: 'privexec', ContainerID: 'c'.repeat(64), ProcessConfig: { user: '', privileged: true } as never },
  plainexec: { ID: 'plainexec', ContainerID: 'c'.repeat(64), ProcessConfig: { user: '1000', privileged: false } as never },
  brokenexec: { ID: 'brokenexec' },
};

function setup(policy = ENFORCE) {
  const reports: AuthzDecisionReport[] = [];
  const inventory = [running()];
  const docker = {
    getImage: (ref: string) => ({
      inspect: async () => {
        if (ref === 'app:1') return { Id: 'sha256:app', RepoDigests: [], Config: { User: '1000' } } as unknown as Dockerode.ImageInspectInfo;
        throw Object.assign(new Error('No such image'), { statusCode: 404 });
      },
    }),
    getContainer: () => ({ inspect: async (): Promise<Dockerode.ContainerInspectInfo> => { throw Object.assign(new Error('No such container'), { statusCode: 404 }); } }),
    getExec: (id: string) => ({
      inspect: async () => {
        if (id === 'hiccup') throw Object.assign(new Error('engine hiccup'), { statusCode: 500 });
        const e = EXECS[id];
        if (!e) throw Object.assign(new Error('No such exec'), { statusCode: 404 });
        return e as Dockerode.ExecInspectInfo;
      },
    }),
  };
  const decider = new AuthzDecider({
    policy: () => state(policy), containers: { get: (id) => inventory.find((f) => f.id === id || f.name === id), inventory: () => inventory }, docker, logger,
    onDecision: (r) => reports.push(r),
  });
  const ask = async (uri: string, body?: string | Buffer, headers?: Record<string, string>): Promise<AuthzDecision> => {
    const raw = typeof body === 'string' ? Buffer.from(body) : body;
    const req = parseAuthzRequest(JSON.stringify({
      RequestMethod: 'POST', RequestUri: uri, ...(raw ? { RequestBody: raw.toString('base64') } : {}), ...(headers ? { RequestHeaders: headers } : {}),
    }));
    const d = await decider.decide(req);
    await new Promise((r) => setImmediate(r));
    return d;
  };
  return { ask, reports, decider };
}

const OK = '{"Image":"app:1","User":"1000","HostConfig":{"Memory":1000000}}';

t.test('create bodies as Go decodes them', async (t) => {
  const { ask } = setup();
  t.same(await ask('/v1.41/containers/create', OK), { allow: true }, 'control: a benign create');
  t.same(await ask('/v1.41/containers/create', '{"image":"app:1","user":"1000","hostconfig":{"memory":1000000}}'), { allow: true }, 'control: lower-case keys on harmless fields');
  const cases: [string, string, RegExp][] = [
    ['trailing }', `${OK.slice(0, -2)},"Privileged":true}}}`, /host\.privileged/],
    ['lower-case keys', '{"Image":"app:1","User":"1000","hostconfig":{"privileged":true,"memory":1}}', /host\.privileged/],
    ['long s', '{"Image":"app:1","User":"1000","HostConfig":{"Bind\u017f":["/etc:/x"],"Memory":1}}', /host\.mounts/],
    ['second HostConfig merges', '{"Image":"app:1","User":"1000","HostConfig":{"Privileged":true},"HostConfig":{"Memory":1}}', /host\.privileged/],
    ['Image twice, the last wins', '{"Image":"nosuch:1","Image":"app:1","User":"1000","HostConfig":{"Memory":1,"Privileged":true}}', /host\.privileged/],
    ['top-level host config', '{"Image":"app:1","User":"1000","Privileged":true,"Memory":1}', /host\.privileged/],
    ['HostConfig null then top-level', '{"Image":"app:1","User":"1000","HostConfig":{"Memory":1},"HostConfig":null,"Binds":["/:/h"],"Memory":1}', /host\.mounts/],
    ['user +0', '{"Image":"app:1","User":"+0","HostConfig":{"Memory":1}}', /host\.root-user/],
    ['user -0:0', '{"Image":"app:1","User":"-0:0","HostConfig":{"Memory":1}}', /host\.root-user/],
  ];
  for (const [what, body, rule] of cases) {
    const d = await ask('/v1.41/containers/create', body);
    t.equal(d.allow, false, what);
    t.match(d.msg, rule, what);
  }
  t.same(await ask('/v1.41/containers/create', '{"Image":"app:1","Image":"nosuch:1","HostConfig":{"Privileged":true}}'), { allow: true },
    'Image twice: judged on the last one (missing here: dockerd answers 404 and the CLI pulls)');
  for (const target of ['foo:/v1.41/containers/create', 'http:/v1.41/containers/create', 'http://x/v1.41/containers/create', '/v1.41/containers/%63reate']) {
    t.equal((await ask(target, '{"Image":"app:1","User":"1000","HostConfig":{"Privileged":true}}')).allow, false, target);
  }
});

t.test('bodies dockerd would refuse, targets and bodies it cannot read: refused with the reason while enforcing', async (t) => {
  const { ask, reports } = setup();
  const bad = await ask('/v1.41/containers/create', '{"Image":"app:1","HostConfig":{"Privileged":"yes"}}');
  t.equal(bad.allow, false);
  t.match(bad.msg, /cannot check this request.*dockerd's decoder would not accept it either \(cannot decode a string into a Go bool\)/s);
  const opaque = await ask('foo:v1.41/containers/create', OK);
  t.equal(opaque.allow, false);
  t.match(opaque.msg, /its target cannot be read the way dockerd reads it \(opaque request target/);
  const nobody = await ask('/v1.41/containers/create?name=big', undefined, { 'Content-Length': '2000000' });
  t.equal(nobody.allow, false);
  t.match(nobody.msg, /dockerd passes no body of 2000000 bytes/);
  t.ok(reports.some((r) => r.denied && r.container.name === 'big'), 'the refusal is recorded under the requested name');
  const exec = await ask('/v1.41/containers/web/exec?x=/auth');
  t.equal(exec.allow, false, 'exec whose target ends in /auth: no body');
  t.match(exec.msg, /ending in "\/auth"/);
  t.match(exec.msg, /host\.privileged/);
  t.notMatch(exec.msg, /quota/, 'only the rules an exec can break');
  t.same(await ask('/v1.41/containers/nosuch/exec?x=/auth'), { allow: true }, 'no such container: dockerd answers 404 itself');
  const upd = await ask('/v1.41/containers/web/update');
  t.equal(upd.allow, false, 'update without a body');
  t.match(upd.msg, /\[quota\]/);
  t.notMatch(upd.msg, /host\.privileged/);
  t.equal((await ask('/v1.41/volumes/create')).allow, false, 'volume create without a body');
  t.equal((await ask('/v1.41/volumes/create', '{"Name":"v","DriverOpts":{"device":"/etc"},"DriverOpts":{"type":"none","o":"bind"}}')).allow, false, 'repeated DriverOpts merge');
  t.same(await ask('/v1.41/volumes/create', '{"Name":"v"}'), { allow: true }, 'control: a plain volume');
});

t.test('exec: Go-decoded bodies, and exec start judged on what dockerd stored', async (t) => {
  const { ask, reports } = setup();
  t.same(await ask('/v1.41/containers/web/exec', '{"Cmd":["sh"],"User":"1000"}'), { allow: true }, 'control');
  t.equal((await ask('/v1.41/containers/web/exec', '{"Cmd":["sh"],"user":"+0"}')).allow, false, 'lower-case user, +0');
  t.equal((await ask('/v1.41/containers/web/exec', '{"Cmd":["sh"],"PRIVILEGED":true}]')).allow, false, 'upper-case, trailing ]');
  t.equal((await ask('foo:/v1.41/containers/web/exec', '{"Cmd":["sh"],"Privileged":true}')).allow, false, 'scheme-prefixed target');
  const root = await ask('/v1.41/exec/rootexec/start', '{"Detach":true}');
  t.equal(root.allow, false, 'exec start: stored user +0');
  t.match(root.msg, /host\.root-user/);
  t.equal((await ask('http:/v1.41/exec/privexec/start', '{}')).allow, false, 'exec start: stored privileged');
  t.same(await ask('/v1.41/exec/plainexec/start', '{}'), { allow: true }, 'control: a non-root exec starts');
  t.same(await ask('/v1.41/exec/brokenexec/start', '{}'), { allow: true }, 'an exec with no process config asks for nothing');
  t.same(await ask('/v1.41/exec/gone/start', '{}'), { allow: true }, 'no such exec: dockerd answers 404');
  await t.rejects(Promise.resolve(ask('/v1.41/exec/hiccup/start', '{}')), /engine hiccup/, 'a failed inspect rejects (the plugin then fails closed)');
  t.ok(reports.some((r) => r.route === 'exec-start' && r.denied));
  const mon = setup(MONITOR);
  t.same(await mon.ask('/v1.41/exec/privexec/start', '{}'), { allow: true }, 'nothing enforced that an exec breaks: no lookup, allowed');
});

t.test('legacy start bodies (API < 1.24) replace the host config', async (t) => {
  const { ask } = setup();
  t.same(await ask('/v1.41/containers/web/start'), { allow: true }, 'control: a plain start');
  t.same(await ask('/v1.23/containers/web/start', undefined, { 'Content-Length': '0' }), { allow: true }, 'control: old API, no body');
  t.same(await ask('/v1.23/containers/web/start', '{"Memory":1}'), { allow: true }, 'control: old API, harmless body');
  const d = await ask('/v1.23/containers/web/start', '{"Binds":["/:/host"],"Memory":1}');
  t.equal(d.allow, false, 'top-level Binds in a start body');
  t.match(d.msg, /host\.mounts/);
  t.equal((await ask('/v1.19/containers/web/start', '{"HostConfig":{"Privileged":true}}')).allow, false, 'a HostConfig key in a start body');
  t.equal((await ask('foo:/v1.23/containers/web/start', '{"privileged":true}')).allow, false);
  t.same(await ask('/v1.24/containers/web/start', '{"Privileged":true}'), { allow: true }, 'API 1.24 and later: dockerd refuses the body itself');
  t.equal((await ask('/v1.23/containers/web/start')).allow, false, 'old API, a body that was not passed on: refused');
  t.equal((await ask('/v1.23/containers/web/start', '{"Privileged":tru')).allow, false, 'old API, a body Go cannot decode');
  t.same(await ask('/v1.23/containers/web/start', '{}', { 'Content-Length': '2' }), { allow: true }, 'a body of 7 bytes or fewer is ignored by dockerd');
});

t.test('monitor-only policy: nothing unreadable is refused', async (t) => {
  const { ask, decider } = setup(MONITOR);
  t.equal(decider.enforcing(), false);
  t.same(await ask('foo:v1.41/containers/create', OK), { allow: true });
  t.same(await ask('/v1.41/containers/create', '{"Image":"app:1","HostConfig":{"Privileged":"yes"}}'), { allow: true });
  t.same(await ask('/v1.41/containers/create'), { allow: true });
  t.equal(setup().decider.enforcing(), true);
});
