// UsageSampler with a scripted reader and clock: rates, percentages of
// quota/limit, unlimited containers, the window, runtime rules (breach after
// T seconds, recovery, scoping), the detail cadence, errors, the timer; and
// the report filter that turns ticks into deltas for the controller.
import t from 'tap';
import { CgroupNotFoundError, type CgroupUsage, type ReadDetail } from '../../src/cgroup/cgroup-reader';
import { UsageSampler, type Breach, type Recovery, type UsageSample } from '../../src/cgroup/usage-sampler';
import { resolveUsageSamplerOptions, type SampledContainer, type UsageReader } from '../../src/cgroup/usage-sampler-options';
import { toUsageReportMessage, UsageReportFilter } from '../../src/cgroup/usage-report';
import { toUsageFacts } from '../../src/cgroup/usage-monitor';
import type { UsagePoint, UsageSeries } from '@bulkhead/shared';
import type { DiskUsage, DiskUsageSource, NetUsage, NetUsageSource, ResourceTarget } from '../../src/resources/types';

const MiB = 1024 * 1024;

interface Script {
  cpuNs: number;
  mem: number;
  pids: number;
  memLimit?: number;
  pidsLimit?: number;
  cpuLimit?: number;
  fail?: Error;
}

/** A reader whose values the test sets; records the detail asked for. */
class FakeReader implements UsageReader {
  readonly state = new Map<string, Script>();
  readonly details: Array<[string, ReadDetail | undefined]> = [];
  readonly forgotten: string[] = [];
  constructor(private readonly clock: { now: number }) {}
  async read(id: string, _pid?: number, detail?: ReadDetail): Promise<CgroupUsage> {
    this.details.push([id, detail]);
    const s = this.state.get(id);
    if (!s) throw new CgroupNotFoundError(id);
    if (s.fail) throw s.fail;
    return {
      containerId: id, at: this.clock.now, cpuUsageNs: s.cpuNs, memoryBytes: s.mem, memoryUsageBytes: s.mem + MiB, memoryLimitBytes: s.memLimit ?? 0,
      pids: s.pids, pidsLimit: s.pidsLimit ?? 0, cpuLimitCores: s.cpuLimit ?? 0,
    };
  }
  forget(id: string): void {
    this.forgotten.push(id);
  }
}

function setup(containers: SampledContainer[], opts: Partial<ConstructorParameters<typeof UsageSampler>[0]> = {}) {
  const clock = { now: 1_000_000 };
  const reader = new FakeReader(clock);
  const list = [...containers];
  const s = new UsageSampler({ reader, containers: () => list, now: () => clock.now, interval: 5000, ...opts });
  const breaches: Breach[] = [];
  const recoveries: Recovery[] = [];
  s.on('breach', (b) => breaches.push(b));
  s.on('recovered', (r) => recoveries.push(r));
  /** Advance the clock, add CPU time (as cores × seconds), tick. */
  const step = async (seconds: number, cores: Record<string, number> = {}): Promise<UsageSample[]> => {
    clock.now += seconds * 1000;
    for (const [id, c] of Object.entries(cores)) reader.state.get(id)!.cpuNs += c * seconds * 1e9;
    return s.tick();
  };
  return { s, clock, reader, list, breaches, recoveries, step };
}

