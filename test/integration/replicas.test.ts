// Active controller replicas on one PostgreSQL database, with real pieces: a private
// PostgreSQL cluster (test/helpers/postgres.ts), two complete controllers (Controller.start:
// store, gRPC with TLS, HTTPS API, alerting) on one data directory and one database, as two
// `serve` processes would be, and the agent's real enrollment and ControllerLink — only the
// Docker side is an in-memory inventory and the command handler a counter.
//
// The agent's stream is on replica B; everything is asked of replica A's API:
// a manual action reaches the agent once and its result comes back through A; a policy
// version PUT on A reaches the agent through B; a revocation on A closes the stream on B
// within 1 s (by NOTIFY, not the store poll). Also: the certificate-expiry job ran on one
// replica of two; an agent moving from A to B raises no agent_offline; B's lease is gone once
// B stops, and an action then fails at once with BK_ERR_AGENT_OFFLINE; an action for an agent
// whose holder is dead (lease not expired yet) fails within the accept bound.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DEFAULT_POLICY_YAML, createLogger, type Command__Output, type CommandResult } from '../../packages/shared/src/index';
import { main as controllerCli } from '../../packages/controller/src/cli/main';
import { Controller } from '../../packages/controller/src/controller';
import { resolveControllerOptions } from '../../packages/controller/src/controller-options';
import { createJoinToken } from '../../packages/controller/src/enrollment/join-tokens';
import { openStore } from '../../packages/controller/src/store/open-store';
import { enroll } from '../../packages/agent/src/enroll/enroll';
import { ControllerLink } from '../../packages/agent/src/link/controller-link';
import { apiRequest, waitFor } from '../helpers/processes';
import { usePostgres } from '../helpers/postgres';
import { loadSigningSecret } from '../../packages/controller/src/auth/signing-secret';
import { busKey, signMessage } from '../../packages/controller/src/replicas/pg-replica-bus';
import type { ReplicaMessage } from '../../packages/controller/src/replicas/replica-bus';
import { FakeInventory } from '../helpers/fake-inventory';

type Line = Record<string, unknown>;

/** A controller logger whose lines the test reads. */
function capture(name: string): { logger: ReturnType<typeof createLogger>; lines: Line[] } {
  const lines: Line[] = [];
  const destination = { write: (s: string) => void lines.push(JSON.parse(s) as Line) };
  return { logger: createLogger({ name, level: 'debug', destination }), lines };
}


const CONTAINER = 'c'.repeat(64);
const host = async () => ({ hostname: 'replica-host', osPlatform: 'linux', cpus: 2, memoryBytes: 1024, dockerVersion: '24.0', cgroupVersion: 2 });

