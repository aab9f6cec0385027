import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Value } from '@sinclair/typebox/value';
import { policyJsonSchema, policyJsonSchemaText, PolicySchema, POLICY_SCHEMA_ID } from '../../src/policy/schema';
import * as lazy from '../../src/policy/json-schema';
import { DEFAULT_POLICY_YAML } from '../../src/policy/default-policy';
import { parsePolicy } from '../../src/policy/parse';
import { evaluate } from '../../src/policy/evaluator';
import { CHECKS, CHECK_TYPES } from '../../src/policy/checks/index';
import { SECRET_DETECTORS } from '../../src/policy/secrets';
import '../../src/policy/validate'; // registers the date-time format with TypeBox
import { facts, host, NOW } from './helpers';

const ROOT = join(__dirname, '../../../..');
const REGEN = 'matches its source (if not, run `npx tsc -b packages/shared && node scripts/gen-schema.mjs`)';

t.test('schema/policy.schema.json is exactly what the generator produces', async (t) => {
  const committed = readFileSync(join(ROOT, 'schema/policy.schema.json'), 'utf8');
  t.equal(committed, policyJsonSchemaText(), `schema/policy.schema.json ${REGEN}`);
});

t.test('the lazy wrappers exported by @bulkhead/shared give the same schema', async (t) => {
  t.equal(lazy.policyJsonSchemaText(), policyJsonSchemaText());
  t.same(lazy.policyJsonSchema(), policyJsonSchema());
});

t.test('the published schema is a draft 2020-12 document with $id, title and descriptions', async (t) => {
  const s = policyJsonSchema() as Record<string, any>;
  t.equal(s.$schema, 'https://json-schema.org/draft/2020-12/schema');
  t.equal(s.$id, POLICY_SCHEMA_ID);
  t.ok(s.title);
  const rule = s.properties.spec.properties.rules.items;
  t.ok(rule.properties.id.description, 'fields carry descriptions');
  const variants = rule.properties.check.anyOf as Record<string, any>[];
  t.same(variants.map((v) => v.properties.type.const), CHECK_TYPES, 'check is a union discriminated on type, one variant per check');
  for (const v of variants) {
    t.equal(v.additionalProperties, false, `${v.title} params are closed`);
    t.ok(v.description, `${v.title} described`);
  }
  t.notMatch(JSON.stringify(s), /"\[object Symbol\]"|"Kind"/, 'no TypeBox internals leak');
});

t.test('deploy/policies/default.yaml and DEFAULT_POLICY_YAML are identical', async (t) => {
  t.equal(DEFAULT_POLICY_YAML, readFileSync(join(ROOT, 'deploy/policies/default.yaml'), 'utf8'), `default-policy.ts ${REGEN}`);
});

t.test('the default policy parses, covers the catalogue, and every rule is in monitor mode', async (t) => {
  const p = parsePolicy(DEFAULT_POLICY_YAML, 'deploy/policies/default.yaml');
  t.ok(Value.Check(PolicySchema, p), 'also valid against the published (union) schema');
  t.same(p.spec.rules.filter((r) => r.mode !== 'monitor').map((r) => r.id), [], 'all in monitor mode');
  t.same([...new Set(p.spec.rules.map((r) => r.check.type))].sort(), [...CHECK_TYPES].sort(), 'every check type of the catalogue is used');
  const ids = p.spec.rules.map((r) => r.id);
  t.equal(new Set(ids).size, ids.length, 'unique ids');
  for (const r of p.spec.rules) {
    t.ok(r.description.length > 10, `${r.id} described`);
    if (r.action.type === 'limit') t.ok(r.action.limits, `${r.id} limit action has limits`);
  }
  const bySeverity = (id: string) => p.spec.rules.find((r) => r.id === id)!.severity;
  t.equal(bySeverity('host.privileged'), 'critical');
  t.equal(bySeverity('host.docker-socket'), 'critical');
  // A stop waits out its timeout for a PID 1 that ignores SIGTERM while the
  // container keeps the setting that reaches the host: host safety kills.
  const hostSafety = ['root-user', 'privileged', 'sensitive-mounts', 'docker-socket', 'capabilities', 'host-namespaces', 'seccomp-apparmor', 'system-paths', 'devices'];
  for (const type of hostSafety) {
    const r = p.spec.rules.find((x) => x.check.type === type)!;
    t.equal(r.action.type, 'kill', `${r.id} kills`);
  }
});

