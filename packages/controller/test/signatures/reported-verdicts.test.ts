// The image signature verdicts agents report, kept in the store (migration
// 0021_signature_verdicts) through the real migrations: per verdict key the newest decided
// wins whatever the arrival order, malformed entries are skipped, a future time cannot pin a
// verdict, a revoked agent's verdicts go, old ones are pruned and the count is bounded; and
// two controller replicas on one database (two stores, two connections) each see what the
// other stored, also when both write the same keys at once. reported-verdicts.postgres.test.ts
// runs every assertion on PostgreSQL. End to end (real controller processes, a dry-run on the
// replica the agent is not connected to): test/e2e/signature-verdicts-replicas.test.ts.
import t from 'tap';
import { createHash } from 'node:crypto';
import { createLogger, type SignatureVerdict } from '@bulkhead/shared';
import { openStore } from '../../src/store/open-store';
import { ReportedVerdicts } from '../../src/signatures/reported-verdicts';
import { openTestStore, testDatabase } from '../store/fixtures/backend';

const T0 = Date.parse('2026-12-01T00:00:00Z');
const REPO = 'registry.example.com/shop/web';
const D = (c: string) => `sha256:${c.repeat(64)}`;
const K = (s: string) => createHash('sha256').update(s).digest('hex');
const silent = createLogger({ name: 't', level: 'silent' });

function verdict(status: SignatureVerdict['status'], message: string, checkedAt: number, digest = D('a')): SignatureVerdict {
  return { status, repoDigest: `${REPO}@${digest}`, signers: status === 'verified' ? ['prod-signer'] : [], message, checkedAt };
}
const entry = (key: string, v: SignatureVerdict) => ({ keySha256: key, verdictJson: JSON.stringify(v) });

t.test('newest decided wins in any arrival order; malformed skipped; the future clamped; a revoked agent forgotten', async (t) => {
  const store = await openTestStore(t);
  let now = T0;
  const lines: string[] = [];
  const book = new ReportedVerdicts({
    store: store.signatureVerdicts!, now: () => new Date(now),
    logger: createLogger({ name: 't', level: 'warn', destination: { write: (s: string) => void lines.push(s) } }),
  });
  const key = K('k');
  t.equal(await book.record('agt_a', [entry(key, verdict('rejected', 'old', T0 - 2000))]), 1);
  t.equal(await book.record('agt_b', [
    entry(key, verdict('verified', 'new', T0 - 1000)),
    { keySha256: 'not-a-hash', verdictJson: JSON.stringify(verdict('verified', 'x', T0)) },
    { keySha256: K('u'), verdictJson: '{"status":"unreachable","repoDigest":"","signers":[],"message":"","checkedAt":1}' },
    { keySha256: K('g'), verdictJson: '{' },
    { keySha256: K('n'), verdictJson: JSON.stringify({ ...verdict('verified', 'neg', 0), checkedAt: -5 }) },
  ]), 1, 'one good entry of five');
  t.match(lines.join(''), /"skipped":4/);
  t.equal((await book.lookupMany([key])).get(key)?.message, 'new', 'the newest decided');
  // An older verdict arriving later (a stale cache, a slow replica) does not overwrite it.
  await book.record('agt_a', [entry(key, verdict('rejected', 'late but older', T0 - 1500))]);
  t.equal((await book.lookupMany([key])).get(key)?.message, 'new', 'older never overwrites newer');
  t.same([...(await book.lookupMany([K('u'), K('g'), K('n'), K('absent')])).keys()], [], '"could not ask" and malformed entries are no verdicts');
  // Duplicate keys in one message: the newest of them.
  const dup = K('dup');
  await book.record('agt_a', [entry(dup, verdict('verified', 'second', T0 - 10)), entry(dup, verdict('rejected', 'first', T0 - 20))]);
  t.equal((await book.lookupMany([dup])).get(dup)?.message, 'second');

  // A time in the future counts as "now": it cannot pin a verdict against later ones.
  const fut = K('future');
  await book.record('agt_evil', [entry(fut, verdict('verified', 'from the future', T0 + 365 * 86_400_000))]);
  t.equal((await book.lookupMany([fut])).get(fut)?.checkedAt, T0, 'clamped to the controller clock');
  now = T0 + 1000;
  await book.record('agt_a', [entry(fut, verdict('rejected', 'decided later', T0 + 500))]);
  t.equal((await book.lookupMany([fut])).get(fut)?.message, 'decided later');

  // Revoked: every verdict the agent reported goes (the row of a key it holds).
  await book.record('agt_evil', [entry(K('e1'), verdict('verified', 'e1', T0)), entry(K('e2'), verdict('verified', 'e2', T0))]);
  t.equal(await book.forget('agt_evil'), 2);
  t.equal((await book.lookupMany([K('e1'), K('e2')])).size, 0);
  t.equal((await book.lookupMany([key])).get(key)?.message, 'new', 'other agents\' verdicts stay');

  // Many keys in one lookup (batched statements).
  const many = Array.from({ length: 1200 }, (_, i) => K(`m${i}`));
  t.equal(await book.record('agt_a', many.map((k, i) => entry(k, verdict('verified', `m${i}`, T0)))), 1200);
  const got = await book.lookupMany(many);
  t.equal(got.size, 1200);
  t.equal(got.get(many[1199]!)?.message, 'm1199');
});

