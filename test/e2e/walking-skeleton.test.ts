// End to end: a private dockerd → the built agent → mutual-TLS gRPC → the
// built controller → its HTTPS API and the `bulkhead` CLI, all as real
// processes. Every container change must show up in the API and the CLI.
import t from 'tap';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { startPrivateEngine } from '../helpers/engine';
import { OPS_BIN, run, waitFor } from '../helpers/processes';
import { enrollAgent, startController, tempRoot } from './stack';

interface Item {
  id: string;
  name: string;
  state: string;
  agentId: string;
  imageRef: string;
  facts: Record<string, unknown>;
}

t.test('agent reports a real Docker host to the controller', async (t) => {
  // A dedicated engine: the agent reports every container on it, and this test
  // asserts exact inventories, so no other test file may share it.
  const engine = await startPrivateEngine({ t });
  const root = tempRoot();
  t.teardown(root.cleanup);
  const ctl = await startController(root.dir, { heartbeatInterval: '500ms', offlineAfter: '2s' });
  t.teardown(() => ctl.stop());

  // Key material on disk is private.
  t.equal(statSync(join(ctl.dataDir, 'ca.key')).mode & 0o777, 0o600, 'CA key 0600');
  t.equal(statSync(join(ctl.dataDir, 'server.key')).mode & 0o777, 0o600, 'server key 0600');
  t.equal(statSync(join(ctl.dataDir, 'admin.apikey')).mode & 0o777, 0o600, 'admin key file 0600');

  // A container that exists before the agent starts arrives with the first snapshot.
  const pre = await engine.docker(['run', '-d', '--network', 'none', '--label', 'bulkhead.test=1', '--label', 'app=pre', '--name', 'bk-pre', '-e', 'DB_PASSWORD=hunter2', engine.image, 'sleep', '600']);
  t.equal(pre.code, 0, 'pre-existing container started');
  const preId = pre.stdout.trim();

  const agent = await enrollAgent(ctl, root.dir, 'agent1', engine.dockerHost);
  t.equal(statSync(join(agent.stateDir, 'agent.key')).mode & 0o777, 0o600, 'agent key 0600');
  agent.start();
  t.teardown(() => agent.stop());

  const online = await waitFor('agent online', async () => {
    const r = await ctl.get<{ items: { id: string; status: string; host: Record<string, unknown> | null }[] }>('/v1/agents');
    return r.body.items.find((a) => a.id === agent.agentId && a.status === 'online' && a.host);
  });
  t.equal(online.host?.['hostname'] !== '', true, 'host facts carry a hostname');
  t.match(online.host, { dockerVersion: /^\d+\./, cgroupVersion: /^[12]$/ }, 'host facts carry docker and cgroup versions');
  t.ok(Number(online.host?.['cpus']) > 0 && Number(online.host?.['memoryBytes']) > 0, 'cpus and memory reported');

  const getOne = async (id: string): Promise<Item | undefined> => {
    const r = await ctl.get<Item>(`/v1/containers/${agent.agentId}/${id}`);
    return r.status === 200 ? r.body : undefined;
  };
  const preSeen = await waitFor('pre-existing container', async () => {
    const c = await getOne(preId);
    return c?.state === 'running' ? c : undefined;
  });
  t.equal(preSeen.name, 'bk-pre');
  t.match(preSeen.facts, { envNames: ['DB_PASSWORD'] }, 'env var names reported');
  t.notMatch(JSON.stringify(preSeen), /hunter2/, 'env var values never leave the host');

  // Start, pause, unpause, stop, remove: each change visible through the API.
  const runRes = await engine.docker(['run', '-d', '--network', 'none', '--label', 'bulkhead.test=1', '--label', 'app=web', '--name', 'bk-web', '--memory', '64m', '--pids-limit', '50', '--cap-add', 'NET_ADMIN', '--read-only', engine.image, 'sleep', '600']);
  t.equal(runRes.code, 0, 'docker run');
  const id = runRes.stdout.trim();
  const running = await waitFor('running', async () => ((await getOne(id))?.state === 'running' ? getOne(id) : undefined));
  t.match(running?.facts, {
    memoryLimitBytes: 64 * 1024 * 1024,
    pidsLimit: 50,
    capAdd: ['NET_ADMIN'],
    readOnlyRootfs: true,
    networkMode: 'none',
    labels: { app: 'web', 'bulkhead.test': '1' },
    imageRef: engine.image,
  }, 'facts policy needs');

  for (const [cmd, state] of [['pause', 'paused'], ['unpause', 'running'], ['stop', 'exited']] as const) {
    const r = await engine.docker(cmd === 'stop' ? ['stop', '-t', '1', id] : [cmd, id]);
    t.equal(r.code, 0, `docker ${cmd}`);
    await waitFor(`state ${state}`, async () => (await getOne(id))?.state === state);
    t.pass(`API shows ${state} after docker ${cmd}`);
  }

  // Filters.
  const byLabel = await ctl.get<{ items: Item[] }>('/v1/containers?label=app=web');
  t.same(byLabel.body.items.map((c) => c.id), [id], 'label filter');
  const byState = await ctl.get<{ items: Item[] }>(`/v1/containers?state=running&agent=${agent.agentId}`);
  t.same(byState.body.items.map((c) => c.id), [preId], 'state + agent filter');
  const byImage = await ctl.get<{ items: Item[] }>('/v1/containers?image=busybox');
  t.ok(byImage.body.items.length >= 2, 'image filter');
  const noKey = await ctl.get('/v1/containers', null);
  t.equal(noKey.status, 401, 'no data without the API key');
  t.equal((await ctl.get('/v1/agents', 'bk_0000000000000000_wrongwrongwrongwrongwrongwrongwrongwrongwro')).status, 401, 'a wrong key is refused');

  // The CLI sees the same.
  const env = { BULKHEAD_API: ctl.apiBase, BULKHEAD_CA: ctl.caFile, BULKHEAD_API_KEY: ctl.adminKey };
  const cliAgents = await run(OPS_BIN, ['agents'], env);
  t.equal(cliAgents.code, 0, 'bulkhead agents');
  t.match(cliAgents.stdout, agent.agentId);
  t.match(cliAgents.stdout, /online/);
  const cliContainers = await run(OPS_BIN, ['containers', '--json'], env);
  t.equal(cliContainers.code, 0, 'bulkhead containers --json');
  const cliItems = JSON.parse(cliContainers.stdout) as { items: Item[] };
  t.match(cliItems.items.find((c) => c.id === id), { state: 'exited', name: 'bk-web' });
  const cliTable = await run(OPS_BIN, ['containers', '--state', 'running'], env);
  t.match(cliTable.stdout, 'bk-pre');
  t.notMatch(cliTable.stdout, 'bk-web');

  const rm = await engine.docker(['rm', id]);
  t.equal(rm.code, 0, 'docker rm');
  await waitFor('removed', async () => !(await ctl.get<{ items: Item[] }>('/v1/containers')).body.items.some((c) => c.id === id));
  t.pass('removed container leaves the inventory');

  // Controller restart: the agent reconnects with backoff and re-sends its
  // inventory, including changes made while the controller was down.
  let duringId = '';
  await ctl.restart(async () => {
    await agent.daemon.waitForLog((l) => l['msg'] === 'controller link down', 15_000);
    const during = await engine.docker(['run', '-d', '--network', 'none', '--label', 'bulkhead.test=1', '--name', 'bk-during', engine.image, 'sleep', '600']);
    duringId = during.stdout.trim();
  });
  await waitFor('agent back online', async () => {
    const r = await ctl.get<{ items: { id: string; status: string }[] }>('/v1/agents');
    return r.body.items.find((a) => a.id === agent.agentId && a.status === 'online');
  }, 45_000);
  await waitFor('container created during the restart', async () => (await getOne(duringId))?.state === 'running', 30_000);
  t.pass('agent reconnected after the controller restarted and caught up');

  // Heartbeats stop (process frozen, TCP still open) → offline; resumes → online.
  agent.daemon.child.kill('SIGSTOP');
  await waitFor('agent offline', async () => {
    const r = await ctl.get<{ id: string; status: string }>(`/v1/agents/${agent.agentId}`);
    return r.body.status === 'offline';
  }, 20_000);
  t.pass('controller marks a silent agent offline');
  agent.daemon.child.kill('SIGCONT');
  await waitFor('agent online again', async () => (await ctl.get<{ status: string }>(`/v1/agents/${agent.agentId}`)).body.status === 'online', 45_000);
  t.pass('agent comes back online after it resumes');

  await engine.docker(['rm', '-f', preId, duringId]);
});
