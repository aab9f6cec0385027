// CgroupReader on fixture trees of BOTH cgroup versions (this machine has
// only v1 hybrid; most real hosts run v2), both Docker drivers, and a
// cgroup in a non-standard place found through /proc/<pid>/cgroup.
import t, { type Test } from 'tap';
import { closeSync, cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CgroupNotFoundError, CgroupReader } from '../../src/cgroup/cgroup-reader';
import {
  parseBlkioRw, parseCfsQuota, parseCounter, parseCpuMax, parseIoStat, parseLimit, parseProcCgroup, preadCounterSync, preadFileSync, preadStatSync, readSmallFile,
  readSmallFileSync, statValue, openFile,
} from '../../src/cgroup/cgroup-files';

const FIX = join(__dirname, 'fixtures');
const ID1 = '1'.repeat(64);
const ID2 = '2'.repeat(64);
const ID3 = '3'.repeat(64);
const MiB = 1024 * 1024;

/** A writable copy of a fixture tree. */
function copy(t: Test, which: 'v1' | 'v2'): string {
  const dir = mkdtempSync(join(tmpdir(), `bk-cg-${which}-`));
  cpSync(join(FIX, which), dir, { recursive: true });
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

t.test('parsers', async (t) => {
  t.equal(parseLimit('max\n'), 0);
  t.equal(parseLimit('-1'), 0);
  t.equal(parseLimit('9223372036854771712\n'), 0, "v1's no-limit value");
  t.equal(parseLimit('134217728\n'), 134217728);
  t.equal(parseLimit(''), 0);
  t.equal(parseCounter('12\n'), 12);
  t.equal(parseCounter('junk'), 0);
  t.equal(statValue('usage_usec 15\nuser_usec 3\n', 'usage_usec'), 15);
  t.equal(statValue('a 1\ninactive_file 7\n', 'inactive_file'), 7);
  t.equal(statValue('total_inactive_file 9\ninactive_file 7\n', 'inactive_file'), 7, 'a key is matched at a line start only');
  t.equal(statValue('a 1\n', 'b'), undefined);
  t.equal(statValue('a x\n', 'a'), undefined);
  t.equal(statValue('last 5', 'last'), 5, 'no trailing newline');
  t.equal(parseCpuMax('max 100000'), 0);
  t.equal(parseCpuMax('20000 100000\n'), 0.2);
  t.equal(parseCpuMax('50000'), 0.5, 'period defaults to 100000');
  t.equal(parseCpuMax(''), 0);
  t.equal(parseCfsQuota('-1', '100000'), 0);
  t.equal(parseCfsQuota('150000\n', '100000\n'), 1.5);
  const m = parseProcCgroup('12:pids:/a\n4:cpu,cpuacct:/b\n1:name=systemd:/c\n0::/d\nbad\n');
  t.equal(m.get('pids'), '/a');
  t.equal(m.get('cpu'), '/b');
  t.equal(m.get('cpuacct'), '/b');
  t.equal(m.get(''), '/d');
});

t.test('block-IO parsers: v2 io.stat and v1 blkio files, summed over devices', async (t) => {
  t.same(parseIoStat('8:0 rbytes=100 wbytes=200 rios=1 wios=2 dbytes=7 dios=1\n8:16 rbytes=1 wbytes=2 rios=3 wios=4\n'), { readBytes: 101, writeBytes: 202, readOps: 4, writeOps: 6 });
  t.same(parseIoStat(''), { readBytes: 0, writeBytes: 0, readOps: 0, writeOps: 0 }, 'no IO yet: an empty file');
  t.same(parseIoStat('8:0 rbytes=x wbytes=5 cost.usage=9\n'), { readBytes: 0, writeBytes: 5, readOps: 0, writeOps: 0 }, 'junk and other keys ignored');
  t.same(parseBlkioRw('8:0 Read 10\n8:0 Write 20\n8:0 Sync 30\n8:0 Async 0\n8:0 Discard 0\n8:0 Total 30\n8:16 Read 1\n8:16 Write 2\nTotal 33\n'), { read: 11, write: 22, lines: 8 });
  t.same(parseBlkioRw('Total 0\n'), { read: 0, write: 0, lines: 0 }, 'no device: the empty file of an idle or unaccounted cgroup');
});

for (const version of [1, 2] as const) {
  t.test(`cgroup v${version}: block IO only when asked, last value kept, absent without a controller`, async (t) => {
    const root = copy(t, version === 1 ? 'v1' : 'v2');
    const r = await CgroupReader.forHost({ root });
    t.teardown(() => r.close());
    const plain = await r.read(ID1);
    t.equal(plain.blkio, undefined, 'not asked (the default): not read');
    const opened = r.openFiles;
    const a = await r.read(ID1, undefined, { blkio: true });
    t.same(a.blkio, { readBytes: 20 * MiB + 4096, writeBytes: 10 * MiB + 8192, readOps: 21, writeOps: 12 }, 'summed over both devices');
    t.equal(r.openFiles, opened + (version === 1 ? 2 : 1), 'the block-IO files are kept open like the other per-sample files');
    const dir = version === 1 ? `sys/fs/cgroup/blkio/docker/${ID1}` : `sys/fs/cgroup/system.slice/docker-${ID1}.scope`;
    if (version === 1) {
      writeFileSync(join(root, dir, 'blkio.throttle.io_service_bytes_recursive'), '254:0 Read 1\n254:0 Write 2\nTotal 3\n');
      writeFileSync(join(root, dir, 'blkio.throttle.io_serviced_recursive'), '254:0 Read 3\n254:0 Write 4\nTotal 7\n');
    } else writeFileSync(join(root, dir, 'io.stat'), '254:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0\n');
    t.same((await r.read(ID1)).blkio, a.blkio, 'a read that does not ask repeats the last value');
    t.same((await r.read(ID1, undefined, { blkio: true })).blkio, { readBytes: 1, writeBytes: 2, readOps: 3, writeOps: 4 }, 'a read that asks re-reads the kept-open files');
    const b = await r.read(ID2, undefined, { blkio: true });
    t.same(b.blkio, version === 1 ? { readBytes: MiB, writeBytes: 2 * MiB, readOps: 16, writeOps: 32 } : { readBytes: 0, writeBytes: 0, readOps: 0, writeOps: 0 },
      version === 1 ? 'throttle files list no device: the CFQ files are read instead' : 'an empty io.stat: zeros');
    const c = await r.read(ID3, version === 1 ? 4242 : 99, { blkio: true });
    t.equal(c.blkio, undefined, 'no io/blkio controller: absent, and the read still succeeds');
    t.equal((await r.read(ID3, undefined, { blkio: true })).blkio, undefined, 'not looked for again');
  });
}

t.test('small-file reads: whole file, growing the buffer when needed', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'bk-cg-read-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const big = 'x'.repeat(10_000);
  writeFileSync(join(dir, 'big'), big);
  t.equal(await readSmallFile(join(dir, 'big'), 64), big);
  t.equal(readSmallFileSync(join(dir, 'big'), 64), big, 'the synchronous read grows too');
  writeFileSync(join(dir, 'exact'), 'y'.repeat(64));
  t.equal(readSmallFileSync(join(dir, 'exact'), 64), 'y'.repeat(64), 'a file exactly the size of the buffer');
  t.throws(() => readSmallFileSync(join(dir, 'nope')), { code: 'ENOENT' });
  const fd = await openFile(join(dir, 'big'));
  t.equal(preadFileSync(fd, 100), big, 'pread grows too');
  t.equal(preadFileSync(fd, 20_000), big, 'and re-reads from offset 0');
  closeSync(fd);
  t.throws(() => preadFileSync(fd, 10), { code: 'EBADF' });
  await t.rejects(readSmallFile(join(dir, 'nope')), { code: 'ENOENT' });
  await t.rejects(openFile(join(dir, 'nope')), { code: 'ENOENT' });
  await t.rejects(readSmallFile(dir), { code: 'EISDIR' });
});