t.test('two controller replicas on one PostgreSQL database', async (t) => {
  const pg = await usePostgres(t);
  if (!pg) return;
  const db = await pg.createDatabase();
  const dir = t.testdir();
  const dataDir = join(dir, 'ctl');
  let initOut = '';
  t.equal(await controllerCli(['init', '--data-dir', dataDir, '--database-url', db.url, '--json'], { out: (s) => void (initOut += s), err: () => undefined }), 0, 'init');
  const init = JSON.parse(initOut) as { adminApiKey: string; caCert: string; caFingerprint: string };
  const caPem = readFileSync(init.caCert, 'utf8');
  const opts = resolveControllerOptions({
    dataDir, databaseUrl: db.url, grpcListen: '127.0.0.1:0', apiListen: '127.0.0.1:0', metricsListen: false, heartbeatInterval: '200ms', offlineAfter: '2s',
  });
  const logA = capture('a');
  const logB = capture('b');
  // Both at once, as replicas started together would.
  const [a, b] = await Promise.all([Controller.start(opts, logA.logger), Controller.start(opts, logB.logger)]);
  let bStopped = false;
  t.teardown(async () => {
    await a.stop();
    if (!bStopped) await b.stop();
  });
  t.not(a.replicaId, b.replicaId, 'each replica has its own id');
  t.same(await pg.query('select version from policies', [], db.name), [{ version: 1 }], 'replicas starting together installed the default policy once');
  const apiA = `https://127.0.0.1:${a.apiPort}`;
  const key = init.adminApiKey;

  // A periodic job (the certificate-expiry watch runs at start) ran on one replica of two.
  await waitFor('the fleet job recorded', async () => (await pg.query<{ n: string }>('select count(*)::text as n from fleet_jobs where name = $1', ['cert-expiry-watch'], db.name))[0]?.n === '1');
  await new Promise((r) => setTimeout(r, 200));
  const ran = [...logA.lines, ...logB.lines].filter((l) => l['msg'] === 'certificate expiry check ran').length;
  t.equal(ran, 1, 'the certificate-expiry check ran once for two replicas');
  // The claim itself: of ten concurrent claims one wins, and none again within the period.
  const claims = await Promise.all(Array.from({ length: 10 }, (_, i) => a.store.claimJobRun!('test-job', `rep_${i}`, new Date(), 60_000)));
  t.equal(claims.filter(Boolean).length, 1, 'exactly one of ten concurrent claims wins');
  t.equal(await b.store.claimJobRun!('test-job', 'rep_x', new Date(), 60_000), false, 'and no claim within the period');

  // The agent enrolls through A and streams to B.
  const { token } = await createJoinToken(a.store, 60_000, new Date());
  const creds = await enroll({ controller: `127.0.0.1:${a.grpc.port}`, token, caFingerprint: init.caFingerprint, stateDir: join(dir, 'agent'), hostname: 'replica-host' });
  const agentId = creds.identity.agentId;
  const inv = new FakeInventory();
  inv.items.set(CONTAINER, { id: CONTAINER, name: '/web', imageRef: 'img:1', state: 'running', labels: {} });
  const ran2: Command__Output[] = [];
  const policies: number[] = [];
  const startLink = (port: number) => {
    const link = new ControllerLink({
      credentials: creds, inventory: inv, hostFacts: host, logger: createLogger({ name: 'agent', level: 'silent' }), controller: `127.0.0.1:${port}`, minBackoffMs: 50, maxBackoffMs: 300,
      onCommand: async (cmd): Promise<CommandResult> => {
        ran2.push(cmd);
        return { id: cmd.id, ok: true, detail: `paused by ${cmd.requestedBy}`, durationMs: 3, state: 'paused' };
      },
      onPolicy: (bundle) => {
        policies.push(Number(bundle.version));
        return { version: bundle.version, applied: true, error: '' };
      },
    });
    link.start();
    return link;
  };

  // First on A, then moved to B, as after a failover: the agent's new stream on B takes the
  // lease while A still holds the old one, which A then closes (its lease renewal finds it
  // taken) or sees end — either way A must not call the agent offline.
  const onA = startLink(a.grpc.port);
  t.teardown(() => onA.stop());
  await waitFor('held by A', async () => (await a.store.getAgentLease!(agentId))?.owner === a.replicaId);
  await waitFor('snapshot stored', async () => (await a.store.listContainers({ agentId })).length === 1);
  const onB = startLink(b.grpc.port);
  t.teardown(() => onB.stop());
  await waitFor('held by B', async () => (await a.store.getAgentLease!(agentId))?.owner === b.replicaId, 5000);
  onA.stop(); // the old connection is gone for good
  await waitFor('served by B only', async () => (await a.store.getAgentLease!(agentId))?.owner === b.replicaId && b.grpc.link.connectedAgents().includes(agentId) && !a.grpc.link.connectedAgents().includes(agentId), 5000);
  // Past offlineAfter (2 s) plus a sweep: no replica may have called it offline.
  await new Promise((r) => setTimeout(r, 2600));
  t.equal((await a.store.getAgent(agentId))?.status, 'online', 'the agent that moved to B is online');
  const offline = await a.store.alerts!.listAlerts({ types: ['agent_offline'], agentId });
  t.equal(offline.length, 0, 'no agent_offline alert for an agent that moved from A to B');
  if (offline.length > 0) {
    t.comment(JSON.stringify(offline));
    for (const [n, l] of [['A', logA.lines], ['B', logB.lines]] as const) t.comment(n + ' ' + JSON.stringify(l.filter((x) => x['agentId'] === agentId || /agent|lease|offline/.test(String(x['msg']))).map((x) => [x['time'], x['msg'], x['why'], x['heldElsewhere']])));
  }

  // A manual action through A's API reaches the agent on B once; the result comes back through A.
  const action = await apiRequest<Record<string, unknown>>(apiA, 'POST', `/v1/containers/${agentId}/${CONTAINER}/actions`, caPem, key, JSON.stringify({ action: 'pause' }));
  t.equal(action.status, 200, `the action answered 200: ${JSON.stringify(action.body)}`);
  t.match(action.body, { agentId, containerId: CONTAINER, action: 'pause', ok: true, state: 'paused', detail: /^paused by / });
  await new Promise((r) => setTimeout(r, 300));
  t.equal(ran2.length, 1, 'the agent ran the command exactly once');
  t.equal(ran2[0]?.action, 'pause');

  // Another replica marked the agent offline while B stalled (its lease ran out meanwhile), yet
  // B still serves the stream: B's next lease renewal sets it online again.
  await pg.query("update agents set status = 'offline' where id = $1", [agentId], db.name);
  await waitFor('B set the agent online again', async () => (await a.store.getAgent(agentId))?.status === 'online', 3000);
  // B logs once its update has returned, which A can see first (once missed on Node 24).
  t.ok(await waitFor('B logged it', async () => logB.lines.some((x) => x['agentId'] === agentId && /online again/.test(String(x['msg']))) || undefined, 3000), 'B logged it');

  // The same command delivered twice to B (a duplicate NOTIFY) runs once; one arriving after its accept-by time not at all.
  // Messages are signed with the key every replica derives from the data directory's token signing secret;
  // each forwarded command is first recorded as sent (remote_commands), as the asking replica does.
  const busKeyOfFleet = busKey(loadSigningSecret(dataDir));
  const notify = async (msg: Record<string, unknown> & { cmd?: { id: string } }) => {
    if (msg.cmd) await a.store.recordRemoteCommand!(msg.cmd.id, new Date());
    await pg.query('select pg_notify($1, $2)', ['bulkhead_replicas', signMessage(busKeyOfFleet, msg as unknown as ReplicaMessage, Date.now())], db.name);
  };
  const dupCmd = { id: 'cmd_dup', containerId: CONTAINER, action: 'kill', requestedBy: 'test', deadlineMs: Date.now() + 10_000 };
  // Unsigned (any role that may connect could send it): refused.
  await pg.query('select pg_notify($1, $2)', ['bulkhead_replicas', JSON.stringify({ t: 'cmd', to: b.replicaId, from: 'rep_test', agentId, cmd: { ...dupCmd, id: 'cmd_unsigned' }, acceptBy: Date.now() + 2000 })], db.name);
  await notify({ t: 'cmd', to: b.replicaId, from: 'rep_test', agentId, cmd: dupCmd, acceptBy: Date.now() + 2000 });
  await notify({ t: 'cmd', to: b.replicaId, from: 'rep_test', agentId, cmd: dupCmd, acceptBy: Date.now() + 2000 });
  await notify({ t: 'cmd', to: b.replicaId, from: 'rep_test', agentId, cmd: { ...dupCmd, id: 'cmd_late' }, acceptBy: Date.now() - 1 });
  await notify({ t: 'cmd', to: a.replicaId, from: 'rep_test', agentId, cmd: { ...dupCmd, id: 'cmd_wrong_owner' }, acceptBy: Date.now() + 2000 });
  await waitFor('the duplicated command ran', async () => ran2.some((c) => c.id === 'cmd_dup'), 3000);
  await new Promise((r) => setTimeout(r, 500));
  t.same(ran2.map((c) => c.id).slice(1), ['cmd_dup'], 'a duplicate delivery ran once; an unsigned one, a late one and one sent to a replica not holding the stream did not run');

  // A policy version PUT on A reaches the agent on B.
  const before = policies.length;
  const put = await apiRequest<{ version: number }>(apiA, 'PUT', '/v1/policies', caPem, key, DEFAULT_POLICY_YAML, 'text/yaml');
  t.equal(put.status, 200, 'policy stored through A');
  t.equal(put.body.version, 2);
  const putAt = performance.now();
  await waitFor('the new version reached the agent on B', async () => policies.slice(before).includes(put.body.version), 3000);
  t.comment(`policy v${put.body.version} PUT on A reached the agent on B in ${(performance.now() - putAt).toFixed(0)} ms`);

  // The server drops the replicas' listening connections (a database failover would): a version
  // PUT on A meanwhile is not heard by B, which reloads the policy once reconnected.
  const dropped = await pg.query('select pg_terminate_backend(pid) from pg_stat_activity where datname = $1 and application_name = $2', [db.name, 'bulkhead-replicas'], db.name);
  t.equal(dropped.length, 2, 'both replicas\' listening connections dropped');
  const missed = await apiRequest<{ version: number }>(apiA, 'PUT', '/v1/policies', caPem, key, DEFAULT_POLICY_YAML, 'text/yaml');
  t.equal(missed.status, 200, 'stored through A while the replicas cannot hear each other');
  await waitFor('the version reached the agent on B after its reconnect', async () => policies.includes(missed.body.version), 8000);
  await waitFor('both reconnected', async () => [logA, logB].every((l) => l.lines.some((x) => x['msg'] === 'replica notification connection to PostgreSQL restored')), 8000);

  // Only A's listening connection drops; B's stays up, so B is never told it may have missed
  // something. A version PUT on A in that window (its announce fails) still reaches B: A
  // announces again once reconnected, and every replica compares its bundle with the store.
  const aPid = (a.replicas as unknown as { client?: { processID?: number } }).client?.processID;
  t.ok(aPid, 'A\'s listening backend');
  await pg.query('select pg_terminate_backend($1)', [aPid], db.name);
  await waitFor('A\'s bus noticed', async () => (await a.replicas.publish({ t: 'policy', from: a.replicaId }).then(() => false, () => true)), 2000, 10);
  const lostAt = performance.now();
  const unannounced = await apiRequest<{ version: number }>(apiA, 'PUT', '/v1/policies', caPem, key, DEFAULT_POLICY_YAML.replace(/^/, '# stored while only A is deaf\n'), 'text/yaml');
  t.equal(unannounced.status, 200);
  await waitFor('the version stored during A\'s outage reached the agent on B', async () => policies.includes(unannounced.body.version), 12_000);
  t.comment(`policy v${unannounced.body.version} stored while A's bus was down reached the agent on B in ${(performance.now() - lostAt).toFixed(0)} ms`);
  // A version in the store that nobody announced at all (as if every notification were lost):
  // the replicas' periodic comparison with the store picks it up (every 10 s).
  const { version: _v, ...latest } = (await a.store.getPolicy())!;
  const silentVersion = await a.store.insertPolicyVersion({ ...latest, comment: 'never announced', createdAt: new Date() });
  const silentAt = performance.now();
  await waitFor('a version never announced reached the agent on B', async () => policies.includes(silentVersion.version), 15_000);
  t.comment(`policy v${silentVersion.version} never announced reached the agent on B in ${(performance.now() - silentAt).toFixed(0)} ms (poll every 10 s)`);

  // An agent whose holder is dead (its lease not expired yet): the action fails within the accept bound.
  const ghost = await createJoinToken(a.store, 60_000, new Date());
  const ghostCreds = await enroll({ controller: `127.0.0.1:${a.grpc.port}`, token: ghost.token, caFingerprint: init.caFingerprint, stateDir: join(dir, 'ghost'), hostname: 'ghost' });
  const ghostId = ghostCreds.identity.agentId;
  await a.store.claimAgentLease!(ghostId, 'rep_deadbeefdeadbeef', new Date(Date.now() + 60_000));
  const sent = await a.grpc.link.sendCommand(ghostId, { id: 'cmd_ghost', containerId: CONTAINER, action: 'pause', deadlineMs: Date.now() + 10_000 }).then(
    () => 'answered',
    (e: { code: string; message: string }) => `${e.code}: ${e.message}`,
  );
  t.match(sent, /^BK_ERR_AGENT_OFFLINE: .*did not take the command within 2s/, 'a dead holder: a clear error, not a hang');
  // Its lease expired (the dead holder stopped renewing): refused at once.
  await a.store.claimAgentLease!(ghostId, 'rep_deadbeefdeadbeef', new Date(Date.now() - 1));
  const expiredAt = performance.now();
  await t.rejects(a.grpc.link.sendCommand(ghostId, { id: 'cmd_ghost2', containerId: CONTAINER, action: 'pause', deadlineMs: Date.now() + 10_000 }), { code: 'BK_ERR_AGENT_OFFLINE', message: /not connected to any controller replica/ });
  t.ok(performance.now() - expiredAt < 500, 'an expired lease: refused at once');

  // A revocation through A closes the stream on B within 1 s, told by NOTIFY.
  const revokeAt = performance.now();
  const revoked = await apiRequest<{ status: string }>(apiA, 'POST', `/v1/agents/${agentId}/revoke`, caPem, key);
  t.equal(revoked.status, 200);
  await waitFor('B closed the stream', async () => !b.grpc.link.connectedAgents().includes(agentId), 2000);
  const closeMs = performance.now() - revokeAt;
  t.ok(closeMs <= 1000, `stream on B closed ${closeMs.toFixed(0)} ms after the revoke call (bound 1000 ms)`);
  const line = logB.lines.find((l) => l['msg'] === 'agent revoked: stream closed' && l['agentId'] === agentId);
  t.equal(line?.['via'], 'replica notification', 'B learnt it from A by notification, not from the store poll');
  onB.stop();

  // A second agent on B; B stops: its lease is gone, and an action through A fails at once.
  const second = await createJoinToken(a.store, 60_000, new Date());
  const creds2 = await enroll({ controller: `127.0.0.1:${a.grpc.port}`, token: second.token, caFingerprint: init.caFingerprint, stateDir: join(dir, 'agent2'), hostname: 'two' });
  const id2 = creds2.identity.agentId;
  const link2 = new ControllerLink({ credentials: creds2, inventory: inv, hostFacts: host, logger: createLogger({ name: 'agent2', level: 'silent' }), controller: `127.0.0.1:${b.grpc.port}`, minBackoffMs: 50, maxBackoffMs: 300 });
  link2.start();
  t.teardown(() => link2.stop());
  await waitFor('second agent held by B', async () => (await a.store.getAgentLease!(id2))?.owner === b.replicaId);
  await waitFor('second agent snapshot', async () => (await a.store.listContainers({ agentId: id2 })).length === 1);
  bStopped = true;
  await b.stop();
  t.equal(await a.store.getAgentLease!(id2), undefined, 'B stopped: its lease is gone');
  const failAt = performance.now();
  const off = await apiRequest<{ code: string; detail: string }>(apiA, 'POST', `/v1/containers/${id2}/${CONTAINER}/actions`, caPem, key, JSON.stringify({ action: 'pause' }));
  t.equal(off.status, 409, 'an action for an agent with no live lease is refused');
  t.equal(off.body.code, 'BK_ERR_AGENT_OFFLINE');
  t.ok(performance.now() - failAt < 1000, 'at once, not after a wait');
  link2.stop();
});

