// Webhook delivery end to end over a real SQLite outbox and a real HTTP
// receiver on 127.0.0.1 that verifies every signature with the
// `standardwebhooks` reference library.
import t from 'tap';
import { createServer, type AddressInfo } from 'node:net';
import { Webhook } from 'standardwebhooks';
import { HttpSender } from '../../src/alerts/http-sender';
import { Receiver } from './fixtures/receiver';
import { eventually, startAlerting, type TestAlerting } from './fixtures/alerting';

async function setup(t: tap.Test, opts: Parameters<typeof startAlerting>[0] = {}): Promise<{ a: TestAlerting; rx: Receiver }> {
  const a = await startAlerting(opts);
  const rx = await Receiver.start();
  t.teardown(async () => {
    await a.close();
    await rx.close();
  });
  return { a, rx };
}

async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address() as AddressInfo;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

t.test('delivers signed alerts that the reference library verifies', async (t) => {
  const { a, rx } = await setup(t);
  const { endpoint, secret } = await a.alerting.webhooks.create({ url: rx.url, headers: { 'X-Team': 'sec', Authorization: 'Bearer siem-token' } });
  t.match(secret, /^whsec_[A-Za-z0-9+/]+=*$/, 'generated whsec_ secret');
  rx.secrets = [secret];
  const r = await a.alerting.alerts.raise({ type: 'violation', severity: 'high', message: 'privileged container', agentId: 'agt_1', host: 'web-1', containerId: 'c'.repeat(64), containerName: 'web', image: 'nginx:1', project: 'shop', ruleId: 'host.privileged' });
  t.equal(r.deliveries, 1, 'one delivery queued for the one endpoint');
  await rx.waitFor(() => rx.received.length >= 1);
  const got = rx.received[0]!;
  t.same(got.verifiedBy, [0], 'signature verifies with standardwebhooks');
  t.match(got.id, /^msg_[0-9A-Z]{26}$/, 'webhook-id');
  t.ok(Math.abs(Number(got.timestamp) - Date.now() / 1000) < 5, 'webhook-timestamp is now (seconds)');
  t.match(got.signature, /^v1,[A-Za-z0-9+/]+=*$/, 'one v1 signature');
  t.equal(got.headers['content-type'], 'application/json');
  t.equal(got.headers['x-team'], 'sec', 'custom header sent');
  t.equal(got.headers['authorization'], 'Bearer siem-token', 'custom auth header sent');
  t.match(got.json, { type: 'alert.violation', data: { id: r.alertId, type: 'violation', severity: 'high', count: 1, host: 'web-1', containerName: 'web', image: 'nginx:1', project: 'shop', ruleId: 'host.privileged', message: 'privileged container' } });
  // The library also rejects a tampered body.
  t.throws(() => new Webhook(secret).verify(got.body + ' ', { 'webhook-id': got.id, 'webhook-timestamp': got.timestamp, 'webhook-signature': got.signature }));

  const d = await eventually('delivered', async () => (await a.store.alerts!.listDeliveries({ endpointId: endpoint.id }))[0]?.status === 'delivered' || undefined);
  t.ok(d);
  const [attempt] = await a.store.alerts!.listAttempts([got.id]);
  t.match(attempt, { attempt: 1, statusCode: 204, outcome: 'delivered', error: null, nextAttemptAt: null });
  t.notMatch(a.logs(), secret.slice(6, 20), 'the secret never reaches the log');
  t.notMatch(a.logs(), 'siem-token', 'custom header values never reach the log');
});

