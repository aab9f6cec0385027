import t from 'tap';
import { parsePolicy, policyFromJson, PolicyValidationError, formatPolicyError, type PolicyErrorDetail } from '../../src/policy/parse';
import { BulkheadError } from '../../src/errors/registry';
import { isDateTime, formatPath } from '../../src/policy/validate';
import { CHECKS } from '../../src/policy/checks/index';

const GOOD = `apiVersion: bulkhead.dev/v1
kind: Policy
metadata:
  name: prod
spec:
  rules:
    - id: host.privileged
      description: no privileged
      severity: critical
      mode: enforce
      action: { type: kill }
      check: { type: privileged }
`;

function errorsOf(text: string, file = 'policy.yaml'): PolicyErrorDetail[] {
  try {
    parsePolicy(text, file);
  } catch (e) {
    if (e instanceof PolicyValidationError) return e.errors;
    throw e;
  }
  throw new Error('expected the policy to be rejected');
}

function find(errors: PolicyErrorDetail[], path: string): PolicyErrorDetail | undefined {
  return errors.find((e) => e.path === path);
}

t.test('a valid policy parses, with the default project label filled in', async (t) => {
  const p = parsePolicy(GOOD, 'good.yaml');
  t.equal(p.spec.projectLabel, 'bulkhead.project');
  t.equal(p.spec.rules[0]!.check.type, 'privileged');
});

t.test('JSON text parses too, with positions', async (t) => {
  const json = JSON.stringify(parsePolicy(GOOD), null, 2);
  t.same(parsePolicy(json, 'p.json'), parsePolicy(GOOD));
  const bad = json.replace('"critical"', '"severe"');
  const e = find(errorsOf(bad, 'p.json'), 'spec.rules[0].severity')!;
  t.ok(e, 'error reported');
  t.equal(e.file, 'p.json');
  t.equal(e.line, bad.split('\n').findIndex((l) => l.includes('"severe"')) + 1);
  t.equal(e.column, bad.split('\n')[e.line - 1]!.indexOf('"severe"') + 1);
});

t.test('every error is reported at once, each with file, line, column, path and message', async (t) => {
  const text = `apiVersion: bulkhead.dev/v2
kind: Policy
metadata:
  name: prod
  owner: me
spec:
  rules:
    - id: Host_Privileged
      description: no privileged
      severity: severe
      mode: enforce
      action: { type: limit }
      check: { type: privileged }
    - id: limits
      description: limits
      severity: low
      mode: monitor
      action: { type: alert }
      check:
        type: resource-limits
        maxMemory: lots
        maxPids: 0
    - id: limits
      description: dup
      severity: low
      mode: sometimes
      action: { type: alert }
      exemptions:
        - who: alice
          why: testing
          until: 2026-13-01
      check:
        type: frobnicate
    - id: caps
      description: caps
      severity: high
      mode: monitor
      action: { type: stop, stopTimeoutSeconds: -1 }
      check:
        type: capabilities
        forbidden: [SYS_ADMIN, SYS_FOO]
    - description: no id
      severity: low
      mode: monitor
      action: { type: alert }
      check: { type: vulnerabilities }
`;
  const errors = errorsOf(text);
  const expect: [string, number, number, RegExp][] = [
    ['apiVersion', 1, 13, /must be "bulkhead\.dev\/v1"/],
    ['metadata.owner', 5, 3, /unknown field "owner"/],
    ['spec.rules[0].id', 8, 11, /rule id "Host_Privileged" must be lower-case/],
    ['spec.rules[0].severity', 10, 17, /must be one of low, medium, high, critical \(got "severe"\)/],
    ['spec.rules[0].action', 12, 15, /action "limit" needs `limits`/],
    ['spec.rules[1].check.maxMemory', 21, 20, /invalid value "lots"/],
    ['spec.rules[1].check.maxPids', 22, 18, /expected integer to be greater or equal to 1/i],
    ['spec.rules[2].id', 23, 11, /duplicate rule id "limits" \(first used by spec\.rules\[1\]\)/],
    ['spec.rules[2].mode', 26, 13, /must be one of monitor, enforce/],
    ['spec.rules[2].exemptions[0].until', 31, 18, /ISO 8601 date-time/],
    ['spec.rules[2].check.type', 33, 15, /unknown check type "frobnicate"; known types: registry-allowlist/],
    ['spec.rules[3].action.stopTimeoutSeconds', 38, 49, /greater or equal to 0/i],
    ['spec.rules[3].check.forbidden[1]', 41, 32, /unknown capability "SYS_FOO"/],
    ['spec.rules[4].id', 42, 7, /missing required field "id"/],
    ['spec.rules[4].check', 46, 14, /set at least one threshold/],
  ];
  for (const [path, line, column, message] of expect) {
    const e = find(errors, path);
    if (!t.ok(e, `${path} reported`)) continue;
    t.equal(e!.file, 'policy.yaml', `${path} file`);
    t.equal(e!.line, line, `${path} line`);
    t.equal(e!.column, column, `${path} column`);
    t.match(e!.message, message, `${path} message`);
  }
  if (!t.equal(errors.length, expect.length, 'exactly these errors')) t.comment(errors.map(formatPolicyError).join('\n'));
  const sorted = [...errors].sort((a, b) => a.line - b.line || a.column - b.column);
  t.same(errors, sorted, 'errors come in source order');
});

