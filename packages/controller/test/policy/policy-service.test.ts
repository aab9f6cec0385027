// PolicyService on a real SQLite store: the default policy is installed once
// and only monitors; invalid documents never replace the policy in force;
// versions increase; bundles reach subscribers; and the dry-run hits exactly
// the expected containers of a seeded multi-agent fleet without changing anything.
import t from 'tap';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { DEFAULT_POLICY_YAML, createLogger, parsePolicy } from '@bulkhead/shared';
import type { PolicyBundleMessage as PolicyBundle } from '../../src/policy/policy-bundle';
import { openStore } from '../../src/store/open-store';
import type { Store } from '../../src/store/store';
import { PolicyService } from '../../src/policy/policy-service';
import { APP_DIGEST, CANDIDATE_YAML, FLEET, NOW, seedFleet, trivyReport } from './fixtures/fleet';

const silent = createLogger({ name: 'policy-test', level: 'silent' });

async function freshStore(t: tap.Test, dir = t.testdir()): Promise<Store> {
  const store = await openStore({ kind: 'sqlite', path: join(dir, 'controller.db') });
  t.teardown(() => store.close());
  return store;
}

const sha = (s: string) => createHash('sha256').update(s).digest('hex');

t.test('the default policy is installed once, as version 1, all rules in monitor mode', async (t) => {
  const dir = t.testdir();
  const store = await freshStore(t, dir);
  const svc = await PolicyService.create({ store, logger: silent, now: () => NOW });
  const cur = svc.current();
  t.equal(cur.record.version, 1);
  t.equal(cur.record.createdBy, 'init');
  t.equal(cur.record.yaml, DEFAULT_POLICY_YAML, 'the shipped YAML is kept as the source');
  t.ok(cur.policy.spec.rules.length >= 10, `the default policy has rules (${cur.policy.spec.rules.length})`);
  t.same(cur.policy.spec.rules.filter((r) => r.mode !== 'monitor').map((r) => r.id), [], 'every default rule monitors only');
  t.same(JSON.parse(cur.record.json), parsePolicy(DEFAULT_POLICY_YAML, 'default-policy.yaml'), 'json is the validated document');
  t.equal(cur.record.sha256, sha(cur.record.json));

  const b = svc.bundle();
  t.equal(b.version, 1);
  t.equal(b.policyJson, cur.record.json);
  t.equal(b.scansJson, '[]');
  t.equal(b.sha256, sha(b.policyJson + b.scansJson), 'sha256 covers policy_json + scans_json');

  // A restart (second create on the same store) does not install it again.
  const again = await PolicyService.create({ store, logger: silent });
  t.equal(again.current().record.version, 1);
  t.equal((await store.listPolicyVersions()).length, 1, 'still one version');
  t.same(again.bundle(), b, 'same bundle after restart');
});

