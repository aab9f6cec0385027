// deploy/ci/scan-and-upload.sh against a real controller API (real TLS on 127.0.0.1:0, SQLite,
// PolicyService), uploading with curl as CI would; then the uploaded report — for a digest no
// host runs — judges a create of that digest through a real agent PolicyHolder and the one
// evaluator: `vulnerabilities` with the scan on record, `not-scanned` with maxAgeDays by the
// report's age.
//
// Trivy itself cannot run here (no network for its vulnerability database), so a stand-in
// executable given as TRIVY writes a real Trivy report (the nginx:1.25.3 fixture, as trivy
// 0.49 wrote it) where `--output` says and records the arguments it was given.
import t from 'tap';
import { execFile } from 'node:child_process';
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createLogger, type ContainerFacts__Output } from '../packages/shared/src/index';
import { initPki } from '../packages/controller/src/pki/data-dir';
import { openStore } from '../packages/controller/src/store/open-store';
import { createApiServer } from '../packages/controller/src/api/server';
import { generateApiKey } from '../packages/controller/src/api/api-keys';
import { PolicyService } from '../packages/controller/src/policy/policy-service';
import type { ScanDto } from '../packages/controller/src/api/routes/scans';
import { PolicyHolder } from '../packages/agent/src/policy/policy-holder';
import { evaluateFacts } from '../packages/agent/src/policy/policy-evaluation';

const SCRIPT = join(__dirname, '..', 'deploy', 'ci', 'scan-and-upload.sh');
const FIXTURE = join(__dirname, '..', 'packages', 'shared', 'test', 'policy', 'fixtures', 'trivy-nginx-1.25.3.json');
const DIGEST = 'sha256:4c0fdaa8b6341bfdeca5f18f7837462c80cff90527ee35ef185571e1c327beac';
const silent = createLogger({ name: 'test', level: 'silent' });

function run(env: Record<string, string>, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile('bash', [SCRIPT, ...args], { env: { PATH: '/usr/bin:/bin', ...env }, timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr });
    });
  });
}

const policyYaml = (maxAgeDays: number) => `apiVersion: bulkhead.dev/v1
kind: Policy
metadata: { name: registry-scans }
spec:
  rules:
    - id: images.vulnerabilities
      description: no critical vulnerabilities
      severity: high
      mode: enforce
      action: { type: alert }
      check: { type: vulnerabilities, maxCritical: 0 }
    - id: images.not-scanned
      description: a recent scan on record
      severity: medium
      mode: enforce
      action: { type: alert }
      check: { type: not-scanned, maxAgeDays: ${maxAgeDays} }
`;