for (const version of [1, 2] as const) {
  t.test(`cgroup v${version}: detection, both drivers, working set, limits, /proc fallback`, async (t) => {
    const root = join(FIX, `v${version}`);
    const r = await CgroupReader.forHost({ root, now: () => 1000 });
    t.equal(r.version, version, 'detected');
    t.equal(r.driver, 'auto');
    const a = await r.read(ID1);
    t.same(a, {
      containerId: ID1, at: 1000, cpuUsageNs: 1_500_000_000, memoryBytes: 60 * MiB, memoryUsageBytes: 70 * MiB, memoryLimitBytes: 128 * MiB,
      pids: 7, pidsLimit: 100, cpuLimitCores: 0.2,
    }, 'working set = usage − inactive file cache, as docker stats');
    const b = await r.read(ID2);
    t.same([b.memoryLimitBytes, b.pidsLimit, b.cpuLimitCores, b.memoryBytes], [0, 0, 0, 4 * MiB], 'unlimited: all limits 0');
    const pid = version === 1 ? 4242 : 99;
    const c = await r.read(ID3, pid);
    t.equal(c.memoryLimitBytes, 2 * MiB);
    t.equal(c.cpuLimitCores, 0.5);
    t.equal(c.pids, version === 1 ? 0 : 2, 'v1 fixture has no pids controller for it');
    t.equal((await r.read(ID3)).containerId, ID3, 'once found, the pid is not needed again');
    const fresh = await CgroupReader.forHost({ root });
    await t.rejects(fresh.read(ID3), CgroupNotFoundError, 'without the pid it cannot be found');
    await t.rejects(r.read('f'.repeat(64), 1), CgroupNotFoundError, 'no such pid either');
    const e = (await r.read('9'.repeat(64)).catch((x: unknown) => x)) as CgroupNotFoundError;
    t.equal(e.code, 'ENOENT');
    t.match(e.message, /no cgroup found for container 999999999999/);
    t.ok(r.openFiles > 0, 'hot files are kept open');
    r.close();
    t.equal(r.openFiles, 0);
    const raw = await CgroupReader.forHost({ root, workingSet: false, keepOpen: false, version, driver: version === 2 ? 'systemd' : 'cgroupfs' });
    t.equal((await raw.read(ID1)).memoryBytes, 70 * MiB, 'raw usage when asked');
    t.equal(raw.openFiles, 0);
    await t.rejects(raw.read(ID2), CgroupNotFoundError, 'a fixed driver does not look in the other layout');
  });
}

