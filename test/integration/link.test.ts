// The agent link in one process, with real pieces: the controller's gRPC
// server on 127.0.0.1:0 with real TLS, a real SQLite store, the agent's real
// enrollment and ControllerLink — only the Docker side is an in-memory
// inventory. Covers snapshot/delta/ack ordering, heartbeats, offline
// detection, superseded streams and reconnection after a controller restart.
import t from 'tap';
import * as grpc from '@grpc/grpc-js';
import { join } from 'node:path';
import { createLogger, loadProto, type ContainerFacts, type ControllerMessage__Output, type AgentMessage } from '../../packages/shared/src/index';
import { initPki } from '../../packages/controller/src/pki/data-dir';
import { openStore } from '../../packages/controller/src/store/open-store';
import { startGrpcServer, type RunningGrpcServer } from '../../packages/controller/src/grpc/grpc-server';
import { createJoinToken } from '../../packages/controller/src/enrollment/join-tokens';
import { enroll } from '../../packages/agent/src/enroll/enroll';
import { ControllerLink } from '../../packages/agent/src/link/controller-link';
import type { Store } from '../../packages/controller/src/store/store';
import { waitFor } from '../helpers/processes';
import { FakeInventory } from '../helpers/fake-inventory';

const silent = createLogger({ name: 'test', level: 'silent' });


const facts = (id: string, state = 'running'): ContainerFacts => ({ id: id.padEnd(64, '0'), name: `c-${id}`, imageRef: 'img:1', state, labels: { app: id } });
const host = async () => ({ hostname: 'h1', osPlatform: 'linux', cpus: 2, memoryBytes: 1024, dockerVersion: '20.10', cgroupVersion: 1 });

t.test('agent link end to end in one process', async (t) => {
  const dir = t.testdir();
  const pki = await initPki(join(dir, 'ctl'), ['localhost', '127.0.0.1']);
  const store: Store = await openStore({ kind: 'sqlite', path: join(dir, 'ctl', 'bulkhead.db') });
  t.teardown(() => store.close());
  const link = { heartbeatIntervalMs: 150, offlineAfterMs: 600, helloTimeoutMs: 500 };
  let server: RunningGrpcServer = await startGrpcServer({ listen: '127.0.0.1:0', store, pki, logger: silent, link });
  const addr = `127.0.0.1:${server.port}`;
  t.teardown(() => server.shutdown());

  const { token } = await createJoinToken(store, 60_000, new Date());
  const creds = await enroll({ controller: addr, token, caFingerprint: pki.caFingerprint, stateDir: join(dir, 'agent'), hostname: 'h1' });
  const agentId = creds.identity.agentId;
  t.match(agentId, /^agt_[0-9a-f]{20}$/);
  t.equal((await store.getAgent(agentId))?.status, 'offline', 'enrolled but not yet connected');

  const inv = new FakeInventory();
  inv.items.set(facts('a').id!, facts('a'));
  const agentLink = new ControllerLink({ credentials: creds, inventory: inv, hostFacts: host, logger: silent, minBackoffMs: 50, maxBackoffMs: 300 });
  const states: string[] = [];
  agentLink.onState((s) => states.push(s));
  agentLink.start();
  t.teardown(() => agentLink.stop());

  await waitFor('online', async () => (await store.getAgent(agentId))?.status === 'online');
  await waitFor('snapshot stored', async () => (await store.listContainers({ agentId })).length === 1);
  const rec = await store.getAgent(agentId);
  t.equal(rec?.host?.hostname, 'h1', 'host facts from the hello');
  t.equal(agentLink.state, 'connected');

  // Deltas apply in order and are acknowledged.
  inv.upsert(facts('b'));
  inv.upsert(facts('b', 'paused'));
  inv.remove(facts('a').id!);
  await waitFor('deltas applied', async () => {
    const live = await store.listContainers({ agentId });
    return live.length === 1 && live[0]!.state === 'paused';
  });
  await waitFor('acks caught up', async () => agentLink.acked >= 4);
  t.pass('upsert, upsert, remove applied in order and acknowledged');

  // Heartbeats keep it online well past offlineAfter.
  const before = { ...inv.calls };
  await new Promise((r) => setTimeout(r, 900));
  t.equal((await store.getAgent(agentId))?.status, 'online', 'heartbeats keep the agent online');
  t.ok(inv.calls.count - before.count >= 3, `heartbeats carry the count (${inv.calls.count - before.count} in 900 ms)`);
  t.equal(inv.calls.inventory, before.inventory, 'without building the inventory (it copies every container\'s facts)');

  // A second stream from the same agent supersedes the first, which reconnects.
  const proto = loadProto();
  const dup = new proto.bulkhead.v1.AgentLink(addr, grpc.credentials.createSsl(Buffer.from(creds.caPem), Buffer.from(creds.keyPem), Buffer.from(creds.certPem)));
  const dupCall = dup.Connect() as grpc.ClientDuplexStream<AgentMessage, ControllerMessage__Output>;
  const dupEnded = new Promise<grpc.ServiceError>((r) => dupCall.on('error', r));
  dupCall.on('data', () => undefined);
  dupCall.write({ seq: 1, hello: { agentId, agentVersion: 'dup', host: await host() } });
  // Silent after the hello: the sweeper must drop it once heartbeats are overdue.
  const dupErr = await dupEnded;
  t.match(dupErr.details, /superseded|heartbeats stopped/, `silent duplicate stream is closed: ${dupErr.details}`);
  dup.close();
  await waitFor('agent reconnected after being superseded', async () => agentLink.state === 'connected' && (await store.getAgent(agentId))?.status === 'online', 10_000);

  // Controller restart: the link backs off, reconnects and re-sends a full snapshot.
  await server.shutdown();
  await waitFor('link notices', async () => agentLink.state !== 'connected', 5000);
  inv.items.set(facts('c').id!, facts('c')); // changed while the controller was away (no delta)
  server = await startGrpcServer({ listen: addr, store, pki, logger: silent, link });
  await waitFor('reconnected', async () => agentLink.state === 'connected', 10_000);
  await waitFor('snapshot after reconnect', async () => (await store.listContainers({ agentId })).some((c) => c.name === 'c-c'), 5000);
  t.ok(states.includes('backoff'), 'went through backoff');
  t.equal(inv.listeners(), 1, 'exactly one subscription after reconnects (no leak)');

  // Stopping the agent closes the stream: offline at once.
  agentLink.stop();
  await waitFor('offline after stop', async () => (await store.getAgent(agentId))?.status === 'offline', 5000);
  t.equal(agentLink.state, 'stopped');
});

