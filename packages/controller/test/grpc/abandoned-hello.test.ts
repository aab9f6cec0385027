// A hello whose stream the agent gave up on (its welcome timeout) while the
// controller was still reading the agent's record must not go on to write the
// agent's lease and online status (and then undo them): in a fleet connect on
// a busy controller most waiting hellos are such, and each one's writes queued
// ahead of the retries that replaced it (BENCHMARKS.md, fleet-sim on
// PostgreSQL at 2,000 agents: 30,661 hellos given up). Real gRPC server with
// mutual TLS over a real store; only the store's getAgent is held at a gate.
import t from 'tap';
import * as grpc from '@grpc/grpc-js';
import { loadProto, type AgentMessage, type ControllerMessage__Output } from '@bulkhead/shared';
import { enrollFakeAgent, startLinkStack, waitFor } from '../actions/fixtures/link-stack';
import { hostFacts } from '../policy/fixtures/fleet';

type Call = grpc.ClientDuplexStream<AgentMessage, ControllerMessage__Output>;

t.test('a hello given up while its agent record is read writes nothing and leaves the agent offline', async (t) => {
  const s = await startLinkStack(t);
  const store = s.store;
  const name = 'abandoned-1';
  const { agentId, cert } = await enrollFakeAgent(s, name);
  const now = Date.now();

  // Count the hello's writes; hold its read of the agent record until the stream is gone.
  const writes: string[] = [];
  const spy = store as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>;
  // acceptAgentHello: the lease and the online status in one write (its argument is an object).
  for (const m of ['acceptAgentHello', 'claimAgentLease', 'markAgentConnected', 'releaseAgentLease', 'markAgentOfflineUnlessHeld', 'setAgentStatus']) {
    const orig = spy[m];
    if (typeof orig !== 'function') continue;
    spy[m] = async (...a: unknown[]) => {
      if (a[0] === agentId || (a[0] as { agentId?: string } | undefined)?.agentId === agentId) writes.push(m);
      return orig.apply(store, a);
    };
  }
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  let reads = 0;
  const getAgent = store.getAgent.bind(store);
  store.getAgent = async (id: string) => {
    if (id === agentId) {
      reads += 1;
      await gate;
    }
    return getAgent(id);
  };

  const proto = loadProto();
  const client = new proto.bulkhead.v1.AgentLink(s.addr, grpc.credentials.createSsl(Buffer.from(s.pki.ca.certPem), Buffer.from(cert.keyPem), Buffer.from(cert.certPem)));
  t.teardown(() => client.close());
  const call = client.Connect() as Call;
  const received: ControllerMessage__Output[] = [];
  call.on('data', (m: ControllerMessage__Output) => received.push(m));
  call.on('error', () => undefined);
  call.write({ seq: 1, hello: { agentId, agentVersion: '0.1.0-test', host: hostFacts(name, {}), startedAtMs: now } });
  await waitFor('the hello reading the agent record', () => reads === 1);
  // The agent gives up, as on its welcome timeout; the server sees the stream end.
  call.cancel();
  await new Promise((r) => setTimeout(r, 300));
  release();
  await new Promise((r) => setTimeout(r, 500));

  t.same(writes, [], 'no lease, online or offline write for the abandoned hello');
  t.equal(received.filter((m) => m.body === 'welcome').length, 0, 'no welcome was sent');
  const rec = await getAgent(agentId);
  t.equal(rec?.status, 'offline', 'the agent stays offline');
  t.equal(rec?.connectedAt ?? null, null, 'never marked connected');
  t.notMatch(s.logs(), /agent stream refused/, 'not logged as a refusal: the agent left');

  // The same agent's next stream is welcomed and marks it online.
  const again = client.Connect() as Call;
  const got: ControllerMessage__Output[] = [];
  again.on('data', (m: ControllerMessage__Output) => got.push(m));
  again.on('error', () => undefined);
  t.teardown(() => again.end());
  again.write({ seq: 1, hello: { agentId, agentVersion: '0.1.0-test', host: hostFacts(name, {}), startedAtMs: Date.now() } });
  await waitFor('welcome on the next stream', () => got.some((m) => m.body === 'welcome'));
  t.equal((await getAgent(agentId))?.status, 'online', 'the next stream marks it online');
  t.ok(writes.includes('acceptAgentHello') || writes.includes('markAgentConnected'), 'and that hello wrote its status');
});