t.test('CPU % of quota, memory % of limit, pids; unlimited containers report null and unlimited flags', async (t) => {
  const { s, reader, step } = setup([
    { id: 'a', name: '/burner', state: 'running' },
    { id: 'b', name: '', state: 'running', nanoCpus: 500_000_000, memoryLimitBytes: 100 * MiB, pidsLimit: 10 },
    { id: 'c', state: 'exited' },
  ]);
  reader.state.set('a', { cpuNs: 0, mem: 50 * MiB, pids: 3, memLimit: 200 * MiB, cpuLimit: 0.2, pidsLimit: 50 });
  reader.state.set('b', { cpuNs: 0, mem: 10 * MiB, pids: 1 });
  const first = await step(0);
  t.equal(first.length, 2, 'only running containers are read');
  t.equal(first[0]!.cpuCores, null, 'no rate on the first sample');
  t.equal(first[0]!.cpuPercentOfQuota, null);
  t.equal(first[0]!.name, 'burner');
  t.equal(first[1]!.name, 'b', 'short id when unnamed');
  const [a, b] = await step(5, { a: 0.19, b: 0.25 });
  t.equal(a!.cpuCores, 0.19);
  t.equal(a!.cpuPercentOfQuota, 95);
  t.equal(a!.memoryPercentOfLimit, 25);
  t.equal(a!.pidsPercentOfLimit, 6);
  t.same(a!.unlimited, { cpu: false, memory: false, pids: false });
  t.equal(b!.cpuLimitCores, 0.5, 'from the facts when the cgroup reports none');
  t.equal(b!.cpuPercentOfQuota, 50);
  t.equal(b!.memoryPercentOfLimit, 10);
  t.same(b!.unlimited, { cpu: false, memory: false, pids: false });
  reader.state.set('d', { cpuNs: 0, mem: MiB, pids: 1 });
  const u = setup([{ id: 'd' }]);
  u.reader.state.set('d', { cpuNs: 0, mem: MiB, pids: 1 });
  await u.step(0);
  const [d] = await u.step(5, { d: 1.5 });
  t.same([d!.cpuCores, d!.cpuPercentOfQuota, d!.memoryPercentOfLimit, d!.pidsPercentOfLimit], [1.5, null, null, null]);
  t.same(d!.unlimited, { cpu: true, memory: true, pids: true }, 'a container without limits is reported as unlimited');
  t.equal(s.latest().size, 2);
});

t.test('CPU rule: breach only after the condition held for forSeconds, once; recovery; re-arm', async (t) => {
  const { reader, step, breaches, recoveries } = setup([{ id: 'a', name: 'hog' }], {
    rules: [{ id: 'runtime.cpu', metric: 'cpu', abovePercent: 80, forSeconds: 10 }],
  });
  reader.state.set('a', { cpuNs: 0, mem: 0, pids: 1, cpuLimit: 0.2 });
  await step(0);
  await step(5, { a: 0.19 }); // above since t=0 (the interval start)
  t.equal(breaches.length, 0, '5 s above');
  await step(5, { a: 0.19 });
  t.equal(breaches.length, 1, '10 s above → breach');
  const b = breaches[0]!;
  t.same([b.ruleId, b.metric, b.containerId, b.name, b.value, b.threshold, b.unit, b.forSeconds], ['runtime.cpu', 'cpu', 'a', 'hog', 95, 80, 'percent-of-quota', 10]);
  t.equal(b.at - b.sinceMs, 10_000);
  await step(5, { a: 0.2 });
  t.equal(breaches.length, 1, 'reported once while it lasts');
  await step(5, { a: 0.05 });
  t.equal(recoveries.length, 1);
  t.equal(recoveries[0]!.breachedAt, b.at);
  await step(5, { a: 0.19 });
  await step(5, { a: 0.19 });
  t.equal(breaches.length, 2, 're-armed after recovery');
  await step(5, { a: 0.05 });
  await step(5, { a: 0.19 });
  await step(5, { a: 0.05 });
  t.equal(breaches.length, 2, 'a spike shorter than forSeconds is not a breach');
});

t.test('memory and pids rules, forSeconds 0, scoping with appliesTo', async (t) => {
  const { reader, step, breaches } = setup([{ id: 'a', labels: { team: 'x' } }, { id: 'b', labels: {} }], {
    rules: [
      { id: 'mem', metric: 'memory', abovePercent: 90 },
      { id: 'pids-count', metric: 'pids', above: 50, appliesTo: (c) => c.labels?.['team'] === 'x' },
      { id: 'pids-pct', metric: 'pids', abovePercent: 80 },
    ],
  });
  reader.state.set('a', { cpuNs: 0, mem: 95 * MiB, pids: 60, memLimit: 100 * MiB, pidsLimit: 1000 });
  reader.state.set('b', { cpuNs: 0, mem: 95 * MiB, pids: 90, pidsLimit: 100 });
  await step(0);
  t.same(breaches.map((b) => `${b.ruleId}:${b.containerId}:${b.value}:${b.unit}`).sort(), [
    'mem:a:95:percent-of-limit', 'pids-count:a:60:count', 'pids-pct:b:90:percent-of-limit',
  ], 'b has no memory limit; the count rule is scoped to team x');
});

