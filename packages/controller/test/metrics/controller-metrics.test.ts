// The controller's metrics: what each hook counts, scrape-time fleet gauges
// from a real store, the webhook delivery hook, the listener (loopback
// rule, paths, methods, a taken port) — every scrape passing
// `promtool check metrics`, and every metric listed in docs/metrics.md.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { BulkheadError, createLogger, isLoopbackHost, parseMetricsAddress, resolveMetricsAddress, startMetricsListener } from '@bulkhead/shared';
import { ControllerMetrics, closeReason, codeLabel } from '../../src/metrics/controller-metrics';
import { fleetSources } from '../../src/metrics/fleet-sources';
import { resolveControllerOptions } from '../../src/controller-options';
import { openStore } from '../../src/store/open-store';
import { metricNames, promtoolCheck, sample, scrape } from '../../../../test/helpers/promtool';
import { container, hostFacts } from '../policy/fixtures/fleet';
import { Receiver } from '../alerts/fixtures/receiver';
import { eventually, startAlerting } from '../alerts/fixtures/alerting';

const DOC = readFileSync(resolve(__dirname, '../../../../docs/metrics.md'), 'utf8');
const silent = createLogger({ name: 'metrics-test', level: 'silent' });

t.test('hooks count what happened; the page passes promtool', async (t) => {
  const m = new ControllerMetrics({ logger: silent });
  m.setSources({ connectedAgents: () => 3, agentsByStatus: async () => ({ online: 3, offline: 1 }), containersByState: async () => ({ running: 7, paused: 1 }) });
  m.streamOpened();
  m.streamOpened();
  m.streamClosed('ended');
  m.streamRefused('BK_ERR_CERT_REQUIRED');
  const v = { ruleId: 'host.privileged', severity: 'high', mode: 'enforce', source: 'reaction', denied: false };
  m.violationRecorded({ ...v, action: { type: 'kill', result: 'ok', durationMs: 120 } });
  m.violationRecorded({ ...v, action: { type: 'kill', result: 'failed', durationMs: 30 } });
  m.violationRecorded({ ...v, action: { type: 'none', result: 'skipped', durationMs: 0 } });
  m.violationRecorded({ ...v, source: 'authz', denied: true, action: null });
  m.violationRecorded({ ...v, mode: 'monitor', action: { type: 'alert', result: 'ok', durationMs: 0 } });
  m.manualAction('pause', 'ok', 40);
  m.manualAction('pause', 'offline', 1);
  m.deliveryAttempt('delivered', 25);
  m.deliveryAttempt('retry', 1000);
  m.observeRequest('GET', '/v1/agents', 200, 0.004);
  m.observeRequest('GET', 'unmatched', 404, 0.001);

  const { body, contentType } = await m.render();
  t.match(contentType, /^text\/plain; version=0\.0\.4/);
  const lint = await promtoolCheck(body);
  t.equal(lint.code, 0, `promtool check metrics: ${lint.output || 'clean'}`);

  t.equal(sample(body, 'bulkhead_controller_agents_connected'), 3);
  t.equal(sample(body, 'bulkhead_controller_agents{status="online"}'), 3);
  t.equal(sample(body, 'bulkhead_controller_agents{status="revoked"}'), 0, 'always-present states');
  t.equal(sample(body, 'bulkhead_controller_containers{state="paused"}'), 1);
  t.equal(sample(body, 'bulkhead_controller_agent_streams_opened_total'), 2);
  t.equal(sample(body, 'bulkhead_controller_agent_streams_closed_total{reason="ended"}'), 1);
  t.equal(sample(body, 'bulkhead_controller_agent_streams_refused_total{reason="cert_required"}'), 1);
  t.equal(sample(body, 'bulkhead_controller_violations_total{rule="host.privileged",severity="high",mode="enforce",source="reaction"}'), 3);
  t.equal(sample(body, 'bulkhead_controller_violations_total{rule="host.privileged",severity="high",mode="enforce",source="authz"}'), 1);
  t.equal(sample(body, 'bulkhead_controller_enforcement_actions_total{rule="host.privileged",action="kill",result="ok"}'), 1);
  t.equal(sample(body, 'bulkhead_controller_enforcement_actions_total{rule="host.privileged",action="kill",result="failed"}'), 1);
  t.equal(sample(body, 'bulkhead_controller_enforcement_actions_total{rule="host.privileged",action="deny",result="ok"}'), 1, 'a denial is an action');
  t.notMatch(body, /action="(none|alert)"/, 'no-ops are not actions');
  t.equal(sample(body, 'bulkhead_controller_enforcement_duration_seconds_count{action="kill"}'), 2);
  t.equal(sample(body, 'bulkhead_controller_enforcement_duration_seconds_bucket{le="0.25",action="kill"}'), 2);
  t.equal(sample(body, 'bulkhead_controller_enforcement_duration_seconds_bucket{le="0.1",action="kill"}'), 1);
  t.equal(sample(body, 'bulkhead_controller_manual_actions_total{action="pause",outcome="offline"}'), 1);
  t.equal(sample(body, 'bulkhead_controller_manual_action_duration_seconds_count{action="pause"}'), 1, 'only answered actions are timed');
  t.equal(sample(body, 'bulkhead_controller_webhook_deliveries_total{outcome="retry"}'), 1);
  t.equal(sample(body, 'bulkhead_controller_webhook_delivery_duration_seconds_count'), 2);
  t.equal(sample(body, 'bulkhead_controller_api_request_duration_seconds_count{method="GET",route="/v1/agents",status="200"}'), 1);
  t.equal(sample(body, 'bulkhead_controller_info{version="0.1.0"}'), 1);
  t.ok(sample(body, 'process_resident_memory_bytes')! > 0, 'process metrics');
  t.notMatch(body, /nodejs_active_handles_total/, 'the *_total gauges promtool rejects are gone');

  t.test('docs/metrics.md lists every metric', async (t) => {
    for (const name of metricNames(body).filter((n) => n.startsWith('bulkhead_'))) t.ok(DOC.includes(`\`${name}\``), `${name} is documented`);
  });
});