t.test('filters: severity, types, projects; disabled endpoints get nothing', async (t) => {
  const { a, rx } = await setup(t);
  const w = a.alerting.webhooks;
  const all = (await w.create({ url: rx.url + '?all' })).endpoint;
  const high = (await w.create({ url: rx.url + '?high', minSeverity: 'high' })).endpoint;
  const types = (await w.create({ url: rx.url + '?types', types: ['agent_offline'] })).endpoint;
  const proj = (await w.create({ url: rx.url + '?proj', projects: ['shop'] })).endpoint;
  const off = (await w.create({ url: rx.url + '?off', enabled: false })).endpoint;
  const raise = (x: Parameters<typeof a.alerting.alerts.raise>[0]) => a.alerting.alerts.raise(x);
  t.equal((await raise({ type: 'violation', severity: 'medium', message: 'm', ruleId: 'r1', project: 'other' })).deliveries, 1, 'medium/other → all');
  t.equal((await raise({ type: 'violation', severity: 'critical', message: 'c', ruleId: 'r2', project: 'shop' })).deliveries, 3, 'critical/shop → all, high, proj');
  t.equal((await raise({ type: 'agent_offline', message: 'down', agentId: 'agt_x' })).deliveries, 3, 'agent_offline (high) → all, high, types');
  await eventually('all delivered', async () => {
    const s = await a.store.alerts!.endpointStats([all.id, high.id, types.id, proj.id, off.id]);
    return s.get(all.id)!.delivered === 3 && s.get(high.id)!.delivered === 2 && s.get(types.id)!.delivered === 1 && s.get(proj.id)!.delivered === 1;
  });
  const s = await a.store.alerts!.endpointStats([off.id]);
  t.same(s.get(off.id), { pending: 0, delivered: 0, dead: 0 }, 'the disabled endpoint got nothing');
  t.equal(rx.received.length, 7);
});

t.test('repeats within the window are grouped: one alert, a count, no new deliveries', async (t) => {
  const { a, rx } = await setup(t, { options: { groupWindow: '5m' } });
  await a.alerting.webhooks.create({ url: rx.url });
  const base = { type: 'violation' as const, message: 'root user', agentId: 'agt_1', containerId: 'abc', ruleId: 'host.root' };
  const first = await a.alerting.alerts.raise(base);
  // Concurrent raises land in one group-commit transaction and still group.
  const more = await Promise.all([a.alerting.alerts.raise(base), a.alerting.alerts.raise(base), a.alerting.alerts.raise({ ...base, containerId: 'other' })]);
  t.equal(first.deliveries, 1);
  t.match(more[0], { alertId: first.alertId, grouped: true, deliveries: 0 });
  t.match(more[1], { alertId: first.alertId, grouped: true, count: 3, deliveries: 0 });
  t.match(more[2], { grouped: false, deliveries: 1 }, 'another container is another alert');
  const alerts = await a.store.alerts!.listAlerts({});
  t.equal(alerts.length, 2);
  t.equal(alerts.find((x) => x.id === first.alertId)!.count, 3);
  await rx.waitFor(() => rx.received.length >= 2);
  await new Promise((r) => setTimeout(r, 300));
  t.equal(rx.received.length, 2, 'grouped repeats produced no deliveries');

  // Outside the window: a new alert.
  const later = await a.alerting.alerts.raise({ ...base, time: new Date(Date.now() + 6 * 60_000) });
  t.equal(later.grouped, false, 'after the window a new alert opens');
});

t.test('agent_online is raised only after an agent_offline alert; state changes are never grouped', async (t) => {
  const { a } = await setup(t);
  const s = a.alerting.alerts;
  t.match(await s.raise({ type: 'agent_online', agentId: 'agt_1', message: 'up' }), { skipped: true }, 'plain reconnect: nothing');
  t.match(await s.raise({ type: 'agent_offline', agentId: 'agt_1', message: 'down' }), { skipped: false, grouped: false });
  t.match(await s.raise({ type: 'agent_online', agentId: 'agt_1', message: 'up' }), { skipped: false, grouped: false });
  t.match(await s.raise({ type: 'agent_offline', agentId: 'agt_1', message: 'down' }), { grouped: false }, 'flap: a second offline is its own alert');
  t.equal((await a.store.alerts!.listAlerts({ agentId: 'agt_1' })).length, 3);
});

