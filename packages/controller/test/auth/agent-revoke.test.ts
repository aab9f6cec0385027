// Agent revocation end to end with real pieces: the controller's gRPC server
// on 127.0.0.1:0 with real TLS, a real enrolled agent with its own
// certificate on a live ControllerLink, and the real HTTPS API wired to the
// link. POST /v1/agents/:id/revoke closes the stream at once with
// BK_ERR_AGENT_REVOKED, and the certificate is refused from then on.
import t from 'tap';
import * as grpc from '@grpc/grpc-js';
import { EventEmitter } from 'node:events';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { request } from 'node:https';
import { createLogger, loadProto, type AgentMessage, type ContainerDelta, type ContainerFacts, type ControllerMessage__Output } from '@bulkhead/shared';
import { initPki } from '../../src/pki/data-dir';
import { openStore } from '../../src/store/open-store';
import { startGrpcServer } from '../../src/grpc/grpc-server';
import { createJoinToken } from '../../src/enrollment/join-tokens';
import { createApiServer } from '../../src/api/server';
import { generateApiKey } from '../../src/api/api-keys';
import { enroll } from '../../../agent/src/enroll/enroll';
import { ControllerLink, type LinkInventory } from '../../../agent/src/link/controller-link';

const silent = createLogger({ name: 'test', level: 'silent' });

class Inventory implements LinkInventory {
  private readonly ee = new EventEmitter();
  inventory(): ContainerFacts[] {
    return [];
  }
  subscribe(l: (d: ContainerDelta) => void): () => void {
    this.ee.on('d', l);
    return () => this.ee.off('d', l);
  }
}

async function until(what: string, fn: () => boolean | Promise<boolean>, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await fn())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const hostFacts = async () => ({ hostname: 'h1', osPlatform: 'linux', cpus: 2, memoryBytes: 1024, dockerVersion: '27.0', cgroupVersion: 2 });

