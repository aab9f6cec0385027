// A full snapshot only when the controller's inventory of an agent is not already exact
// (issue 16, docs/architecture.md#inventory-state-hash), with real pieces: the controller's
// gRPC server with mutual TLS on loopback, real SQLite and a private PostgreSQL, the agent's
// real enrollment and ControllerLink over an in-memory inventory.
//   - reconnect after a controller restart with the inventory unchanged: no snapshot, and the
//     stored inventory is still exact (deltas flow on from there);
//   - changed while disconnected (no delta sent), or between hello and welcome: a snapshot;
//   - an agent that sends no state hash (older agents): told nothing, snapshot as before;
//     its snapshot clears the stored hash.
import t, { type Test } from 'tap';
import * as grpc from '@grpc/grpc-js';
import { join } from 'node:path';
import {
  createLogger, inventoryStateHash, loadProto, type ContainerFacts, type ControllerMessage__Output, type AgentMessage,
} from '../../packages/shared/src/index';
import { initPki } from '../../packages/controller/src/pki/data-dir';
import { openStore } from '../../packages/controller/src/store/open-store';
import { startGrpcServer, type RunningGrpcServer } from '../../packages/controller/src/grpc/grpc-server';
import { createJoinToken } from '../../packages/controller/src/enrollment/join-tokens';
import { enroll } from '../../packages/agent/src/enroll/enroll';
import { ControllerLink } from '../../packages/agent/src/link/controller-link';
import type { Store } from '../../packages/controller/src/store/store';
import { waitFor } from '../helpers/processes';
import { FakeInventory } from '../helpers/fake-inventory';
import { usePostgres } from '../helpers/postgres';

const silent = createLogger({ name: 'test', level: 'silent' });
const facts = (id: string, state = 'running'): ContainerFacts => ({ id: id.padEnd(64, '0'), name: `c-${id}`, imageRef: 'img:1', state, labels: { app: id }, memoryLimitBytes: 1024 });
const host = async () => ({ hostname: 'h1', osPlatform: 'linux', cpus: 2, memoryBytes: 1024, dockerVersion: '24.0', cgroupVersion: 2 });

/**
 * An inventory that can change once between the hello and the welcome: each connection attempt
 * asks for host facts, then reads the inventory for the hello, then (once welcomed) for the
 * snapshot; the change comes at that second read, without a delta.
 */
class RacingInventory extends FakeInventory {
  private sinceAttempt = 0;
  changeAfterHello: (() => void) | undefined;
  attempt(): void {
    this.sinceAttempt = 0;
  }
  override inventory(): ContainerFacts[] {
    this.sinceAttempt += 1;
    if (this.changeAfterHello && this.sinceAttempt === 2) {
      this.changeAfterHello();
      this.changeAfterHello = undefined;
    }
    return super.inventory();
  }
}

