// Head-of-line blocking in webhook delivery, with real receivers on
// 127.0.0.1: 80 endpoints whose receivers accept the connection and never
// answer, and one healthy endpoint. Before, the workers' batches filled with
// the dead endpoints and the healthy delivery waited for their 10 s
// timeouts; now each attempt runs on its own and an endpoint that has not
// answered gets one attempt at a time, so the healthy one is not delayed.
import t from 'tap';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { Receiver } from '../../packages/controller/test/alerts/fixtures/receiver';
import { eventually, startAlerting } from '../../packages/controller/test/alerts/fixtures/alerting';
import { recordBadInput } from '../helpers/bad-input-report';

async function blackHole(): Promise<{ server: Server; url: string; sockets: Set<Socket> }> {
  const sockets = new Set<Socket>();
  const server = createServer((s) => {
    sockets.add(s);
    s.on('error', () => undefined);
    s.on('close', () => sockets.delete(s));
    s.resume(); // read the request, never answer
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, sockets, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook` };
}

t.test('a healthy endpoint is not delayed by 80 receivers that never answer', async (t) => {
  // Real schedule timings: a 10 s attempt timeout, as in production.
  const a = await startAlerting({ options: { timeout: '10s', lease: '30s', workers: 4, retrySchedule: '5s,5m' } });
  const holes = await Promise.all(Array.from({ length: 80 }, () => blackHole()));
  const rx = await Receiver.start();
  t.teardown(async () => {
    await a.close();
    await rx.close();
    for (const h of holes) {
      for (const s of h.sockets) s.destroy();
      await new Promise<void>((r) => h.server.close(() => r()));
    }
  });

  // The dead endpoints are created first, so their deliveries are older and claimed first.
  for (const h of holes) await a.alerting.webhooks.create({ url: h.url, allowUnsafeTarget: true });
  const healthy = (await a.alerting.webhooks.create({ url: rx.url, allowUnsafeTarget: true })).endpoint;

  for (let i = 0; i < 3; i++) {
    const started = Date.now();
    const before = rx.received.length;
    const r = await a.alerting.alerts.raise({ type: 'violation', severity: 'high', message: `privileged container ${i}`, agentId: 'agt_1', ruleId: `rule-${i}`, containerId: String(i).repeat(64), containerName: `web-${i}` });
    t.equal(r.deliveries, 81, `alert ${i}: one delivery per endpoint`);
    await rx.waitFor(() => rx.received.length > before);
    const ms = Date.now() - started;
    t.ok(ms < 1500, `alert ${i}: the healthy endpoint got its delivery in ${ms} ms (< 1500; the dead ones time out after 10 s)`);
    // The healthy endpoint is this test's canary.
    recordBadInput({ category: 'webhooks', input: `alert ${i} to 80 receivers that never answer + 1 healthy`, expected: 'healthy delivered < 1.5 s', got: `delivered in ${ms} ms`, refusedAsDocumented: ms < 1500, ms: null, canaryMs: ms, stalled: ms >= 1500 });
  }
  const delivered = await eventually('healthy deliveries recorded', async () => {
    const ds = await a.store.alerts!.listDeliveries({ endpointId: healthy.id });
    return ds.length === 3 && ds.every((d) => d.status === 'delivered') ? ds : undefined;
  }, 5000);
  t.equal(delivered.length, 3, 'all three recorded as delivered');
  const holding = holes.reduce((n, h) => n + h.sockets.size, 0);
  t.ok(holding <= 80, `one attempt at a time per dead endpoint (${holding} connections held across 80 receivers)`);
});
