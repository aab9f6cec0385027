// readDataRootUsage against `df` on real filesystems (the temp dir's, and /dev/shm
// as a separate log filesystem), DiskUsageHistory naming who grew it, and the
// host finding built from it.
import t, { type Test } from 'tap';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DiskUsageHistory, dataRootFinding, readDataRootUsage } from '../../src/resources/data-root-usage';
import type { DiskUsage } from '../../src/resources/types';

const MiB = 1024 * 1024;

function tmp(t: Test, base = tmpdir()): string {
  const dir = mkdtempSync(join(base, 'bk-droot-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function df(path: string): { used: number; avail: number; size: number; pcent: number } {
  const line = execFileSync('df', ['-B1', '--output=used,avail,size,pcent', path], { encoding: 'utf8' }).trim().split('\n')[1]!;
  const [used, avail, size, pcent] = line.trim().split(/\s+/);
  return { used: Number(used), avail: Number(avail), size: Number(size), pcent: Number(pcent!.replace('%', '')) };
}

const usages = (o: Record<string, [number | null, number | null]>): Map<string, DiskUsage> =>
  new Map(Object.entries(o).map(([id, [w, l]]) => [id, { writableBytes: w, logBytes: l }]));

t.test('one filesystem: figures as df, roles data-root + logs', async (t) => {
  const root = tmp(t);
  mkdirSync(join(root, 'containers'));
  const [u] = await readDataRootUsage({ dataRoot: root });
  t.equal((await readDataRootUsage({ dataRoot: root })).length, 1);
  const d = df(root);
  t.same(u!.roles, ['data-root', 'logs']);
  t.equal(u!.path, root);
  t.equal(u!.totalBytes, d.size, 'size as df');
  t.ok(Math.abs(u!.usedBytes - d.used) < 256 * MiB, `used ≈ df (${u!.usedBytes} vs ${d.used}; others write meanwhile)`);
  t.ok(Math.abs(u!.availableBytes - d.avail) < 256 * MiB);
  t.ok(Math.abs(u!.usedPercent - d.pcent) <= 1, `Use% as df (${u!.usedPercent} vs ${d.pcent})`);
  t.equal(u!.aboveThreshold, u!.usedPercent >= 85);
  t.same(u!.topContainers, []);
  t.equal(dataRootFinding({ ...u!, aboveThreshold: false }), null, 'no finding below the threshold');
  const noLogs = await readDataRootUsage({ dataRoot: tmp(t) });
  t.same(noLogs.map((x) => x.roles), [['data-root']], 'no containers/ directory yet: the data root alone');
  await t.rejects(readDataRootUsage({ dataRoot: '/nonexistent/bk' }), { code: 'ENOENT' });
  await t.rejects(readDataRootUsage({ dataRoot: root, thresholdPercent: 0 }), { code: 'BK_ERR_CONFIG_INVALID' });
  await t.rejects(readDataRootUsage({ dataRoot: root, topN: -1 }), { code: 'BK_ERR_CONFIG_INVALID' });
});

t.test('history names the containers that grew it, over the window', async (t) => {
  const h = new DiskUsageHistory({ windowMs: 60_000, samplesPerWindow: 6 });
  // t=0: baseline. `quiet` is big but steady, `writer` grows its layer, `logger` its logs,
  // `fresh` was still being walked (null) at first.
  h.record(0, usages({ quiet: [500 * MiB, 1 * MiB], writer: [10 * MiB, 0], logger: [1 * MiB, 1 * MiB], fresh: [null, 0] }));
  for (let s = 5; s <= 90; s += 5) {
    h.record(s * 1000, usages({
      quiet: [500 * MiB, 1 * MiB], writer: [(10 + s) * MiB, 0], logger: [1 * MiB, (1 + 2 * s) * MiB], fresh: [300 * MiB, 0],
    }));
  }
  t.equal(h.containers, 4);
  const shares = h.shares(90_000, { writable: true, log: true });
  const by = Object.fromEntries(shares.map((s) => [s.id, s]));
  t.equal(by['quiet']!.grownBytes, 0);
  t.ok(Math.abs(by['writer']!.grownBytes - 60 * MiB) <= 15 * MiB, `writer grew ~60 MiB over the 60 s window (${by['writer']!.grownBytes / MiB})`);
  t.ok(Math.abs(by['logger']!.grownBytes - 120 * MiB) <= 30 * MiB, `logger grew ~120 MiB (${by['logger']!.grownBytes / MiB})`);
  t.equal(by['fresh']!.grownBytes, 0, 'a layer unknown at the baseline is not counted as growth');
  t.equal(by['fresh']!.bytes, 300 * MiB);
  const logsOnly = Object.fromEntries(h.shares(90_000, { writable: false, log: true }).map((s) => [s.id, s]));
  t.equal(logsOnly['writer']!.grownBytes, 0, 'the log filesystem does not count writable layers');
  t.equal(logsOnly['logger']!.bytes, 181 * MiB);

  const root = tmp(t);
  mkdirSync(join(root, 'containers'));
  const [u] = await readDataRootUsage({ dataRoot: root, history: h, now: 90_000, topN: 2, thresholdPercent: 1 });
  t.same(u!.topContainers.map((c) => c.id), ['logger', 'writer'], 'grew it most, top 2');
  t.same(u!.largestContainers.map((c) => c.id), ['quiet', 'fresh'], 'largest now, top 2');
  t.equal(u!.aboveThreshold, true, 'any used filesystem is above a 1 % threshold');
  const f = dataRootFinding(u!, { names: new Map([['logger', 'noisy-logger']]) })!;
  t.equal(f.id, 'disk.data-root-full');
  t.equal(f.severity, u!.usedPercent >= 95 ? 'critical' : 'high');
  t.equal(f.subject, root);
  t.match(f.detail, /Grew it most: noisy-logger \+\d+\.\d MiB, writer \+/);
  t.match(f.detail, /Largest: quiet 501\.0 MiB/);
  t.equal(f.fixable, false);
  t.same((f.evidence as { topContainers: unknown[] }).topContainers, u!.topContainers);

  h.forget('quiet');
  t.equal(h.containers, 3);
  t.throws(() => new DiskUsageHistory({ windowMs: 0 }), { code: 'BK_ERR_CONFIG_INVALID' });
  t.throws(() => new DiskUsageHistory({ samplesPerWindow: 0 }), { code: 'BK_ERR_CONFIG_INVALID' });
});

t.test('history memory stays bounded', async (t) => {
  const h = new DiskUsageHistory({ windowMs: 10_000, samplesPerWindow: 5 });
  for (let i = 0; i < 10_000; i++) h.record(i * 100, usages({ c: [i, i] }));
  const internal = (h as unknown as { samples: Map<string, unknown[]> }).samples.get('c')!;
  t.ok(internal.length <= 7, `at most samplesPerWindow + 2 readings kept (${internal.length})`);
  const [s] = h.shares(999_900, { writable: true, log: false });
  t.ok(s!.grownBytes >= 90 && s!.grownBytes <= 120, `growth over the last 10 s ≈ 100 (${s!.grownBytes})`);
});

t.test('logs on another filesystem: two reports, each with its own containers', { skip: existsSync('/dev/shm') ? false : 'no /dev/shm' }, async (t) => {
  const root = tmp(t);
  const logs = tmp(t, '/dev/shm');
  const h = new DiskUsageHistory({ windowMs: 1000 });
  h.record(0, usages({ a: [10 * MiB, 1 * MiB], b: [1 * MiB, 50 * MiB] }));
  h.record(2000, usages({ a: [90 * MiB, 1 * MiB], b: [1 * MiB, 70 * MiB] }));
  const out = await readDataRootUsage({ dataRoot: root, logDir: logs, history: h, now: 2000, thresholdPercent: 100 });
  t.same(out.map((u) => [u.path, u.roles]), [[root, ['data-root']], [logs, ['logs']]]);
  t.same(out[0]!.topContainers, [{ id: 'a', bytes: 90 * MiB, grownBytes: 80 * MiB }], 'the data root: writable layers');
  t.same(out[1]!.topContainers, [{ id: 'b', bytes: 70 * MiB, grownBytes: 20 * MiB }], 'the log filesystem: logs');
  t.equal(out[1]!.totalBytes, df(logs).size);
  const f = dataRootFinding({ ...out[1]!, aboveThreshold: true });
  t.equal(f!.id, 'disk.log-filesystem-full');
  t.match(f!.title, /container log filesystem/);
});

t.test('inodes: counted as df -i', async (t) => {
  const root = tmp(t);
  const [u] = await readDataRootUsage({ dataRoot: root });
  const line = execFileSync('df', ['--output=iused,itotal', root], { encoding: 'utf8' }).trim().split('\n')[1]!.trim().split(/\s+/).map(Number);
  t.equal(u!.totalInodes, line[1], 'total inodes as df -i');
  t.ok(Math.abs(u!.usedInodes! - line[0]!) < 100_000, `used inodes ≈ df -i (${u!.usedInodes} vs ${line[0]})`);
});

t.test('a filesystem out of inodes is above the threshold with bytes to spare', { skip: process.getuid?.() === 0 ? false : 'needs root to mount a tmpfs' }, async (t) => {
  // A real small filesystem: a tmpfs of 200 inodes.
  const mnt = tmp(t);
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'nr_inodes=200,size=64m', 'bk-inodes', mnt], { stdio: 'ignore' });
  t.teardown(() => execFileSync('umount', [mnt]));
  mkdirSync(join(mnt, 'containers'));
  for (let i = 0; i < 190; i++) writeFileSync(join(mnt, 'containers', `f${i}`), ''); // tiny files: no bytes to speak of
  const [full] = await readDataRootUsage({ dataRoot: mnt });
  t.equal(full!.totalInodes, 200);
  t.equal(full!.usedInodes, 192, 'root, containers/, 190 files');
  t.equal(full!.usedInodesPercent, 96);
  t.ok(full!.usedPercent < 85, `bytes nearly free (${full!.usedPercent} %)`);
  t.equal(full!.aboveThreshold, true, 'above the threshold on inodes alone');
  const f = dataRootFinding(full!)!;
  t.ok(f, 'a finding');
  t.equal(f.severity, 'critical', '96 % of inodes');
  t.match(f.title, /out of inodes: 96 % used/);
  t.match(f.detail, /inodes 192 used of 200 \(96 %\)/);
  t.equal((await readDataRootUsage({ dataRoot: mnt, thresholdPercent: 97 }))[0]!.aboveThreshold, false, 'below a higher threshold');
});
