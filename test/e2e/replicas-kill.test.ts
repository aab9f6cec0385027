// A controller replica killed with SIGKILL: two real `bulkhead-controller serve` processes on
// one private PostgreSQL database (test/helpers/postgres.ts), the agent's real link (its
// enrolled credentials, the real ControllerLink; the Docker side an in-memory inventory) on
// replica B. B is killed: an action through A then fails with a clear error within the accept
// bound (never hangs, never runs), B's lease runs out, A marks the agent offline and raises
// exactly one agent_offline for the fleet; once the agent is served by A, actions work again.
import t from 'tap';
import { createLogger, type CommandResult } from '../../packages/shared/src/index';
import { ControllerLink } from '../../packages/agent/src/link/controller-link';
import { loadCredentials } from '../../packages/agent/src/state/agent-state';
import { CONTROLLER_BIN, Daemon, apiRequest, waitFor } from '../helpers/processes';
import { usePostgres } from '../helpers/postgres';
import { enrollAgent, startController, tempRoot } from './stack';
import { FakeInventory } from '../helpers/fake-inventory';


const CONTAINER = 'd'.repeat(64);
const host = async () => ({ hostname: 'kill-host', osPlatform: 'linux', cpus: 2, memoryBytes: 1024, dockerVersion: '24.0', cgroupVersion: 2 });

t.test('replica B SIGKILLed: actions fail clearly, its lease runs out, one agent_offline, the agent is served by A', async (t) => {
  const pg = await usePostgres(t);
  if (!pg) return;
  const db = await pg.createDatabase();
  const root = tempRoot();
  t.teardown(root.cleanup);
  const env = { BULKHEAD_DATABASE_URL: db.url };
  const timing = ['--heartbeat-interval', '200ms', '--offline-after', '1500ms'];
  const a = await startController(root.dir, { env, heartbeatInterval: '200ms', offlineAfter: '1500ms' });
  t.teardown(() => a.stop());
  const b = Daemon.start('controller-b', CONTROLLER_BIN, ['serve', '--data-dir', a.dataDir, '--grpc-listen', '127.0.0.1:0', '--api-listen', '127.0.0.1:0', '--no-metrics', ...timing], env);
  t.teardown(() => b.stop());
  const bReady = await b.waitForLog((l) => l['msg'] === 'controller ready');
  const aReady = a.daemon.lines.find((l) => l['msg'] === 'controller ready')!;
  const bReplica = bReady['replicaId'] as string;
  t.match(bReplica, /^rep_[0-9a-f]{16}$/);

  const agent = await enrollAgent(a, root.dir, 'agent', 'unix:///nonexistent');
  const creds = loadCredentials(agent.stateDir);
  const inv = new FakeInventory();
  inv.items.set(CONTAINER, { id: CONTAINER, name: '/db', imageRef: 'img:1', state: 'running', labels: {} });
  let runs = 0;
  const link = (port: number) => {
    const l = new ControllerLink({
      credentials: creds, inventory: inv, hostFacts: host, logger: createLogger({ name: 'agent', level: 'silent' }), controller: `127.0.0.1:${port}`, minBackoffMs: 50, maxBackoffMs: 300,
      onCommand: async (cmd): Promise<CommandResult> => (runs++, { id: cmd.id, ok: true, detail: '', durationMs: 1, state: 'paused' }),
    });
    l.start();
    t.teardown(() => l.stop());
    return l;
  };
  const lease = async () => (await pg.query<{ owner: string; expires_at: string }>('select owner, expires_at::text from agent_leases where agent_id = $1', [agent.agentId], db.name))[0];
  const offlineAlerts = async () => (await pg.query<{ n: string }>("select count(*)::text as n from alerts where type = 'agent_offline' and agent_id = $1", [agent.agentId], db.name))[0]?.n;

  const onB = link(bReady['grpcPort'] as number);
  await waitFor('held by B', async () => (await lease())?.owner === bReplica, 5000);
  await waitFor('snapshot stored', async () => (await pg.query('select 1 from containers where agent_id = $1', [agent.agentId], db.name)).length === 1, 5000);

  b.child.kill('SIGKILL');
  await b.exited;
  const killedAt = performance.now();
  // Right after the kill B's lease is still live: A forwards, nobody accepts, a clear refusal.
  const first = await apiRequest<{ code: string; detail: string }>(a.apiBase, 'POST', `/v1/containers/${agent.agentId}/${CONTAINER}/actions`, a.caPem, a.adminKey, JSON.stringify({ action: 'pause' }));
  const firstMs = performance.now() - killedAt;
  t.equal(first.status, 409, `refused: ${JSON.stringify(first.body)}`);
  t.equal(first.body.code, 'BK_ERR_AGENT_OFFLINE');
  t.ok(firstMs < 5000, `answered in ${firstMs.toFixed(0)} ms (accept bound 2 s + 1 s margin, or at once once the lease ran out)`);

  // The lease runs out (1.5 s, no renewal), A's sweep marks the agent offline: one alert.
  await waitFor('offline after the lease ran out', async () => (await a.get<{ status: string }>(`/v1/agents/${agent.agentId}`)).body.status === 'offline', 8000);
  t.comment(`agent offline ${(performance.now() - killedAt).toFixed(0)} ms after B was killed`);
  await waitFor('agent_offline raised', async () => (await offlineAlerts()) === '1', 5000);
  const second = await apiRequest<{ code: string }>(a.apiBase, 'POST', `/v1/containers/${agent.agentId}/${CONTAINER}/actions`, a.caPem, a.adminKey, JSON.stringify({ action: 'pause' }));
  t.equal(second.body.code, 'BK_ERR_AGENT_OFFLINE', 'with no live lease: refused');
  await new Promise((r) => setTimeout(r, 1500));
  t.equal(await offlineAlerts(), '1', 'exactly one agent_offline for the fleet');
  t.equal(runs, 0, 'no action ran while the agent was unreachable');

  // The agent reaches A: served there, and actions run once.
  onB.stop();
  link(Number(aReady['grpcPort']));
  await waitFor('held by A', async () => (await lease())?.owner === aReady['replicaId'], 5000);
  const third = await apiRequest<{ ok: boolean }>(a.apiBase, 'POST', `/v1/containers/${agent.agentId}/${CONTAINER}/actions`, a.caPem, a.adminKey, JSON.stringify({ action: 'pause' }));
  t.equal(third.status, 200);
  t.equal(runs, 1, 'run once');
});
