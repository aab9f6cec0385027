// The reaction door against a REAL engine: the watcher's events drive the
// enforcer, and each action is checked with the engine's own inspect —
// killed/stopped (not running), paused, quarantined (no networks), limited
// (HostConfig set) — and a restart-always container under a kill rule is
// capped and escalated to pause instead of being killed forever.
//
// The engine may be shared with other test files: every rule is scoped to
// this file's container label, so nothing else is ever touched.
import t from 'tap';
import { createLogger, parsePolicy, type ViolationReport } from '@bulkhead/shared';
import { useEngine, LABEL_ARGS, FILE_LABEL, removeLabelledContainers, type Engine } from '../../../../test/helpers/engine';
import { createDockerClient } from '../../src/docker/client';
import { ContainerWatcher } from '../../src/docker/watcher';
import { Enforcer, type ActionTiming } from '../../src/enforce/enforcer';
import { SecretScanner } from '../../src/secrets/secret-scanner';
import type { PolicyState } from '../../src/policy/policy-holder';

const logger = createLogger({ name: 'enforcer-e2e', level: process.env['BULKHEAD_LOG_LEVEL'] ?? 'silent' });
const [fileKey, fileValue] = FILE_LABEL.split('=') as [string, string];
const uniq = `${process.pid}-${Math.random().toString(36).slice(2, 7)}`;

// Every busybox container runs as root, so `root-user` is the trigger; the
// label `bk.action` picks which rule (and so which action) applies.
const rule = (id: string, action: string, check = '{ type: root-user }', mode = 'enforce') => `
    - id: e2e.${id}
      description: ${id}
      severity: high
      mode: ${mode}
      action: ${action}
      scope: { containerLabels: { "${fileKey}": "${fileValue}", bk.action: ${id} } }
      check: ${check}`;

const POLICY = parsePolicy(`
apiVersion: bulkhead.dev/v1
kind: Policy
metadata: { name: enforcer-e2e }
spec:
  rules:${rule('kill', '{ type: kill }')}${rule('stop', '{ type: stop, stopTimeoutSeconds: 1 }')}${rule('pause', '{ type: pause }')}${rule('quarantine', '{ type: quarantine }')}${rule('limit', '{ type: limit, limits: { memory: 96m, pids: 64 } }', '{ type: resource-limits, maxMemory: 128m, requireCpu: false, requirePids: false }')}${rule('alert', '{ type: alert }')}${rule('monitor', '{ type: kill }', '{ type: root-user }', 'monitor')}${rule('loop', '{ type: kill }')}${rule('secret', '{ type: stop, stopTimeoutSeconds: 1 }', '{ type: secrets }')}
`, 'enforcer-e2e.yaml');

interface Seen { r: ViolationReport; timing?: ActionTiming }

