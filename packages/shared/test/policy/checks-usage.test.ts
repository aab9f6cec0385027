// Live-usage checks (cpu-usage, memory-usage, pids-usage): table-driven over
// windows of readings, through policyFromJson (params validated as in a real
// policy) and the one evaluator.
import t, { type Test } from 'tap';
import { evaluate } from '../../src/policy/evaluator';
import { parsePolicy, policyFromJson, PolicyValidationError } from '../../src/policy/parse';
import { heldAbove, isUsageRule, MAX_USAGE_FOR_SECONDS, USAGE_CHECK_TYPES, usageWindowMs } from '../../src/policy/checks/index';
import { DEFAULT_POLICY_YAML } from '../../src/policy/default-policy';
import type { Rule, UsagePoint, UsageSeries } from '../../src/policy/types';
import { facts, NOW, policyOf, rule } from './helpers';

const MiB = 1024 * 1024;
const T0 = NOW.getTime() - 120_000;

/** Readings every `every` ms ending at T0 + (n-1)·every, one per value, with `base` fields. */
function series(values: Array<number | null>, field: keyof UsagePoint, base: Partial<UsagePoint> = {}, every = 5000): UsagePoint[] {
  return values.map((v, i) => ({
    at: T0 + i * every,
    cpuPercent: 0,
    cpuLimitCores: 0,
    memoryBytes: 10 * MiB,
    memoryLimitBytes: 0,
    pids: 1,
    pidsLimit: 0,
    ...base,
    [field]: v,
  }) as UsagePoint);
}

interface UsageCase {
  name: string;
  check: Rule['check'];
  points: UsagePoint[] | undefined;
  broken: boolean;
  detail?: RegExp;
  evidence?: number;
}

function runUsageCases(t: Test, cases: readonly UsageCase[]): void {
  for (const c of cases) {
    const policy = policyFromJson(policyOf(rule(c.check, { action: { type: 'pause' } })));
    const findings = evaluate(policy, c.points ? { container: facts(), usage: { points: c.points } } : { container: facts() }, { now: NOW });
    t.equal(findings.length, c.broken ? 1 : 0, `${c.name}: ${c.broken ? 'breaks' : 'passes'}`);
    const details = findings.flatMap((f) => f.evidence.map((e) => e.detail)).join('\n');
    if (c.broken && c.detail) t.match(details, c.detail, `${c.name}: evidence`);
    if (c.broken && c.evidence !== undefined) t.equal(findings[0]?.evidence.length, c.evidence, `${c.name}: evidence count`);
    if (c.broken) t.equal(findings[0]?.evidence[0]?.location.startsWith('usage.'), true, `${c.name}: location`);
    if (!c.broken && findings.length > 0) t.comment(`unexpected: ${details}`);
    if (c.points) {
      // The agent passes a view, not an array (UsageSeries): the same findings from length and at() alone.
      const pts = c.points;
      const view: UsageSeries = { length: pts.length, at: (i) => (i >= 0 && i < pts.length ? { ...pts[i]! } : undefined) };
      t.same(evaluate(policy, { container: facts(), usage: { points: view } }, { now: NOW }), findings, `${c.name}: the same through a series that is not an array`);
    }
  }
}

