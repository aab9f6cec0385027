import t from 'tap';
import { appendFileSync, readFileSync, statSync } from 'node:fs';
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