t.test('the thrown error is a BulkheadError with a stable code and a readable message', async (t) => {
  try {
    parsePolicy(GOOD.replace('critical', 'huge'), 'x.yaml');
    t.fail('should throw');
  } catch (e) {
    t.ok(e instanceof PolicyValidationError);
    t.ok(e instanceof BulkheadError);
    const err = e as PolicyValidationError;
    t.equal(err.code, 'BK_ERR_POLICY_INVALID');
    t.equal(err.status, 400);
    t.match(err.message, /policy is invalid \(1 error\)\n {2}x\.yaml:9:17: spec\.rules\[0\]\.severity: must be one of/);
    t.same(err.details, { errors: err.errors });
  }
});

t.test('YAML syntax errors and duplicate keys are reported with positions', async (t) => {
  const syntax = errorsOf('apiVersion: bulkhead.dev/v1\nkind: Policy\nmetadata: { name: x\nspec: {}\n');
  t.ok(syntax.length >= 1);
  t.match(syntax[0], { file: 'policy.yaml', path: '', message: /YAML syntax/ });
  t.ok(syntax[0]!.line >= 3);
  const dup = errorsOf(GOOD.replace('kind: Policy\n', 'kind: Policy\nkind: Policy\n'));
  t.match(dup[0], { line: 3, column: 1, message: /YAML syntax: .*unique/i });
});

t.test('empty or non-object documents', async (t) => {
  t.match(errorsOf('')[0], { line: 1, column: 1, path: '', message: /expected object/i });
  t.match(errorsOf('- a\n- b\n')[0], { path: '', message: /expected object/i });
  t.match(errorsOf('apiVersion: bulkhead.dev/v1\nkind: Policy\nmetadata:\n  name: x\nspec:\n  rules: {}\n'), [{ path: 'spec.rules', line: 6, column: 10, message: /expected array/i }]);
});

t.test('missing fields point at the enclosing object', async (t) => {
  const errors = errorsOf(`apiVersion: bulkhead.dev/v1
kind: Policy
metadata:
  name: x
spec:
  rules:
    - id: r1
      description: d
      mode: monitor
      check: { type: privileged }
`);
  t.match(find(errors, 'spec.rules[0].severity'), { line: 7, column: 7, message: 'missing required field "severity"' });
  t.match(find(errors, 'spec.rules[0].action'), { line: 7, column: 7, message: 'missing required field "action"' });
  t.equal(errors.length, 2);
});

t.test('labels with dots are quoted in paths; aliases resolve', async (t) => {
  const errors = errorsOf(`apiVersion: bulkhead.dev/v1
kind: Policy
metadata: { name: x }
spec:
  rules:
    - id: r1
      description: d
      severity: low
      mode: monitor
      action: &a { type: alert }
      scope:
        containerLabels: { "com.example/team": 3 }
      check: { type: privileged }
    - id: r2
      description: d
      severity: low
      mode: monitor
      action: *a
      check: { type: privileged, extra: 1 }
`);
  t.match(find(errors, 'spec.rules[0].scope.containerLabels["com.example/team"]'), { line: 12, column: 48, message: /expected string/i });
  t.match(find(errors, 'spec.rules[1].check.extra'), { line: 19, column: 34, message: 'unknown field "extra"' });
});

