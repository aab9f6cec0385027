// The image prune record at the controller: checked with its report (a
// malformed one drops the report, as every malformed part does), stored
// with it (migration 0008_audit_prune), counted in the summary, kept longer
// than the plain history when it removed something, logged, and readable:
// GET /v1/agents/:id/audit (`prune`, `summary.prune`), ?format=prune (every
// stored record), `bulkhead audit HOST` (a Pruned line and table) and
// `bulkhead audit HOST --prunes`. prune-record.postgres.test.ts runs the store
// part on PostgreSQL too.
import t from 'tap';
import { createLogger, type AuditReport__Output } from '@bulkhead/shared';
import { openTestStore, rawDb, testBackend, testDatabase } from '../store/fixtures/backend';
import { bearer, get, startApi } from '../api/fixtures/api-server';
import { MIGRATIONS } from '../../src/store/migrations';
import { parseHostAudit, pruneCounts, recordHostAudit, HOST_AUDIT_LIMITS } from '../../src/host-audit/host-audit-recorder';
import { HOST_AUDIT_PRUNE_HISTORY } from '../../src/host-audit/host-audit-store';
import { main, type OpsCliIo } from '../../../cli/src/main';
import { renderHostAudit, renderPruneList } from '../../../cli/src/commands/host-audit';
import type { HostAuditDto, HostAuditPruneListDto } from '../../src/api/routes/agent-audit';
import type { Store } from '../../src/store/store';
import { NO_AUTHZ, auditReport, pruneRecord } from './fixtures/reports';

const T0 = Date.parse('2026-11-28T12:00:00Z');
const H = 3600_000;
const out = (r: ReturnType<typeof auditReport>) => r as unknown as AuditReport__Output;

async function addAgent(store: Store, id: string, hostname: string): Promise<void> {
  await store.insertAgent({
    id, hostname, status: 'online', agentVersion: '1', host: null, certSerial: id, certNotAfter: new Date(T0 + 1e10),
    enrolledAt: new Date(T0), lastSeenAt: null, connectedAt: null, revokedAt: null, containerCount: 0,
  });
}

t.test('parse: a prune record or { error }; anything else drops the report', async (t) => {
  const good = auditReport({ takenAtMs: T0, findings: [NO_AUTHZ], prune: pruneRecord() });
  const p = parseHostAudit(out(good));
  if ('error' in p) throw new Error(p.error);
  t.match(p.prune, { counts: { removed: 1 } });
  t.equal(p.raw.prune, good.pruneJson);
  const none = parseHostAudit(out(auditReport({ takenAtMs: T0 })));
  t.ok(!('error' in none) && none.prune === null && none.raw.prune === null, 'no record: policy off');
  const noField = parseHostAudit(out({ ...auditReport({ takenAtMs: T0 }), pruneJson: undefined as unknown as string }));
  t.ok(!('error' in noField) && noField.prune === null, 'an agent older than prune_json: the same as off');
  const failed = parseHostAudit(out(auditReport({ takenAtMs: T0, prune: { error: 'not run: memory unreadable' } })));
  t.ok(!('error' in failed) && failed.prune?.error === 'not run: memory unreadable');
  const err = (pruneJson: string) => {
    const r = parseHostAudit(out({ ...auditReport({ takenAtMs: T0 }), pruneJson }));
    return 'error' in r ? r.error : 'ok';
  };
  t.match(err('{'), /prune_json is not JSON/);
  t.equal(err('[]'), 'prune_json is not an object');
  t.equal(err('{"counts":{}}'), 'prune_json is neither a prune record (counts, images[]) nor { error }');
  t.match(err('x'.repeat(HOST_AUDIT_LIMITS.prune + 1)), /prune_json is \d+ characters, over the 524288 limit/);
  t.same(pruneCounts(null), null);
  t.same(pruneCounts({ counts: { removed: 'x' } as never, dryRun: 'yes' }), { dryRun: false, removed: 0, deleted: 0, failed: 0, reclaimedBytes: 0 }, 'odd values count as 0');
});

