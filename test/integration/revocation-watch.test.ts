// Two controllers' gRPC servers in one process on ONE SQLite file (two store
// handles, as two replicas would have): a revocation written through one is
// acted on by the other within 1 s. And a CA rotation finished with --force:
// on reload, a stream still open with a certificate from the retired CA is closed.
import t from 'tap';
import * as grpc from '@grpc/grpc-js';
import { join } from 'node:path';
import { createLogger, loadProto, type AgentMessage, type ControllerMessage__Output } from '../../packages/shared/src/index';
import { initPki, loadPki } from '../../packages/controller/src/pki/data-dir';
import { LivePki } from '../../packages/controller/src/pki/live-pki';
import { rotateActivate, rotateFinish, rotateStart } from '../../packages/controller/src/pki/ca-rotation';
import { openStore } from '../../packages/controller/src/store/open-store';
import { startGrpcServer } from '../../packages/controller/src/grpc/grpc-server';
import { createJoinToken } from '../../packages/controller/src/enrollment/join-tokens';
import type { Store } from '../../packages/controller/src/store/store';
import { enroll } from '../../packages/agent/src/enroll/enroll';
import { controllerCredentials } from '../../packages/agent/src/link/controller-credentials';
import type { AgentCredentials } from '../../packages/agent/src/state/agent-state';

const silent = createLogger({ name: 'test', level: 'silent' });
type Duplex = grpc.ClientDuplexStream<AgentMessage, ControllerMessage__Output>;

async function stream(addr: string, c: AgentCredentials): Promise<{ ended: Promise<{ at: number; details: string }>; close: () => void }> {
  const client = new (loadProto().bulkhead.v1.AgentLink)(addr, controllerCredentials(c.caPem, c));
  const call = client.Connect() as Duplex;
  const ended = new Promise<{ at: number; details: string }>((r) => call.on('error', (e: grpc.ServiceError) => r({ at: performance.now(), details: e.details })));
  await new Promise<void>((resolve, reject) => {
    call.on('data', (m: ControllerMessage__Output) => m.body === 'welcome' && resolve());
    void ended.then((e) => reject(new Error(e.details)));
    call.write({ seq: 1, hello: { agentId: c.identity.agentId, agentVersion: 'test', host: { hostname: 'h' } } });
  });
  return { ended, close: () => (call.cancel(), client.close()) };
}

async function server(t: { teardown(fn: () => unknown): void }, store: Store, pki: LivePki | ReturnType<typeof loadPki>) {
  const s = await startGrpcServer({ listen: '127.0.0.1:0', store, pki, logger: silent, link: { heartbeatIntervalMs: 1000 } });
  t.teardown(() => s.shutdown());
  return `127.0.0.1:${s.port}`;
}

t.test('SQLite: a revocation written by replica A closes the stream on replica B within 1 s', async (t) => {
  const dir = t.testdir();
  const pki = await initPki(join(dir, 'ctl'), ['localhost', '127.0.0.1']);
  const db = join(dir, 'ctl', 'bulkhead.db');
  const storeA = await openStore({ kind: 'sqlite', path: db });
  const storeB = await openStore({ kind: 'sqlite', path: db });
  t.teardown(async () => (await storeA.close(), await storeB.close()));
  const addrB = await server(t, storeB, pki);
  const { token } = await createJoinToken(storeA, 60_000, new Date());
  const creds = await enroll({ controller: addrB, token, caFingerprint: pki.caFingerprint, stateDir: join(dir, 'agent'), hostname: 'h' });
  const s = await stream(addrB, creds);
  t.teardown(s.close);
  const at = performance.now();
  await storeA.setAgentStatus(creds.identity.agentId, 'revoked', new Date()); // what replica A's API does first
  const end = await s.ended;
  t.match(end.details, /^BK_ERR_AGENT_REVOKED: /);
  t.ok(end.at - at <= 1000, `closed ${(end.at - at).toFixed(0)} ms after the store said revoked`);
});

t.test('finishing a rotation with --force closes a stream still open with an old-CA certificate', async (t) => {
  const dir = t.testdir();
  const ctl = join(dir, 'ctl');
  await initPki(ctl, ['localhost', '127.0.0.1']);
  const store = await openStore({ kind: 'sqlite', path: join(ctl, 'bulkhead.db') });
  t.teardown(() => store.close());
  const live = new LivePki(loadPki(ctl), ctl);
  const addr = await server(t, store, live);
  const { token } = await createJoinToken(store, 60_000, new Date());
  const creds = await enroll({ controller: addr, token, caFingerprint: live.caFingerprint, stateDir: join(dir, 'agent'), hostname: 'h' });
  const s = await stream(addr, creds);
  t.teardown(s.close);
  await rotateStart(ctl);
  live.reload();
  await rotateActivate(ctl, store, { force: true });
  live.reload();
  await t.rejects(rotateFinish(ctl, store), /still hold a certificate from the old CA/);
  await rotateFinish(ctl, store, { force: true });
  live.reload();
  const end = await s.ended;
  t.match(end.details, /^BK_ERR_CERT_REQUIRED: .*no longer trusts/);
});
