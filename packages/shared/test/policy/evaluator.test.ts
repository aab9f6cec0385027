import t from 'tap';
import { compilePolicy, enforceable, evaluate, projectOf } from '../../src/policy/evaluator';
import { policyFromJson } from '../../src/policy/parse';
import type { Exemption, Policy, RuleScope } from '../../src/policy/types';
import { facts, host, NOW, policyOf, rule } from './helpers';

const privileged = facts({ privileged: true, labels: { 'bulkhead.project': 'shop', tier: 'frontend', team: 'web-core' }, imageRef: 'ghcr.io/acme/web:1.2.3' });

function scoped(scope: RuleScope | undefined): Policy {
  return policyFromJson(policyOf(rule({ type: 'privileged' }, scope ? { scope } : {})));
}

t.test('scope matching', async (t) => {
  const h = host({ env: 'prod', region: 'eu-1' });
  const cases: [string, RuleScope | undefined, boolean][] = [
    ['no scope matches all', undefined, true],
    ['empty scope matches all', {}, true],
    ['host label match', { hostLabels: { env: 'prod' } }, true],
    ['host label mismatch', { hostLabels: { env: 'staging' } }, false],
    ['host label wildcard present', { hostLabels: { region: '*' } }, true],
    ['host label wildcard absent', { hostLabels: { rack: '*' } }, false],
    ['host label glob', { hostLabels: { region: 'eu-*' } }, true],
    ['all host labels must match', { hostLabels: { env: 'prod', region: 'us-1' } }, false],
    ['container label match', { containerLabels: { tier: 'frontend' } }, true],
    ['container label wildcard', { containerLabels: { team: '*' } }, true],
    ['container label glob', { containerLabels: { team: 'web-*' } }, true],
    ['container label absent', { containerLabels: { owner: '*' } }, false],
    ['image glob', { images: ['ghcr.io/acme/*'] }, true],
    ['image glob, one of several', { images: ['docker.io/*', 'ghcr.io/*'] }, true],
    ['image glob mismatch', { images: ['docker.io/*'] }, false],
    ['image tag glob', { images: ['*:1.2.*'] }, true],
    ['project match', { projects: ['shop', 'payments'] }, true],
    ['project mismatch', { projects: ['payments'] }, false],
    ['project glob', { projects: ['sh*'] }, true],
    ['every field must match', { projects: ['shop'], hostLabels: { env: 'staging' } }, false],
  ];
  for (const [name, scope, inScope] of cases) {
    t.equal(evaluate(scoped(scope), { container: privileged, host: h }, { now: NOW }).length, inScope ? 1 : 0, name);
  }
  t.equal(evaluate(scoped({ hostLabels: { env: 'prod' } }), { container: privileged }, { now: NOW }).length, 0, 'host-label scope without host facts is out of scope');
});

t.test('image scope matches normalised references', async (t) => {
  const p = scoped({ images: ['docker.io/library/*', '*:latest'] });
  t.equal(evaluate(p, { container: facts({ privileged: true, imageRef: 'nginx:1.27' }) }, { now: NOW }).length, 1, 'nginx is docker.io/library/nginx');
  t.equal(evaluate(p, { container: facts({ privileged: true, imageRef: 'ghcr.io/x/y' }) }, { now: NOW }).length, 1, 'no tag means :latest');
  t.equal(evaluate(p, { container: facts({ privileged: true, imageRef: 'ghcr.io/x/y:2' }) }, { now: NOW }).length, 0);
});