t.test('detail cadence: memory.stat and pids every N ticks, or when a rule needs them', async (t) => {
  const { reader, step } = setup([{ id: 'a' }, { id: 'b' }], {
    detailEveryTicks: 3,
    rules: [{ id: 'mem', metric: 'memory', abovePercent: 90, appliesTo: (c) => c.id === 'a' }, { id: 'p', metric: 'pids', above: 5, appliesTo: (c) => c.id === 'b' }],
  });
  reader.state.set('a', { cpuNs: 0, mem: 10 * MiB, pids: 1, memLimit: 100 * MiB });
  reader.state.set('b', { cpuNs: 0, mem: 10 * MiB, pids: 1 });
  for (let i = 0; i < 4; i++) await step(5);
  const of = (id: string) => reader.details.filter(([x]) => x === id).map(([, d]) => `${d?.memoryStat ? 'M' : '-'}${d?.pids ? 'P' : '-'}`);
  t.same(of('a'), ['MP', '--', '--', 'MP'], 'far below the memory threshold: only every 3rd tick');
  t.same(of('b'), ['MP', '-P', '-P', 'MP'], 'a pids rule watches it: pids every tick');
  reader.state.get('a')!.mem = 88 * MiB; // raw usage (mem + 1 MiB) is 89 % ≥ 0.9 × 90 %
  await step(5);
  await step(5);
  t.same(of('a').slice(-1), ['M-'], 'near the threshold: memory.stat every tick');
});

t.test('window ring, removal of gone containers, errors', async (t) => {
  const { s, reader, list, step } = setup([{ id: 'a' }, { id: 'b' }, { id: 'gone' }], { windowSize: 3 });
  reader.state.set('a', { cpuNs: 0, mem: 1, pids: 1, cpuLimit: 1 });
  reader.state.set('b', { cpuNs: 0, mem: 1, pids: 1, fail: Object.assign(new Error('EACCES'), { code: 'EACCES' }) });
  const errors: Array<[string, string]> = [];
  s.on('sampleError', (id, e) => errors.push([id, e.message]));
  const ticks: Array<{ containers: number; errors: number }> = [];
  s.on('tick', (_samples, info) => ticks.push({ containers: info.containers, errors: info.errors }));
  for (let i = 1; i <= 5; i++) await step(1, { a: 0.5 });
  const w = s.window('a');
  t.equal(w.length, 3, 'bounded');
  t.same(w.map((p) => p.at), [1_003_000, 1_004_000, 1_005_000], 'oldest first');
  t.same(w.map((p) => p.cpuCores), [0.5, 0.5, 0.5]);
  t.same(w[0]!.memoryPercentOfLimit, null);
  t.same(s.window('nope'), []);
  t.same(errors[0], ['b', 'EACCES'], 'a read error other than "gone" is reported');
  t.equal(errors.length, 5);
  t.same(ticks.at(-1), { containers: 3, errors: 1 }, '"gone" (no cgroup) is not an error');
  list.splice(0, 1);
  await step(1);
  t.same(s.window('a'), [], 'a container no longer listed is forgotten');
  t.ok(reader.forgotten.includes('a'));
  t.notOk(s.latest().has('a'));
});

t.test('series(): the window read in place, point for point what toUsageFacts(window()) holds', async (t) => {
  const { s, reader, step } = setup([{ id: 'a' }], { windowSize: 4 });
  reader.state.set('a', { cpuNs: 0, mem: 10 * MiB, pids: 3, memLimit: 100 * MiB, pidsLimit: 50, cpuLimit: 0.5 });
  t.equal(s.series('a'), undefined, 'not tracked yet');
  const copy = () => toUsageFacts(s.window('a')).points;
  const read = (series: UsageSeries) => Array.from({ length: series.length }, (_, i) => ({ ...pick(series.at(i)!) }));
  for (let i = 1; i <= 6; i++) {
    reader.state.get('a')!.mem += MiB;
    await step(1, { a: 0.25 * i });
    const series = s.series('a')!;
    t.equal(series.length, Math.min(i, 4), `length after ${i} ticks`);
    t.same(read(series), copy(), `same points after ${i} ticks (the ring wrapped: ${i > 4})`);
  }
  const series = s.series('a')!;
  t.equal(series.at(-1)!.at, copy().at(-1)!.at, 'negative index from the end, as an array');
  t.equal(series.at(4), undefined, 'past the end');
  t.equal(series.at(0)!.cpuPercent, copy()[0]!.cpuPercent);
  s.resize(2);
  await step(1);
  t.same(read(s.series('a')!), copy(), 'after a resize');
  t.equal(s.series('a')!.length, 2);
});

