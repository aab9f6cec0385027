// Fault: the controller is SIGKILLed 10 times while containers start and stop as fast as the
// engine goes (target 20 a second) on a real engine and a quarter of them break an
// enforce-mode rule (the agent kills them).
// Afterwards:
//   - the controller's inventory of the agent equals the engine's (same containers, same states);
//   - every breaking container has exactly one violation at the controller (ids are unique),
//     exactly one alert for it, and that alert reached the webhook receiver (deduplicated by
//     webhook-id; re-sends of the same delivery are counted, not treated as loss).
// Before Bulkhead starts, the same churn runs alone for BARE_MS: what the engine sustains on
// this machine without an agent or controller (2 cores: ~0.26 CPU-s of dockerd + containerd +
// shims per container, so well under 20/s; RELIABILITY.md). Both rates are reported.
// Real processes: the built controller and agent, a real dockerd (the shared test engine, or a
// private one), a real HTTP receiver on loopback.
import t from 'tap';
import { recordFault } from '../helpers/fault-report';
import { FILE_LABEL, removeLabelledContainers, useEngine } from '../helpers/engine';
import { waitFor } from '../helpers/processes';
import {
  WebhookReceiver, churn, createWebhook, engineContainers, listAll, putPolicy,
  type ControllerAlert, type ControllerContainer, type ControllerViolation,
  rootPolicy,
} from '../helpers/fault-harness';
import { enrollAgent, startController, tempRoot } from '../e2e/stack';

const KILLS = 10;
/** Containers started per second asked for (issue 12); the engine here sustains less, and the churn then runs flat out. */
const RATE = 20;
/** Containers being created/started at once (a bounded pool; more only lengthens each start on 2 cores). */
const POOL = 12;
/** How long the churn runs alone (no agent, no controller) to measure the engine's own rate. */
const BARE_MS = 10_000;
const KILL_GAP_MS = 500;
const RECONNECT_WAIT_MS = 8_000;
/** The kills stop after this long even if fewer than KILLS happened (a loaded machine boots slowly); the report says how many. */
const KILL_PHASE_MS = 90_000;
const DOWN_MS = 300;

const POLICY = rootPolicy('faults-kill-controller', 'enforce');

