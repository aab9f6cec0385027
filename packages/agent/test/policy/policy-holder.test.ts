// The policy in force: bundles validated, refused ones never replace the
// good one, the last bundle survives a restart, a corrupt file never stops
// the agent, and a local file serves standalone use until a bundle arrives.
import t from 'tap';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { createLogger, parsePolicy } from '@bulkhead/shared';
import { PolicyHolder, POLICY_BUNDLE_FILE, bundleSha256, type PolicyState } from '../../src/policy/policy-holder';

const POLICY_YAML = `
apiVersion: bulkhead.dev/v1
kind: Policy
metadata: { name: test }
spec:
  projectLabel: team
  rules:
    - id: host.privileged
      description: no privileged
      severity: critical
      mode: enforce
      action: { type: kill }
      check: { type: privileged }
`;
const policyJson = JSON.stringify(parsePolicy(POLICY_YAML, 'test.yaml'));
const scansJson = JSON.stringify([{ digest: 'sha256:abc', scannedAt: '2024-01-01T00:00:00Z', scanner: 'trivy', vulnerabilities: [] }]);
const bundle = (version: number, p = policyJson, s = scansJson) => ({ version, policyJson: p, scansJson: s, sha256: bundleSha256(p, s) });

function setup(t: tap.Test) {
  const dir = mkdtempSync(join(tmpdir(), 'bk-policy-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const lines: Array<Record<string, unknown>> = [];
  const dest = new Writable({
    write(chunk: Buffer, _e, cb) {
      for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  const logger = createLogger({ name: 'policy-test', level: 'debug', destination: dest });
  return { dir, lines, logger };
}

t.test('nothing in force before any bundle (fail-open)', async (t) => {
  const { dir, logger } = setup(t);
  const h = PolicyHolder.open({ stateDir: dir, logger });
  t.equal(h.state.policy, undefined);
  t.equal(h.state.source, 'none');
  t.equal(h.version, 0);
});

t.test('apply: valid bundle installed, persisted 0600, change emitted; re-send is a no-op', async (t) => {
  const { dir, logger } = setup(t);
  const h = PolicyHolder.open({ stateDir: dir, logger });
  const changes: PolicyState[] = [];
  h.on('change', (s) => changes.push(s));
  t.same(h.apply(bundle(3)), { applied: true });
  t.equal(h.state.version, 3);
  t.equal(h.state.source, 'bundle');
  t.equal(h.state.projectLabel, 'team');
  t.ok(h.state.scans.get('sha256:abc'));
  t.equal(h.state.policy?.spec.rules[0]?.id, 'host.privileged');
  t.equal(changes.length, 1);
  const file = join(dir, POLICY_BUNDLE_FILE);
  t.equal(statSync(file).mode & 0o777, 0o600);
  t.equal(JSON.parse(readFileSync(file, 'utf8')).version, 3);
  t.same(h.apply({ ...bundle(3), version: '3' }), { applied: true });
  t.equal(changes.length, 1, 'the same bundle again changes nothing');
});

t.test('apply: refused bundles keep the policy in force', async (t) => {
  const { dir, logger, lines } = setup(t);
  const h = PolicyHolder.open({ stateDir: dir, logger });
  h.apply(bundle(1));
  const before = h.state;

  const corrupt = { ...bundle(2), sha256: 'f'.repeat(64) };
  const r1 = h.apply(corrupt);
  t.equal(r1.applied, false);
  t.match(r1.error, /sha256 mismatch/);

  const invalid = JSON.stringify({ apiVersion: 'bulkhead.dev/v1', kind: 'Policy', metadata: { name: 'x' }, spec: { rules: [{ id: 'r', check: { type: 'nope' } }] } });
  const r2 = h.apply(bundle(2, invalid));
  t.equal(r2.applied, false);
  t.match(r2.error, /policy is invalid/);

  const r3 = h.apply(bundle(2, '{not json'));
  t.equal(r3.applied, false);
  t.match(r3.error, /not JSON/);

  const r4 = h.apply(bundle(2, policyJson, '{"a":1}'));
  t.equal(r4.applied, false);
  t.match(r4.error, /not a JSON array/);

  const r5 = h.apply({ ...bundle(2), version: -1 });
  t.equal(r5.applied, false);

  t.equal(h.state, before, 'still the old policy');
  t.equal(JSON.parse(readFileSync(join(dir, POLICY_BUNDLE_FILE), 'utf8')).version, 1, 'persisted file untouched');
  t.ok(lines.some((l) => l['level'] === 50 && /refused/.test(String(l['msg']))), 'refusals logged as errors');
});

t.test('the last bundle survives a restart; a corrupt file is ignored with an error log', async (t) => {
  const { dir, logger, lines } = setup(t);
  PolicyHolder.open({ stateDir: dir, logger }).apply(bundle(7));
  const again = PolicyHolder.open({ stateDir: dir, logger });
  t.equal(again.state.version, 7);
  t.equal(again.state.policy?.metadata.name, 'test');

  const file = join(dir, POLICY_BUNDLE_FILE);
  const saved = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  writeFileSync(file, JSON.stringify({ ...saved, policyJson: String(saved['policyJson']).replace('critical', 'low') }));
  const tampered = PolicyHolder.open({ stateDir: dir, logger });
  t.equal(tampered.state.policy, undefined, 'sha256 mismatch on load: ignored');
  writeFileSync(file, '{"version": 1, "policyJs');
  t.equal(PolicyHolder.open({ stateDir: dir, logger }).state.policy, undefined, 'truncated file: ignored');
  writeFileSync(file, '[]');
  t.equal(PolicyHolder.open({ stateDir: dir, logger }).state.policy, undefined, 'malformed: ignored');
  t.ok(lines.filter((l) => l['level'] === 50 && /persisted policy bundle/.test(String(l['msg']))).length >= 3);
});

t.test('local policy file: standalone use until a bundle arrives', async (t) => {
  const { dir, logger } = setup(t);
  const path = join(dir, 'local.yaml');
  writeFileSync(path, POLICY_YAML);
  const h = PolicyHolder.open({ stateDir: dir, logger, localPolicyPath: path });
  t.equal(h.state.source, 'local');
  t.equal(h.state.version, 0);
  t.equal(h.state.policy?.spec.rules.length, 1);
  h.apply(bundle(2));
  t.equal(h.state.source, 'bundle', 'a controller bundle wins');
  h.loadLocalPolicy(path);
  t.equal(h.state.source, 'bundle', 'a local file never replaces a bundle');
  const restarted = PolicyHolder.open({ stateDir: dir, logger, localPolicyPath: path });
  t.equal(restarted.state.source, 'bundle', 'persisted bundle beats the local file after restart');

  const bad = join(dir, 'bad.yaml');
  writeFileSync(bad, 'apiVersion: nope\n');
  const dir2 = mkdtempSync(join(tmpdir(), 'bk-policy-'));
  t.teardown(() => rmSync(dir2, { recursive: true, force: true }));
  t.throws(() => PolicyHolder.open({ stateDir: dir2, logger, localPolicyPath: bad }), { code: 'BK_ERR_POLICY_INVALID' });
  t.throws(() => PolicyHolder.open({ stateDir: dir2, logger, localPolicyPath: join(dir, 'missing.yaml') }), { code: 'BK_ERR_CONFIG_INVALID' });
});

t.test('tag pins: covered by the sha256, installed, persisted, refused when malformed', async (t) => {
  const { dir, logger } = setup(t);
  const pinsJson = JSON.stringify({ 'docker.io/library/nginx:v1': 'sha256:aaa', 'reg.example/x:v2': 'sha256:bbb' });
  const withPins = (version: number, pins: string, sha = bundleSha256(policyJson, scansJson, pins)) => ({ version, policyJson, scansJson, tagPinsJson: pins, sha256: sha });
  const h = PolicyHolder.open({ stateDir: dir, logger });
  t.same(h.apply(withPins(3, pinsJson)), { applied: true });
  t.same([...(h.state.tagPins ?? new Map())], [['docker.io/library/nginx:v1', 'sha256:aaa'], ['reg.example/x:v2', 'sha256:bbb']]);
  t.equal(bundleSha256(policyJson, scansJson, ''), bundleSha256(policyJson, scansJson), 'no pins hash as before pins existed');

  const again = PolicyHolder.open({ stateDir: dir, logger });
  t.equal(again.state.tagPins?.get('reg.example/x:v2'), 'sha256:bbb', 'persisted with the bundle');

  // Same version, new pins (a tag seen for the first time): applied.
  const more = JSON.stringify({ 'docker.io/library/nginx:v1': 'sha256:aaa', 'reg.example/x:v3': 'sha256:ccc' });
  t.same(h.apply(withPins(3, more)), { applied: true });
  t.equal(h.state.tagPins?.get('reg.example/x:v3'), 'sha256:ccc');

  const r = h.apply(withPins(4, more, bundleSha256(policyJson, scansJson)));
  t.equal(r.applied, false, 'pins outside the sha256: refused');
  t.match(r.error, /sha256 mismatch/);
  t.match(h.apply(withPins(4, '[1]')).error, /tag_pins_json is not a JSON object/);
  t.match(h.apply(withPins(4, '{"a":')).error, /tag_pins_json is not JSON/);
  t.equal(h.state.tagPins?.get('reg.example/x:v3'), 'sha256:ccc', 'the pins in force stay');
});