/** A point's usage fields as a plain object (the series' points are getters). */
function pick(p: UsagePoint): UsagePoint {
  return {
    at: p.at, cpuPercent: p.cpuPercent, cpuLimitCores: p.cpuLimitCores, memoryBytes: p.memoryBytes, memoryLimitBytes: p.memoryLimitBytes, pids: p.pids,
    pidsLimit: p.pidsLimit, writableBytes: p.writableBytes, logBytes: p.logBytes, netRxBytesPerSec: p.netRxBytesPerSec, netTxBytesPerSec: p.netTxBytesPerSec,
    netRxPacketsPerSec: p.netRxPacketsPerSec, netTxPacketsPerSec: p.netTxPacketsPerSec, tcpConnections: p.tcpConnections, sockets: p.sockets,
  };
}

t.test('a reader with readSync: used where it answers, read() where not; same samples in the same order', async (t) => {
  const clock = { now: 1_000_000 };
  const plain = new FakeReader(clock);
  const base = new FakeReader(clock);
  const syncing = Object.assign(base, {
    calls: 0,
    readSync(id: string, _pid?: number, detail?: ReadDetail): CgroupUsage | undefined {
      syncing.calls++;
      // Answers for every other container, from the same script, synchronously.
      if (id.charCodeAt(0) % 2 === 0) return undefined;
      base.details.push([id, detail]);
      const st = plain.state.get(id)!;
      return { containerId: id, at: clock.now, cpuUsageNs: st.cpuNs, memoryBytes: st.mem, memoryUsageBytes: st.mem + MiB, memoryLimitBytes: 0, pids: st.pids, pidsLimit: 0, cpuLimitCores: 0 };
    },
  });
  const ids = ['a', 'b', 'c', 'd', 'e'];
  for (const id of ids) plain.state.set(id, { cpuNs: 0, mem: id.charCodeAt(0), pids: 1 });
  for (const [id, script] of plain.state) syncing.state.set(id, script); // one script for both readers
  const list = ids.map((id) => ({ id }));
  const a = new UsageSampler({ reader: plain, containers: () => list, now: () => clock.now, interval: 5000, concurrency: 2 });
  const b = new UsageSampler({ reader: syncing, containers: () => list, now: () => clock.now, interval: 5000, concurrency: 2 });
  for (let i = 0; i < 3; i++) {
    clock.now += 5000;
    for (const id of ids) plain.state.get(id)!.cpuNs += 1e9;
    const [x, y] = [await a.tick(), await b.tick()];
    t.same(y, x, `tick ${i}: same samples, same order`);
  }
  t.equal(syncing.calls, 15, 'readSync tried for every container');
  t.same(syncing.details.map(([id]) => id).sort(), plain.details.map(([id]) => id).sort(), 'one read per container and tick either way');
});

t.test('concurrent tick() calls share one pass', async (t) => {
  const { s, reader } = setup([{ id: 'a' }]);
  reader.state.set('a', { cpuNs: 0, mem: 1, pids: 1 });
  const [x, y] = await Promise.all([s.tick(), s.tick()]);
  t.equal(x, y);
  t.equal(reader.details.length, 1);
});

t.test('timer: first tick right away, then every interval; a throwing inventory does not stop it; stop()', async (t) => {
  const clock = { now: 0 };
  const reader = new FakeReader(clock);
  reader.state.set('a', { cpuNs: 0, mem: 1, pids: 1 });
  let calls = 0;
  const s = UsageSampler.start({
    reader, interval: 100,
    containers: () => {
      calls++;
      if (calls === 2) throw new Error('inventory broke');
      return [{ id: 'a' }];
    },
  });
  const errs: string[] = [];
  s.on('sampleError', (id, e) => errs.push(`${id}|${e.message}`));
  t.equal(s.intervalMs, 100);
  await new Promise((r) => setTimeout(r, 450));
  s.start(); // no-op while running
  await s.stop();
  const n = calls;
  t.ok(n >= 3 && n <= 6, `ticked ${n} times in 450 ms`);
  t.same(errs, ['|inventory broke']);
  await new Promise((r) => setTimeout(r, 250));
  t.equal(calls, n, 'stopped');
});