t.test('stored with its report; counted; logged; records that removed something outlive the history', async (t) => {
  const store = await openTestStore(t);
  await addAgent(store, 'agt_p', 'build-01');
  const logs: string[] = [];
  const opts = { store, logger: createLogger({ name: 't', level: 'debug', destination: { write: (s: string) => void logs.push(s) } }), now: () => new Date(T0) };
  const send = (takenAtMs: number, prune?: Record<string, unknown>, keep?: number) =>
    recordHostAudit({ ...opts, ...(keep !== undefined ? { keep } : {}) }, 'agt_p', out(auditReport({ takenAtMs, findings: [NO_AUTHZ], ...(prune ? { prune } : {}) })));
  t.equal((await send(T0, pruneRecord({ images: [{ tag: 'ci/a:1', size: 100 }, { tag: 'ci/b:1', size: 50, error: 'conflict' }] }))).stored, true);
  const latest = await store.hostAudits!.latestHostAudit('agt_p');
  t.same(latest?.summary.prune, { dryRun: false, removed: 2, deleted: 1, failed: 1, reclaimedBytes: 100 });
  t.match(JSON.parse(latest!.pruneJson!), { counts: { removed: 2 }, images: [{ tags: ['ci/a:1'] }, { tags: ['ci/b:1'], error: 'conflict' }] }, 'the record as sent');
  const line = logs.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l['msg'] === 'agent pruned images');
  t.match(line, { agentId: 'agt_p', removed: 2, deleted: 1, failed: 1, reclaimedBytes: 100, dryRun: false });

  // keep = 2: plain reports beyond the two newest go; the one that pruned stays.
  await send(T0 + 1 * H, undefined, 2);
  await send(T0 + 2 * H, pruneRecord({ images: [] }), 2); // the policy ran and found nothing: a plain report
  await send(T0 + 3 * H, pruneRecord({ dryRun: true }), 2);
  await send(T0 + 4 * H, undefined, 2);
  await send(T0 + 5 * H, undefined, 2);
  const kept = (await store.hostAudits!.listHostAudits('agt_p', 100)).map((h) => (h.takenAt.getTime() - T0) / H);
  t.same(kept, [5, 4, 3, 0], 'the two newest, plus the reports that pruned (or would have)');
  const prunes = await store.hostAudits!.listHostAuditPrunes('agt_p');
  t.same(prunes.map((p) => (p.takenAt.getTime() - T0) / H), [3, 0], 'prune records, newest first');
  t.match(JSON.parse(prunes[0]!.pruneJson), { dryRun: true });
  t.match(logs.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l['msg'] === 'agent image prune (dry run) recorded'), { removed: 1, dryRun: true });

  // keepPruned bounds those too.
  t.equal(HOST_AUDIT_PRUNE_HISTORY, 50);
  await store.hostAudits!.insertHostAudit({ ...latest!, takenAt: new Date(T0 + 6 * H), pruneJson: latest!.pruneJson }, 1, 1);
  t.same((await store.hostAudits!.listHostAudits('agt_p', 100)).map((h) => (h.takenAt.getTime() - T0) / H), [6], 'keepPruned 1: only the newest pruning report');
  await store.hostAudits!.insertHostAudit({ ...latest!, takenAt: new Date(T0 + 7 * H), pruneJson: null, summary: { ...latest!.summary, prune: null } }, 1, 0);
  t.same((await store.hostAudits!.listHostAudits('agt_p', 100)).map((h) => (h.takenAt.getTime() - T0) / H), [7], 'keepPruned 0: the plain history only');
  await t.rejects(store.hostAudits!.insertHostAudit({ ...latest!, takenAt: new Date(T0 + 8 * H) }, 1, -1), { code: 'BK_ERR_INTERNAL' });
});

t.test('migration 0008_audit_prune: existing reports get no record, and it runs down again', async (t) => {
  const db = rawDb(await testDatabase(t));
  t.teardown(() => db.destroy());
  for (const n of Object.keys(MIGRATIONS).filter((n) => n < '0008_audit_prune').sort()) await MIGRATIONS[n]!.up(db);
  await db.insertInto('host_audits').values({ agent_id: 'a', taken_at: 1, received_at: 1, score: 1, summary_json: '{}', cis_json: '{}', lockdown_json: '[]', fixes_json: '[]', hygiene_json: null }).execute();
  await MIGRATIONS['0008_audit_prune']!.up(db);
  const row = await db.selectFrom('host_audits').selectAll().executeTakeFirstOrThrow();
  t.equal(row.prune_json, null);
  t.equal(Number(row.pruned), 0);
  await MIGRATIONS['0008_audit_prune']!.down!(db);
  const cols = (await db.introspection.getTables()).find((x) => x.name === 'host_audits')!.columns.map((c) => c.name);
  t.notOk(cols.includes('prune_json') || cols.includes('pruned'), 'down drops the columns');
  t.ok(Object.keys(MIGRATIONS).sort().indexOf('0008_audit_prune') > Object.keys(MIGRATIONS).sort().indexOf('0006_audit'));
});

