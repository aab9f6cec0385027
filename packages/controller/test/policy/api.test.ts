// The policy, violation and scan routes over real HTTPS with a real
// PolicyService and SQLite store: every route, its filters, and its errors
// (400 problems carrying file/line/column for invalid policies).
import t from 'tap';
import { bearer, get, startApi, type RawResponse } from '../api/fixtures/api-server';
import type { ViolationRecord } from '../../src/store/store';
import { send, startPolicyApi } from './fixtures/policy-api';
import { APP_DIGEST, CANDIDATE_YAML, FLEET, NOW, hex, seedFleet, trivyReport } from './fixtures/fleet';

const PROBLEM_CT = /^application\/problem\+json/;

function problem(t: tap.Test, res: RawResponse, status: number, code: string): Record<string, unknown> {
  t.equal(res.status, status, `status ${status}: ${res.text.slice(0, 300)}`);
  t.match(String(res.headers['content-type']), PROBLEM_CT, 'problem+json');
  const p = res.json as Record<string, unknown>;
  t.match(p, { type: `urn:bulkhead:error:${code}`, title: String, status, detail: String, code });
  return p;
}

function violation(id: string, over: Partial<ViolationRecord> = {}): ViolationRecord {
  return {
    id,
    agentId: FLEET.prod1,
    containerId: hex('node-exporter'),
    containerName: '/node-exporter',
    imageRef: 'prom/node-exporter:v1.8.2',
    project: '',
    ruleId: 'host.privileged',
    severity: 'critical',
    mode: 'enforce',
    source: 'reaction',
    message: 'container runs privileged; remove --privileged',
    evidenceJson: JSON.stringify([{ location: 'privileged', detail: 'container runs with --privileged' }]),
    denied: false,
    action: { type: 'kill', result: 'ok', error: '', durationMs: 18.25 },
    at: new Date(NOW.getTime() - 60_000),
    policyVersion: 2,
    exemptedBy: '',
    ...over,
  };
}

