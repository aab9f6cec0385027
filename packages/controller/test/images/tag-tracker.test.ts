// Tag tracking against a real store through the real migrations: which repository:tag ran as
// which digest, moves raised once (and again after a stop between store and alert), the same
// image under two digests not a move, creates that never ran ignored, pins = first digest,
// old container sightings forgotten. tag-tracker.postgres.test.ts runs every assertion on
// PostgreSQL too. (The alert sink records what is raised; AlertService itself is exercised
// end to end in test/integration/image-tags.test.ts.)
import t, { type Test } from 'tap';
import { createLogger, type ContainerFacts__Output } from '@bulkhead/shared';
import { openTestStore, rawDb, testBackend, testDatabase } from '../store/fixtures/backend';
import { sql } from 'kysely';
import { performance } from 'node:perf_hooks';
import { TAG_SEEN_REFRESH_MS } from '../../src/images/kysely-image-tag-store';
import { openStore } from '../../src/store/open-store';
import type { AlertInput } from '../../src/alerts/alert-types';
import type { AlertSink } from '../../src/alerts/alert-service';
import { TagTracker } from '../../src/images/tag-tracker';
import { scopedPinRules, selectPins } from '../../src/images/tag-pins';
import { policyFromJson } from '@bulkhead/shared';

const T0 = Date.parse('2026-12-01T00:00:00Z');
const REPO = 'registry.example.com/shop/web';
const d = (c: string) => `sha256:${c.repeat(64)}`;

function facts(id: string, ref: string, digest: string, imageId: string, state = 'running'): ContainerFacts__Output {
  return { id: id.padEnd(64, '0'), name: `n-${id}`, imageRef: ref, imageDigest: digest ? `${REPO}@${digest}` : '', imageId, state, startedAtMs: state === 'created' ? 0 : T0 } as unknown as ContainerFacts__Output;
}

async function setup(t: Test, sink?: AlertSink) {
  const store = await openTestStore(t);
  for (const [id, hostname] of [['agt_a', 'host-a'], ['agt_b', 'host-b']] as const) {
    await store.insertAgent({
      id, hostname, status: 'online', agentVersion: '1', host: null, certSerial: id, certNotAfter: new Date(T0 + 1e10),
      enrolledAt: new Date(T0), lastSeenAt: null, connectedAt: null, revokedAt: null, containerCount: 0,
    });
  }
  const raised: AlertInput[] = [];
  let now = T0;
  let notified = 0;
  const alerts: AlertSink = sink ?? { raise: async (i) => (raised.push(i), { alertId: 'alr_x', grouped: false, count: 1, deliveries: 0, skipped: false }) };
  const tracker = new TagTracker({ store, logger: createLogger({ name: 't', level: 'silent' }), alerts, now: () => new Date(now), notifyDelayMs: 1, onNewDigest: () => notified++ });
  t.teardown(() => tracker.close());
  return { store, tracker, raised, tick: (ms: number) => (now += ms), notified: () => notified };
}

