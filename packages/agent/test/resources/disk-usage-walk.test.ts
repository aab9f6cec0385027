// The writable-layer walk against a hostile container, on REAL temp directories:
// a pending directory swapped for a symlink to the host between two reads, a file
// hidden deeper than PATH_MAX, a tree deeper than maxDepth (reported incomplete,
// never silently short), and forget()/close() in the middle of a walk (handles
// closed at once, not at GC).
import t, { type Test } from 'tap';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readlinkSync, renameSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DiskUsageReader } from '../../src/resources/disk-usage';
import type { ResourceTarget } from '../../src/resources/types';

const MiB = 1024 * 1024;

function tmp(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'bk-diskwalk-'));
  // rm -rf: Node's rmSync cannot remove a tree deeper than PATH_MAX.
  t.teardown(() => execFileSync('rm', ['-rf', dir]));
  return dir;
}

function du(path: string): number {
  return Number(execFileSync('du', ['-s', '-B1', path], { encoding: 'utf8' }).split('\t')[0]);
}

function target(id: string, upperDir: string): ResourceTarget {
  return { id, pid: 0, graphDriver: 'overlay2', upperDir };
}

/** Descriptors of this process open on something under `dir`. */
function fdsUnder(dir: string): number {
  let n = 0;
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      if (readlinkSync(`/proc/self/fd/${fd}`).startsWith(dir)) n++;
    } catch {
      // closed meanwhile
    }
  }
  return n;
}

/** `levels` nested directories named `name` under `dir`, made with relative paths (as a process in the container would), and a file at the bottom. */
function deepTree(dir: string, name: string, levels: number, fileBytes: number): void {
  execFileSync('bash', ['-c', `cd "$1" && for i in $(seq 1 ${levels}); do mkdir "$2" && cd "$2"; done; head -c ${fileBytes} /dev/zero > hidden.bin && sync hidden.bin`, 'x', dir, name]);
}

const settle = (): Promise<void> => new Promise((r) => setTimeout(r, 30));

t.test('a pending directory swapped for a symlink to the host is never followed', async (t) => {
  const root = tmp(t);
  const up = join(root, 'overlay2/L/diff');
  mkdirSync(up, { recursive: true });
  // "The host": files outside the layer, on the same filesystem.
  const host = join(root, 'hostdir');
  mkdirSync(join(host, 'sub'), { recursive: true });
  for (let i = 0; i < 3; i++) writeFileSync(join(host, 'sub', `big${i}`), Buffer.alloc(4 * MiB, 1));
  for (const d of ['a', 'b', 'c', 'd']) {
    mkdirSync(join(up, d));
    for (let i = 0; i < 150; i++) writeFileSync(join(up, d, `f${i}`), 'x');
  }
  const hostBytes = du(host);
  const r = new DiskUsageReader({ entryBudget: 100 });
  t.teardown(() => r.close());
  const tg = target('c1', up);
  const first = (await r.read([tg], 0)).get('c1')!;
  t.equal(first.writableBytes, null, 'the walk spans several reads (600 entries, budget 100)');
  // The container swaps every directory for a symlink to the host (those not opened yet are pending).
  for (const d of ['a', 'b', 'c', 'd']) {
    renameSync(join(up, d), join(up, `${d}.old`));
    symlinkSync(host, join(up, d));
  }
  const seen: number[] = [];
  for (let i = 1; i < 40; i++) {
    const u = (await r.read([tg], i)).get('c1')!;
    if (u.writableBytes !== null) seen.push(u.writableBytes);
  }
  const layer = du(up); // du does not follow symlinks either
  t.ok(seen.length > 0, 'walks completed');
  t.ok(seen.every((b) => b < hostBytes), `no total includes the host's ${hostBytes} bytes: ${seen.join(', ')}`);
  t.equal(seen[seen.length - 1], layer, `after the rescan the total is du's ${layer}`);
});

t.test('an intermediate directory swapped for a symlink: the open chain stays pinned', async (t) => {
  const root = tmp(t);
  const up = join(root, 'overlay2/L/diff');
  mkdirSync(join(up, 'a/deeper'), { recursive: true });
  for (let i = 0; i < 300; i++) writeFileSync(join(up, 'a/deeper', `f${i}`), 'x');
  mkdirSync(join(up, 'a/deeper/x'));
  mkdirSync(join(up, 'a/deeper/y'));
  const host = join(root, 'hostdir');
  mkdirSync(join(host, 'deeper/x'), { recursive: true });
  mkdirSync(join(host, 'deeper/y'), { recursive: true });
  writeFileSync(join(host, 'deeper/x/big'), Buffer.alloc(8 * MiB, 1));
  writeFileSync(join(host, 'deeper/y/big'), Buffer.alloc(8 * MiB, 1));
  const r = new DiskUsageReader({ entryBudget: 100 });
  t.teardown(() => r.close());
  const tg = target('c1', up);
  await r.read([tg], 0);
  // Mid-walk in a/deeper: `a` becomes a symlink to a host tree with the same shape.
  renameSync(join(up, 'a'), join(up, 'a.old'));
  symlinkSync(host, join(up, 'a'));
  const seen: number[] = [];
  for (let i = 1; i < 20; i++) {
    const u = (await r.read([tg], i)).get('c1')!;
    if (u.writableBytes !== null) seen.push(u.writableBytes);
  }
  t.ok(seen.length > 0, 'walks completed');
  t.ok(seen.every((b) => b < 8 * MiB), `the host's 8 MiB files never counted: ${seen.join(', ')}`);
  t.equal(seen[seen.length - 1], du(up));
});

