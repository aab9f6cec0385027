import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DiskUsageHistory } from '../../src/resources/data-root-usage';
import { DataRootWatch, recordingDiskSource, withDataRootFindings } from '../../src/resources/data-root-watch';
import type { DiskUsage, DiskUsageSource } from '../../src/resources/types';

const quiet = () => {
  const lines: { obj: object; msg: string }[] = [];
  return { lines, warn: (obj: object, msg: string): void => void lines.push({ obj, msg }) };
};

t.test('a real filesystem above the threshold is a finding naming the container that grew it; below it, none', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'bk-dataroot-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const history = new DiskUsageHistory({ windowMs: 60_000 });
  const now = Date.now();
  history.record(now - 30_000, new Map<string, DiskUsage>([['a'.repeat(64), { writableBytes: 1 << 20, logBytes: 0 }], ['b'.repeat(64), { writableBytes: 5 << 20, logBytes: 0 }]]));
  history.record(now, new Map<string, DiskUsage>([['a'.repeat(64), { writableBytes: 200 << 20, logBytes: 1 << 20 }], ['b'.repeat(64), { writableBytes: 5 << 20, logBytes: 0 }]]));
  const log = quiet();
  const seen: string[] = [];
  // Any mounted filesystem is at least 1 % used: the real statfs of the temp dir's filesystem crosses it.
  const w = new DataRootWatch({
    dataRoot: async () => root, hostRoot: '/', history, thresholdPercent: 1,
    names: () => new Map([['a'.repeat(64), 'writer']]), onNewFinding: (f) => void seen.push(f.id), logger: log,
  });
  const f = await w.check();
  t.equal(f.length, 1);
  t.equal(f[0]!.id, 'disk.data-root-full');
  t.match(f[0]!.detail, /Grew it most: writer \+199\.0 MiB/, 'the container that grew it, by name, first');
  t.same(seen, ['disk.data-root-full'], 'a new finding is announced');
  t.equal(log.lines.length, 1, 'and logged once at warn');
  await w.check();
  t.same(seen, ['disk.data-root-full'], 'the same finding again is not new');
  t.same(w.findings.map((x) => x.id), ['disk.data-root-full']);
  const calm = new DataRootWatch({ dataRoot: async () => root, history, thresholdPercent: 100, logger: quiet() });
  // 100 % is reached only by a full filesystem: the temp dir's is not.
  t.same(await calm.check(), []);
});

t.test('an unknown or unreadable data root is no finding and is logged once', async (t) => {
  const log = quiet();
  let root: string | undefined;
  const w = new DataRootWatch({ dataRoot: async () => root, history: new DiskUsageHistory(), thresholdPercent: 1, logger: log });
  t.same(await w.check(), [], 'engine not answering yet');
  root = '/nonexistent/bulkhead-data-root';
  t.same(await w.check(), []);
  t.same(await w.check(), []);
  t.equal(log.lines.length, 1, 'said once');
  t.match(log.lines[0]!.msg, /could not be read/);
  const failing = new DataRootWatch({ dataRoot: async () => { throw new Error('engine down'); }, history: new DiskUsageHistory(), thresholdPercent: 1, logger: quiet() });
  t.same(await failing.check(), []);
});

t.test('start/stop and one look at a time', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'bk-dataroot-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  let asked = 0;
  const w = new DataRootWatch({ dataRoot: async () => { asked++; return root; }, history: new DiskUsageHistory(), thresholdPercent: 1, intervalMs: 30, logger: quiet() });
  const [a, b] = [w.check(), w.check()];
  t.equal(a, b, 'a look in progress is shared');
  await a;
  w.start();
  await new Promise((r) => setTimeout(r, 100));
  w.stop();
  const n = asked;
  t.ok(n >= 3, `looked on the interval (${n})`);
  await new Promise((r) => setTimeout(r, 80));
  t.equal(asked, n, 'no look after stop');
});

t.test('recordingDiskSource records every answer and forgets with the source', async (t) => {
  const forgot: string[] = [];
  const inner: DiskUsageSource = {
    read: async (targets) => new Map(targets.map((x) => [x.id, { writableBytes: 10, logBytes: 2 }])),
    forget: (id) => void forgot.push(id),
  };
  const history = new DiskUsageHistory();
  const src = recordingDiskSource(inner, history);
  const m = await src.read([{ id: 'c1', pid: 1 }, { id: 'c2', pid: 2 }], Date.now());
  t.equal(m.size, 2);
  t.equal(history.containers, 2);
  src.forget('c1');
  t.same(forgot, ['c1']);
  t.equal(history.containers, 1);
  src.close?.();
});

t.test('withDataRootFindings adds to the audit report, replacing an older finding of the same id', (t) => {
  const f = { id: 'disk.data-root-full', severity: 'high' as const, title: 'full', detail: 'd', remediation: 'r', fixable: false };
  const existing = JSON.stringify([{ id: 'docker-socket.mode', severity: 'high', title: 't', detail: 'd', remediation: 'r', fixable: true }, { ...f, title: 'old' }]);
  const out = JSON.parse(withDataRootFindings(existing, [f])) as { id: string; title: string }[];
  t.same(out.map((x) => [x.id, x.title]), [['docker-socket.mode', 't'], ['disk.data-root-full', 'full']]);
  t.equal(withDataRootFindings(existing, []), existing, 'nothing to add: unchanged');
  t.same(JSON.parse(withDataRootFindings(undefined, [f])).length, 1);
  t.same(JSON.parse(withDataRootFindings('not json', [f])).length, 1, 'a damaged list is replaced, not thrown on');
  t.end();
});
