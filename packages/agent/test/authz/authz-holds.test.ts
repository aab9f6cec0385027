// The door refusing a plain API call that would undo what Bulkhead did to a
// container (enforce/holds.ts): unpause / a resuming kill / stop / start /
// restart of a paused one, network connect of a quarantined one, an update
// loosening applied limits — while the rule that acted is enforced; recorded
// only in monitor mode; nothing held once the rule is gone, exempted or the
// hold released. And the harmless controls of the same shape.
import t from 'tap';
import type Dockerode from 'dockerode';
import { createLogger, parsePolicy, type Policy } from '@bulkhead/shared';
import { AuthzDecider, isSigkill, queryAsDockerd, swapLoosens, unseenFormBody, updateMemorySwap, type AuthzDecisionReport } from '../../src/authz/authz-decider';
import { parseAuthzRequest, type AuthzDecision } from '../../src/authz/plugin-server';
import type { PolicyState } from '../../src/policy/policy-holder';
import type { Facts } from '../../src/docker/container-facts';
import { EnforcementHolds } from '../../src/enforce/holds';

const logger = createLogger({ name: 'authz-holds-test', level: 'silent' });

const policyYaml = (mode: 'enforce' | 'monitor', exempt = false): Policy => parsePolicy(`
apiVersion: bulkhead.dev/v1
kind: Policy
metadata: { name: unit }
spec:
  rules:
    - id: live.cpu
      description: cpu
      severity: high
      mode: ${mode}
      action: { type: pause }
      check: { type: no-new-privileges }
${exempt ? '      exemptions:\n        - { who: ops, why: batch job, match: { names: [web] } }\n' : ''}    - id: live.net
      description: net
      severity: high
      mode: ${mode}
      action: { type: quarantine }
      check: { type: no-new-privileges }
    - id: live.quota
      description: quota
      severity: medium
      mode: ${mode}
      action: { type: limit, limits: { memory: 64m, pids: 100 } }
      check: { type: no-new-privileges }
`, 'unit.yaml');

const ID = 'a'.repeat(64);
const OTHER = 'b'.repeat(64);
const facts = (over: Partial<Facts> = {}): Facts => ({
  id: ID, name: 'web', imageRef: 'app:1', imageId: 'sha256:app', imageDigest: '', labels: {}, state: 'paused', user: '1000',
  privileged: false, mounts: [], networkMode: 'bridge', networks: [], pidMode: '', ipcMode: '', utsMode: '', usernsMode: '', capAdd: [], capDrop: [],
  securityOpt: [], readOnlyRootfs: false, memoryLimitBytes: 64 * 1024 * 1024, nanoCpus: 0, cpuQuota: 0, cpuPeriod: 0, cpuShares: 0, pidsLimit: 100,
  restartPolicy: 'no', restartMaxRetries: 0, envNames: [], command: ['sleep', '1'], createdAtMs: 1, startedAtMs: 2, finishedAtMs: 0, exitCode: 0,
  pid: 1, devices: [], imageUser: '1000', restartCount: 0, secretHits: [], project: '', ...over,
});

