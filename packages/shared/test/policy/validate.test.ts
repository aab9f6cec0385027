// Validation's bounds on globs (docs/policy.md#limits): each glob's length and number of `*`,
// and the number of globs per list, wherever a policy holds globs — scopes, exemption matches
// and the check parameters that are globs.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parsePolicy, PolicyValidationError } from '../../src/policy/parse';
import { CHECK_GLOB_PARAMS, formatPath, validatePolicyObject } from '../../src/policy/validate';
import { CHECKS } from '../../src/policy/checks/index';
import { GLOB_LIMITS } from '../../src/policy/glob';

type Obj = Record<string, unknown>;

function policy(rule: Obj): Obj {
  return {
    apiVersion: 'bulkhead.dev/v1',
    kind: 'Policy',
    metadata: { name: 'p' },
    spec: {
      rules: [{ id: 'r1', description: 'd', severity: 'high', mode: 'monitor', action: { type: 'alert' }, check: { type: 'privileged' }, ...rule }],
    },
  };
}

function issues(rule: Obj): { path: string; message: string }[] {
  return validatePolicyObject(policy(rule)).issues.map((i) => ({ path: formatPath(i.path), message: i.message }));
}

const LONG = `${'x'.repeat(GLOB_LIMITS.maxLength - 1)}*`;
const TOO_LONG = `${'x'.repeat(GLOB_LIMITS.maxLength)}*`;
const STARRY = `${'a*'.repeat(GLOB_LIMITS.maxStars)}`;
const TOO_STARRY = `${'a*'.repeat(GLOB_LIMITS.maxStars + 1)}`;
const MANY = Array.from({ length: GLOB_LIMITS.maxPerList }, (_, i) => `p${i}-*`);
const TOO_MANY = [...MANY, 'one-more'];

t.test('globs at the limits are accepted', async (t) => {
  t.same(issues({ scope: { images: [LONG, STARRY], projects: MANY, hostLabels: { env: LONG }, containerLabels: { tier: STARRY } } }), []);
  t.same(issues({ exemptions: [{ who: 'a', why: 'b', match: { names: MANY } }] }), []);
  t.same(issues({ check: { type: 'registry-allowlist', registries: [LONG] } }), []);
});

t.test('a glob too long, with too many stars, or too many globs in a list is refused, naming the field', async (t) => {
  const got = issues({
    scope: { images: ['ok', TOO_LONG], projects: TOO_MANY, containerLabels: { 'com.example/tier': TOO_STARRY } },
    exemptions: [{ who: 'a', why: 'b' }, { who: 'a', why: 'b', match: { names: [TOO_STARRY], hostLabels: { env: TOO_LONG } } }],
  });
  t.same(got, [
    { path: 'spec.rules[0].scope.containerLabels["com.example/tier"]', message: `glob has ${GLOB_LIMITS.maxStars + 1} "*"; at most ${GLOB_LIMITS.maxStars} are allowed` },
    { path: 'spec.rules[0].scope.images[1]', message: `glob is ${TOO_LONG.length} characters long; at most ${GLOB_LIMITS.maxLength} are allowed` },
    { path: 'spec.rules[0].scope.projects', message: `${GLOB_LIMITS.maxPerList + 1} globs; at most ${GLOB_LIMITS.maxPerList} are allowed` },
    { path: 'spec.rules[0].exemptions[1].match.hostLabels.env', message: `glob is ${TOO_LONG.length} characters long; at most ${GLOB_LIMITS.maxLength} are allowed` },
    { path: 'spec.rules[0].exemptions[1].match.names[0]', message: `glob has ${GLOB_LIMITS.maxStars + 1} "*"; at most ${GLOB_LIMITS.maxStars} are allowed` },
  ]);
  const labels = Object.fromEntries(TOO_MANY.map((k) => [k, '*']));
  t.same(issues({ scope: { hostLabels: labels } }), [
    { path: 'spec.rules[0].scope.hostLabels', message: `${GLOB_LIMITS.maxPerList + 1} labels; at most ${GLOB_LIMITS.maxPerList} are allowed` },
  ]);
});

t.test('check parameters that are globs are bounded too', async (t) => {
  t.same(issues({ check: { type: 'registry-allowlist', registries: ['ghcr.io/acme', TOO_STARRY] } }).map((i) => i.path), ['spec.rules[0].check.registries[1]']);
  t.same(issues({ check: { type: 'latest-tag', forbiddenTags: TOO_MANY } }).map((i) => i.path), ['spec.rules[0].check.forbiddenTags']);
  t.same(issues({ check: { type: 'devices', allowed: [TOO_LONG] } }).map((i) => i.path), ['spec.rules[0].check.allowed[0]']);
});

t.test('every check parameter described as a glob is bounded', async (t) => {
  for (const c of CHECKS) {
    const props = c.params().properties as Record<string, { description?: string }>;
    for (const [name, schema] of Object.entries(props)) {
      if (/glob/i.test(schema.description ?? '')) t.ok(CHECK_GLOB_PARAMS[c.type]?.includes(name), `${c.type}.${name} is in CHECK_GLOB_PARAMS`);
    }
  }
  for (const [type, params] of Object.entries(CHECK_GLOB_PARAMS)) {
    const c = CHECKS.find((x) => x.type === type);
    t.ok(c, `${type} is a check type`);
    for (const p of params) t.ok(c && p in c.params().properties, `${type}.${p} is one of its parameters`);
  }
});

t.test('the error reaches the policy file with its position', async (t) => {
  const text = `apiVersion: bulkhead.dev/v1
kind: Policy
metadata:
  name: p
spec:
  rules:
    - id: r1
      description: d
      severity: high
      mode: monitor
      action: { type: alert }
      scope:
        images: ["${TOO_STARRY}"]
      check: { type: privileged }
`;
  let err: PolicyValidationError | undefined;
  try {
    parsePolicy(text, 'p.yaml');
  } catch (e) {
    if (!(e instanceof PolicyValidationError)) throw e;
    err = e;
  }
  t.ok(err, 'refused');
  t.match(err?.errors, [{ file: 'p.yaml', line: 13, path: 'spec.rules[0].scope.images[0]', message: `glob has ${GLOB_LIMITS.maxStars + 1} "*"; at most ${GLOB_LIMITS.maxStars} are allowed` }]);
  t.match(err?.message, /p\.yaml:13:\d+: spec\.rules\[0\]\.scope\.images\[0\]: glob has/);
});

t.test('docs/policy.md states the limits the code enforces', async (t) => {
  const doc = readFileSync(join(__dirname, '../../../../docs/policy.md'), 'utf8');
  const limits = doc.slice(doc.indexOf('\n## Limits\n'), doc.indexOf('\n## ', doc.indexOf('\n## Limits\n') + 1));
  t.match(limits, `| characters in one glob | ${GLOB_LIMITS.maxLength} |`);
  t.match(limits, `| \`*\` in one glob | ${GLOB_LIMITS.maxStars} |`);
  t.match(limits, new RegExp(`\\| globs in one list[^|]*\\| ${GLOB_LIMITS.maxPerList} \\|`));
  for (const [type, params] of Object.entries(CHECK_GLOB_PARAMS)) for (const p of params) t.match(limits, `\`${type}\` \`${p}\``);
});