t.test('options: defaults and start-up validation', async (t) => {
  const reader = new FakeReader({ now: 0 });
  const d = resolveUsageSamplerOptions({ reader, containers: () => [] });
  t.same([d.intervalMs, d.windowSize, d.concurrency, d.detailEveryTicks, d.rules], [5000, 12, 32, 6, []]);
  t.equal(resolveUsageSamplerOptions({ reader, containers: () => [], interval: '2s' }).intervalMs, 2000);
  const bad: Array<[Record<string, unknown>, RegExp]> = [
    [{ interval: 50 }, /at least 100 ms/],
    [{ interval: 'soon' }, /not a duration/],
    [{ windowSize: 1 }, /windowSize/],
    [{ concurrency: 0 }, /concurrency/],
    [{ detailEveryTicks: 0 }, /detailEveryTicks/],
    [{ rules: [{ id: '', metric: 'cpu', abovePercent: 1 }] }, /needs an id/],
    [{ rules: [{ id: 'x', metric: 'cpu', abovePercent: 1 }, { id: 'x', metric: 'memory', abovePercent: 1 }] }, /duplicate rule id "x"/],
    [{ rules: [{ id: 'x', metric: 'cpu', abovePercent: 0 }] }, /abovePercent must be > 0/],
    [{ rules: [{ id: 'x', metric: 'cpu', abovePercent: 5, forSeconds: -1 }] }, /forSeconds/],
    [{ rules: [{ id: 'x', metric: 'pids' }] }, /give above and\/or abovePercent/],
    [{ rules: [{ id: 'x', metric: 'pids', above: -1 }] }, /above must be ≥ 0/],
    [{ rules: [{ id: 'x', metric: 'pids', abovePercent: 0 }] }, /abovePercent must be > 0/],
    [{ rules: [{ id: 'x', metric: 'disk', abovePercent: 5 }] }, /unknown metric "disk"/],
  ];
  for (const [o, re] of bad) t.throws(() => resolveUsageSamplerOptions({ reader, containers: () => [], ...o } as never), re, JSON.stringify(o));
});

t.test('report filter: first sample, noticeable changes, heartbeat, limits, removals', async (t) => {
  const f = new UsageReportFilter({ heartbeatMs: 60_000 });
  const sample = (id: string, at: number, over: Partial<UsageSample> = {}): UsageSample => ({
    containerId: id, name: id, at, cpuUsageNs: 0, cpuCores: 0.1, cpuPercentOfQuota: 50, cpuLimitCores: 0.2, memoryBytes: 100 * MiB, memoryUsageBytes: 100 * MiB,
    memoryLimitBytes: 200 * MiB, memoryPercentOfLimit: 50, pids: 5, pidsLimit: 10, pidsPercentOfLimit: 50, unlimited: { cpu: false, memory: false, pids: false }, ...over,
  });
  t.same(f.next([sample('a', 0), sample('b', 0)]).updates.map((u) => u.containerId), ['a', 'b'], 'first time: everything');
  t.same(f.next([sample('a', 5000, { cpuCores: 0.12 }), sample('b', 5000, { memoryBytes: 100 * MiB + 4096 })]).updates, [], 'small moves are not sent');
  const d = f.next([sample('a', 10_000, { cpuCores: 0.2 }), sample('b', 10_000, { memoryBytes: 110 * MiB })]);
  t.same(d.updates.map((u) => u.containerId), ['a', 'b'], '+10 points CPU; +10 % memory');
  t.equal(d.updates[0]!.cpuCores, 0.2);
  t.same(f.next([sample('a', 15_000, { cpuCores: 0.2, pidsLimit: 20 }), sample('b', 15_000, { memoryBytes: 110 * MiB, pids: 11 })]).updates.map((u) => u.containerId), ['a', 'b'], 'a limit changed; pids +6');
  const e = f.next([sample('a', 20_000, { cpuCores: null, pidsLimit: 20 })]);
  t.same(e.updates.map((u) => u.containerId), ['a'], 'the rate became unknown');
  t.same(e.removed, ['b'], 'b was not in this tick');
  const same = { cpuCores: null, pidsLimit: 20 };
  t.same(f.next([sample('a', 79_999, same)]).updates, [], 'nothing changed, heartbeat not due');
  t.equal(f.next([sample('a', 80_000, same)]).updates.length, 1, 'heartbeat');
  f.reset();
  t.equal(f.next([sample('a', 80_001, same)]).updates.length, 1, 'after a reset everything is sent again');
  const g = new UsageReportFilter();
  g.next([sample('x', 0)]);
  const msg = toUsageReportMessage(g.next([sample('y', 5000, { cpuCores: 0.1234, cpuPercentOfQuota: null, memoryLimitBytes: 0, pidsLimit: 0 })]), 5000);
  t.same(msg, {
    takenAtMs: 5000,
    containers: [{ containerId: 'y', cpuPercent: 12.3, cpuPercentOfQuota: 0, memoryBytes: 100 * MiB, memoryLimitBytes: 0, pids: 5, pidsLimit: 0, cpuLimitCores: 0.2, takenAtMs: 5000 }],
    gone: ['x'],
  }, 'the wire shape: CPU % of one core, 0 = unlimited / unknown');
  t.equal(toUsageReportMessage({ updates: [{ ...g.next([]).updates[0]!, containerId: 'z', cpuCores: null } as never], removed: [] }, 1).containers![0]!.cpuPercent, 0);
});

