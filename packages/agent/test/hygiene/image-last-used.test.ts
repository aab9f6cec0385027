// The agent's memory of image uses: what counts as a use (events, removals,
// running containers at sync and reconcile), never a time in the future,
// the file (0600, atomic, written at most every interval, on flush and at
// close, read back by a new agent and by the audit's child), its bound, and
// what a malformed file does.
import t from 'tap';
import { EventEmitter } from 'node:events';
import { chmodSync, existsSync, readFileSync, statSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { createLogger } from '@bulkhead/shared';
import type { Facts } from '../../src/docker/container-facts';
import { ImageLastUsedStore, RUNNING_REFRESH_MS, imageLastUsedPath, readImageLastUsed, type WatcherLike } from '../../src/hygiene/image-last-used';

const T0 = Date.parse('2026-11-28T12:00:00Z');

function capture(): { logger: ReturnType<typeof createLogger>; lines: () => Array<Record<string, unknown>> } {
  const raw: string[] = [];
  return {
    logger: createLogger({ name: 't', level: 'debug', destination: { write: (s: string) => void raw.push(s) } }),
    lines: () => raw.map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}

const facts = (imageId: string, state: string, times: { created?: number; started?: number; finished?: number } = {}): Facts =>
  ({ id: `c-${imageId}`, imageId, state, createdAtMs: times.created ?? 0, startedAtMs: times.started ?? 0, finishedAtMs: times.finished ?? 0 }) as unknown as Facts;

class FakeWatcher extends EventEmitter implements WatcherLike {
  inv: Facts[] = [];
  inventory(): Facts[] {
    return this.inv;
  }
}

t.test('uses: events, removals, running containers; never in the future; older times change nothing', async (t) => {
  let now = T0;
  const dir = t.testdir();
  const { logger } = capture();
  const s = ImageLastUsedStore.open({ path: imageLastUsedPath(dir), logger, now: () => now, writeIntervalMs: 3600_000 });
  t.equal(s.path, join(dir, 'image-last-used.json'));
  t.equal(s.size, 0, 'no file yet: empty');
  const w = new FakeWatcher();
  const detach = s.attach(w);

  // A created container: its creation time.
  w.emit('upsert', facts('sha256:created', 'created', { created: T0 - 5000 }), 'create', T0 - 4000, true);
  t.equal(s.get('sha256:created'), T0 - 5000);
  // Running: the event's time (it is in use as of then).
  w.emit('upsert', facts('sha256:run', 'running', { created: T0 - 9e6, started: T0 - 8e6 }), 'start', T0 - 1000, true);
  t.equal(s.get('sha256:run'), T0 - 1000);
  // Stopped: the newest of its times.
  w.emit('upsert', facts('sha256:stopped', 'exited', { created: T0 - 9e6, started: T0 - 8e6, finished: T0 - 7e6 }), 'die', T0 - 10, true);
  t.equal(s.get('sha256:stopped'), T0 - 7e6);
  // No times at all: the event's time.
  w.emit('upsert', facts('sha256:timeless', 'exited'), 'die', T0 - 20, true);
  t.equal(s.get('sha256:timeless'), T0 - 20);
  // Removed while running (rm -f): the removal's time — dockerd forgets it after this.
  w.emit('remove', 'c', 'destroy', T0 - 5, facts('sha256:run', 'running', { started: T0 - 8e6 }));
  t.equal(s.get('sha256:run'), T0 - 5);
  // Removed after it stopped: its finish time, not older than what is known.
  w.emit('remove', 'c', 'destroy', T0, facts('sha256:stopped', 'exited', { finished: T0 - 9e6 }));
  t.equal(s.get('sha256:stopped'), T0 - 7e6, 'an older time changes nothing');
  // An event time from a skewed clock is clamped to now.
  w.emit('upsert', facts('sha256:future', 'running'), 'start', T0 + 86_400_000, true);
  t.equal(s.get('sha256:future'), T0, 'never in the future');
  // No image id, no time: nothing.
  w.emit('upsert', facts('', 'running'), 'start', T0, true);
  t.equal(s.touch('sha256:x', Number.NaN), false);
  t.equal(s.touch('sha256:x', 0), false);
  t.equal(s.get('sha256:x'), undefined);

  // Sync and reconcile: running containers' images stamped now, at most once per RUNNING_REFRESH_MS.
  w.emit('snapshot', [facts('sha256:snap', 'running'), facts('sha256:snap-stopped', 'exited', { finished: T0 - 100 })]);
  t.equal(s.get('sha256:snap'), T0);
  t.equal(s.get('sha256:snap-stopped'), T0 - 100);
  now = T0 + 60_000;
  w.inv = [facts('sha256:snap', 'running'), facts('sha256:paused', 'paused'), facts('sha256:gone', 'exited')];
  w.emit('reconcile');
  t.equal(s.get('sha256:snap'), T0, 'refreshed within the hour: unchanged');
  t.equal(s.get('sha256:paused'), now, 'a paused container still holds its image');
  t.equal(s.get('sha256:gone'), undefined, 'reconcile only stamps live containers');
  now = T0 + RUNNING_REFRESH_MS + 1;
  w.emit('reconcile');
  t.equal(s.get('sha256:snap'), now, 'after an hour: stamped again');
  w.emit('upsert', facts('sha256:recon', 'running'), 'reconcile', 1, true);
  t.equal(s.get('sha256:recon'), now, 'a reconcile upsert is a sighting at now');

  detach();
  w.emit('upsert', facts('sha256:after', 'running'), 'start', now, true);
  t.equal(s.get('sha256:after'), undefined, 'detached');
  t.same([...s.snapshot().keys()].sort(), ['sha256:created', 'sha256:future', 'sha256:paused', 'sha256:recon', 'sha256:run', 'sha256:snap', 'sha256:snap-stopped', 'sha256:stopped', 'sha256:timeless']);
  s.close();
  t.equal(s.touch('sha256:late', now), false, 'closed: nothing more');
});

t.test('the file: 0600, written at most every interval, on flush and close; read back', async (t) => {
  const dir = t.testdir();
  const path = imageLastUsedPath(join(dir, 'state'));
  const { logger } = capture();
  const s = ImageLastUsedStore.open({ path, logger, writeIntervalMs: 50 });
  s.touch('sha256:a', T0);
  s.touch('sha256:b', T0 + 1);
  t.notOk(existsSync(path), 'not written at once');
  await new Promise((r) => setTimeout(r, 200));
  t.ok(existsSync(path), 'written after the interval');
  t.equal(s.writeCount, 1, 'once for both changes');
  t.equal(statSync(path).mode & 0o777, 0o600);
  const doc = JSON.parse(readFileSync(path, 'utf8')) as { version: number; writtenAt: string; images: Record<string, number> };
  t.equal(doc.version, 1);
  t.same(doc.images, { 'sha256:a': T0, 'sha256:b': T0 + 1 });
  s.flush();
  t.equal(s.writeCount, 1, 'nothing changed: no write');
  s.touch('sha256:c', T0 + 2);
  s.flush();
  t.equal(s.writeCount, 2, 'flush writes at once (before an audit)');
  s.touch('sha256:d', T0 + 3);
  s.close();
  t.equal(s.writeCount, 3, 'close writes what is pending');
  t.same(readImageLastUsed(path), new Map([['sha256:a', T0], ['sha256:b', T0 + 1], ['sha256:c', T0 + 2], ['sha256:d', T0 + 3]]), 'what the audit child reads');
  const again = ImageLastUsedStore.open({ path, logger });
  t.equal(again.get('sha256:d'), T0 + 3, 'a restarted agent remembers');
  again.close();
});

t.test('bounded: the longest-unused images are forgotten first', async (t) => {
  const dir = t.testdir();
  const path = join(dir, 'm.json');
  const { logger } = capture();
  const s = ImageLastUsedStore.open({ path, logger, maxEntries: 3, now: () => T0 + 1e6 });
  for (let i = 0; i < 150; i++) s.touch(`sha256:${i}`, T0 + i);
  t.ok(s.size <= 3 + 100, 'trimmed in batches while running');
  s.flush();
  t.same([...readImageLastUsed(path).keys()].sort(), ['sha256:147', 'sha256:148', 'sha256:149'], 'the file holds at most maxEntries, the newest');
  s.close();
  // A file bigger than the bound (maxEntries lowered) is trimmed at open.
  const small = ImageLastUsedStore.open({ path, logger, maxEntries: 1 });
  t.same([...small.snapshot().keys()], ['sha256:149']);
  small.close();
  t.same([...readImageLastUsed(path).keys()], ['sha256:149']);
  t.throws(() => ImageLastUsedStore.open({ path, logger, maxEntries: 0 }), RangeError);
});

t.test('malformed or unreadable memory: the agent starts empty; readers refuse', async (t) => {
  const dir = t.testdir();
  const { logger, lines } = capture();
  t.same(readImageLastUsed(join(dir, 'missing.json')), new Map(), 'missing: empty');
  const cases: Array<[string, RegExp]> = [
    ['{', /is not JSON/],
    ['[]', /not a version 1 document/],
    ['{"version":2,"images":{}}', /not a version 1 document/],
    ['{"version":1,"images":[]}', /not a version 1 document/],
    ['null', /not a version 1 document/],
  ];
  for (const [i, [text, re]] of cases.entries()) {
    const p = join(dir, `bad-${i}.json`);
    writeFileSync(p, text);
    t.throws(() => readImageLastUsed(p), { code: 'BK_ERR_INTERNAL', message: re }, text);
    const s = ImageLastUsedStore.open({ path: p, logger });
    t.equal(s.size, 0);
    s.touch('sha256:new', T0);
    s.close();
    t.same(readImageLastUsed(p), new Map([['sha256:new', T0]]), 'replaced by a good file at the next write');
  }
  t.match(lines().find((l) => l['msg'] === 'image last-use memory unreadable; starting empty'), { level: 50, err: /is not JSON/ });
  const odd = join(dir, 'odd.json');
  writeFileSync(odd, JSON.stringify({ version: 1, images: { 'sha256:ok': T0, 'sha256:neg': -1, 'sha256:str': 'x', '': T0 } }));
  t.same(readImageLastUsed(odd), new Map([['sha256:ok', T0]]), 'bad entries are skipped');
  if (process.getuid?.() !== 0) {
    const locked = join(dir, 'locked.json');
    writeFileSync(locked, '{}');
    chmodSync(locked, 0o000);
    t.throws(() => readImageLastUsed(locked), { message: /cannot read the image last-use memory/ });
  }
  const isDir = join(dir, 'a-dir.json');
  mkdirSync(isDir);
  t.throws(() => readImageLastUsed(isDir), { message: /cannot read the image last-use memory/ }, 'EISDIR is not "missing"');

  // A write that fails is logged and retried later, never thrown.
  const blocked = join(dir, 'blocked');
  writeFileSync(blocked, 'a file where a directory should be');
  const s = ImageLastUsedStore.open({ path: join(blocked, 'm.json'), logger });
  s.touch('sha256:a', T0);
  s.flush();
  t.equal(s.writeCount, 0);
  t.match(lines().find((l) => l['msg'] === 'image last-use memory not written'), { level: 40 });
  s.close();
});
