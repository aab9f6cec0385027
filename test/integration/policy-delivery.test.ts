// A policy bundle the agent cannot receive — larger than its gRPC receive
// limit, so its stream dies with RESOURCE_EXHAUSTED before it can answer —
// must still show up as the agent's policy status. Real pieces: the
// controller's gRPC server on 127.0.0.1:0 with real TLS, its HTTPS API
// (through fastify's inject), a real PolicyService over SQLite, the agent's
// real enrollment and ControllerLink with a small receive limit.
import t from 'tap';
import * as grpc from '@grpc/grpc-js';
import { EventEmitter } from 'node:events';
import { join } from 'node:path';
import {
  createLogger, loadProto, type AgentMessage__Output, type ContainerDelta, type ContainerFacts, type ControllerMessage, type PolicyBundle__Output,
} from '../../packages/shared/src/index';
import { initPki } from '../../packages/controller/src/pki/data-dir';
import { openStore } from '../../packages/controller/src/store/open-store';
import { startGrpcServer, serverCredentials } from '../../packages/controller/src/grpc/grpc-server';
import { createJoinToken } from '../../packages/controller/src/enrollment/join-tokens';
import { createApiServer } from '../../packages/controller/src/api/server';
import { generateApiKey } from '../../packages/controller/src/api/api-keys';
import { PolicyService } from '../../packages/controller/src/policy/policy-service';
import { renderAgentTable } from '../../packages/cli/src/render';
import type { AgentDto } from '../../packages/controller/src/api/dto';
import { enroll } from '../../packages/agent/src/enroll/enroll';
import { ControllerLink, type LinkInventory } from '../../packages/agent/src/link/controller-link';
import { waitFor } from '../helpers/processes';

const inventory: LinkInventory = {
  inventory: (): ContainerFacts[] => [],
  subscribe: (l: (d: ContainerDelta) => void) => {
    const ee = new EventEmitter();
    ee.on('d', l);
    return () => ee.off('d', l);
  },
};
const host = async () => ({ hostname: 'h1', osPlatform: 'linux', cpus: 2, memoryBytes: 1024, dockerVersion: '20.10', cgroupVersion: 1 });
const RECEIVE_LIMIT = 32 * 1024;

/** A valid policy whose JSON is about `bytes` long: one rule, padded by its description. */
function policyOfSize(name: string, bytes: number): string {
  return JSON.stringify({
    apiVersion: 'bulkhead.dev/v1',
    kind: 'Policy',
    metadata: { name },
    spec: { rules: [{ id: 'host.privileged', description: 'No privileged containers. ' + 'x'.repeat(bytes), severity: 'critical', mode: 'monitor', action: { type: 'alert' }, check: { type: 'privileged' } }] },
  });
}

/** Log lines as objects, from a pino destination the test reads. */
function capture(name: string) {
  const lines: string[] = [];
  const logger = createLogger({ name, level: 'debug', destination: { write: (s: string) => void lines.push(s) } });
  const entries = () => lines.map((l) => JSON.parse(l) as Record<string, unknown>);
  return { logger, entries };
}