t.test('cpu-usage', async (t) => {
  const half = { cpuLimitCores: 0.5 };
  const check = { type: 'cpu-usage', abovePercent: 90, forSeconds: 30 };
  runUsageCases(t, [
    { name: 'no usage at all (authz, dry-run)', check, points: undefined, broken: false },
    { name: 'an empty window', check, points: [], broken: false },
    // 50 % of one core = 100 % of a 0.5 quota; readings 5 s apart, 7 readings span 30 s.
    { name: 'at the quota for 30 s', check, points: series([null, 50, 50, 50, 50, 50, 50], 'cpuPercent', half), broken: true, detail: /CPU at 100 % of its CPU quota \(0.5 CPUs\) for 30 s \(lowest 100 %\), above 90 % for 30 s/ },
    // The first reading has no rate: the run can only start at the second.
    { name: 'only 25 s of rates', check, points: series([null, 50, 50, 50, 50, 50], 'cpuPercent', half), broken: false },
    // A CPU rate covers the interval since the previous reading: 6 rates above = 30 s held.
    { name: 'six rates above after a quiet one', check, points: series([10, 50, 50, 50, 50, 50, 50], 'cpuPercent', half), broken: true },
    { name: 'five rates above after a quiet one', check, points: series([10, 10, 50, 50, 50, 50, 50], 'cpuPercent', half), broken: false },
    { name: 'a dip in the window restarts the count', check, points: series([50, 50, 50, 40, 50, 50, 50, 50], 'cpuPercent', half), broken: false },
    { name: 'the newest reading below', check, points: series([50, 50, 50, 50, 50, 50, 50, 44], 'cpuPercent', half), broken: false },
    { name: 'exactly at the threshold is not above', check, points: series([45, 45, 45, 45, 45, 45, 45, 45], 'cpuPercent', half), broken: false },
    { name: 'timer jitter within the slack', check, points: series([1, 50, 50, 50, 50, 50, 50], 'cpuPercent', half, 4980), broken: true },
    { name: 'jitter beyond the slack', check, points: series([1, 50, 50, 50, 50, 50, 50], 'cpuPercent', half, 4900), broken: false },
    // Without a quota: % of one core.
    { name: 'unlimited: 95 % of one core', check, points: series([95, 95, 95, 95, 95, 95, 95], 'cpuPercent'), broken: true, detail: /of one core \(no CPU quota\)/ },
    { name: 'unlimited: 80 % of one core', check, points: series([80, 80, 80, 80, 80, 80, 80], 'cpuPercent'), broken: false },
    { name: 'unlimited: ignoreUnlimited', check: { ...check, ignoreUnlimited: true }, points: series([180, 180, 180, 180, 180, 180, 180], 'cpuPercent'), broken: false },
    { name: 'two cores quota, 1.9 cores busy', check, points: series([190, 190, 190, 190, 190, 190, 190], 'cpuPercent', { cpuLimitCores: 2 }), broken: true, detail: /95 % of its CPU quota \(2 CPUs\)/ },
    { name: 'forSeconds 0: the newest reading decides', check: { type: 'cpu-usage', abovePercent: 50, forSeconds: 0 }, points: series([0, 30], 'cpuPercent', half), broken: true },
    { name: 'forSeconds 0, first reading has no rate', check: { type: 'cpu-usage', forSeconds: 0 }, points: series([null], 'cpuPercent', half), broken: false },
    { name: 'defaults: 90 % for 60 s', check: { type: 'cpu-usage' }, points: series([1, ...Array<number>(12).fill(50)], 'cpuPercent', half), broken: true },
    { name: 'defaults: 55 s is not 60', check: { type: 'cpu-usage' }, points: series([1, 1, ...Array<number>(11).fill(50)], 'cpuPercent', half), broken: false },
  ]);
});

t.test('memory-usage', async (t) => {
  const lim = { memoryLimitBytes: 100 * MiB };
  const check = { type: 'memory-usage', abovePercent: 90, forSeconds: 10 };
  runUsageCases(t, [
    { name: 'no usage', check, points: undefined, broken: false },
    { name: 'at 95 % for 10 s', check, points: series([95, 95, 95].map((m) => m * MiB), 'memoryBytes', lim), broken: true, detail: /memory at 95 % of its limit \(95 MiB of 100 MiB\) for 10 s/ },
    // A gauge holds from the first reading above: 2 readings 5 s apart = 5 s.
    { name: 'at 95 % for 5 s only', check, points: series([50, 95, 95].map((m) => m * MiB), 'memoryBytes', lim), broken: false },
    { name: 'under the threshold', check, points: series([80, 85, 89].map((m) => m * MiB), 'memoryBytes', lim), broken: false },
    { name: 'unlimited is never above', check, points: series([4000, 4000, 4000].map((m) => m * MiB), 'memoryBytes'), broken: false },
    { name: 'forSeconds 0: one reading', check: { type: 'memory-usage', abovePercent: 50, forSeconds: 0 }, points: series([60 * MiB], 'memoryBytes', lim), broken: true, detail: /memory at 60 % of its limit \(60 MiB of 100 MiB\), above 50 %$/ },
  ]);
});

