// Hostile and oversized inputs to the policy loader and the Trivy reader: each is refused with
// the documented limit (docs/limits.md), naming the field or the place in the text, and the
// refusal is cheap. Time bounds are wide (a shared CI core is slow; the largest documents the
// limits let through take about 0.25 s alone): the inputs here cost seconds to minutes before
// these limits existed.
import t, { type Test } from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { MAX_POLICY_ERRORS, POLICY_DOCUMENT_LIMITS, PolicyValidationError, parsePolicy, policyFromJson } from '../../src/policy/parse';
import { POLICY_CONTENT_LIMITS } from '../../src/policy/validate';
import { MAX_MEMORY_BYTES, formatBytes, parseMemorySize } from '../../src/policy/units';
import { TRIVY_REPORT_LIMITS, checkTrivyReportText, parseTrivyReport } from '../../src/policy/trivy';
import { DEFAULT_POLICY_YAML } from '../../src/policy/default-policy';
import { BulkheadError } from '../../src/errors/registry';

const HEAD = 'apiVersion: bulkhead.dev/v1\nkind: Policy\nmetadata: {name: x}\nspec:\n  rules:\n';
const RULE = (i: number | string, action = '{type: alert}', check = '{type: privileged}') =>
  `  - id: r${i}\n    description: d\n    severity: low\n    mode: monitor\n    action: ${action}\n    check: ${check}\n`;

/**
 * Runs `fn`, expecting a PolicyValidationError; returns its errors and how long it took. A slow
 * first run is repeated (up to 3 runs, the fastest counts): a shared CI core can stall any one
 * run for a second, while the super-linear costs these bounds guard against show in every run.
 */
function refused(t: Test, fn: () => unknown): { errors: PolicyValidationError['errors']; ms: number } {
  const once = (): { err: unknown; ms: number } => {
    const start = performance.now();
    try {
      fn();
    } catch (e) {
      return { err: e, ms: performance.now() - start };
    }
    return { err: undefined, ms: performance.now() - start };
  };
  const first = once();
  if (first.err === undefined) {
    t.fail('accepted');
    return { errors: [], ms: 0 };
  }
  t.type(first.err, PolicyValidationError);
  t.equal((first.err as PolicyValidationError).code, 'BK_ERR_POLICY_INVALID');
  let ms = first.ms;
  for (let i = 0; i < 2 && ms > 100; i++) ms = Math.min(ms, once().ms);
  return { errors: (first.err as PolicyValidationError).errors, ms };
}

t.test('a valid policy still loads, and quickly', async (t) => {
  const start = performance.now();
  const p = parsePolicy(DEFAULT_POLICY_YAML);
  t.ok(p.spec.rules.length > 0);
  t.ok(performance.now() - start < 1000);
});

t.test('alias amplification: refused on the expanded size before it is built', async (t) => {
  // ~900 KiB named once and referenced 100 times: ~90 MB once expanded.
  const blob = 'y'.repeat(900 * 1024);
  const doc = `${HEAD}${RULE(0)}x-blob: &b |\n  ${blob}\nx-copies: [${Array(100).fill('*b').join(', ')}]\n`;
  t.ok(Buffer.byteLength(doc) <= POLICY_DOCUMENT_LIMITS.maxBytes, 'the document itself is within the size limit');
  const { errors, ms } = refused(t, () => parsePolicy(doc));
  t.equal(errors.length, 1);
  t.match(errors[0]!.message, /with its aliases expanded the document is over 2 MiB/);
  t.ok(errors[0]!.line > 0, 'points into the text');
  t.ok(ms < 1000, `refused in ${ms.toFixed(0)} ms`);

  const many = `${HEAD}${RULE(0)}x-a: &a 1\nx-b: [${Array(POLICY_DOCUMENT_LIMITS.maxAliases + 1).fill('*a').join(', ')}]\n`;
  t.match(refused(t, () => parsePolicy(many)).errors[0]!.message, `more than ${POLICY_DOCUMENT_LIMITS.maxAliases} aliases`);

  const fine = `${HEAD}${RULE(0, '{type: alert}', '&c {type: privileged}')}${RULE(1, '{type: alert}', '*c')}`;
  t.equal(parsePolicy(fine).spec.rules[1]!.check.type, 'privileged', 'ordinary aliases still work');
});