// ---------------------------------------------------------------- beyond the cgroup: disk, network, block IO

/** Disk and network sources the test scripts; they record what they were asked. */
class FakeDisk implements DiskUsageSource {
  readonly calls: ResourceTarget[][] = [];
  readonly forgotten: string[] = [];
  readonly sizes = new Map<string, DiskUsage>();
  fail: Error | undefined;
  async read(targets: readonly ResourceTarget[]): Promise<Map<string, DiskUsage>> {
    this.calls.push([...targets]);
    if (this.fail) throw this.fail;
    return new Map([...this.sizes].filter(([id]) => targets.some((x) => x.id === id)));
  }
  forget(id: string): void {
    this.forgotten.push(id);
  }
}

class FakeNet implements NetUsageSource {
  readonly counters = new Map<string, NetUsage | null>();
  readonly asked: ResourceTarget[] = [];
  readonly forgotten: string[] = [];
  async read(target: ResourceTarget): Promise<NetUsage | null> {
    this.asked.push(target);
    const c = this.counters.get(target.id);
    if (c === undefined) throw new Error(`net: no such ${target.id}`);
    return c;
  }
  forget(id: string): void {
    this.forgotten.push(id);
  }
}

const netOf = (rxBytes: number, txBytes: number, tcpConnections = 0, extra: Partial<NetUsage> = {}): NetUsage => ({
  rxBytes, txBytes, rxPackets: rxBytes / 100, txPackets: txBytes / 100, rxDropped: 0, txDropped: 0, tcpConnections, sockets: tcpConnections + 1, ...extra,
});

