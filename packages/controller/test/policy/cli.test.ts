// `bulkhead policy|violations|scans` against the real HTTPS API with a real
// PolicyService: output, --json, exit codes and every validation error printed
// as FILE:LINE:COL: PATH: MESSAGE.
import t from 'tap';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DEFAULT_POLICY_YAML } from '@bulkhead/shared';
import { main, type OpsCliIo } from '../../../cli/src/main';
import { startPolicyApi } from './fixtures/policy-api';
import { APP_DIGEST, CANDIDATE_YAML, FLEET, NOW, hex, seedFleet, trivyReport } from './fixtures/fleet';

interface Run {
  code: number;
  out: string;
  err: string;
}

async function run(argv: string[], env: Record<string, string | undefined>): Promise<Run> {
  let out = '';
  let err = '';
  const io: Partial<OpsCliIo> = { out: (s) => void (out += s), err: (s) => void (err += s), env, now: () => NOW };
  const code = await main(argv, io);
  return { code, out, err };
}

t.test('policy, violations and scans commands', async (t) => {
  const api = await startPolicyApi();
  t.teardown(() => api.close());
  await seedFleet(api.store);
  const env = { BULKHEAD_API: api.url, BULKHEAD_CA: api.caFile, BULKHEAD_API_KEY: api.apiKey };
  const dir = t.testdir();
  const file = (name: string, text: string) => {
    const p = join(dir, name);
    writeFileSync(p, text);
    return p;
  };

  t.test('policy get prints the document in force', async (t) => {
    const r = await run(['policy', 'get'], env);
    t.equal(r.code, 0, r.err);
    t.equal(r.out, DEFAULT_POLICY_YAML.endsWith('\n') ? DEFAULT_POLICY_YAML : DEFAULT_POLICY_YAML + '\n');
    const j = await run(['--json', 'policy', 'get'], env);
    t.match(JSON.parse(j.out), { version: 1, createdBy: 'init', current: true });
    const missing = await run(['policy', 'get', '9'], env);
    t.equal(missing.code, 1);
    t.match(missing.err, /BK_ERR_NOT_FOUND: policy version 9 not found/);
    t.equal((await run(['policy', 'get', 'latest'], env)).code, 2, 'a version must be a number');
  });

  t.test('policy dry-run shows what a candidate would hit', async (t) => {
    const p = file('candidate.yaml', CANDIDATE_YAML);
    const r = await run(['policy', 'dry-run', p], env);
    t.equal(r.code, 0, r.err);
    const lines = r.out.trimEnd().split('\n');
    t.match(lines[0], /^RULE\s+SEVERITY\s+MODE\s+ACTION\s+CONTAINER\s+AGENT\s+REASON$/);
    t.match(r.out, /^host\.privileged\s+critical\s+enforce\s+kill\s+node-exporter\s+prod-1\s+.*privileged/m);
    t.match(r.out, /^host\.docker-socket\s+critical\s+enforce\s+stop\s+ci-runner\s+prod-1\s+/m);
    t.match(r.out, /^image\.no-latest\s+medium\s+monitor\s+alert\s+scratchpad\s+dev-1\s+/m);
    t.match(r.out, /^image\.no-latest\s+medium\s+exempt\s+-\s+legacy-batch\s+dev-1\s+exempted by platform-team: legacy batch job/m);
    t.notMatch(r.out, /portainer|forgotten|old-privileged/, 'out of scope, revoked and removed containers are not hit');
    t.equal(lines.at(-1), '8 findings (4 enforce, 4 monitor) from 4 of 5 rules on 6 of 9 containers across 3 agents; 1 exempted. Nothing was changed.');
    const j = await run(['--json', 'policy', 'dry-run', p], env);
    t.match(JSON.parse(j.out), { policyName: 'fleet-baseline', totals: { findings: 8 } });
    t.equal((await api.store.listPolicyVersions()).length, 1, 'nothing applied');
  });

  t.test('policy apply: invalid files change nothing and print every error', async (t) => {
    const p = file('broken.yaml', CANDIDATE_YAML.replace('mode: monitor', 'mode: watch').replace('{ type: kill }', '{ type: explode }'));
    const r = await run(['policy', 'apply', p], env);
    t.equal(r.code, 1);
    t.equal(r.out, '');
    const errLines = r.err.trimEnd().split('\n');
    t.ok(errLines.length >= 3, r.err);
    t.match(r.err, new RegExp(`^${p.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:13:\\d+: spec\\.rules\\[0\\]\\.action\\.type: .+$`, 'm'));
    t.match(r.err, new RegExp(`^${p.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:19:\\d+: spec\\.rules\\[1\\]\\.mode: .+$`, 'm'));
    t.match(errLines.at(-1), /^bulkhead: BK_ERR_POLICY_INVALID: policy is invalid: \d+ errors .*\(HTTP 400\)$/);
    t.equal((await api.store.listPolicyVersions()).length, 1);

    const missing = await run(['policy', 'apply', join(dir, 'nope.yaml')], env);
    t.equal(missing.code, 2);
    t.match(missing.err, /cannot read policy file .*nope\.yaml: ENOENT/);
  });

  t.test('policy apply and versions', async (t) => {
    const p = file('baseline.yaml', CANDIDATE_YAML);
    const r = await run(['policy', 'apply', p, '--comment', 'first enforce rules'], env);
    t.equal(r.code, 0, r.err);
    t.match(r.out, /^applied policy "fleet-baseline" as version 2 \(sha256 [0-9a-f]{12}\): 5 rules, 3 enforce, 2 monitor\n$/);
    const j = await run(['--json', 'policy', 'apply', p], env);
    t.match(JSON.parse(j.out), { version: 3, comment: '' });

    const v = await run(['policy', 'versions'], env);
    t.equal(v.code, 0, v.err);
    const lines = v.out.trimEnd().split('\n');
    t.match(lines[0], /^\s+VERSION\s+NAME\s+CREATED\s+BY\s+SHA256\s+COMMENT$/);
    t.match(lines[1], new RegExp(`^\\*\\s+3\\s+fleet-baseline\\s+${NOW.toISOString().replace(/\./g, '\\.')}\\s+${api.apiKeyId}\\s+[0-9a-f]{12}\\s+-$`));
    t.match(lines[2], /^\s+2\s+fleet-baseline\s+.*first enforce rules$/);
    t.match(lines[3], /^\s+1\s+.*\s+init\s+[0-9a-f]{12}\s+default policy/);
    t.equal((await run(['policy', 'get', '1'], env)).out.trim(), DEFAULT_POLICY_YAML.trim(), 'older versions stay readable');
  });

  t.test('scans upload and get', async (t) => {
    const p = file('report.json', JSON.stringify(trivyReport(), null, 2));
    const r = await run(['scans', 'upload', p], env);
    t.equal(r.code, 0, r.err);
    t.equal(r.out, `stored trivy scan of ${APP_DIGEST}: 1 critical, 0 high, 0 medium, 1 low, 0 unknown; 1 fixable\n`);
    const g = await run(['scans', 'get', APP_DIGEST], env);
    t.equal(g.code, 0, g.err);
    t.match(g.out, /^Digest:\s+sha256:/m);
    t.match(g.out, /^CVE-2024-45491\s+critical\s+9\.8\s+yes\s+libexpat1$/m);
    const notJson = await run(['scans', 'upload', file('report.txt', 'Total: 2 (CRITICAL: 1)')], env);
    t.equal(notJson.code, 2);
    t.match(notJson.err, /is not JSON .*trivy image --format json/);
    const notTrivy = await run(['scans', 'upload', file('other.json', '{"Results": 3}')], env);
    t.equal(notTrivy.code, 1);
    t.match(notTrivy.err, /BK_ERR_BAD_REQUEST: not a usable Trivy JSON report/);
  });

  t.test('violations with filters', async (t) => {
    const base = {
      agentId: FLEET.prod1,
      containerId: hex('node-exporter'),
      containerName: '/node-exporter',
      imageRef: 'prom/node-exporter:v1.8.2',
      project: '',
      ruleId: 'host.privileged',
      severity: 'critical',
      mode: 'enforce',
      source: 'reaction',
      message: 'container runs with --privileged; remove --privileged',
      evidenceJson: '[]',
      denied: false,
      action: { type: 'kill', result: 'ok', error: '', durationMs: 41.2 },
      at: new Date(NOW.getTime() - 3 * 3_600_000),
      policyVersion: 2,
      exemptedBy: '',
    };
    await api.store.insertViolation({ ...base, id: 'c1' });
    await api.store.insertViolation({ ...base, id: 'c2', source: 'authz', denied: true, action: { type: '', result: '', error: '', durationMs: 0 }, at: new Date(NOW.getTime() - 90_000) });
    await api.store.insertViolation({ ...base, id: 'c3', agentId: FLEET.dev1, containerId: hex('scratchpad'), containerName: '/scratchpad', ruleId: 'image.no-latest', severity: 'medium', mode: 'monitor', action: { type: '', result: '', error: '', durationMs: 0 }, at: new Date(NOW.getTime() - 30_000) });

    const r = await run(['violations'], env);
    t.equal(r.code, 0, r.err);
    const lines = r.out.trimEnd().split('\n');
    t.match(lines[0], /^ID\s+TIME\s+AGENT\s+CONTAINER\s+RULE\s+SEVERITY\s+MODE\s+SOURCE\s+OUTCOME\s+ACK\s+MESSAGE$/);
    t.equal(lines.length, 4);
    t.match(lines[1], /^c3\s+30s ago\s+agt_\w+\s+scratchpad\s+image\.no-latest\s+medium\s+monitor\s+reaction\s+recorded\s+-\s+/);
    t.match(lines[2], /^c2\s+1m ago\s+.*\s+authz\s+denied\s+-\s+/);
    t.match(lines[3], /^c1\s+3h ago\s+.*\s+kill ok 41ms\s+-\s+container runs/);

    const ids = async (argv: string[]) => (JSON.parse((await run(['--json', 'violations', ...argv], env)).out) as { items: Array<{ id: string }> }).items.map((v) => v.id);
    t.same(await ids(['--since', '2h']), ['c3', 'c2']);
    t.same(await ids(['--since', new Date(NOW.getTime() - 60_000).toISOString()]), ['c3']);
    t.same(await ids(['--agent', FLEET.dev1]), ['c3']);
    t.same(await ids(['--container', 'node-exporter']), ['c2', 'c1']);
    t.same(await ids(['--rule', 'host.privileged', '--mode', 'enforce', '--severity', 'critical']), ['c2', 'c1']);
    t.same(await ids(['--limit', '1']), ['c3']);
    t.equal((await run(['violations', '--since', 'yesterday'], env)).code, 2);
    t.equal((await run(['violations', '--severity', 'urgent'], env)).code, 2);
    t.equal((await run(['violations', '--rule', 'nope'], env)).out, 'no violations\n');
  });

  t.test('--help on every new command, with examples', async (t) => {
    for (const argv of [['policy'], ['policy', 'get'], ['policy', 'apply'], ['policy', 'dry-run'], ['policy', 'versions'], ['violations'], ['scans'], ['scans', 'upload'], ['scans', 'get']]) {
      const r = await run([...argv, '--help'], {});
      t.equal(r.code, 0, argv.join(' '));
      t.match(r.out, /Usage: bulkhead/);
      t.match(r.out, /Examples?:/, `${argv.join(' ')} has examples`);
    }
  });
});
