// The agent's periodic host audit: its options and flags (every fix off
// unless named), the scheduler (at start, then every interval, never two at
// once, retried sooner after a failure, every fix logged), and the bounded
// image hygiene summary the report carries.
import t from 'tap';
import { Command } from 'commander';
import { createLogger } from '@bulkhead/shared';
import { HostAuditScheduler, agentHostAudit } from '../../src/cis/audit-scheduler';
import { runHostAuditInChild, serveHostAuditChild } from '../../src/cis/host-audit-child';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { addHostAuditRunOptions, resolveHostAuditOptions, LOCKDOWN_FIX_FLAGS } from '../../src/cis/host-audit-options';
import { hostHygiene, type HostAuditResult } from '../../src/cis/host-audit';
import { toAuditReportMessage } from '../../src/cis/audit-message';
import { resolveAgentOptions } from '../../src/agent-options';
import { summarizeHygiene } from '../../src/hygiene/hygiene-summary';
import type { ImageHygieneEntry, ImageHygieneReport } from '../../src/hygiene/image-hygiene';

t.test('options: defaults, fix names, validation', async (t) => {
  const d = resolveHostAuditOptions();
  t.same(d, {
    intervalMs: 3600_000, fixes: {}, dockerGroup: 'docker', hostRoot: '/', procRoot: undefined, containerdSocketPath: undefined,
    daemonJsonPath: undefined, trustedUsers: undefined, imageUnusedDays: 30, imagePrune: undefined,
  }, 'hourly, no fixes, no prune');
  t.same(LOCKDOWN_FIX_FLAGS, {
    'docker-socket-ownership': 'dockerSocketOwnership', 'docker-socket-mode': 'dockerSocketMode',
    'containerd-socket-ownership': 'containerdSocketOwnership', 'containerd-socket-mode': 'containerdSocketMode',
  });
  const o = resolveHostAuditOptions({
    auditInterval: '15m', lockdownFix: ['docker-socket-mode,containerdSocketOwnership', ' docker-socket-ownership '], dockerGroup: 'dockerusers',
    hostRoot: '/host', procRoot: '/host/proc', containerdSocket: '/run/k3s/containerd.sock', daemonJson: '/etc/docker/daemon.json',
    trustedUsers: ['alice,bob', 'carol'], imageUnusedDays: '7',
  });
  t.same(o, {
    intervalMs: 900_000, fixes: { dockerSocketMode: true, containerdSocketOwnership: true, dockerSocketOwnership: true }, dockerGroup: 'dockerusers',
    hostRoot: '/host', procRoot: '/host/proc', containerdSocketPath: '/run/k3s/containerd.sock', daemonJsonPath: '/etc/docker/daemon.json',
    trustedUsers: ['alice', 'bob', 'carol'], imageUnusedDays: 7, imagePrune: undefined,
  });
  for (const off of ['0', 'off', 'OFF', 0] as const) t.equal(resolveHostAuditOptions({ auditInterval: off }).intervalMs, 0, `${String(off)} switches it off`);
  const bad: Array<[Parameters<typeof resolveHostAuditOptions>[0], RegExp]> = [
    [{ auditInterval: '500ms' }, /at least 1s/],
    [{ auditInterval: 'hourly' }, /not a duration/],
    [{ lockdownFix: ['chmod-everything'] }, /lockdown fix "chmod-everything" is unknown \(known: docker-socket-ownership, /],
    [{ auditInterval: '0', lockdownFix: ['docker-socket-mode'] }, /cannot be enabled with audit-interval 0/],
    [{ imageUnusedDays: '-1' }, /image-unused-days/],
    [{ imageUnusedDays: 'soon' }, /image-unused-days/],
    [{ hostRoot: 'host' }, /host-root must be an absolute path/],
    [{ daemonJson: 'daemon.json' }, /daemon-json must be an absolute path/],
    [{ dockerGroup: 'a b' }, /not a group name/],
  ];
  for (const [input, re] of bad) t.throws(() => resolveHostAuditOptions(input), { code: 'BK_ERR_CONFIG_INVALID', message: re }, re.source);
  t.equal(resolveAgentOptions({ stateDir: '/tmp/x', audit: { auditInterval: '2h' } }).audit.intervalMs, 7200_000, 'part of the agent options');
  t.equal(resolveAgentOptions({ stateDir: '/tmp/x' }).audit.intervalMs, 3600_000);
});

t.test('flags on `run`, and their environment variables', async (t) => {
  const parse = (argv: string[], env: Record<string, string> = {}) => {
    const saved = { ...process.env };
    Object.assign(process.env, env);
    try {
      const cmd = addHostAuditRunOptions(new Command('run').exitOverride());
      cmd.parse(argv, { from: 'user' });
      return cmd.opts();
    } finally {
      for (const k of Object.keys(env)) delete process.env[k];
      Object.assign(process.env, saved);
    }
  };
  t.match(parse([]), { auditInterval: '1h', dockerGroup: 'docker', hostRoot: '/', imageUnusedDays: '30' });
  t.equal(parse([]).lockdownFix, undefined);
  const o = parse(['--audit-interval', '10m', '--lockdown-fix', 'docker-socket-mode', '--lockdown-fix', 'docker-socket-ownership', '--trusted-users', 'alice', '--trusted-users', 'bob']);
  t.same(o.lockdownFix, ['docker-socket-mode', 'docker-socket-ownership']);
  t.same(o.trustedUsers, ['alice', 'bob']);
  t.same(resolveHostAuditOptions(o).fixes, { dockerSocketMode: true, dockerSocketOwnership: true });
  const env = parse([], { BULKHEAD_AUDIT_INTERVAL: '0', BULKHEAD_LOCKDOWN_FIXES: '' });
  t.equal(resolveHostAuditOptions(env).intervalMs, 0, 'BULKHEAD_AUDIT_INTERVAL=0 switches it off');
  t.same(resolveHostAuditOptions(parse([], { BULKHEAD_LOCKDOWN_FIXES: 'docker-socket-mode,containerd-socket-mode' })).fixes, { dockerSocketMode: true, containerdSocketMode: true });
});

/** Polls `cond` (generous bound: the machine may be busy). */
async function until(cond: () => boolean, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond() && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
}

const fakeResult = (over: Partial<HostAuditResult> = {}): HostAuditResult => ({
  cis: { dockerbenchsecurity: '1.6.0', start: 0, tests: [], checks: 0, score: 0, end: 0, benchmark: '', generator: '', summary: { pass: 3, warn: 1, info: 0, note: 0, percent: 75 } },
  lockdown: [
    { id: 'docker-socket.mode', severity: 'critical', title: 't', detail: 'd', remediation: 'r', fixable: true },
    { id: 'daemon.userns-remap', severity: 'medium', title: 't', detail: 'd', remediation: 'r', fixable: false },
  ],
  fixes: [],
  message: { takenAtMs: 1, cisJson: '{}', lockdownJson: '[]', score: 75, fixesJson: '[]', hygieneJson: '' },
  ...over,
});

function capture(): { logger: ReturnType<typeof createLogger>; lines: () => Array<Record<string, unknown>> } {
  const raw: string[] = [];
  return {
    logger: createLogger({ name: 't', level: 'debug', destination: { write: (s: string) => void raw.push(s) } }),
    lines: () => raw.map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}

t.test('scheduler: at start, then every interval; one run at a time; failures retried sooner', async (t) => {
  const { logger, lines } = capture();
  let calls = 0;
  let fail = false;
  let release: (() => void) | undefined;
  const reports: HostAuditResult[] = [];
  const s = new HostAuditScheduler({
    intervalMs: 120,
    retryMs: 40,
    logger,
    onReport: (r) => reports.push(r),
    run: async () => {
      calls++;
      if (release === undefined) await new Promise<void>((r) => (release = r));
      if (fail) throw new Error('engine down');
      return fakeResult({
        fixes: [
          { fix: 'dockerSocketMode', path: '/s', at: '', changed: true, dryRun: false, message: 'dockerSocketMode: chmod 0666 → 0660 on /s', persist: 'p' },
          { fix: 'dockerSocketOwnership', path: '/s', at: '', changed: false, dryRun: false, message: 'already root:docker', persist: 'p' },
          { fix: 'containerdSocketMode', path: '/c', at: '', changed: false, dryRun: false, message: 'failed: EPERM', error: 'EPERM', persist: 'p' },
        ],
        hygiene: { at: '', unusedDays: 30, counts: { images: 1, inUse: 0, used: 0, neverUsed: 0, dangling: 0, stale: 1 }, staleBytes: 1, images: [], truncated: false },
      });
    },
  });
  s.start();
  await until(() => calls === 1);
  t.equal(calls, 1, 'ran at start');
  t.equal(s.stats.running, true);
  const joined = s.runNow();
  t.equal(calls, 1, 'runNow joins the run in progress');
  release!();
  t.equal(await joined, reports[0]);
  t.equal(s.stats.runs, 1);
  const log = lines();
  t.match(log.find((l) => l['msg'] === 'lockdown fix applied: dockerSocketMode: chmod 0666 → 0660 on /s'), { level: 40, fix: 'dockerSocketMode', changed: true });
  t.match(log.find((l) => String(l['msg']).startsWith('lockdown fix not needed')), { level: 30 });
  t.match(log.find((l) => String(l['msg']).startsWith('lockdown fix failed')), { level: 50, error: 'EPERM' });
  t.match(log.find((l) => l['msg'] === 'host audit done'), { score: 75, lockdown: { critical: 1, medium: 1 }, serious: ['docker-socket.mode'], fixes: 1, staleImages: 1, cis: { warn: 1 } });

  await until(() => calls >= 2);
  t.ok(calls >= 2, `ran again after the interval (${calls})`);
  fail = true;
  const before = s.stats.failures;
  await until(() => s.stats.failures > before + 1);
  t.ok(s.stats.failures > before + 1, 'failed runs are retried at retryMs, faster than the interval');
  t.match(lines().find((l) => l['msg'] === 'host audit failed'), { level: 50, err: 'engine down' });
  fail = false;
  await s.stop();
  const n = calls;
  await new Promise((r) => setTimeout(r, 200));
  t.equal(calls, n, 'nothing runs after stop');
  t.throws(() => new HostAuditScheduler({ intervalMs: 0, run: async () => fakeResult(), onReport: () => undefined, logger }), RangeError);
});

t.test('scheduler: stop waits for the run in progress; a throwing onReport is logged', async (t) => {
  const { logger, lines } = capture();
  let finish: (() => void) | undefined;
  const s = new HostAuditScheduler({
    intervalMs: 60_000,
    initialDelayMs: 0,
    logger,
    onReport: () => {
      throw new Error('link gone');
    },
    run: async () => {
      await new Promise<void>((r) => (finish = r));
      return fakeResult({ hygiene: { error: 'listImages failed' } });
    },
  });
  s.start();
  await until(() => finish !== undefined);
  let stopped = false;
  const stopping = s.stop().then(() => (stopped = true));
  await new Promise((r) => setTimeout(r, 20));
  t.notOk(stopped, 'stop waits for the audit');
  finish!();
  await stopping;
  t.match(lines().find((l) => l['msg'] === 'host audit done'), { hygieneError: 'listImages failed' });
  t.match(lines().find((l) => l['msg'] === 'host audit report could not be queued'), { err: 'link gone' });
});

t.test('agentHostAudit runs in a child process, bound to the engine socket and the flags', async (t) => {
  const a = agentHostAudit(resolveHostAuditOptions({ auditInterval: '5m' }), 'unix:///nonexistent/bk-test.sock');
  t.equal(a.intervalMs, 300_000);
  // No engine there: the child answers with the error (the scheduler logs and retries); nothing hangs.
  await t.rejects(a.run(), /connect|ENOENT|docker info/i);
  const tcp = agentHostAudit(resolveHostAuditOptions(), 'tcp://127.0.0.1:1');
  const run = tcp.run();
  tcp.abort();
  await t.rejects(run, /exited with signal SIGTERM before it answered/, 'abort ends the child');
  t.same(await serveHostAuditChild({ dockerHost: 'unix:///nonexistent/bk-test.sock', options: {} }).then((r) => r.ok), false);
});

t.test('the child process: timeouts, early exits and errors become rejections', async (t) => {
  const dir = t.testdir();
  const script = (name: string, body: string): string => {
    const p = join(dir, name);
    writeFileSync(p, body);
    return p;
  };
  const silent = script('silent.js', 'process.on("message", () => {}); setInterval(() => {}, 1000);');
  await t.rejects(runHostAuditInChild({ dockerHost: 'x', options: {} }, { entry: silent, timeoutMs: 300 }).result, /took longer than 0s; stopped/);
  const crash = script('crash.js', 'process.stderr.write("boom: something broke\\n"); process.exit(3);');
  await t.rejects(runHostAuditInChild({ dockerHost: 'x', options: {} }, { entry: crash }).result, /exited with code 3 before it answered: boom: something broke/);
  const refuse = script('refuse.js', 'process.on("message", () => process.send({ ok: false, error: "no engine" }, () => process.exit(0)));');
  await t.rejects(runHostAuditInChild({ dockerHost: 'x', options: {} }, { entry: refuse }).result, /^no engine$/);
  const echo = script('echo.js', 'process.on("message", (m) => process.send({ ok: true, result: { echo: m } }, () => process.exit(0)));');
  const r = (await runHostAuditInChild({ dockerHost: 'unix:///d.sock', options: { fixes: { dockerSocketMode: true } } }, { entry: echo }).result) as unknown as { echo: unknown };
  t.same(r.echo, { dockerHost: 'unix:///d.sock', options: { fixes: { dockerSocketMode: true } } }, 'the request reaches the child as sent');
  await t.rejects(runHostAuditInChild({ dockerHost: 'x', options: {} }, { entry: join(dir, 'missing.js') }).result, /exited with code 1/);
});

t.test('hygiene summary: counts exact, list bounded, most idle first', async (t) => {
  const entry = (id: string, status: ImageHygieneEntry['status'], idleDays: number, stale: boolean): ImageHygieneEntry => ({
    id, tags: status === 'dangling' ? [] : [`${id}:1`], sizeBytes: 10, labels: {}, createdAtMs: 0, arrivedAtMs: 0,
    lastUsedAtMs: status === 'used' ? Date.parse('2026-10-01T00:00:00Z') : null, containers: { running: 0, total: 0, names: [] }, status, idleDays, stale,
  });
  const report: ImageHygieneReport = {
    at: Date.parse('2026-11-28T00:00:00Z'), unusedDays: 30,
    images: [entry('a', 'used', 58, true), entry('b', 'never-used', 40, true), entry('c', 'dangling', 2, false), entry('d', 'in-use', 0, false), entry('e', 'used', 1, false)],
    unused: ['a'], neverUsed: ['b'], dangling: ['c'], staleBytes: 20,
  };
  const s = summarizeHygiene(report);
  t.same(s.counts, { images: 5, inUse: 1, used: 2, neverUsed: 1, dangling: 1, stale: 2 });
  t.same(s.images.map((i) => i.id), ['a', 'b', 'c'], 'stale and dangling images');
  t.equal(s.images[0]!.lastUsedAt, '2026-10-01T00:00:00.000Z');
  t.equal(s.images[1]!.lastUsedAt, null);
  t.equal(s.at, '2026-11-28T00:00:00.000Z');
  t.equal(s.truncated, false);
  const cut = summarizeHygiene(report, 2);
  t.same(cut.images.map((i) => i.id), ['a', 'b']);
  t.equal(cut.truncated, true);
  t.equal(cut.counts.stale, 2, 'counts stay exact');
});

t.test('hygiene in the audit: a summary, or the reason there is none', async (t) => {
  const now = () => new Date('2026-11-28T00:00:00Z');
  const empty = {
    listImages: async () => [], listContainers: async () => [],
    getContainer: () => ({ inspect: async () => Promise.reject(new Error('none')) }), getImage: () => ({ inspect: async () => Promise.reject(new Error('none')) }),
  };
  t.match(await hostHygiene(empty as never, { unusedDays: 7 }, now), { unusedDays: 7, counts: { images: 0 }, at: '2026-11-28T00:00:00.000Z' });
  t.same(await hostHygiene({ ...empty, listImages: async () => Promise.reject(new Error('engine gone')) } as never, {}, now), { error: 'engine gone' });
  const cis = fakeResult().cis;
  t.equal(toAuditReportMessage({ cis, lockdown: [], takenAtMs: 1 }).hygieneJson, '', 'no hygiene: empty on the wire');
  t.equal(toAuditReportMessage({ cis, lockdown: [], takenAtMs: 1 }).fixesJson, '[]');
  t.same(JSON.parse(toAuditReportMessage({ cis, lockdown: [], hygiene: { error: 'x' }, takenAtMs: 1 }).hygieneJson!), { error: 'x' });
});