t.test('controller SIGKILLed 10x during container churn', async (t) => {
  const engine = await useEngine(t);
  t.teardown(() => removeLabelledContainers(engine).then(() => undefined));

  // The engine's own rate on this machine now: the same churn, nothing of Bulkhead running.
  const bareWork = churn({ socketPath: engine.socketPath, ratePerSec: RATE, lifetimeMs: 2_000, badEvery: 4, prefix: `fk-bare-${process.pid}`, concurrency: POOL });
  await new Promise((r) => setTimeout(r, BARE_MS));
  const bare = await bareWork.stop();
  await removeLabelledContainers(engine);
  const bareRate = (bare.started.length * 1000) / bare.elapsedMs;
  t.comment(`bare engine: ${bare.started.length} containers started in ${bare.elapsedMs} ms (${bareRate.toFixed(1)}/s), ${bare.failed.length} failed`);
  t.equal(bare.failed.length, 0, `the bare churn ran without failures: ${bare.failed.slice(0, 3).join('; ')}`);
  const root = tempRoot();
  t.teardown(root.cleanup);
  const receiver = await WebhookReceiver.start();
  t.teardown(() => receiver.down());

  const ctl = await startController(root.dir, {
    heartbeatInterval: '500ms',
    offlineAfter: '3s',
    // A delivery claimed by a controller that is then killed waits out its lease: 4 s instead of 30 s.
    env: { BULKHEAD_WEBHOOK_TIMEOUT: '2s', BULKHEAD_WEBHOOK_LEASE: '4s' },
  });
  t.teardown(() => ctl.stop());
  await createWebhook(ctl, receiver.url);
  const version = await putPolicy(ctl, POLICY);

  const agent = await enrollAgent(ctl, root.dir, 'agent', engine.dockerHost, ['--reconcile-interval', '2s']);
  agent.start();
  t.teardown(() => agent.stop());
  await waitFor('agent applied the policy', async () => {
    const r = await ctl.get<{ status: string; policy: { version: number; applied: boolean } | null }>(`/v1/agents/${agent.agentId}`);
    return r.body.status === 'online' && r.body.policy?.version === version && r.body.policy.applied;
  }, 30_000);

  // The workload, and the faults on top of it.
  const prefix = `fk-${process.pid}`;
  const work = churn({ socketPath: engine.socketPath, ratePerSec: RATE, lifetimeMs: 2_000, badEvery: 4, prefix, concurrency: POOL });
  const restartMs: number[] = [];
  /** Per kill: new process spawned → `controller ready`; of it, node start + module loading; ready → the agent's next stream. */
  const spawnToReady: number[] = [];
  const moduleLoad: number[] = [];
  const agentLag: number[] = [];
  // The agent's link state as its log last said it.
  const lastLinkState = (): string => {
    for (let j = agent.daemon.lines.length - 1; j >= 0; j--) {
      const m = agent.daemon.lines[j]!['msg'];
      if (m === 'connected to controller') return 'connected';
      if (m === 'controller link down') return 'down';
    }
    return 'unknown';
  };
  const phaseEnd = Date.now() + KILL_PHASE_MS;
  const connectedCount = (): number => agent.daemon.lines.filter((l) => l['msg'] === 'connected to controller').length;
  let onLiveStream = 0;
  for (let i = 0; i < KILLS && Date.now() < phaseEnd; i++) {
    // The next kill comes KILL_GAP_MS after the agent reconnected (waited for at most
    // RECONNECT_WAIT_MS: its back-off may be longer), so most kills land on a live stream
    // carrying deltas and violation reports, some on the agent still in its back-off.
    if (i > 0) await waitFor('agent reconnected', async () => lastLinkState() === 'connected', RECONNECT_WAIT_MS, 100).catch(() => undefined);
    await new Promise((r) => setTimeout(r, KILL_GAP_MS));
    if (lastLinkState() === 'connected') onLiveStream++;
    const killedAt = Date.now();
    const connectsBefore = connectedCount();
    ctl.daemon.child.kill('SIGKILL');
    await ctl.restart(() => new Promise((r) => setTimeout(r, DOWN_MS)));
    restartMs.push(Date.now() - killedAt);
    // Where the time went: spawned (after the old process was reaped and DOWN_MS), the new
    // process's start-up phases (startupMs, ms since it started), then the agent's next stream.
    const ready = ctl.daemon.lines.find((l) => l['msg'] === 'controller ready')!;
    const spawnedAt = ctl.lastLaunch!.spawnedAt;
    const phases = (ready['startupMs'] ?? {}) as Record<string, number>;
    spawnToReady.push(Number(ready['time']) - spawnedAt);
    moduleLoad.push(phases['main'] ?? 0);
    const reconnected = await waitFor('agent reconnected', async () => agent.daemon.lines.filter((l) => l['msg'] === 'connected to controller')[connectsBefore], RECONNECT_WAIT_MS, 50).catch(() => undefined);
    if (reconnected) agentLag.push(Number(reconnected['time']) - Number(ready['time']));
    // The agent's link since the kill: each failed attempt and the back-off it chose.
    const linkSince = agent.daemon.lines.filter((l) => Number(l['time']) >= killedAt && /controller link down|connected to controller/.test(String(l['msg'])))
      .map((l) => `+${Number(l['time']) - killedAt} ${l['msg'] === 'connected to controller' ? 'connected' : `${String(l['code'])} retry ${String(l['retryInMs'])}`}`);
    t.comment(`kill ${i + 1}: controller serving again after ${restartMs[i]} ms: spawned +${spawnedAt - killedAt}, ready +${Number(ready['time']) - killedAt} (start-up ms ${JSON.stringify(phases)}); agent reconnected ${reconnected ? `+${Number(reconnected['time']) - killedAt}` : `not within ${RECONNECT_WAIT_MS} ms`} (link: ${linkSince.join(', ')})`);
  }
  const injected = restartMs.length;
  const connects = connectedCount();
  const stats = await work.stop();
  const producedAt = Date.now();
  const churnRate = (stats.started.length * 1000) / stats.elapsedMs;
  t.comment(`churn: ${stats.started.length} containers started in ${stats.elapsedMs} ms (${churnRate.toFixed(1)}/s; the bare engine ${bareRate.toFixed(1)}/s), ${stats.removed} removed, ${stats.failed.length} failed; controller serving again ${range(restartMs)} ms after each kill (spawn to ready ${range(spawnToReady)} ms, of it node start + modules ${range(moduleLoad)} ms); agent reconnected ${range(agentLag)} ms after ready; agent streams opened: ${connects}`);
  t.equal(stats.failed.length, 0, `no create/start/rm failed: ${stats.failed.slice(0, 3).join('; ')}`);
  // A controller start-up is ~0.55 CPU-s (Node start + modules ~0.35 of it); beside the churn
  // on 2 cores it is back 2-7 s after a kill and all 10 kills fit; on a machine loaded by
  // other work too it can be 10 s and more, and the report says how many kills there were.
  if (injected < KILLS) t.comment(`only ${injected} of ${KILLS} kills fit in ${KILL_PHASE_MS / 1000} s (controller back ${Math.max(...restartMs)} ms after a kill at worst)`);
  t.ok(injected >= 3, `at least 3 kills (${injected})`);
  t.ok(stats.started.length >= 50, `the churn ran (${stats.started.length} started)`);

  const bad = stats.started.filter((c) => c.bad);
  const badIds = new Set(bad.map((c) => c.id));

  // Inventory: the controller's view of this agent equals the engine's, once settled.
  const inventoryDiff = async (): Promise<string[]> => {
    const eng = new Map((await engineContainers(engine.socketPath, FILE_LABEL)).map((c) => [c.id, c.state]));
    // The agent reports every container of the engine; compare this file's (the shared engine has others').
    const mine = (await listAll<ControllerContainer>(ctl, `/v1/containers?agent=${agent.agentId}&label=${encodeURIComponent(FILE_LABEL)}`)).filter((c) => !c.removed);
    const ctlMap = new Map(mine.map((c) => [c.id, c.state]));
    const diff: string[] = [];
    for (const [id, st] of eng) if (ctlMap.get(id) !== st) diff.push(`${id.slice(0, 12)} engine ${st}, controller ${ctlMap.get(id) ?? 'missing'}`);
    for (const [id, st] of ctlMap) if (!eng.has(id)) diff.push(`${id.slice(0, 12)} engine missing, controller ${st}`);
    return diff;
  };
  let lastDiff: string[] = [];
  const inventoryOk = await waitFor('inventory equal', async () => ((lastDiff = await inventoryDiff()).length === 0 ? true : undefined), 40_000, 500).catch(() => false);
  const inventoryAt = Date.now();
  t.comment(`inventory settled: ${inventoryOk} after ${inventoryAt - producedAt} ms`);
  t.ok(inventoryOk, `controller inventory equals the engine's (${lastDiff.length} differ: ${lastDiff.slice(0, 5).join('; ')})`);
  if (!inventoryOk) {
    // What the agent and the controller said about the first container that differs.
    const id12 = lastDiff[0]!.slice(0, 12);
    const said = (lines: Record<string, unknown>[]) => lines.filter((l) => JSON.stringify(l).includes(id12)).map((l) => `${String(l['time'])} ${String(l['msg'])} ${String(l['action'] ?? l['kind'] ?? '')}`);
    t.comment(`agent about ${id12}:\n${said(agent.daemon.lines).join('\n')}`);
    t.comment(`agent link:\n${agent.daemon.lines.filter((l) => /controller|snapshot|reconcile/.test(String(l['msg']))).slice(-40).map((l) => `${String(l['time'])} ${String(l['msg'])} ${String(l['containers'] ?? l['reason'] ?? '')}`).join('\n')}`);
  }

  // Violations, alerts, deliveries: one each per breaking container.
  const check = async () => {
    const violations = (await listAll<ControllerViolation>(ctl, `/v1/violations?agent=${agent.agentId}&rule=faults.root`)).filter((v) => badIds.has(v.containerId));
    const alerts = (await listAll<ControllerAlert>(ctl, `/v1/alerts?agent=${agent.agentId}`)).filter((a) => a.containerId !== null && badIds.has(a.containerId) && a.ruleId === 'faults.root');
    const delivered = receiver.alertIds();
    const vBy = countBy(violations.map((v) => v.containerId));
    const aBy = countBy(alerts.map((a) => a.containerId ?? ''));
    const complete = bad.filter((c) => vBy.get(c.id) === 1 && aBy.get(c.id) === 1 && alerts.some((a) => a.containerId === c.id && delivered.has(a.id)));
    return { violations, alerts, vBy, aBy, complete, delivered };
  };
  let last = await check();
  await waitFor('every violation alerted and delivered', async () => ((last = await check()).complete.length === bad.length ? true : undefined), 40_000, 500).catch(() => undefined);
  const deliveredAt = Date.now();
  // Read once every violation is in: each carries its kill's result, so a breaking container
  // still running now was never stopped (read right after the inventory settled, the last few
  // breaking containers could still be in the agent's hands — a false failure under load).
  const engineNow = await engineContainers(engine.socketPath, FILE_LABEL);

  const noViolation = bad.filter((c) => !last.vBy.has(c.id));
  const dupViolations = [...last.vBy.values()].filter((n) => n > 1).reduce((s, n) => s + n - 1, 0);
  const noAlert = bad.filter((c) => last.vBy.has(c.id) && !last.aBy.has(c.id));
  const dupAlerts = [...last.aBy.values()].filter((n) => n > 1).reduce((s, n) => s + n - 1, 0);
  const undelivered = last.alerts.filter((a) => !last.delivered.has(a.id));
  const actionTypes = countBy(last.violations.map((v) => `${v.action?.type ?? 'none'}:${v.action?.result ?? ''}`));
  t.comment(`bad containers ${bad.length}; violations ${last.violations.length} (${[...actionTypes].map(([k, n]) => `${k} ${n}`).join(', ')}); alerts ${last.alerts.length}; webhook requests ${receiver.received.length} (${receiver.redeliveries} re-sends of a delivered id)`);
  t.same(noViolation.map((c) => c.name), [], 'every breaking container has a violation at the controller');
  t.equal(dupViolations, 0, 'no breaking container has two violations');
  t.same(noAlert.map((c) => c.name), [], 'every violation raised an alert');
  t.equal(dupAlerts, 0, 'no violation raised two alerts');
  t.same(undelivered.map((a) => a.id), [], 'every alert reached the webhook receiver');
  const killedOk = last.violations.filter((v) => v.action?.type === 'kill').length;
  t.equal(killedOk, last.violations.length, 'every violation records the kill action');
  const stillRunningBad = engineNow.filter((c) => c.labels['fault'] === 'bad' && c.state === 'running');
  t.same(stillRunningBad.map((c) => c.name), [], 'no breaking container is left running');

  const inventoryLost = lastDiff.length;
  recordFault({
    fault: `controller SIGKILL x${injected} during churn (flat out, ≤ ${RATE}/s): inventory`,
    injected,
    items: 'containers started (final state compared with the engine)',
    produced: stats.started.length,
    delivered: stats.started.length - inventoryLost,
    lost: inventoryLost,
    recoverMs: inventoryOk ? inventoryAt - producedAt : null,
    note: `${onLiveStream} of ${injected} kills on a live agent stream; ${churnRate.toFixed(1)} containers/s reached (the bare engine: ${bareRate.toFixed(1)}/s); controller back ${range(restartMs)} ms after a kill (its start-up ${range(spawnToReady)} ms), agent reconnected ${range(agentLag)} ms after that`,
  });
  const lost = noViolation.length + noAlert.length + undelivered.length;
  recordFault({
    fault: `controller SIGKILL x${injected} during churn (flat out, ≤ ${RATE}/s): violations, alerts, webhooks`,
    injected,
    items: 'breaking containers → violation → alert → webhook',
    produced: bad.length,
    delivered: last.complete.length,
    lost,
    duplicates: dupViolations + dupAlerts,
    recoverMs: last.complete.length === bad.length ? deliveredAt - producedAt : null,
    note: `${receiver.redeliveries} webhook re-sends of an already received delivery id (at-least-once)`,
  });
});

function range(xs: number[]): string {
  return xs.length === 0 ? 'n/a' : `${Math.min(...xs)}-${Math.max(...xs)}`;
}

function countBy(xs: string[]): Map<string, number> {
  const m = new Map<string, number>();
  for (const x of xs) m.set(x, (m.get(x) ?? 0) + 1);
  return m;
}
