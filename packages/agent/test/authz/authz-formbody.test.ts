// Query values the door judges, read as dockerd reads them when a request
// may carry a form-encoded body (queryAsDockerd): a value dockerd takes from
// r.Form could come from a body no plugin is given; one it takes from the
// target alone (r.URL.Query()) is judged from the target whatever the
// Content-Type. Build options come from a form body past dockerd's first
// 4 KiB of it, so a build with a body plugins are not given is refused while
// host-namespaces is enforced (opt-out: names [build-body]). The kill of a
// held container is covered in authz-holds.test.ts; the engines' side in
// test/e2e/authz-bypass-formbody.test.ts.
import t from 'tap';
import type Dockerode from 'dockerode';
import { createLogger, parsePolicy } from '@bulkhead/shared';
import { AuthzDecider } from '../../src/authz/authz-decider';
import { parseAuthzRequest, type AuthzDecision } from '../../src/authz/plugin-server';
import type { PolicyState } from '../../src/policy/policy-holder';

const logger = createLogger({ name: 'authz-formbody-test', level: 'silent' });

const policy = parsePolicy(`
apiVersion: bulkhead.dev/v1
kind: Policy
metadata: { name: fb }
spec:
  rules:
    - { id: host.host-namespaces, description: n, severity: critical, mode: enforce, action: { type: kill }, check: { type: host-namespaces } }
    - { id: host.privileged, description: p, severity: critical, mode: enforce, action: { type: kill }, check: { type: privileged },
        exemptions: [ { who: ops, why: the one privileged tool, match: { names: [vetted] } } ] }
`, 'fb.yaml');
const state = (): PolicyState => ({ policy, scans: new Map(), version: 1, source: 'bundle', sha256: 'x', projectLabel: 'bulkhead.project' });
const notFound = async (): Promise<never> => { throw Object.assign(new Error('no'), { statusCode: 404 }); };
const deciderOptions = {
  policy: state, containers: { get: () => undefined, inventory: () => [] }, logger,
  docker: {
    getImage: () => ({ inspect: async () => ({ Id: 'sha256:app', RepoDigests: [], Config: { User: '1000', Env: [] } }) as unknown as Dockerode.ImageInspectInfo }),
    getContainer: () => ({ inspect: notFound }), getExec: () => ({ inspect: notFound }), getService: () => ({ inspect: notFound }),
  } as never,
};
const decider = new AuthzDecider(deciderOptions);
const withExemption = parsePolicy(`
apiVersion: bulkhead.dev/v1
kind: Policy
metadata: { name: fb }
spec:
  rules:
    - { id: host.host-namespaces, description: n, severity: critical, mode: enforce, action: { type: kill }, check: { type: host-namespaces },
        exemptions: [ { who: ops, why: the build host, match: { names: [build-body] } } ] }
`, 'fb-exempt.yaml');

const ask = async (uri: string, headers: Record<string, string>, body?: unknown): Promise<AuthzDecision> => decider.decide(parseAuthzRequest(JSON.stringify({
  RequestMethod: 'POST', RequestUri: uri, RequestHeaders: headers,
  ...(body === undefined ? {} : { RequestBody: Buffer.from(JSON.stringify(body)).toString('base64') }),
})));

/** What the plugin sees of a request dockerd did not pass a body for. */
const SEEN = {
  'a form Content-Type': { 'Content-Type': 'application/x-www-form-urlencoded', 'Content-Length': '16' },
  'a multipart Content-Type': { 'Content-Type': 'multipart/form-data; boundary=b', 'Content-Length': '90' },
  'docker build (a chunked tar)': { 'Content-Type': 'application/x-tar' },
} as const;

t.test('build: a body plugins are not given may set networkmode (a form past dockerd\'s first 4 KiB): refused while host-namespaces is enforced', async (t) => {
  for (const [what, h] of Object.entries(SEEN)) {
    for (const q of ['?t=app&remote=http://127.0.0.1:1/Dockerfile', '?networkmode=none', '?networkmode=host']) {
      const d = await ask(`/v1.41/build${q}`, h);
      t.equal(d.allow, false, `${what}, ${q}: refused`);
      t.match(d.msg, /\[host\.host-namespaces\] \(critical\) Bulkhead cannot check this request and refuses it \(fail-closed, the rule is in enforce mode\): dockerd takes build options \(networkmode\) from a form-encoded body past its first 4 KiB.*exempt names: \[build-body\]/, `${what}, ${q}: says why and how`);
    }
  }
  for (const [what, h] of [
    ['no body (a context by URL, Content-Length: 0)', { 'Content-Type': 'application/x-tar', 'Content-Length': '0' }],
    ['a body without a Content-Type (Go reads application/octet-stream: no form)', { 'Content-Length': '20000' }],
  ] as const) {
    t.same(await ask('/v1.41/build?t=app&remote=http://127.0.0.1:1/Dockerfile', h), { allow: true }, `${what}: allowed`);
    t.same(await ask('/v1.41/build?networkmode=none', h), { allow: true }, `${what}, networkmode=none: allowed`);
    const host = await ask('/v1.41/build?networkmode=host', h);
    t.equal(host.allow, false, `${what}, networkmode=host in the target: refused`);
    t.match(host.msg, /\[host\.host-namespaces\]/);
  }
  const exempt = new AuthzDecider({ ...deciderOptions, policy: () => ({ ...state(), policy: withExemption }) });
  const req = parseAuthzRequest(JSON.stringify({ RequestMethod: 'POST', RequestUri: '/v1.41/build?t=app', RequestHeaders: SEEN['docker build (a chunked tar)'] }));
  t.same(await exempt.decide(req), { allow: true }, 'an exemption matching names: [build-body] lets it through');
  const host = parseAuthzRequest(JSON.stringify({ RequestMethod: 'POST', RequestUri: '/v1.41/build?networkmode=host', RequestHeaders: SEEN['docker build (a chunked tar)'] }));
  t.equal((await exempt.decide(host)).allow, false, 'with that exemption, networkmode=host in the target is still refused');
});

t.test('create: the name is read from the target — dockerd refuses a create whose first Content-Type is not JSON', async (t) => {
  const privileged = { Image: 'app:1', HostConfig: { Privileged: true } };
  // The body was passed on, so dockerd's first Content-Type was JSON: no form, the target's name decides (exempted).
  t.same(await ask('/v1.41/containers/create?name=vetted', { 'Content-Type': 'application/x-www-form-urlencoded', 'Content-Length': '50' }, privileged), { allow: true },
    'JSON first, a form Content-Type last: the exemption by name applies');
  t.equal((await ask('/v1.41/containers/create?name=other', { 'Content-Type': 'application/json', 'Content-Length': '50' }, privileged)).allow, false, 'another name: refused');
  const unseen = await ask('/v1.41/containers/create?name=vetted', { 'Content-Type': 'application/json', 'Content-Length': '50' });
  t.equal(unseen.allow, false, 'no body passed on (the first Content-Type was not JSON): refused, as before');
  t.match(unseen.msg, /cannot check this request/);
});

t.test('the /grpc denial points at both exemptions, uncut', async (t) => {
  const d = await ask('/v1.45/grpc', {});
  t.equal(d.allow, false);
  t.match(d.msg, /DOCKER_BUILDKIT=0 docker build \(judged at POST \/build; exempt names: \[build-body\] there\), or exempt names: \[buildkit-grpc\]\.\n/);
});