t.test('enforcer against a real engine', async (t) => {
  const engine: Engine = await useEngine(t);
  const docker = createDockerClient({ dockerHost: engine.dockerHost });
  const state: PolicyState = { policy: POLICY, scans: new Map(), version: 3, source: 'bundle', sha256: 'e2e', projectLabel: 'bulkhead.project' };
  const seen: Seen[] = [];
  let wake: (() => void) | undefined;
  const watcher = await ContainerWatcher.start({ docker, logger, reconcileIntervalMs: 0 });
  const enforcer = new Enforcer({
    docker, logger, policy: () => state, containers: watcher,
    secrets: new SecretScanner({ docker, logger }),
    onViolation: (r, timing) => {
      seen.push({ r, ...(timing ? { timing } : {}) });
      wake?.();
    },
  });
  const detach = enforcer.attach(watcher);
  t.teardown(async () => {
    detach();
    await enforcer.stop();
    await watcher.stop();
    await removeLabelledContainers(engine);
  });

  const waitFor = async <T>(what: string, probe: () => T | undefined, ms = 20_000): Promise<T> => {
    const end = Date.now() + ms;
    for (;;) {
      const v = probe();
      if (v !== undefined) return v;
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}; seen ${JSON.stringify(seen.map((s) => [s.r.containerName, s.r.ruleId, s.r.action?.type, s.r.action?.result]))}`);
      await new Promise<void>((r) => {
        wake = r;
        setTimeout(r, 100);
      });
    }
  };
  const reportFor = (name: string, pred: (s: Seen) => boolean = () => true) => seen.find((s) => s.r.containerName === name && pred(s));
  const inspect = async (name: string) => JSON.parse(await engine.dockerOk(['inspect', name]))[0] as {
    State: { Running: boolean; Paused: boolean; Status: string }; HostConfig: { Memory: number; PidsLimit: number | null; MemorySwap: number };
    NetworkSettings: { Networks: Record<string, unknown> }; RestartCount: number;
  };
  const runDetached = (name: string, action: string, extra: string[] = [], network = 'none') =>
    engine.dockerOk(['run', '-d', '--name', name, '--network', network, ...LABEL_ARGS, '--label', `bk.action=${action}`, ...extra, engine.image, 'sleep', '300']);
  const latencies: Array<[string, number]> = [];

  await t.test('kill → not running', async (t) => {
    const name = `bk-enf-kill-${uniq}`;
    await runDetached(name, 'kill');
    const s = await waitFor('kill report', () => reportFor(name));
    t.same([s.r.ruleId, s.r.action?.type, s.r.action?.result, s.r.source], ['e2e.kill', 'kill', 'ok', 'reaction']);
    t.equal((await inspect(name)).State.Running, false);
    latencies.push(['kill', s.timing!.sinceEventMs]);
    t.comment(JSON.stringify(s.timing));
  });

  await t.test('stop (with timeout) → exited', async (t) => {
    const name = `bk-enf-stop-${uniq}`;
    await runDetached(name, 'stop');
    const s = await waitFor('stop report', () => reportFor(name));
    t.same([s.r.action?.type, s.r.action?.result], ['stop', 'ok']);
    t.match(s.r.action?.detail, /stop timeout 1s/);
    t.equal((await inspect(name)).State.Status, 'exited');
  });

  await t.test('pause → Paused', async (t) => {
    const name = `bk-enf-pause-${uniq}`;
    await runDetached(name, 'pause');
    const s = await waitFor('pause report', () => reportFor(name));
    t.same([s.r.action?.type, s.r.action?.result], ['pause', 'ok']);
    t.equal((await inspect(name)).State.Paused, true);
    latencies.push(['pause', s.timing!.sinceEventMs]);
    t.comment(JSON.stringify(s.timing));
  });

  await t.test('quarantine → disconnected from every network (internal network, no traffic sent)', async (t) => {
    const net = `bk-enf-q-${uniq}`;
    await engine.dockerOk(['network', 'create', '--internal', net]);
    const net2 = `${net}-2`;
    await engine.dockerOk(['network', 'create', '--internal', net2]);
    t.teardown(async () => {
      await removeLabelledContainers(engine);
      await engine.docker(['network', 'rm', net, net2]);
    });
    const name = `bk-enf-quar-${uniq}`;
    // Created (not started), attached to a second network, then started: the start event triggers the action.
    await engine.dockerOk(['create', '--name', name, '--network', net, ...LABEL_ARGS, '--label', 'bk.action=quarantine', engine.image, 'sleep', '300']);
    await engine.dockerOk(['network', 'connect', net2, name]);
    await engine.dockerOk(['start', name]);
    const s = await waitFor('quarantine report', () => reportFor(name, (x) => x.r.action?.type === 'quarantine' && x.r.action.result === 'ok'));
    t.match(s.r.action?.detail, /disconnected from 2\/2 network/);
    const after = await inspect(name);
    t.same(Object.keys(after.NetworkSettings.Networks ?? {}), [], 'no networks left');
    t.equal(after.State.Running, true, 'still running, isolated');
    // The resulting network_disconnect events re-evaluate it: nothing left to do, no second action.
    await new Promise((r) => setTimeout(r, 500));
    await enforcer.idle();
    t.equal(seen.filter((x) => x.r.containerName === name && x.r.action?.result === 'ok').length, 1);
  });

  await t.test('limit → HostConfig.Memory and PidsLimit set', async (t) => {
    const name = `bk-enf-limit-${uniq}`;
    await runDetached(name, 'limit', ['--memory', '512m']);
    const s = await waitFor('limit report', () => reportFor(name));
    t.same([s.r.action?.type, s.r.action?.result], ['limit', 'ok'], s.r.action?.error ?? '');
    const hc = (await inspect(name)).HostConfig;
    t.equal(hc.Memory, 96 * 1024 * 1024);
    t.equal(hc.PidsLimit, 64);
    t.equal((await inspect(name)).State.Running, true);
  });

  await t.test('alert and monitor: reported once, no engine action', async (t) => {
    const a = `bk-enf-alert-${uniq}`;
    const m = `bk-enf-mon-${uniq}`;
    await runDetached(a, 'alert');
    await runDetached(m, 'monitor');
    await waitFor('alert + monitor reports', () => (reportFor(a) && reportFor(m) ? true : undefined));
    enforcer.evaluateAll();
    await engine.dockerOk(['update', '--cpu-shares', '512', a, m]);
    await new Promise((r) => setTimeout(r, 500));
    await enforcer.idle();
    t.equal(seen.filter((x) => x.r.containerName === a).length, 1);
    t.equal(seen.filter((x) => x.r.containerName === m).length, 1);
    t.same(reportFor(m)!.r.action, { type: 'none', result: 'skipped', error: '', durationMs: 0, detail: 'monitor mode (in enforce mode: kill)' });
    t.equal((await inspect(a)).State.Running, true);
    t.equal((await inspect(m)).State.Running, true);
  });

  await t.test('env secret (needs the scan inspect) → stopped', async (t) => {
    const name = `bk-enf-secret-${uniq}`;
    await runDetached(name, 'secret', ['-e', 'DB_URL=postgres://app:Tr0ub4dor-3@db/app']);
    const s = await waitFor('secret report', () => reportFor(name));
    t.same([s.r.ruleId, s.r.action?.type, s.r.action?.result], ['e2e.secret', 'stop', 'ok']);
    t.notOk(JSON.stringify(s.r).includes('Tr0ub4dor'));
  });

  // dockerd does not restart a container killed through its API (kill cancels
  // the restart policy); what brings it back is a supervisor — a systemd unit,
  // a script, a dockerd restart. The test plays that supervisor.
  const superviseUntilEscalated = async (name: string, restart: (i: number) => Promise<void>) => {
    for (let i = 1; i <= 6; i++) {
      const s = await waitFor(`action #${i} on ${name}`, () => {
        const acted = seen.filter((x) => x.r.containerName === name && x.r.action?.result !== 'skipped');
        return acted.length >= i ? acted[i - 1] : undefined;
      });
      if (s.r.action?.result === 'escalated') return s;
      t.same([s.r.action?.type, s.r.action?.result], ['kill', 'ok'], `action #${i} is a kill`);
      await restart(i);
    }
    throw new Error('never escalated');
  };

  await t.test('restart-policy always + kill rule: capped and escalated to pause, not killed forever', async (t) => {
    const name = `bk-enf-loop-${uniq}`;
    await runDetached(name, 'loop', ['--restart', 'always']);
    await waitFor('first kill', () => reportFor(name));
    await new Promise((r) => setTimeout(r, 1000));
    const first = await inspect(name);
    t.equal(first.State.Running, false, 'killed');
    t.equal(first.RestartCount, 0, 'dockerd did not restart it: an API kill cancels the restart policy');
    const esc = await superviseUntilEscalated(name, async () => {
      await engine.dockerOk(['start', name]);
    });
    t.equal(esc.r.action?.type, 'pause');
    t.match(esc.r.action?.detail, /3 actions within 600s: escalated to pause/);
    t.equal(seen.filter((s) => s.r.containerName === name && s.r.action?.type === 'kill').length, 3, 'three kills, then the escalation');
    t.equal((await inspect(name)).State.Paused, true, 'paused by the escalation');
    // Nothing more happens to it, even on a sweep.
    enforcer.evaluateAll();
    await new Promise((r) => setTimeout(r, 500));
    await enforcer.idle();
    t.equal(seen.filter((s) => s.r.containerName === name && s.r.action?.result !== 'skipped').length, 4);
    t.same(enforcer.history(await engine.dockerOk(['inspect', '-f', '{{.Id}}', name])), { actions: 4, escalated: true });
  });

  await t.test('a supervisor re-creating the container under the same name is capped too', async (t) => {
    const name = `bk-enf-recreate-${uniq}`;
    await runDetached(name, 'loop');
    const esc = await superviseUntilEscalated(name, async () => {
      await engine.dockerOk(['rm', '-f', name]);
      await runDetached(name, 'loop');
    });
    t.equal(esc.r.action?.type, 'pause');
    t.match(esc.r.action?.detail, /on containers named/);
    t.equal((await inspect(name)).State.Paused, true);
  });

  t.comment(`reports: ${JSON.stringify(seen.map((s) => [(s.r.containerName ?? "").replace(/-[0-9]+-[a-z0-9]+$/, ''), s.r.action?.type, s.r.action?.result]))}`);
  t.comment(`reaction latency (engine event → action completed): ${latencies.map(([a, ms]) => `${a} ${ms.toFixed(1)} ms`).join(', ')}`);
});
