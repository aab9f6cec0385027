// GET /v1/agents/:id/audit and `bulkhead audit HOST` against the real HTTPS
// API over a real SQLite store holding reports stored the way the agent
// link stores them.
import t from 'tap';
import { createLogger, type AuditReport__Output } from '@bulkhead/shared';
import { bearer, get, startApi } from '../api/fixtures/api-server';
import { generateApiKey } from '../../src/api/api-keys';
import { main, type OpsCliIo } from '../../../cli/src/main';
import { recordHostAudit } from '../../src/host-audit/host-audit-recorder';
import { renderHostAudit, resolveAgent } from '../../../cli/src/commands/host-audit';
import type { HostAuditDto } from '../../src/api/routes/agent-audit';
import type { Store } from '../../src/store/store';
import { HYGIENE, MODE_FIX, NO_AUTHZ, SOCKET_MODE, SOCKET_MOUNT, auditReport } from './fixtures/reports';

const T0 = Date.parse('2026-11-28T12:00:00Z');

async function addAgent(store: Store, id: string, hostname: string, status: 'online' | 'offline' | 'revoked' = 'online'): Promise<void> {
  await store.insertAgent({
    id, hostname, status, agentVersion: '1', host: null, certSerial: id, certNotAfter: new Date(T0 + 1e10),
    enrolledAt: new Date(T0), lastSeenAt: null, connectedAt: null, revokedAt: status === 'revoked' ? new Date(T0) : null, containerCount: 0,
  });
}