t.test('in-place parsers give what the string parsers give', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'bk-cg-inplace-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const at = async (text: string): Promise<number> => {
    const p = join(dir, 'f');
    writeFileSync(p, text);
    const fd = await openFile(p);
    t.teardown(() => closeSync(fd));
    return fd;
  };
  const counters = ['12\n', '0\n', '  7 \n', '', 'junk', '-5\n', '1.5\n', '12 34\n', '9007199254740993\n', '18446744073709551615\n', '123456789012345678\n', 'max\n', '5'.repeat(9000)];
  for (const text of counters) t.equal(preadCounterSync(await at(text)), parseCounter(text), `counter ${JSON.stringify(text.slice(0, 24))}`);
  const stats: Array<[string, string]> = [
    ['usage_usec 15\nuser_usec 3\n', 'usage_usec'], ['a 1\ninactive_file 7\n', 'inactive_file'], ['total_inactive_file 9\ninactive_file 7\n', 'inactive_file'],
    ['total_inactive_file 9\n', 'inactive_file'], ['a 1\n', 'b'], ['a x\n', 'a'], ['last 5', 'last'], ['a \nb 2\n', 'a'], ['a 1 2\n', 'a'], ['a 99999999999999999999\n', 'a'],
    ['inactive_file 3\ninactive_file 4\n', 'inactive_file'], [`${'x 1\n'.repeat(3000)}inactive_file 8\n`, 'inactive_file'], ['inactive_filex 1\ninactive_file 2\n', 'inactive_file'],
  ];
  for (const [text, key] of stats) t.equal(preadStatSync(await at(text), key), statValue(text, key), `stat ${key} of ${JSON.stringify(text.slice(0, 30))}`);
});