t.test('a store hiccup keeps the page up', async (t) => {
  const lines: string[] = [];
  const logger = createLogger({ name: 'x', level: 'warn', destination: { write: (s: string) => void lines.push(s) } });
  const m = new ControllerMetrics({ logger, processMetrics: false });
  m.setSources({ connectedAgents: () => 0, agentsByStatus: async () => ({ online: 2 }), containersByState: async () => ({ running: 1 }) });
  await m.render();
  m.setSources({ connectedAgents: () => 0, agentsByStatus: () => Promise.reject(new Error('database is locked')), containersByState: async () => ({}) });
  const { body } = await m.render();
  t.equal(sample(body, 'bulkhead_controller_agents{status="online"}'), 2, 'last known value kept');
  t.equal(sample(body, 'bulkhead_controller_containers{state="running"}'), 0, 'a state that emptied reads 0');
  t.match(lines.join(''), /reading the store failed/);
});

t.test('fleet gauges come from the store', async (t) => {
  const store = await openStore({ kind: 'sqlite', path: join(t.testdir(), 'c.db') });
  t.teardown(() => store.close());
  await store.migrate();
  const now = new Date();
  await store.insertAgent({
    id: 'agt_a', hostname: 'a', status: 'offline', agentVersion: '', host: null, certSerial: '01', certNotAfter: new Date(Date.now() + 1e9),
    enrolledAt: now, lastSeenAt: null, connectedAt: null, revokedAt: null, containerCount: 0,
  });
  await store.markAgentConnected('agt_a', '0.1.0', hostFacts('a', {}), now);
  await store.replaceContainers('agt_a', [container('a1'), container('a2'), container('a3', { state: 'exited' }), container('a4', { state: 'paused' })], now);
  await store.removeContainer('agt_a', container('a2').id, now);
  const src = fleetSources(store, { connectedAgents: () => ['agt_a'] });
  t.same(await src.containersByState(), { running: 1, exited: 1, paused: 1 }, 'removed containers excluded (GROUP BY)');
  t.same(await src.agentsByStatus(), { online: 1 });
  t.equal(src.connectedAgents(), 1);
  const fallback = fleetSources({ ...store, countContainersByState: undefined, listContainers: (q) => store.listContainers(q), listAgents: () => store.listAgents() } as typeof store, { connectedAgents: () => [] });
  t.same(await fallback.containersByState(), { running: 1, exited: 1, paused: 1 }, 'a store without the GROUP BY counts a listing');
});

