// What a hello, the agent's TrustAck and its PolicyStatus write (BENCHMARKS.md, failover at fleet
// size: a replica taking over a dead one's agents runs hundreds of hellos at once, and its CPU
// went to issuing their statements). The hello's read, lease, online status and trusted CAs are
// one call (Store.acceptAgentHello), with no getAgent before it; a TrustAck repeating the stored
// CAs writes nothing, a changed one is stored; a PolicyStatus repeating the stored one (as every
// agent sends after a welcome) writes nothing, a changed one is stored. Real gRPC server with
// mutual TLS over a real store; the store's methods are only counted.
// Also what a stream's container deltas and violation reports cost once the stored state hash is
// set: each delta is one store write that clears the hash with it (no transaction of its own
// ahead of it), a remove reads nothing first, and a violation's alert names the host without
// reading the agent.
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

t.test('deltas clear the state hash within their own write; a violation\'s alert names the host without reading the agent', async (t) => {
  const s = await startLinkStack(t, { linkAlerts: true });
  const store = s.store;
  const name = 'hello-writes-2';
  const { agentId, cert } = await enrollFakeAgent(s, name);
  const calls: { m: string; clear?: boolean }[] = [];
  const spy = store as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>;
  for (const m of ['getAgent', 'getContainer', 'touchAgents', 'replaceContainers', 'upsertContainer', 'removeContainer']) {
    const orig = spy[m]!;
    spy[m] = async (...a: unknown[]) => {
      const hashes = m === 'touchAgents' ? (a[1] as Map<string, string | null> | undefined) : undefined;
      if (a[0] === agentId) calls.push({ m, ...(m.endsWith('Container') || m === 'replaceContainers' ? { clear: (a[3] as { clearStateHash?: boolean } | undefined)?.clearStateHash === true } : {}) });
      else if (hashes?.has(agentId)) calls.push({ m: hashes.get(agentId) === null ? 'touchAgents(clear)' : 'touchAgents(hash)' });
      return orig.apply(store, a);
    };
  }
  const proto = loadProto();
  const client = new proto.bulkhead.v1.AgentLink(s.addr, grpc.credentials.createSsl(Buffer.from(s.pki.ca.certPem), Buffer.from(cert.keyPem), Buffer.from(cert.certPem)));
  t.teardown(() => client.close());
  const call = client.Connect() as Call;
  const got: ControllerMessage__Output[] = [];
  call.on('data', (m: ControllerMessage__Output) => got.push(m));
  call.on('error', () => undefined);
  t.teardown(() => call.cancel());
  const acked = (seq: number) => waitFor(`ack ${seq}`, () => got.some((m) => m.body === 'ack' && Number(m.ack?.seq) === seq));
  const hash = async () => (await store.getAgent(agentId))?.stateHash;
  const c = (id: string, state = 'running') => ({ id: id.padEnd(64, '0'), name: `/c-${id}`, imageRef: 'img:1', state, labels: { app: id } });
  call.write({ seq: 1, hello: { agentId, agentVersion: '0.1.0-test', host: hostFacts(name, {}), startedAtMs: Date.now() } });
  await waitFor('welcome', () => got.some((m) => m.body === 'welcome'));
  call.write({ seq: 2, snapshot: { containers: [c('a1'), c('b2')], takenAtMs: Date.now() } });
  await acked(2);
  t.same(calls, [{ m: 'replaceContainers', clear: false }], 'no hash stored yet: the snapshot clears nothing');
  const setHash = async (seq: number, h: string) => {
    call.write({ seq, heartbeat: { stateHash: h } });
    await acked(seq);
    await waitFor('hash stored', async () => (await hash()) === h);
  };
  await setHash(3, 'sha256:one');
  calls.length = 0;

  call.write({ seq: 4, delta: { kind: 'UPSERT', containerId: c('c3').id, container: c('c3') } });
  await acked(4);
  t.same(calls, [{ m: 'upsertContainer', clear: true }], 'an upsert: one write that clears the hash, nothing before it');
  t.equal(await hash(), undefined, 'the hash is cleared');
  calls.length = 0;
  call.write({ seq: 5, delta: { kind: 'UPSERT', containerId: c('c3').id, container: c('c3', 'exited') } });
  await acked(5);
  t.same(calls, [{ m: 'upsertContainer', clear: false }], 'with no hash stored since, the next one clears nothing');
  await setHash(6, 'sha256:two');
  calls.length = 0;
  call.write({ seq: 7, delta: { kind: 'REMOVE', containerId: c('a1').id } });
  await acked(7);
  t.same(calls.filter((x) => x.m !== 'getAgent'), [{ m: 'removeContainer', clear: true }], 'a remove: one write that clears the hash, no read of the container first');
  t.equal(await hash(), undefined);
  t.same((await store.listContainers({ agentId })).map((x) => x.name), ['/c-b2', '/c-c3']);
  calls.length = 0;

  call.write({ seq: 8, violation: { id: 'vio-hello-writes-2', ruleId: 'no-privileged', containerId: c('b2').id, containerName: '/c-b2', severity: 'high', mode: 'alert', source: 'event', message: 'privileged', atMs: Date.now() } });
  await acked(8);
  await waitFor('violation alert raised', () => s.alerts.some((a) => a.violationId === 'vio-hello-writes-2'));
  const alert = s.alerts.find((a) => a.violationId === 'vio-hello-writes-2');
  t.equal(alert?.host, name, 'the alert names the host as enrolled');
  t.same(calls.filter((x) => x.m === 'getAgent'), [], 'without reading the agent');
});