// The API/CLI part runs once, on SQLite; the PostgreSQL twin of this file covers the store only.
if (testBackend() !== 'postgres') t.test('API and CLI: prune field, ?format=prune, the Pruned line and table, --prunes', async (t) => {
  const api = await startApi({ role: 'admin' });
  t.teardown(() => api.close());
  const { store } = api;
  const A = 'agt_0000000000000000000a';
  const B = 'agt_0000000000000000000b';
  await addAgent(store, A, 'build-01');
  await addAgent(store, B, 'quiet-01');
  const opts = { store, logger: createLogger({ name: 't', level: 'silent' }), now: () => new Date(T0 + 1000) };
  const send = (id: string, r: ReturnType<typeof auditReport>) => recordHostAudit(opts, id, out(r));
  await send(A, auditReport({ takenAtMs: T0 - H, prune: pruneRecord({ dryRun: true, images: [{ tag: 'ci/old:1', size: 2048 }] }) }));
  await send(A, auditReport({ takenAtMs: T0, prune: pruneRecord({ images: [{ tag: 'ci/old:1', size: 3 * 1024 * 1024 }, { tag: 'ci/locked:1', size: 10, error: 'conflict: image is referenced' }] }) }));
  await send(B, auditReport({ takenAtMs: T0 }));
  const admin = bearer(api.apiKey);

  const r = await get(api, `/v1/agents/${A}/audit`, admin);
  t.equal(r.status, 200, r.text);
  const body = r.json as HostAuditDto;
  t.match(body.prune, { dryRun: false, counts: { removed: 2, deleted: 1, failed: 1 }, reclaimedBytes: 3 * 1024 * 1024, images: [{ tags: ['ci/old:1'] }, { error: 'conflict: image is referenced' }] });
  t.same(body.summary.prune, { dryRun: false, removed: 2, deleted: 1, failed: 1, reclaimedBytes: 3 * 1024 * 1024 });
  t.same(body.history.map((h) => h.summary.prune?.dryRun), [false, true], 'the history says which reports pruned');
  const quiet = (await get(api, `/v1/agents/${B}/audit`, admin)).json as HostAuditDto;
  t.equal(quiet.prune, null, 'policy off: null');
  t.equal(quiet.summary.prune, null);

  const list = await get(api, `/v1/agents/${A}/audit?format=prune`, admin);
  t.equal(list.status, 200, list.text);
  const l = list.json as HostAuditPruneListDto;
  t.equal(l.hostname, 'build-01');
  t.same(l.items.map((i) => [i.takenAt, (i.prune as { dryRun: boolean }).dryRun]), [[new Date(T0).toISOString(), false], [new Date(T0 - H).toISOString(), true]]);
  t.same(((await get(api, `/v1/agents/${B}/audit?format=prune`, admin)).json as HostAuditPruneListDto).items, []);
  t.equal((await get(api, '/v1/agents/agt_nope/audit?format=prune', admin)).status, 404);

  const env = { BULKHEAD_API: api.url, BULKHEAD_CA: api.caFile, BULKHEAD_API_KEY: api.apiKey };
  const run = async (argv: string[]) => {
    let o = '';
    let e = '';
    const io: Partial<OpsCliIo> = { out: (s) => void (o += s), err: (s) => void (e += s), env, now: () => new Date(T0 + 60_000) };
    return { code: await main(argv, io), out: o, err: e };
  };
  const text = await run(['audit', 'build-01']);
  t.equal(text.code, 0, text.err);
  t.match(text.out, /^Pruned:\s+pruned 1 image\(s\) \(1 deleted\), 3\.0 MiB reclaimed; 1 failed$/m);
  t.match(text.out, /^PRUNED$/m);
  t.match(text.out, /^RESULT\s+IMAGE\s+TAGS\s+SIZE\s+WHY$/m);
  t.match(text.out, /^failed\s+[0-9a-z]{12}\s+ci\/locked:1\s+10 B\s+conflict: image is referenced$/m);
  t.match(text.out, /^deleted\s+[0-9a-z]{12}\s+ci\/old:1\s+3\.0 MiB\s+never used by a container, idle 41\.2 days$/m);
  t.notMatch((await run(['audit', 'quiet-01'])).out, /^Pruned:/m, 'no prune line when the policy is off');
  const prunes = await run(['audit', 'build-01', '--prunes']);
  t.equal(prunes.code, 0, prunes.err);
  t.match(prunes.out, /^Records:\s+2$/m);
  t.match(prunes.out, new RegExp(`^${new Date(T0 - H).toISOString()}  dry run: would remove 1 image\\(s\\), 2\\.0 KiB$`, 'm'));
  t.match(prunes.out, new RegExp(`^${new Date(T0).toISOString()}  pruned 1 image\\(s\\)`, 'm'));
  const json = await run(['--json', 'audit', 'build-01', '--prunes']);
  t.same(JSON.parse(json.out), l, '--json --prunes: the API document');
  t.match((await run(['audit', 'quiet-01', '--prunes'])).out, /no prune records/);
  const usage = await run(['audit', 'build-01', '--prunes', '--cis']);
  t.equal(usage.code, 2, '--prunes does not combine with --cis');
});