t.test('the default policy flags a careless container and spares a hardened one', async (t) => {
  const p = parsePolicy(DEFAULT_POLICY_YAML);
  const careless = facts({
    imageRef: 'nginx', imageDigest: '', user: '', imageUser: '', privileged: true, readOnlyRootfs: false, securityOpt: [], capAdd: ['SYS_ADMIN'],
    mounts: [{ type: 'bind', source: '/var/run/docker.sock', destination: '/var/run/docker.sock', readOnly: true, propagation: '' }],
    memoryLimitBytes: 0, nanoCpus: 0, pidsLimit: 0, networkMode: 'bridge', networks: [{ name: 'bridge', networkId: 'b', ipAddress: '' }],
    pidMode: 'host', devices: ['/dev/mem'], secretHits: [{ location: 'env:DB_URL', detector: 'database-url-credentials' }],
    deviceCgroupRules: { values: ['b *:* rwm'] }, maskedPaths: { values: [] }, readonlyPaths: { values: [] }, cgroupnsMode: 'host',
  });
  const f = evaluate(p, { container: careless, host: { ...host(), cgroupVersion: 2 } }, { now: NOW });
  t.ok(f.length >= 16, `many findings (${f.length})`);
  t.equal(f.find((x) => x.ruleId === 'host.system-paths')?.evidence.length, 2, 'system paths unmasked and writable');
  t.equal(f.find((x) => x.ruleId === 'host.devices')?.evidence.length, 2, 'the device and the cgroup rule');
  t.match(f.find((x) => x.ruleId === 'host.host-namespaces')?.evidence.map((e) => e.location), ['pidMode', 'cgroupnsMode']);
  t.ok(f.every((x) => x.mode === 'monitor'));
  const digest = `sha256:${'b'.repeat(64)}`;
  const hardened = facts({
    imageRef: `ghcr.io/acme/web:1.2.3@${digest}`,
    logConfig: { type: 'local', config: {} }, ulimits: { values: [{ name: 'nofile', soft: 1024, hard: 4096 }] }, daemonDefaultsMerged: true,
    blkioThrottles: { values: [{ kind: 'write-bps', path: '/dev/sda', rate: 50_000_000 }] }, storageOpt: { values: { size: '10G' } },
  });
  const scans = new Map([[digest, { digest, scannedAt: '2026-02-25T00:00:00Z', scanner: 'trivy', vulnerabilities: [] }]]);
  t.same(evaluate(p, { container: hardened }, { now: NOW, scans }), []);
});

t.test('every catalogue entry is complete', async (t) => {
  for (const c of CHECKS) {
    t.ok(c.summary && c.remedy && c.group, `${c.type} has summary, remedy, group`);
    // registry-allowlist has no sensible default list: a rule must name its registries.
    const required = c.type === 'registry-allowlist' ? { registries: ['docker.io'] } : {};
    t.ok(Value.Check(c.params(), { ...c.defaults, ...required }), `${c.type} defaults satisfy its own schema`);
  }
});

t.test('the published schema compiles under Ajv (draft 2020-12, strict) and judges like the loader', async (t) => {
  // Ajv is not a dependency of ours (it arrives transitively); skip when absent.
  let Ajv2020: (new (o: object) => { compile(s: object): ((d: unknown) => boolean) & { errors?: unknown[] | null } }) | undefined;
  let addFormats: ((ajv: unknown) => void) | undefined;
  try {
    Ajv2020 = require('ajv/dist/2020').default;
    addFormats = require('ajv-formats');
  } catch {
    t.comment('ajv not installed: skipped');
    return;
  }
  const ajv = new Ajv2020!({ allErrors: true, strict: true });
  addFormats!(ajv);
  const validate = ajv.compile(policyJsonSchema());
  const p = parsePolicy(DEFAULT_POLICY_YAML);
  t.ok(validate(p), 'default policy valid');
  const bad = structuredClone(p) as any;
  bad.spec.rules[0].check.registries = 'docker.io';
  t.notOk(validate(bad), 'bad params rejected through the check.type union');
  const badDate = structuredClone(p) as any;
  badDate.spec.rules[0].exemptions = [{ who: 'a', why: 'b', until: 'tomorrow' }];
  t.notOk(validate(badDate), 'date-time format enforced');
});

t.test('docs/policy.md documents every check type, every parameter and every secret detector', async (t) => {
  const doc = readFileSync(join(ROOT, 'docs/policy.md'), 'utf8');
  for (const c of CHECKS) {
    t.match(doc, `#### \`${c.type}\``, `${c.type} has a section`);
    for (const param of Object.keys(c.params().properties)) t.match(doc, `\`${param}\``, `${c.type}.${param} documented`);
  }
  for (const d of SECRET_DETECTORS) t.match(doc, `\`${d.name}\``, `detector ${d.name} documented`);
});