t.test('document size: over 1 MiB is refused with the limit', async (t) => {
  const doc = `${HEAD}${RULE(0)}# ${'x'.repeat(POLICY_DOCUMENT_LIMITS.maxBytes)}\n`;
  const { errors, ms } = refused(t, () => parsePolicy(doc));
  t.match(errors[0]!.message, /at most 1048576 \(1 MiB\)/);
  t.ok(ms < 250);
});

t.test('nesting: a 500k-deep flow sequence and deep compact sequences are refused at once', async (t) => {
  const deep = `${HEAD}${RULE(0)}x: ${'['.repeat(500_000)}${']'.repeat(500_000)}\n`;
  let r = refused(t, () => parsePolicy(deep));
  t.match(r.errors[0]!.message, `nested more than ${POLICY_DOCUMENT_LIMITS.maxDepth} deep`);
  t.equal(r.errors[0]!.line, 12);
  t.ok(r.ms < 250, `flow: ${r.ms.toFixed(0)} ms`);

  const compact = `${HEAD}${RULE(0)}x:\n${'- '.repeat(300_000)}y\n`;
  r = refused(t, () => parsePolicy(compact));
  t.match(r.errors[0]!.message, /more than 10000 entries/);
  t.ok(r.ms < 250, `compact: ${r.ms.toFixed(0)} ms`);

  const blockDeep = `${HEAD}${RULE(0)}x:\n${Array.from({ length: 40 }, (_, i) => `${' '.repeat(i * 2 + 2)}k${i}:`).join('\n')} 1\n`;
  t.match(refused(t, () => parsePolicy(blockDeep)).errors[0]!.message, `nested more than ${POLICY_DOCUMENT_LIMITS.maxDepth} deep`, 'block nesting, measured on the parsed document');

  // JSON objects (bundles, stored versions) get the same bound without a parser in front.
  let obj: unknown = 1;
  for (let i = 0; i < 100_000; i++) obj = [obj];
  const e = (() => {
    try {
      policyFromJson({ apiVersion: 'bulkhead.dev/v1', kind: 'Policy', metadata: { name: 'x' }, spec: { rules: [] }, x: obj });
    } catch (err) {
      return err as PolicyValidationError;
    }
    return undefined;
  })();
  t.match(e?.errors[0]?.message, `nested more than ${POLICY_CONTENT_LIMITS.maxDepth} levels deep`);
});

t.test('error amplification: at most 50 errors, and how many were left out', async (t) => {
  // 9,000 unknown fields in one rule's check (the entry limit allows no more): keys checked for
  // repeats and errors located in one pass each. Quadratic, this took seconds.
  const fields = Array.from({ length: 9000 }, (_, i) => `f${i}: 1`).join(', ');
  let r = refused(t, () => parsePolicy(`${HEAD}${RULE(0, '{type: alert}', `{type: privileged, ${fields}}`)}`));
  t.equal(r.errors.length, MAX_POLICY_ERRORS + 1);
  t.match(r.errors[0]!.message, /unknown field "f0"/);
  t.match(r.errors[MAX_POLICY_ERRORS]!.message, `validation stopped after ${MAX_POLICY_ERRORS} errors; at least 1000 more were left out`);
  t.ok(r.ms < 2000, `unknown fields: ${r.ms.toFixed(0)} ms`);

  // Many wrong items, each with its own error.
  const items = Array(9000).fill('1').join(',');
  r = refused(t, () => parsePolicy(`${HEAD}${RULE(0)}    scope: {images: [${items}]}\n`));
  t.equal(r.errors.length, MAX_POLICY_ERRORS + 1);
  t.match(r.errors[0], { path: 'spec.rules[0].scope.images[0]', line: 12 });
  t.ok(JSON.stringify(r.errors).length < 20_000, 'the error list stays small');
  t.ok(r.ms < 2000, `wrong items: ${r.ms.toFixed(0)} ms`);

  const dups = refused(t, () => parsePolicy(`${HEAD}${RULE(0, '{type: alert}', `{type: privileged, ${Array(200).fill('a: 1').join(', ')}}`)}`));
  t.equal(dups.errors.length, MAX_POLICY_ERRORS + 1, 'repeated keys: capped too');
  t.match(dups.errors[0], { line: 11, message: 'YAML syntax: Map keys must be unique' });

  // Without source text, the same bound.
  const obj = { apiVersion: 'bulkhead.dev/v1', kind: 'Policy', metadata: { name: 'x' }, spec: { rules: Array.from({ length: 500 }, () => ({ id: 1 })) } };
  const start = performance.now();
  try {
    policyFromJson(obj);
    t.fail('accepted');
  } catch (e) {
    t.equal((e as PolicyValidationError).errors.length, MAX_POLICY_ERRORS + 1);
  }
  t.ok(performance.now() - start < 1000);
});