t.test('a bundle over the agent receive limit is reported in the next hello and shown as the policy status', async (t) => {
  const dir = t.testdir();
  const ctl = capture('controller');
  const pki = await initPki(join(dir, 'ctl'), ['localhost', '127.0.0.1']);
  const store = await openStore({ kind: 'sqlite', path: join(dir, 'ctl', 'bulkhead.db') });
  t.teardown(() => store.close());
  const policy = await PolicyService.create({ store, logger: ctl.logger });
  const server = await startGrpcServer({ listen: '127.0.0.1:0', store, pki, logger: ctl.logger, policy, link: { heartbeatIntervalMs: 200, offlineAfterMs: 5000 } });
  t.teardown(() => server.shutdown());
  const app = await createApiServer({ store, tls: pki.server, logger: ctl.logger, policy });
  await app.ready();
  t.teardown(() => app.close());
  const key = generateApiKey('delivery-test', 'admin');
  await store.insertApiKey(key.record);
  const auth = { authorization: `Bearer ${key.plaintext}` };
  const agentsApi = async () => (JSON.parse((await app.inject({ method: 'GET', url: '/v1/agents', headers: auth })).body) as { items: AgentDto[] }).items;
  const put = async (text: string) => app.inject({ method: 'PUT', url: '/v1/policies', headers: { ...auth, 'content-type': 'application/yaml' }, payload: text });

  const { token } = await createJoinToken(store, 60_000, new Date());
  const creds = await enroll({ controller: `127.0.0.1:${server.port}`, token, caFingerprint: pki.caFingerprint, stateDir: join(dir, 'agent'), hostname: 'h1' });
  const agentId = creds.identity.agentId;
  const agentLog = capture('agent');
  const received: number[] = [];
  const link = new ControllerLink({
    credentials: creds, inventory, hostFacts: host, logger: agentLog.logger, minBackoffMs: 50, maxBackoffMs: 400, maxReceiveMessageBytes: RECEIVE_LIMIT,
    onPolicy: (b: PolicyBundle__Output) => {
      received.push(Number(b.version));
      return { version: b.version, applied: true, error: '' };
    },
  });
  link.start();
  t.teardown(() => link.stop());

  await waitFor('the default policy applied', async () => (await store.getAgent(agentId))?.policyStatus?.applied === true);
  t.same(received, [1]);
  t.equal(link.lastDeliveryError, undefined);

  // A policy larger than the agent's limit: the push kills the agent's stream.
  const big = await put(policyOfSize('too-big', 2 * RECEIVE_LIMIT));
  t.equal(big.statusCode, 200, 'the controller accepts it: it is within its own 8 MiB limit');
  const status = await waitFor('the failed delivery stored', async () => {
    const st = (await store.getAgent(agentId))?.policyStatus;
    return st?.version === 2 && !st.applied ? st : undefined;
  });
  t.match(status.error, /^policy bundle could not be received: RESOURCE_EXHAUSTED: Received message larger than max \(\d+ vs 32768\) \(bundle v2 is \d+ bytes, [\d.]+ KiB; agent receive limit 32 KiB\)$/);
  t.match(link.lastDeliveryError, /^RESOURCE_EXHAUSTED: Received message larger than max/, 'the agent remembers why');
  t.ok(agentLog.entries().some((e) => e['level'] === 50 && /exceeds this agent's receive limit/.test(String(e['msg']))), 'the agent logs the failure as an error');
  t.same(received, [1], 'v2 never reached the agent');

  // The hello carried it: the controller logged it, once, with what the agent reported.
  const warnings = () => ctl.entries().filter((e) => e['msg'] === 'agent cannot receive the policy bundle: it keeps its previous policy');
  t.equal(warnings().length, 1);
  t.match(warnings()[0], { agentId, version: 2, agentLimitBytes: RECEIVE_LIMIT, reported: /^RESOURCE_EXHAUSTED: Received message larger than max/ });

  // The controller holds the bundle back from the agent that reported it cannot receive it,
  // so the agent stays connected on its old policy instead of reconnecting in a loop.
  await waitFor('connected again', async () => link.state === 'connected');
  const connects = () => ctl.entries().filter((e) => e['msg'] === 'agent connected').length;
  const before = connects();
  await new Promise((r) => setTimeout(r, 800));
  t.equal(connects(), before, 'no reconnect loop');
  t.equal(link.state, 'connected');

  // Another reconnect repeats the report (the status stays) but not the warning.
  link.useCredentials(link.credentials);
  await waitFor('a further hello', async () => connects() > before && link.state === 'connected');
  t.equal(warnings().length, 1, 'one warning per version, not per reconnect');
  t.match((await store.getAgent(agentId))?.policyStatus, { version: 2, applied: false });

  // The API and `bulkhead agents` show it.
  const shown = (await agentsApi()).find((a) => a.id === agentId);
  t.match(shown?.policy, { version: 2, applied: false, error: status.error });
  const table = renderAgentTable(await agentsApi(), new Date());
  t.match(table, /^ID\s+HOSTNAME\s+.*\s+POLICY$/m);
  t.match(table, new RegExp(`^${agentId}\\s+h1\\s+online\\s+.*\\s+v2 NOT APPLIED$`, 'm'));
  t.match(table, new RegExp(`^${agentId}:\\s+v2 not applied: policy bundle could not be received: RESOURCE_EXHAUSTED`, 'm'));

  // A policy that fits is pushed to the connected agent and clears the status.
  const small = await put(policyOfSize('fits', 1024));
  t.equal(small.statusCode, 200, 'the smaller policy is accepted');
  await waitFor('v3 applied', async () => {
    const st = (await store.getAgent(agentId))?.policyStatus;
    return st?.version === 3 && st.applied;
  });
  t.same(received, [1, 3]);
  t.equal(link.lastDeliveryError, undefined, 'the agent forgets the failure once a bundle arrives');
  t.match((await agentsApi()).find((a) => a.id === agentId)?.policy, { version: 3, applied: true, error: '' });
  t.notMatch(renderAgentTable(await agentsApi(), new Date()), /NOT APPLIED/);

  // And the next hello carries no error: nothing is recorded against v3.
  link.useCredentials(link.credentials);
  const n = connects();
  await waitFor('reconnected', async () => connects() > n && link.state === 'connected');
  t.match((await store.getAgent(agentId))?.policyStatus, { version: 3, applied: true, error: '' });
});

t.test('an agent whose bundle keeps failing backs off instead of reconnecting at once', async (t) => {
  // A controller that sends the oversized bundle on every connection
  // whatever the hello says (as a controller from before this report did):
  // only the agent's backoff protects it.
  const dir = t.testdir();
  const pki = await initPki(join(dir, 'ctl'), ['localhost', '127.0.0.1']);
  const store = await openStore({ kind: 'sqlite', path: join(dir, 'ctl', 'bulkhead.db') });
  t.teardown(() => store.close());
  const enrollServer = await startGrpcServer({ listen: '127.0.0.1:0', store, pki, logger: createLogger({ name: 'x', level: 'silent' }) });
  const { token } = await createJoinToken(store, 60_000, new Date());
  const creds = await enroll({ controller: `127.0.0.1:${enrollServer.port}`, token, caFingerprint: pki.caFingerprint, stateDir: join(dir, 'agent') });
  await enrollServer.shutdown();

  const hellos: Array<{ at: number; error: string; limit: number }> = [];
  let bundleBytes = 2 * RECEIVE_LIMIT;
  const proto = loadProto();
  const fake = new grpc.Server();
  fake.addService(proto.bulkhead.v1.AgentLink.service, {
    Connect: (call: grpc.ServerDuplexStream<AgentMessage__Output, ControllerMessage>) => {
      call.on('error', () => undefined);
      call.once('data', (m: AgentMessage__Output) => {
        hellos.push({ at: Date.now(), error: m.hello?.lastDeliveryError ?? '', limit: Number(m.hello?.maxReceiveMessageBytes) });
        call.write({ welcome: { agentId: creds.identity.agentId, heartbeatIntervalMs: 1000, serverTimeMs: Date.now() } });
        call.write({ policy: { version: 9, policyJson: 'x'.repeat(bundleBytes), scansJson: '[]', sha256: '' } });
      });
    },
  });
  const port = await new Promise<number>((res, rej) => fake.bindAsync('127.0.0.1:0', serverCredentials(pki), (e, p) => (e ? rej(e) : res(p))));
  t.teardown(() => fake.forceShutdown());

  const agentLog = capture('agent');
  const received: number[] = [];
  const link = new ControllerLink({
    credentials: creds, inventory, hostFacts: host, logger: agentLog.logger, controller: `127.0.0.1:${port}`,
    minBackoffMs: 50, maxBackoffMs: 400, random: () => 1, maxReceiveMessageBytes: RECEIVE_LIMIT,
    onPolicy: (b) => {
      received.push(Number(b.version));
      return { version: b.version, applied: true, error: '' };
    },
  });
  link.start();
  t.teardown(() => link.stop());

  await waitFor('six connections', async () => hellos.length >= 6, 10_000);
  t.same(hellos.map((h) => h.limit), hellos.map(() => RECEIVE_LIMIT), 'every hello states the receive limit');
  t.equal(hellos[0]!.error, '', 'nothing to report at first');
  for (const h of hellos.slice(1)) t.match(h.error, /^RESOURCE_EXHAUSTED: Received message larger than max \(\d+ vs 32768\)$/);
  // With random() = 1 the delay is the ceiling. A welcome does not reset it while the bundle keeps
  // failing: it grows (doubling, but at most half the time since the link first went down —
  // reconnect-backoff.ts) up to the cap, instead of reconnecting at once.
  const delays = agentLog.entries().filter((e) => e['msg'] === 'controller link down').map((e) => e['retryInMs'] as number);
  t.ok(delays.length >= 5, `${delays.length} delays`);
  t.equal(delays[0], 50, 'the first retry after the minimum');
  for (let i = 1; i < 5; i++) t.ok(delays[i]! >= delays[i - 1]!, `never shorter than the one before (${delays.slice(0, 5).join(', ')})`);
  t.ok(delays[4]! >= 2 * delays[0]! && delays[4]! <= 400, `grown across welcomed connections, within the cap (${delays[4]})`);

  // Once a bundle that fits arrives, the error is forgotten and the next hello is clean.
  bundleBytes = 1024;
  await waitFor('the bundle received', async () => received.length > 0, 10_000);
  t.equal(link.lastDeliveryError, undefined);
  const n = hellos.length;
  link.useCredentials(link.credentials);
  await waitFor('one more hello', async () => hellos.length > n, 10_000);
  t.equal(hellos[hellos.length - 1]!.error, '');
});