t.test('a file deeper than PATH_MAX is counted', async (t) => {
  const up = join(tmp(t), 'diff');
  mkdirSync(up);
  deepTree(up, 'x'.repeat(250), 18, 5 * MiB); // ≈ 4.5 KB of path: more than PATH_MAX
  const warns: object[] = [];
  const r = new DiskUsageReader({ entryBudget: 100, logger: { warn: (o) => warns.push(o) } });
  t.teardown(() => r.close());
  let u;
  for (let i = 0; i < 5; i++) u = (await r.read([target('c1', up)], i)).get('c1')!;
  const expected = du(up);
  t.ok(expected > 5 * MiB, 'du sees the hidden file');
  t.equal(u!.writableBytes, expected, `du -s -B1 says ${expected}`);
  t.notOk(u!.writableIncomplete, 'complete');
  t.equal(warns.length, 0);
  // The file deeper than PATH_MAX cannot be re-stat'ed by path: it must not make every read a rescan.
  const again = (await r.read([target('c1', up)], 6)).get('c1')!;
  t.equal(again.writableBytes, expected, 'stable on the next read');
  t.equal(fdsUnder(up), 0, 'no handle left open once the walk is done');
});

t.test('deeper than maxDepth: counted as far as reached, marked incomplete, warned once', async (t) => {
  const up = join(tmp(t), 'diff');
  mkdirSync(up);
  deepTree(up, 'd', 30, 2 * MiB);
  const warns: object[] = [];
  const r = new DiskUsageReader({ entryBudget: 100, maxDepth: 20, rescanInterval: 1000, logger: { warn: (o) => warns.push(o) } });
  t.teardown(() => r.close());
  let u;
  for (let i = 0; i < 5; i++) u = (await r.read([target('c1', up)], i * 5000)).get('c1')!; // rescans due each time
  t.equal(u!.writableIncomplete, true, 'marked incomplete');
  t.ok(u!.writableBytes! > 0 && u!.writableBytes! < du(up) - MiB, `a lower bound (${u!.writableBytes} < du ${du(up)}): the 2 MiB file is out of reach`);
  t.equal(warns.length, 1, 'warned once for the container, not on every walk');
  t.match(warns[0], { container: 'c1', maxDepth: 20 });
  const deep = new DiskUsageReader({ entryBudget: 100 }); // default maxDepth 256
  t.teardown(() => deep.close());
  for (let i = 0; i < 5; i++) u = (await deep.read([target('c1', up)], i)).get('c1')!;
  t.equal(u!.writableBytes, du(up), 'the default depth reaches it');
  t.notOk('writableIncomplete' in u!, 'complete: no marker');
});

t.test('forget() and close() in the middle of a walk stop it and close its handles at once', async (t) => {
  const up = join(tmp(t), 'diff');
  for (let d = 0; d < 50; d++) {
    mkdirSync(join(up, `d${d}`, 'x', 'y'), { recursive: true });
    for (let i = 0; i < 100; i++) writeFileSync(join(up, `d${d}`, 'x', 'y', `f${i}`), '');
  }
  for (const how of ['forget', 'close'] as const) {
    const r = new DiskUsageReader({ entryBudget: 2000 }); // the walk (5,200 entries) would end mid-tree
    const p = r.read([target('c1', up)], 0);
    // Wait until the walk holds handles in the layer, then drop it.
    for (let i = 0; i < 10_000 && fdsUnder(up) === 0; i++) await new Promise((res) => setImmediate(res));
    t.ok(fdsUnder(up) > 0, `${how}: the walk is under way`);
    if (how === 'forget') r.forget('c1');
    else r.close();
    const got = await p;
    await settle();
    t.equal(fdsUnder(up), 0, `${how}: no handle left open in the layer (not waiting for GC)`);
    t.equal(r.size, 0, `${how}: no state kept`);
    t.equal(got.get('c1')?.writableBytes ?? null, null, `${how}: no total from the dropped walk`);
    r.close();
  }
});