t.test('revoking an agent closes its stream at once and refuses its certificate', async (t) => {
  const dir = t.testdir();
  const pki = await initPki(join(dir, 'ctl'), ['localhost', '127.0.0.1']);
  const store = await openStore({ kind: 'sqlite', path: join(dir, 'ctl', 'bulkhead.db') });
  t.teardown(() => store.close());
  const grpcServer = await startGrpcServer({ listen: '127.0.0.1:0', store, pki, logger: silent, link: { heartbeatIntervalMs: 200, offlineAfterMs: 5000, helloTimeoutMs: 1000 } });
  t.teardown(() => grpcServer.shutdown());
  const addr = `127.0.0.1:${grpcServer.port}`;

  const admin = generateApiKey('root', 'admin');
  await store.insertApiKey(admin.record);
  const api = await createApiServer({ store, tls: pki.server, logger: silent, agentLink: grpcServer.link, caFingerprint: pki.caFingerprint });
  await api.listen({ host: '127.0.0.1', port: 0 });
  t.teardown(() => api.close());
  const apiPort = (api.server.address() as AddressInfo).port;
  const post = (path: string): Promise<{ status: number; json: any }> => // eslint-disable-line @typescript-eslint/no-explicit-any
    new Promise((resolve, reject) => {
      const req = request(`https://127.0.0.1:${apiPort}${path}`, { method: 'POST', ca: pki.ca.certPem, agent: false, headers: { authorization: `Bearer ${admin.plaintext}` } }, (res) => {
        let text = '';
        res.on('data', (c: Buffer) => (text += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, json: JSON.parse(text) }));
      });
      req.on('error', reject);
      req.end();
    });

  const { token } = await createJoinToken(store, 60_000, new Date());
  const creds = await enroll({ controller: addr, token, caFingerprint: pki.caFingerprint, stateDir: join(dir, 'agent'), hostname: 'h1' });
  const agentId = creds.identity.agentId;
  const link = new ControllerLink({ credentials: creds, inventory: new Inventory(), hostFacts, logger: silent, minBackoffMs: 50, maxBackoffMs: 200 });
  link.start();
  t.teardown(() => link.stop());
  await until('agent online', async () => link.state === 'connected' && (await store.getAgent(agentId))?.status === 'online');
  t.same(grpcServer.link.connectedAgents(), [agentId]);

  // Revoke through the API.
  const started = Date.now();
  const res = await post(`/v1/agents/${agentId}/revoke`);
  t.equal(res.status, 200);
  t.match(res.json, { id: agentId, status: 'revoked', revokedAt: String });
  t.same(grpcServer.link.connectedAgents(), [], 'the stream is gone when the API answers');
  await until('the agent notices', () => link.state !== 'connected', 2000);
  t.ok(Date.now() - started < 2000, `closed within ${Date.now() - started} ms, not at the next heartbeat sweep`);
  await until('the agent is told why', () => link.error?.code === 'BK_ERR_AGENT_REVOKED', 5000);
  t.pass(`the agent's link saw ${link.error?.code}`);
  t.equal((await store.getAgent(agentId))?.status, 'revoked');

  // From now on the certificate is refused: the agent's own reconnects, and a raw stream with its credentials.
  await new Promise((r) => setTimeout(r, 500));
  t.equal((await store.getAgent(agentId))?.status, 'revoked', 'reconnect attempts do not bring it back online');
  t.same(grpcServer.link.connectedAgents(), []);
  const proto = loadProto();
  const client = new proto.bulkhead.v1.AgentLink(addr, grpc.credentials.createSsl(Buffer.from(creds.caPem), Buffer.from(creds.keyPem), Buffer.from(creds.certPem)));
  t.teardown(() => client.close());
  const call = client.Connect() as grpc.ClientDuplexStream<AgentMessage, ControllerMessage__Output>;
  const refused = new Promise<grpc.ServiceError>((r) => call.on('error', r));
  call.on('data', () => undefined);
  call.write({ seq: 1, hello: { agentId, agentVersion: 'raw', host: await hostFacts() } });
  const err = await refused;
  t.equal(err.code, grpc.status.PERMISSION_DENIED);
  t.match(err.details, /BK_ERR_AGENT_REVOKED/);

  // Revoking again answers the same; an unknown agent is 404.
  const again = await post(`/v1/agents/${agentId}/revoke`);
  t.equal(again.status, 200);
  t.equal(again.json.revokedAt, res.json.revokedAt, 'the first revocation time is kept');
  t.equal((await post('/v1/agents/agt_nope/revoke')).status, 404);

  // A hello already past the store check when revocation lands: the in-memory mark refuses it.
  const { token: token2 } = await createJoinToken(store, 60_000, new Date());
  const creds2 = await enroll({ controller: addr, token: token2, caFingerprint: pki.caFingerprint, stateDir: join(dir, 'agent2'), hostname: 'h2' });
  const id2 = creds2.identity.agentId;
  t.equal(grpcServer.link.revoke(id2), false, 'no live stream to close');
  t.equal((await store.getAgent(id2))?.status, 'offline', 'the store has not caught up (the race)');
  const client2 = new proto.bulkhead.v1.AgentLink(addr, grpc.credentials.createSsl(Buffer.from(creds2.caPem), Buffer.from(creds2.keyPem), Buffer.from(creds2.certPem)));
  t.teardown(() => client2.close());
  const call2 = client2.Connect() as grpc.ClientDuplexStream<AgentMessage, ControllerMessage__Output>;
  const refused2 = new Promise<grpc.ServiceError>((r) => call2.on('error', r));
  call2.on('data', () => undefined);
  call2.write({ seq: 1, hello: { agentId: id2, agentVersion: 'raw', host: await hostFacts() } });
  t.match((await refused2).details, /BK_ERR_AGENT_REVOKED/);
  t.same(grpcServer.link.connectedAgents(), []);
  t.equal((await store.getAgent(id2))?.status, 'offline', 'and it never showed as online');
});