t.test('one alert per move; repeats, the same image and creates that never ran raise nothing', async (t) => {
  const { store, tracker, raised, tick, notified } = await setup(t);
  await tracker.observe('agt_a', [facts('c1', `${REPO}:v1`, d('a'), d('1'))]);
  t.same(raised, [], 'first seen');
  await new Promise((r) => setTimeout(r, 20));
  t.equal(notified(), 1, 'a new tag: pins may have changed');

  tick(1000);
  await tracker.observe('agt_b', [facts('c2', `${REPO}:v1`, d('b'), d('1'))]);
  t.same(raised, [], 'another digest of the same image (same image id) is no move');
  await tracker.observe('agt_b', [facts('c3', `${REPO}:v1`, d('c'), d('3'), 'created')]);
  t.same(raised, [], 'a create that never started ran nothing');

  tick(1000);
  await tracker.observe('agt_b', [facts('c4', `${REPO}:v1`, d('c'), d('3'))]);
  t.equal(raised.length, 1, 'other content: a move');
  t.match(raised[0], { type: 'image_tag_moved', agentId: 'agt_b', host: 'host-b', image: `${REPO}:v1`, containerId: 'c4'.padEnd(64, '0'), containerName: 'n-c4', ruleId: d('c') });
  t.match(raised[0]!.message, `image tag ${REPO}:v1 moved: it now runs as ${d('c')} on host-b (agt_b) (container n-c4); it ran as ${d('a')} (first seen 2026-12-01T00:00:00.000Z on host-a (agt_a)); ${d('b')} (first seen 2026-12-01T00:00:01.000Z on host-b (agt_b)) before`);

  for (let i = 0; i < 3; i++) {
    tick(61_000);
    await tracker.observe('agt_a', [facts('c1', `${REPO}:v1`, d('a'), d('1')), facts('c5', `${REPO}:v1`, d('c'), d('3'))]);
    await tracker.observe('agt_b', [facts('c4', `${REPO}:v1`, d('c'), d('3'))]);
  }
  t.equal(raised.length, 1, 'reported again and again: still one');
  await new Promise((r) => setTimeout(r, 20));
  t.equal(notified(), 1, 'new digests of a known tag change no pin: the bundle is not rebuilt');

  const tag = await store.imageTags!.getTag(REPO, 'v1');
  t.same(tag?.digests.map((x) => x.digest), [d('a'), d('b'), d('c')], 'oldest first');
  t.same(tag?.digests[2]?.containers.map((c) => c.containerName).sort(), ['n-c4', 'n-c5']);
  t.equal(tag?.digests[0]?.lastSeenAt.getTime(), T0 + 2000 + 3 * 61_000, 'last seen refreshed');
  t.equal((await store.imageTags!.listTags({ movedOnly: true, limit: 10 })).length, 1);
  await tracker.observe('agt_a', [facts('s1', `${REPO}:same`, d('a'), d('1'))]);
  await tracker.observe('agt_b', [facts('s2', `${REPO}:same`, d('b'), d('1'))]);
  t.same((await store.imageTags!.listTags({ movedOnly: true, limit: 10 })).map((x) => x.tag), ['v1'], 'two digests of one image: not moved');
  t.equal((await store.imageTags!.listTags({ search: 'same', limit: 10 }))[0]?.digests.length, 2);
  t.equal((await store.imageTags!.listTags({ search: 'nothing-like-it', limit: 10 })).length, 0);
  t.same(await store.imageTags!.listPendingMoves(10), [], 'the alert is committed: nothing pending');

  // Refs that name no tag are not tracked.
  await tracker.observe('agt_a', [facts('c6', `${REPO}@${d('e')}`, d('e'), d('5')), facts('c7', d('5'), '', d('5'))]);
  t.same((await store.imageTags!.listTags({ limit: 10 })).map((x) => x.tag).sort(), ['same', 'v1']);
});

t.test('a stop between storing a move and its alert: raised at the next start', async (t) => {
  let fail = true;
  const raised: AlertInput[] = [];
  const sink: AlertSink = {
    raise: async (i) => {
      if (fail) throw new Error('store gone');
      raised.push(i);
      return { alertId: 'alr_x', grouped: false, count: 1, deliveries: 0, skipped: false };
    },
  };
  const { store, tracker } = await setup(t, sink);
  await tracker.observe('agt_a', [facts('c1', `${REPO}:v1`, d('a'), d('1'))]);
  await tracker.observe('agt_b', [facts('c2', `${REPO}:v1`, d('b'), d('2'))]);
  t.equal(raised.length, 0);
  t.same((await store.imageTags!.listPendingMoves(10)).map((m) => m.digest), [d('b')], 'the move waits for its alert');
  fail = false;
  const next = new TagTracker({ store, logger: createLogger({ name: 't', level: 'silent' }), alerts: sink });
  t.equal(await next.raisePending(), 1);
  t.equal(raised.length, 1);
  t.match(raised[0], { type: 'image_tag_moved', agentId: 'agt_b', image: `${REPO}:v1` });
  t.same(await store.imageTags!.listPendingMoves(10), []);
  t.equal(await next.raisePending(), 0, 'once');
});

