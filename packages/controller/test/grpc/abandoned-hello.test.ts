// A hello whose stream the agent gave up on (its welcome timeout) while it waited for its turn
// in the controller must not go on to write the agent's lease and online status (and then undo
// them): in a fleet connect or a replica's takeover on a busy controller most waiting hellos are
// such, and each one's writes queued ahead of the retries that replaced it (BENCHMARKS.md,
// fleet-sim on PostgreSQL at 2,000 agents: 30,661 hellos given up). Hellos are stored a few at a
// time (maxConcurrentHellos; the rest wait holding no database connection), and a waiting one
// whose stream ended is dropped when its turn comes. Real gRPC server with mutual TLS over a real
// store; one slot, held by another agent's hello kept at a gate.
import t from 'tap';
import * as grpc from '@grpc/grpc-js';
import { loadProto, type AgentMessage, type ControllerMessage__Output } from '@bulkhead/shared';
import { enrollFakeAgent, startLinkStack, waitFor } from '../actions/fixtures/link-stack';
import { hostFacts } from '../policy/fixtures/fleet';

type Call = grpc.ClientDuplexStream<AgentMessage, ControllerMessage__Output>;

t.test('a hello given up while it waits for its turn writes nothing and leaves the agent offline', async (t) => {
  const s = await startLinkStack(t, { maxConcurrentHellos: 1 });
  const store = s.store;
  const name = 'abandoned-1';
  const { agentId, cert } = await enrollFakeAgent(s, name);
  const other = await enrollFakeAgent(s, 'abandoned-holder');

  // Count the hello's writes; hold the other agent's hello (the one slot) until this stream is gone.
  const writes: string[] = [];
  const spy = store as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>;
  // acceptAgentHello: the lease and the online status in one write (its argument is an object).
  for (const m of ['acceptAgentHello', 'claimAgentLease', 'markAgentConnected', 'releaseAgentLease', 'markAgentOfflineUnlessHeld', 'setAgentStatus']) {
    const orig = spy[m];
    if (typeof orig !== 'function') continue;
    spy[m] = async (...a: unknown[]) => {
      const id = a[0] === agentId || (a[0] as { agentId?: string } | undefined)?.agentId === agentId;
      if (id) writes.push(m);
      if (m === 'acceptAgentHello' && (a[0] as { agentId?: string }).agentId === other.agentId) {
        holding += 1;
        await gate;
      }
      return orig.apply(store, a);
    };
  }
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  let holding = 0;

  const proto = loadProto();
  const connect = (c: { certPem: string; keyPem: string }) =>
    new proto.bulkhead.v1.AgentLink(s.addr, grpc.credentials.createSsl(Buffer.from(s.pki.ca.certPem), Buffer.from(c.keyPem), Buffer.from(c.certPem)));
  const holderClient = connect(other.cert);
  const client = connect(cert);
  t.teardown(() => {
    holderClient.close();
    client.close();
  });
  const holder = holderClient.Connect() as Call;
  const holderGot: ControllerMessage__Output[] = [];
  holder.on('data', (m: ControllerMessage__Output) => holderGot.push(m));
  holder.on('error', () => undefined);
  t.teardown(() => holder.end());
  holder.write({ seq: 1, hello: { agentId: other.agentId, agentVersion: '0.1.0-test', host: hostFacts('abandoned-holder', {}), startedAtMs: Date.now() } });
  await waitFor('the other agent\'s hello holding the slot', () => holding === 1);

  const call = client.Connect() as Call;
  const received: ControllerMessage__Output[] = [];
  call.on('data', (m: ControllerMessage__Output) => received.push(m));
  call.on('error', () => undefined);
  call.write({ seq: 1, hello: { agentId, agentVersion: '0.1.0-test', host: hostFacts(name, {}), startedAtMs: Date.now() } });
  await new Promise((r) => setTimeout(r, 300)); // its hello is waiting for the slot
  t.same(writes, [], 'waiting: nothing written yet');
  // The agent gives up, as on its welcome timeout; the server sees the stream end.
  call.cancel();
  await new Promise((r) => setTimeout(r, 300));
  release();
  await waitFor('the other agent welcomed', () => holderGot.some((m) => m.body === 'welcome'));
  await new Promise((r) => setTimeout(r, 500));

  t.same(writes, [], 'no lease, online or offline write for the abandoned hello');
  t.equal(received.filter((m) => m.body === 'welcome').length, 0, 'no welcome was sent');
  const rec = await store.getAgent(agentId);
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
  t.equal((await store.getAgent(agentId))?.status, 'online', 'the next stream marks it online');
  t.ok(writes.includes('acceptAgentHello') || writes.includes('markAgentConnected'), 'and that hello wrote its status');
});
