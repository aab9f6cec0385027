import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseTrivyReport, scanKeys } from '../../src/policy/trivy';
import { BulkheadError } from '../../src/errors/registry';
import { evaluate } from '../../src/policy/evaluator';
import { policyFromJson } from '../../src/policy/parse';
import { facts, NOW, policyOf, rule } from './helpers';

const FIXTURE = readFileSync(join(__dirname, 'fixtures/trivy-nginx-1.25.3.json'), 'utf8');
const REPO_DIGEST = 'sha256:4c0fdaa8b6341bfdeca5f18f7837462c80cff90527ee35ef185571e1c327beac';
const IMAGE_ID = 'sha256:a8758716bb6aa4d90071160d27028fe4eaee7ce8166221a97d30440c8eac2be6';

t.test('parses a real-shaped Trivy report', async (t) => {
  const s = parseTrivyReport(JSON.parse(FIXTURE));
  t.equal(s.digest, REPO_DIGEST, 'digest from RepoDigests[0]');
  t.equal(s.imageId, IMAGE_ID);
  t.equal(s.scanner, 'trivy');
  t.equal(s.scannedAt, '2026-02-20T09:14:03.512Z');
  t.equal(s.artifactName, 'nginx:1.25.3');
  t.equal(s.vulnerabilities.length, 9, 'one entry per (id, package); the jar result had none');
  const byKey = new Map(s.vulnerabilities.map((v) => [`${v.id}/${v.pkg}`, v]));
  t.same(byKey.get('CVE-2024-2961/libc-bin'), { id: 'CVE-2024-2961', severity: 'high', cvss: 8.1, fixable: true, pkg: 'libc-bin' }, 'NVD score preferred');
  t.same(byKey.get('CVE-2023-52425/libexpat1'), { id: 'CVE-2023-52425', severity: 'high', cvss: 7.5, fixable: false, pkg: 'libexpat1' });
  t.equal(byKey.get('CVE-2024-5535/libssl3')!.cvss, 5.9, 'Red Hat when no NVD score');
  t.equal(byKey.get('CVE-2023-50387/libsystemd0')!.cvss, 7.5);
  t.equal(byKey.get('TEMP-0841856-B18BAF/bash')!.cvss, undefined, 'no CVSS at all');
  t.equal(byKey.get('CVE-2005-2541/tar')!.severity, 'unknown');
  t.same(scanKeys(s), [REPO_DIGEST, IMAGE_ID]);
});

t.test('accepts JSON text; falls back to the image id and receivedAt', async (t) => {
  t.equal(parseTrivyReport(FIXTURE).digest, REPO_DIGEST);
  const doc = JSON.parse(FIXTURE);
  delete doc.Metadata.RepoDigests;
  delete doc.CreatedAt;
  const s = parseTrivyReport(doc, { receivedAt: NOW });
  t.equal(s.digest, IMAGE_ID);
  t.equal(s.scannedAt, NOW.toISOString());
  t.equal(s.repoDigests, undefined);
});

t.test('clean image: no Vulnerabilities keys at all', async (t) => {
  const doc = JSON.parse(FIXTURE);
  for (const r of doc.Results) delete r.Vulnerabilities;
  t.same(parseTrivyReport(doc).vulnerabilities, []);
  delete doc.Results;
  t.same(parseTrivyReport(doc).vulnerabilities, []);
});

t.test('clear errors on bad input', async (t) => {
  const doc = () => JSON.parse(FIXTURE);
  const cases: [string, unknown, RegExp][] = [
    ['not JSON', '{nope', /invalid JSON/],
    ['not an object', [1, 2], /expected a JSON object/],
    ['null', null, /expected a JSON object/],
    ['wrong schema version', { ...doc(), SchemaVersion: 1 }, /SchemaVersion 1/],
    ['filesystem scan', { ...doc(), ArtifactType: 'filesystem' }, /scan an image/],
    ['no digest', { ...doc(), Metadata: {}, ArtifactName: 'nginx:1' }, /no image digest/],
    ['no date', (() => { const d = doc(); delete d.CreatedAt; return d; })(), /no CreatedAt/],
    ['Results not an array', { ...doc(), Results: {} }, /Results must be an array/],
    ['result not an object', { ...doc(), Results: [1] }, /Results\[0\] is not an object/],
    ['vulnerabilities not an array', { ...doc(), Results: [{ Vulnerabilities: 'x' }] }, /Vulnerabilities must be an array/],
    ['vulnerability without id', { ...doc(), Results: [{ Vulnerabilities: [{ Severity: 'HIGH' }] }] }, /Vulnerabilities\[0\] has no VulnerabilityID/],
  ];
  for (const [name, input, re] of cases) {
    let err: unknown;
    try {
      parseTrivyReport(input);
    } catch (e) {
      err = e;
    }
    t.ok(err instanceof BulkheadError && err.code === 'BK_ERR_BAD_REQUEST', `${name}: BK_ERR_BAD_REQUEST`);
    t.match((err as Error | undefined)?.message, re, `${name}: message`);
  }
});

t.test('end to end: a Trivy report drives the vulnerabilities and not-scanned rules', async (t) => {
  const s = parseTrivyReport(FIXTURE);
  const scans = new Map(scanKeys(s).map((k) => [k, s]));
  const policy = policyFromJson(policyOf(
    rule({ type: 'vulnerabilities', maxCritical: 0, onlyFixable: true }, { id: 'vulns' }),
    rule({ type: 'not-scanned', maxAgeDays: 30 }, { id: 'scanned' }),
  ));
  const byDigest = facts({ imageRef: 'nginx:1.25.3', imageDigest: `nginx@${REPO_DIGEST}`, imageId: IMAGE_ID });
  const f = evaluate(policy, { container: byDigest }, { now: NOW, scans });
  t.same(f.map((x) => x.ruleId), ['vulns']);
  t.match(f[0]!.evidence[0]!.detail, '2 fixable critical vulnerabilities (max 0): CVE-2024-45492, CVE-2024-5535');
  const byId = facts({ imageRef: 'nginx:1.25.3', imageDigest: '', imageId: IMAGE_ID });
  t.equal(evaluate(policy, { container: byId }, { now: NOW, scans }).length, 1, 'found by image id');
  const later = evaluate(policy, { container: byDigest }, { now: new Date('2026-04-01T00:00:00Z'), scans });
  t.same(later.map((x) => x.ruleId), ['vulns', 'scanned'], 'a stale scan counts as missing');
});
