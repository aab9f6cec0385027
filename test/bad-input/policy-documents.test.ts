// Hostile policy documents and scanner reports sent to a running controller (real HTTPS, real
// PolicyService, real SQLite): each is refused with its documented code and limit
// (docs/limits.md), the refusal is quick, and the controller keeps answering meanwhile — a
// canary request sent every 25 ms must never wait a second. Before these limits the same
// inputs stalled the controller for 2 to 110 seconds; alone on an idle core the refusals take
// tens of milliseconds, and the bounds are wide because CI shares two cores between suites.
import t, { type Test } from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { createLogger } from '@bulkhead/shared';
import { createApiServer } from '../../packages/controller/src/api/server';
import { generateApiKey } from '../../packages/controller/src/api/api-keys';
import { openStore } from '../../packages/controller/src/store/open-store';
import { PolicyService } from '../../packages/controller/src/policy/policy-service';
import { MAX_POLICY_BUNDLE_BYTES } from '../../packages/controller/src/policy/policy-bundle';
import { DEFAULT_MAX_RECEIVE_MESSAGE_BYTES } from '../../packages/agent/src/link/controller-link';
import { SCAN_BODY_LIMIT } from '../../packages/controller/src/api/routes/scans';
import { POLICY_BODY_LIMIT } from '../../packages/controller/src/api/routes/policies';
import { POLICY_DOCUMENT_LIMITS } from '../../packages/shared/src/policy/parse';
import { TRIVY_REPORT_LIMITS } from '../../packages/shared/src/policy/trivy';
import { httpsRequest, testPki, type RawResponse } from '../../packages/controller/test/api/fixtures/api-server';
import { APP_DIGEST, trivyReport } from '../../packages/controller/test/policy/fixtures/fleet';
import { recordBadInput } from '../helpers/bad-input-report';

/**
 * What the tests fail on: nobody else answered for seconds. Ordinary canaries took up to
 * 2.3 s under CI load on two shared cores; the freezes these inputs caused before their limits
 * existed lasted minutes. The tighter figures go to the bad-input report (RELIABILITY.md).
 */
const STALL_MS = 5000;

const HEAD = 'apiVersion: bulkhead.dev/v1\nkind: Policy\nmetadata: {name: x}\nspec:\n  rules:\n';
const RULE = (i: number, check = '{type: privileged}') =>
  `  - id: r${i}\n    description: d\n    severity: low\n    mode: monitor\n    action: {type: alert}\n    check: ${check}\n`;

interface Controller {
  send(method: string, path: string, body?: string, contentType?: string, headers?: Record<string, string>): Promise<RawResponse>;
  policy: PolicyService;
  close(): Promise<void>;
}