t.test('agent_online for many agents in one batch: each decided from its own latest state alert, read in one query', async (t) => {
  const { a } = await setup(t);
  const s = a.alerting.alerts;
  const store = a.store.alerts!;
  const T = Date.now() - 60_000;
  // agt_a: offline last → back online is raised; agt_b: offline then online → nothing; agt_c: no state alert → nothing;
  // agt_d: online, then offline again → raised.
  await s.raise({ type: 'agent_offline', agentId: 'agt_a', message: 'down', time: new Date(T) });
  await s.raise({ type: 'agent_offline', agentId: 'agt_b', message: 'down', time: new Date(T) });
  await s.raise({ type: 'agent_online', agentId: 'agt_b', message: 'up', time: new Date(T + 1000) });
  await s.raise({ type: 'agent_offline', agentId: 'agt_d', message: 'down', time: new Date(T) });
  await s.raise({ type: 'agent_online', agentId: 'agt_d', message: 'up', time: new Date(T + 1000) });
  await s.raise({ type: 'agent_offline', agentId: 'agt_d', message: 'down', time: new Date(T + 2000) });
  let prefetches = 0;
  const orig = store.writeAlerts.bind(store);
  store.writeAlerts = (plan) =>
    orig(async (ctx) => {
      const prefetch = ctx.prefetchAgentStates;
      if (prefetch) ctx.prefetchAgentStates = async (ids) => {
        prefetches += 1;
        await prefetch(ids);
      };
      await plan(ctx);
    });
  // Raised together: one batch (agt_e: offline and back within the batch → raised from what the batch holds).
  const r = await Promise.all([
    s.raise({ type: 'agent_online', agentId: 'agt_a', message: 'up' }),
    s.raise({ type: 'agent_online', agentId: 'agt_b', message: 'up' }),
    s.raise({ type: 'agent_online', agentId: 'agt_c', message: 'up' }),
    s.raise({ type: 'agent_online', agentId: 'agt_d', message: 'up' }),
    s.raise({ type: 'agent_offline', agentId: 'agt_e', message: 'down' }),
    s.raise({ type: 'agent_online', agentId: 'agt_e', message: 'up' }),
  ]);
  t.same(r.map((x) => x.skipped), [false, true, true, false, false, false], 'each agent decided on its own state');
  t.equal(prefetches, 1, 'the batch read its agents\' states in one query');
  const online = (await store.listAlerts({})).filter((x) => x.type === 'agent_online').map((x) => x.agentId).sort();
  t.same(online, ['agt_a', 'agt_b', 'agt_d', 'agt_d', 'agt_e'], 'agt_b\'s and one of agt_d\'s are the earlier ones');
});

t.test('the alert and its deliveries commit together or not at all', async (t) => {
  const { a, rx } = await setup(t);
  await a.alerting.webhooks.create({ url: rx.url });
  const store = a.store.alerts!;
  // Fail the outbox insert inside the transaction: the alert must not remain either.
  const orig = store.writeAlerts.bind(store);
  store.writeAlerts = (plan) =>
    orig(async (ctx) => {
      const insert = ctx.insert;
      ctx.insert = async (w) => {
        await insert({ alert: w.alert, deliveries: [] });
        throw new Error('disk full (simulated) after the alert row');
      };
      await plan(ctx);
    });
  await t.rejects(a.alerting.alerts.raise({ type: 'violation', message: 'x', ruleId: 'r' }), { code: 'BK_ERR_INTERNAL' });
  store.writeAlerts = orig;
  t.equal((await store.listAlerts({})).length, 0, 'rolled back: no orphan alert');
});

