// The controller process stopped (SIGSTOP, a long GC) while an offline sweep is
// already running — after the sweep's own stall check — must not mark a live
// agent offline: its heartbeats of that time are waiting unread in the socket,
// and the sweep reads them before judging the stream by its last receipt.
// (CI saw this once: 5 live agents declared offline right after a 7 s stop.)
//
// Real gRPC server with mutual TLS over a real SQLite store. The agent is a raw
// AgentLink client in a worker thread, so it keeps heartbeating while the
// controller's thread is blocked. The stop is made by blocking the controller's
// thread inside the sweep's store read (the store itself is real).
import t from 'tap';
import { Worker } from 'node:worker_threads';
import { join, resolve } from 'node:path';
import { createLogger, describeCert, issueAgentCertWithDates } from '@bulkhead/shared';
import { initPki } from '../../src/pki/data-dir';
import { openStore } from '../../src/store/open-store';
import { startGrpcServer } from '../../src/grpc/grpc-server';
import { eventually } from './fixtures/alerting';

const hostFacts = (hostname: string) => ({
  hostname, osPlatform: 'linux', osDistro: 'Debian GNU/Linux', osRelease: '12', kernel: '6.1.0', arch: 'x64', cpus: 2, memoryBytes: 2 ** 31,
  dockerVersion: '27.3.1', dockerApiVersion: '1.47', cgroupVersion: 2, cgroupDriver: 'systemd', labels: {},
});

// The agent: hello, then a heartbeat every 100 ms until told to stop. Plain CommonJS
// (a worker's eval code), resolving packages from the repository's root.
const AGENT = `
const { workerData, parentPort } = require('node:worker_threads');
const req = require('node:module').createRequire(workerData.root + '/package.json');
const grpc = req('@grpc/grpc-js');
const { loadProto } = req('@bulkhead/shared');
const proto = loadProto();
const client = new proto.bulkhead.v1.AgentLink(workerData.addr, grpc.credentials.createSsl(Buffer.from(workerData.ca), Buffer.from(workerData.key), Buffer.from(workerData.cert)));
const call = client.Connect();
let seq = 0;
const write = (m) => call.write({ seq: ++seq, ...m });
call.on('data', (m) => { if (m.body === 'ack' && Number(m.ack.seq) === 1) parentPort.postMessage('welcomed'); });
call.on('error', (e) => parentPort.postMessage('error: ' + e.message));
call.on('end', () => parentPort.postMessage('ended'));
write({ hello: { agentId: workerData.agentId, agentVersion: '0.1.0-test', host: workerData.host, startedAtMs: Date.now() } });
const beat = setInterval(() => write({ heartbeat: { sentAtMs: Date.now() } }), 100);
parentPort.on('message', () => { clearInterval(beat); call.end(); client.close(); parentPort.close(); });
`;

t.test('a stop that begins inside a sweep does not make a live agent offline', async (t) => {
  const dir = t.testdir();
  const lines: string[] = [];
  const logger = createLogger({ name: 'sweep-stall-test', level: 'info', destination: { write: (s: string) => void lines.push(s) } });
  const pki = await initPki(join(dir, 'ctl'), ['localhost', '127.0.0.1']);
  const store = await openStore({ kind: 'sqlite', path: join(dir, 'ctl', 'bulkhead.db') });
  const offlineAfterMs = 1000;
  const blockMs = 2500;
  // The stop: the first sweep after `stopArmed` blocks this thread inside its store read.
  let stopArmed = false;
  let stopped = 0;
  const list = store.listStaleOnlineAgents.bind(store);
  store.listStaleOnlineAgents = async (cutoff: Date) => {
    if (!stopArmed) return list(cutoff);
    stopArmed = false;
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, blockMs); // the whole thread stands still
    stopped = blockMs;
    // As if the stop had come just before the cutoff was taken (e.g. during the last-seen flush).
    return list(new Date(Date.now() - offlineAfterMs));
  };
  const server = await startGrpcServer({ listen: '127.0.0.1:0', store, pki, logger, link: { heartbeatIntervalMs: 200, offlineAfterMs } });
  t.teardown(async () => {
    await server.shutdown();
    await store.close();
  });

  const agentId = 'agt_5eeb5ta11ab1e0000001';
  const now = Date.now();
  const cert = await issueAgentCertWithDates(pki.ca, agentId, new Date(now - 60_000), new Date(now + 86_400_000));
  await store.insertAgent({
    id: agentId, hostname: 'stall-1', status: 'offline', agentVersion: '', host: null, certSerial: describeCert(cert.certPem).serial,
    certNotAfter: describeCert(cert.certPem).notAfter, enrolledAt: new Date(now), lastSeenAt: null, connectedAt: null, revokedAt: null, containerCount: 0,
  });
  const events: string[] = [];
  const worker = new Worker(AGENT, {
    eval: true,
    workerData: {
      root: resolve(__dirname, '../../../..'), addr: `127.0.0.1:${server.port}`, agentId, host: hostFacts('stall-1'),
      ca: pki.ca.certPem, key: cert.keyPem, cert: cert.certPem,
    },
  });
  worker.on('message', (m: string) => events.push(m));
  t.teardown(async () => {
    worker.postMessage('stop');
    await new Promise((r) => setTimeout(r, 100));
    await worker.terminate();
  });
  await eventually('the agent welcomed', () => events.includes('welcomed'), 10_000);
  await eventually('the agent online', async () => (await store.getAgent(agentId))?.status === 'online');
  await new Promise((r) => setTimeout(r, 500));

  stopArmed = true;
  await eventually('the sweep was stopped', () => stopped > 0, 10_000);
  // Two offline-after periods after the stop: the stall's grace is over and the agent was judged again.
  await new Promise((r) => setTimeout(r, 2 * offlineAfterMs + 500));

  const logged = lines.map((l) => JSON.parse(l) as { msg: string; agentId?: string });
  t.notOk(logged.some((l) => l.msg === 'agent offline: heartbeats stopped'), 'the live agent was not declared offline');
  t.equal((await store.getAgent(agentId))?.status, 'online', 'the agent is online');
  t.same(events.filter((e) => e !== 'welcomed'), [], 'its stream was not closed');
  t.ok(logged.some((l) => /the controller was stalled/.test(l.msg)), 'the next sweep noticed the stall');

  // The control: the same agent gone is still marked offline.
  worker.postMessage('stop');
  await eventually('the gone agent marked offline', async () => (await store.getAgent(agentId))?.status === 'offline', 10_000);
  t.pass('a gone agent still goes offline');
});