for (const version of [1, 2] as const) {
  t.test(`cgroup v${version}: readSync gives what read() gives once the files are open, else undefined`, async (t) => {
    const root = copy(t, version === 1 ? 'v1' : 'v2');
    let now = 1000;
    const r = await CgroupReader.forHost({ root, now: () => now });
    t.teardown(() => r.close());
    t.equal(r.readSync(ID1), undefined, 'not read yet: nothing open');
    const first = await r.read(ID1);
    now = 2000;
    for (const detail of [{}, { memoryStat: false }, { pids: false }, { memoryStat: false, pids: false }]) {
      const sync = r.readSync(ID1, undefined, detail);
      t.same(sync, await r.read(ID1, undefined, detail), `same reading (${JSON.stringify(detail)})`);
    }
    t.same(r.readSync(ID1), { ...first, at: 2000 }, 'the fixture values');
    t.equal(r.readSync(ID1, undefined, { blkio: true }), undefined, 'block IO: the async way');
    await r.read(ID1, undefined, { blkio: true });
    t.same(r.readSync(ID1)?.blkio, (await r.read(ID1)).blkio, 'the last block-IO values repeated, as read() does');
    const dir = version === 1 ? `sys/fs/cgroup/memory/docker/${ID1}` : `sys/fs/cgroup/system.slice/docker-${ID1}.scope`;
    writeFileSync(join(root, dir, version === 1 ? 'memory.usage_in_bytes' : 'memory.current'), `${90 * MiB}\n`);
    t.equal(r.readSync(ID1)!.memoryUsageBytes, 90 * MiB, 'fresh content through the kept-open fd');
    const raw = await CgroupReader.forHost({ root, keepOpen: false });
    await raw.read(ID1);
    t.equal(raw.readSync(ID1), undefined, 'keepOpen false: never open, always the async way');
    r.forget(ID1);
    t.equal(r.readSync(ID1), undefined, 'forgotten');
  });
}

t.test('counters move, limits are cached (TTL, invalidate), optional files can be skipped', async (t) => {
  const root = copy(t, 'v2');
  let now = 0;
  const r = await CgroupReader.forHost({ root, now: () => now, limitsTtlMs: 30_000 });
  t.teardown(() => r.close());
  const dir = join(root, `sys/fs/cgroup/system.slice/docker-${ID1}.scope`);
  const first = await r.read(ID1);
  writeFileSync(join(dir, 'cpu.stat'), 'usage_usec 2500000\n');
  writeFileSync(join(dir, 'memory.current'), `${80 * MiB}\n`);
  writeFileSync(join(dir, 'memory.stat'), `inactive_file ${5 * MiB}\n`);
  writeFileSync(join(dir, 'pids.current'), '9\n');
  writeFileSync(join(dir, 'memory.max'), `${256 * MiB}\n`);
  now = 5000;
  const skip = await r.read(ID1, undefined, { memoryStat: false, pids: false });
  t.equal(skip.cpuUsageNs - first.cpuUsageNs, 1_000_000_000, 'the kept-open fd re-reads fresh content');
  t.equal(skip.memoryBytes, 70 * MiB, 'last inactive_file (10 MiB) reused');
  t.equal(skip.pids, 7, 'last pids reused');
  t.equal(skip.memoryLimitBytes, 128 * MiB, 'limits cached within the TTL');
  const full = await r.read(ID1);
  t.equal(full.memoryBytes, 75 * MiB);
  t.equal(full.pids, 9);
  r.invalidateLimits(ID1);
  r.invalidateLimits('unknown');
  t.equal((await r.read(ID1)).memoryLimitBytes, 256 * MiB, 'invalidated');
  writeFileSync(join(dir, 'memory.max'), 'max\n');
  now = 40_000;
  t.equal((await r.read(ID1)).memoryLimitBytes, 0, 'TTL expired');
  const every = await CgroupReader.forHost({ root, limitsTtlMs: 0, keepOpen: false });
  writeFileSync(join(dir, 'pids.max'), '5\n');
  t.equal((await every.read(ID1)).pidsLimit, 5);
});

