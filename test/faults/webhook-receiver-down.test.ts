// Fault: the webhook receiver is down for "10 minutes" while violations keep raising alerts;
// afterwards 100 % must be delivered, each alert once (receivers de-duplicate on webhook-id).
//
// Time is compressed 60x: the receiver is down for 10 s instead of 10 min, and the
// controller's retry schedule is the default one divided by 60 —
// BULKHEAD_WEBHOOK_RETRY_SCHEDULE=83ms,5s,30s,2m,5m,10m,10m instead of 5s,5m,30m,2h,5h,10h,10h
// (jitter ±20 %, the default, kept). Not compressed: the endpoint's in-memory pause after a
// failure (1 s doubling to 60 s, capped by the failed delivery's own wait), which bounds how
// soon the first attempt after the outage goes out. Everything else is real and at its own speed: the
// controller and agent processes, a real engine, a real HTTP receiver on loopback whose
// listening socket is closed (connection refused) while it is down.
import t from 'tap';
import { recordFault } from '../helpers/fault-report';
import { removeLabelledContainers, useEngine } from '../helpers/engine';
import { waitFor } from '../helpers/processes';
import { WebhookReceiver, createWebhook, listAll, putPolicy, runContainer, testLabels, type ControllerAlert, rootPolicy } from '../helpers/fault-harness';
import { enrollAgent, startController, tempRoot } from '../e2e/stack';

const COMPRESSION = 60;
const DOWN_MS = 600_000 / COMPRESSION;
const SCHEDULE = ['5s', '5m', '30m', '2h', '5h', '10h', '10h'];
const COMPRESSED = '83ms,5s,30s,2m,5m,10m,10m';

const POLICY = rootPolicy('faults-webhook-down', 'monitor');

t.test(`webhook receiver down for 10 min (compressed ${COMPRESSION}x to ${DOWN_MS / 1000} s)`, async (t) => {
  t.equal(SCHEDULE.length, COMPRESSED.split(',').length, 'the compressed schedule has as many steps as the default');
  const engine = await useEngine(t);
  t.teardown(() => removeLabelledContainers(engine).then(() => undefined));
  const root = tempRoot();
  t.teardown(root.cleanup);
  const receiver = await WebhookReceiver.start();
  t.teardown(() => receiver.down());
  const ctl = await startController(root.dir, { heartbeatInterval: '500ms', offlineAfter: '3s', env: { BULKHEAD_WEBHOOK_RETRY_SCHEDULE: COMPRESSED } });
  t.teardown(() => ctl.stop());
  await createWebhook(ctl, receiver.url);
  const version = await putPolicy(ctl, POLICY);
  const agent = await enrollAgent(ctl, root.dir, 'agent', engine.dockerHost);
  agent.start();
  t.teardown(() => agent.stop());
  await waitFor('agent applied the policy', async () => {
    const r = await ctl.get<{ status: string; policy: { version: number; applied: boolean } | null }>(`/v1/agents/${agent.agentId}`);
    return r.body.status === 'online' && r.body.policy?.version === version && r.body.policy.applied;
  }, 30_000);

  const started: string[] = [];
  const start = async (tag: string, i: number): Promise<void> => {
    started.push(await runContainer(engine.socketPath, `wd-${process.pid}-${tag}-${i}`, testLabels({ fault: 'bad' })));
  };
  const alertsOfOurs = async (): Promise<ControllerAlert[]> =>
    (await listAll<ControllerAlert>(ctl, `/v1/alerts?agent=${agent.agentId}`)).filter((a) => a.ruleId === 'faults.root' && a.containerId !== null && started.includes(a.containerId));

  // Before: the receiver takes alerts.
  for (let i = 0; i < 3; i++) await start('before', i);
  await waitFor('first alerts delivered', async () => (await alertsOfOurs()).length === 3 && receiver.alertIds().size >= 3, 30_000, 200);

  // Down: alerts keep coming, one container every 400 ms.
  await receiver.down();
  const downAt = Date.now();
  let i = 0;
  while (Date.now() - downAt < DOWN_MS) {
    await start('down', i++);
    await new Promise((r) => setTimeout(r, 400));
  }
  const whileDown = i;
  // Every alert raised while down is in the outbox before the receiver comes back.
  await waitFor('alerts raised while down', async () => (await alertsOfOurs()).length === started.length, 30_000, 200);
  const attemptsWhileDown = receiver.received.length;
  await receiver.up();
  const upAt = Date.now();
  t.comment(`receiver down ${upAt - downAt} ms; ${whileDown} containers broke the rule meanwhile`);

  // After: 100 % delivered. Budget: the longest compressed wait (30 s x 1.2) plus slack.
  const all = await alertsOfOurs();
  const ids = new Set(all.map((a) => a.id));
  const missing = (): string[] => [...ids].filter((id) => !receiver.alertIds().has(id));
  await receiver.waitUntil('every alert delivered', () => missing().length === 0, 60_000).catch(() => undefined);
  const recoverMs = Date.now() - upAt;
  const deliveredIds = [...ids].filter((id) => receiver.alertIds().has(id)).length;
  t.same(missing(), [], `every alert delivered after the receiver came back (${deliveredIds}/${ids.size}, ${recoverMs} ms after it was up)`);
  t.equal(all.length, started.length, 'one alert per breaking container');
  t.ok(all.every((a) => a.count === 1), 'no alert counted a repeat');
  const perAlert = new Map<string, number>();
  for (const w of receiver.byWebhookId.values()) perAlert.set(w.alertId, (perAlert.get(w.alertId) ?? 0) + 1);
  const dupDeliveries = [...perAlert.values()].filter((n) => n > 1).length;
  t.equal(dupDeliveries, 0, 'no alert went out under two delivery ids');
  const deliveries = await listAll<{ status: string; attempts: number }>(ctl, `/v1/webhooks/${(await ctl.get<{ items: Array<{ id: string }> }>('/v1/webhooks')).body.items[0]!.id}/deliveries?`);
  const dead = deliveries.filter((d) => d.status === 'dead').length;
  t.equal(dead, 0, 'nothing dead-lettered');
  const expedited = ctl.daemon.lines.some((l) => l['msg'] === 'webhook endpoint answers again: its waiting deliveries are due now');
  // Compressed, the endpoint's pause (set by the last failed attempt: its own 30 s wait) ends
  // when most deliveries are due anyway, so the expedite of the rest may find nothing to do.
  t.comment(`the first success ${expedited ? 'made waiting deliveries due at once' : 'found no delivery still waiting'}`);
  t.comment(`deliveries: ${deliveries.length}, max attempts ${Math.max(...deliveries.map((d) => d.attempts))}; attempts refused while down: n/a (socket closed), receiver requests ${receiver.received.length} (${attemptsWhileDown} before it came back)`);

  recordFault({
    fault: `webhook receiver down 10 min (compressed ${COMPRESSION}x: ${DOWN_MS / 1000} s, retry schedule ${COMPRESSED})`,
    injected: 1,
    items: 'alerts (one per breaking container) → webhook',
    produced: ids.size,
    delivered: deliveredIds,
    lost: ids.size - deliveredIds,
    duplicates: dupDeliveries,
    recoverMs: missing().length === 0 ? recoverMs : null,
    note: `bounded by the endpoint's pause after its last failure (real time, ≤ 60 s, capped by that delivery's compressed 30 s wait)${expedited ? '; the rest made due by the first success' : ''}; ${receiver.redeliveries} re-sends of a received id`,
  });
});