function setup(o: { policy?: Policy; inventory?: Facts[] } = {}) {
  const holds = EnforcementHolds.inMemory();
  let policy = o.policy ?? policyYaml('enforce');
  const st = (): PolicyState => ({ policy, scans: new Map(), version: 7, source: 'bundle', sha256: 'x', projectLabel: 'bulkhead.project' });
  const inventory = o.inventory ?? [facts(), facts({ id: OTHER, name: 'ok', state: 'paused' })];
  const reports: AuthzDecisionReport[] = [];
  const docker = {
    getImage: () => ({ inspect: async (): Promise<Dockerode.ImageInspectInfo> => { throw Object.assign(new Error('no'), { statusCode: 404 }); } }),
    getContainer: () => ({ inspect: async (): Promise<Dockerode.ContainerInspectInfo> => { throw Object.assign(new Error('no'), { statusCode: 404 }); } }),
    getExec: () => ({ inspect: async (): Promise<Dockerode.ExecInspectInfo> => { throw Object.assign(new Error('no'), { statusCode: 404 }); } }),
    getNetwork: (ref: string) => ({ inspect: async () => ({ Id: 'c'.repeat(64), Name: ref }) }),
  };
  const decider = new AuthzDecider({
    policy: st, containers: { get: (id) => inventory.find((f) => f.id === id), inventory: () => inventory }, docker: docker as never, logger,
    onDecision: (r) => reports.push(r), holds, agentId: 'agt_1234',
  });
  const ask = async (method: string, uri: string, body?: unknown, headers?: Record<string, string>): Promise<AuthzDecision> => {
    const req = parseAuthzRequest(JSON.stringify({
      RequestMethod: method, RequestUri: uri, ...(body === undefined ? {} : { RequestBody: Buffer.from(JSON.stringify(body)).toString('base64') }),
      ...(headers ? { RequestHeaders: headers } : {}),
    }));
    const d = await decider.decide(req);
    // Reports (and a monitor-only policy's judgement) come after the answer.
    await new Promise((r) => setTimeout(r, 20));
    return d;
  };
  return { holds, ask, reports, setPolicy: (p: Policy) => (policy = p) };
}

const by = { at: '2026-12-07T14:00:00.000Z', by: 'policy v7' };

t.test('isSigkill reads the signal as dockerd does', async (t) => {
  for (const s of ['', '9', '+9', '09', 'KILL', 'kill', 'SIGKILL', 'SigKill']) t.ok(isSigkill(s), s);
  for (const s of ['15', 'TERM', 'WINCH', 'SIGCONT', 'USR1', '0', 'KILLX', ' 9']) t.notOk(isSigkill(s), s);
});

/** What the plugin is given: the LAST value of each header, a body only when dockerd's first Content-Type was JSON. */
const seen = (headers: Record<string, string> | undefined, body?: unknown) => parseAuthzRequest(JSON.stringify({
  RequestMethod: 'POST', RequestUri: '/v1.41/containers/web/kill?signal=KILL',
  ...(body === undefined ? {} : { RequestBody: Buffer.from(JSON.stringify(body)).toString('base64') }),
  ...(headers ? { RequestHeaders: headers } : {}),
}));

t.test('unseenFormBody: a body the plugin was not given may hold form values dockerd reads first', async (t) => {
  for (const [what, h] of [
    ['a form Content-Type', { 'Content-Type': 'application/x-www-form-urlencoded', 'Content-Length': '12' }],
    ['form then JSON: the plugin sees JSON, and no body', { 'Content-Type': 'application/json', 'Content-Length': '12' }],
    ['form then an empty Content-Type', { 'Content-Type': '' }],
    ['U+0130 in the media type (Go folds it to "i")', { 'Content-Type': 'appl\u0130cation/x-www-form-urlencoded', 'Content-Length': '12' }],
    ['chunked (Go drops Transfer-Encoding and Content-Length)', { 'Content-Type': 'text/plain' }],
    ['a Content-Length that is not 0', { 'Content-Type': 'text/plain', 'Content-Length': '1' }],
  ] as const) {
    t.match(unseenFormBody(seen(h)), /form-encoded body/, what);
    t.match(queryAsDockerd(seen(h), 'signal', 'form'), { value: 'KILL', unseen: /Content-Length: 0/ }, `${what}: the query's value is not what dockerd reads`);
    t.same(queryAsDockerd(seen(h), 'signal', 'url'), { value: 'KILL' }, `${what}: a value dockerd reads from the target alone`);
  }
  for (const [what, h, body] of [
    ['no headers at all', undefined, undefined],
    ['no Content-Type (Go reads application/octet-stream)', { 'Content-Length': '12' }, undefined],
    ['Content-Length: 0 (the docker CLI: text/plain, empty)', { 'Content-Type': 'text/plain', 'Content-Length': '0' }, undefined],
    ['Content-Length 00 with a form type: still empty', { 'Content-Type': 'application/x-www-form-urlencoded', 'Content-Length': '00' }, undefined],
    ['a body was passed on (dockerd\'s first Content-Type was JSON), though the last one is a form', { 'Content-Type': 'application/x-www-form-urlencoded', 'Content-Length': '2' }, {}],
  ] as const) {
    t.equal(unseenFormBody(seen(h, body)), undefined, what);
    t.same(queryAsDockerd(seen(h, body), 'signal', 'form'), { value: 'KILL' }, `${what}: the query decides`);
  }
});

