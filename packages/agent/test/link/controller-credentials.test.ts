// Real controller on 127.0.0.1:0 with real TLS: an IP target gets no TLS
// ServerName (so no DEP0123 warning), and the server certificate is still
// checked against that IP.
import t, { type Test } from 'tap';
import { join } from 'node:path';
import * as net from 'node:net';
import tls from 'node:tls';
import { createLogger, issueServerCert } from '@bulkhead/shared';
import { initPki } from '../../../controller/src/pki/data-dir';
import { openStore } from '../../../controller/src/store/open-store';
import { startGrpcServer } from '../../../controller/src/grpc/grpc-server';
import { createJoinToken } from '../../../controller/src/enrollment/join-tokens';
import { enroll } from '../../src/enroll/enroll';
import { ControllerLink } from '../../src/link/controller-link';

const silent = createLogger({ name: 'test', level: 'silent' });
const host = async () => ({ hostname: 'h1', osPlatform: 'linux', cpus: 2, memoryBytes: 1024, dockerVersion: '20.10', cgroupVersion: 1 });

async function controller(t: Test, sans: string[]) {
  const dir = t.testdir();
  const pki = await initPki(join(dir, 'ctl'), ['localhost', '127.0.0.1']);
  if (sans.length) pki.server = await issueServerCert({ ca: pki.ca, sans });
  const store = await openStore({ kind: 'sqlite', path: join(dir, 'ctl', 'bulkhead.db') });
  const server = await startGrpcServer({ listen: '127.0.0.1:0', store, pki, logger: silent });
  t.teardown(async () => {
    await server.shutdown();
    await store.close();
  });
  return { dir, pki, store, addr: `127.0.0.1:${server.port}` };
}

t.test('enrolling with and connecting to 127.0.0.1 sends no IP ServerName', async (t) => {
  const warnings: string[] = [];
  const onWarning = (w: Error & { code?: string }) => warnings.push(`${w.code ?? ''} ${w.message}`);
  process.on('warning', onWarning);
  t.teardown(() => process.off('warning', onWarning));

  const c = await controller(t, []);
  const { token } = await createJoinToken(c.store, 60_000, new Date());
  const creds = await enroll({ controller: c.addr, token, caFingerprint: c.pki.caFingerprint, stateDir: join(c.dir, 'agent'), hostname: 'h1' });
  const link = new ControllerLink({ credentials: creds, inventory: { inventory: () => [], subscribe: () => () => undefined }, hostFacts: host, logger: silent });
  const connected = new Promise<void>((resolve) => link.onState((s) => s === 'connected' && resolve()));
  link.start();
  t.teardown(() => link.stop());
  await connected;
  await new Promise((r) => setImmediate(r)); // warnings are emitted on the next tick
  t.same(warnings.filter((w) => /DEP0123|TLS ServerName/.test(w)), [], 'no DEP0123 warning');
});

t.test('a server certificate without the IP among its SANs is still refused', async (t) => {
  const c = await controller(t, ['localhost']);
  const { token } = await createJoinToken(c.store, 60_000, new Date());
  await t.rejects(
    enroll({ controller: c.addr, token, caFingerprint: c.pki.caFingerprint, stateDir: join(c.dir, 'agent'), hostname: 'h1', timeoutMs: 3000 }),
    { code: 'BK_ERR_CONTROLLER_UNAVAILABLE', message: /IP: 127\.0\.0\.1 is not in the cert's list/ },
  );
});

// A process holding many links (the fleet simulator: 1,000 agents in one process) spent a
// third of its CPU during a reconnect storm building a new TLS context per attempt
// (issue 16). Each attempt still gets a channel of its own; the context is built once.
t.test('reconnect attempts reuse one TLS context per identity', async (t) => {
  const c = await controller(t, []);
  const { token } = await createJoinToken(c.store, 60_000, new Date());
  const creds = await enroll({ controller: c.addr, token, caFingerprint: c.pki.caFingerprint, stateDir: join(c.dir, 'agent'), hostname: 'h1' });
  // A port nobody listens on: every attempt fails at once and the link retries.
  const closed = await new Promise<number>((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
  creds.identity.controller = `127.0.0.1:${closed}`;
  creds.identity.controllers = [`127.0.0.1:${closed}`];
  // Counts the contexts built (the real function runs): grpc-js and our credentials both call it through the module.
  const real = tls.createSecureContext;
  let built = 0;
  (tls as { createSecureContext: typeof tls.createSecureContext }).createSecureContext = (o) => {
    built += 1;
    return real(o);
  };
  t.teardown(() => {
    (tls as { createSecureContext: typeof tls.createSecureContext }).createSecureContext = real;
  });
  const link = new ControllerLink({
    credentials: creds, inventory: { inventory: () => [], subscribe: () => () => undefined }, hostFacts: host, logger: silent,
    minBackoffMs: 20, maxBackoffMs: 40, backoffSpreadMs: 40,
  });
  let downs = 0;
  const fourDowns = new Promise<void>((resolve) => link.onState((s) => s === 'backoff' && ++downs === 4 && resolve()));
  link.start();
  t.teardown(() => link.stop());
  await fourDowns;
  t.ok(downs >= 4, `${downs} failed attempts`);
  t.equal(built, 1, 'one TLS context for all attempts');
});