async function startController(opts: { maxBundleBytes?: number } = {}): Promise<Controller> {
  const dir = mkdtempSync(join(tmpdir(), 'bk-bad-input-'));
  const { ca, server } = await testPki();
  const store = await openStore({ kind: 'sqlite', path: join(dir, 'controller.db') });
  const logger = createLogger({ name: 'bad-input', level: 'warn', destination: { write: () => undefined } });
  const policy = await PolicyService.create({ store, logger, ...opts });
  const { record, plaintext } = generateApiKey('test', 'admin');
  await store.insertApiKey(record);
  const app = await createApiServer({ store, tls: server, logger, policy });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const url = `https://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
  return {
    policy,
    send: (method, path, body, contentType = 'application/yaml', headers = {}) =>
      httpsRequest(`${url}${path}`, ca.certPem, method, {
        ...(body !== undefined ? { body } : {}),
        headers: { authorization: `Bearer ${plaintext}`, ...(body !== undefined ? { 'content-type': contentType } : {}), ...headers },
      }),
    close: async () => {
      await app.close();
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Sends `request` while a canary GET /healthz goes out every 25 ms; returns the answer, how
 * long it took and the slowest canary (a stalled event loop shows up there).
 */
async function withCanary(c: Controller, request: () => Promise<RawResponse>): Promise<{ res: RawResponse; ms: number; canaryMs: number }> {
  let done = false;
  let canaryMs = 0;
  // The controller runs in this process, so a stalled event loop delays the canary's timer as
  // well as its request: each round is measured whole, less its 25 ms pause.
  const canary = (async () => {
    while (!done) {
      const start = performance.now();
      const r = await c.send('GET', '/healthz');
      if (r.status !== 200) throw new Error(`canary answered ${r.status}`);
      await new Promise((r) => setTimeout(r, 25));
      canaryMs = Math.max(canaryMs, performance.now() - start - 25);
    }
  })();
  const start = performance.now();
  const res = await request();
  const ms = performance.now() - start;
  done = true;
  await canary;
  return { res, ms, canaryMs };
}

function refusedWith(t: Test, r: { res: RawResponse; ms: number; canaryMs: number }, status: number, code: string, detail: RegExp | string, bounds = { ms: 2000, canaryMs: 1000 }): Record<string, unknown> {
  t.equal(r.res.status, status, r.res.text.slice(0, 300));
  const p = r.res.json as Record<string, unknown>;
  t.match(p, { code, detail });
  // The bounds are the report's; the tests fail on a stall (CI shares two cores: see STALL).
  t.ok(r.ms < Math.max(bounds.ms * 3, STALL_MS), `answered in ${r.ms.toFixed(0)} ms (report bound ${bounds.ms})`);
  t.ok(r.canaryMs < Math.max(bounds.canaryMs * 3, STALL_MS), `slowest canary ${r.canaryMs.toFixed(0)} ms (report bound ${bounds.canaryMs})`);
  record(t, r, `${status} ${code}`, r.res.status === status && p?.['code'] === code, bounds.canaryMs);
  return p;
}

/** Figures for RELIABILITY.md (BK_BADINPUT_REPORT); the subtest's name says what was sent. */
function record(t: Test, r: { res: RawResponse; ms: number; canaryMs: number }, expected: string, ok: boolean, canaryBound = 1000): void {
  const code = (r.res.json as { code?: string } | undefined)?.code ?? '';
  recordBadInput({
    category: /scanner reports/.test(t.fullname) ? 'reports' : 'documents', input: t.name, expected, got: `${r.res.status} ${code}`.trim(),
    refusedAsDocumented: ok, ms: r.ms, canaryMs: r.canaryMs, stalled: r.canaryMs >= canaryBound,
  });
}

t.test('policy documents', async (t) => {
  const c = await startController();
  t.teardown(() => c.close());

  t.test('alias amplification: a 1 MiB document expanding to ~90 MB', async (t) => {
    const doc = `${HEAD}${RULE(0)}x-blob: &b |\n  ${'y'.repeat(900 * 1024)}\nx-copies: [${Array(100).fill('*b').join(', ')}]\n`;
    for (const [method, path] of [['PUT', '/v1/policies'], ['POST', '/v1/policies:dry-run']] as const) {
      const p = refusedWith(t, await withCanary(c, () => c.send(method, path, doc)), 400, 'BK_ERR_POLICY_INVALID', /policy is invalid: 1 error/);
      t.match((p.errors as unknown[])[0], { line: 14, message: /aliases expanded the document is over 2 MiB/ });
    }
    t.equal(c.policy.current().record.version, 1, 'nothing was applied');
  });

  t.test('over the body limit: 413 before any parsing', async (t) => {
    t.equal(POLICY_BODY_LIMIT, POLICY_DOCUMENT_LIMITS.maxBytes, 'the route and the parser agree');
    const doc = `${HEAD}${Array.from({ length: 9000 }, (_, i) => RULE(i)).join('')}`;
    t.ok(doc.length > POLICY_BODY_LIMIT);
    const r = await withCanary(c, () => c.send('POST', '/v1/policies:dry-run', doc));
    t.equal(r.res.status, 413);
    t.ok(r.canaryMs < STALL_MS, `slowest canary ${r.canaryMs.toFixed(0)} ms (report bound 1000)`);
    record(t, r, '413', r.res.status === 413);
  });

  t.test('a 500k-deep flow sequence', async (t) => {
    const doc = `${HEAD}${RULE(0)}x: ${'['.repeat(500_000)}${']'.repeat(500_000)}\n`;
    const p = refusedWith(t, await withCanary(c, () => c.send('POST', '/v1/policies:dry-run', doc)), 400, 'BK_ERR_POLICY_INVALID', /nested more than 32 deep/);
    t.equal((p.errors as unknown[]).length, 1);
  });

  t.test('many wrong items: at most 50 errors and a count of the rest', async (t) => {
    const doc = `${HEAD}${RULE(0)}    scope: {images: [${Array(9000).fill('1').join(',')}]}\n`;
    const r = await withCanary(c, () => c.send('PUT', '/v1/policies', doc));
    // The largest document the entry limit lets through: about 10,000 YAML nodes to parse.
    const p = refusedWith(t, r, 400, 'BK_ERR_POLICY_INVALID', /policy is invalid: 51 errors/, { ms: 3000, canaryMs: 2000 });
    const errors = p.errors as Array<{ message: string }>;
    t.equal(errors.length, 51);
    t.match(errors[50]!.message, /validation stopped after 50 errors; at least \d+ more were left out/);
    t.ok(r.res.text.length < 20_000, `response is ${r.res.text.length} bytes`);
  });

  t.test('values out of range and a raw NUL', async (t) => {
    const limits = `${HEAD}${RULE(0).replace('{type: alert}', '{type: limit, limits: {memory: 1e23, cpus: 1e308, pids: 1e300}}')}`;
    let p = refusedWith(t, await withCanary(c, () => c.send('PUT', '/v1/policies', limits)), 400, 'BK_ERR_POLICY_INVALID', /3 errors/);
    t.match(p.errors, [
      { path: 'spec.rules[0].action.limits.memory', message: /out of range: at most 1 PiB/ },
      { path: 'spec.rules[0].action.limits.cpus', message: /out of range: 0\.01 to 4096/ },
      { path: 'spec.rules[0].action.limits.pids', message: /out of range: 1 to 4194304/ },
    ]);
    p = refusedWith(t, await withCanary(c, () => c.send('PUT', '/v1/policies', HEAD.replace('name: x', 'name: x\u0000') + RULE(0))), 400, 'BK_ERR_POLICY_INVALID', /control character U\+0000/);
    t.match(p.errors, [{ line: 3, column: 19 }]);
  });

  t.test('too many rules', async (t) => {
    const rules = Array.from({ length: 501 }, (_, i) => `{id: r${i}, description: d, severity: low, mode: monitor, action: {type: alert}, check: {type: privileged}}`);
    const doc = `${HEAD.replace('rules:\n', 'rules: [')}${rules.join(',\n    ')}]\n`;
    const r = await withCanary(c, () => c.send('POST', '/v1/policies:dry-run', doc));
    // Refused only once parsed: about 5,000 YAML nodes.
    refusedWith(t, r, 400, 'BK_ERR_POLICY_INVALID', /501 rules; at most 500 are allowed/, { ms: 3000, canaryMs: 2000 });
    t.match(r.res.json, { errors: [{ path: 'spec.rules', message: '501 rules; at most 500 are allowed' }] });
  });
});

t.test('scanner reports', async (t) => {
  const c = await startController();
  t.teardown(() => c.close());
  const report = trivyReport() as Record<string, unknown> & { Results: Array<{ Vulnerabilities: Array<Record<string, unknown>> }> };
  const { Results: _results, ...rest } = report;
  const head = `${JSON.stringify(rest).slice(0, -1)},"Results":`;
  const entry = (i: number) => `{"VulnerabilityID":"CVE-2024-${i}","PkgName":"p","InstalledVersion":"1","FixedVersion":"2","Severity":"LOW","CVSS":{"nvd":{"V3Score":3.1}}}`;

  t.test('the body limit is the documented one', async (t) => {
    t.equal(SCAN_BODY_LIMIT, TRIVY_REPORT_LIMITS.maxBytes);
    // A valid 60 MB report with 1M vulnerabilities. The client and the controller share this
    // process, so only its first megabyte is built and sent, under the whole report's length
    // (encrypting and collecting 60 MB here would stall the canary on the client's account).
    // The controller answers on the declared length without reading the body.
    const prefix = `${head}[{"Target":"t","Vulnerabilities":[${Array(15_000).fill(entry(1)).join(',')}`;
    const length = head.length + '[{"Target":"t","Vulnerabilities":['.length + 1_000_000 * (entry(1).length + 1) + ']}]}'.length - 1;
    t.ok(length > 60_000_000);
    const r = await withCanary(c, () => c.send('POST', '/v1/scans', prefix, 'application/json', { 'content-length': String(length) }));
    t.equal(r.res.status, 413, r.res.text.slice(0, 200));
    t.ok(r.canaryMs < STALL_MS, `slowest canary ${r.canaryMs.toFixed(0)} ms (report bound 1000)`);
    record(t, r, '413', r.res.status === 413);
  });

  t.test('more vulnerabilities than the limit: refused before JSON.parse', async (t) => {
    const n = TRIVY_REPORT_LIMITS.maxVulnerabilities + 1;
    const body = `${head}[{"Target":"t","Vulnerabilities":[${Array.from({ length: n }, (_, i) => entry(i)).join(',')}]}]}`;
    refusedWith(t, await withCanary(c, () => c.send('POST', '/v1/scans', body, 'application/json')), 413, 'BK_ERR_TOO_LARGE', `more than ${TRIVY_REPORT_LIMITS.maxVulnerabilities} vulnerabilities`);
  });

  t.test('5M levels of nesting', async (t) => {
    const body = `{"x":${'['.repeat(5_000_000)}${']'.repeat(5_000_000)}}`;
    refusedWith(t, await withCanary(c, () => c.send('POST', '/v1/scans', body, 'application/json')), 400, 'BK_ERR_BAD_REQUEST', /nested more than 64 levels/);
  });

  t.test('CVSS scores outside 0..10', async (t) => {
    for (const score of ['1e308', '-5']) {
      const body = JSON.stringify(report).replace('"V3Score":9.8', `"V3Score":${score}`);
      refusedWith(t, await withCanary(c, () => c.send('POST', '/v1/scans', body, 'application/json')), 400, 'BK_ERR_BAD_REQUEST', /Results\[0\]\.Vulnerabilities\[0\]\.CVSS\.nvd\.V3Score is .*; a CVSS score is a number from 0 to 10/);
    }
  });

  t.test('a report at the limit is stored, and reads back quickly with its documented shape', async (t) => {
    const n = TRIVY_REPORT_LIMITS.maxVulnerabilities;
    const body = `${head}[{"Target":"t","Vulnerabilities":[${Array.from({ length: n }, (_, i) => entry(i)).join(',')}]}]}`;
    const up = await withCanary(c, () => c.send('POST', '/v1/scans', body, 'application/json'));
    t.equal(up.res.status, 201, up.res.text.slice(0, 300));
    t.ok(up.ms < 5000, `upload answered in ${up.ms.toFixed(0)} ms`);
    record(t, up, '201 (accepted at the limit)', up.res.status === 201);
    const start = performance.now();
    const r = await c.send('GET', `/v1/scans/${APP_DIGEST}`);
    t.ok(performance.now() - start < 2000, `read back in ${(performance.now() - start).toFixed(0)} ms`);
    t.equal(r.status, 200);
    t.match(r.json, { digest: APP_DIGEST, counts: { low: n, critical: 0 }, fixable: n });
    t.equal((r.json as { vulnerabilities: unknown[] }).vulnerabilities.length, n);
    t.ok(Buffer.byteLength(c.policy.bundle().scansJson) < 3 * 1024 * 1024, 'its summary fits the bundle budget');
  });
});

t.test('policy bundles: sized at PUT against what agents receive', async (t) => {
  // The agent's receive limit (its default; ControllerLink passes it to grpc-js as
  // grpc.max_receive_message_length) is the controller's send limit.
  t.equal(DEFAULT_MAX_RECEIVE_MESSAGE_BYTES, MAX_POLICY_BUNDLE_BYTES, 'the agent receives what the controller may send');

  // A small limit stands in for 8 MiB so the test stays small: scans ~45 KB, then a policy
  // that fits alone but not beside them.
  const c = await startController({ maxBundleBytes: 64 * 1024 });
  t.teardown(() => c.close());
  for (let i = 0; i < 8; i++) {
    const rep = trivyReport(`sha256:${String(i).repeat(64).slice(0, 64)}`) as { Results: Array<{ Vulnerabilities: unknown[] }> };
    rep.Results[0]!.Vulnerabilities = Array.from({ length: 80 }, (_, j) => ({ VulnerabilityID: `CVE-2024-${j}`, PkgName: 'p', Severity: 'LOW' }));
    t.equal((await c.send('POST', '/v1/scans', JSON.stringify(rep), 'application/json')).status, 201);
  }
  const scans = Buffer.byteLength(c.policy.bundle().scansJson);
  t.ok(scans > 30_000, `scans take ${scans} bytes`);
  const big = `${HEAD}${Array.from({ length: 200 }, (_, i) => RULE(i)).join('')}`;
  for (const [method, path] of [['PUT', '/v1/policies'], ['POST', '/v1/policies:dry-run']] as const) {
    const r = await c.send(method, path, big);
    t.equal(r.status, 413, r.text.slice(0, 300));
    t.match(r.json, { code: 'BK_ERR_BUNDLE_TOO_LARGE', detail: /agents receive at most 65536 bytes/ });
  }
  t.equal(c.policy.current().record.version, 1, 'the refused policy was not applied');
  t.equal((await c.send('PUT', '/v1/policies', `${HEAD}${RULE(0)}`)).status, 200, 'a policy that fits beside the scans is applied');
  t.ok(Buffer.byteLength(c.policy.bundle().policyJson) + scans + 1024 <= 64 * 1024);
});