t.test('nothing held: unpause, kill, stop are allowed without a lookup', async (t) => {
  const { ask } = setup();
  for (const p of ['unpause', 'kill?signal=WINCH', 'stop?t=30']) t.same(await ask('POST', `/v1.41/containers/web/${p}`), { allow: true }, p);
});

t.test('a paused container held by an enforce rule: every request that resumes it is refused, naming rule and release', async (t) => {
  const { holds, ask, reports } = setup();
  holds.add(ID, 'web', 'pause', { rules: ['live.cpu'], ...by });
  for (const p of ['unpause', 'kill?signal=WINCH', 'kill?signal=15', 'kill?s%69gnal=CONT', 'stop', 'stop?t=3600', 'start', 'restart', 'unpause?x=/auth']) {
    const d = await ask('POST', `/v1.41/containers/web/${p}`);
    t.equal(d.allow, false, `${p} refused`);
    t.match(d.msg, /\[live\.cpu\] \(high\) container web was paused by Bulkhead \(policy v7, 2026-12-07T14:00:00.000Z\) and stays held until released: bulkhead action agt_1234 web unpause/, `${p}: names the rule and how to release`);
  }
  t.match((await ask('POST', `/containers/${ID.slice(0, 12)}/kill?signal=USR1`)).msg, /a signal other than SIGKILL resumes a paused container/, 'by id prefix, the reason for a kill');
  t.match((await ask('POST', `/v1.45/containers/${ID}/stop?signal=SIGTERM`)).msg, /docker stop resumes a paused container/);
  const last = reports.at(-1)!;
  t.same([last.denied, last.violations[0]!.ruleId, last.violations[0]!.source, last.violations[0]!.denied], [true, 'live.cpu', 'authz', true], 'every denial recorded');
  // Controls of the same shape.
  for (const p of ['kill', 'kill?signal=KILL', 'kill?signal=9']) t.same(await ask('POST', `/v1.41/containers/web/${p}`), { allow: true }, `${p}: SIGKILL ends it, allowed`);
  const form = await ask('POST', '/v1.41/containers/web/kill?signal=KILL', undefined, { 'Content-Type': 'application/x-www-form-urlencoded' });
  t.equal(form.allow, false, 'a form-encoded body (dockerd reads its signal first, the plugin never sees it): refused');
  // What the plugin sees of `Content-Type: <form>` then `Content-Type: application/json` with the body signal=WINCH.
  const dup = await ask('POST', '/v1.41/containers/web/kill?signal=KILL', undefined, { 'Content-Type': 'application/json', 'Content-Length': '12' });
  t.equal(dup.allow, false, 'a JSON Content-Type but no body given: the first Content-Type may have been a form; refused');
  t.match(dup.msg, /\[live\.cpu\] .*bulkhead action agt_1234 web unpause \(the signal is unknown: dockerd reads it from a form-encoded body first, which plugins are not given; send it with no body \(Content-Length: 0\), as docker does\)/, 'the denial says why');
  t.equal(reports.at(-1)!.denied, true, 'recorded');
  for (const [what, h] of [
    ['docker kill (text/plain, Content-Length: 0)', { 'Content-Type': 'text/plain', 'Content-Length': '0' }],
    ['no Content-Type', { 'Content-Length': '12' }],
  ] as const) t.same(await ask('POST', '/v1.41/containers/web/kill?signal=KILL', undefined, h), { allow: true }, `SIGKILL, ${what}: allowed`);
  t.same(await ask('POST', '/v1.41/containers/web/kill?signal=KILL', {}, { 'Content-Type': 'application/x-www-form-urlencoded', 'Content-Length': '2' }), { allow: true },
    'a JSON body passed on (so dockerd\'s first Content-Type was JSON), the last Content-Type a form: the query decides, SIGKILL allowed');
  for (const p of ['unpause', 'kill?signal=WINCH', 'stop']) t.same(await ask('POST', `/v1.41/containers/ok/${p}`), { allow: true }, `another paused container, not held: ${p} allowed`);
});