t.test('disk once per tick for all, network per container, rates from consecutive samples, into the window', async (t) => {
  const disk = new FakeDisk();
  const net = new FakeNet();
  const { s, reader, list, step } = setup([
    { id: 'a', pid: 100, state: 'running', graphDriver: 'overlay2', upperDir: '/var/lib/docker/overlay2/x/diff', logPath: '/var/lib/docker/containers/a/a-json.log', logDriver: 'json-file' },
    { id: 'h', pid: 200, state: 'running' },
    { id: 'z', pid: 0, state: 'running' },
  ], { disk, net });
  for (const id of ['a', 'h', 'z']) reader.state.set(id, { cpuNs: 0, mem: MiB, pids: 1 });
  disk.sizes.set('a', { writableBytes: 10 * MiB, logBytes: MiB });
  disk.sizes.set('h', { writableBytes: null, logBytes: null });
  net.counters.set('a', netOf(1000, 500, 3));
  net.counters.set('h', null); // --network host
  const [a0, h0, z0] = await step(0);
  t.equal(disk.calls.length, 1, 'the disk source is asked once per tick');
  t.same(disk.calls[0]!.map((x) => x.id), ['a', 'h', 'z'], '…for every running container');
  t.same(disk.calls[0]![0], { id: 'a', pid: 100, graphDriver: 'overlay2', upperDir: '/var/lib/docker/overlay2/x/diff', logPath: '/var/lib/docker/containers/a/a-json.log', logDriver: 'json-file' }, 'with where its disk lives');
  t.same(net.asked.map((x) => x.id), ['a', 'h'], 'network per container, not for one without a pid');
  t.match(a0, { writableBytes: 10 * MiB, logBytes: MiB, netRxBytes: 1000, netTxBytes: 500, tcpConnections: 3, sockets: 4, netRxBytesPerSec: null, netTxBytesPerSec: null });
  t.match(h0, { writableBytes: null, logBytes: null, netRxBytes: null, tcpConnections: null, netRxBytesPerSec: null }, 'not measurable: null');
  t.match(z0, { writableBytes: null, netRxBytes: null }, 'no pid, no disk answer: null');

  disk.sizes.set('a', { writableBytes: 210 * MiB, logBytes: 2 * MiB });
  net.counters.set('a', netOf(1000 + 5 * 2000, 500 + 5 * 1000, 2001, { rxDropped: 7 }));
  const [a1] = await step(5);
  t.match(a1, { writableBytes: 210 * MiB, logBytes: 2 * MiB, netRxBytesPerSec: 2000, netTxBytesPerSec: 1000, netRxPacketsPerSec: 20, netTxPacketsPerSec: 10, netRxDropped: 7, tcpConnections: 2001 }, 'bytes/s and packets/s since the sample before');
  const w = s.window('a');
  t.equal(w.length, 2);
  t.match(w[1], { writableBytes: 210 * MiB, logBytes: 2 * MiB, netRxBytesPerSec: 2000, netTxBytesPerSec: 1000, netRxPacketsPerSec: 20, netTxPacketsPerSec: 10, tcpConnections: 2001, sockets: 2002 }, 'the window keeps what rules judge');
  t.match(w[0], { netRxBytesPerSec: null, writableBytes: 10 * MiB }, 'null stays null in the ring');

  // A counter going back (the namespace was re-created): no rate, not a negative one.
  net.counters.set('a', netOf(10, 10, 0));
  const [a2] = await step(5);
  t.equal(a2!.netRxBytesPerSec, null, 'counter reset: no rate');

  // Failures never fail the sample.
  disk.fail = new Error('disk boom');
  net.counters.delete('a');
  const errors: Array<[string, string]> = [];
  s.on('sampleError', (id, e) => errors.push([id, e.message]));
  const [a3] = await step(5);
  t.ok(a3, 'still sampled');
  t.match(a3, { writableBytes: null, netRxBytes: null, tcpConnections: null });
  t.same(errors.map((e) => e[1]).sort(), ['disk boom', 'net: no such a'], 'both failures reported');

  // Gone: each source forgets.
  list.splice(0, 1);
  disk.fail = undefined;
  await step(5);
  t.ok(disk.forgotten.includes('a') && net.forgotten.includes('a'), 'the disk and network sources forget a container that is gone');
});

t.test('resourceEveryTicks: disk and network every N ticks, last values in between, rates over the real span', async (t) => {
  const disk = new FakeDisk();
  const net = new FakeNet();
  const { reader, step } = setup([{ id: 'a', pid: 100, state: 'running' }, { id: 'b', pid: 101, state: 'running' }], { disk, net, resourceEveryTicks: 3 });
  for (const id of ['a', 'b']) {
    reader.state.set(id, { cpuNs: 0, mem: MiB, pids: 1 });
    disk.sizes.set(id, { writableBytes: MiB, logBytes: 0 });
    net.counters.set(id, netOf(0, 0, 1));
  }
  await step(0);
  t.equal(net.asked.length, 2, 'tick 1: both read');
  disk.sizes.set('a', { writableBytes: 2 * MiB, logBytes: 0 });
  net.counters.set('a', netOf(30_000, 0, 5));
  const [a2] = await step(5);
  t.equal(net.asked.length, 2, 'tick 2: network not read');
  t.equal(disk.calls.length, 1, 'tick 2: disk not asked at all (nobody due)');
  t.match(a2, { writableBytes: MiB, netRxBytes: 0, tcpConnections: 1 }, 'the last values stand');
  await step(5);
  const [a4] = await step(5);
  t.equal(net.asked.length, 4, 'tick 4: read again');
  t.equal(disk.calls.length, 2);
  t.match(a4, { writableBytes: 2 * MiB, netRxBytes: 30_000, tcpConnections: 5, netRxBytesPerSec: 2000 }, 'rate over the 15 s since the last network reading, not the 5 s since the last sample');
  t.throws(() => new UsageSampler({ reader, containers: () => [], resourceEveryTicks: 0 }), { code: 'BK_ERR_CONFIG_INVALID' });
});

