// DiskUsageReader on REAL temp directories: totals against `du -s -B1` (hard
// links once, sparse files by blocks), a big file growing in place seen on the
// next read, the entry budget spreading a 20,000-file walk over several reads
// without holding the event loop, rotated logs, gone containers, forget().
import t, { type Test } from 'tap';
import { execFileSync } from 'node:child_process';
import { appendFileSync, closeSync, fsyncSync, linkSync, openSync, writeSync, mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { DiskUsageReader, dataRootFrom, isRotatedName } from '../../src/resources/disk-usage';
import { resolveDiskUsageReaderOptions } from '../../src/resources/disk-usage-options';
import type { ResourceTarget } from '../../src/resources/types';

const MiB = 1024 * 1024;

function tmp(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'bk-disk-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** `du`'s answer: allocated bytes, hard links once. */
function du(path: string): number {
  return Number(execFileSync('du', ['-s', '-B1', path], { encoding: 'utf8' }).split('\t')[0]);
}

function blocksOf(paths: string[]): number {
  return paths.reduce((s, p) => s + Number(execFileSync('stat', ['-c', '%b', p], { encoding: 'utf8' })) * 512, 0);
}

/** An empty "upper dir" in a fresh temp dir. */
function upper(t: Test): string {
  const up = join(tmp(t), 'diff');
  mkdirSync(up);
  return up;
}

function target(id: string, upperDir?: string, extra: Partial<ResourceTarget> = {}): ResourceTarget {
  return { id, pid: 0, graphDriver: upperDir ? 'overlay2' : 'btrfs', upperDir, ...extra };
}

function fill(path: string, bytes: number): void {
  writeFileSync(path, Buffer.alloc(bytes, 7));
}

/**
 * Appends and fsyncs: ext4 adds extent-tree blocks to st_blocks when writeback allocates a
 * delayed-allocation write, so a big unsynced write's st_blocks can move between our read
 * and `du`'s.
 */
function appendSynced(path: string, data: Buffer): void {
  const fd = openSync(path, 'a');
  try {
    writeSync(fd, data);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

t.test('writable layer total matches du: nested dirs, hard links once, sparse files, symlinks', async (t) => {
  const up = join(tmp(t), 'diff');
  mkdirSync(join(up, 'a/b/c'), { recursive: true });
  mkdirSync(join(up, 'empty'));
  fill(join(up, 'a/one'), 100_000);
  fill(join(up, 'a/b/c/two'), 3 * MiB);
  linkSync(join(up, 'a/b/c/two'), join(up, 'hard-link-to-two'));
  linkSync(join(up, 'a/b/c/two'), join(up, 'a/another-link'));
  symlinkSync('/etc/passwd', join(up, 'a/symlink'));
  writeFileSync(join(up, 'sparse'), '');
  truncateSync(join(up, 'sparse'), 1024 * MiB); // 1 GiB long, nothing allocated
  fill(join(up, 'small'), 10);
  const r = new DiskUsageReader();
  const got = (await r.read([target('c1', up)], 1000)).get('c1')!;
  const expected = du(up);
  t.equal(got.writableBytes, expected, `du -s -B1 says ${expected}`);
  t.ok(got.writableBytes! > 3 * MiB && got.writableBytes! < 4 * MiB, 'the 3 MiB file counted once, the sparse GiB not at all');
  t.equal(got.logBytes, null, 'no log path given');
  r.close();
});

for (const syncChecks of [false, true]) {
  t.test(`a big file growing in place (no directory mtime moves) is seen on the next read (syncChecks ${syncChecks})`, async (t) => {
    const up = join(tmp(t), 'diff');
    mkdirSync(join(up, 'var/lib/app/data'), { recursive: true });
    appendSynced(join(up, 'var/lib/app/data/db'), Buffer.alloc(1 * MiB, 7));
    fill(join(up, 'var/lib/app/data/small-grows'), 1000);
    for (let i = 0; i < 20; i++) fill(join(up, `var/lib/app/data/small-${i}`), 100);
    const r = new DiskUsageReader({ largestFiles: 4, syncChecks });
    const first = (await r.read([target('c', up)], 1000)).get('c')!.writableBytes!;
    t.equal(first, du(up));
    appendSynced(join(up, 'var/lib/app/data/db'), Buffer.alloc(50 * MiB, 1));
    const second = (await r.read([target('c', up)], 2000)).get('c')!.writableBytes!;
    t.equal(second, du(up), 'grown by 50 MiB on the very next read');
    t.ok(second - first >= 50 * MiB);
    truncateSync(join(up, 'var/lib/app/data/db'), 0);
    t.equal((await r.read([target('c', up)], 3000)).get('c')!.writableBytes, du(up), 'and shrinking too');
    const settled = du(up);
    appendFileSync(join(up, 'var/lib/app/data/small-grows'), Buffer.alloc(200 * 1024, 1));
    t.equal((await r.read([target('c', up)], 4000)).get('c')!.writableBytes, settled, 'a file under largestFileMinBytes (1 MiB) is not tracked: seen at the next walk');
    t.equal((await r.read([target('c', up)], 4000 + 375_001)).get('c')!.writableBytes, du(up), '... which the rescan interval (5 min ± 25 %) brings');
    r.close();
  });
}

t.test('watched directories: the root every read, the others in turn, hot ones every read', async (t) => {
  const up = upper(t);
  const dirs = ['a', 'b', 'c', 'd', 'e', 'f'];
  for (const d of dirs) mkdirSync(join(up, d));
  const r = new DiskUsageReader({ watchRotation: 2, watchDepth: 1 });
  let now = 0;
  const next = async () => (await r.read([target('c', up)], (now += 1000))).get('c')!.writableBytes!;
  t.equal(await next(), du(up));
  fill(join(up, 'd', 'new'), 64 * 1024);
  let reads = 0;
  while ((await next()) !== du(up) && reads < 10) reads++;
  t.ok(reads + 1 <= 3, `a new file in one of 6 watched directories, 2 checked per read: seen within 3 reads (${reads + 1})`);
  fill(join(up, 'd', 'another'), 64 * 1024);
  t.equal(await next(), du(up), 'the directory is hot now: its next change is seen on the next read');
  r.close();
});

t.test('entries created in a watched directory start a rescan; deep changes wait for the rescan interval', async (t) => {
  const up = join(tmp(t), 'diff');
  mkdirSync(join(up, 'var/log/app/deep'), { recursive: true });
  const r = new DiskUsageReader({ rescanInterval: '1m', watchDepth: 2 });
  const at = (now: number) => r.read([target('c', up)], now).then((m) => m.get('c')!.writableBytes!);
  t.equal(await at(0), du(up));
  fill(join(up, 'new-at-root'), 2 * MiB); // the root's mtime moves
  t.equal(await at(1000), du(up), 'new file in the root: next read');
  fill(join(up, 'var/log/newlog'), 1 * MiB); // depth-2 directory, watched
  t.equal(await at(2000), du(up), 'new file in a depth-2 directory: next read');
  const before = du(up);
  fill(join(up, 'var/log/app/deep/hidden'), 512 * 1024); // depth 4: not watched, small
  t.equal(await at(3000), before, 'a small file deep in the tree is not seen before the rescan interval');
  t.equal(await at(2000 + 75_001), du(up), 'seen at the rescan interval (1 min + at most 25 % after the last walk)');
  r.close();
});

t.test('the entry budget spreads a 20,000-file walk over several reads, none holding the event loop', async (t) => {
  const up = join(tmp(t), 'diff');
  for (let d = 0; d < 100; d++) {
    mkdirSync(join(up, `d${d}`, 'sub'), { recursive: true });
    for (let f = 0; f < 100; f++) {
      writeFileSync(join(up, `d${d}`, `f${f}`), 'x');
      writeFileSync(join(up, `d${d}`, 'sub', `g${f}`), 'y');
    }
  }
  const small = upper(t);
  fill(join(small, 'f'), 4096);
  const budget = 5000;
  const r = new DiskUsageReader({ entryBudget: budget });
  const h = monitorEventLoopDelay({ resolution: 1 });
  h.enable();
  // A 1 ms timer counts how often the event loop got a turn during each read: a walk done
  // in one synchronous stretch (or a few big ones) would let it run only a handful of times.
  let ticks = 0;
  const timer = setInterval(() => ticks++, 1);
  const results: (number | null)[] = [];
  const smallResults: (number | null)[] = [];
  const durations: number[] = [];
  const ticksPerRead: number[] = [];
  for (let i = 0; i < 20 && (results.length === 0 || results[results.length - 1] === null); i++) {
    const t0 = performance.now();
    const before = ticks;
    const m = await r.read([target('big', up), target('small', small)], i * 1000);
    durations.push(performance.now() - t0);
    ticksPerRead.push(ticks - before);
    results.push(m.get('big')!.writableBytes);
    smallResults.push(m.get('small')!.writableBytes);
  }
  clearInterval(timer);
  h.disable();
  t.comment(`reads: ${durations.map((d) => d.toFixed(0)).join(', ')} ms; timer turns per read: ${ticksPerRead.join(', ')}; event-loop delay p50 ${(h.percentile(50) / 1e6).toFixed(1)} ms, p99 ${(h.percentile(99) / 1e6).toFixed(1)} ms, max ${(h.max / 1e6).toFixed(1)} ms`);
  t.ok(results.length >= 5, `20,200 entries at ${budget}/read need ≥ 5 reads (took ${results.length})`);
  t.same(results.slice(0, -1).filter((x) => x !== null), [], 'unknown (null) until the walk completes, never a partial total');
  t.equal(results[results.length - 1], du(up), 'then the du total');
  t.ok(smallResults[1] !== null, 'a small layer is not starved by a big one (known by the second read)');
  // Wall-clock stalls are noisy on the shared 2-core machine (load average above 20 seen),
  // so the firm check is that the loop kept turning during every walking read.
  t.ok(Math.min(...ticksPerRead.slice(0, -1)) >= 20, `the event loop turned ≥ 20 times during each walking read (${ticksPerRead.join(', ')})`);
  t.ok(h.percentile(50) / 1e6 < 20, `median event-loop delay under 20 ms (${(h.percentile(50) / 1e6).toFixed(1)} ms)`);
  // Without changes, later reads do not walk the tree again: they are cheap.
  const t0 = performance.now();
  const again = (await r.read([target('big', up)], 30_000)).get('big')!.writableBytes;
  const quiet = performance.now() - t0;
  t.equal(again, results[results.length - 1]);
  t.ok(quiet < Math.max(...durations), `a quiet read (${quiet.toFixed(1)} ms) is cheaper than a walking one`);
  r.close();
});

t.test('json-file logs: current + rotated + compressed, rotation picked up', async (t) => {
  const dir = tmp(t);
  const id = 'a'.repeat(64);
  const log = join(dir, `${id}-json.log`);
  fill(log, 10_000);
  fill(`${log}.1`, 20_000);
  fill(`${log}.2.gz`, 3_000);
  fill(join(dir, 'config.v2.json'), 50_000); // not a log
  fill(join(dir, `${id}-json.log.tmp`), 50_000); // not a rotation name
  const r = new DiskUsageReader();
  const tg = target(id, undefined, { logPath: log, logDriver: 'json-file' });
  const read = async (now: number) => (await r.read([tg], now)).get(id)!;
  t.same(await read(0), { writableBytes: null, logBytes: blocksOf([log, `${log}.1`, `${log}.2.gz`]) });
  appendFileSync(log, Buffer.alloc(100_000, 1));
  t.equal((await read(1000)).logBytes, blocksOf([log, `${log}.1`, `${log}.2.gz`]), 'current file: one stat per read');
  // Rotate like dockerd: .1 → .2.gz is the compressor's job; here .1 → .2, current → .1, new current.
  renameSync(`${log}.1`, `${log}.2`);
  renameSync(log, `${log}.1`);
  fill(log, 10);
  t.equal((await read(2000)).logBytes, blocksOf([log, `${log}.1`, `${log}.2`, `${log}.2.gz`]), 'rotation seen (new inode)');
  rmSync(`${log}.2`);
  t.equal((await read(3000)).logBytes, blocksOf([log, `${log}.1`, `${log}.2.gz`]), 'listed once more after a rotation (compression)');
  r.close();
});

t.test('local log driver: local-logs/ under the data root (given, or derived from the upper dir)', async (t) => {
  const root = tmp(t);
  const id = 'b'.repeat(64);
  const ll = join(root, 'containers', id, 'local-logs');
  mkdirSync(ll, { recursive: true });
  fill(join(ll, 'container.log'), 5000);
  fill(join(ll, 'container.log.1.gz'), 700);
  const up = join(root, 'overlay2', 'layerx', 'diff');
  mkdirSync(up, { recursive: true });
  const expected = blocksOf([join(ll, 'container.log'), join(ll, 'container.log.1.gz')]);
  const derived = new DiskUsageReader();
  t.equal((await derived.read([target(id, up, { logDriver: 'local', logPath: '' })], 0)).get(id)!.logBytes, expected, 'data root from the upper dir');
  const given = new DiskUsageReader({ dataRoot: root });
  t.equal((await given.read([target(id, undefined, { logDriver: 'local' })], 0)).get(id)!.logBytes, expected, 'data root given');
  // An agent in a container sees the host's / under a host root: inspect's paths are host paths.
  const inContainer = new DiskUsageReader({ hostRoot: root, dataRoot: '/' });
  t.equal((await inContainer.read([target(id, '/overlay2/layerx/diff', { logDriver: 'local' })], 0)).get(id)!.logBytes, expected, 'local logs under hostRoot');
  const json = join(root, 'containers', id, 'x-json.log');
  fill(json, 3000);
  fill(join(up, 'f'), 5000);
  const viaHost = (await inContainer.read([target('j2', '/overlay2/layerx/diff', { logPath: `/containers/${id}/x-json.log` })], 0)).get('j2')!;
  t.same(viaHost, { writableBytes: du(up), logBytes: blocksOf([json]) }, 'upper dir and LogPath under hostRoot');
  inContainer.close();
  const none = new DiskUsageReader();
  t.same((await none.read([target(id, undefined, { logDriver: 'local' })], 0)).get(id), { writableBytes: null, logBytes: null }, 'no way to find it: null');
  const journald = await given.read([target('j', undefined, { logDriver: 'journald' })], 0);
  t.same(journald.get('j'), { writableBytes: null, logBytes: null }, 'journald, other storage drivers: null');
  derived.close();
  given.close();
  none.close();
});

t.test('a container gone: nulls, no throw; forget() drops its state', async (t) => {
  const root = tmp(t);
  const up = join(root, 'diff');
  mkdirSync(join(up, 'x'), { recursive: true });
  fill(join(up, 'x/f'), 100_000);
  const log = join(root, 'c-json.log');
  fill(log, 1000);
  const r = new DiskUsageReader();
  const tg = target('c', up, { logPath: log, logDriver: 'json-file' });
  const first = (await r.read([tg], 0)).get('c')!;
  t.ok(first.writableBytes! > 0 && first.logBytes! > 0);
  rmSync(root, { recursive: true, force: true });
  t.same((await r.read([tg], 1000)).get('c'), { writableBytes: null, logBytes: null });
  t.same((await r.read([tg], 2000)).get('c'), { writableBytes: null, logBytes: null }, 'and stays so');
  t.same((await r.read([target('never', '/nonexistent/bk/diff', { logPath: '/nonexistent/bk/x-json.log' })], 0)).get('never'), { writableBytes: null, logBytes: null }, 'never existed');
  t.equal(r.size, 2);
  r.forget('c');
  r.forget('never');
  r.forget('unknown');
  t.equal(r.size, 0);
  // A walk in progress is dropped by forget (its directory handle closed).
  const big = upper(t);
  for (let i = 0; i < 300; i++) writeFileSync(join(big, `${i}`), '');
  const small = new DiskUsageReader({ entryBudget: 100 });
  t.equal((await small.read([target('w', big)], 0)).get('w')!.writableBytes, null, 'mid-walk');
  small.forget('w');
  t.equal(small.size, 0);
  t.equal((await small.read([target('w', big)], 1)).get('w')!.writableBytes, null, 'starts over');
  small.close();
  t.same([...(await small.read([target('w', big)], 2))], [], 'closed: answers nothing');
});

t.test('the upper dir changing (container recreated) starts over; reads run one at a time', async (t) => {
  const a = upper(t);
  const b = upper(t);
  fill(join(a, 'f'), 8192);
  fill(join(b, 'f'), 3 * 8192);
  const r = new DiskUsageReader();
  const [ra, rb] = await Promise.all([r.read([target('c', a)], 0), r.read([target('c', b)], 1)]);
  t.equal(ra.get('c')!.writableBytes, du(a));
  t.equal(rb.get('c')!.writableBytes, du(b));
  t.equal((await r.read([target('c')], 2)).get('c')!.writableBytes, null, 'no upper dir any more');
  r.close();
});

t.test('helpers and options', async (t) => {
  const base = 'abc-json.log';
  t.ok(isRotatedName('abc-json.log.1', base));
  t.ok(isRotatedName('abc-json.log.12.gz', base));
  t.ok(isRotatedName('abc-json.log.gz', base));
  t.notOk(isRotatedName('abc-json.log', base));
  t.notOk(isRotatedName('abc-json.log.tmp', base));
  t.notOk(isRotatedName('abc-json.log.1.gz.tmp', base));
  t.notOk(isRotatedName('other', base));
  t.equal(dataRootFrom({ upperDir: '/var/lib/docker/overlay2/abc/diff' }), '/var/lib/docker');
  t.equal(dataRootFrom({ logPath: '/srv/docker/containers/abc/abc-json.log' }), '/srv/docker');
  t.equal(dataRootFrom({ upperDir: '/weird/place' }), undefined);
  t.equal(dataRootFrom({}), undefined);
  const d = resolveDiskUsageReaderOptions();
  t.same(d, { hostRoot: '/', dataRoot: undefined, entryBudget: 2000, rescanIntervalMs: 300_000, largestFiles: 8, largestFileMinBytes: 1048576, watchedDirs: 16, watchDepth: 2, watchRotation: 2, concurrency: 16, syncChecks: false, maxDepth: 256, logger: undefined });
  t.equal(resolveDiskUsageReaderOptions({ rescanInterval: '5m' }).rescanIntervalMs, 300_000);
  t.throws(() => resolveDiskUsageReaderOptions({ entryBudget: 10 }), { code: 'BK_ERR_CONFIG_INVALID' });
  t.throws(() => resolveDiskUsageReaderOptions({ rescanInterval: 10 }), { code: 'BK_ERR_CONFIG_INVALID' });
  t.throws(() => resolveDiskUsageReaderOptions({ largestFiles: 1.5 }), { code: 'BK_ERR_CONFIG_INVALID' });
  t.throws(() => resolveDiskUsageReaderOptions({ rescanInterval: 'soon' }), { code: 'BK_ERR_CONFIG_INVALID' });
});