t.test('apply: valid documents become new versions; invalid ones change nothing', async (t) => {
  const store = await freshStore(t);
  const svc = await PolicyService.create({ store, logger: silent, now: () => NOW });
  const pushed: PolicyBundle[] = [];
  const unsubscribe = svc.subscribe((b) => pushed.push(b));

  const ok = await svc.apply(CANDIDATE_YAML, { filename: 'baseline.yaml', actor: 'ak_0123456789abcdef', comment: 'first real policy' });
  t.ok(ok.ok);
  if (!ok.ok) return;
  t.equal(ok.policy.version, 2);
  t.equal(ok.policy.name, 'fleet-baseline');
  t.equal(ok.policy.createdBy, 'ak_0123456789abcdef');
  t.equal(ok.policy.comment, 'first real policy');
  t.equal(ok.policy.yaml, CANDIDATE_YAML, 'source text kept verbatim (comments included)');
  t.equal(svc.current().record.version, 2);
  t.equal(pushed.length, 1, 'subscribers got the new bundle');
  t.equal(pushed[0]!.version, 2);
  t.same(JSON.parse(pushed[0]!.policyJson).metadata, { name: 'fleet-baseline' });

  const broken = CANDIDATE_YAML.replace('mode: enforce\n      action: { type: kill }', 'mode: enforced\n      action: { type: kill }').replace(
    'check: { type: latest-tag }',
    'check: { type: latest-tags }',
  );
  const bad = await svc.apply(broken, { filename: 'baseline.yaml', actor: 'ak_0123456789abcdef' });
  t.notOk(bad.ok);
  if (bad.ok) return;
  t.ok(bad.errors.length >= 2, `every error is reported (${bad.errors.length})`);
  const mode = bad.errors.find((e) => e.path === 'spec.rules[0].mode');
  t.match(mode, { file: 'baseline.yaml', line: 12, column: Number }, 'mode error with file and line');
  t.ok(bad.errors.some((e) => e.path.startsWith('spec.rules[1].check') && e.line === 21), 'check type error points at its line');
  t.equal(svc.current().record.version, 2, 'the policy in force is unchanged');
  t.equal((await store.listPolicyVersions()).length, 2, 'nothing stored');
  t.equal(pushed.length, 1, 'nothing pushed');

  const yamlSyntax = await svc.apply('apiVersion: bulkhead.dev/v1\nkind: [Policy\n', { actor: 'x' });
  t.notOk(yamlSyntax.ok, 'YAML syntax errors are validation errors too');
  if (!yamlSyntax.ok) t.match(yamlSyntax.errors[0], { file: 'policy.yaml', line: Number, column: Number });

  // JSON documents are accepted as well, and versions keep increasing.
  const asJson = JSON.stringify(parsePolicy(CANDIDATE_YAML, 'x.yaml'), null, 2);
  const j = await svc.apply(asJson, { filename: 'baseline.json', actor: 'ak_0123456789abcdef' });
  t.ok(j.ok);
  t.equal(j.ok && j.policy.version, 3);
  t.same((await svc.listVersions()).map((v) => v.version), [3, 2, 1]);

  unsubscribe();
  await svc.apply(CANDIDATE_YAML, { actor: 'x' });
  t.equal(pushed.length, 2, 'an unsubscribed listener hears nothing more');

  // Concurrent applies get distinct versions in call order.
  const results = await Promise.all([1, 2, 3].map((i) => svc.apply(CANDIDATE_YAML.replace('fleet-baseline', `p${i}`), { actor: 'x' })));
  t.same(results.map((r) => r.ok && [r.policy.version, r.policy.name]), [[5, 'p1'], [6, 'p2'], [7, 'p3']]);
  t.equal(svc.current().record.name, 'p3');
});

t.test('uploadScan stores the report and pushes a bundle carrying it', async (t) => {
  const store = await freshStore(t);
  const svc = await PolicyService.create({ store, logger: silent, now: () => NOW });
  const pushed: PolicyBundle[] = [];
  svc.subscribe((b) => pushed.push(b));
  const rec = await svc.uploadScan(trivyReport());
  t.equal(rec.digest, APP_DIGEST);
  t.equal(rec.uploadedAt.getTime(), NOW.getTime());
  t.same((await store.getScan(APP_DIGEST))?.summary, rec.summary);
  t.equal(pushed.length, 1);
  t.equal(pushed[0]!.version, 1, 'same policy version');
  const scans = JSON.parse(pushed[0]!.scansJson) as Array<{ digest: string; vulnerabilities: unknown[] }>;
  t.same(scans.map((s) => [s.digest, s.vulnerabilities.length]), [[APP_DIGEST, 2]]);
  t.equal(pushed[0]!.sha256, sha(pushed[0]!.policyJson + pushed[0]!.scansJson));
  t.same(svc.bundle(), pushed[0], 'the service hands out the new bundle from now on');

  await t.rejects(svc.uploadScan({ hello: 'world' }), { code: 'BK_ERR_BAD_REQUEST' }, 'not a Trivy report');
  t.equal(pushed.length, 1);
});

