// End to end, all real processes: a private dockerd → the built agent →
// mutual-TLS gRPC → the built controller → POST /v1/containers/:agent/:id/actions
// and `bulkhead action`. Every action is checked with the engine's own
// inspect; then both daemons' metrics listeners are scraped and checked
// with promtool; then the agent goes away and actions fail clearly.
// Containers sleep on --internal networks or none: no traffic anywhere.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { startPrivateEngine } from '../../../../test/helpers/engine';
import { OPS_BIN, apiRequest, run, waitFor } from '../../../../test/helpers/processes';
import { promtoolCheck, sample, scrape } from '../../../../test/helpers/promtool';
import { enrollAgent, startController, tempRoot } from '../../../../test/e2e/stack';

interface Inspect {
  State: { Status: string; Paused: boolean; Running: boolean };
  NetworkSettings: { Networks: Record<string, unknown> };
}

t.test('manual actions through the real agent, and both metrics listeners', async (t) => {
  // A dedicated engine: the agent reports every container on it.
  const engine = await startPrivateEngine({ t });
  const root = tempRoot();
  t.teardown(root.cleanup);
  const ctl = await startController(root.dir, { heartbeatInterval: '500ms', offlineAfter: '2s' });
  t.teardown(() => ctl.stop());
  const agent = await enrollAgent(ctl, root.dir, 'agent1', engine.dockerHost);
  agent.start();
  t.teardown(() => agent.stop());
  await waitFor('agent online', async () => (await ctl.get<{ items: Array<{ id: string; status: string }> }>('/v1/agents')).body.items.some((a) => a.id === agent.agentId && a.status === 'online'));

  const uniq = randomBytes(3).toString('hex');
  const [netA, netB] = [`bk-e2e-a-${uniq}`, `bk-e2e-b-${uniq}`];
  await engine.dockerOk(['network', 'create', '--internal', '--subnet', '10.215.1.0/24', netA]);
  await engine.dockerOk(['network', 'create', '--internal', '--subnet', '10.215.2.0/24', netB]);
  const id = await engine.dockerOk(['run', '-d', '--name', 'web', '--network', netA, engine.image, 'sleep', '600']);
  await engine.dockerOk(['network', 'connect', netB, id]);
  const lone = await engine.dockerOk(['run', '-d', '--name', 'lone', '--network', 'none', engine.image, 'sleep', '600']);
  const inspect = async (ref: string): Promise<Inspect> => (JSON.parse(await engine.dockerOk(['inspect', ref])) as Inspect[])[0]!;
  await waitFor('containers reported', async () => {
    const a = await ctl.get<{ state: string }>(`/v1/containers/${agent.agentId}/web`);
    const b = await ctl.get<{ state: string }>(`/v1/containers/${agent.agentId}/lone`);
    return a.body.state === 'running' && b.body.state === 'running';
  });

  const act = (ref: string, body: object) => apiRequest<Record<string, unknown>>(ctl.apiBase, 'POST', `/v1/containers/${agent.agentId}/${ref}/actions`, ctl.caPem, ctl.adminKey, JSON.stringify(body));
  const cli = (...args: string[]) => run(OPS_BIN, args, { BULKHEAD_API: ctl.apiBase, BULKHEAD_CA: ctl.caFile, BULKHEAD_API_KEY: ctl.adminKey });

  t.test('pause and unpause', async (t) => {
    const p = await act('web', { action: 'pause' });
    t.equal(p.status, 200, JSON.stringify(p.body));
    t.match(p.body, { action: 'pause', ok: true, state: 'paused', containerId: id, agentId: agent.agentId });
    t.equal((await inspect(id)).State.Paused, true, 'the engine says paused');
    const u = await act('web', { action: 'unpause' });
    t.match(u.body, { ok: true, state: 'running' });
    t.equal((await inspect(id)).State.Paused, false);
  });

  t.test('quarantine on two --internal networks, then release', async (t) => {
    const q = await act(id.slice(0, 12), { action: 'quarantine' });
    t.equal(q.status, 200, JSON.stringify(q.body));
    t.match(q.body, { ok: true, detail: /disconnected from 2\/2 network\(s\)/ });
    t.same(Object.keys((await inspect(id)).NetworkSettings.Networks), [], 'no networks');
    const r = await act('web', { action: 'release' });
    t.match(r.body, { ok: true, detail: /reconnected to 2\/2 network\(s\)/ });
    t.same(Object.keys((await inspect(id)).NetworkSettings.Networks).sort(), [netA, netB].sort(), 'both back');
    const again = await act('web', { action: 'release' });
    t.equal(again.status, 409);
    t.match(again.body, { code: 'BK_ERR_CONFLICT', detail: /no record of quarantining/ });
  });

  t.test('kill', async (t) => {
    const k = await act('web', { action: 'kill' });
    t.match(k.body, { ok: true, action: 'kill' });
    t.equal((await inspect(id)).State.Running, false, 'not running');
    t.not(k.body['state'], 'running');
  });

  t.test('bulkhead action', async (t) => {
    const r = await cli('action', agent.agentId, 'lone', 'stop', '--timeout', '1');
    t.equal(r.code, 0, r.stderr);
    t.match(r.stdout, /Action:\s+stop: stopped/);
    t.match(r.stdout, /State:\s+exited/);
    t.equal((await inspect(lone)).State.Running, false);
    const j = await cli('--json', 'action', agent.agentId, 'lone', 'stop');
    t.equal(j.code, 0);
    t.match(JSON.parse(j.stdout), { ok: true, detail: /already exited/ });
    const bad = await cli('action', agent.agentId, 'nope', 'kill');
    t.equal(bad.code, 1);
    t.match(bad.stderr, /BK_ERR_NOT_FOUND/);
  });

  t.test('every action raised an alert', async (t) => {
    const alerts = await waitFor('action alerts', async () => {
      const r = await ctl.get<{ items: Array<{ type: string; action: string; ruleId: string; severity: string }> }>('/v1/alerts?type=action&limit=100');
      const items = r.body.items ?? [];
      return items.length >= 6 ? items : undefined;
    });
    for (const a of ['pause', 'unpause', 'quarantine', 'release', 'kill', 'stop']) {
      t.match(alerts.find((x) => x.action === a), { type: 'action', ruleId: `manual.${a}`, severity: 'info' }, `${a} alert`);
    }
  });

  t.test('both metrics listeners: real scrapes pass promtool', async (t) => {
    const c = await scrape(ctl.metricsPort);
    t.equal(c.status, 200);
    const cl = await promtoolCheck(c.body);
    t.equal(cl.code, 0, `controller: promtool check metrics ${cl.output || 'clean'}`);
    t.equal(sample(c.body, 'bulkhead_controller_agents_connected'), 1);
    t.equal(sample(c.body, 'bulkhead_controller_agents{status="online"}'), 1);
    t.ok(sample(c.body, 'bulkhead_controller_manual_actions_total{action="pause",outcome="ok"}')! >= 1);
    t.ok(sample(c.body, 'bulkhead_controller_manual_actions_total{action="release",outcome="refused"}')! >= 1);
    t.ok(sample(c.body, 'bulkhead_controller_agent_streams_opened_total')! >= 1);
    t.ok(sample(c.body, 'bulkhead_controller_api_request_duration_seconds_count{method="POST",route="/v1/containers/:agent/:id/actions",status="200"}')! >= 5);
    t.match(c.body, /bulkhead_controller_containers\{state="exited"\} [1-9]/);

    const started = await agent.daemon.waitForLog((l) => l['msg'] === 'metrics listening');
    const a = await scrape(started['port'] as number);
    t.equal(a.status, 200);
    const al = await promtoolCheck(a.body);
    t.equal(al.code, 0, `agent: promtool check metrics ${al.output || 'clean'}`);
    t.equal(sample(a.body, 'bulkhead_agent_link_state{state="connected"}'), 1);
    t.equal(sample(a.body, `bulkhead_agent_info{agent_id="${agent.agentId}",version="0.1.0"}`), 1);
    t.equal(sample(a.body, 'bulkhead_agent_docker_event_stream_up'), 1);
    t.ok(sample(a.body, 'bulkhead_agent_commands_total{action="quarantine",result="ok"}')! >= 1);
    t.ok(sample(a.body, 'bulkhead_agent_commands_total{action="release",result="failed"}')! >= 1);
    t.ok(sample(a.body, 'bulkhead_agent_docker_events_processed_total{action="pause"}')! >= 1, 'engine events counted');
    t.ok(sample(a.body, 'bulkhead_agent_containers')! >= 2);
    t.equal(sample(a.body, 'bulkhead_agent_quarantined_containers'), 0);
    t.ok(sample(a.body, 'process_resident_memory_bytes')! > 0);
  });

  t.test('agent offline: a clear error, nothing done', async (t) => {
    await agent.stop();
    await waitFor('agent offline', async () => (await ctl.get<{ status: string }>(`/v1/agents/${agent.agentId}`)).body.status === 'offline');
    await engine.dockerOk(['start', id]);
    const r = await act('web', { action: 'pause' });
    t.equal(r.status, 409);
    t.match(String(r.headers['content-type']), /^application\/problem\+json/);
    t.match(r.body, { code: 'BK_ERR_AGENT_OFFLINE', detail: /not connected/ });
    t.equal((await inspect(id)).State.Paused, false, 'nothing happened');
    const c = await cli('action', agent.agentId, 'web', 'pause');
    t.equal(c.code, 1);
    t.match(c.stderr, /BK_ERR_AGENT_OFFLINE: agent agt_\w+ is not connected.*\(HTTP 409\)/);
  });

  t.teardown(async () => {
    await engine.docker(['rm', '-f', id, lone]);
    await engine.docker(['network', 'rm', netA, netB]);
  });
});
