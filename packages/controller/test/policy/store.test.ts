// The 0002_policy part of the store on a real SQLite file: policy versions,
// agent policy status (and its join into the agent record), violations with
// every filter, and scans.
import t from 'tap';
import type { ScanSummary } from '@bulkhead/shared';
import { openTestStore } from '../store/fixtures/backend';
import type { PolicyVersionRecord, Store, ViolationRecord } from '../../src/store/store';
import { agent, hexId } from '../store/fixtures/records';

const T0 = new Date('2026-03-01T00:00:00Z');
const at = (ms: number) => new Date(T0.getTime() + ms);

async function freshStore(t: tap.Test): Promise<Store> {
  return openTestStore(t); // SQLite here; PostgreSQL in store.postgres.test.ts
}

function policyInput(name: string, over: Partial<PolicyVersionRecord> = {}): Omit<PolicyVersionRecord, 'version'> {
  return { name, yaml: `metadata:\n  name: ${name}\n`, json: JSON.stringify({ metadata: { name } }), sha256: hexId(name), createdAt: T0, createdBy: 'ak_0123456789abcdef', comment: '', ...over };
}

function violation(id: string, over: Partial<ViolationRecord> = {}): ViolationRecord {
  return {
    id,
    agentId: 'agt_a',
    containerId: hexId('web'),
    containerName: '/web',
    imageRef: 'nginx:1.27',
    project: 'shop',
    ruleId: 'host.privileged',
    severity: 'high',
    mode: 'monitor',
    source: 'reaction',
    message: 'container runs privileged',
    evidenceJson: JSON.stringify([{ location: 'privileged', detail: 'true' }]),
    denied: false,
    action: { type: '', result: '', error: '', durationMs: 0 },
    at: T0,
    policyVersion: 1,
    exemptedBy: '',
    ...over,
  };
}

t.test('policy versions are numbered 1, 2, 3 … and read back', async (t) => {
  const store = await freshStore(t);
  t.equal(await store.getPolicy(), undefined, 'none on a fresh store');
  t.same(await store.listPolicyVersions(), []);
  const v1 = await store.insertPolicyVersion(policyInput('first', { createdBy: 'init', comment: 'default' }));
  const v2 = await store.insertPolicyVersion(policyInput('second', { createdAt: at(1000) }));
  t.equal(v1.version, 1);
  t.equal(v2.version, 2);
  t.same(await store.getPolicy(), v2, 'latest when no version is given');
  t.same(await store.getPolicy(1), v1, 'an older version by number');
  t.equal(await store.getPolicy(7), undefined);
  const list = await store.listPolicyVersions();
  t.same(list.map((v) => [v.version, v.name, v.createdBy, v.comment]), [[2, 'second', 'ak_0123456789abcdef', ''], [1, 'first', 'init', 'default']], 'newest first');
  t.notOk('yaml' in list[0]!, 'the listing leaves the documents out');

  // Concurrent inserts still get distinct, consecutive numbers.
  const many = await Promise.all([3, 4, 5, 6].map((i) => store.insertPolicyVersion(policyInput(`p${i}`))));
  t.same(many.map((p) => p.version).sort(), [3, 4, 5, 6]);
});

t.test('agent policy status is upserted and shows on the agent record', async (t) => {
  const store = await freshStore(t);
  await store.insertAgent(agent('agt_a'));
  await store.insertAgent(agent('agt_b'));
  t.equal(await store.getAgentPolicyStatus('agt_a'), undefined);
  t.equal((await store.getAgent('agt_a'))?.policyStatus, undefined, 'no status yet');

  await store.setAgentPolicyStatus({ agentId: 'agt_a', version: 1, applied: true, error: '', updatedAt: at(1) });
  await store.setAgentPolicyStatus({ agentId: 'agt_a', version: 2, applied: false, error: 'unknown check type "x"', updatedAt: at(2) });
  const st = { agentId: 'agt_a', version: 2, applied: false, error: 'unknown check type "x"', updatedAt: at(2) };
  t.same(await store.getAgentPolicyStatus('agt_a'), st, 'the last status wins');
  t.same((await store.getAgent('agt_a'))?.policyStatus, st, 'joined into getAgent');
  const all = await store.listAgents();
  t.same(all.map((a) => [a.id, a.policyStatus?.version ?? null]), [['agt_a', 2], ['agt_b', null]], 'and into listAgents');
});