t.test('receiver down, then up: retried on the schedule and delivered with the same webhook-id', async (t) => {
  const port = await freePort();
  const a = await startAlerting({ options: { retrySchedule: '300ms,300ms,300ms,300ms' } });
  t.teardown(() => a.close());
  const url = `http://127.0.0.1:${port}/hook`;
  const { endpoint, secret } = await a.alerting.webhooks.create({ url });
  await a.alerting.alerts.raise({ type: 'violation', message: 'x', ruleId: 'r' });
  const store = a.store.alerts!;
  const [d0] = await eventually('first failure', async () => {
    const ds = await store.listDeliveries({ endpointId: endpoint.id });
    return ds[0]!.attempts >= 1 ? ds : undefined;
  });
  t.equal(d0!.status, 'pending');
  t.match(d0!.lastError, /ECONNREFUSED/);
  const rx = await Receiver.start(port);
  t.teardown(() => rx.close());
  rx.secrets = [secret];
  await rx.waitFor(() => rx.received.length >= 1);
  t.equal(rx.received[0]!.id, d0!.id, 'same webhook-id as the failed attempt');
  t.same(rx.received[0]!.verifiedBy, [0]);
  const d = await eventually('delivered', async () => ((await store.getDelivery(d0!.id))?.status === 'delivered' ? store.getDelivery(d0!.id) : undefined));
  const log = await store.listAttempts([d!.id]);
  t.ok(log.length >= 2, 'every attempt logged');
  t.match(log[0], { attempt: 1, statusCode: null, outcome: 'retry', error: /ECONNREFUSED/ });
  t.ok(log[0]!.nextAttemptAt!.getTime() - log[0]!.at.getTime() >= 250, 'next try on the schedule');
  t.match(log[log.length - 1], { statusCode: 204, outcome: 'delivered' });
});

t.test('500s exhaust the schedule → dead-letter; redeliver sends it again with the same id', async (t) => {
  const { a, rx } = await setup(t, { options: { retrySchedule: '100ms,100ms' } });
  const { endpoint, secret } = await a.alerting.webhooks.create({ url: rx.url });
  rx.secrets = [secret];
  rx.reply = () => ({ status: 500, body: 'boom' });
  await a.alerting.alerts.raise({ type: 'action_failed', message: 'kill failed', ruleId: 'r' });
  const store = a.store.alerts!;
  const dead = await eventually('dead-lettered', async () => (await store.listDeliveries({ endpointId: endpoint.id, status: 'dead' }))[0]);
  t.equal(dead.attempts, 3, '1 + 2 retries');
  t.match(dead.deadReason, /gave up after 3 attempts; last: HTTP 500: boom/);
  t.equal(rx.received.length, 3);
  t.equal(new Set(rx.received.map((r) => r.id)).size, 1, 'one webhook-id across retries');
  t.ok(rx.received.every((r) => r.verifiedBy.length === 1), 'every retry is freshly signed');
  const ts = rx.received.map((r) => r.at);
  t.ok(ts[1]! - ts[0]! >= 80 && ts[2]! - ts[1]! >= 80, 'retries waited for the schedule');

  await t.rejects(a.alerting.webhooks.redeliver('msg_nope'), { code: 'BK_ERR_NOT_FOUND' });
  rx.reply = () => ({ status: 200 });
  const again = await a.alerting.webhooks.redeliver(dead.id);
  t.equal(again.status, 'pending');
  await t.rejects(a.alerting.webhooks.redeliver(dead.id), { code: 'BK_ERR_CONFLICT' }, 'only dead deliveries');
  await eventually('redelivered', async () => (await store.getDelivery(dead.id))?.status === 'delivered');
  t.equal(rx.received.at(-1)!.id, dead.id, 'redelivery keeps the webhook-id');
  const log = await store.listAttempts([dead.id]);
  t.same(log.map((l) => [l.attempt, l.statusCode, l.outcome]), [[1, 500, 'retry'], [2, 500, 'retry'], [3, 500, 'failed'], [4, 200, 'delivered']]);
});

t.test('other 4xx fail permanently at once', async (t) => {
  const { a, rx } = await setup(t);
  const { endpoint } = await a.alerting.webhooks.create({ url: rx.url });
  rx.reply = () => ({ status: 400, body: '{"error":"bad payload"}' });
  await a.alerting.alerts.raise({ type: 'violation', message: 'x', ruleId: 'r' });
  const dead = await eventually('dead', async () => (await a.store.alerts!.listDeliveries({ endpointId: endpoint.id, status: 'dead' }))[0]);
  t.equal(dead.attempts, 1);
  t.match(dead.deadReason, /permanent failure: HTTP 400: \{"error":"bad payload"\}/);
  t.equal((await a.alerting.webhooks.get(endpoint.id)).enabled, true, 'the endpoint stays enabled');
});

