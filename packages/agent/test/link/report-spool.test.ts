import t, { type Test } from 'tap';
import { appendFileSync, readFileSync, statSync, unlinkSync, writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLogger } from '@bulkhead/shared';
import { ReportSpool } from '../../src/link/report-spool';

const logger = createLogger({ name: 'test', level: 'silent' });
const rep = (id: string) => ({ id, ruleId: 'host.privileged', containerId: 'c' + id, message: 'm', atMs: 1 });

t.test('pending reports survive a restart; acknowledged ones do not', async (t) => {
  const path = join(t.testdir(), 'state', 'spool', 'violations.jsonl');
  const s1 = await ReportSpool.open({ path, logger });
  await s1.add(rep('a'));
  await s1.add(rep('b'));
  await s1.add(rep('c'));
  await s1.ack('b');
  await s1.ack('zzz'); // unknown ids are ignored
  await s1.flush();
  t.equal(statSync(path).mode & 0o777, 0o600, 'spool file is private');
  // Simulate a crash mid-append: a torn last line.
  appendFileSync(path, '+{"id":"d","rul');
  const s2 = await ReportSpool.open({ path, logger });
  t.same(s2.list().map((r) => r.id), ['a', 'c'], 'recovered exactly the unacknowledged reports');
  t.equal(readFileSync(path, 'utf8').trim().split('\n').length, 2, 'compacted on open');
});

t.test('bounded: oldest dropped beyond maxPending; file compacted as it grows', async (t) => {
  const path = join(t.testdir(), 'v.jsonl');
  const s = await ReportSpool.open({ path, logger, maxPending: 3, compactAfter: 4 });
  for (const id of ['1', '2', '3', '4', '5']) await s.add(rep(id));
  t.same(s.list().map((r) => r.id), ['3', '4', '5']);
  t.equal(s.droppedCount, 2);
  for (const id of ['3', '4']) await s.ack(id);
  await s.flush();
  t.ok(readFileSync(path, 'utf8').trim().split('\n').length <= 5, 'file does not grow without bound');
  const again = await ReportSpool.open({ path, logger });
  t.same(again.list().map((r) => r.id), ['5']);
  await t.rejects(async () => s.add({ ruleId: 'x' }), /without id/);
});

t.test('a full disk: a torn append is not glued to the next report, and nothing pending is lost once space is back', { skip: process.getuid?.() !== 0 ? 'needs root to mount a small tmpfs' : false }, async (t) => {
  const dir = smallTmpfs(t);
  const path = join(dir, 'spool', 'violations.jsonl');
  const s = await ReportSpool.open({ path, logger });
  const big = (id: string) => ({ ...rep(id), message: 'x'.repeat(3000) });
  // Fill the file system but a few bytes, so the next appends are torn or refused.
  const filler = join(dir, 'filler');
  try {
    writeFileSync(filler, Buffer.alloc(1 << 20));
  } catch {
    /* ENOSPC: as much as fitted was written */
  }
  await s.add(big('torn-1'));
  await s.add(big('torn-2'));
  t.ok(readFileSync(path, 'utf8').length < 2 * 3000, 'the appends did not fit');
  t.same(s.list().map((r) => r.id), ['torn-1', 'torn-2'], 'kept in memory meanwhile');
  unlinkSync(filler);
  await s.add(big('after'));
  await s.ack('torn-2');
  await s.flush();
  const again = await ReportSpool.open({ path, logger });
  t.same(again.list().map((r) => r.id), ['torn-1', 'after'], 'every unacknowledged report survives, including the ones first refused');
});

t.test('a spool that cannot be rewritten at open still opens with what it holds', { skip: process.getuid?.() !== 0 ? 'needs root to mount a small tmpfs' : false }, async (t) => {
  const dir = smallTmpfs(t);
  const path = join(dir, 'violations.jsonl');
  const s1 = await ReportSpool.open({ path, logger });
  for (const id of ['1', '2', '3']) await s1.add({ ...rep(id), message: 'y'.repeat(5000) });
  await s1.flush();
  try {
    writeFileSync(join(dir, 'filler'), Buffer.alloc(1 << 20));
  } catch {
    /* full */
  }
  const s2 = await ReportSpool.open({ path, logger }); // compaction needs a second copy's room: it fails
  t.same(s2.list().map((r) => r.id), ['1', '2', '3']);
  t.equal(readFileSync(path, 'utf8').trim().split('\n').length, 3, 'the file is left as it was');
});

/** A 64 KiB tmpfs for the test, unmounted and removed at its end. */
function smallTmpfs(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'bk-full-'));
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', dir]);
  t.teardown(() => {
    execFileSync('umount', ['-l', dir]);
    rmSync(dir, { recursive: true, force: true });
  });
  return dir;
}
