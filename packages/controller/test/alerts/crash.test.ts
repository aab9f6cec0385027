// Nothing is lost when the controller dies mid-delivery. The built
// controller runs as a real process (dist/cli/main.js serve); 1,000 alerts
// are queued in its outbox while it is down, more arrive through the API
// while it delivers, it is SIGKILLed once the receiver has seen a few
// hundred, and restarted. Afterwards the receiver must have every alert
// (unique webhook-ids == alerts), every request signed, and any duplicate
// must repeat the same webhook-id with the same alert.
import t from 'tap';
import { request } from 'node:https';
import { join } from 'node:path';
import { createLogger } from '@bulkhead/shared';
import { AlertService } from '../../src/alerts/alert-service';
import { openStore } from '../../src/store/open-store';
import { startController, tempRoot } from '../../../../test/e2e/stack';
import { Receiver } from './fixtures/receiver';

const QUEUED = 1000;
const VIA_API = 100;

// Short schedules for the controller process (it inherits this environment).
Object.assign(process.env, {
  BULKHEAD_WEBHOOK_RETRY_SCHEDULE: '200ms,200ms,500ms,1s,1s,2s,2s,5s',
  BULKHEAD_WEBHOOK_TIMEOUT: '2s',
  BULKHEAD_WEBHOOK_LEASE: '3s',
  BULKHEAD_WEBHOOK_POLL_INTERVAL: '100ms',
  BULKHEAD_WEBHOOK_JITTER: '0',
  // Few in flight, so the kill lands with most of the backlog still queued.
  BULKHEAD_WEBHOOK_WORKERS: '2',
  BULKHEAD_WEBHOOK_BATCH: '4',
  BULKHEAD_LOG_LEVEL: 'info',
});

function call(base: string, caPem: string, key: string, method: string, path: string, body?: unknown): Promise<{ status: number; json: any }> { // eslint-disable-line @typescript-eslint/no-explicit-any
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : JSON.stringify(body);
    const req = request(new URL(path, base), { method, ca: caPem, headers: { authorization: `Bearer ${key}`, ...(data ? { 'content-type': 'application/json' } : {}) } }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, json: text ? JSON.parse(text) : undefined }));
    });
    req.on('error', reject);
    req.end(data);
  });
}