t.test('a slow receiver times out and is retried', async (t) => {
  const { a, rx } = await setup(t, { options: { timeout: '300ms', lease: '2s', retrySchedule: '100ms,100ms,100ms' } });
  const { endpoint, secret } = await a.alerting.webhooks.create({ url: rx.url });
  rx.secrets = [secret];
  rx.reply = (_r, n) => (n === 1 ? { status: 200, delayMs: 1500 } : { status: 200 });
  await a.alerting.alerts.raise({ type: 'violation', message: 'x', ruleId: 'r' });
  const store = a.store.alerts!;
  const d = await eventually('delivered after a timeout', async () => (await store.listDeliveries({ endpointId: endpoint.id, status: 'delivered' }))[0]);
  const log = await store.listAttempts([d.id]);
  t.match(log[0], { attempt: 1, statusCode: null, outcome: 'retry', error: /timed out after 300 ms/ });
  t.ok(log[0]!.latencyMs >= 250 && log[0]!.latencyMs < 1400, `attempt 1 ended at the timeout (${log[0]!.latencyMs} ms)`);
  t.match(log.at(-1), { statusCode: 200, outcome: 'delivered' });
});

t.test('429 with Retry-After is honoured (seconds and HTTP date)', async (t) => {
  // A schedule far longer than Retry-After: the retry must follow the header.
  const { a, rx } = await setup(t, { options: { retrySchedule: '1h,1h' } });
  const { endpoint } = await a.alerting.webhooks.create({ url: rx.url });
  rx.reply = (_r, n) => (n === 1 ? { status: 429, headers: { 'retry-after': '1' } } : n === 2 ? { status: 503, headers: { 'retry-after': new Date(Date.now() + 1000).toUTCString() } } : { status: 204 });
  await a.alerting.alerts.raise({ type: 'violation', message: 'x', ruleId: 'r' });
  const store = a.store.alerts!;
  const d = await eventually('delivered', async () => (await store.listDeliveries({ endpointId: endpoint.id, status: 'delivered' }))[0], 10_000);
  t.equal(rx.received.length, 3);
  const gap1 = rx.received[1]!.at - rx.received[0]!.at;
  t.ok(gap1 >= 950 && gap1 < 4000, `waited Retry-After: 1 (${gap1} ms), not the 1 h schedule`);
  const log = await store.listAttempts([d.id]);
  t.same(log.map((l) => [l.statusCode, l.outcome]), [[429, 'retry'], [503, 'retry'], [204, 'delivered']]);
});

t.test('410 Gone disables the endpoint and dead-letters the delivery', async (t) => {
  const { a, rx } = await setup(t);
  const { endpoint } = await a.alerting.webhooks.create({ url: rx.url });
  rx.reply = () => ({ status: 410 });
  await a.alerting.alerts.raise({ type: 'violation', message: 'x', ruleId: 'r' });
  const store = a.store.alerts!;
  const dead = await eventually('dead', async () => (await store.listDeliveries({ endpointId: endpoint.id, status: 'dead' }))[0]);
  t.match(dead.deadReason, /410 Gone.*webhook disabled/);
  const e = await a.alerting.webhooks.get(endpoint.id);
  t.equal(e.enabled, false, 'endpoint disabled');
  t.match(e.disabledReason, /410 Gone/);
  t.equal((await a.alerting.alerts.raise({ type: 'violation', message: 'y', ruleId: 'r2' })).deliveries, 0, 'a disabled endpoint gets no new deliveries');
  await t.rejects(a.alerting.webhooks.sendTest(endpoint.id), { code: 'BK_ERR_CONFLICT' });
  await t.rejects(a.alerting.webhooks.redeliver(dead.id), { code: 'BK_ERR_CONFLICT' });
  rx.reply = () => ({ status: 204 });
  const re = await a.alerting.webhooks.update(endpoint.id, { enabled: true });
  t.equal(re.disabledReason, null, 're-enabling clears the reason');
  await a.alerting.webhooks.redeliver(dead.id);
  await eventually('delivered after re-enable', async () => (await store.getDelivery(dead.id))?.status === 'delivered');
});

