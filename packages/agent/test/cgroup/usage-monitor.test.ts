// UsageMonitor with a scripted reader, a fake watcher and a scripted clock:
// usage rules of the policy in force are judged by the one evaluator on each
// tick, breaches are handed over once (and again after the re-breach
// interval), state is dropped when containers go, windows follow the policy,
// and usage deltas go to the controller best-effort.
import t from 'tap';
import { EventEmitter } from 'node:events';
import { createLogger, parsePolicy, type Policy, type UsageReport } from '@bulkhead/shared';
import { CgroupNotFoundError, type CgroupUsage } from '../../src/cgroup/cgroup-reader';
import { detailRules, toUsageFacts, UsageMonitor, usageSubPolicy, type UsageWindow } from '../../src/cgroup/usage-monitor';
import { MAX_WINDOW_POINTS, MIN_WINDOW_POINTS, resolveUsageMonitorOptions, windowPoints, type UsageMonitorReader } from '../../src/cgroup/usage-monitor-options';
import type { Facts } from '../../src/docker/container-facts';
import type { PolicyState } from '../../src/policy/policy-holder';
import { resolveAgentOptions } from '../../src/agent-options';

const logger = createLogger({ name: 'usage-monitor-test', level: 'silent' });
const MiB = 1024 * 1024;

function policyOf(rules: string): Policy {
  return parsePolicy(`apiVersion: bulkhead.dev/v1
kind: Policy
metadata: { name: unit }
spec:
  rules:
${rules}`, 'unit.yaml');
}

const rule = (id: string, mode: string, check: string, scope = '') => `    - id: ${id}
      description: ${id}
      severity: high
      mode: ${mode}
      action: { type: pause }
${scope ? `      scope: ${scope}\n` : ''}      check: ${check}
`;

const CPU_ENFORCE = policyOf(rule('cpu', 'enforce', '{ type: cpu-usage, abovePercent: 80, forSeconds: 10 }', '{ containerLabels: { watch: "yes" } }'));

function facts(id: string, over: Partial<Facts> = {}): Facts {
  return {
    id, name: `/${id}`, imageRef: 'img:1', imageId: 'sha256:i', imageDigest: '', labels: { watch: 'yes' }, state: 'running',
    user: '1000', privileged: false, mounts: [], networkMode: 'none', networks: [], pidMode: '', ipcMode: '', utsMode: '', usernsMode: '', capAdd: [], capDrop: [],
    securityOpt: [], readOnlyRootfs: false, memoryLimitBytes: 0, nanoCpus: 0, cpuQuota: 0, cpuPeriod: 0, cpuShares: 0, pidsLimit: 0, restartPolicy: 'no',
    restartMaxRetries: 0, envNames: [], command: [], createdAtMs: 1, startedAtMs: 1000, finishedAtMs: 0, exitCode: 0, pid: 42, devices: [], imageUser: '',
    restartCount: 0, secretHits: [], project: '', ...over,
  };
}

interface Script { cpuNs: number; mem: number; pids: number; memLimit?: number; pidsLimit?: number; cpuLimit?: number }

class FakeReader implements UsageMonitorReader {
  readonly state = new Map<string, Script>();
  readonly invalidated: string[] = [];
  closed = false;
  constructor(private readonly clock: { now: number }) {}
  async read(id: string): Promise<CgroupUsage> {
    const s = this.state.get(id);
    if (!s) throw new CgroupNotFoundError(id);
    return {
      containerId: id, at: this.clock.now, cpuUsageNs: s.cpuNs, memoryBytes: s.mem, memoryUsageBytes: s.mem, memoryLimitBytes: s.memLimit ?? 0,
      pids: s.pids, pidsLimit: s.pidsLimit ?? 0, cpuLimitCores: s.cpuLimit ?? 0,
    };
  }
  forget(): void {}
  invalidateLimits(id: string): void {
    this.invalidated.push(id);
  }
  close(): void {
    this.closed = true;
  }
}

class FakeWatcher extends EventEmitter {
  readonly inv = new Map<string, Facts>();
  inventory(): Facts[] {
    return [...this.inv.values()];
  }
  get(id: string): Facts | undefined {
    return this.inv.get(id);
  }
}