t.test('pids-usage', async (t) => {
  runUsageCases(t, [
    { name: 'count above', check: { type: 'pids-usage', above: 100 }, points: series([101], 'pids'), broken: true, detail: /101 processes\/threads, above 100$/ },
    { name: 'count at the threshold', check: { type: 'pids-usage', above: 100 }, points: series([100], 'pids'), broken: false },
    { name: 'count above for 10 s', check: { type: 'pids-usage', above: 100, forSeconds: 10 }, points: series([150, 160, 170], 'pids'), broken: true, detail: /170 processes\/threads for 10 s \(lowest 150\), above 100 for 10 s/ },
    { name: 'count above for 5 s of 10', check: { type: 'pids-usage', above: 100, forSeconds: 10 }, points: series([50, 160, 170], 'pids'), broken: false },
    { name: 'percent of the limit', check: { type: 'pids-usage', abovePercent: 80 }, points: series([90], 'pids', { pidsLimit: 100 }), broken: true, detail: /90 % of its pids limit 100/ },
    { name: 'percent without a limit', check: { type: 'pids-usage', abovePercent: 80 }, points: series([5000], 'pids'), broken: false },
    { name: 'both thresholds broken', check: { type: 'pids-usage', above: 50, abovePercent: 80 }, points: series([90], 'pids', { pidsLimit: 100 }), broken: true, evidence: 2 },
    { name: 'either one is enough', check: { type: 'pids-usage', above: 500, abovePercent: 80 }, points: series([90], 'pids', { pidsLimit: 100 }), broken: true, evidence: 1 },
    { name: 'neither', check: { type: 'pids-usage', above: 500, abovePercent: 95 }, points: series([90], 'pids', { pidsLimit: 100 }), broken: false },
  ]);
});

t.test('parameters are validated at policy load', async (t) => {
  const load = (check: Rule['check']) => () => policyFromJson(policyOf(rule(check)));
  t.throws(load({ type: 'pids-usage' }), PolicyValidationError, 'pids-usage without a threshold');
  t.throws(load({ type: 'pids-usage', forSeconds: 5 }), /needs `above` and\/or `abovePercent`/);
  t.throws(load({ type: 'cpu-usage', abovePercent: 0 }), PolicyValidationError, 'a zero threshold');
  t.throws(load({ type: 'cpu-usage', forSeconds: MAX_USAGE_FOR_SECONDS + 1 }), PolicyValidationError, 'forSeconds above the maximum');
  t.throws(load({ type: 'memory-usage', abovePercent: 120 }), PolicyValidationError, 'memory above 100 %');
  t.throws(load({ type: 'memory-usage', limit: 1 }), /unknown field "limit"/);
  t.ok(load({ type: 'cpu-usage', abovePercent: 250, forSeconds: 0 })(), 'CPU may exceed 100 % (of one core)');
});

t.test('usage rules produce nothing without usage: authz and dry-run', async (t) => {
  const p = parsePolicy(DEFAULT_POLICY_YAML);
  const idle = facts({ memoryLimitBytes: 0, nanoCpus: 0, pidsLimit: 0 });
  const ruleIds = evaluate(p, { container: idle }, { now: NOW }).map((f) => f.ruleId);
  t.notOk(ruleIds.some((id) => /usage/.test(id)), 'no usage finding from facts alone');
  // The same policy with usage: every usage rule of the default policy can hit.
  const hot: UsagePoint[] = Array.from({ length: 14 }, (_, i) => ({
    at: T0 + i * 5000, cpuPercent: 100, cpuLimitCores: 0, memoryBytes: 95 * MiB, memoryLimitBytes: 100 * MiB, pids: 2000, pidsLimit: 0,
  }));
  const hit = evaluate(p, { container: idle, usage: { points: hot } }, { now: NOW }).filter((f) => /usage/.test(f.ruleId));
  t.same(hit.map((f) => f.ruleId), ['isolation.cpu-usage', 'isolation.memory-usage', 'isolation.pids-usage']);
  t.ok(hit.every((f) => f.mode === 'monitor' && f.action.type === 'pause'), 'monitor mode, action pause');
});

t.test('usageWindowMs and isUsageRule', async (t) => {
  t.same([...USAGE_CHECK_TYPES], ['cpu-usage', 'memory-usage', 'pids-usage', 'disk-usage', 'network-usage', 'connections']);
  t.ok(isUsageRule({ check: { type: 'cpu-usage' } }));
  t.notOk(isUsageRule({ check: { type: 'privileged' } }));
  const p = (checks: Rule['check'][]) => policyFromJson(policyOf(...checks.map((c, i) => rule(c, { id: `r${i}` }))));
  t.equal(usageWindowMs(p([{ type: 'privileged' }])), 0, 'no usage rule');
  t.equal(usageWindowMs(p([{ type: 'cpu-usage' }])), 60_000, 'the default forSeconds counts');
  t.equal(usageWindowMs(p([{ type: 'cpu-usage', forSeconds: 20 }, { type: 'memory-usage', forSeconds: 45 }, { type: 'pids-usage', above: 5 }])), 45_000, 'the longest');
  t.equal(usageWindowMs(parsePolicy(DEFAULT_POLICY_YAML)), 60_000, 'default policy');
});