t.test('secret rotation: both signatures verify during the grace period', async (t) => {
  const { a, rx } = await setup(t);
  const { endpoint, secret: oldSecret } = await a.alerting.webhooks.create({ url: rx.url });
  const { secret: newSecret, endpoint: rotated } = await a.alerting.webhooks.rotateSecret(endpoint.id, { graceMs: 60_000 });
  t.not(newSecret, oldSecret);
  t.ok(rotated.previousSecretExpiresAt!.getTime() > Date.now());
  rx.secrets = [oldSecret, newSecret];
  await a.alerting.alerts.raise({ type: 'violation', message: 'x', ruleId: 'r' });
  await rx.waitFor(() => rx.received.length >= 1);
  const got = rx.received[0]!;
  t.equal(got.signature.split(' ').length, 2, 'two v1 signatures');
  t.same(got.verifiedBy, [0, 1], 'receivers on the old and on the new secret both verify');

  // Grace 0: only the new secret signs.
  const { secret: third } = await a.alerting.webhooks.rotateSecret(endpoint.id, { graceMs: 0, secret: 'whsec_' + Buffer.alloc(32, 7).toString('base64') });
  t.equal(third, 'whsec_' + Buffer.alloc(32, 7).toString('base64'), 'a given secret is used');
  rx.secrets = [newSecret, third];
  await a.alerting.alerts.raise({ type: 'violation', message: 'y', ruleId: 'r2' });
  await rx.waitFor(() => rx.received.length >= 2);
  t.same(rx.received[1]!.verifiedBy, [1], 'only the newest secret after a zero grace');
  await t.rejects(a.alerting.webhooks.rotateSecret(endpoint.id, { secret: 'whsec_short' }), { code: 'BK_ERR_BAD_REQUEST' });
  await t.rejects(a.alerting.webhooks.rotateSecret(endpoint.id, { secret: 'nope' }), { code: 'BK_ERR_BAD_REQUEST' });
});

t.test('slack format posts an incoming-webhook message', async (t) => {
  const { a, rx } = await setup(t);
  await a.alerting.webhooks.create({ url: rx.url, format: 'slack' });
  await a.alerting.alerts.raise({ type: 'action', severity: 'critical', message: 'killed <web> & co', containerName: 'web', action: 'kill', result: 'ok', ruleId: 'r' });
  await rx.waitFor(() => rx.received.length >= 1);
  const body = rx.received[0]!.json as { text: string; blocks: Array<{ type: string; text?: { text: string } }> };
  t.match(body.text, /^\[critical\] action: killed <web> & co$/);
  t.match(body.blocks[0]!.text!.text, /\*CRITICAL\* action: killed &lt;web&gt; &amp; co/, 'mrkdwn escaped');
});

t.test('SSRF: link-local and metadata targets refused on save and at delivery time', async (t) => {
  const { a } = await setup(t);
  const w = a.alerting.webhooks;
  for (const url of ['http://169.254.169.254/latest/meta-data', 'http://[fe80::1]/x', 'http://[fd00:ec2::254]/', 'http://metadata.google.internal/computeMetadata/v1/', 'http://169.254.10.1:8080/', 'http://[::ffff:169.254.169.254]/']) {
    await t.rejects(w.create({ url }), { code: 'BK_ERR_WEBHOOK_UNSAFE_TARGET' }, `${url} refused`);
  }
  for (const url of ['ftp://example.com/x', 'file:///etc/passwd', 'not a url', 'http://example.com/#frag']) {
    await t.rejects(w.create({ url }), { code: 'BK_ERR_BAD_REQUEST' }, `${url} refused`);
  }
  // A name resolving to a link-local address is refused too (resolver seam).
  const viaDns = await startAlerting({ resolve: async (h) => (h === 'evil.example' ? ['169.254.169.254'] : ['93.184.216.34']) });
  t.teardown(() => viaDns.close());
  await t.rejects(viaDns.alerting.webhooks.create({ url: 'https://evil.example/hook' }), { code: 'BK_ERR_WEBHOOK_UNSAFE_TARGET', message: /evil\.example resolves to .*169\.254\.169\.254/ });
  const ok = await viaDns.alerting.webhooks.create({ url: 'https://evil.example/hook', allowUnsafeTarget: true });
  t.equal(ok.endpoint.allowUnsafeTarget, true, 'allowUnsafeTarget overrides');
  const fine = await w.create({ url: 'http://127.0.0.1:9/x' });
  t.ok(fine, 'loopback is not link-local');
  await t.rejects(w.update(fine.endpoint.id, { url: 'http://169.254.169.254/' }), { code: 'BK_ERR_WEBHOOK_UNSAFE_TARGET' }, 'PATCH re-checks');
});