t.test('a cgroup that disappears: CgroupNotFoundError, files closed, found again if it comes back', async (t) => {
  const root = copy(t, 'v1');
  const r = await CgroupReader.forHost({ root });
  await r.read(ID1);
  const opened = r.openFiles;
  t.ok(opened >= 3);
  const saved = mkdtempSync(join(tmpdir(), 'bk-cg-saved-'));
  t.teardown(() => rmSync(saved, { recursive: true, force: true }));
  for (const ctl of ['cpu', 'cpuacct', 'memory', 'pids']) {
    cpSync(join(root, `sys/fs/cgroup/${ctl}/docker/${ID1}`), join(saved, ctl), { recursive: true });
    rmSync(join(root, `sys/fs/cgroup/${ctl}/docker/${ID1}`), { recursive: true });
  }
  // Regular files stay readable through open fds after unlink; make the kept-open read fail like a removed cgroup (ENODEV) would.
  r.forget(ID1);
  await t.rejects(r.read(ID1), CgroupNotFoundError);
  t.equal(r.openFiles, 0);
  for (const ctl of ['cpu', 'cpuacct', 'memory', 'pids']) cpSync(join(saved, ctl), join(root, `sys/fs/cgroup/${ctl}/docker/${ID1}`), { recursive: true });
  t.equal((await r.read(ID1)).pids, 7);
  r.forget('never-seen');
});

t.test('a kept-open file that starts failing with ENODEV triggers one re-locate', async (t) => {
  const root = copy(t, 'v2');
  const r = await CgroupReader.forHost({ root });
  await r.read(ID1);
  // Simulate removal: close the kept fds behind the reader's back, so the next pread fails (EBADF is not "gone": surfaced).
  r.close();
  const dir = join(root, `sys/fs/cgroup/system.slice/docker-${ID1}.scope`);
  rmSync(dir, { recursive: true });
  await t.rejects(r.read(ID1), CgroupNotFoundError);
});

t.test('a kept-open read that fails is surfaced as the read error (not swallowed, not thrown synchronously)', async (t) => {
  const r = await CgroupReader.forHost({ root: join(FIX, 'v2') });
  await r.read(ID1);
  // Close the kept fds behind the reader's back: the next synchronous pread fails with EBADF.
  const entry = (r as unknown as { entries: Map<string, { fds: Record<string, number> }> }).entries.get(ID1)!;
  for (const fd of Object.values(entry.fds)) closeSync(fd);
  const read = r.read(ID1);
  t.type(read.then, 'function', 'read() still returns a promise');
  await t.rejects(read, { code: 'EBADF' });
  entry.fds = {}; // already closed: keep close() from closing numbers reused meanwhile
  r.close();
});

t.test('maxOpenFiles caps kept-open files; beyond it reads open/read/close', async (t) => {
  const r = await CgroupReader.forHost({ root: join(FIX, 'v2'), maxOpenFiles: 2 });
  t.teardown(() => r.close());
  const a = await r.read(ID1);
  t.ok(r.openFiles <= 2 + 4, 'at most the cap plus the opens already in flight when it was reached');
  const b = await r.read(ID1);
  t.equal(b.cpuUsageNs, a.cpuUsageNs);
  const located = await r.locate(ID1);
  t.match(located.dir, /docker-1{64}\.scope$/);
});

t.test('blkioAccounting: v1 counters off until a disk is throttled (Linux 6.10+), v2 not judged', async (t) => {
  const { mkdirSync } = await import('node:fs');
  const dir = mkdtempSync(join(tmpdir(), 'bk-cg-acct-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const v1 = await CgroupReader.forHost({ cgroupRoot: dir, version: 1, procRoot: dir });
  t.equal(await v1.blkioAccounting(), 'unknown', 'no blkio controller: unknown');
  mkdirSync(join(dir, 'blkio'));
  writeFileSync(join(dir, 'blkio', 'blkio.throttle.io_service_bytes'), 'Total 0\n');
  t.equal(await v1.blkioAccounting(), 'inactive', 'a root file listing no device: the kernel counts nothing');
  writeFileSync(join(dir, 'blkio', 'blkio.throttle.io_service_bytes'), '254:0 Read 16777216\n254:0 Write 0\n254:0 Total 16777216\nTotal 16777216\n');
  t.equal(await v1.blkioAccounting(), 'active');
  const v2 = await CgroupReader.forHost({ cgroupRoot: dir, version: 2, procRoot: dir });
  t.equal(await v2.blkioAccounting(), 'unknown', 'v2 io.stat counts regardless');
});