t.test('violations: stored once per id, filtered, newest first, paged', async (t) => {
  const store = await freshStore(t);
  t.equal(await store.insertViolation(violation('v1', { at: at(1000) })), true);
  t.equal(await store.insertViolation(violation('v1', { at: at(9999), message: 'resent' })), false, 'a re-sent report is ignored');
  await store.insertViolation(violation('v2', { at: at(2000), agentId: 'agt_b', containerId: hexId('db'), containerName: '/db', ruleId: 'image.latest', severity: 'medium', project: 'data' }));
  await store.insertViolation(
    violation('v3', {
      at: at(3000),
      mode: 'enforce',
      source: 'authz',
      denied: true,
      severity: 'critical',
      exemptedBy: '',
    }),
  );
  await store.insertViolation(
    violation('v4', { at: at(4000), mode: 'enforce', action: { type: 'kill', result: 'ok', error: '', durationMs: 12.5 } }),
  );

  const all = await store.listViolations({});
  t.same(all.map((v) => v.id), ['v4', 'v3', 'v2', 'v1'], 'newest first');
  t.equal(all[3]!.message, 'container runs privileged', 'the first copy was kept');
  t.same(all[0]!.action, { type: 'kill', result: 'ok', error: '', durationMs: 12.5 }, 'action round-trips');
  t.equal(all[1]!.denied, true);
  t.same(all[3], violation('v1', { at: at(1000), ack: null }), 'every field round-trips (not acknowledged: ack null)');

  const ids = async (q: Parameters<Store['listViolations']>[0]) => (await store.listViolations(q)).map((v) => v.id);
  t.same(await ids({ agentId: 'agt_b' }), ['v2']);
  t.same(await ids({ ruleId: 'host.privileged' }), ['v4', 'v3', 'v1']);
  t.same(await ids({ severity: 'critical' }), ['v3']);
  t.same(await ids({ mode: 'enforce' }), ['v4', 'v3']);
  t.same(await ids({ source: 'authz' }), ['v3']);
  t.same(await ids({ project: 'data' }), ['v2']);
  t.same(await ids({ denied: true }), ['v3']);
  t.same(await ids({ denied: false }), ['v4', 'v2', 'v1']);
  t.same(await ids({ since: at(2000) }), ['v4', 'v3', 'v2'], 'since is inclusive');
  t.same(await ids({ until: at(3000) }), ['v2', 'v1'], 'until is exclusive');
  t.same(await ids({ since: at(2000), until: at(4000) }), ['v3', 'v2']);
  t.same(await ids({ container: 'db' }), ['v2'], 'container by name');
  t.same(await ids({ container: '/db' }), ['v2'], 'container by /name');
  t.same(await ids({ container: hexId('db').slice(0, 12) }), ['v2'], 'container by id prefix');
  t.same(await ids({ container: hexId('web') }), ['v4', 'v3', 'v1'], 'container by full id');
  t.same(await ids({ container: '%' }), [], 'LIKE wildcards are not wildcards');
  t.same(await ids({ limit: 2 }), ['v4', 'v3']);
  t.same(await ids({ limit: 2, offset: 2 }), ['v2', 'v1']);
  t.same(await ids({ offset: 3 }), ['v1'], 'offset without limit');
  await t.rejects(store.listViolations({ limit: -1 }), { code: 'BK_ERR_BAD_REQUEST' });
});

t.test('scans: upserted by digest, newest first', async (t) => {
  const store = await freshStore(t);
  const summary = (digest: string, n: number): ScanSummary => ({
    digest,
    scanner: 'trivy 0.58.1',
    scannedAt: at(n).toISOString(),
    vulnerabilities: [{ id: `CVE-2024-${n}`, severity: 'high', cvss: 7.5, fixable: true, pkg: 'openssl' }],
  });
  const d1 = 'sha256:' + hexId('img1');
  const d2 = 'sha256:' + hexId('img2');
  t.equal(await store.getScan(d1), undefined);
  await store.upsertScan({ digest: d1, scanner: 'trivy 0.58.1', scannedAt: at(1), summary: summary(d1, 1), uploadedAt: at(10) });
  await store.upsertScan({ digest: d2, scanner: 'trivy 0.58.1', scannedAt: at(2), summary: summary(d2, 2), uploadedAt: at(20) });
  await store.upsertScan({ digest: d1, scanner: 'trivy 0.59.0', scannedAt: at(3), summary: summary(d1, 3), uploadedAt: at(30) });
  const s1 = await store.getScan(d1);
  t.same(s1, { digest: d1, scanner: 'trivy 0.59.0', scannedAt: at(3), summary: summary(d1, 3), uploadedAt: at(30) }, 'the newer report replaced the older');
  t.same((await store.listScans()).map((s) => s.digest), [d1, d2], 'newest scan first');
  t.same((await store.listScans({ limit: 1, offset: 1 })).map((s) => s.digest), [d2]);
});