t.test('pruned by age (last reported) and bounded in count', async (t) => {
  const store = await openTestStore(t);
  let now = T0;
  const book = new ReportedVerdicts({ store: store.signatureVerdicts!, logger: silent, now: () => new Date(now), retentionMs: 3_600_000, maxRows: 50 });
  await book.record('agt_a', Array.from({ length: 30 }, (_, i) => entry(K(`old${i}`), verdict('verified', 'old', T0))));
  now = T0 + 1800_000;
  await book.record('agt_a', Array.from({ length: 30 }, (_, i) => entry(K(`mid${i}`), verdict('verified', 'mid', T0))));
  // Re-reported (a reconnect re-sends all): its age starts again.
  await book.record('agt_b', [entry(K('old0'), verdict('verified', 'old', T0))]);
  now = T0 + 3_600_000 + 1;
  t.equal(await book.prune(), 29, 'the 29 not reported again within the hour');
  t.equal((await book.lookupMany([K('old0')])).size, 1, 're-reported: kept');
  await book.record('agt_a', Array.from({ length: 40 }, (_, i) => entry(K(`new${i}`), verdict('verified', 'new', T0))));
  t.equal(await book.prune(), 31, '71 rows, at most 50 kept: the older report times go first (rows of one time go together)');
  t.equal((await book.lookupMany(Array.from({ length: 40 }, (_, i) => K(`new${i}`)))).size, 40, 'the newest all kept');
});

t.test('two replicas on one database: each sees what the other stored, also when both write the same keys at once', async (t) => {
  const config = await testDatabase(t);
  const a = await openStore(config);
  t.teardown(() => a.close());
  const b = await openStore(config); // migrations already applied: a no-op
  t.teardown(() => b.close());
  const bookA = new ReportedVerdicts({ store: a.signatureVerdicts!, logger: silent, now: () => new Date(T0) });
  const bookB = new ReportedVerdicts({ store: b.signatureVerdicts!, logger: silent, now: () => new Date(T0) });
  await bookA.record('agt_on_a', [entry(K('x'), verdict('verified', 'via A', T0 - 100))]);
  await bookB.record('agt_on_b', [entry(K('y'), verdict('rejected', 'via B', T0 - 100, D('b')))]);
  for (const [name, book] of [['A', bookA], ['B', bookB]] as const) {
    const got = await book.lookupMany([K('x'), K('y')]);
    t.equal(got.get(K('x'))?.message, 'via A', `replica ${name} sees the verdict stored through A`);
    t.equal(got.get(K('y'))?.message, 'via B', `replica ${name} sees the verdict stored through B`);
  }
  // Both replicas storing the same 300 keys at once, in opposite orders, 10 rounds each: no
  // deadlock, no error, and per key the newest decided (B's, one ms later) wins.
  const keys = Array.from({ length: 300 }, (_, i) => K(`race${i}`));
  const writes: Promise<number>[] = [];
  for (let round = 0; round < 10; round++) {
    writes.push(bookA.record(`agt_a${round}`, keys.map((k) => entry(k, verdict('rejected', 'A', T0 - 2000 + round)))));
    writes.push(bookB.record(`agt_b${round}`, [...keys].reverse().map((k) => entry(k, verdict('verified', 'B', T0 - 1000 + round)))));
  }
  const results = await Promise.allSettled(writes);
  t.same(results.filter((r) => r.status === 'rejected').map((r) => String((r as PromiseRejectedResult).reason)), [], 'every write succeeded');
  const seenA = await bookA.lookupMany(keys);
  const seenB = await bookB.lookupMany(keys);
  t.equal(seenA.size, 300);
  t.same([...new Set([...seenA.values()].map((v) => `${v.message}@${v.checkedAt - T0}`))], ['B@-991'], 'every key: the newest decided (B, round 9)');
  t.same([...seenB.values()].map((v) => v.checkedAt), [...seenA.values()].map((v) => v.checkedAt), 'both replicas read the same');
});