t.test('heldAbove', async (t) => {
  const pts = series([1, 5, 6, 7], 'pids');
  const v = (p: UsagePoint) => p.pids;
  t.same(heldAbove(pts, v, 4, false), { heldMs: 10_000, latest: 7, lowest: 5 }, 'gauge: from the first reading above');
  t.same(heldAbove(pts, v, 4, true), { heldMs: 15_000, latest: 7, lowest: 5 }, 'interval: from the reading before');
  t.same(heldAbove(series([5, 6], 'pids'), v, 4, true), { heldMs: 5000, latest: 6, lowest: 5 }, 'the whole window above: from its first reading');
  t.equal(heldAbove(pts, v, 7, false), undefined, 'newest not above');
  t.equal(heldAbove([], v, 0, false), undefined, 'empty');
});

t.test('disk-usage', async (t) => {
  const w = (values: Array<number | null>, base: Partial<UsagePoint> = {}) => series(values.map((v) => (v === null ? null : v * MiB)), 'writableBytes', base);
  runUsageCases(t, [
    { name: 'no usage', check: { type: 'disk-usage', writableAbove: '100m' }, points: undefined, broken: false },
    { name: 'writable layer below', check: { type: 'disk-usage', writableAbove: '100m' }, points: w([10, 50, 99]), broken: false },
    { name: 'writable layer above now (forSeconds 0)', check: { type: 'disk-usage', writableAbove: '100m' }, points: w([10, 50, 200]), broken: true, detail: /writable layer at 200 MiB, above 100 MiB$/ },
    { name: 'not measured (null) never breaks', check: { type: 'disk-usage', writableAbove: 0 }, points: w([null, null]), broken: false },
    { name: 'older agent: field absent', check: { type: 'disk-usage', writableAbove: 0 }, points: series([1, 2], 'pids'), broken: false },
    { name: 'above, but not for forSeconds yet', check: { type: 'disk-usage', writableAbove: '100m', forSeconds: 10 }, points: w([50, 200, 200]), broken: false },
    { name: 'above for forSeconds', check: { type: 'disk-usage', writableAbove: '100m', forSeconds: 10 }, points: w([200, 200, 210]), broken: true, detail: /writable layer at 210 MiB for 10 s \(lowest 200 MiB\), above 100 MiB for 10 s/ },
    { name: 'logs above', check: { type: 'disk-usage', logsAbove: 1048576 }, points: series([0, 5 * MiB], 'logBytes'), broken: true, detail: /log files at 5 MiB, above 1 MiB/ },
    { name: 'both above: two pieces of evidence', check: { type: 'disk-usage', writableAbove: '1m', logsAbove: '1m' }, points: w([5], { logBytes: 5 * MiB }), broken: true, evidence: 2 },
    // 10 MiB every 5 s = 120 MiB/min.
    { name: 'growing faster than X/min over forSeconds', check: { type: 'disk-usage', growthPerMinuteAbove: '100m', forSeconds: 10 }, points: w([0, 10, 20, 30], { logBytes: 0 }), broken: true, detail: /grew 20 MiB in 10 s \(120 MiB\/min\), above 100 MiB\/min/ },
    { name: 'growing slower', check: { type: 'disk-usage', growthPerMinuteAbove: '200m', forSeconds: 10 }, points: w([0, 10, 20, 30], { logBytes: 0 }), broken: false },
    { name: 'growth: the window does not reach back forSeconds yet', check: { type: 'disk-usage', growthPerMinuteAbove: '1m', forSeconds: 60 }, points: w([0, 10, 20, 30], { logBytes: 0 }), broken: false },
    { name: 'growth over the last interval (forSeconds 0)', check: { type: 'disk-usage', growthPerMinuteAbove: '1m' }, points: w([0, 0, 0, 30], { logBytes: 0 }), broken: true, detail: /grew 30 MiB in 5 s/ },
    { name: 'shrinking is no growth', check: { type: 'disk-usage', growthPerMinuteAbove: 0 }, points: w([30, 0], { logBytes: 0 }), broken: false },
  ]);
});