t.test('SIGKILL mid-delivery: after restart every alert arrives; duplicates share a webhook-id', async (t) => {
  const root = tempRoot();
  t.teardown(() => root.cleanup());
  const rx = await Receiver.start();
  t.teardown(() => rx.close());
  // Slow enough that a few hundred deliveries are in progress or queued at the kill.
  rx.reply = () => ({ status: 204, delayMs: 25 });

  const ctl = await startController(root.dir);
  t.teardown(() => ctl.stop());
  const created = await call(ctl.apiBase, ctl.caPem, ctl.adminKey, 'POST', '/v1/webhooks', { url: rx.url, name: 'crash-test' });
  t.equal(created.status, 201);
  const webhookId = created.json.id as string;
  rx.secrets = [created.json.secret as string];

  // 1. While the controller is down, queue QUEUED alerts in its outbox (the real raise path, same DB file).
  await ctl.restart(async () => {
    const store = await openStore({ kind: 'sqlite', path: join(ctl.dataDir, 'bulkhead.db') });
    const alerts = new AlertService({ store: store.alerts!, logger: createLogger({ name: 'crash-test', level: 'silent' }) });
    const results = await Promise.all(
      Array.from({ length: QUEUED }, (_, i) => alerts.raise({ type: 'violation', severity: 'high', message: `finding ${i}`, ruleId: `rule-${i}`, agentId: 'agt_crash', containerId: `c${i}` })),
    );
    t.equal(results.filter((r) => r.deliveries === 1).length, QUEUED, `${QUEUED} alerts queued with one delivery each`);
    await store.close();
  });

  // 2. It delivers the backlog as soon as it is up; more arrive through the API meanwhile.
  const viaApi = (async () => {
    for (let i = 0; i < VIA_API; i++) {
      const r = await call(ctl.apiBase, ctl.caPem, ctl.adminKey, 'POST', `/v1/webhooks/${webhookId}/test`, { message: `api ${i}` }).catch(() => ({ status: 0, json: undefined }));
      if (r.status !== 202 && r.status !== 200) return i; // the kill cut us off
    }
    return VIA_API;
  })();
  await rx.waitFor(() => rx.received.length >= 300, 30_000, '300 requests before the kill');

  // 3. SIGKILL: no shutdown hooks, leases and in-flight requests abandoned.
  await ctl.daemon.stop('SIGKILL');
  const beforeKill = rx.received.length;
  const sentViaApi = await viaApi;
  t.ok(beforeKill < QUEUED + sentViaApi, `killed mid-delivery (${beforeKill} requests received so far)`);

  // 4. Restart; everything still owed goes out.
  await ctl.restart();
  await rx.waitFor(() => rx.deliveredIds().size >= QUEUED + sentViaApi, 90_000, `${QUEUED + sentViaApi} unique webhook-ids`);
  // Let stragglers (re-sent after a lapsed lease) arrive before counting duplicates.
  await new Promise((r) => setTimeout(r, 500));
  // The API call in flight at the kill may have raised its alert (committed)
  // with the answer lost on the way: the controller then owes it too, so it
  // counts when it arrived. Any other API alert arriving would be one raised
  // twice or out of nowhere.
  const apiSeen = new Set(rx.received.map((r) => (r.json as { data: { message: string } }).data.message).filter((m) => m.startsWith('api ')));
  const inFlight = sentViaApi < VIA_API && apiSeen.has(`api ${sentViaApi}`) ? 1 : 0;
  for (let i = 0; i < sentViaApi; i++) if (!apiSeen.has(`api ${i}`)) t.fail(`api ${i} (answered 202) never arrived`);
  t.equal(apiSeen.size, sentViaApi + inFlight, `API alerts received: the ${sentViaApi} answered${inFlight ? ' and the one in flight at the kill' : ''}`);
  const expected = QUEUED + sentViaApi + inFlight;
  if (inFlight) await rx.waitFor(() => rx.deliveredIds().size >= expected, 30_000, `${expected} unique webhook-ids`);

  const ids = rx.deliveredIds();
  t.equal(ids.size, expected, `unique webhook-ids (${ids.size}) == alerts raised (${expected})`);
  t.ok(rx.received.every((r) => r.verifiedBy.length === 1), 'every request verifies with standardwebhooks');
  // A duplicate is the same message again: same webhook-id, same alert.
  const alertOf = new Map<string, string>();
  let dupes = 0;
  const mismatched: string[] = [];
  for (const r of rx.received) {
    const alertId = (r.json as { data: { id: string } }).data.id;
    const seen = alertOf.get(r.id);
    if (seen === undefined) alertOf.set(r.id, alertId);
    else {
      dupes++;
      if (seen !== alertId) mismatched.push(r.id);
    }
  }
  t.same(mismatched, [], `each of the ${dupes} duplicates repeats its webhook-id with the same alert`);
  const alertIds = new Set(alertOf.values());
  t.equal(alertIds.size, expected, 'one webhook-id per alert');
  const messages = new Set(rx.received.map((r) => (r.json as { data: { message: string } }).data.message));
  for (let i = 0; i < QUEUED; i++) if (!messages.has(`finding ${i}`)) t.fail(`finding ${i} never arrived`);
  t.comment(`received ${rx.received.length} requests for ${expected} alerts: ${dupes} duplicates (re-sent after the kill), ${beforeKill} before the kill`);

  // The controller agrees: nothing pending, nothing dead.
  const w = await call(ctl.apiBase, ctl.caPem, ctl.adminKey, 'GET', `/v1/webhooks/${webhookId}`);
  t.match(w.json.stats, { pending: 0, delivered: expected, dead: 0 });
});