async function setup(policy: Policy | undefined, opts: { send?: boolean | (() => boolean); rebreachInterval?: number; throwOnBreach?: boolean } = {}) {
  const clock = { now: 1_000_000 };
  const reader = new FakeReader(clock);
  const watcher = new FakeWatcher();
  const breaches: Array<{ id: string; ruleIds: string[]; usage: UsageWindow }> = [];
  const reports: UsageReport[] = [];
  let state: PolicyState = { policy, scans: new Map(), version: 1, source: 'bundle', sha256: 's', projectLabel: 'bulkhead.project' };
  const send = opts.send ?? true;
  const m = UsageMonitor.start({
    reader, containers: watcher, policy: () => state, logger, now: () => clock.now, interval: 5000, reportInterval: 30_000,
    ...(opts.rebreachInterval !== undefined ? { rebreachInterval: opts.rebreachInterval } : {}),
    onBreach: (f, usage, ruleIds) => {
      breaches.push({ id: f.id, ruleIds, usage });
      if (opts.throwOnBreach) throw new Error('boom');
    },
    ...(send !== false ? { sendReport: (r: UsageReport) => {
      const ok = typeof send === 'function' ? send() : true;
      if (ok) reports.push(r);
      return ok;
    } } : {}),
  });
  t.teardown(() => m.stop());
  // Let the sampler's first (timer) tick run on the empty inventory.
  await new Promise((r) => setTimeout(r, 20));
  const add = (f: Facts, s: Script) => {
    watcher.inv.set(f.id, f);
    reader.state.set(f.id, s);
  };
  /** Advance the clock, add CPU (cores busy for the step), tick. */
  const step = async (seconds: number, cores: Record<string, number> = {}) => {
    clock.now += seconds * 1000;
    for (const [id, c] of Object.entries(cores)) reader.state.get(id)!.cpuNs += c * seconds * 1e9;
    await m.sampler.tick();
  };
  return { m, clock, reader, watcher, breaches, reports, add, step, setPolicy: (p: Policy | undefined) => (state = { ...state, policy: p }) };
}

t.test('a CPU burner in scope is handed over once its rule held; quiet and out-of-scope containers are not', async (t) => {
  const { m, add, step, breaches } = await setup(CPU_ENFORCE, { rebreachInterval: 20_000 });
  add(facts('hot', { nanoCpus: 5e8 }), { cpuNs: 0, mem: MiB, pids: 1, cpuLimit: 0.5 });
  add(facts('quiet', { nanoCpus: 5e8 }), { cpuNs: 0, mem: MiB, pids: 1, cpuLimit: 0.5 });
  add(facts('other', { labels: {} }), { cpuNs: 0, mem: MiB, pids: 1, cpuLimit: 0.5 });
  const load = { hot: 0.5, quiet: 0.1, other: 0.5 };
  await step(0);
  await step(5, load);
  t.equal(breaches.length, 0, '5 s above is not yet 10 s');
  await step(5, load);
  t.same(breaches.map((b) => [b.id, b.ruleIds]), [['hot', ['cpu']]], 'handed over after 10 s; the quiet and the out-of-scope burner are not');
  const pts = breaches[0]!.usage.points;
  t.equal(pts.length, 3, 'the window so far');
  t.same(pts.map((p) => p.cpuPercent === null ? null : Math.round(p.cpuPercent)), [null, 50, 50], 'CPU as % of one core');
  t.equal(pts[2]!.cpuLimitCores, 0.5, 'with the quota in force');
  t.same([...m.breaches().keys()], ['hot']);
  await step(5, load);
  await step(5, load);
  t.equal(breaches.length, 1, 'still breached: not handed over again before the re-breach interval');
  await step(10, load);
  t.equal(breaches.length, 2, 'handed over again after it (a failed action is retried)');
  await step(5, { hot: 0.1 });
  t.same([...m.breaches().keys()], [], 'below again: breach state dropped');
  await step(5, load);
  t.equal(breaches.length, 2, 'a new run above starts counting again');
});

t.test('monitor-mode rules are handed over too; a newly breached rule goes at once; gone containers are forgotten', async (t) => {
  const policy = policyOf(
    rule('cpu', 'monitor', '{ type: cpu-usage, abovePercent: 50, forSeconds: 0 }') +
      rule('pids', 'enforce', '{ type: pids-usage, above: 10 }') +
      rule('mem', 'enforce', '{ type: memory-usage, abovePercent: 50, forSeconds: 0 }'),
  );
  const { m, add, step, breaches, reader, watcher } = await setup(policy);
  add(facts('a'), { cpuNs: 0, mem: MiB, pids: 1 });
  await step(0);
  await step(5, { a: 0.9 });
  t.same(breaches.map((b) => b.ruleIds), [['cpu']], 'monitor mode: handed over (the enforcer records it)');
  reader.state.get('a')!.pids = 50;
  await step(5, { a: 0.9 });
  t.same(breaches.map((b) => b.ruleIds), [['cpu'], ['cpu', 'pids']], 'a new rule breached: handed over at once');
  watcher.inv.set('a', { ...watcher.inv.get('a')!, state: 'paused' });
  watcher.emit('upsert', watcher.inv.get('a'), 'pause');
  t.same([...m.breaches().keys()], [], 'paused: forgotten at once');
  watcher.inv.set('a', { ...watcher.inv.get('a')!, state: 'running' });
  await step(5, { a: 0.9 });
  t.equal(breaches.length, 3, 'running again: a fresh breach');
  watcher.emit('remove', 'a');
  t.same([...m.breaches().keys()], [], 'removed: forgotten');
  watcher.emit('upsert', watcher.inv.get('a'), 'update');
  t.same(reader.invalidated, ['a'], 'an update event re-reads the limits');
  watcher.inv.delete('a');
  await step(5);
  t.same([...m.breaches().keys()], []);
});