t.test('pins: the first digest of each tag a rule covers; old sightings forgotten', async (t) => {
  const { store, tracker, tick } = await setup(t);
  await tracker.observe('agt_a', [facts('c1', `${REPO}:v1`, d('a'), d('1')), facts('c2', `${REPO}:latest`, d('a'), d('1')), facts('c3', 'nginx:v2', '', d('4'))]);
  tick(5000);
  await tracker.observe('agt_b', [facts('c4', `${REPO}:v1`, d('b'), d('2'))]);
  const rows = await store.imageTags!.listPins(100);
  const policy = policyFromJson({
    apiVersion: 'bulkhead.dev/v1', kind: 'Policy', metadata: { name: 'p' },
    spec: { rules: [{ id: 'r', description: 'd', severity: 'high', mode: 'enforce', action: { type: 'alert' }, check: { type: 'image-tag-pinned', tags: ['v*'] } }] },
  });
  t.same(selectPins(policy, rows).sort(), [['docker.io/library/nginx:v2', d('4')], [`${REPO}:v1`, d('a')]], 'first digest; latest not covered; image id for an image without a repo digest');
  const none = policyFromJson({ apiVersion: 'bulkhead.dev/v1', kind: 'Policy', metadata: { name: 'p' }, spec: { rules: [] } });
  t.same(selectPins(none, rows), [], 'no rule, no pins');

  tick(91 * 86_400_000);
  await tracker.observe('agt_b', [facts('c9', `${REPO}:v3`, d('f'), d('6'))]);
  const v1 = await store.imageTags!.getTag(REPO, 'v1');
  t.same(v1?.digests.map((x) => x.containers.length), [0, 0], 'sightings older than 90 days forgotten');
  t.same(v1?.digests.map((x) => x.digest), [d('a'), d('b')], 'the digests stay');
});

t.test('two writers see a new tag as different images at once: exactly one of them is the move', async (t) => {
  // Two stores on one database: two controller replicas, their transactions truly in parallel
  // on PostgreSQL. (Replicas share PostgreSQL only; on SQLite, one controller's file, the two
  // run one after the other.)
  const config = await testDatabase(t);
  const one = await openStore(config);
  t.teardown(() => one.close());
  const two = await openStore(config);
  t.teardown(() => two.close());
  const at = new Date(T0);
  for (let i = 0; i < 8; i++) {
    const tag = `r${i}`;
    const row = (agentId: string, digest: string, imageId: string) => ({ agentId, containerId: `${agentId}-${i}`, containerName: 'x', repository: REPO, tag, digest, imageId });
    const first = () => one.imageTags!.recordSightings([row('agt_a', d('a'), d('1'))], at);
    const second = () => two.imageTags!.recordSightings([row('agt_b', d('b'), d('2'))], at);
    const [a, b] = testBackend() === 'postgres' ? await Promise.all([first(), second()]) : [await first(), await second()];
    const fresh = [...a, ...b];
    t.same([...new Set(fresh.map((f) => f.digest))].sort(), [d('a'), d('b')], `${tag}: both digests are new`);
    t.same(fresh.filter((f) => f.moved).map((f) => f.digest), [d('b')], `${tag}: one move, the later digest (same time: the greater digest), claimed once`);
    t.same((await one.imageTags!.listPendingMoves(100)).filter((m) => m.tag === tag).map((m) => m.digest), [d('b')]);
  }
});

