// Fault: one of two active controller replicas is SIGKILLed under an agent that knows both.
//
// Two real `bulkhead-controller serve` processes on one private PostgreSQL database
// (test/helpers/postgres.ts). Replica B does NOT share A's data directory: it gets a directory
// of its own holding copies of only what a replica needs from A's (REPLICA_FILES: the CA pair
// that signs agent certificates and verifies them, the server certificate agents check, the
// token signing key) — the test proves that list is enough. The agent is enrolled and run
// with both gRPC addresses (`--controller A,B`) against a real (private) Docker engine with
// an enforce-mode policy, and connects to A (the first).
//
// A is first frozen (SIGSTOP) while containers that break the policy start: the agent kills
// them and reports the violations, which wait unacknowledged in its spool; then A is
// SIGKILLed. Asserted:
//   - the agent is connected to replica B, and B serves it (online in B's API), within 5 s of
//     the SIGKILL (measured from the kill to the agent's `connected to controller` line naming
//     B, and to B's API saying online; both printed);
//   - every violation made while A was frozen reaches the store through B, and the agent's
//     spool is empty afterwards (all acknowledged; nothing lost);
//   - a violation made after the failover reaches the store through B;
//   - no `agent_offline` alert for the agent (no false offline alert during a failover).
import t from 'tap';
import { copyFileSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { FILE_LABEL, removeLabelledContainers, useEngine } from '../helpers/engine';
import { AGENT_BIN, CONTROLLER_BIN, Daemon, apiGet, run, waitFor } from '../helpers/processes';
import { usePostgres } from '../helpers/postgres';
import { listAll, putPolicy, rootPolicy, runContainer, testLabels, type ControllerAlert, type ControllerViolation } from '../helpers/fault-harness';
import { startController, tempRoot } from '../e2e/stack';
import { recordFault } from '../helpers/fault-report';

/**
 * What a second replica needs from the first one's data directory (docs/cli.md#several-active-replicas):
 * the CA (key and certificate: it issues and verifies agent certificates), the server pair
 * agents verify (issued by that CA, naming every address agents use), the token signing key
 * (API bearer tokens valid on every replica). The store is the shared database.
 */
const REPLICA_FILES = ['ca.key', 'ca.crt', 'server.key', 'server.crt', 'token-signing.key'];
/** Containers started while replica A is frozen; their reports wait in the agent's spool. */
const FROZEN_BAD = 3;
const FAILOVER_BOUND_MS = 5_000;
/**
 * A replica serves the policy it loaded at start and hears of no version put through another
 * replica, so B sends the agent an older bundle than A did. Set to `false` once replicas share
 * policy versions through the database (the controller side of active replicas); these
 * assertions then count.
 */
const SHARED_POLICY_TODO: string | false = false;

t.test('two replicas on one PostgreSQL: replica A SIGKILLed, the agent is served by B within 5 s and loses nothing', async (t) => {
  const pg = await usePostgres(t);
  if (!pg) return;
  const engine = await useEngine(t);
  t.teardown(() => removeLabelledContainers(engine).then(() => undefined));
  const db = await pg.createDatabase({ name: 'bulkhead_failover', owner: 'bulkhead' });
  const root = tempRoot();
  t.teardown(root.cleanup);
  const env = { BULKHEAD_DATABASE_URL: db.url };
  // Heartbeats every 2 s, offline after 12 s: a replica that wrongly declared the agent offline
  // during the failover shows up as an alert within the test. The agent's silence watchdog
  // gives a frozen replica up after 3 heartbeats (6 s); the freeze below stays shorter, so the
  // SIGKILL is what moves the agent.
  const timing = ['--heartbeat-interval', '2s', '--offline-after', '12s'];

  const a = await startController(root.dir, { env, heartbeatInterval: '2s', offlineAfter: '12s' });
  t.teardown(() => a.stop());
  const bDir = join(root.dir, 'controller-b');
  mkdirSync(bDir, { mode: 0o700 });
  for (const f of REPLICA_FILES) copyFileSync(join(a.dataDir, f), join(bDir, f));
  const b = Daemon.start('controller-b', CONTROLLER_BIN, ['serve', '--data-dir', bDir, '--grpc-listen', '127.0.0.1:0', '--api-listen', '127.0.0.1:0', '--no-metrics', ...timing], env);
  t.teardown(() => b.stop());
  const bReady = await Promise.race([
    b.waitForLog((l) => l['msg'] === 'controller ready'),
    b.exited.then((c) => {
      throw new Error(`replica B exited with ${c}: ${b.raw.slice(-3000)}`);
    }),
  ]);
  const bAddr = `127.0.0.1:${bReady['grpcPort'] as number}`;
  const bApi = { apiBase: `https://127.0.0.1:${bReady['apiPort'] as number}`, caPem: a.caPem, adminKey: a.adminKey };
  t.ok(bAddr !== a.grpcAddr, `replica A at ${a.grpcAddr}, replica B at ${bAddr} (data directory of its own: ${REPLICA_FILES.join(', ')})`);

  const version = await putPolicy(a, rootPolicy('faults-failover', 'enforce'));

  // Enrolled with both addresses; the saved identity keeps the list.
  const stateDir = join(root.dir, 'agent');
  const token = await a.token();
  const enrolled = await run(AGENT_BIN, ['enroll', '--controller', `${a.grpcAddr},${bAddr}`, '--token', token, '--ca-fingerprint', a.caFingerprint, '--state-dir', stateDir]);
  t.equal(enrolled.code, 0, `enrolled with both addresses: ${enrolled.stderr}`);
  const agentId = /enrolled as (agt_[0-9a-f]+)/.exec(enrolled.stdout)?.[1] ?? '';
  const identity = JSON.parse(readFileSync(join(stateDir, 'identity.json'), 'utf8')) as { controller: string; controllers?: string[] };
  t.same(identity.controllers, [a.grpcAddr, bAddr], 'identity.json keeps both addresses in order');
  t.equal(identity.controller, a.grpcAddr, 'and `controller` is the first');

  const agent = Daemon.start('agent', AGENT_BIN, [
    'run', '--state-dir', stateDir, '--docker-host', engine.dockerHost, '--reconcile-interval', '2s',
    '--authz-socket', join(stateDir, 'authz.sock'), '--metrics-listen', '127.0.0.1:0', '--audit-interval', '0',
  ]);
  t.teardown(() => agent.stop());
  const first = await agent.waitForLog((l) => l['msg'] === 'connected to controller', 30_000);
  t.equal(first['controller'], a.grpcAddr, 'the agent connects to the first address (replica A)');
  await waitFor('agent online with the policy applied (via A)', async () => {
    const r = await a.get<{ status: string; policy: { version: number; applied: boolean } | null }>(`/v1/agents/${agentId}`);
    return r.body.status === 'online' && r.body.policy?.version === version && r.body.policy.applied;
  }, 30_000);

  // A frozen: the stream stays open, nothing is acknowledged. Violations made now are spooled.
  a.daemon.child.kill('SIGSTOP');
  const frozenAt = performance.now();
  const bad: string[] = [];
  for (let i = 0; i < FROZEN_BAD; i++) {
    bad.push(await runContainer(engine.socketPath, `fo-frozen-${process.pid}-${i}`, testLabels({ fault: 'bad' })));
  }
  const spoolFile = join(stateDir, 'spool', 'violations.jsonl');
  const pendingIds = (): Set<string> => {
    const ids = new Set<string>();
    let text = '';
    try {
      text = readFileSync(spoolFile, 'utf8');
    } catch {
      return ids;
    }
    // report-spool.ts: "+{report json}" adds a report, "-ID" acknowledges one.
    for (const line of text.split('\n')) {
      if (line.startsWith('-')) ids.delete(line.slice(1));
      else if (line.startsWith('+')) {
        try {
          const id = (JSON.parse(line.slice(1)) as { id?: string }).id;
          if (id) ids.add(id);
        } catch {
          /* a torn last line */
        }
      }
    }
    return ids;
  };
  const spooled = await waitFor('the frozen-time violations in the agent spool', async () => {
    const n = pendingIds().size;
    return n >= FROZEN_BAD ? n : undefined;
  }, 5_000, 50);
  const frozenMs = performance.now() - frozenAt;
  t.ok(spooled >= FROZEN_BAD, `${spooled} unacknowledged report(s) in the spool while A was frozen (${frozenMs.toFixed(0)} ms)`);
  t.ok(frozenMs < 6_000, 'A was frozen for less than the watchdog\'s 3 heartbeats (and the offline bound)');
  t.notOk(agent.lines.some((l) => l['msg'] === 'controller link down'), 'the agent is still on replica A when A is killed');

  // The fault.
  const killedAt = performance.now();
  a.daemon.child.kill('SIGKILL');
  const onB = await agent.waitForLog((l) => l['msg'] === 'connected to controller' && l['controller'] === bAddr, 15_000);
  const reconnectMs = Number(onB['time']) - (Date.now() - (performance.now() - killedAt));
  const connectedMs = performance.now() - killedAt;
  await waitFor('B serves the agent (online in B\'s API)', async () => {
    const r = await apiGet<{ status: string }>(bApi.apiBase, `/v1/agents/${agentId}`, bApi.caPem, bApi.adminKey);
    return r.status === 200 && r.body.status === 'online';
  }, 10_000, 50);
  const servedMs = performance.now() - killedAt;
  t.comment(`measured: SIGKILL of replica A → agent connected to B in ${Math.max(reconnectMs, 0).toFixed(0)} ms (its log line; seen here after ${connectedMs.toFixed(0)} ms); online in B's API after ${servedMs.toFixed(0)} ms; bound ${FAILOVER_BOUND_MS} ms`);
  const killedWall = Date.now() - (performance.now() - killedAt);
  t.comment(`agent link after the kill: ${agent.lines.filter((l) => Number(l['time']) >= killedWall - 50 && /controller link down|connected to controller/.test(String(l['msg'])))
    .map((l) => `+${Number(l['time']) - Math.round(killedWall)} ms ${l['msg'] === 'connected to controller' ? `connected to ${String(l['controller'])}` : `down at ${String(l['controller'])}: ${String(l['reason'])}, retry in ${String(l['retryInMs'])} ms`}`).join('; ')}`);
  t.ok(connectedMs <= FAILOVER_BOUND_MS, `agent connected to replica B ${connectedMs.toFixed(0)} ms after the SIGKILL (bound ${FAILOVER_BOUND_MS} ms)`);
  t.ok(servedMs <= FAILOVER_BOUND_MS, `B reports the agent online ${servedMs.toFixed(0)} ms after the SIGKILL (bound ${FAILOVER_BOUND_MS} ms)`);
  const down = agent.lines.find((l) => l['msg'] === 'controller link down' && Number(l['time']) >= Number(first['time']));
  t.equal(down?.['controller'], a.grpcAddr, 'the link-down line names the replica that failed');
  t.equal(down?.['next'], bAddr, 'and the address tried next');

  // Nothing lost: every frozen-time violation is stored (through B), and the spool drains.
  const violationsFor = async (ids: string[]): Promise<ControllerViolation[]> => {
    const all = await listAll<ControllerViolation>(bApi, '/v1/violations');
    return all.filter((v) => ids.includes(v.containerId) && v.ruleId === 'faults.root');
  };
  await waitFor('violations of the frozen-time containers stored via B', async () => new Set((await violationsFor(bad)).map((v) => v.containerId)).size === FROZEN_BAD, 15_000, 200);
  const storedMs = performance.now() - killedAt;
  t.pass(`all ${FROZEN_BAD} violations made while A was frozen are in the store (${storedMs.toFixed(0)} ms after the SIGKILL)`);
  await waitFor('the agent spool drained', async () => pendingIds().size === 0, 10_000, 100);
  t.pass('the agent spool holds no unacknowledged report');
  const perContainer = new Map<string, number>();
  for (const v of await violationsFor(bad)) perContainer.set(v.containerId, (perContainer.get(v.containerId) ?? 0) + 1);
  t.same([...perContainer.values()], bad.map(() => 1), 'one violation per container (re-sent reports are deduplicated)');

  // The policy put through A before the failover is the one B serves: B must not send the
  // agent an older bundle than the one in force. Depends on the replicas sharing policy pushes
  // (the controller-side replica work); until then B serves the policy it loaded at start.
  // B sends its bundle right after the welcome and the agent answers with its status.
  await new Promise((r) => setTimeout(r, 1_000));
  const policyAfter = await apiGet<{ policy: { version: number; applied: boolean } | null }>(bApi.apiBase, `/v1/agents/${agentId}`, bApi.caPem, bApi.adminKey);
  const older = agent.lines.find((l) => Number(l['time']) >= Number(onB['time']) && /older policy version/.test(String(l['msg'])));
  t.notOk(older, `B did not send the agent an older policy than the one put through A (v${version})${older ? `: ${JSON.stringify(older)}` : ''}`, { todo: SHARED_POLICY_TODO });
  t.equal(policyAfter.body.policy?.version, version, `after the failover the agent still enforces the policy put through A (v${version})`, { todo: SHARED_POLICY_TODO });

  // After the failover: a policy put through B reaches the agent, and a new violation reaches the store through B.
  const versionB = await putPolicy(bApi, rootPolicy('faults-failover-b', 'enforce'));
  await waitFor('agent applied the policy put through B', async () => {
    const r = await apiGet<{ policy: { version: number; applied: boolean } | null }>(bApi.apiBase, `/v1/agents/${agentId}`, bApi.caPem, bApi.adminKey);
    return r.body.policy?.version === versionB && r.body.policy.applied;
  }, 15_000, 100);
  const after = await runContainer(engine.socketPath, `fo-after-${process.pid}`, testLabels({ fault: 'bad' }));
  await waitFor('the post-failover violation stored via B', async () => (await violationsFor([after])).length === 1, 15_000, 200);
  t.pass(`a violation made after the failover (policy v${versionB} put through B) is stored`);
  recordFault({
    fault: 'controller replica SIGKILL (2 replicas on one PostgreSQL, agent given both addresses)',
    injected: 1,
    items: 'violations spooled while the replica was frozen, then one after the failover',
    produced: FROZEN_BAD + 1,
    delivered: new Set((await violationsFor([...bad, after])).map((v) => v.containerId)).size,
    lost: FROZEN_BAD + 1 - new Set((await violationsFor([...bad, after])).map((v) => v.containerId)).size,
    recoverMs: storedMs,
    note: `agent connected to the other replica ${connectedMs.toFixed(0)} ms after the kill, online in its API after ${servedMs.toFixed(0)} ms`,
  });

  // No false offline alert: the agent was never without a stream for the offline bound.
  await new Promise((r) => setTimeout(r, 1_500)); // one more sweep on B
  const alerts = await listAll<ControllerAlert & { agentId?: string | null; message?: string }>(bApi, '/v1/alerts');
  const offline = alerts.filter((x) => x.type === 'agent_offline' && (x.agentId === agentId || (x.message ?? '').includes(agentId)));
  t.equal(offline.length, 0, `no agent_offline alert for the agent during the failover${offline.length ? `: ${JSON.stringify(offline)}` : ''}`);
  const r = await apiGet<{ status: string }>(bApi.apiBase, `/v1/agents/${agentId}`, bApi.caPem, bApi.adminKey);
  t.equal(r.body.status, 'online', 'still online at the end');
  t.comment(`engine containers labelled ${FILE_LABEL}: removed in teardown`);
});
