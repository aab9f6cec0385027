// The agent link with several controller addresses, in one process with real pieces: two
// controller gRPC servers (replicas) on 127.0.0.1:0 with real TLS on one SQLite store, the
// agent's real enrollment and ControllerLink, real TCP for the faults (a refused port, a
// listener that never answers, a relay that can freeze a connection without closing it).
// Only the Docker side is an in-memory inventory.
//
// Covers: enrollment with a list whose first address is down; the link skipping a refused
// address, an address that never answers (welcome timeout), and an address whose name the
// server certificate does not carry (the TLS check is per address); a replica going away
// mid-stream (the next one within a second); a replica that stops answering without closing
// the connection (the silence watchdog); a stall of the agent's own process past the welcome
// timeout and the silence limit while the answer waits in its socket (no stream given up).
import t, { type Test } from 'tap';
import * as grpc from '@grpc/grpc-js';
import { EventEmitter } from 'node:events';
import * as net from 'node:net';
import { join } from 'node:path';
import { createLogger, loadProto, type AgentMessage__Output, type ContainerDelta, type ContainerFacts, type ControllerMessage } from '../../packages/shared/src/index';
import { initPki } from '../../packages/controller/src/pki/data-dir';
import { openStore } from '../../packages/controller/src/store/open-store';
import { startGrpcServer, type RunningGrpcServer } from '../../packages/controller/src/grpc/grpc-server';
import { createJoinToken } from '../../packages/controller/src/enrollment/join-tokens';
import { enroll } from '../../packages/agent/src/enroll/enroll';
import { ControllerLink, type LinkInventory } from '../../packages/agent/src/link/controller-link';
import type { Store } from '../../packages/controller/src/store/store';
import { waitFor } from '../helpers/processes';

const silent = createLogger({ name: 'test', level: 'silent' });

class FakeInventory implements LinkInventory {
  private readonly ee = new EventEmitter();
  inventory(): ContainerFacts[] {
    return [{ id: 'a'.repeat(64), name: 'c-a', imageRef: 'img:1', state: 'running', labels: {} }];
  }
  subscribe(l: (d: ContainerDelta) => void): () => void {
    this.ee.on('d', l);
    return () => this.ee.off('d', l);
  }
}

const host = async () => ({ hostname: 'h1', osPlatform: 'linux', cpus: 2, memoryBytes: 1024, dockerVersion: '20.10', cgroupVersion: 1 });

/** A TCP port that refuses connections (bound, then closed). */
async function refusedPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** Accepts TCP connections and never sends a byte (a replica hung before TLS). */
async function silentListener(t: tap.Test): Promise<number> {
  const sockets = new Set<net.Socket>();
  const s = net.createServer((c) => {
    sockets.add(c);
    c.on('error', () => undefined);
  });
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    for (const c of sockets) c.destroy();
    s.close();
  });
  return (s.address() as net.AddressInfo).port;
}

/** Relays TCP to `target`; freeze() stops moving bytes both ways without closing anything (a partition). */
async function relay(t: tap.Test, target: number, listenHost = '127.0.0.1'): Promise<{ port: number; freeze(): void }> {
  let frozen = false;
  const pairs: [net.Socket, net.Socket][] = [];
  const s = net.createServer((c) => {
    const up = net.connect(target, '127.0.0.1');
    pairs.push([c, up]);
    c.on('error', () => undefined);
    up.on('error', () => undefined);
    c.on('data', (d) => frozen || up.write(d));
    up.on('data', (d) => frozen || c.write(d));
    c.on('close', () => up.destroy());
    up.on('close', () => c.destroy());
  });
  await new Promise<void>((r) => s.listen(0, listenHost, r));
  t.teardown(() => {
    for (const [a, b] of pairs) (a.destroy(), b.destroy());
    s.close();
  });
  return { port: (s.address() as net.AddressInfo).port, freeze: () => void (frozen = true) };
}