t.test('scoped pins: the first digest seen in the rule\'s scope, from reports and from the inventory when the rule appears', async (t) => {
  const store = await openTestStore(t);
  const labels: Record<string, Record<string, string>> = { agt_a: { env: 'prod' }, agt_b: { env: 'staging' } };
  for (const id of ['agt_a', 'agt_b']) {
    await store.insertAgent({
      id, hostname: id, status: 'online', agentVersion: '1', host: { labels: labels[id] } as never, certSerial: id, certNotAfter: new Date(T0 + 1e10),
      enrolledAt: new Date(T0), lastSeenAt: null, connectedAt: null, revokedAt: null, containerCount: 0,
    });
  }
  const rule = (scope: object | undefined) => ({
    id: 'prod-releases', description: 'd', severity: 'high', mode: 'enforce', action: { type: 'alert' }, ...(scope ? { scope } : {}),
    check: { type: 'image-tag-pinned', tags: ['v*'] },
  });
  const mk = (scope: object | undefined) => policyFromJson({ apiVersion: 'bulkhead.dev/v1', kind: 'Policy', metadata: { name: 'p' }, spec: { rules: [rule(scope) as never] } });
  let policy = mk({ hostLabels: { env: 'prod' } });
  let notified = 0;
  let now = T0;
  const tracker = new TagTracker({ store, logger: createLogger({ name: 't', level: 'silent' }), now: () => new Date(now), notifyDelayMs: 1, onNewDigest: () => notified++, policy: () => policy });
  t.teardown(() => tracker.close());
  const pins = async () => selectPins(policy, [], await store.imageTags!.listScopedPins([{ ruleId: 'prod-releases', scopeKey: scopeKey(policy) }], 100)).sort();

  // Staging runs v1 as B first: outside the scope, no pin of the rule.
  await tracker.observe('agt_b', [facts('s1', `${REPO}:v1`, d('b'), d('2'))]);
  t.same(await pins(), [], 'seen only outside the scope');
  now += 1000;
  // Prod: a create that never ran counts for nothing; then v1 runs as A.
  await tracker.observe('agt_a', [facts('p0', `${REPO}:v1`, d('c'), d('3'), 'created')]);
  t.same(await pins(), [], 'a create that never ran pins nothing');
  await tracker.observe('agt_a', [facts('p1', `${REPO}:v1`, d('a'), d('1'))]);
  t.same(await pins(), [[`prod-releases ${REPO}:v1`, d('a')]], 'the first digest seen in scope, keyed by rule');
  await new Promise((r) => setTimeout(r, 20));
  t.ok(notified >= 1, 'the policy service is told');
  // Prod later runs v1 as C: the pin stays A (the rule will refuse C at the door).
  now += 1000;
  await tracker.observe('agt_a', [facts('p2', `${REPO}:v1`, d('c'), d('3'))]);
  t.same(await pins(), [[`prod-releases ${REPO}:v1`, d('a')]], 'first seen wins');
  t.same(selectPins(policy, await store.imageTags!.listPins(100)).length, 0, 'a scoped rule sends no fleet-wide pins');

  // The scope edited (container label): other scope key, pins start afresh — seeded from the
  // inventory's running containers, which the reports above did not store; store them now.
  await store.replaceContainers('agt_b', [{ ...facts('s1', `${REPO}:v1`, d('b'), d('2')), labels: { tier: 'web' } }], new Date(now));
  await store.replaceContainers('agt_a', [facts('p1', `${REPO}:v1`, d('a'), d('1'))], new Date(now));
  policy = mk({ containerLabels: { tier: 'web' } });
  await tracker.policyChanged();
  t.same(await pins(), [[`prod-releases ${REPO}:v1`, d('b')]], 'seeded from the containers running in the new scope');
  const rows = await store.imageTags!.listScopedPins([{ ruleId: 'prod-releases', scopeKey: scopeKey(mk({ hostLabels: { env: 'prod' } })) }], 100);
  t.same(rows.map((r) => [r.digest, r.agentId, r.containerId]), [[d('a'), 'agt_a', 'p1'.padEnd(64, '0')]], 'the old scope\'s pins are kept under its own key');
  t.equal(scopeKey(mk({ containerLabels: { tier: 'web' } })), scopeKey(policy), 'the same scope has the same key');
});

function scopeKey(policy: Parameters<typeof scopedPinRules>[0]): string {
  return scopedPinRules(policy)[0]!.scopeKey;
}