t.test('rule count is bounded', async (t) => {
  const rules = Array.from({ length: POLICY_CONTENT_LIMITS.maxRules + 1 }, (_, i) => `{id: r${i}, description: d, severity: low, mode: monitor, action: {type: alert}, check: {type: privileged}}`);
  const { errors, ms } = refused(t, () => parsePolicy(`${HEAD}    [${rules.join(',\n     ')}]\n`.replace('rules:\n    [', 'rules: [')));
  t.equal(errors.length, 1);
  t.match(errors[0], { path: 'spec.rules', message: `${POLICY_CONTENT_LIMITS.maxRules + 1} rules; at most ${POLICY_CONTENT_LIMITS.maxRules} are allowed` });
  t.ok(ms < 1000, `${ms.toFixed(0)} ms`);
  const ok = Array.from({ length: 200 }, (_, i) => RULE(i)).join('');
  t.equal(parsePolicy(HEAD + ok).spec.rules.length, 200);
});

t.test('values outside any sane range name the field and the range', async (t) => {
  const limit = (l: string) => refused(t, () => parsePolicy(HEAD + RULE(0, `{type: limit, limits: ${l}}`))).errors;
  t.match(limit('{memory: 1e23}'), [{ path: 'spec.rules[0].action.limits.memory', message: /out of range: at most 1 PiB \(1125899906842624 bytes\)/ }]);
  t.match(limit('{memory: "9999999999999999p"}'), [{ path: 'spec.rules[0].action.limits.memory', message: /out of range: at most 1 PiB/ }]);
  t.match(limit('{memory: "0"}'), [{ path: 'spec.rules[0].action.limits.memory', message: /at least 1 byte/ }]);
  t.match(limit('{pids: 1e300}'), [{ path: 'spec.rules[0].action.limits.pids', message: `out of range: 1 to ${POLICY_CONTENT_LIMITS.maxPids}` }]);
  t.match(limit('{cpus: 1e308}'), [{ path: 'spec.rules[0].action.limits.cpus', message: 'out of range: 0.01 to 4096' }]);
  t.match(limit('{cpus: 0.001}'), [{ path: 'spec.rules[0].action.limits.cpus', message: 'out of range: 0.01 to 4096' }]);
  t.equal(parsePolicy(HEAD + RULE(0, '{type: limit, limits: {memory: 512m, cpus: 0.5, pids: 100}}')).spec.rules[0]!.action.limits?.memory, '512m');

  // Elsewhere: numbers that are not exact doubles.
  t.match(refused(t, () => parsePolicy(HEAD + RULE(0, '{type: stop, stopTimeoutSeconds: 1e300}'))).errors[0]!.message, /out of range/);

  // NUL: raw in the text, or escaped into a value.
  let r = refused(t, () => parsePolicy(HEAD.replace('name: x', 'name: x\u0000y') + RULE(0)));
  t.match(r.errors[0], { line: 3, column: 19, message: 'control character U+0000 is not allowed in a policy document' });
  r = refused(t, () => parsePolicy(HEAD.replace('name: x', 'name: "x\\0y"') + RULE(0)));
  t.match(r.errors[0], { path: 'metadata.name', line: 3, message: /NUL/ });

  t.equal(parseMemorySize('9999999999999999p'), undefined, 'not an exact integer: no size at all');
  t.equal(parseMemorySize(1e23), undefined);
  t.equal(parseMemorySize('1p'), MAX_MEMORY_BYTES);
  t.equal(formatBytes(MAX_MEMORY_BYTES), '1 PiB');
});

// ---- Trivy reports ------------------------------------------------------------------------------