t.test('a stream that never says hello is dropped', async (t) => {
  const dir = t.testdir();
  const pki = await initPki(join(dir, 'ctl'), ['127.0.0.1']);
  const store = await openStore({ kind: 'sqlite', path: join(dir, 'ctl', 'bulkhead.db') });
  t.teardown(() => store.close());
  const server = await startGrpcServer({ listen: '127.0.0.1:0', store, pki, logger: silent, link: { heartbeatIntervalMs: 100, helloTimeoutMs: 300 } });
  t.teardown(() => server.shutdown());
  const { token } = await createJoinToken(store, 60_000, new Date());
  const creds = await enroll({ controller: `127.0.0.1:${server.port}`, token, caFingerprint: pki.caFingerprint, stateDir: join(dir, 'agent') });
  const proto = loadProto();
  const client = new proto.bulkhead.v1.AgentLink(`127.0.0.1:${server.port}`, grpc.credentials.createSsl(Buffer.from(creds.caPem), Buffer.from(creds.keyPem), Buffer.from(creds.certPem)));
  t.teardown(() => client.close());
  const call = client.Connect() as grpc.ClientDuplexStream<AgentMessage, ControllerMessage__Output>;
  const err = await new Promise<grpc.ServiceError>((r) => call.on('error', r));
  t.equal(err.code, grpc.status.INVALID_ARGUMENT);
  t.match(err.details, /BK_ERR_PROTOCOL.*hello/);

  // A first message that is not a hello is a protocol error too.
  const call2 = client.Connect() as grpc.ClientDuplexStream<AgentMessage, ControllerMessage__Output>;
  const err2 = new Promise<grpc.ServiceError>((r) => call2.on('error', r));
  call2.write({ seq: 1, heartbeat: { sentAtMs: Date.now(), containerCount: 0 } });
  t.match((await err2).details, /BK_ERR_PROTOCOL: the first message/);
});