t.test('network-usage', async (t) => {
  const net = (rx: Array<number | null>, tx = 0) => series(rx, 'netRxBytesPerSec', { netTxBytesPerSec: tx, netRxPacketsPerSec: 10, netTxPacketsPerSec: 10 });
  runUsageCases(t, [
    { name: 'below', check: { type: 'network-usage', bytesPerSecAbove: '1m', forSeconds: 10 }, points: net([null, MiB / 2, MiB / 2, MiB / 2]), broken: false },
    { name: 'rx + tx above for forSeconds (a rate holds since the reading before)', check: { type: 'network-usage', bytesPerSecAbove: '1m', forSeconds: 10 }, points: net([null, 0, MiB, MiB], MiB), broken: true, detail: /network at 2 MiB\/s \(rx 1 MiB\/s, tx 1 MiB\/s\) for 10 s \(lowest 2 MiB\/s\), above 1 MiB\/s for 10 s/ },
    { name: 'above, too briefly', check: { type: 'network-usage', bytesPerSecAbove: '1m', forSeconds: 10 }, points: net([0, 0, 0, 2 * MiB]), broken: false },
    { name: 'first reading (no rate) never breaks', check: { type: 'network-usage', bytesPerSecAbove: 0, forSeconds: 0 }, points: net([null]), broken: false },
    { name: 'packets/s', check: { type: 'network-usage', packetsPerSecAbove: 15, forSeconds: 0 }, points: net([0]), broken: true, detail: /network at 20 packets\/s, above 15 packets\/s$/ },
    { name: 'host network: not measured', check: { type: 'network-usage', packetsPerSecAbove: 1, forSeconds: 0 }, points: series([1], 'pids'), broken: false },
  ]);
});

t.test('connections', async (t) => {
  const c = (v: Array<number | null>, base: Partial<UsagePoint> = {}) => series(v, 'tcpConnections', base);
  runUsageCases(t, [
    { name: 'below', check: { type: 'connections', above: 1000, forSeconds: 5 }, points: c([10, 900, 1000]), broken: false },
    { name: 'above for forSeconds', check: { type: 'connections', above: 1000, forSeconds: 5 }, points: c([10, 2001, 2002]), broken: true, detail: /2002 open TCP connections for 5 s \(lowest 2001\), above 1000 for 5 s/ },
    { name: 'above for too short', check: { type: 'connections', above: 1000, forSeconds: 10 }, points: c([10, 2001, 2002]), broken: false },
    { name: 'sockets', check: { type: 'connections', socketsAbove: 10, forSeconds: 0 }, points: c([1], { sockets: 11 }), broken: true, detail: /11 TCP \+ UDP sockets, above 10$/ },
    { name: 'not measured', check: { type: 'connections', above: 0, forSeconds: 0 }, points: c([null]), broken: false },
  ]);
});

t.test('disk, network and connections parameters are validated at policy load', async (t) => {
  const load = (check: Rule['check']) => () => policyFromJson(policyOf(rule(check)));
  t.throws(load({ type: 'disk-usage' }), /needs `writableAbove`, `logsAbove` and\/or `growthPerMinuteAbove`/);
  t.throws(load({ type: 'disk-usage', writableAbove: '10 parsecs' }), PolicyValidationError, 'not a size');
  t.throws(load({ type: 'network-usage', forSeconds: 5 }), /needs `bytesPerSecAbove` and\/or `packetsPerSecAbove`/);
  t.throws(load({ type: 'network-usage', packetsPerSecAbove: 0 }), PolicyValidationError, 'a zero packet rate');
  t.throws(load({ type: 'connections' }), /needs `above` and\/or `socketsAbove`/);
  t.throws(load({ type: 'connections', above: -1 }), PolicyValidationError);
  t.ok(load({ type: 'disk-usage', writableAbove: '1.5g', logsAbove: 104857600, growthPerMinuteAbove: '50MiB', forSeconds: 60 })(), 'sizes as docker writes them, or bytes');
  const p = (checks: Rule['check'][]) => policyFromJson(policyOf(...checks.map((c, i) => rule(c, { id: `r${i}` }))));
  t.equal(usageWindowMs(p([{ type: 'network-usage', packetsPerSecAbove: 5 }])), 30_000, 'network-usage: default forSeconds 30 sizes the window');
  t.equal(usageWindowMs(p([{ type: 'disk-usage', growthPerMinuteAbove: '1m', forSeconds: 120 }])), 120_000, 'disk-usage growth window');
});