t.test('a throwing onBreach is logged, not fatal; no policy or no usage rules: nothing is judged', async (t) => {
  const { add, step, breaches, setPolicy, m } = await setup(policyOf(rule('cpu', 'enforce', '{ type: cpu-usage, abovePercent: 50, forSeconds: 0 }')), { throwOnBreach: true });
  add(facts('a'), { cpuNs: 0, mem: MiB, pids: 1 });
  await step(0);
  await step(5, { a: 1 });
  t.equal(breaches.length, 1);
  setPolicy(policyOf(rule('priv', 'enforce', '{ type: privileged }')));
  await step(5, { a: 1 });
  t.equal(breaches.length, 1, 'a policy without usage rules judges nothing');
  t.same([...m.breaches().keys()], []);
  setPolicy(undefined);
  await step(5, { a: 1 });
  t.equal(breaches.length, 1, 'no policy: nothing');
  t.equal(m.sampler.windowSize, MIN_WINDOW_POINTS);
});

t.test('the window follows the policy\'s longest forSeconds', async (t) => {
  const { m, add, step, setPolicy } = await setup(policyOf(rule('cpu', 'enforce', '{ type: cpu-usage, forSeconds: 120 }')));
  add(facts('a'), { cpuNs: 0, mem: MiB, pids: 1 });
  for (let i = 0; i < 30; i++) await step(5, { a: 0.1 });
  t.equal(m.sampler.windowSize, 26, '120 s at 5 s: 24 intervals + 2');
  t.equal(m.sampler.window('a').length, 26, 'filled');
  setPolicy(policyOf(rule('cpu', 'enforce', '{ type: cpu-usage, forSeconds: 30 }')));
  await step(5, { a: 0.1 });
  t.equal(m.sampler.windowSize, MIN_WINDOW_POINTS, 'shrunk');
  await step(5, { a: 0.1 });
  const w = m.sampler.window('a');
  t.equal(w.length, MIN_WINDOW_POINTS, 'the newest points kept');
  t.ok(w.every((p, i) => i === 0 || p.at > w[i - 1]!.at), 'oldest first');
  setPolicy(policyOf(rule('cpu', 'enforce', '{ type: cpu-usage, forSeconds: 300 }')));
  await step(5, { a: 0.1 });
  await step(5, { a: 0.1 });
  t.equal(m.sampler.windowSize, 62, 'grown');
  // The tick that first sees a new policy still records into the old window.
  t.equal(m.sampler.window('a').length, MIN_WINDOW_POINTS + 1, 'kept points plus new ones');
  t.equal(windowPoints(900_000, 500), MAX_WINDOW_POINTS, 'capped');
});

t.test('reports: deltas, best effort, a full picture after a failed send or a reconnect', async (t) => {
  let up = true;
  const { m, add, step, reports, watcher } = await setup(undefined, { send: () => up });
  t.equal(m.report(), false, 'nothing sampled: nothing sent');
  add(facts('a', { nanoCpus: 5e8 }), { cpuNs: 0, mem: 10 * MiB, pids: 3, cpuLimit: 0.5, memLimit: 100 * MiB, pidsLimit: 50 });
  add(facts('b'), { cpuNs: 0, mem: 20 * MiB, pids: 1 });
  await step(0);
  await step(5, { a: 0.25 });
  t.equal(m.report(), true);
  t.equal(reports.length, 1);
  const a = reports[0]!.containers!.find((c) => c.containerId === 'a')!;
  t.match(a, { cpuPercent: 25, cpuPercentOfQuota: 50, cpuLimitCores: 0.5, memoryBytes: 10 * MiB, memoryLimitBytes: 100 * MiB, pids: 3, pidsLimit: 50 });
  t.equal(Number(a.takenAtMs), 1_005_000, 'per-container reading time');
  t.equal(m.report(), false, 'nothing changed: nothing sent');
  up = false;
  await step(5, { a: 0.9 });
  t.equal(m.report(), false, 'link down: not sent');
  up = true;
  await step(5, { a: 0.25 });
  t.equal(m.report(), true, 'after a failed send, everything again');
  t.same(reports[1]!.containers!.map((c) => c.containerId).sort(), ['a', 'b']);
  watcher.inv.delete('b');
  await step(5, { a: 0.25 });
  m.report();
  t.same(reports[2]!.gone, ['b'], 'stopped containers are reported gone');
  m.resync();
  t.same(reports[3]!.containers!.map((c) => c.containerId), ['a'], 'resync: everything at once');
  await m.stop();
  t.equal(m.report(), false, 'stopped');
});

