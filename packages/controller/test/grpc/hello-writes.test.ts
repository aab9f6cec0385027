// What a hello, the agent's TrustAck and its PolicyStatus write (BENCHMARKS.md, failover at fleet
// size: a replica taking over a dead one's agents runs hundreds of hellos at once, and its CPU
// went to issuing their statements). The hello's read, lease, online status and trusted CAs are
// one call (Store.acceptAgentHello), with no getAgent before it; a TrustAck repeating the stored
// CAs writes nothing, a changed one is stored; a PolicyStatus repeating the stored one (as every
// agent sends after a welcome) writes nothing, a changed one is stored. Real gRPC server with
// mutual TLS over a real store; the store's methods are only counted.
import t from 'tap';
import * as grpc from '@grpc/grpc-js';
import { loadProto, type AgentMessage, type ControllerMessage__Output } from '@bulkhead/shared';
import { enrollFakeAgent, startLinkStack, waitFor } from '../actions/fixtures/link-stack';
import { hostFacts } from '../policy/fixtures/fleet';

type Call = grpc.ClientDuplexStream<AgentMessage, ControllerMessage__Output>;
const FP1 = `sha256:${'1'.repeat(64)}`;
const FP2 = `sha256:${'2'.repeat(64)}`;

t.test('a hello writes lease and status once; trusted CAs only when they changed', async (t) => {
  const s = await startLinkStack(t);
  const store = s.store;
  const name = 'hello-writes-1';
  const { agentId, cert } = await enrollFakeAgent(s, name);
  const writes: { m: string; trustedCas?: unknown }[] = [];
  const spy = store as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>;
  for (const m of ['acceptAgentHello', 'claimAgentLease', 'markAgentConnected', 'setAgentTrustedCas', 'getAgent', 'setAgentPolicyStatus']) {
    const orig = spy[m];
    if (typeof orig !== 'function') continue;
    spy[m] = async (...a: unknown[]) => {
      const arg = a[0] as { agentId?: string; trustedCas?: unknown } | string;
      if (arg === agentId) writes.push({ m, ...(m === 'setAgentTrustedCas' ? { trustedCas: a[1] } : {}) });
      else if (typeof arg === 'object' && arg.agentId === agentId) writes.push({ m, trustedCas: arg.trustedCas });
      return orig.apply(store, a);
    };
  }
  t.ok(typeof spy.acceptAgentHello === 'function', 'the store takes a hello in one write');

  const proto = loadProto();
  const client = new proto.bulkhead.v1.AgentLink(s.addr, grpc.credentials.createSsl(Buffer.from(s.pki.ca.certPem), Buffer.from(cert.keyPem), Buffer.from(cert.certPem)));
  t.teardown(() => client.close());
  const stream = async (trusted: string[]): Promise<{ call: Call; got: ControllerMessage__Output[]; acked: (seq: number) => Promise<unknown> }> => {
    const call = client.Connect() as Call;
    const got: ControllerMessage__Output[] = [];
    call.on('data', (m: ControllerMessage__Output) => got.push(m));
    call.on('error', () => undefined);
    call.write({ seq: 1, hello: { agentId, agentVersion: '0.1.0-test', host: hostFacts(name, {}), startedAtMs: Date.now(), trustedCaFingerprints: trusted } });
    await waitFor('welcome', () => got.some((m) => m.body === 'welcome'));
    const acked = (seq: number) => waitFor(`ack ${seq}`, () => got.some((m) => m.body === 'ack' && Number(m.ack?.seq) === seq));
    return { call, got, acked };
  };

  // First hello: nothing stored yet, so the CAs go with the lease and status, in one write.
  const a = await stream([FP1]);
  t.same(writes, [{ m: 'acceptAgentHello', trustedCas: [FP1] }], 'one call, no read before it: lease, status and the new trusted CAs');
  t.same((await store.getAgent(agentId))?.trustedCas, [FP1]);
  t.equal((await store.getAgentLease!(agentId))?.owner !== undefined, true, 'the lease is held');
  writes.length = 0;
  // The agent acknowledges the trust bundle with the same CAs: nothing to write.
  a.call.write({ seq: 2, trustAck: { caFingerprints: [FP1] } });
  await a.acked(2);
  t.same(writes, [], 'a TrustAck repeating the stored CAs writes nothing');
  // A changed set is stored.
  a.call.write({ seq: 3, trustAck: { caFingerprints: [FP1, FP2] } });
  await a.acked(3);
  t.same(writes, [{ m: 'setAgentTrustedCas', trustedCas: [FP1, FP2] }], 'a changed TrustAck is stored');
  t.same((await store.getAgent(agentId))?.trustedCas, [FP1, FP2]);
  writes.length = 0;
  // The agent's policy status: stored once; the same again writes nothing.
  a.call.write({ seq: 4, policyStatus: { version: 1, applied: true, error: '' } });
  await a.acked(4);
  a.call.write({ seq: 5, policyStatus: { version: 1, applied: true, error: '' } });
  await a.acked(5);
  t.same(writes.filter((w) => w.m === 'setAgentPolicyStatus').length, 1, 'a repeated PolicyStatus is not rewritten');
  t.match((await store.getAgent(agentId))?.policyStatus, { version: 1, applied: true, error: '' });
  a.call.end();
  await new Promise((r) => setTimeout(r, 300));
  writes.length = 0;

  // A reconnect (as after a replica failover) with the same CAs: the hello's one write, without them.
  const b = await stream([FP1, FP2]);
  t.same(writes, [{ m: 'acceptAgentHello', trustedCas: [FP1, FP2] }], 'a reconnect: one call (the CAs ride on its row update)');
  t.equal((await store.getAgent(agentId))?.status, 'online');
  writes.length = 0;
  // After the welcome the agent reports its (unchanged) policy status again: nothing written.
  b.call.write({ seq: 2, policyStatus: { version: 1, applied: true, error: '' } });
  await b.acked(2);
  t.same(writes, [], 'the status the store holds, reported again after a reconnect: nothing written');
  // A changed one is stored.
  b.call.write({ seq: 3, policyStatus: { version: 2, applied: false, error: 'rule x: bad' } });
  await b.acked(3);
  t.same(writes.map((w) => w.m), ['setAgentPolicyStatus'], 'a changed status is stored');
  t.match((await store.getAgent(agentId))?.policyStatus, { version: 2, applied: false, error: 'rule x: bad' });
  b.call.end();
});