t.test('webhook delivery attempts reach the hook', async (t) => {
  const m = new ControllerMetrics({ logger: silent, processMetrics: false });
  const a = await startAlerting({ onDeliveryAttempt: (outcome, ms) => m.deliveryAttempt(outcome, ms) });
  const rx = await Receiver.start();
  t.teardown(async () => {
    await a.close();
    await rx.close();
  });
  rx.reply = (_r, n) => ({ status: n === 1 ? 503 : 204 }); // n counts requests received, this one included
  await a.alerting.webhooks.create({ url: rx.url });
  await a.alerting.alerts.raise({ type: 'violation', message: 'x', agentId: 'agt_1', containerId: 'c'.repeat(64), ruleId: 'r' });
  await eventually('delivered after a retry', async () => {
    const { body } = await m.render();
    return sample(body, 'bulkhead_controller_webhook_deliveries_total{outcome="delivered"}') === 1 || undefined;
  });
  const { body } = await m.render();
  t.equal(sample(body, 'bulkhead_controller_webhook_deliveries_total{outcome="retry"}'), 1);
});

t.test('labels', async (t) => {
  t.equal(codeLabel('BK_ERR_AGENT_REVOKED'), 'agent_revoked');
  t.equal(closeReason('BK_ERR_PROTOCOL', 'superseded by a newer stream from the same agent'), 'superseded');
  t.equal(closeReason('BK_ERR_PROTOCOL', 'heartbeats stopped'), 'heartbeat_timeout');
  t.equal(closeReason('BK_ERR_CONTROLLER_UNAVAILABLE', 'controller is shutting down'), 'shutdown');
  t.equal(closeReason('BK_ERR_INTERNAL', 'x'), 'internal');
});

t.test('the listener', async (t) => {
  const m = new ControllerMetrics({ logger: silent });
  const l = await startMetricsListener({ address: resolveMetricsAddress('127.0.0.1:0', false), render: () => m.render(), logger: silent });
  t.teardown(() => l.close());
  t.ok(l.port > 0);
  const ok = await scrape(l.port);
  t.equal(ok.status, 200);
  t.match(ok.contentType, /^text\/plain; version=0\.0\.4/);
  t.equal((await promtoolCheck(ok.body)).code, 0, 'promtool on the real scrape');
  t.equal((await scrape(l.port, '/metrics?x=1')).status, 200, 'query ignored');
  t.equal((await scrape(l.port, '/')).status, 404);
  t.equal((await scrape(l.port, '/metrics', '127.0.0.1', 'POST')).status, 405);
  const head = await scrape(l.port, '/metrics', '127.0.0.1', 'HEAD');
  t.equal(head.status, 200);
  t.equal(head.body, '');

  await t.rejects(
    startMetricsListener({ address: { host: '127.0.0.1', port: l.port }, render: () => m.render(), logger: silent }),
    { code: 'BK_ERR_STARTUP_FAILED', message: /EADDRINUSE/ },
    'a taken port is a clear error',
  );
  const broken = await startMetricsListener({ address: { host: '127.0.0.1', port: 0 }, render: () => Promise.reject(new Error('boom')), logger: silent });
  t.teardown(() => broken.close());
  t.equal((await scrape(broken.port)).status, 500);
});

t.test('metrics address: loopback unless allowed', async (t) => {
  for (const h of ['127.0.0.1', '127.8.9.10', '::1', 'localhost', '::ffff:127.0.0.1']) t.ok(isLoopbackHost(h), `${h} is loopback`);
  for (const h of ['0.0.0.0', '::', '10.0.0.5', '192.168.1.2', 'metrics.example.com']) t.notOk(isLoopbackHost(h), `${h} is not`);
  t.same(parseMetricsAddress('[::1]:9464', 'x'), { host: '::1', port: 9464 });
  t.throws(() => parseMetricsAddress('9464', '--metrics-listen'), { code: 'BK_ERR_CONFIG_INVALID', message: /--metrics-listen: "9464" is not HOST:PORT/ });
  t.throws(() => parseMetricsAddress('h:70000', 'x'), BulkheadError);
  t.throws(() => resolveMetricsAddress('0.0.0.0:9464', false), { code: 'BK_ERR_CONFIG_INVALID', message: /not a loopback address.*--metrics-allow-remote/ });
  t.same(resolveMetricsAddress('0.0.0.0:9464', true), { host: '0.0.0.0', port: 9464 });

  t.equal(resolveControllerOptions({ dataDir: '/d' }).metricsListen, '127.0.0.1:9464');
  t.equal(resolveControllerOptions({ dataDir: '/d', metricsListen: false }).metricsListen, undefined, '--no-metrics');
  t.throws(() => resolveControllerOptions({ dataDir: '/d', metricsListen: '0.0.0.0:9464' }), { code: 'BK_ERR_CONFIG_INVALID' });
  t.equal(resolveControllerOptions({ dataDir: '/d', metricsListen: '0.0.0.0:9464', metricsAllowRemote: true }).metricsListen, '0.0.0.0:9464');
});