t.test('SQLite: one controller, leases recorded, jobs always run', async (t) => {
  const dir = t.testdir();
  const store = await openStore({ kind: 'sqlite', path: join(dir, 'bulkhead.db') });
  t.teardown(() => store.close());
  await store.claimAgentLease!('agt_x', 'rep_1', new Date(Date.now() + 1000));
  t.same(await store.renewAgentLeases!('rep_1', ['agt_x', 'agt_y'], new Date(Date.now() + 2000)), [], 'renewed, and the missing one taken again');
  t.equal((await store.getAgentLease!('agt_y'))?.owner, 'rep_1');
  await store.claimAgentLease!('agt_x', 'rep_2', new Date(Date.now() + 1000));
  t.same(await store.renewAgentLeases!('rep_1', ['agt_x'], new Date(Date.now() + 2000)), ['agt_x'], 'a lease taken by another replica is reported lost');
  await store.releaseAgentLease!('agt_x', 'rep_1');
  t.equal((await store.getAgentLease!('agt_x'))?.owner, 'rep_2', 'releasing someone else\'s lease does nothing');
  t.equal(await store.claimJobRun!('j', 'rep_1', new Date(10_000), 5000), true, 'first run');
  t.equal(await store.claimJobRun!('j', 'rep_1', new Date(12_000), 5000), false, 'not within the period');
  t.equal(await store.claimJobRun!('j', 'rep_1', new Date(15_000), 5000), true, 'again after it');
});