t.test('SSRF at delivery time: a name that starts resolving to a metadata address is refused (no traffic)', async (t) => {
  const rx = await Receiver.start();
  t.teardown(() => rx.close());
  // Close every connection so each attempt needs a fresh DNS lookup.
  rx.reply = () => ({ status: 204, headers: { connection: 'close' } });
  let target = '127.0.0.1';
  const sender = new HttpSender({ lookup: (_h, _o, cb) => cb(null, [{ address: target, family: 4 }]) });
  t.teardown(() => sender.close());
  const send = () => sender.send({ url: new URL(`http://rebind.test:${rx.port}/hook`), headers: {}, body: '{}', timeoutMs: 2000, allowUnsafeTarget: false });
  t.match(await send(), { status: 204, error: null }, 'first resolves to loopback: delivered');
  target = '169.254.169.254';
  const r = await send();
  t.match(r, { status: null, unsafeTarget: true, error: /rebind\.test resolves to a cloud metadata address \(169\.254\.169\.254\)/ });
  t.equal(rx.received.length, 1, 'nothing was sent to the unsafe address');
  const lit = await sender.send({ url: new URL('http://169.254.169.254/'), headers: {}, body: '{}', timeoutMs: 2000, allowUnsafeTarget: false });
  t.match(lit, { unsafeTarget: true, latencyMs: 0 }, 'IP literals are refused before connecting');

  // And through the worker: dead-lettered with the reason, never sent.
  const a = await startAlerting({ sender: new HttpSender({ lookup: (_h, _o, cb) => cb(null, [{ address: '169.254.169.254', family: 4 }]) }), resolve: async () => ['127.0.0.1'] });
  t.teardown(() => a.close());
  const { endpoint } = await a.alerting.webhooks.create({ url: 'http://changed.test/hook' });
  await a.alerting.alerts.raise({ type: 'violation', message: 'x', ruleId: 'r' });
  const dead = await eventually('dead', async () => (await a.store.alerts!.listDeliveries({ endpointId: endpoint.id, status: 'dead' }))[0]);
  t.match(dead.deadReason, /changed\.test resolves to a cloud metadata address/);
});

t.test('a dead endpoint does not hold up a healthy one', async (t) => {
  const { a, rx } = await setup(t, { options: { timeout: '500ms', lease: '3s', workers: 2, batchSize: 4, retrySchedule: '30s' } });
  const black = await Receiver.start();
  t.teardown(() => black.close());
  black.reply = () => ({ status: 200, delayMs: 5000 });
  await a.alerting.webhooks.create({ url: black.url, types: ['violation'] });
  await a.alerting.webhooks.create({ url: rx.url, types: ['lockdown_finding'] });
  for (let i = 0; i < 40; i++) await a.alerting.alerts.raise({ type: 'violation', message: `v${i}`, ruleId: `r${i}` });
  const started = Date.now();
  for (let i = 0; i < 20; i++) await a.alerting.alerts.raise({ type: 'lockdown_finding', message: `l${i}`, ruleId: `l${i}` });
  await rx.waitFor(() => rx.received.length >= 20, 10_000);
  const took = Date.now() - started;
  t.ok(took < 3000, `healthy endpoint got its 20 alerts in ${took} ms while the other timed out`);
});