t.test('escalated holds say so; an exited held container cannot be started, stop of it is a no-op and allowed', async (t) => {
  const { holds, ask } = setup({ inventory: [facts({ state: 'exited' })] });
  holds.add(ID, 'web', 'pause', { rules: ['live.cpu', 'live.net'], escalated: true, ...by });
  const d = await ask('POST', '/v1.41/containers/web/start');
  t.equal(d.allow, false);
  t.match(d.msg, /escalated after repeated actions/);
  t.match(d.msg, /\[live\.net\]/, 'every rule behind the escalation named');
  t.same(await ask('POST', '/v1.41/containers/web/stop'), { allow: true }, 'stop of an exited container resumes nothing');
});

t.test('monitor mode: recorded, not refused; exempted or removed rules and released holds hold nothing', async (t) => {
  const { holds, ask, reports, setPolicy } = setup({ policy: policyYaml('monitor') });
  holds.add(ID, 'web', 'pause', { rules: ['live.cpu'], ...by });
  t.same(await ask('POST', '/v1.41/containers/web/unpause'), { allow: true }, 'monitor: allowed');
  // The report comes after the answer (a monitor-only judgement is asynchronous): wait for it,
  // bounded, rather than a fixed 20 ms that a loaded machine can overrun.
  for (const until = Date.now() + 5_000; !reports.some((x) => x.route === 'unpause') && Date.now() < until;) await new Promise((r) => setTimeout(r, 10));
  const r = reports.find((x) => x.route === 'unpause');
  t.same(r && [r.denied, r.violations[0]!.ruleId, r.violations[0]!.mode, r.violations[0]!.denied], [false, 'live.cpu', 'monitor', false], 'monitor: recorded');
  setPolicy(policyYaml('enforce', true));
  t.same(await ask('POST', '/v1.41/containers/web/unpause'), { allow: true }, 'the container is exempted now: nothing holds it');
  setPolicy(policyYaml('enforce'));
  t.equal((await ask('POST', '/v1.41/containers/web/unpause')).allow, false, 'enforced again: refused');
  holds.release(ID, 'pause');
  t.same(await ask('POST', '/v1.41/containers/web/unpause'), { allow: true }, 'released through Bulkhead: the agent\'s own unpause passes');
});