t.test('GET /v1/agents/:id/audit and bulkhead audit', async (t) => {
  const api = await startApi({ role: 'admin' });
  t.teardown(() => api.close());
  const { store } = api;
  const A = 'agt_0000000000000000000a';
  const B = 'agt_0000000000000000000b';
  await addAgent(store, A, 'web-01');
  await addAgent(store, B, 'db-01');
  await addAgent(store, 'agt_00000000000000000001', 'twin');
  await addAgent(store, 'agt_00000000000000000002', 'twin');
  await addAgent(store, 'agt_00000000000000000003', 'reborn', 'revoked');
  await addAgent(store, 'agt_00000000000000000004', 'reborn');
  const opts = { store, logger: createLogger({ name: 't', level: 'silent' }), now: () => new Date(T0 + 1000) };
  const send = (id: string, r: ReturnType<typeof auditReport>) => recordHostAudit(opts, id, r as unknown as AuditReport__Output);
  await send(A, auditReport({ takenAtMs: T0 - 3600_000, findings: [SOCKET_MODE, NO_AUTHZ] }));
  await send(A, auditReport({ takenAtMs: T0, findings: [SOCKET_MOUNT, NO_AUTHZ], fixes: [MODE_FIX], hygiene: HYGIENE }));
  const admin = bearer(api.apiKey);

  // ---- the API --------------------------------------------------------------------
  const r = await get(api, `/v1/agents/${A}/audit`, admin);
  t.equal(r.status, 200, r.status === 200 ? 'the report' : r.text);
  const body = r.json as HostAuditDto;
  t.match(body, { agentId: A, hostname: 'web-01', takenAt: new Date(T0).toISOString(), receivedAt: new Date(T0 + 1000).toISOString(), score: 40 });
  t.same(body.lockdown.map((f) => f.id), ['container.docker-socket', 'daemon.no-authorization-plugin']);
  t.same(body.summary.newFindings, [`container.docker-socket|${SOCKET_MOUNT.subject}`]);
  t.same(body.summary.resolvedFindings, ['docker-socket.mode|/var/run/docker.sock']);
  t.match(body.fixes, [{ fix: 'dockerSocketMode', changed: true, before: { mode: '0666' }, after: { mode: '0660' } }]);
  t.match(body.hygiene, { counts: { stale: 2 } });
  t.equal(body.cis.dockerbenchsecurity, '1.6.0');
  t.same(body.history.map((h) => h.takenAt), [new Date(T0).toISOString(), new Date(T0 - 3600_000).toISOString()]);
  t.equal(body.history[1]!.summary.lockdown.critical, 1);
  t.match(body.lockdown[0], { evidence: { name: 'ci-runner' } }, 'evidence passes through');

  const cis = await get(api, `/v1/agents/${A}/audit?format=cis`, admin);
  t.equal(cis.status, 200, cis.status === 200 ? 'the CIS report' : cis.text);
  t.same(Object.keys(cis.json as object).slice(0, 6), ['dockerbenchsecurity', 'start', 'tests', 'checks', 'score', 'end'], "docker-bench's log.json field order");
  t.match(cis.json, { tests: [{ id: '1', results: [{ id: '1.1.1', result: 'WARN' }] }] });
  t.same((await get(api, `/v1/agents/${A}/audit?format=report`, admin)).json, body);

  const noAgent = await get(api, '/v1/agents/agt_nope/audit', admin);
  t.equal(noAgent.status, 404);
  t.match(String(noAgent.headers['content-type']), /application\/problem\+json/);
  t.match(noAgent.json, { code: 'BK_ERR_NOT_FOUND', detail: 'agent "agt_nope" not found' });
  const noReport = await get(api, `/v1/agents/${B}/audit`, admin);
  t.equal(noReport.status, 404);
  t.match(noReport.json, { code: 'BK_ERR_NOT_FOUND', detail: /has not reported a host audit yet/ });
  t.equal((await get(api, `/v1/agents/${A}/audit?format=xml`, admin)).status, 400, 'unknown format');
  t.equal((await get(api, `/v1/agents/${A}/audit?verbose=1`, admin)).status, 400, 'unknown parameter');

  // Fleet-wide: a viewer may read it, a credential limited to projects may not.
  const viewer = generateApiKey('v', 'viewer');
  const scoped = generateApiKey('s', 'admin', { projects: ['shop'] });
  await store.insertApiKey(viewer.record);
  await store.insertApiKey(scoped.record);
  t.equal((await get(api, `/v1/agents/${A}/audit`, bearer(viewer.plaintext))).status, 200);
  const refused = await get(api, `/v1/agents/${A}/audit`, bearer(scoped.plaintext));
  t.equal(refused.status, 403);
  t.match(refused.json, { code: 'BK_ERR_FORBIDDEN', detail: /not limited to projects/ });
  t.equal((await get(api, `/v1/agents/${A}/audit`)).status, 401);

  // ---- the CLI --------------------------------------------------------------------
  const env = { BULKHEAD_API: api.url, BULKHEAD_CA: api.caFile, BULKHEAD_API_KEY: viewer.plaintext };
  const run = async (argv: string[]) => {
    let out = '';
    let err = '';
    const io: Partial<OpsCliIo> = { out: (s) => void (out += s), err: (s) => void (err += s), env, now: () => new Date(T0 + 120_000) };
    const code = await main(argv, io);
    return { code, out, err };
  };

  const text = await run(['audit', 'web-01']);
  t.equal(text.code, 0, text.err);
  t.match(text.out, new RegExp(`^Agent:\\s+${A} \\(web-01\\)$`, 'm'));
  t.match(text.out, /^Audited:\s+2026-11-28T12:00:00.000Z \(2m ago\)$/m);
  t.match(text.out, /^CIS score:\s+40 % of scored checks pass \(PASS 2, WARN 3, INFO 1, NOTE 1; docker-bench score -1\)$/m);
  t.match(text.out, /^Lockdown:\s+2 finding\(s\): 1 critical, 1 medium; 1 new since the previous report$/m);
  t.match(text.out, /^Resolved:\s+docker-socket\.mode\|\/var\/run\/docker\.sock$/m);
  t.match(text.out, /^Fixes:\s+1 applied, 0 failed$/m);
  t.match(text.out, /^Images:\s+5 image\(s\), 2 stale \(3\.0 MiB\), 1 dangling$/m);
  t.match(text.out, /^SEVERITY\s+ID\s+SUBJECT\s+NEW\s+FIX\s+FINDING$/m);
  t.match(text.out, /^critical\s+container\.docker-socket\s+c0ffee0+\s+new\s+-\s+A container mounts the Docker socket: container "ci-runner" mounts/m);
  t.match(text.out, /^medium\s+daemon\.no-authorization-plugin\s+-\s+-\s+No authorization plugin$/m);
  t.match(text.out, /^dockerSocketMode\s+\/var\/run\/docker\.sock\s+applied\s+dockerSocketMode: chmod 0666 → 0660/m);
  t.match(text.out, /^CIS WARN$/m);
  t.match(text.out, /^5\.4\s+WARN\s+Check 5\.4 \(Automated\)\s+ci-runner:SYS_ADMIN$/m);
  t.notMatch(text.out, /^2\.2\s+PASS/m, 'PASS results only with --all');
  t.match((await run(['audit', A, '--all'])).out, /^2\.2\s+PASS\s+Check 2\.2/m);

  const json = await run(['--json', 'audit', A]);
  t.equal(json.code, 0);
  t.same(JSON.parse(json.out), body, '--json prints the stored report as the API returns it');
  const cisOut = await run(['audit', 'web-01', '--cis']);
  t.same(JSON.parse(cisOut.out), cis.json, '--cis prints the log.json shape');

  const failWarn = await run(['audit', 'web-01', '--fail-on', 'warn']);
  t.equal(failWarn.code, 4, 'a WARN result with --fail-on warn exits 4');
  t.match(failWarn.err, /^audit: 3 CIS result\(s\) at or above WARN \(1\.1\.1 WARN, 5\.4 WARN, 5\.11 WARN\)$/m);
  t.ok(failWarn.out.includes('CIS WARN'), 'the report is still printed');
  const failFinding = await run(['audit', 'web-01', '--cis', '--fail-on-finding', 'critical']);
  t.equal(failFinding.code, 4);
  t.match(failFinding.err, /1 lockdown finding\(s\) at or above critical \(container\.docker-socket\)/);
  t.equal((await run(['audit', 'web-01', '--fail-on-finding', 'critical', '--fail-on', 'note'])).err.split(';').length, 2, 'both reasons in one line');
  t.equal((await run(['audit', 'web-01', '--fail-on-finding', 'high'])).code, 4);
  // A host below both thresholds: exit 0.
  await addAgent(store, 'agt_0000000000000000000c', 'quiet-01');
  await send('agt_0000000000000000000c', auditReport({ takenAtMs: T0, findings: [NO_AUTHZ], cis: { '2.2': 'PASS', '4.6': 'NOTE' } }));
  const passing = await run(['audit', 'quiet-01', '--fail-on', 'warn', '--fail-on-finding', 'high']);
  t.equal(passing.code, 0, passing.err);
  t.equal(passing.err, '');
  t.equal((await run(['audit', 'quiet-01', '--fail-on', 'note'])).code, 4, 'NOTE counts at --fail-on note');

  // Host names: unknown, ambiguous, a revoked twin left behind.
  const unknown = await run(['audit', 'nowhere']);
  t.equal(unknown.code, 1);
  t.match(unknown.err, /BK_ERR_NOT_FOUND: no agent with id or host name "nowhere"/);
  const twin = await run(['audit', 'twin']);
  t.equal(twin.code, 2);
  t.match(twin.err, /matches 2 agents \(agt_00000000000000000001, agt_00000000000000000002\); give the agent id/);
  const reborn = await run(['audit', 'reborn']);
  t.equal(reborn.code, 1, 'resolved to the live agent, which has no report');
  t.match(reborn.err, /agt_00000000000000000004" has not reported a host audit yet/);
  t.equal((await run(['audit', 'WEB-01'])).code, 0, 'host names match case-insensitively when nothing matches exactly');
  t.equal((await run(['audit', 'agt_nope'])).code, 1, 'an unknown agent id is the API 404');
  t.equal((await run(['audit', 'web-01', '--fail-on', 'pass'])).code, 2, 'bad --fail-on level');
});

t.test('resolveAgent and renderHostAudit edge cases', async (t) => {
  const ctx = { out: () => undefined, err: () => undefined, now: () => new Date(T0), client: () => { throw new Error('unused'); }, usageError: (m: string) => new Error(m) };
  const list = async () => ({ items: [{ id: 'agt_1', hostname: 'a', status: 'online' }, { id: 'custom-id', hostname: 'b', status: 'online' }] as never });
  t.equal(await resolveAgent(ctx, 'agt_0123abcd', async () => { throw new Error('an agent id needs no listing'); }), 'agt_0123abcd');
  t.equal(await resolveAgent(ctx, 'custom-id', list), 'custom-id', 'an id of another shape is found in the list');
  const dto = {
    agentId: 'agt_1', hostname: 'a', takenAt: new Date(T0).toISOString(), receivedAt: new Date(T0).toISOString(), score: 100,
    summary: { score: 100, cis: { checks: 1, score: 1, pass: 1, warn: 0, info: 0, note: 0, percent: 100 }, lockdown: { total: 0, critical: 0, high: 0, medium: 0, low: 0, info: 0 }, fixes: { applied: 0, failed: 0 }, hygiene: null, newFindings: [], resolvedFindings: [] },
    lockdown: [], fixes: [], hygiene: null, prune: null, history: [],
    cis: { dockerbenchsecurity: '1.6.0', start: 0, tests: [{ id: '2', desc: 'd', results: [{ id: '2.2', desc: 'icc', result: 'PASS' as const }] }], checks: 1, score: 1, end: 0 },
  } satisfies HostAuditDto;
  const out = renderHostAudit(dto, new Date(T0));
  t.match(out, /^Lockdown:\s+no findings$/m);
  t.match(out, /^Fixes:\s+none enabled or due$/m);
  t.notMatch(out, /^Images:/m, 'no hygiene line without a hygiene summary');
  t.match(out, /LOCKDOWN FINDINGS\nnone\n/);
  t.match(out, /CIS WARN\nnone\n/);
  t.notMatch(out, /FIXES/);
  const failedFix = renderHostAudit({ ...dto, fixes: [{ fix: 'containerdSocketMode', path: '/run/containerd/containerd.sock', at: '', changed: false, message: 'm', error: 'EPERM' }, { fix: 'dockerSocketMode', path: '/s', at: '', changed: false, message: 'already 0660' }] }, new Date(T0));
  t.match(failedFix, /^containerdSocketMode\s+\/run\/containerd\/containerd\.sock\s+failed\s+EPERM$/m);
  t.match(failedFix, /^dockerSocketMode\s+\/s\s+not needed\s+already 0660$/m);
  const big = renderHostAudit({ ...dto, summary: { ...dto.summary, hygiene: { images: 3, stale: 1, dangling: 0, staleBytes: 5 * 1024 ** 3 } } }, new Date(T0));
  t.match(big, /1 stale \(5\.0 GiB\)/);
  t.match(renderHostAudit({ ...dto, summary: { ...dto.summary, hygiene: { images: 1, stale: 1, dangling: 0, staleBytes: 10 } } }, new Date(T0)), /1 stale \(10 B\)/);
});