t.test('scan-and-upload.sh uploads a report for a digest no host runs; the create is judged with it', async (t) => {
  const dir = t.testdir();
  const pki = await initPki(join(dir, 'ctl'), ['localhost', '127.0.0.1']);
  const caFile = join(dir, 'api-ca.crt');
  writeFileSync(caFile, pki.ca.certPem);
  const store = await openStore({ kind: 'sqlite', path: join(dir, 'ctl', 'bulkhead.db') });
  t.teardown(() => store.close());
  const policy = await PolicyService.create({ store, logger: silent });
  const app = await createApiServer({ store, tls: pki.server, logger: silent, policy });
  await app.listen({ host: '127.0.0.1', port: 0 });
  t.teardown(() => app.close());
  const port = (app.server.address() as { port: number }).port;
  // The upload-only key the docs tell CI to use, minted through the API as
  // `bulkhead keys create ci-scan-upload --role operator --only scans.upload --expires 365d` does.
  const admin = generateApiKey('root', 'admin');
  await store.insertApiKey(admin.record);
  const minted = await app.inject({
    method: 'POST', url: '/v1/keys', headers: { authorization: `Bearer ${admin.plaintext}` },
    payload: { name: 'ci-scan-upload', role: 'operator', actions: ['scans.upload'], expiresIn: '365d' },
  });
  t.equal(minted.statusCode, 201, minted.body);
  const operator = { plaintext: (JSON.parse(minted.body) as { key: string }).key };
  const viewer = generateApiKey('ci-viewer', 'viewer');
  await store.insertApiKey(viewer.record);
  const base = { BULKHEAD_CONTROLLER: `https://127.0.0.1:${port}`, BULKHEAD_CA: caFile };

  // The stand-in scanner: writes the fixture to --output, records its arguments.
  const argsFile = join(dir, 'trivy-args');
  const trivy = join(dir, 'trivy');
  writeFileSync(trivy, `#!/bin/bash\nprintf '%s\\n' "$@" > ${argsFile}\nwhile [[ $# -gt 0 ]]; do if [[ "$1" == --output ]]; then cp ${FIXTURE} "$2"; fi; shift; done\n`);
  chmodSync(trivy, 0o755);

  const noTrivy = await run({ ...base, BULKHEAD_API_KEY: operator.plaintext, TRIVY: join(dir, 'no-such-trivy') }, ['nginx:1.25.3']);
  t.equal(noTrivy.code, 3, 'trivy missing: exit 3');
  t.match(noTrivy.stderr, /trivy is not installed \(looked for ".*no-such-trivy"\): install it/);

  const noKey = await run({ ...base, TRIVY: trivy }, ['nginx:1.25.3']);
  t.equal(noKey.code, 2, 'no API key: usage error');
  t.match(noKey.stderr, /set BULKHEAD_API_KEY/);

  const viewerRun = await run({ ...base, BULKHEAD_API_KEY: viewer.plaintext, TRIVY: trivy }, ['nginx:1.25.3']);
  t.equal(viewerRun.code, 1, 'a viewer key cannot upload');
  t.match(viewerRun.stderr, /the controller refused the report \(HTTP 403\).*BK_ERR_FORBIDDEN/);
  t.equal(await store.getScan(DIGEST), undefined);

  const ok = await run({ ...base, BULKHEAD_API_KEY: operator.plaintext, TRIVY: trivy }, ['nginx:1.25.3', '--', '--skip-db-update']);
  t.equal(ok.code, 0, ok.stderr);
  t.match(ok.stdout, `stored scan of nginx:1.25.3: ${DIGEST} {"critical":2,"high":3,"medium":1,"low":2,"unknown":1}`);
  t.notMatch(ok.stdout + ok.stderr, operator.plaintext, 'the key is never printed');
  const args = readFileSync(argsFile, 'utf8').trim().split('\n');
  t.same(args.slice(0, 4), ['image', '--quiet', '--format', 'json']);
  t.same(args.slice(-2), ['--skip-db-update', 'nginx:1.25.3'], 'extra trivy args, then the image');

  // Stored for a digest no host runs, with its age.
  t.same(await store.listContainers({}), [], 'no host runs anything');
  const scan = await store.getScan(DIGEST);
  t.ok(scan, 'stored under the repo digest');
  const got = await app.inject({ method: 'GET', url: `/v1/scans/${DIGEST}`, headers: { authorization: `Bearer ${viewer.plaintext}` } });
  const dto = JSON.parse(got.body) as ScanDto;
  t.equal(dto.scannedAt, '2026-02-20T09:14:03.512Z', 'the age counts from the report\'s CreatedAt');
  const expectedAge = (Date.now() - Date.parse(dto.scannedAt)) / 86_400_000;
  t.ok(Math.abs(dto.ageDays - expectedAge) < 0.02, `ageDays ${dto.ageDays} ≈ ${expectedAge.toFixed(2)}`);
  const readBack = await app.inject({ method: 'GET', url: `/v1/scans/${DIGEST}`, headers: { authorization: `Bearer ${operator.plaintext}` } });
  t.equal(readBack.statusCode, 403, 'the upload-only key cannot even read the report back');

  // The first create of that digest, on an agent holding the controller's bundle.
  const holder = PolicyHolder.open({ stateDir: join(dir, 'agent'), logger: silent });
  const create = (ref: string, repoDigest: string): ContainerFacts__Output =>
    ({ id: '', name: 'web', imageRef: ref, imageDigest: repoDigest, imageId: '', labels: {}, state: '' }) as unknown as ContainerFacts__Output;
  const apply = async (maxAgeDays: number) => {
    const r = await app.inject({ method: 'PUT', url: '/v1/policies', headers: { authorization: `Bearer ${operator.plaintext}`, 'content-type': 'application/yaml' }, payload: policyYaml(maxAgeDays) });
    if (r.statusCode === 403) {
      const admin = generateApiKey('admin', 'admin');
      await store.insertApiKey(admin.record);
      const r2 = await app.inject({ method: 'PUT', url: '/v1/policies', headers: { authorization: `Bearer ${admin.plaintext}`, 'content-type': 'application/yaml' }, payload: policyYaml(maxAgeDays) });
      t.equal(r2.statusCode, 200, r2.body);
    }
    t.same(holder.apply(policy.bundle()), { applied: true });
  };
  await apply(3650);
  const findings = (f: ContainerFacts__Output) => evaluateFacts(holder.state, f, undefined, undefined, new Date()).map((x) => `${x.ruleId}: ${x.evidence.map((e) => e.detail).join('; ')}`);
  t.same(findings(create('nginx:1.25.3', `docker.io/library/nginx@${DIGEST}`)), [
    `images.vulnerabilities: 2 critical vulnerabilities (max 0): CVE-2024-45492, CVE-2024-5535`,
  ], 'judged with the scan on record: its vulnerabilities, and it counts as scanned');
  t.match(findings(create('nginx:1.27', `docker.io/library/nginx@sha256:${'9'.repeat(64)}`)), [/^images\.not-scanned: image .* has no vulnerability scan on record$/], 'another digest has none');

  // A rule that rejects reports older than 30 days: this one is ~290 days old.
  await apply(30);
  const stale = findings(create('nginx:1.25.3', `docker.io/library/nginx@${DIGEST}`));
  t.equal(stale.length, 2);
  t.match(stale[1], new RegExp(`^images\\.not-scanned: latest scan of docker\\.io/library/nginx@${DIGEST} is ${Math.floor(expectedAge)} days old \\(max 30\\)$`));
});