t.test('manual holds: refused while the policy enforces anything, recorded otherwise', async (t) => {
  const { holds, ask, setPolicy } = setup();
  holds.add(ID, 'web', 'pause', { rules: ['manual.pause'], at: by.at, by: 'ak_ops' });
  const d = await ask('POST', '/v1.41/containers/web/unpause');
  t.equal(d.allow, false);
  t.match(d.msg, /\[manual\.pause\] \(high\) container web was paused by Bulkhead \(by ak_ops/);
  setPolicy(policyYaml('monitor'));
  t.same(await ask('POST', '/v1.41/containers/web/unpause'), { allow: true });
});

t.test('quarantine: network connect of the held container refused (any spelling, padded body fail-closed); others allowed', async (t) => {
  const { holds, ask } = setup({ inventory: [facts({ state: 'running' }), facts({ id: OTHER, name: 'ok', state: 'running' })] });
  holds.add(ID, 'web', 'quarantine', { rules: ['live.net'], ...by });
  for (const body of [{ Container: 'web' }, { container: ID }, { CONTAINER: ID.slice(0, 10), EndpointConfig: { Aliases: ['x'] } }]) {
    const d = await ask('POST', '/v1.41/networks/appnet/connect', body);
    t.equal(d.allow, false, JSON.stringify(body));
    t.match(d.msg, /\[live\.net\] \(high\) container web was quarantined by Bulkhead .* stays off every network until released: bulkhead action agt_1234 web release/);
  }
  const unread = await ask('POST', '/v1.41/networks/appnet/connect');
  t.equal(unread.allow, false, 'a connect whose body the plugin did not get is refused while a quarantine is held');
  t.match(unread.msg, /fail-closed/);
  t.same(await ask('POST', '/v1.41/networks/appnet/connect', { Container: 'ok' }), { allow: true }, 'control: another container connects');
  t.same(await ask('POST', '/v1.41/networks/appnet/disconnect', { Container: 'web' }), { allow: true }, 'disconnect is not an undo');
  t.same(await ask('POST', '/v1.41/containers/web/unpause'), { allow: true }, 'a quarantine is not a pause');
});

t.test('quarantine: a start or restart would put the container back on its user-defined network', async (t) => {
  const compliant = parsePolicy(`
apiVersion: bulkhead.dev/v1
kind: Policy
metadata: { name: unit }
spec:
  rules:
    - id: live.net
      description: net
      severity: high
      mode: enforce
      action: { type: quarantine }
      check: { type: privileged }
`, 'unit.yaml');
  const { holds, ask } = setup({ policy: compliant, inventory: [facts({ state: 'running', networkMode: 'appnet' }), facts({ id: OTHER, name: 'nonet', state: 'running', networkMode: 'none' })] });
  holds.add(ID, 'web', 'quarantine', { rules: ['manual.quarantine'], at: by.at, by: 'ak_ops' });
  holds.add(OTHER, 'nonet', 'quarantine', { rules: ['manual.quarantine'], at: by.at, by: 'ak_ops' });
  for (const p of ['start', 'restart']) {
    const d = await ask('POST', `/v1.41/containers/web/${p}`);
    t.equal(d.allow, false, `${p} refused`);
    t.match(d.msg, new RegExp(`\\[manual\\.quarantine\\] \\(high\\) container web was quarantined by Bulkhead \\(by ak_ops.*\\(a ${p} could put it back on network appnet\\)`));
  }
  t.same(await ask('POST', '/v1.41/containers/nonet/restart'), { allow: true }, 'control: network mode none — a start reconnects nothing');
  holds.release(ID, 'quarantine');
  t.same(await ask('POST', '/v1.41/containers/web/restart'), { allow: true }, 'released: allowed');
});

t.test('limit: an update loosening applied limits is refused; tightening and unrelated updates allowed', async (t) => {
  const { holds, ask } = setup({ inventory: [facts({ state: 'running' })] });
  holds.add(ID, 'web', 'limit', { rules: ['live.quota'], ...by });
  for (const body of [{ Memory: 1 << 30, MemorySwap: 1 << 30 }, { PidsLimit: -1 }, { pidslimit: 5000 }, { Memory: -1 }]) {
    const d = await ask('POST', '/v1.41/containers/web/update', body);
    t.equal(d.allow, false, JSON.stringify(body));
    t.match(d.msg, /\[live\.quota\] \(medium\) Bulkhead applied this rule's limits \(memory 64m, pids 100\) to container web/);
  }
  t.same(await ask('POST', '/v1.41/containers/web/update', { Memory: 32 << 20, MemorySwap: 32 << 20 }), { allow: true }, 'tighter: allowed');
  t.same(await ask('POST', '/v1.41/containers/web/update', { RestartPolicy: { Name: 'no' } }), { allow: true }, 'unrelated: allowed');
  t.equal((await ask('POST', '/v1.41/containers/web/update')).allow, false, 'no body: fail-closed');
});

t.test('limit: MemorySwap alone past the rule\'s memory (or -1) is refused; equal, lower or unset allowed', async (t) => {
  const { holds, ask } = setup({ inventory: [facts({ state: 'running' })] });
  holds.add(ID, 'web', 'limit', { rules: ['live.quota'], ...by });
  for (const body of [{ MemorySwap: -1 }, { memoryswap: 1 << 30 }, { MemorySwap: (64 << 20) + 1 }, { Memory: 32 << 20, MemorySwap: -1 }]) {
    const d = await ask('POST', '/v1.41/containers/web/update', body);
    t.equal(d.allow, false, JSON.stringify(body));
    t.match(d.msg, /\[live\.quota\] \(medium\) Bulkhead applied this rule's limits \(memory 64m, pids 100\) to container web .*would loosen them \(MemorySwap .*Bulkhead allows no swap beyond the rule's memory\)/);
  }
  for (const body of [{ MemorySwap: 64 << 20 }, { MemorySwap: 0 }, { Memory: 32 << 20, MemorySwap: 48 << 20 }, { CpuShares: 512 }]) {
    t.same(await ask('POST', '/v1.41/containers/web/update', body), { allow: true }, `${JSON.stringify(body)}: allowed`);
  }
  t.same([updateMemorySwap({}), updateMemorySwap({ MemorySwap: 0 }), updateMemorySwap({ MemorySwap: -1 }), updateMemorySwap({ MemorySwap: null })], [undefined, undefined, -1, undefined]);
  t.same([swapLoosens(-1, 10), swapLoosens(11, 10), swapLoosens(10, 10), swapLoosens(undefined, 10), swapLoosens(-1, undefined)], [true, true, false, false, false]);
});

t.test('docker cp INTO a paused or quarantined container (PUT archive) is refused; out of it, and into others, allowed', async (t) => {
  const { holds, ask, reports, setPolicy } = setup({ inventory: [facts(), facts({ id: OTHER, name: 'q', state: 'running', networkMode: 'none' }), facts({ id: 'c'.repeat(64), name: 'free', state: 'running' })] });
  t.same(await ask('PUT', '/v1.41/containers/web/archive?path=/'), { allow: true }, 'nothing held: PUT is allowed without a lookup');
  holds.add(ID, 'web', 'pause', { rules: ['live.cpu'], ...by });
  holds.add(OTHER, 'q', 'quarantine', { rules: ['live.net'], ...by });
  for (const uri of ['/v1.41/containers/web/archive?path=/', '/containers/web/archive?path=/tmp&copyUIDGID=1', `/v1.45/containers/${ID.slice(0, 8)}/archive?path=/`, '/v1.41/containers/web/./archive?path=/']) {
    const d = await ask('PUT', uri);
    t.equal(d.allow, false, `${uri} refused`);
    t.match(d.msg, /\[live\.cpu\] \(high\) container web was paused by Bulkhead .*bulkhead action agt_1234 web unpause \(docker cp INTO a held container changes the files Bulkhead holds for investigation/, `${uri}: names the rule, the release and why`);
  }
  t.same(reports.at(-1) && [reports.at(-1)!.route, reports.at(-1)!.denied, reports.at(-1)!.violations[0]!.ruleId], ['archive', true, 'live.cpu'], 'recorded');
  const q = await ask('PUT', '/v1.41/containers/q/archive?path=/');
  t.equal(q.allow, false, 'into a quarantined container: refused');
  t.match(q.msg, /\[live\.net\] \(high\) container q was quarantined by Bulkhead .*release \(docker cp INTO a held container/);
  for (const [m, uri] of [['GET', '/v1.41/containers/web/archive?path=/'], ['HEAD', '/v1.41/containers/web/archive?path=/'], ['PUT', '/v1.41/containers/free/archive?path=/'], ['PUT', '/v1.41/containers/gone/archive?path=/'], ['PUT', '/v1.41/containers/web/attach']] as const) {
    t.same(await ask(m, uri), { allow: true }, `${m} ${uri}: allowed`);
  }
  t.equal((await ask('POST', '/v1.41/containers/web/archive?path=/')).allow, true, 'POST archive: dockerd routes no such request');
  setPolicy(policyYaml('monitor'));
  t.same(await ask('PUT', '/v1.41/containers/web/archive?path=/'), { allow: true }, 'monitor mode: allowed');
  for (const until = Date.now() + 5_000; !reports.some((x) => x.route === 'archive' && !x.denied) && Date.now() < until;) await new Promise((r) => setTimeout(r, 10));
  t.ok(reports.some((x) => x.route === 'archive' && !x.denied && x.violations[0]!.ruleId === 'live.cpu'), 'monitor mode: recorded, not denied');
});

t.test('a ref that may reach a held container in dockerd is judged as that one, whatever the (trailing) inventory says', async (t) => {
  const H = '5299f8' + 'd'.repeat(58);
  const C = 'e'.repeat(64);
  // The inventory still has C under the name "5299f8" (renamed away a moment ago: dockerd now resolves "5299f8" to H's id prefix).
  const { holds, ask } = setup({ inventory: [facts({ id: H, name: 'held' }), facts({ id: C, name: '5299f8', state: 'running' }), facts({ id: OTHER, name: 'ok', state: 'paused' })] });
  holds.add(H, 'held', 'pause', { rules: ['live.cpu'], ...by });
  for (const ref of ['5299f8', '5299', H, 'held', '/held']) {
    const d = await ask('POST', `/v1.41/containers/${ref}/unpause`);
    t.equal(d.allow, false, `unpause ${ref}: refused`);
    t.match(d.msg, /container held was paused by Bulkhead/, `${ref}: judged as the held container`);
  }
  t.same(await ask('POST', '/v1.41/containers/ok/unpause'), { allow: true }, 'control: a name no held container has');
  t.same(await ask('POST', `/v1.41/containers/${C}/unpause`), { allow: true }, 'control: another container by its full id');
  // Known only by the name it was held under (not in the inventory at all): still that one.
  holds.add('f'.repeat(64), 'gone-from-inventory', 'quarantine', { rules: ['live.net'], ...by });
  t.equal((await ask('POST', '/v1.41/networks/n/connect', { Container: 'gone-from-inventory' })).allow, true, 'dockerd has no such container (inspect 404): dockerd answers 404 itself');
});

t.test('rename of a held container is refused (its name must keep reaching it); of others allowed', async (t) => {
  const { holds, ask, setPolicy } = setup({ inventory: [facts(), facts({ id: OTHER, name: 'q', state: 'running' }), facts({ id: 'c'.repeat(64), name: 'lim', state: 'running' }), facts({ id: 'd'.repeat(64), name: 'free', state: 'running' })] });
  t.same(await ask('POST', '/v1.41/containers/web/rename?name=x'), { allow: true }, 'nothing held: allowed');
  holds.add(ID, 'web', 'pause', { rules: ['live.cpu'], ...by });
  holds.add(OTHER, 'q', 'quarantine', { rules: ['live.net'], ...by });
  holds.add('c'.repeat(64), 'lim', 'limit', { rules: ['live.quota'], ...by });
  for (const [ref, re] of [
    ['web', /\[live\.cpu\] .*container web was paused by Bulkhead .*unpause \(its name stays while it is held/],
    ['q', /\[live\.net\] .*container q was quarantined by Bulkhead .*release \(its name stays while it is held/],
    ['lim', /\[live\.quota\] .*Bulkhead applied this rule's limits \(memory 64m, pids 100\) to container lim; its name stays while they are held/],
  ] as const) {
    const d = await ask('POST', `/v1.41/containers/${ref}/rename?name=other`);
    t.equal(d.allow, false, `rename ${ref}: refused`);
    t.match(d.msg, re, `rename ${ref}: names the rule and what to do`);
  }
  t.same(await ask('POST', '/v1.41/containers/free/rename?name=x'), { allow: true }, 'control: a container Bulkhead holds nothing of');
  setPolicy(policyYaml('monitor'));
  t.same(await ask('POST', '/v1.41/containers/web/rename?name=x'), { allow: true }, 'monitor mode: allowed (recorded)');
});