t.test('agent link with several controller addresses', async (t) => {
  const dir = t.testdir();
  // The server certificate names localhost and 127.0.0.1 only.
  const pki = await initPki(join(dir, 'ctl'), ['localhost', '127.0.0.1']);
  const store: Store = await openStore({ kind: 'sqlite', path: join(dir, 'ctl', 'bulkhead.db') });
  t.teardown(() => store.close());
  const link = { heartbeatIntervalMs: 150, offlineAfterMs: 3_000, helloTimeoutMs: 2_000 };
  const a: RunningGrpcServer = await startGrpcServer({ listen: '127.0.0.1:0', store, pki, logger: silent, link });
  const b: RunningGrpcServer = await startGrpcServer({ listen: '127.0.0.1:0', store, pki, logger: silent, link });
  t.teardown(() => b.shutdown());
  const aAddr = `127.0.0.1:${a.port}`;
  const bAddr = `localhost:${b.port}`;
  const refused = `127.0.0.1:${await refusedPort()}`;
  const hung = `127.0.0.1:${await silentListener(t)}`;

  // Enrollment tries the addresses in order and saves them all.
  const { token } = await createJoinToken(store, 60_000, new Date());
  const creds = await enroll({ controller: [refused, aAddr, bAddr], token, caFingerprint: pki.caFingerprint, stateDir: join(dir, 'agent'), hostname: 'h1' });
  t.same(creds.identity.controllers, [refused, aAddr, bAddr], 'enrolled past the refused address; every address saved in order');
  t.equal(creds.identity.controller, refused, '`controller` is the first address');
  const agentId = creds.identity.agentId;

  /** A minimal AgentLink server (real gRPC and mutual TLS with the controller's certificate) running `impl`; its port. */
  const proto = loadProto();
  const rawController = async (t: Test, impl: { Connect: (call: grpc.ServerDuplexStream<AgentMessage__Output, ControllerMessage>) => void }): Promise<number> => {
    const server = new grpc.Server();
    server.addService(proto.bulkhead.v1.AgentLink.service, impl);
    const port = await new Promise<number>((resolve, reject) => server.bindAsync(
      '127.0.0.1:0',
      grpc.ServerCredentials.createSsl(Buffer.from(pki.ca.certPem), [{ private_key: Buffer.from(pki.server.keyPem), cert_chain: Buffer.from(pki.server.certPem) }], true),
      (err, p) => (err ? reject(err) : resolve(p)),
    ));
    t.teardown(() => server.forceShutdown());
    return port;
  };

  t.test('refused, silent and misnamed addresses are skipped; then A; A gone → B within a second', async (t) => {
    // 127.0.0.2 reaches replica A too (relayed), but the certificate does not name it: refused by TLS.
    const misnamed = `127.0.0.2:${(await relay(t, a.port, '127.0.0.2')).port}`;
    const lines: Record<string, unknown>[] = [];
    const logger = createLogger({ name: 'link', level: 'warn', destination: { write: (l: string) => void lines.push(JSON.parse(l) as Record<string, unknown>) } });
    const agentLink = new ControllerLink({
      credentials: creds, inventory: new FakeInventory(), hostFacts: host, logger,
      controller: [refused, hung, misnamed, aAddr, bAddr], welcomeTimeoutMs: 400, minBackoffMs: 50, maxBackoffMs: 300,
    });
    t.teardown(() => agentLink.stop());
    const started = performance.now();
    agentLink.start();
    await waitFor('connected', async () => agentLink.state === 'connected', 10_000, 20);
    t.equal(agentLink.controllerAddress, aAddr, `connected to replica A after skipping three bad addresses (${(performance.now() - started).toFixed(0)} ms)`);
    const downs = lines.filter((l) => l['msg'] === 'controller link down');
    t.same(downs.map((l) => [l['controller'], l['next']]), [[refused, hung], [hung, misnamed], [misnamed, aAddr]], 'each address tried once, in order');
    t.match(downs[0]?.['reason'], /ECONNREFUSED/, 'the refused one');
    t.match(downs[1]?.['reason'], /did not welcome this agent within 400 ms/, 'the silent one: welcome timeout');
    t.match(downs[2]?.['reason'], /127\.0\.0\.2 is not in the cert's list/, 'the misnamed one: TLS checks the certificate against that address');
    await waitFor('online', async () => (await store.getAgent(agentId))?.status === 'online');

    const goneAt = performance.now();
    await a.shutdown();
    await waitFor('on replica B', async () => agentLink.state === 'connected' && agentLink.controllerAddress === bAddr, 5_000, 10);
    const ms = performance.now() - goneAt;
    t.ok(ms < 1_000, `replica A shut down → connected to B (${bAddr}, checked as the DNS name localhost) in ${ms.toFixed(0)} ms`);
    t.comment(`measured: replica gone → next replica in ${ms.toFixed(0)} ms`);
  });

  t.test('a replica set up with another CA does not hold the agent back from the right one', async (t) => {
    const otherPki = await initPki(join(dir, 'other-ctl'), ['localhost', '127.0.0.1']);
    const wrong = await startGrpcServer({ listen: '127.0.0.1:0', store, pki: otherPki, logger: silent, link });
    t.teardown(() => wrong.shutdown());
    const lines: Record<string, unknown>[] = [];
    const logger = createLogger({ name: 'link', level: 'warn', destination: { write: (l: string) => void lines.push(JSON.parse(l) as Record<string, unknown>) } });
    const agentLink = new ControllerLink({
      credentials: creds, inventory: new FakeInventory(), hostFacts: host, logger,
      controller: [`127.0.0.1:${wrong.port}`, bAddr], minBackoffMs: 50, maxBackoffMs: 300, // certRefusedRetryMs: the default minute
    });
    t.teardown(() => agentLink.stop());
    const started = performance.now();
    agentLink.start();
    await waitFor('connected to the right replica', async () => agentLink.state === 'connected' && agentLink.controllerAddress === bAddr, 5_000, 20);
    t.ok(performance.now() - started < 2_000, `on the right replica after ${(performance.now() - started).toFixed(0)} ms, not after the one-minute retry`);
    t.match(lines.find((l) => l['msg'] === 'controller link down')?.['code'], 'BK_ERR_CA_PIN_MISMATCH', 'the other CA was noticed');
  });

  t.test('a controller that does not acknowledge heartbeats does not trip the silence watchdog', async (t) => {
    // A minimal AgentLink server (real gRPC and TLS with the controller's certificate): it
    // welcomes with 100 ms heartbeats and acknowledges every message but heartbeats, as a
    // protocol with heartbeats as bare leases might.
    let heartbeats = 0;
    const port = await rawController(t, {
      Connect: (call: grpc.ServerDuplexStream<AgentMessage__Output, ControllerMessage>) => {
        call.on('data', (m: AgentMessage__Output) => {
          if (m.body === 'hello') call.write({ welcome: { agentId, heartbeatIntervalMs: 100, serverTimeMs: Date.now() } });
          if (m.body === 'heartbeat') heartbeats += 1;
          else call.write({ ack: { seq: m.seq } });
        });
        call.on('error', () => undefined);
      },
    });
    const lines: Record<string, unknown>[] = [];
    const logger = createLogger({ name: 'link', level: 'warn', destination: { write: (l: string) => void lines.push(JSON.parse(l) as Record<string, unknown>) } });
    const agentLink = new ControllerLink({ credentials: creds, inventory: new FakeInventory(), hostFacts: host, logger, controller: [`127.0.0.1:${port}`, bAddr], minSilenceMs: 0 });
    t.teardown(() => agentLink.stop());
    agentLink.start();
    await waitFor('connected', async () => agentLink.state === 'connected', 5_000, 20);
    await new Promise((r) => setTimeout(r, 1_200)); // 12 heartbeat intervals, 4 × the watchdog's
    t.ok(heartbeats >= 8, `${heartbeats} heartbeats sent, none acknowledged`);
    t.equal(agentLink.state, 'connected', 'still connected');
    t.equal(agentLink.controllerAddress, `127.0.0.1:${port}`, 'to the same controller');
    t.same(lines.filter((l) => l['msg'] === 'controller link down'), [], 'the link never went down');
  });

  t.test('a stall of the agent\'s own process does not give up a stream whose answer is in its socket', async (t) => {
    // A minimal AgentLink server in this same process (real gRPC and TLS). Right after it
    // writes the welcome (and later an acknowledgement), this process stalls — as a CPU-starved
    // agent does — past the welcome timeout (then past the silence limit): the answer is in the
    // agent's socket, unread, when its deadline comes due. Timers run before sockets are read.
    let stallOnHeartbeat = false;
    const stall = (ms: number) => setImmediate(() => {
      const end = performance.now() + ms;
      while (performance.now() < end) { /* this process cannot run */ }
    });
    const port = await rawController(t, {
      Connect: (call: grpc.ServerDuplexStream<AgentMessage__Output, ControllerMessage>) => {
        call.on('data', (m: AgentMessage__Output) => {
          if (m.body === 'hello') {
            call.write({ welcome: { agentId, heartbeatIntervalMs: 100, serverTimeMs: Date.now() } });
            stall(900); // welcome timeout 400 ms
            return;
          }
          call.write({ ack: { seq: m.seq } });
          if (m.body === 'heartbeat' && stallOnHeartbeat) {
            stallOnHeartbeat = false;
            stall(1_200); // silence limit 3 × 100 ms
          }
        });
        call.on('error', () => undefined);
      },
    });
    const lines: Record<string, unknown>[] = [];
    const logger = createLogger({ name: 'link', level: 'warn', destination: { write: (l: string) => void lines.push(JSON.parse(l) as Record<string, unknown>) } });
    const agentLink = new ControllerLink({
      credentials: creds, inventory: new FakeInventory(), hostFacts: host, logger,
      controller: [`127.0.0.1:${port}`, bAddr], welcomeTimeoutMs: 400, minSilenceMs: 0, minBackoffMs: 50, maxBackoffMs: 300,
    });
    t.teardown(() => agentLink.stop());
    agentLink.start();
    await waitFor('connected', async () => agentLink.state === 'connected', 10_000, 20);
    t.equal(agentLink.controllerAddress, `127.0.0.1:${port}`, 'welcomed by the stalled-past controller, not moved on');
    t.ok(agentLink.stallRechecks.welcome >= 1, `the welcome deadline fired late and re-checked (${agentLink.stallRechecks.welcome})`);
    await new Promise((r) => setTimeout(r, 500)); // heartbeats acknowledged: the watchdog is armed
    stallOnHeartbeat = true;
    await waitFor('the stall came and went', async () => !stallOnHeartbeat, 5_000, 20);
    await new Promise((r) => setTimeout(r, 800));
    t.ok(agentLink.stallRechecks.silence >= 1, `the silence watchdog ticked late and re-checked (${agentLink.stallRechecks.silence})`);
    t.equal(agentLink.state, 'connected', 'still connected');
    t.equal(agentLink.controllerAddress, `127.0.0.1:${port}`, 'to the same controller');
    t.same(lines.filter((l) => l['msg'] === 'controller link down').map((l) => l['reason']), [], 'the link never went down');
  });

  t.test('a trust bundle repeated with every welcome is checked once; a changed or refused one every time', async (t) => {
    // A minimal AgentLink server (real gRPC and TLS) that welcomes, sends `bundle` as the
    // controller does after every welcome, then ends the stream: the agent reconnects, as a
    // dead replica's agents all do at once. Parsing and verifying the same bundle on every
    // reconnect was a tenth of the simulated agents' CPU in a failover.
    const other = await initPki(join(dir, 'other-ca'), ['localhost']);
    let bundle = { caPem: pki.ca.certPem, issuingCaFingerprint: pki.caFingerprint };
    let welcomes = 0;
    const port = await rawController(t, {
      Connect: (call: grpc.ServerDuplexStream<AgentMessage__Output, ControllerMessage>) => {
        call.on('data', (m: AgentMessage__Output) => {
          if (m.body !== 'hello') return;
          call.write({ welcome: { agentId, heartbeatIntervalMs: 1_000, serverTimeMs: Date.now() } });
          call.write({ trust: bundle });
          welcomes += 1;
          setTimeout(() => call.end(), 30);
        });
        call.on('error', () => undefined);
      },
    });
    const lines: Record<string, unknown>[] = [];
    const logger = createLogger({ name: 'link', level: 'info', destination: { write: (l: string) => void lines.push(JSON.parse(l) as Record<string, unknown>) } });
    const agentLink = new ControllerLink({
      credentials: creds, inventory: new FakeInventory(), hostFacts: host, logger,
      controller: [`127.0.0.1:${port}`], minBackoffMs: 20, maxBackoffMs: 40, backoffSpreadMs: 40,
    });
    t.teardown(() => agentLink.stop());
    agentLink.start();
    const welcomed = async (n: number): Promise<void> => {
      await waitFor(`${n} welcomes`, async () => welcomes >= n && agentLink.state !== 'connecting', 10_000, 10);
    };
    await welcomed(4);
    await new Promise((r) => setTimeout(r, 50));
    t.equal(agentLink.trustBundlesChecked, 1, `the same bundle after ${welcomes} welcomes: checked once`);

    // A rotation: the bundle adds a CA. Taken (and acknowledged) once, then settled again.
    bundle = { caPem: pki.ca.certPem + other.ca.certPem, issuingCaFingerprint: pki.caFingerprint };
    const before = welcomes;
    await welcomed(before + 3);
    await new Promise((r) => setTimeout(r, 50));
    t.equal(agentLink.trustBundlesChecked, 2, 'the changed bundle checked once more, its repeats not');
    t.equal(lines.filter((l) => l['msg'] === 'trusted controller CAs updated').length, 1, 'the new CAs taken once');

    // A bundle that is refused (it names an issuing CA it does not hold) is never settled: refused again each time.
    bundle = { caPem: pki.ca.certPem + other.ca.certPem, issuingCaFingerprint: `sha256:${'0'.repeat(64)}` };
    const refusedFrom = welcomes;
    await welcomed(refusedFrom + 3);
    await new Promise((r) => setTimeout(r, 50));
    const refusals = lines.filter((l) => l['msg'] === 'trust bundle from the controller refused; keeping the CAs trusted now').length;
    t.ok(refusals >= 3, `a refused bundle is checked and refused on every welcome (${refusals} times in ${welcomes - refusedFrom} welcomes)`);
  });

  t.test('a replica that stops answering without closing the connection: the watchdog moves on', async (t) => {
    const frozenPath = await relay(t, b.port);
    const c = await startGrpcServer({ listen: '127.0.0.1:0', store, pki, logger: silent, link });
    t.teardown(() => c.shutdown());
    const viaRelay = `127.0.0.1:${frozenPath.port}`;
    const other = `127.0.0.1:${c.port}`;
    const agentLink = new ControllerLink({
      credentials: creds, inventory: new FakeInventory(), hostFacts: host, logger: silent,
      controller: [viaRelay, other], minBackoffMs: 50, maxBackoffMs: 300, minSilenceMs: 0,
    });
    t.teardown(() => agentLink.stop());
    agentLink.start();
    await waitFor('connected through the relay', async () => agentLink.state === 'connected' && agentLink.controllerAddress === viaRelay, 10_000, 20);
    await new Promise((r) => setTimeout(r, 500)); // heartbeats acknowledged on this stream: the watchdog is armed
    const frozenAt = performance.now();
    frozenPath.freeze();
    await waitFor('moved to the other replica', async () => agentLink.state === 'connected' && agentLink.controllerAddress === other, 5_000, 10);
    const ms = performance.now() - frozenAt;
    // 3 heartbeats of 150 ms (minSilenceMs 0), checked on the heartbeat tick: 450–600 ms, then one backoff delay.
    t.ok(ms >= 400 && ms < 2_000, `frozen connection given up and the next replica used after ${ms.toFixed(0)} ms (3 × 150 ms heartbeats)`);
    t.equal(agentLink.error, undefined, 'no error left once connected');
  });
});