t.test('semantic checks: limit action, dates, params', async (t) => {
  const base = (action: object, check: object, extra: object = {}) => ({
    apiVersion: 'bulkhead.dev/v1', kind: 'Policy', metadata: { name: 'x' },
    spec: { rules: [{ id: 'r', description: 'd', severity: 'low', mode: 'enforce', action, check, ...extra }] },
  });
  t.ok(policyFromJson(base({ type: 'limit', limits: { memory: '1g', cpus: 0.5, pids: 100 } }, { type: 'resource-limits' })));
  const errs = (o: unknown) => {
    try {
      policyFromJson(o);
      return [];
    } catch (e) {
      return (e as PolicyValidationError).errors;
    }
  };
  t.match(errs(base({ type: 'limit', limits: {} }, { type: 'privileged' })), [{ path: 'spec.rules[0].action.limits', line: 0, column: 0, file: '<json>', message: /needs `limits`/ }]);
  t.match(errs(base({ type: 'limit', limits: { memory: 'big' } }, { type: 'privileged' })), [{ path: 'spec.rules[0].action.limits.memory' }]);
  t.match(errs(base({ type: 'alert' }, { type: 'privileged' }, { exemptions: [{ who: 'a', why: 'b', until: '2026-02-30T00:00:00Z' }] })), [{ path: 'spec.rules[0].exemptions[0].until' }]);
  t.match(errs(base({ type: 'alert' }, { type: 'privileged' }, { exemptions: [{ who: '', why: 'b' }] })), [{ path: 'spec.rules[0].exemptions[0].who' }]);
  t.match(errs(base({ type: 'alert' }, { type: 'sensitive-mounts', addPaths: ['relative/path'] })), [{ path: 'spec.rules[0].check.addPaths[0]', message: /absolute path/ }]);
  t.match(errs(base({ type: 'alert' }, { type: 'secrets', detectors: ['nope'] })), [{ path: 'spec.rules[0].check.detectors[0]', message: /must be one of database-url-credentials/ }]);
  t.match(errs(base({ type: 'alert' }, { type: 'host-namespaces', namespaces: ['mount'] })), [{ path: 'spec.rules[0].check.namespaces[0]' }]);
  t.match(errs(base({ type: 'alert' }, { type: 'registry-allowlist', registries: [] })), [{ path: 'spec.rules[0].check.registries' }]);
  t.match(errs(base({ type: 'alert' }, { type: 'registry-allowlist' })), [{ path: 'spec.rules[0].check.registries', message: 'missing required field "registries"' }]);
  t.match(errs(base({ type: 'alert' }, { type: 'not-scanned', maxAgeDays: 0 })), [{ path: 'spec.rules[0].check.maxAgeDays' }]);
  t.match(errs(base({ type: 'alert' }, { type: 'vulnerabilities', maxCvss: 11 })), [{ path: 'spec.rules[0].check.maxCvss' }]);
  t.match(errs(null), [{ path: '', message: /expected object/i }]);
  t.match(errs({ ...base({ type: 'alert' }, { type: 'privileged' }), extra: true }), [{ path: 'extra', message: 'unknown field "extra"' }]);
});

t.test('policyFromJson returns a copy with defaults; the input is not changed', async (t) => {
  const input = parsePolicy(GOOD);
  delete input.spec.projectLabel;
  const out = policyFromJson(input);
  t.equal(out.spec.projectLabel, 'bulkhead.project');
  t.equal(input.spec.projectLabel, undefined);
});

t.test('every check type accepts an empty or minimal parameter set and rejects unknown params', async (t) => {
  const minimal: Record<string, object> = { 'registry-allowlist': { registries: ['docker.io'] }, vulnerabilities: { maxCritical: 0 }, 'pids-usage': { above: 1000 },
    'disk-usage': { writableAbove: '200m' }, 'network-usage': { bytesPerSecAbove: '100m' }, connections: { above: 2000 },
    'image-signature': { keys: [{ name: 'k', file: '/etc/bulkhead/keys/k.pub' }] } };
  for (const c of CHECKS) {
    const doc = (check: object) => ({ apiVersion: 'bulkhead.dev/v1', kind: 'Policy', metadata: { name: 'x' }, spec: { rules: [{ id: 'r', description: 'd', severity: 'low', mode: 'monitor', action: { type: 'alert' }, check }] } });
    t.doesNotThrow(() => policyFromJson(doc({ type: c.type, ...(minimal[c.type] ?? {}) })), `${c.type} minimal`);
    t.throws(() => policyFromJson(doc({ type: c.type, ...(minimal[c.type] ?? {}), bogus: 1 })), PolicyValidationError, `${c.type} rejects unknown params`);
  }
});

t.test('helpers', async (t) => {
  t.ok(isDateTime('2026-01-31T00:00:00Z'));
  t.ok(isDateTime('2026-01-31T00:00:00.123+02:00'));
  t.notOk(isDateTime('2026-01-31'), 'date only is not a date-time');
  t.notOk(isDateTime('2026-02-30T00:00:00Z'), 'no such day');
  t.notOk(isDateTime('2026-01-31T00:00:00'), 'a zone is required');
  t.equal(formatPath(['spec', 'rules', 3, 'check', 'maxMemory']), 'spec.rules[3].check.maxMemory');
  t.equal(formatPath(['a', 'b.c']), 'a["b.c"]');
  t.equal(formatPath([]), '');
  t.equal(formatPolicyError({ file: 'f', line: 0, column: 0, path: '', message: 'm' }), 'f: m');
});