t.test('renderHostAudit: dry runs, errors, long lists', async (t) => {
  const dto = {
    agentId: 'agt_1', hostname: 'a', takenAt: new Date(T0).toISOString(), receivedAt: new Date(T0).toISOString(), score: 100,
    summary: { score: 100, cis: { checks: 0, score: 0, pass: 0, warn: 0, info: 0, note: 0, percent: 100 }, lockdown: { total: 0, critical: 0, high: 0, medium: 0, low: 0, info: 0 }, fixes: { applied: 0, failed: 0 }, hygiene: null, newFindings: [], resolvedFindings: [] },
    lockdown: [], fixes: [], hygiene: null, history: [], prune: null,
    cis: { dockerbenchsecurity: '1.6.0', start: 0, tests: [], checks: 0, score: 0, end: 0 },
  } satisfies HostAuditDto;
  t.match(renderHostAudit({ ...dto, prune: { error: 'not run: memory unreadable' } }, new Date(T0)), /^Pruned:\s+did not run: not run: memory unreadable$/m);
  const dry = renderHostAudit({ ...dto, prune: pruneRecord({ dryRun: true }) }, new Date(T0));
  t.match(dry, /^Pruned:\s+dry run: would remove 1 image\(s\), 3\.0 MiB$/m);
  t.match(dry, /^PRUNED \(DRY RUN: NOTHING REMOVED\)$/m);
  const many = pruneRecord({ images: Array.from({ length: 25 }, (_, i) => ({ tag: `ci/img${i}:1`, size: 1 })) });
  const long = renderHostAudit({ ...dto, prune: { ...many, truncated: true, counts: { ...(many['counts'] as object), removed: 130 } } }, new Date(T0));
  t.equal(long.split('\n').filter((x) => /^deleted\s/.test(x)).length, 20, 'the report view shows 20 rows');
  t.match(long, /^… and 110 more \(bulkhead --json audit HOST; the agent sent the first 100, its log has every one\)$/m);
  t.match(renderHostAudit({ ...dto, prune: { ...many } }, new Date(T0)), /^… and 5 more \(bulkhead --json audit HOST\)$/m);
  t.notMatch(renderHostAudit({ ...dto, prune: pruneRecord({ images: [] }) }, new Date(T0)), /^PRUNED/m, 'no table when nothing was removed');
  t.match(renderPruneList({ agentId: 'agt_1', hostname: 'a', items: [{ takenAt: 'T', receivedAt: 'R', prune: { images: [{ nope: 1 }], counts: {} } }] }), /^T  pruned 0 image\(s\) \(0 deleted\), 0 B reclaimed$/m, 'odd records are read defensively');
});