t.test('project label is configurable', async (t) => {
  const p = policyFromJson({ ...policyOf(rule({ type: 'privileged' }, { scope: { projects: ['shop'] } })), spec: { projectLabel: 'com.docker.compose.project', rules: [rule({ type: 'privileged' }, { scope: { projects: ['shop'] } })] } });
  t.equal(evaluate(p, { container: facts({ privileged: true, labels: { 'com.docker.compose.project': 'shop' } }) }, { now: NOW }).length, 1);
  t.equal(evaluate(p, { container: facts({ privileged: true, labels: { 'bulkhead.project': 'shop' } }) }, { now: NOW }).length, 0);
  t.equal(projectOf(facts({ project: 'from-agent' })), 'from-agent', 'falls back to facts.project');
  t.equal(projectOf(facts({ labels: { 'bulkhead.project': 'l' }, project: 'a' })), 'l', 'label wins');
  t.equal(projectOf(facts({ labels: { 'bulkhead.project': '' } })), undefined);
});

t.test('exemptions', async (t) => {
  const withEx = (exemptions: Exemption[]) => policyFromJson(policyOf(rule({ type: 'privileged' }, { exemptions })));
  const ev = (p: Policy, c = privileged) => evaluate(p, { container: c, host: host({ env: 'prod' }) }, { now: NOW });

  const forever = ev(withEx([{ who: 'alice', why: 'node exporter needs it' }]));
  t.equal(forever.length, 1, 'an exempted finding is still reported');
  t.same(forever[0]!.exemptedBy, { who: 'alice', why: 'node exporter needs it' });
  t.same(enforceable(forever), [], 'but not enforced');

  const live = ev(withEx([{ who: 'bob', why: 'migration', until: '2026-03-02T00:00:00Z' }]));
  t.same(live[0]!.exemptedBy, { who: 'bob', why: 'migration', until: '2026-03-02T00:00:00Z' }, 'live exemption applies');

  const expired = ev(withEx([{ who: 'bob', why: 'migration', until: '2026-03-01T11:59:59Z' }]));
  t.equal(expired[0]!.exemptedBy, undefined, 'expired exemption stops applying by itself');
  t.equal(enforceable(expired).length, 1);

  const atInstant = evaluate(withEx([{ who: 'b', why: 'w', until: NOW.toISOString() }]), { container: privileged }, { now: NOW });
  t.equal(atInstant[0]!.exemptedBy, undefined, 'an exemption ends at its until instant');

  const byName = withEx([{ who: 'c', why: 'w', match: { names: ['web*'] } }]);
  t.ok(ev(byName)[0]!.exemptedBy, 'match by name (leading slash ignored)');
  t.notOk(ev(byName, facts({ privileged: true, name: '/api' }))[0]!.exemptedBy, 'other names not covered');

  const byLabel = withEx([{ who: 'c', why: 'w', match: { containerLabels: { tier: 'frontend' }, hostLabels: { env: 'prod' } } }]);
  t.ok(ev(byLabel)[0]!.exemptedBy, 'match by container and host labels');
  const byProject = withEx([{ who: 'c', why: 'w', match: { projects: ['payments'] } }]);
  t.notOk(ev(byProject)[0]!.exemptedBy, 'other project not covered');
  const byImage = withEx([{ who: 'c', why: 'w', match: { images: ['ghcr.io/acme/web:*'] } }]);
  t.ok(ev(byImage)[0]!.exemptedBy, 'match by image');

  const firstLive = withEx([
    { who: 'old', why: 'expired', until: '2020-01-01T00:00:00Z' },
    { who: 'new', why: 'live', until: '2027-01-01T00:00:00Z' },
  ]);
  t.equal(ev(firstLive)[0]!.exemptedBy?.who, 'new', 'expired ones are skipped, the next live one applies');
});