t.test('no sendReport: sampling and judging only', async (t) => {
  const { m } = await setup(CPU_ENFORCE, { send: false });
  t.equal(m.report(), false);
  await m.stop();
});

t.test('helpers and options', async (t) => {
  const p = policyOf(
    rule('cpu', 'enforce', '{ type: cpu-usage }') + rule('priv', 'enforce', '{ type: privileged }') +
      rule('mem', 'enforce', '{ type: memory-usage, abovePercent: 70 }') + rule('mem2', 'enforce', '{ type: memory-usage }') +
      rule('pids', 'enforce', '{ type: pids-usage, abovePercent: 90 }') + rule('pids2', 'enforce', '{ type: pids-usage, above: 100 }'),
  );
  const sub = usageSubPolicy(p)!;
  t.same(sub.spec.rules.map((r) => r.id), ['cpu', 'mem', 'mem2', 'pids', 'pids2']);
  t.equal(usageSubPolicy(p), sub, 'cached per policy object');
  t.equal(usageSubPolicy(policyOf(rule('priv', 'enforce', '{ type: privileged }'))), undefined);
  t.same(detailRules(p), [
    { id: 'mem', metric: 'memory', abovePercent: 70 },
    { id: 'mem2', metric: 'memory', abovePercent: 90 },
    { id: 'pids', metric: 'pids', abovePercent: 90 },
    { id: 'pids2', metric: 'pids', above: 100 },
  ]);
  t.same(detailRules(undefined), []);
  t.same(toUsageFacts([{ at: 1, cpuUsageNs: 5, cpuCores: 0.5, cpuPercentOfQuota: 100, memoryBytes: 2, memoryPercentOfLimit: null, pids: 3, cpuLimitCores: 0.5, memoryLimitBytes: 0, pidsLimit: 9 }]), {
    points: [{ at: 1, cpuPercent: 50, cpuLimitCores: 0.5, memoryBytes: 2, memoryLimitBytes: 0, pids: 3, pidsLimit: 9 }],
  });
  const base = { reader: new FakeReader({ now: 0 }), containers: new FakeWatcher(), policy: () => ({}) as PolicyState, onBreach: () => undefined, logger };
  t.match(resolveUsageMonitorOptions(base), { intervalMs: 5000, reportIntervalMs: 30_000, rebreachMs: 30_000 });
  t.throws(() => resolveUsageMonitorOptions({ ...base, interval: 100 }), { code: 'BK_ERR_CONFIG_INVALID', message: /at least 500ms/ });
  t.throws(() => resolveUsageMonitorOptions({ ...base, interval: '10s', reportInterval: '5s' }), { message: /must not be shorter/ });
});

t.test('agent options: --usage-interval and --usage-report-interval', async (t) => {
  const o = resolveAgentOptions({ stateDir: '/s' });
  t.same([o.usageIntervalMs, o.usageReportIntervalMs], [5000, 30_000], 'defaults 5 s and 30 s');
  const set = resolveAgentOptions({ stateDir: '/s', usageInterval: '1s', usageReportInterval: '2s' });
  t.same([set.usageIntervalMs, set.usageReportIntervalMs], [1000, 2000]);
  t.equal(resolveAgentOptions({ stateDir: '/s', usageInterval: '0' }).usageIntervalMs, 0, '0 = off');
  t.equal(resolveAgentOptions({ stateDir: '/s', usageInterval: '0s' }).usageIntervalMs, 0, '0s = off');
  t.equal(resolveAgentOptions({ stateDir: '/s', usageInterval: false }).usageIntervalMs, 0, 'false = off');
  t.throws(() => resolveAgentOptions({ stateDir: '/s', usageInterval: '200ms' }), { code: 'BK_ERR_CONFIG_INVALID', message: /at least 1s/ });
  t.throws(() => resolveAgentOptions({ stateDir: '/s', usageInterval: '10s', usageReportInterval: '5s' }), { message: /must not be shorter/ });
});
