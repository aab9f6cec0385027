// The agent's TypeBox-free check of controller bundles: a valid document comes
// out exactly as the full validator normalises it, a malformed one is refused
// with every problem named by its path, and the closed value sets match the
// schema the controller validates against.
import t from 'tap';
import { parse as parseYaml } from 'yaml';
import { policyFromTrustedBundle } from '../../src/policy/trusted-bundle';
import { validatePolicyObject } from '../../src/policy/validate';
import { PolicyValidationError } from '../../src/policy/parse';
import { DEFAULT_POLICY_YAML } from '../../src/policy/default-policy';
import { ACTION_TYPES, MODES, SEVERITIES } from '../../src/policy/constants';
import { ActionTypeSchema, ModeSchema, SeveritySchema } from '../../src/policy/schema';
import { CHECKS } from '../../src/policy/checks/index';
import { BulkheadError } from '../../src/errors/registry';

const doc = (rules: unknown[], spec: object = {}) => ({ apiVersion: 'bulkhead.dev/v1', kind: 'Policy', metadata: { name: 'x' }, spec: { ...spec, rules } });
const rule = (over: object = {}) => ({ id: 'r', description: 'd', severity: 'low', mode: 'monitor', action: { type: 'alert' }, check: { type: 'privileged' }, ...over });

/** The full validator's result; the fixture must be valid. */
function validated(obj: unknown) {
  const { policy, issues } = validatePolicyObject(obj);
  if (!policy) throw new Error(`fixture is invalid: ${JSON.stringify(issues)}`);
  return policy;
}

function problems(obj: unknown): { path: string; message: string }[] {
  try {
    policyFromTrustedBundle(obj);
  } catch (e) {
    if (e instanceof PolicyValidationError) return e.errors.map(({ path, message }) => ({ path, message }));
    throw e;
  }
  throw new Error('expected the bundle to be refused');
}

const SCOPED = `apiVersion: bulkhead.dev/v1
kind: Policy
metadata: { name: scoped, description: every optional part }
spec:
  projectLabel: com.docker.compose.project
  rules:
    - id: host.mounts
      description: no sensitive mounts
      severity: high
      mode: enforce
      action: { type: limit, limits: { memory: 512m, cpus: 0.5, pids: 100 } }
      scope:
        hostLabels: { env: prod }
        containerLabels: { "com.example/team": "*" }
        images: ["registry.example.com/*"]
        projects: [shop, "web*"]
      exemptions:
        - who: alice
          why: backup agent
          until: 2030-01-01T00:00:00Z
          match: { names: [backup-*], images: ["restic/*"], containerLabels: { role: backup } }
        - { who: bob, why: forever }
      check: { type: sensitive-mounts, addPaths: [/srv/secrets], matchParents: false }
    - id: usage.cpu
      description: cpu hogs
      severity: medium
      mode: monitor
      action: { type: stop, stopTimeoutSeconds: 5 }
      check: { type: cpu-usage, abovePercent: 80, forSeconds: 120 }
`;

t.test('a valid bundle comes out exactly as validatePolicyObject normalises it', async (t) => {
  const minimal: Record<string, object> = { 'registry-allowlist': { registries: ['docker.io'] }, vulnerabilities: { maxCritical: 0 }, 'pids-usage': { above: 1000 },
    'disk-usage': { writableAbove: '200m' }, 'network-usage': { bytesPerSecAbove: '100m' }, connections: { above: 2000 },
    'image-signature': { keys: [{ name: 'k', file: '/etc/bulkhead/keys/k.pub' }] } };
  const fixtures: [string, unknown][] = [
    ['the default policy', parseYaml(DEFAULT_POLICY_YAML)],
    ['scopes, exemptions, limits, project label', parseYaml(SCOPED)],
    ['no rules at all', doc([])],
    ['every check type', doc(CHECKS.map((c, i) => rule({ id: `r${i}`, check: { type: c.type, ...(minimal[c.type] ?? {}) } })))],
  ];
  for (const [name, raw] of fixtures) {
    const before = structuredClone(raw);
    const out = policyFromTrustedBundle(raw);
    t.strictSame(out, validated(raw), `${name}: same policy`);
    t.strictSame(raw, before, `${name}: input unchanged`);
    t.not(out, raw, `${name}: a copy`);
  }
  t.equal(policyFromTrustedBundle(doc([])).spec.projectLabel, 'bulkhead.project', 'project label defaulted');
  t.equal(policyFromTrustedBundle(parseYaml(SCOPED)).spec.projectLabel, 'com.docker.compose.project', 'given project label kept');
});