t.test('findings: one per broken rule, in policy order, with evidence and an actionable message', async (t) => {
  const p = policyFromJson(
    policyOf(
      rule({ type: 'privileged' }, { id: 'host.privileged', severity: 'critical', mode: 'monitor', action: { type: 'kill' } }),
      rule({ type: 'read-only-rootfs' }, { id: 'host.rofs', severity: 'low', action: { type: 'alert' } }),
      rule({ type: 'root-user' }, { id: 'host.root' }),
      rule({ type: 'capabilities' }, { id: 'host.caps', action: { type: 'stop', stopTimeoutSeconds: 5 } }),
    ),
  );
  const c = facts({ privileged: true, readOnlyRootfs: false, capAdd: ['SYS_ADMIN', 'NET_ADMIN', 'SYS_MODULE', 'BPF'] });
  const f = evaluate(p, { container: c }, { now: NOW });
  t.same(f.map((x) => x.ruleId), ['host.privileged', 'host.rofs', 'host.caps']);
  t.match(f[0], { severity: 'critical', mode: 'monitor', action: { type: 'kill' }, evidence: [{ location: 'privileged' }] });
  t.match(f[0]!.message, /^host\.privileged: container web: container runs with --privileged\. Fix: remove --privileged/);
  t.match(f[0]!.message, /exemption on rule host\.privileged/);
  t.same(f[2]!.action, { type: 'stop', stopTimeoutSeconds: 5 });
  t.equal(f[2]!.evidence.length, 4);
  t.match(f[2]!.message, /1 more/, 'long evidence lists are shortened in the message');
  t.same(enforceable(f).map((x) => x.ruleId), ['host.rofs', 'host.caps'], 'monitor rules are never enforceable');
});

t.test('pure: inputs are not mutated; same input → same output; compiled once', async (t) => {
  const p = policyFromJson(policyOf(rule({ type: 'sensitive-mounts' }), rule({ type: 'vulnerabilities', maxCritical: 0 })));
  const c = facts({ mounts: [{ type: 'bind', source: '/etc', destination: '/e', readOnly: false, propagation: '' }] });
  const digest = `sha256:${'b'.repeat(64)}`;
  const scans = new Map([[digest, { digest, scannedAt: '2026-01-01T00:00:00Z', scanner: 'trivy', vulnerabilities: [{ id: 'CVE-1', severity: 'critical' as const, fixable: true }] }]]);
  const before = JSON.stringify({ p, c, s: [...scans.values()] });
  const a = evaluate(p, { container: c }, { now: NOW, scans });
  a[1]!.evidence[0]!.detail = 'mutated by a caller';
  const b = evaluate(p, { container: c }, { now: NOW, scans });
  t.equal(JSON.stringify({ p, c, s: [...scans.values()] }), before);
  t.not(b[1]!.evidence[0]!.detail, 'mutated by a caller', 'cached evidence is not shared with callers');
  t.equal(compilePolicy(p), compilePolicy(p), 'compiled once per policy object');
});

t.test('incomplete facts do not crash the evaluator', async (t) => {
  const p = policyFromJson(policyOf(rule({ type: 'privileged' }), rule({ type: 'sensitive-mounts' }), rule({ type: 'root-user' }), rule({ type: 'default-bridge' }), rule({ type: 'resource-limits' })));
  const partial = { id: 'x', name: '/x', privileged: true, nanoCpus: '1000000000' } as never;
  const f = evaluate(p, { container: partial }, { now: NOW });
  t.same(f.map((x) => x.ruleId), ['t.privileged', 't.root-user', 't.default-bridge', 't.resource-limits']);
  t.equal(f[3]!.evidence.length, 2, 'string int64 nanoCpus is read as a number');
});

t.test('a hand-built policy with an unknown check type fails loudly', async (t) => {
  t.throws(() => compilePolicy(policyOf(rule({ type: 'nope' }))), /unknown check type "nope"/);
});

t.test('no findings for a well-configured container', async (t) => {
  const p = policyFromJson(policyOf(
    rule({ type: 'root-user' }), rule({ type: 'privileged' }), rule({ type: 'capabilities', requireDropAll: true }), rule({ type: 'no-new-privileges' }),
    rule({ type: 'read-only-rootfs' }), rule({ type: 'resource-limits' }), rule({ type: 'default-bridge' }), rule({ type: 'latest-tag' }),
  ));
  t.same(evaluate(p, { container: facts() }, { now: NOW }), []);
});