t.test('policy, violation and scan routes', async (t) => {
  const api = await startPolicyApi();
  t.teardown(() => api.close());
  await seedFleet(api.store);
  const auth = bearer(api.apiKey);
  const yaml = { ...auth, 'content-type': 'application/yaml' };

  t.test('every new route needs an API key', async (t) => {
    for (const [method, path] of [
      ['GET', '/v1/policies'],
      ['GET', '/v1/policies/versions'],
      ['PUT', '/v1/policies'],
      ['POST', '/v1/policies:dry-run'],
      ['GET', '/v1/violations'],
      ['POST', '/v1/scans'],
      ['GET', `/v1/scans/${APP_DIGEST}`],
    ] as const) {
      const res = await send(api, method, path, { body: 'x', headers: { 'content-type': 'text/yaml' } });
      problem(t, res, 401, 'BK_ERR_UNAUTHENTICATED');
    }
  });

  t.test('GET /v1/policies: the default policy in force', async (t) => {
    const res = await get(api, '/v1/policies', auth);
    t.equal(res.status, 200);
    t.equal(res.headers['cache-control'], 'no-store');
    const p = res.json as Record<string, unknown> & { rules: Array<Record<string, string>> };
    t.match(p, { version: 1, current: true, createdBy: 'init', createdAt: String, sha256: /^[0-9a-f]{64}$/, yaml: /apiVersion: bulkhead\.dev\/v1/ });
    t.ok(p.rules.length > 0);
    t.ok(p.rules.every((r) => r.mode === 'monitor' && typeof r.id === 'string' && typeof r.check === 'string' && typeof r.action === 'string'));
    problem(t, await get(api, '/v1/policies?version=99', auth), 404, 'BK_ERR_NOT_FOUND');
    problem(t, await get(api, '/v1/policies?version=zero', auth), 400, 'BK_ERR_BAD_REQUEST');
    problem(t, await get(api, '/v1/policies?verison=1', auth), 400, 'BK_ERR_BAD_REQUEST');
  });

  t.test('PUT /v1/policies: YAML, raw JSON and the {yaml} wrapper', async (t) => {
    const r1 = await send(api, 'PUT', '/v1/policies?comment=baseline%20from%20git', { body: CANDIDATE_YAML, headers: yaml });
    t.equal(r1.status, 200, r1.text);
    t.match(r1.json, { version: 2, current: true, name: 'fleet-baseline', createdBy: api.apiKeyId, comment: 'baseline from git', yaml: CANDIDATE_YAML });
    t.same((r1.json as { rules: Array<{ id: string; mode: string; action: string; check: string }> }).rules[0], {
      id: 'host.privileged',
      description: 'Containers must not run privileged.',
      severity: 'critical',
      mode: 'enforce',
      action: 'kill',
      check: 'privileged',
    });

    const doc = { apiVersion: 'bulkhead.dev/v1', kind: 'Policy', metadata: { name: 'from-json' }, spec: { rules: [] } };
    const r2 = await send(api, 'PUT', '/v1/policies', { body: JSON.stringify(doc, null, 2), headers: { ...auth, 'content-type': 'application/json' } });
    t.equal(r2.status, 200, r2.text);
    t.match(r2.json, { version: 3, name: 'from-json', rules: [] });

    const r3 = await send(api, 'PUT', '/v1/policies', {
      body: JSON.stringify({ yaml: CANDIDATE_YAML.replace('fleet-baseline', 'wrapped'), comment: 'via wrapper' }),
      headers: { ...auth, 'content-type': 'application/json; charset=utf-8' },
    });
    t.equal(r3.status, 200, r3.text);
    t.match(r3.json, { version: 4, name: 'wrapped', comment: 'via wrapper' });

    const r4 = await send(api, 'PUT', '/v1/policies', { body: CANDIDATE_YAML, headers: { ...auth, 'content-type': 'text/yaml' } });
    t.match(r4.json, { version: 5 }, 'text/yaml works too');

    const cur = await get(api, '/v1/policies', auth);
    t.match(cur.json, { version: 5, current: true });
    const old = await get(api, '/v1/policies?version=3', auth);
    t.match(old.json, { version: 3, current: false, name: 'from-json' });
  });

  t.test('PUT /v1/policies: invalid documents are 400 with every error located, and change nothing', async (t) => {
    const before = (await get(api, '/v1/policies', auth)).json as { version: number };
    const broken = CANDIDATE_YAML.replace('severity: critical\n      mode: enforce\n      action: { type: kill }', 'severity: extreme\n      mode: enforce\n      action: { type: kill }').replace(
      'maxCritical: 0',
      'maxCritical: -1',
    );
    const res = await send(api, 'PUT', '/v1/policies?filename=security/policy.yaml', { body: broken, headers: yaml });
    const p = problem(t, res, 400, 'BK_ERR_POLICY_INVALID');
    const errors = p['errors'] as Array<{ file: string; line: number; column: number; path: string; message: string }>;
    t.ok(errors.length >= 2, `all errors (${errors.length})`);
    t.match(errors.find((e) => e.path === 'spec.rules[0].severity'), { file: 'security/policy.yaml', line: 11, column: Number, message: String });
    t.ok(errors.some((e) => e.path.startsWith('spec.rules[4].check') && e.line > 40), 'the vulnerabilities threshold error has its line');
    t.match(p['detail'], /policy is invalid: \d+ errors \(first: security\/policy\.yaml:\d+:\d+: /);
    t.equal(p['instance'], '/v1/policies');

    const syntax = await send(api, 'PUT', '/v1/policies', { body: '{ "apiVersion": "bulkhead.dev/v1",\n  "kind": "Policy",,\n}', headers: { ...auth, 'content-type': 'application/json' } });
    const ps = problem(t, syntax, 400, 'BK_ERR_POLICY_INVALID');
    t.match((ps['errors'] as unknown[])[0], { file: 'policy.json', line: 2, column: Number }, 'JSON syntax errors are located in the text as sent');

    problem(t, await send(api, 'PUT', '/v1/policies', { body: '  \n', headers: yaml }), 400, 'BK_ERR_BAD_REQUEST');
    const html = await send(api, 'PUT', '/v1/policies', { body: '<p>', headers: { ...auth, 'content-type': 'text/html' } });
    t.equal(html.status, 415, 'unsupported media type');
    t.equal((await get(api, '/v1/policies', auth)).json && ((await get(api, '/v1/policies', auth)).json as { version: number }).version, before.version, 'nothing applied');
    t.match(api.logs(), /policy rejected/);
  });

  t.test('GET /v1/policies/versions', async (t) => {
    const res = await get(api, '/v1/policies/versions', auth);
    t.equal(res.status, 200);
    const { items } = res.json as { items: Array<{ version: number; current: boolean; createdBy: string; comment: string }> };
    t.same(items.map((v) => v.version), [5, 4, 3, 2, 1]);
    t.same(items.map((v) => v.current), [true, false, false, false, false]);
    t.equal(items[3]!.comment, 'baseline from git');
    t.equal(items[4]!.createdBy, 'init');
    t.notOk('yaml' in items[0]!, 'no documents in the listing');
  });

  t.test('POST /v1/policies:dry-run', async (t) => {
    const before = await api.store.listPolicyVersions();
    const res = await send(api, 'POST', '/v1/policies:dry-run', { body: CANDIDATE_YAML, headers: yaml });
    t.equal(res.status, 200, res.text);
    const r = res.json as { policyName: string; rules: Array<{ ruleId: string; hits: Array<{ containerName: string; agentId: string }> }>; totals: Record<string, number> };
    t.equal(r.policyName, 'fleet-baseline');
    t.same(r.rules.find((x) => x.ruleId === 'host.privileged')!.hits.map((h) => h.containerName), ['/node-exporter', '/cadvisor']);
    t.match(r.totals, { agents: 3, containers: 9, findings: 8, exempted: 1 }, 'no scan uploaded yet: the vulnerability rule has nothing to read');
    t.same(await api.store.listPolicyVersions(), before, 'nothing applied');

    const bad = await send(api, 'POST', '/v1/policies:dry-run?filename=candidate.yaml', { body: 'apiVersion: v0\n', headers: yaml });
    const p = problem(t, bad, 400, 'BK_ERR_POLICY_INVALID');
    t.match((p['errors'] as unknown[])[0], { file: 'candidate.yaml', line: Number, column: Number });
    const encoded = await send(api, 'POST', '/v1/policies%3Adry-run', { body: CANDIDATE_YAML, headers: yaml });
    t.equal(encoded.status, 404, 'the colon is literal');
  });

  t.test('POST /v1/scans and GET /v1/scans/:digest', async (t) => {
    // Pad the report past the 64 KiB default body limit, as real reports are.
    const report = trivyReport();
    (report['Metadata'] as Record<string, unknown>)['DiffIDs'] = Array.from({ length: 2000 }, (_, i) => 'sha256:' + hex(`layer${i}`));
    const body = JSON.stringify(report);
    t.ok(body.length > 64 * 1024);
    const up = await send(api, 'POST', '/v1/scans', { body, headers: { ...auth, 'content-type': 'application/json' } });
    t.equal(up.status, 201, up.text);
    t.equal(up.headers['location'], `/v1/scans/${encodeURIComponent(APP_DIGEST)}`);
    t.match(up.json, {
      digest: APP_DIGEST,
      scanner: 'trivy',
      scannedAt: '2026-03-09T22:15:04.123Z',
      uploadedAt: NOW.toISOString(),
      artifactName: `registry.example.com/shop/app@${APP_DIGEST}`,
      imageId: /^sha256:/,
      repoDigests: [`registry.example.com/shop/app@${APP_DIGEST}`],
      counts: { critical: 1, high: 0, medium: 0, low: 1, unknown: 0 },
      fixable: 1,
    });
    for (const path of [`/v1/scans/${APP_DIGEST}`, `/v1/scans/${encodeURIComponent(APP_DIGEST)}`]) {
      const g = await get(api, path, auth);
      t.equal(g.status, 200);
      t.same((g.json as { vulnerabilities: unknown[] }).vulnerabilities, [
        { id: 'CVE-2024-45491', severity: 'critical', fixable: true, cvss: 9.8, pkg: 'libexpat1' },
        { id: 'CVE-2024-2511', severity: 'low', fixable: false, cvss: 3.7, pkg: 'openssl' },
      ]);
    }
    problem(t, await get(api, `/v1/scans/sha256:${'0'.repeat(64)}`, auth), 404, 'BK_ERR_NOT_FOUND');
    const notTrivy = await send(api, 'POST', '/v1/scans', { body: JSON.stringify({ Results: 'nope' }), headers: { ...auth, 'content-type': 'application/json' } });
    const p = problem(t, notTrivy, 400, 'BK_ERR_BAD_REQUEST');
    t.match(p['detail'], /Trivy/);
    problem(t, await send(api, 'POST', '/v1/scans', { body: '[1,2]', headers: { ...auth, 'content-type': 'application/json' } }), 400, 'BK_ERR_BAD_REQUEST');

    // The dry-run now sees the scan.
    const dr = await send(api, 'POST', '/v1/policies:dry-run', { body: CANDIDATE_YAML, headers: yaml });
    const vuln = (dr.json as { rules: Array<{ ruleId: string; hits: Array<{ containerName: string }> }> }).rules.find((r) => r.ruleId === 'image.critical-vulns')!;
    t.same(vuln.hits.map((h) => h.containerName), ['/app']);
  });

  t.test('GET /v1/violations: filters, paging, newest first', async (t) => {
    await api.store.insertViolation(violation('r1', { at: new Date(NOW.getTime() - 3_600_000) }));
    await api.store.insertViolation(violation('r2', { source: 'authz', denied: true, action: { type: '', result: '', error: '', durationMs: 0 }, containerId: hex('x'), containerName: '/x', at: new Date(NOW.getTime() - 120_000) }));
    await api.store.insertViolation(violation('r3', { agentId: FLEET.dev1, ruleId: 'image.no-latest', severity: 'medium', mode: 'monitor', action: { type: '', result: '', error: '', durationMs: 0 }, containerName: '/legacy-batch', containerId: hex('legacy-batch'), exemptedBy: 'platform-team: legacy batch job', project: 'batch', at: new Date(NOW.getTime() - 30_000) }));
    await api.store.insertViolation(violation('r4', { evidenceJson: 'not json', at: new Date(NOW.getTime() - 10_000) }));

    const all = await get(api, '/v1/violations', auth);
    t.equal(all.status, 200);
    const page = all.json as { items: Array<Record<string, unknown>>; limit: number; offset: number; nextOffset: number | null };
    t.same(page.items.map((v) => v.id), ['r4', 'r3', 'r2', 'r1']);
    t.same([page.limit, page.offset, page.nextOffset], [100, 0, null]);
    t.same(page.items[3], {
      id: 'r1',
      agentId: FLEET.prod1,
      containerId: hex('node-exporter'),
      containerName: '/node-exporter',
      imageRef: 'prom/node-exporter:v1.8.2',
      project: '',
      ruleId: 'host.privileged',
      severity: 'critical',
      mode: 'enforce',
      source: 'reaction',
      message: 'container runs privileged; remove --privileged',
      evidence: [{ location: 'privileged', detail: 'container runs with --privileged' }],
      denied: false,
      action: { type: 'kill', result: 'ok', error: '', durationMs: 18.25 },
      at: new Date(NOW.getTime() - 3_600_000).toISOString(),
      policyVersion: 2,
      exemptedBy: '',
      acknowledged: false,
      acknowledgement: null,
    });
    t.equal(page.items[2]!['action'], null, 'a denial has no action');
    t.match(page.items[0]!['evidence'], [{ location: 'evidence', detail: /not a JSON array/ }], 'unreadable evidence is explained, not a 500');

    const ids = async (q: string) => ((await get(api, `/v1/violations?${q}`, auth)).json as { items: Array<{ id: string }> }).items.map((v) => v.id);
    t.same(await ids(`agent=${FLEET.dev1}`), ['r3']);
    t.same(await ids('container=node-exporter'), ['r4', 'r1']);
    t.same(await ids(`container=${hex('x').slice(0, 12)}`), ['r2']);
    t.same(await ids('rule=image.no-latest'), ['r3']);
    t.same(await ids('severity=critical'), ['r4', 'r2', 'r1']);
    t.same(await ids('mode=monitor'), ['r3']);
    t.same(await ids('source=authz'), ['r2']);
    t.same(await ids('project=batch'), ['r3']);
    t.same(await ids('denied=true'), ['r2']);
    t.same(await ids(`since=${encodeURIComponent(new Date(NOW.getTime() - 120_000).toISOString())}`), ['r4', 'r3', 'r2']);
    t.same(await ids(`until=${encodeURIComponent(new Date(NOW.getTime() - 30_000).toISOString())}`), ['r2', 'r1']);
    const p1 = (await get(api, '/v1/violations?limit=3', auth)).json as { items: Array<{ id: string }>; nextOffset: number | null };
    t.same([p1.items.map((v) => v.id), p1.nextOffset], [['r4', 'r3', 'r2'], 3]);
    t.same(await ids('limit=3&offset=3'), ['r1']);

    problem(t, await get(api, '/v1/violations?severity=urgent', auth), 400, 'BK_ERR_BAD_REQUEST');
    problem(t, await get(api, '/v1/violations?since=yesterday', auth), 400, 'BK_ERR_BAD_REQUEST');
    problem(t, await get(api, '/v1/violations?rules=x', auth), 400, 'BK_ERR_BAD_REQUEST');
    problem(t, await get(api, '/v1/violations?limit=1001', auth), 400, 'BK_ERR_BAD_REQUEST');
  });

  t.test("GET /v1/agents shows each agent's applied policy version", async (t) => {
    await api.store.setAgentPolicyStatus({ agentId: FLEET.prod1, version: 5, applied: true, error: '', updatedAt: NOW });
    await api.store.setAgentPolicyStatus({ agentId: FLEET.dev1, version: 5, applied: false, error: 'bundle sha256 mismatch', updatedAt: NOW });
    const { items } = (await get(api, '/v1/agents', auth)).json as { items: Array<{ id: string; policy: unknown }> };
    const byId = Object.fromEntries(items.map((a) => [a.id, a.policy]));
    t.same(byId[FLEET.prod1], { version: 5, applied: true, error: '', updatedAt: NOW.toISOString() });
    t.same(byId[FLEET.dev1], { version: 5, applied: false, error: 'bundle sha256 mismatch', updatedAt: NOW.toISOString() });
    t.equal(byId[FLEET.prod2], null, 'no report yet');
    const one = (await get(api, `/v1/agents/${FLEET.prod1}`, auth)).json as { policy: { version: number } };
    t.equal(one.policy.version, 5);
  });
});

t.test('without a policy service the policy routes answer 503', async (t) => {
  // Uploading a scan needs the operator role (issue 5).
  const api = await startApi({ role: 'operator' });
  t.teardown(() => api.close());
  const auth = bearer(api.apiKey);
  problem(t, await get(api, '/v1/policies', auth), 503, 'BK_ERR_NOT_READY');
  problem(t, await send(api, 'POST', '/v1/scans', { body: JSON.stringify(trivyReport()), headers: { ...auth, 'content-type': 'application/json' } }), 503, 'BK_ERR_NOT_READY');
  const v = await get(api, '/v1/violations', auth);
  t.equal(v.status, 200, 'violations need only the store');
});
