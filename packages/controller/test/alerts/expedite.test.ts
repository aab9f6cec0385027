// An endpoint that answers again after an outage gets its backed-off deliveries at once: each
// one no longer waits out its own next retry (30 min or 2 h into the default schedule after a
// 10-minute outage). (Found by test/faults/webhook-receiver-down.test.ts: a 10-minute outage
// took ~28 minutes to recover from at the real schedule.)
import t from 'tap';
import type { SendRequest, SendResult } from '../../src/alerts/http-sender';
import { eventually, startAlerting } from './fixtures/alerting';

t.test('a recovered endpoint gets its waiting deliveries at once', async (t) => {
  let up = false;
  const sent: string[] = [];
  const sender = {
    send: async (req: SendRequest): Promise<SendResult> => {
      sent.push(String(req.headers['webhook-id']));
      return up
        ? { status: 204, headers: {}, latencyMs: 1, error: null, unsafeTarget: false, bodySnippet: '' }
        : { status: null, headers: {}, latencyMs: 1, error: 'connect ECONNREFUSED 127.0.0.1:9', unsafeTarget: false, bodySnippet: '' };
    },
    close: () => undefined,
  };
  // The retry an hour away: only the expedite can deliver within the test.
  const a = await startAlerting({ sender, options: { retrySchedule: '1h,1h', jitter: 0, pollInterval: '50ms' } });
  t.teardown(a.close);
  const { endpoint } = await a.alerting.webhooks.create({ url: 'http://127.0.0.1:9/hook', allowUnsafeTarget: true });
  const deliveries = () => a.store.alerts!.listDeliveries({ endpointId: endpoint.id });

  for (let i = 0; i < 3; i++) await a.alerting.alerts.raise({ type: 'violation', message: `finding ${i}`, containerId: `c${i}`, ruleId: 'r' });
  // The endpoint is paused 1 s, 2 s, 4 s after its failures: ~7 s for the three.
  await eventually('each failed once and waits an hour', async () => {
    const ds = await deliveries();
    return ds.length === 3 && ds.every((d) => d.status === 'pending' && d.attempts === 1 && d.nextAttemptAt.getTime() > Date.now() + 3_000_000);
  }, 30_000);

  up = true;
  const t0 = Date.now();
  await a.alerting.alerts.raise({ type: 'violation', message: 'finding after the outage', containerId: 'c9', ruleId: 'r' });
  await eventually('all delivered', async () => (await deliveries()).every((d) => d.status === 'delivered'), 10_000);
  t.ok(Date.now() - t0 < 10_000, `the three waiting deliveries went out ${Date.now() - t0} ms after the endpoint answered, not an hour later`);
  t.equal((await deliveries()).length, 4);
  t.match(a.logs(), /its waiting deliveries are due now/, 'logged');
});