t.test('block IO at the detail cadence, carried in between; only when asked', async (t) => {
  class BlkioReader extends FakeReader {
    override async read(id: string, pid?: number, detail?: ReadDetail): Promise<CgroupUsage> {
      const u = await super.read(id, pid, detail);
      const d = detail as (ReadDetail & { blkio?: boolean }) | undefined;
      return d?.blkio ? Object.assign(u, { blkio: { readBytes: this.details.length * 100, writeBytes: 2 * MiB, readOps: 3, writeOps: 4 } }) : u;
    }
  }
  const clock = { now: 1_000_000 };
  const reader = new BlkioReader(clock);
  reader.state.set('a', { cpuNs: 0, mem: MiB, pids: 1 });
  const s = new UsageSampler({ reader, containers: () => [{ id: 'a', state: 'running' }], now: () => clock.now, interval: 5000, detailEveryTicks: 3, blkio: true });
  const got: UsageSample[] = [];
  for (let i = 0; i < 4; i++) {
    got.push((await s.tick())[0]!);
    clock.now += 5000;
  }
  t.same(reader.details.map(([, d]) => (d as { blkio?: boolean }).blkio === true), [true, false, false, true], 'asked for block IO with the full detail only');
  t.same(got.map((g) => g.blkioReadBytes), [100, 100, 100, 400], 'the last values carried in between');
  t.match(got[0], { blkioWriteBytes: 2 * MiB, blkioReadOps: 3, blkioWriteOps: 4 });
  const off = new UsageSampler({ reader, containers: () => [{ id: 'a', state: 'running' }], now: () => clock.now, interval: 5000 });
  reader.details.length = 0;
  const [o] = await off.tick();
  t.notOk((reader.details[0]![1] as { blkio?: boolean }).blkio, 'blkio off: never asked');
  t.equal(o!.blkioReadBytes, null);
});

t.test('report filter: disk, network and connections deltas; the wire carries only what was measured', async (t) => {
  const f = new UsageReportFilter();
  const base = (at: number, o: Partial<UsageSample>): UsageSample => ({
    containerId: 'a', at, cpuUsageNs: 0, memoryBytes: 10 * MiB, memoryUsageBytes: 10 * MiB, memoryLimitBytes: 0, pids: 1, pidsLimit: 0, cpuLimitCores: 0,
    name: 'a', cpuCores: 0, cpuPercentOfQuota: null, memoryPercentOfLimit: null, pidsPercentOfLimit: null, unlimited: { cpu: true, memory: true, pids: true },
    writableBytes: 100 * MiB, logBytes: MiB, netRxBytesPerSec: 1000, netTxBytesPerSec: 1000, tcpConnections: 5, sockets: 6, ...o,
  });
  t.equal(f.next([base(0, {})]).updates.length, 1, 'first: sent');
  t.equal(f.next([base(5000, { writableBytes: 100.5 * MiB, tcpConnections: 9, netRxBytesPerSec: 30_000 })]).updates.length, 0, 'small moves: not sent');
  t.equal(f.next([base(10_000, { writableBytes: 200 * MiB })]).updates.length, 1, 'writable layer doubled: sent');
  t.equal(f.next([base(15_000, { writableBytes: 200 * MiB, logBytes: 50 * MiB })]).updates.length, 1, 'logs grew: sent');
  t.equal(f.next([base(20_000, { writableBytes: 200 * MiB, logBytes: 50 * MiB, tcpConnections: 2000 })]).updates.length, 1, 'connections jumped: sent');
  const d = f.next([base(25_000, { writableBytes: 200 * MiB, logBytes: 50 * MiB, tcpConnections: 2000, netRxBytesPerSec: 10 * MiB })]);
  t.equal(d.updates.length, 1, 'network rate jumped: sent');
  const msg = toUsageReportMessage(d, 25_000).containers![0]!;
  t.match(msg, { writableBytes: 200 * MiB, logBytes: 50 * MiB, netRxBytesPerSec: 10 * MiB, tcpConnections: 2000, sockets: 6 });
  t.notOk('blkioReadBytes' in msg, 'not measured: absent on the wire (proto3 optional)');
  t.equal(f.next([base(30_000, { writableBytes: null, logBytes: 50 * MiB, tcpConnections: 2000, netRxBytesPerSec: 10 * MiB })]).updates.length, 1, 'measured → not measured: sent');
});
