// Real controller on 127.0.0.1:0 with real TLS: an IP target gets no TLS
// ServerName (so no DEP0123 warning), and the server certificate is still
// checked against that IP.
import t, { type Test } from 'tap';
import { join } from 'node:path';
import * as net from 'node:net';
import tls from 'node:tls';
import { createLogger, issueServerCert, loadProto } from '@bulkhead/shared';
import { initPki } from '../../../controller/src/pki/data-dir';
import { openStore } from '../../../controller/src/store/open-store';
import { startGrpcServer } from '../../../controller/src/grpc/grpc-server';
import { createJoinToken } from '../../../controller/src/enrollment/join-tokens';
import { enroll } from '../../src/enroll/enroll';
import { ControllerLink } from '../../src/link/controller-link';
import { controllerCredentials, controllerSecureContext, peerCertificateStats } from '../../src/link/controller-credentials';
import { grpcTarget } from '../../src/link/controller-address';

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

// Node's TLS client turns the whole peer chain into objects (getPeerCertificate(true)) after
// every full handshake, for the host-name check: a tenth of a simulated agent's TLS work in a
// replica failover (BENCHMARKS.md). With a kept context it is remembered per exact leaf DER;
// the check itself (and OpenSSL's chain verification) still runs on every handshake.
t.test('a kept TLS context remembers the server certificate by its DER; the host-name check still runs every time', async (t) => {
  const c = await controller(t, []);
  const { token } = await createJoinToken(c.store, 60_000, new Date());
  const creds = await enroll({ controller: c.addr, token, caFingerprint: c.pki.caFingerprint, stateDir: join(c.dir, 'agent'), hostname: 'h1' });
  const identity = { keyPem: creds.keyPem, certPem: creds.certPem };
  const proto = loadProto();
  /** Opens a channel to `addr` with `ctx` and waits for its TLS connection (or its failure). */
  const reach = (addr: string, ctx: tls.SecureContext): Promise<Error | undefined> => {
    const client = new proto.bulkhead.v1.AgentLink(grpcTarget(addr), controllerCredentials(creds.caPem, identity, ctx), { 'grpc.use_local_subchannel_pool': 1 });
    return new Promise((resolve) => client.waitForReady(Date.now() + 3000, (err?: Error) => {
      client.close();
      resolve(err);
    }));
  };
  const ctx = controllerSecureContext(creds.caPem, identity);
  const before = { ...peerCertificateStats };
  t.equal(await reach(c.addr, ctx), undefined, 'first channel connects');
  t.equal(peerCertificateStats.built - before.built, 1, 'the certificate was built once');
  t.equal(await reach(c.addr, ctx), undefined, 'second channel connects');
  t.equal(await reach(c.addr, ctx), undefined, 'third channel connects');
  t.equal(peerCertificateStats.built - before.built, 1, 'not built again');
  t.ok(peerCertificateStats.remembered - before.remembered >= 2, 'remembered for the repeats');

  // A new context (new trusted CAs or a renewed certificate build one) remembers nothing yet.
  const ctx2 = controllerSecureContext(creds.caPem, identity);
  t.equal(await reach(c.addr, ctx2), undefined, 'a new context connects');
  t.equal(peerCertificateStats.built - before.built, 2, 'and builds the certificate again');

  // A server whose certificate does not name 127.0.0.1: refused the first time and every time
  // after, also when its certificate is remembered.
  const bad = await controller(t, ['localhost']);
  const badCtx = controllerSecureContext(bad.pki.ca.certPem, undefined);
  // A context that does not trust the server's CA: OpenSSL refuses the chain, nothing is built.
  const strangerStats = { ...peerCertificateStats };
  t.ok(await reach(c.addr, badCtx), 'a server from another CA is refused');
  t.same({ ...peerCertificateStats }, strangerStats, 'no certificate built or remembered for it');
  const mid = { ...peerCertificateStats };
  for (let i = 0; i < 3; i++) {
    const err = await reach(bad.addr, badCtx);
    t.ok(err, `attempt ${i + 1} to a server not named 127.0.0.1 fails`);
  }
  t.equal(peerCertificateStats.built - mid.built, 1, 'its certificate was built once');
  t.ok(peerCertificateStats.remembered - mid.remembered >= 2, 'and remembered for the repeats, which were refused all the same');

});

t.test('an IP address gets the ipv4:/ipv6: channel target, a host name the default one', async (t) => {
  t.equal(grpcTarget('127.0.0.1:7443'), 'ipv4:127.0.0.1:7443');
  t.equal(grpcTarget('[::1]:7443'), 'ipv6:[::1]:7443');
  t.equal(grpcTarget('controller.example.com:7443'), 'controller.example.com:7443');
  t.equal(grpcTarget('localhost:7443'), 'localhost:7443');
  t.throws(() => grpcTarget('nope'), { code: 'BK_ERR_CONFIG_INVALID' });
});

t.test('over [::1] the link connects, and a server certificate not naming ::1 is refused', async (t) => {
  const dir = t.testdir();
  const pki = await initPki(join(dir, 'ctl'), ['localhost', '127.0.0.1', '::1']);
  const store = await openStore({ kind: 'sqlite', path: join(dir, 'ctl', 'bulkhead.db') });
  const servers: { shutdown(): Promise<void> }[] = [];
  t.teardown(async () => {
    for (const s of servers) await s.shutdown();
    await store.close();
  });
  let good;
  try {
    good = await startGrpcServer({ listen: '[::1]:0', store, pki, logger: silent });
  } catch (err) {
    t.comment(`no IPv6 loopback here, nothing to check: ${(err as Error).message}`);
    return;
  }
  servers.push(good);
  // Same CA, a server certificate without ::1.
  const unnamed = await startGrpcServer({ listen: '[::1]:0', store, pki: { ...pki, server: await issueServerCert({ ca: pki.ca, sans: ['localhost', '127.0.0.1'] }) }, logger: silent });
  servers.push(unnamed);
  const { token } = await createJoinToken(store, 60_000, new Date());
  const creds = await enroll({ controller: `[::1]:${good.port}`, token, caFingerprint: pki.caFingerprint, stateDir: join(dir, 'agent'), hostname: 'h1' });
  const inventory = { inventory: () => [], subscribe: () => () => undefined };
  const ok = new ControllerLink({ credentials: creds, controller: `[::1]:${good.port}`, inventory, hostFacts: host, logger: silent });
  const connected = new Promise<void>((resolve) => ok.onState((s) => s === 'connected' && resolve()));
  ok.start();
  t.teardown(() => ok.stop());
  await connected;
  t.equal(ok.state, 'connected', 'connected over [::1]');
  const refused = new ControllerLink({ credentials: creds, controller: `[::1]:${unnamed.port}`, inventory, hostFacts: host, logger: silent, minBackoffMs: 50, maxBackoffMs: 100 });
  const down = new Promise<void>((resolve) => refused.onState((s) => s === 'backoff' && resolve()));
  refused.start();
  t.teardown(() => refused.stop());
  await down;
  t.match(refused.error?.message ?? '', /::1/, `refused by the host-name check: ${refused.error?.message}`);
});