const FIXTURE = JSON.parse(readFileSync(join(__dirname, 'fixtures/trivy-nginx-1.25.3.json'), 'utf8')) as Record<string, unknown> & { Results: Array<{ Vulnerabilities?: Array<Record<string, unknown>> }> };

function rejects(t: Test, fn: () => unknown, code: string, message: RegExp | string): void {
  try {
    fn();
    t.fail('accepted');
  } catch (e) {
    t.type(e, BulkheadError);
    t.match(e, { code, message });
  }
}

t.test('Trivy: CVSS outside 0..10 names the field', async (t) => {
  for (const score of [1e308, -5]) {
    const r = structuredClone(FIXTURE);
    r.Results[0]!.Vulnerabilities![1]!.CVSS = { nvd: { V3Score: score } };
    rejects(t, () => parseTrivyReport(r), 'BK_ERR_BAD_REQUEST', `Results[0].Vulnerabilities[1].CVSS.nvd.V3Score is ${score}; a CVSS score is a number from 0 to 10`);
  }
  const r = structuredClone(FIXTURE);
  r.Results[0]!.Vulnerabilities![0]!.CVSS = { ghsa: { V3Score: '9.8' } };
  rejects(t, () => parseTrivyReport(r), 'BK_ERR_BAD_REQUEST', /CVSS\.ghsa\.V3Score is "9\.8"/);
  t.equal(parseTrivyReport(FIXTURE).vulnerabilities.length, 9, 'the real report still parses');
});

t.test('Trivy: vulnerability count, nesting and field lengths are bounded, before JSON.parse when given text', async (t) => {
  const N = 1_000_000;
  const entry = '{"VulnerabilityID":"CVE-2024-0001","PkgName":"p","Severity":"LOW"}';
  const { Results: _results, ...rest } = FIXTURE;
  const head = `${JSON.stringify(rest).slice(0, -1)},"Results":`;
  const huge = `${head}[{"Target":"t","Vulnerabilities":[${Array(N).fill(entry).join(',')}]}]}`;
  t.ok(huge.length > 60_000_000);
  let start = performance.now();
  rejects(t, () => checkTrivyReportText(huge), 'BK_ERR_TOO_LARGE', /at most 32 MiB|at most 33554432/);
  t.ok(performance.now() - start < 250, 'over the byte limit: refused on its length');

  const many = `${head}[{"Target":"t","Vulnerabilities":[${Array(TRIVY_REPORT_LIMITS.maxVulnerabilities + 1).fill(entry).join(',')}]}]}`;
  start = performance.now();
  rejects(t, () => parseTrivyReport(many), 'BK_ERR_TOO_LARGE', `more than ${TRIVY_REPORT_LIMITS.maxVulnerabilities} vulnerabilities`);
  t.ok(performance.now() - start < 1000, `count: ${(performance.now() - start).toFixed(0)} ms`);

  // The same count after parsing (a key written with escapes is not seen by the text scan).
  const parsed = { ...FIXTURE, Results: [{ Target: 't', Vulnerabilities: Array.from({ length: TRIVY_REPORT_LIMITS.maxVulnerabilities + 1 }, () => ({ VulnerabilityID: 'CVE-1' })) }] };
  rejects(t, () => parseTrivyReport(parsed), 'BK_ERR_TOO_LARGE', /vulnerabilities/);

  const deep = `{"x":${'['.repeat(5_000_000)}${']'.repeat(5_000_000)}}`;
  start = performance.now();
  rejects(t, () => parseTrivyReport(deep), 'BK_ERR_BAD_REQUEST', `nested more than ${TRIVY_REPORT_LIMITS.maxDepth} levels`);
  t.ok(performance.now() - start < 250, `deep: ${(performance.now() - start).toFixed(0)} ms`);

  const text = JSON.stringify({ ...FIXTURE, Description: '"VulnerabilityID": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[' });
  t.equal(parseTrivyReport(text).vulnerabilities.length, 9, 'text inside strings is not counted');

  const long = structuredClone(FIXTURE);
  long.Results[0]!.Vulnerabilities![0]!.VulnerabilityID = 'C'.repeat(TRIVY_REPORT_LIMITS.maxIdLength + 1);
  rejects(t, () => parseTrivyReport(long), 'BK_ERR_BAD_REQUEST', /Results\[0\]\.Vulnerabilities\[0\]\.VulnerabilityID is 257 characters; at most 256/);
});