t.test('dry-run hits exactly the expected containers across the fleet, and changes nothing', async (t) => {
  const store = await freshStore(t);
  await seedFleet(store);
  const svc = await PolicyService.create({ store, logger: silent, now: () => NOW });
  await svc.uploadScan(trivyReport());
  const pushed: PolicyBundle[] = [];
  svc.subscribe((b) => pushed.push(b));

  const snapshot = async () => ({
    versions: await store.listPolicyVersions(),
    agents: await store.listAgents(),
    containers: await store.listContainers({ includeRemoved: true }),
    violations: await store.listViolations({}),
    scans: await store.listScans(),
  });
  const before = await snapshot();
  const bundleBefore = svc.bundle();

  const out = await svc.dryRun(CANDIDATE_YAML, { filename: 'baseline.yaml' });
  t.ok(out.ok);
  if (!out.ok) return;
  const r = out.result;
  t.equal(r.policyName, 'fleet-baseline');
  t.equal(r.evaluatedAt, NOW.toISOString());
  const hits = Object.fromEntries(r.rules.map((rule) => [rule.ruleId, rule.hits.map((h) => `${h.hostname}/${h.containerName.slice(1)}${h.exemptedBy ? ' (exempt)' : ''}`)]));
  t.same(hits, {
    'host.privileged': ['prod-1/node-exporter', 'prod-2/cadvisor'],
    'image.no-latest': ['dev-1/legacy-batch (exempt)', 'dev-1/scratchpad', 'prod-1/ci-runner'],
    'host.docker-socket': ['prod-1/ci-runner', 'prod-1/node-exporter'],
    'isolation.project-networks': ['prod-1/db', 'prod-1/web'],
    'image.critical-vulns': ['prod-2/app'],
  });

  const priv = r.rules[0]!.hits[0]!;
  t.match(priv, {
    agentId: FLEET.prod1,
    hostname: 'prod-1',
    containerName: '/node-exporter',
    imageRef: 'prom/node-exporter:v1.8.2',
    severity: 'critical',
    mode: 'enforce',
    action: { type: 'kill' },
    message: /privileged/,
    evidence: [{ location: 'privileged' }],
    exemptedBy: null,
  });
  const exempt = r.rules[1]!.hits.find((h) => h.containerName === '/legacy-batch')!;
  t.match(exempt.exemptedBy, { who: 'platform-team', why: /legacy batch/ });
  const net = r.rules[3]!.hits.find((h) => h.containerName === '/web')!;
  t.equal(net.project, 'shop');
  t.match(net.evidence, [{ location: 'networks[shop-net]', detail: /db of project data/ }]);
  t.match(r.rules[4]!.hits[0]!.evidence, [{ detail: /CVE-2024-45491/ }]);

  t.same(r.totals, {
    agents: 3,
    containers: 9,
    rules: 5,
    findings: 9,
    exempted: 1,
    enforce: 5,
    monitor: 4,
    containersHit: 7,
    rulesHit: 5,
    undecided: 0,
  }, 'totals (the revoked agent and the removed container are left out)');

  t.same(await snapshot(), before, 'the store is unchanged');
  t.same(svc.bundle(), bundleBefore, 'the bundle is unchanged');
  t.equal(pushed.length, 0, 'nothing pushed');
  t.equal(svc.current().record.version, 1, 'the policy in force is still the default');

  const bad = await svc.dryRun('apiVersion: bulkhead.dev/v1\nkind: Policy\nmetadata: {}\nspec: { rules: [] }\n', { filename: 'empty.yaml' });
  t.notOk(bad.ok, 'an invalid candidate is reported, not evaluated');
  if (!bad.ok) t.match(bad.errors[0], { file: 'empty.yaml', line: 3, path: /^metadata/ });
});

t.test('dry-run of the default policy only monitors', async (t) => {
  const store = await freshStore(t);
  await seedFleet(store);
  const svc = await PolicyService.create({ store, logger: silent, now: () => NOW });
  const out = await svc.dryRun(DEFAULT_POLICY_YAML);
  t.ok(out.ok);
  if (!out.ok) return;
  t.equal(out.result.totals.enforce, 0, 'nothing would be acted on');
  t.ok(out.result.totals.monitor > 0, `but it reports (${out.result.totals.monitor} findings)`);
  const privileged = out.result.rules.flatMap((r) => r.hits).filter((h) => h.containerName === '/node-exporter');
  t.ok(privileged.length > 0, 'the privileged node-exporter shows up');
});