// Issue 16: every agent's snapshot refreshed the shared image_tags row of each digest it
// runs and held that row locked until its transaction committed, so a fleet reconnecting at
// once stored its snapshots one after another. Within TAG_SEEN_REFRESH_MS a sighting only
// reads the row: another transaction holding it locked (here: open, with the row updated)
// does not hold up a second agent's sighting. PostgreSQL only: SQLite has one writer at all.
t.test('a recently refreshed digest is not locked by every sighting', { skip: testBackend() === 'postgres' ? false : 'row locks: PostgreSQL only' }, async (t) => {
  const config = await testDatabase(t);
  const store = await openStore(config);
  t.teardown(() => store.close());
  for (const id of ['agt_a', 'agt_b']) {
    await store.insertAgent({
      id, hostname: id, status: 'online', agentVersion: '1', host: null, certSerial: id, certNotAfter: new Date(T0 + 1e10),
      enrolledAt: new Date(T0), lastSeenAt: null, connectedAt: null, revokedAt: null, containerCount: 0,
    });
  }
  const now = new Date(Date.now());
  await store.imageTags!.recordSightings([{ agentId: 'agt_a', containerId: 'c1', containerName: 'n1', repository: REPO, tag: 'v1', digest: d('a'), imageId: d('1') }], now);
  // Another writer (another replica's snapshot) holds the row locked, uncommitted.
  const other = rawDb(config);
  let release!: () => void;
  const released = new Promise<void>((r) => (release = r));
  let locked!: () => void;
  const isLocked = new Promise<void>((r) => (locked = r));
  const holder = other.transaction().execute(async (trx) => {
    await sql`update image_tags set first_agent_id = first_agent_id where repository = ${REPO} and tag = 'v1'`.execute(trx);
    locked();
    await released;
  });
  t.teardown(async () => {
    release();
    await holder.catch(() => undefined);
    await other.destroy();
  });
  await isLocked;
  const started = performance.now();
  const done = store.imageTags!.recordSightings([{ agentId: 'agt_b', containerId: 'c2', containerName: 'n2', repository: REPO, tag: 'v1', digest: d('a'), imageId: d('1') }], new Date(now.getTime() + 5_000));
  const outcome = await Promise.race([done.then(() => 'stored'), new Promise((r) => setTimeout(() => r('held up by the lock'), 5_000))]);
  release();
  await holder;
  await done;
  t.equal(outcome, 'stored', `a second agent's sighting 5 s later is not held up by the row lock (${Math.round(performance.now() - started)} ms)`);
  const tag = await store.imageTags!.getTag(REPO, 'v1');
  t.equal(tag?.digests[0]?.lastSeenAt.getTime(), now.getTime(), `last seen not refreshed within ${TAG_SEEN_REFRESH_MS} ms`);
  t.same(tag?.digests[0]?.containers.map((c) => c.containerName).sort(), ['n1', 'n2'], 'both sightings stored');
});

// At the refresh mark (TAG_SEEN_REFRESH_MS after the last refresh) every snapshot wants to
// refresh the row; the first one locks it until its transaction commits. The others skip a row
// being refreshed (SKIP LOCKED) instead of queueing behind it (failover-sim, 500 agents: 9
// backends waited on that row at the minute mark).
t.test('a digest due for its refresh while another transaction refreshes it is not waited for', { skip: testBackend() === 'postgres' ? false : 'row locks: PostgreSQL only' }, async (t) => {
  const config = await testDatabase(t);
  const store = await openStore(config);
  t.teardown(() => store.close());
  for (const id of ['agt_a', 'agt_b']) {
    await store.insertAgent({
      id, hostname: id, status: 'online', agentVersion: '1', host: null, certSerial: id, certNotAfter: new Date(T0 + 1e10),
      enrolledAt: new Date(T0), lastSeenAt: null, connectedAt: null, revokedAt: null, containerCount: 0,
    });
  }
  const now = new Date(Date.now());
  await store.imageTags!.recordSightings([{ agentId: 'agt_a', containerId: 'c1', containerName: 'n1', repository: REPO, tag: 'v2', digest: d('a'), imageId: d('1') }], now);
  const later = now.getTime() + TAG_SEEN_REFRESH_MS + 1_000;
  // Another replica's snapshot is refreshing it right now (row updated, uncommitted).
  const other = rawDb(config);
  let release!: () => void;
  const released = new Promise<void>((r) => (release = r));
  let locked!: () => void;
  const isLocked = new Promise<void>((r) => (locked = r));
  const holder = other.transaction().execute(async (trx) => {
    await sql`update image_tags set last_seen_at = ${later} where repository = ${REPO} and tag = 'v2'`.execute(trx);
    locked();
    await released;
  });
  t.teardown(async () => {
    release();
    await holder.catch(() => undefined);
    await other.destroy();
  });
  await isLocked;
  const started = performance.now();
  const done = store.imageTags!.recordSightings([{ agentId: 'agt_b', containerId: 'c2', containerName: 'n2', repository: REPO, tag: 'v2', digest: d('a'), imageId: d('1') }], new Date(later));
  const outcome = await Promise.race([done.then(() => 'stored'), new Promise((r) => setTimeout(() => r('held up by the lock'), 5_000))]);
  release();
  await holder;
  await done;
  t.equal(outcome, 'stored', `a sighting due for the refresh is not held up by the one refreshing it (${Math.round(performance.now() - started)} ms)`);
  const tag = await store.imageTags!.getTag(REPO, 'v2');
  t.equal(tag?.digests[0]?.lastSeenAt.getTime(), later, 'refreshed (by the other transaction)');
  t.same(tag?.digests[0]?.containers.map((c) => c.containerName).sort(), ['n1', 'n2'], 'both sightings stored');
});
