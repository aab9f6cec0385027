// The agent's metrics: what each hook counts, scrape-time gauges, the
// authorization decision timer, the listener options — every page passing
// `promtool check metrics`, and every metric listed in docs/metrics.md.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { createLogger, startMetricsListener, type ViolationReport } from '@bulkhead/shared';
import { AgentMetrics, timedDecision, TOP_CONTAINERS, topN } from '../../src/metrics/agent-metrics';
import { resolveAgentOptions } from '../../src/agent-options';
import { metricNames, promtoolCheck, sample, scrape } from '../../../../test/helpers/promtool';

const DOC = readFileSync(resolve(__dirname, '../../../../docs/metrics.md'), 'utf8');
const logger = createLogger({ name: 'agent-metrics-test', level: 'silent' });

const report = (over: Partial<ViolationReport>): ViolationReport => ({
  id: 'v1', containerId: 'c', containerName: '/c', imageRef: 'busybox', project: '', ruleId: 'r', severity: 'high', mode: 'enforce', source: 'reaction',
  message: 'm', evidenceJson: '[]', denied: false, action: { type: 'none', result: 'skipped', error: '', durationMs: 0, detail: '' }, atMs: 1, policyVersion: 1, exemptedBy: '',
  ...over,
});

t.test('hooks and sources; the page passes promtool', async (t) => {
  const m = new AgentMetrics({ agentId: 'agt_test', logger });
  let link = 'connecting';
  m.setSources({
    linkState: () => link,
    spool: () => ({ pending: 4, dropped: 2 }),
    containers: () => 9,
    eventStreamConnected: () => true,
    authzFailOpen: () => 1,
    authzFailClosed: () => 3,
    quarantined: () => 1,
    usage: () => [
      { name: 'filler', writableBytes: 200 * 2 ** 20, logBytes: 0, netRxBytesPerSec: 0, netTxBytesPerSec: 0, tcpConnections: 0 },
      { name: 'talker', writableBytes: 4096, logBytes: 100, netRxBytesPerSec: 1000, netTxBytesPerSec: 500, tcpConnections: 2001 },
      { name: 'hostnet', writableBytes: null, logBytes: null, netRxBytesPerSec: null, netTxBytesPerSec: null, tcpConnections: null },
    ],
  });
  m.inventoryChange('upsert', 'start');
  m.inventoryChange('upsert', 'start');
  m.inventoryChange('remove', 'destroy');
  m.inventoryChange('upsert', 'reconcile', true);
  m.inventoryChange('upsert', 'reconcile', false);
  m.inventoryChange('remove', 'reconcile');
  m.reconcileRun();
  m.evaluation();
  m.evaluation();
  m.report(report({}));
  m.report(report({ action: { type: 'kill', result: 'ok', error: '', durationMs: 180, detail: '' } }), { sinceEventMs: 180, sinceTriggerEventMs: 180, sinceReceiptMs: 150, startDelayMs: 1 });
  m.report(report({ source: 'authz', denied: true, action: null }));
  m.report(report({ mode: 'monitor', action: { type: 'alert', result: 'ok', error: '', durationMs: 0, detail: '' } }));
  m.authzDecision(true, 0.0004);
  m.authzDecision(false, 0.003);
  m.command('pause', true);
  m.command('kill', false);
  m.linkConnected();
  link = 'connected';

  const { body, contentType } = await m.render();
  t.match(contentType, /^text\/plain; version=0\.0\.4/);
  const lint = await promtoolCheck(body);
  t.equal(lint.code, 0, `promtool check metrics: ${lint.output || 'clean'}`);

  t.equal(sample(body, 'bulkhead_agent_info{agent_id="agt_test",version="0.1.0"}'), 1);
  t.equal(sample(body, 'bulkhead_agent_docker_events_processed_total{action="start"}'), 2);
  t.equal(sample(body, 'bulkhead_agent_docker_events_processed_total{action="destroy"}'), 1);
  t.equal(sample(body, 'bulkhead_agent_reconcile_corrections_total{kind="upsert"}'), 1, 'an unchanged reconcile upsert is no correction');
  t.equal(sample(body, 'bulkhead_agent_reconcile_corrections_total{kind="remove"}'), 1);
  t.notMatch(body, /events_processed_total\{action="reconcile"\}/, 'reconcile is not an event');
  t.equal(sample(body, 'bulkhead_agent_reconcile_runs_total'), 1);
  t.equal(sample(body, 'bulkhead_agent_policy_evaluations_total'), 2);
  t.equal(sample(body, 'bulkhead_agent_findings_total{source="reaction",mode="enforce"}'), 2);
  t.equal(sample(body, 'bulkhead_agent_findings_total{source="authz",mode="enforce"}'), 1);
  t.equal(sample(body, 'bulkhead_agent_enforcement_actions_total{action="kill",result="ok"}'), 1);
  t.equal(sample(body, 'bulkhead_agent_enforcement_actions_total{action="deny",result="ok"}'), 1);
  t.notMatch(body, /enforcement_actions_total\{action="(none|alert)"/);
  t.equal(sample(body, 'bulkhead_agent_enforcement_duration_seconds_bucket{le="0.25",action="kill"}'), 1);
  t.equal(sample(body, 'bulkhead_agent_enforcement_duration_seconds_bucket{le="0.1",action="kill"}'), 0);
  t.equal(sample(body, 'bulkhead_agent_authz_decisions_total{decision="allow"}'), 1);
  t.equal(sample(body, 'bulkhead_agent_authz_decision_duration_seconds_bucket{le="0.0005",decision="allow"}'), 1);
  t.equal(sample(body, 'bulkhead_agent_authz_fail_open_total'), 1);
  t.equal(sample(body, 'bulkhead_agent_authz_fail_closed_total'), 3);
  t.equal(sample(body, 'bulkhead_agent_commands_total{action="kill",result="failed"}'), 1);
  t.equal(sample(body, 'bulkhead_agent_link_state{state="connected"}'), 1);
  t.equal(sample(body, 'bulkhead_agent_link_state{state="connecting"}'), 0);
  t.equal(sample(body, 'bulkhead_agent_link_connects_total'), 1);
  t.equal(sample(body, 'bulkhead_agent_spool_reports'), 4);
  t.equal(sample(body, 'bulkhead_agent_spool_dropped_total'), 2);
  t.equal(sample(body, 'bulkhead_agent_containers'), 9);
  t.equal(sample(body, 'bulkhead_agent_docker_event_stream_up'), 1);
  t.equal(sample(body, 'bulkhead_agent_quarantined_containers'), 1);
  t.ok(sample(body, 'process_cpu_seconds_total')! >= 0, 'process metrics');
  t.equal(sample(body, 'bulkhead_agent_usage_host{resource="writable_bytes"}'), 200 * 2 ** 20 + 4096, 'host total: the measured containers summed');
  t.equal(sample(body, 'bulkhead_agent_usage_host{resource="network_bytes_per_second"}'), 1500);
  t.equal(sample(body, 'bulkhead_agent_usage_host{resource="tcp_connections"}'), 2001);
  t.equal(sample(body, 'bulkhead_agent_usage_top_containers{resource="writable_bytes",container="filler"}'), 200 * 2 ** 20);
  t.equal(sample(body, 'bulkhead_agent_usage_top_containers{resource="tcp_connections",container="talker"}'), 2001);
  t.equal(sample(body, 'bulkhead_agent_usage_top_containers{resource="tcp_connections",container="filler"}'), undefined, '0 is left out of the top');
  t.notMatch(body, /container="hostnet"/, 'not measured: no series');

  // Mirrored totals are re-read, not added up, on every scrape.
  const again = (await m.render()).body;
  t.equal(sample(again, 'bulkhead_agent_spool_dropped_total'), 2);
  t.equal(sample(again, 'bulkhead_agent_authz_fail_open_total'), 1);

  t.test('docs/metrics.md lists every metric', async (t) => {
    for (const name of metricNames(body).filter((n) => n.startsWith('bulkhead_'))) t.ok(DOC.includes(`\`${name}\``), `${name} is documented`);
  });
});

t.test('a partly wired agent still renders', async (t) => {
  const m = new AgentMetrics({ agentId: 'agt_x', logger, processMetrics: false });
  const { body } = await m.render();
  t.equal((await promtoolCheck(body)).code, 0);
  t.equal(sample(body, 'bulkhead_agent_containers'), 0);
  t.equal(sample(body, 'bulkhead_agent_link_state{state="connected"}'), 0);
  t.notMatch(body, /^process_/m, 'process metrics off');
});

t.test('timedDecision counts sync and async decisions and never changes them', async (t) => {
  const seen: Array<[boolean, number]> = [];
  const m = { authzDecision: (allow: boolean, s: number) => void seen.push([allow, s]) };
  const start = performance.now();
  t.same(timedDecision({ allow: true }, start, m), { allow: true });
  const denied = await timedDecision(new Promise<{ allow: boolean; msg: string }>((r) => setTimeout(() => r({ allow: false, msg: 'no' }), 20)), performance.now(), m);
  t.same(denied, { allow: false, msg: 'no' });
  t.equal(seen.length, 2);
  t.equal(seen[0]![0], true);
  t.equal(seen[1]![0], false);
  t.ok(seen[1]![1] >= 0.015 && seen[1]![1] < 1, `async decision timed (${seen[1]![1]} s)`);
  await t.rejects(Promise.resolve(timedDecision(Promise.reject(new Error('x')), performance.now(), m)), { message: 'x' }, 'a failing evaluator still fails (the plugin fails open)');
  t.equal(seen.length, 2, 'a failure is not a decision');
});

t.test('listener options: loopback by default, off with --no-metrics', async (t) => {
  t.equal(resolveAgentOptions({ stateDir: '/s' }).metricsListen, '127.0.0.1:9465');
  t.equal(resolveAgentOptions({ stateDir: '/s', metricsListen: false }).metricsListen, undefined);
  t.equal(resolveAgentOptions({ stateDir: '/s', metricsListen: '[::1]:9999' }).metricsListen, '[::1]:9999');
  t.throws(() => resolveAgentOptions({ stateDir: '/s', metricsListen: '0.0.0.0:9465' }), { code: 'BK_ERR_CONFIG_INVALID', message: /not a loopback address/ });
  t.same(resolveAgentOptions({ stateDir: '/s', metricsListen: '0.0.0.0:9465', metricsAllowRemote: true }).metricsAllowRemote, true);
  t.throws(() => resolveAgentOptions({ stateDir: '/s', metricsListen: 'nope' }), { message: /--metrics-listen: "nope" is not HOST:PORT/ });

  const m = new AgentMetrics({ agentId: 'agt_l', logger });
  const l = await startMetricsListener({ address: { host: '127.0.0.1', port: 0 }, render: () => m.render(), logger });
  t.teardown(() => l.close());
  const s = await scrape(l.port);
  t.equal(s.status, 200);
  t.equal((await promtoolCheck(s.body)).code, 0, 'promtool on the real scrape');
});

t.test('per-container usage series stay bounded: top 10 of each resource, re-ranked every scrape', async (t) => {
  const m = new AgentMetrics({ agentId: 'agt_x', logger, processMetrics: false });
  let n = 500;
  m.setSources({
    usage: () => Array.from({ length: n }, (_, i) => ({ name: `c${i}`, writableBytes: i + 1, logBytes: i + 1, netRxBytesPerSec: i, netTxBytesPerSec: 1, tcpConnections: i + 1 })),
  });
  const body = (await m.render()).body;
  t.equal((await promtoolCheck(body)).code, 0);
  const series = body.split('\n').filter((l) => l.startsWith('bulkhead_agent_usage_top_containers{'));
  t.equal(series.length, 4 * TOP_CONTAINERS, `${series.length} series for 500 containers`);
  t.equal(sample(body, 'bulkhead_agent_usage_top_containers{resource="log_bytes",container="c499"}'), 500, 'the largest');
  t.equal(sample(body, 'bulkhead_agent_usage_top_containers{resource="log_bytes",container="c489"}'), undefined, 'the 11th is out');
  n = 3;
  const after = (await m.render()).body;
  t.equal(sample(after, 'bulkhead_agent_usage_top_containers{resource="log_bytes",container="c499"}'), undefined, 'gone containers leave no stale series');
  t.equal(sample(after, 'bulkhead_agent_usage_top_containers{resource="log_bytes",container="c2"}'), 3);
  t.same(topN([{ name: 'b', tcpConnections: 5 }, { name: 'a', tcpConnections: 5 }, { name: 'c', tcpConnections: 9 }], (r) => r.tcpConnections, 2), [['c', 9], ['a', 5]], 'ties by name');
});