async function scenario(t: Test, openDb: () => Promise<Store>): Promise<void> {
  const dir = t.testdir();
  const pki = await initPki(join(dir, 'ctl'), ['localhost', '127.0.0.1']);
  const store = await openDb();
  t.teardown(() => store.close());
  const link = { heartbeatIntervalMs: 150, offlineAfterMs: 900, helloTimeoutMs: 2000 };
  let server: RunningGrpcServer = await startGrpcServer({ listen: '127.0.0.1:0', store, pki, logger: silent, link });
  const addr = `127.0.0.1:${server.port}`;
  t.teardown(() => server.shutdown());
  const restart = async (whileDown?: () => void): Promise<void> => {
    await server.shutdown();
    await waitFor('link notices the restart', async () => agentLink.state !== 'connected', 10_000);
    whileDown?.();
    server = await startGrpcServer({ listen: addr, store, pki, logger: silent, link });
    await waitFor('reconnected', async () => agentLink.state === 'connected', 15_000);
  };
  const { token } = await createJoinToken(store, 60_000, new Date());
  const creds = await enroll({ controller: addr, token, caFingerprint: pki.caFingerprint, stateDir: join(dir, 'agent'), hostname: 'h1' });
  const agentId = creds.identity.agentId;
  const stored = async (): Promise<string[]> => (await store.listContainers({ agentId })).map((c) => `${c.name}:${c.state}`).sort();
  const expected = (): string[] => inv.inventory().map((c) => `${c.name}:${c.state}`).sort();
  const storedHash = async (): Promise<string | undefined> => (await store.getAgent(agentId))?.stateHash;

  const inv = new RacingInventory();
  for (const id of ['a', 'b']) inv.items.set(facts(id).id!, facts(id));
  const agentLink = new ControllerLink({ credentials: creds, inventory: inv, hostFacts: () => { inv.attempt(); return host(); }, logger: silent, minBackoffMs: 50, maxBackoffMs: 300 });
  agentLink.start();
  t.teardown(() => agentLink.stop());

  await waitFor('snapshot stored', async () => (await stored()).length === 2, 10_000);
  t.same(agentLink.snapshots, { sent: 1, skipped: 0 }, 'first connection: a full snapshot');
  await waitFor('state hash stored by a heartbeat', async () => (await storedHash()) === inventoryStateHash(inv.inventory()), 10_000);
  inv.upsert(facts('c'));
  inv.upsert(facts('b', 'paused'));
  await waitFor('deltas stored and the new hash with them', async () =>
    JSON.stringify(await stored()) === JSON.stringify(expected()) && (await storedHash()) === inventoryStateHash(inv.inventory()), 10_000);

  // 1. Controller restart, inventory unchanged: the welcome says so and no snapshot is sent.
  await restart();
  t.same(agentLink.snapshots, { sent: 1, skipped: 1 }, 'reconnect with unchanged inventory: snapshot skipped');
  t.same(await stored(), expected(), 'the controller\'s inventory is still exact');
  // Deltas flow on from there, and the hash follows them.
  inv.remove(facts('a').id!);
  await waitFor('delta after a skipped snapshot stored, hash updated', async () =>
    JSON.stringify(await stored()) === JSON.stringify(expected()) && (await storedHash()) === inventoryStateHash(inv.inventory()), 10_000);
  t.same(await stored(), ['c-b:paused', 'c-c:running']);

  // 2. Changed while disconnected (no delta can be sent): a snapshot, and the inventory exact.
  await restart(() => {
    inv.items.delete(facts('c').id!);
    inv.items.set(facts('d').id!, facts('d'));
  });
  await waitFor('snapshot after a change while away', async () => JSON.stringify(await stored()) === JSON.stringify(expected()), 10_000);
  t.same(agentLink.snapshots, { sent: 2, skipped: 1 }, 'changed while disconnected: snapshot sent');
  t.same(await stored(), ['c-b:paused', 'c-d:running']);
  await waitFor('hash of the new state stored', async () => (await storedHash()) === inventoryStateHash(inv.inventory()), 10_000);

  // 3. Changed between the hello (which carried the stored hash) and the welcome: the agent's
  //    re-check finds another hash and sends the snapshot although the controller said it needs none.
  await restart(() => {
    inv.changeAfterHello = () => inv.items.set(facts('e').id!, facts('e', 'created'));
  });
  await waitFor('snapshot after a change between hello and welcome', async () => JSON.stringify(await stored()) === JSON.stringify(expected()), 10_000);
  t.same(agentLink.snapshots, { sent: 3, skipped: 1 }, 'changed after the hello: snapshot sent');
  t.same(await stored(), ['c-b:paused', 'c-d:running', 'c-e:created']);
  await waitFor('hash of the new state stored', async () => (await storedHash()) === inventoryStateHash(inv.inventory()), 10_000);

  // 4. An agent that sends no state hash (as older agents) is never told to skip; its snapshot
  //    replaces the inventory and clears the stored hash. One with the stored hash is told.
  agentLink.stop();
  await waitFor('offline after stop', async () => (await store.getAgent(agentId))?.status === 'offline', 10_000);
  const hash = await storedHash();
  t.equal(hash, inventoryStateHash(inv.inventory()), 'hash kept while the agent is offline');
  const proto = loadProto();
  const raw = async (stateHash: string | undefined, snapshot?: ContainerFacts[]): Promise<boolean> => {
    const client = new proto.bulkhead.v1.AgentLink(addr, grpc.credentials.createSsl(Buffer.from(creds.caPem), Buffer.from(creds.keyPem), Buffer.from(creds.certPem)));
    try {
      const call = client.Connect() as grpc.ClientDuplexStream<AgentMessage, ControllerMessage__Output>;
      call.on('error', () => undefined);
      const acked = new Set<number>();
      const welcome = new Promise<boolean>((resolve) => call.on('data', (m: ControllerMessage__Output) => {
        if (m.welcome) resolve(m.welcome.snapshotNotNeeded);
        if (m.ack) acked.add(Number(m.ack.seq));
      }));
      call.write({ seq: 1, hello: { agentId, agentVersion: 'old', host: await host(), ...(stateHash !== undefined ? { stateHash } : {}) } });
      const notNeeded = await welcome;
      if (snapshot) {
        call.write({ seq: 2, snapshot: { containers: snapshot, takenAtMs: Date.now() } });
        await waitFor('old agent snapshot acknowledged', async () => acked.has(2), 10_000);
      }
      call.cancel();
      await waitFor('raw stream gone', async () => (await store.getAgent(agentId))?.status === 'offline', 10_000);
      return notNeeded;
    } finally {
      client.close();
    }
  };
  t.equal(await raw(hash), true, 'a hello with the stored hash: snapshot not needed');
  t.equal(await raw(`sha256:${'0'.repeat(64)}`), false, 'a hello with another hash: snapshot needed');
  t.equal(await raw(undefined, [facts('x')]), false, 'a hello without a hash (older agent): snapshot needed');
  t.same(await stored(), ['c-x:running'], 'the older agent\'s snapshot replaced the inventory');
  t.equal(await storedHash(), undefined, 'and cleared the stored hash: no hello can skip a snapshot now');
  t.equal(await raw(hash), false, 'the old hash no longer skips the snapshot');
}

t.test('state hash: snapshot skipped only when the stored inventory is exact (SQLite)', async (t) => {
  const dir = t.testdir();
  await scenario(t, () => openStore({ kind: 'sqlite', path: join(dir, 'bulkhead.db') }));
});

t.test('state hash: snapshot skipped only when the stored inventory is exact (PostgreSQL)', async (t) => {
  const pg = await usePostgres(t);
  if (!pg) return;
  const db = await pg.createDatabase();
  await scenario(t, () => openStore({ kind: 'postgres', connectionString: db.url }));
});