t.test('a malformed bundle is refused with every problem and its path', async (t) => {
  const err = t.throws(() => policyFromTrustedBundle(doc([rule({ check: { type: 'nope' } })]), 'bundle v3')) as unknown as PolicyValidationError;
  t.ok(err instanceof BulkheadError && err.code === 'BK_ERR_POLICY_INVALID', 'BK_ERR_POLICY_INVALID');
  t.match(err.message, /policy is invalid \(1 error\)/);
  t.match(err.message, /bundle v3: spec\.rules\[0\]\.check\.type: unknown check type "nope"; this agent knows: registry-allowlist, /);
  t.match(err.errors, [{ file: 'bundle v3', line: 0, column: 0 }]);

  t.same(problems(null), [{ path: '', message: 'must be an object (got null)' }]);
  t.same(problems([]), [{ path: '', message: 'must be an object (got an array)' }]);
  t.same(problems('{"apiVersion":…}'), [{ path: '', message: 'must be an object (got string "{\\"apiVersion\\":…}")' }]);
  t.same(problems({}), [
    { path: 'apiVersion', message: 'must be "bulkhead.dev/v1" (got nothing)' },
    { path: 'kind', message: 'must be "Policy" (got nothing)' },
    { path: 'metadata', message: 'missing (must be an object)' },
    { path: 'spec', message: 'missing (must be an object)' },
  ]);
  t.same(problems({ ...doc([]), apiVersion: 'bulkhead.dev/v2', kind: 'Pollicy', metadata: { name: '' }, spec: { projectLabel: 7 } }), [
    { path: 'apiVersion', message: 'must be "bulkhead.dev/v1" (got "bulkhead.dev/v2")' },
    { path: 'kind', message: 'must be "Policy" (got "Pollicy")' },
    { path: 'metadata.name', message: 'must be a non-empty string (got string "")' },
    { path: 'spec.projectLabel', message: 'must be a non-empty string (got number 7)' },
    { path: 'spec.rules', message: 'must be an array of rules (got nothing)' },
  ]);
  t.same(problems({ ...doc([]), spec: { rules: {} } }), [{ path: 'spec.rules', message: 'must be an array of rules (got an object)' }]);

  t.same(problems(doc([7, rule(), rule({ id: undefined, description: undefined, severity: 'huge', mode: 'block', action: 'kill', check: undefined })])), [
    { path: 'spec.rules[0]', message: 'must be an object (got number 7)' },
    { path: 'spec.rules[2].id', message: 'missing (must be a non-empty string)' },
    { path: 'spec.rules[2].description', message: 'missing (must be a non-empty string)' },
    { path: 'spec.rules[2].severity', message: 'must be one of low, medium, high, critical (got "huge")' },
    { path: 'spec.rules[2].mode', message: 'must be one of monitor, enforce (got "block")' },
    { path: 'spec.rules[2].action', message: 'must be an object (got string "kill")' },
    { path: 'spec.rules[2].check', message: 'missing (must be an object)' },
  ]);
  t.same(problems(doc([rule(), rule({ action: { type: 'explode' }, check: {} })])), [
    { path: 'spec.rules[1].id', message: 'duplicate rule id "r" (first used by spec.rules[0])' },
    { path: 'spec.rules[1].action.type', message: 'must be one of kill, stop, pause, quarantine, limit, alert (got "explode")' },
    { path: 'spec.rules[1].check.type', message: 'unknown check type nothing; this agent knows: ' + CHECKS.map((c) => c.type).join(', ') },
  ]);
  t.same(problems(doc([rule({ action: { type: 'limit' } }), rule({ id: 's', action: { type: 'limit', limits: {} } })])), [
    { path: 'spec.rules[0].action.limits', message: 'action "limit" needs `limits` with at least one of memory, cpus, pids' },
    { path: 'spec.rules[1].action.limits', message: 'action "limit" needs `limits` with at least one of memory, cpus, pids' },
  ]);
});

t.test('scopes and exemptions: the shapes the evaluator compiles are checked', async (t) => {
  t.same(problems(doc([rule({ scope: { hostLabels: { env: 1 }, containerLabels: ['a'], images: 'nginx*', projects: ['shop', ''] } })])), [
    { path: 'spec.rules[0].scope.hostLabels["env"]', message: 'must be a string (got number 1)' },
    { path: 'spec.rules[0].scope.containerLabels', message: 'must be an object of label values (got an array)' },
    { path: 'spec.rules[0].scope.images', message: 'must be an array of strings (got string "nginx*")' },
    { path: 'spec.rules[0].scope.projects[1]', message: 'must be a non-empty string (got string "")' },
  ]);
  t.same(problems(doc([rule({ scope: 'all' })])), [{ path: 'spec.rules[0].scope', message: 'must be an object (got string "all")' }]);
  t.same(problems(doc([rule({ exemptions: { who: 'a' } })])), [{ path: 'spec.rules[0].exemptions', message: 'must be an array (got an object)' }]);
  t.same(problems(doc([rule({ exemptions: [null, { why: 'b', until: 5, match: { names: 'x*' } }, { who: 'a', why: 'b', match: [] }] })])), [
    { path: 'spec.rules[0].exemptions[0]', message: 'must be an object (got null)' },
    { path: 'spec.rules[0].exemptions[1].who', message: 'missing (must be a non-empty string)' },
    { path: 'spec.rules[0].exemptions[1].until', message: 'must be a non-empty string (got number 5)' },
    { path: 'spec.rules[0].exemptions[1].match.names', message: 'must be an array of strings (got string "x*")' },
    { path: 'spec.rules[0].exemptions[2].match', message: 'must be an object (got an array)' },
  ]);
  // Not a field of a rule's scope (only exemptions match by name): the controller's schema decides that.
  t.doesNotThrow(() => policyFromTrustedBundle(doc([rule({ scope: { names: 'x' } })])));
});

t.test('long values are shortened in messages', async (t) => {
  const [p] = problems(doc([rule({ severity: 'x'.repeat(100) })]));
  t.match(p, { path: 'spec.rules[0].severity', message: /^must be one of .*\(got "x{56}\.\.\.\)$/ });
});

t.test('the closed value sets are those of the schema the controller validates with', async (t) => {
  const literals = (s: { anyOf: { const: unknown }[] }) => s.anyOf.map((x) => x.const);
  t.same(literals(SeveritySchema as never), SEVERITIES);
  t.same(literals(ModeSchema as never), MODES);
  t.same(literals(ActionTypeSchema as never), ACTION_TYPES);
});
