// Two real controllers, each with its own CA, on 127.0.0.1:0: an agent
// enrolled with one presents its certificate to the other. The controller
// names the mismatch once; the agent says to enroll again and retries slowly.
import t, { type Test } from 'tap';
import { X509Certificate } from 'node:crypto';
import { join } from 'node:path';
import { createLogger } from '../../packages/shared/src/index';
import { initPki } from '../../packages/controller/src/pki/data-dir';
import { openStore } from '../../packages/controller/src/store/open-store';
import { startGrpcServer } from '../../packages/controller/src/grpc/grpc-server';
import { createJoinToken } from '../../packages/controller/src/enrollment/join-tokens';
import { enroll } from '../../packages/agent/src/enroll/enroll';
import { ControllerLink } from '../../packages/agent/src/link/controller-link';
import { waitFor } from '../helpers/processes';

type Line = Record<string, unknown>;
const capture = (name: string, level: string) => {
  const lines: Line[] = [];
  const logger = createLogger({ name, level, destination: { write: (s: string) => void lines.push(JSON.parse(s) as Line) } });
  return { lines, logger };
};
const host = async () => ({ hostname: 'h1', osPlatform: 'linux', cpus: 2, memoryBytes: 1024, dockerVersion: '20.10', cgroupVersion: 1 });
const inventory = { inventory: () => [], subscribe: () => () => undefined };

async function controller(t: Test, dir: string, logger = createLogger({ name: 'ctl', level: 'silent' })) {
  const pki = await initPki(dir, ['localhost', '127.0.0.1']);
  const store = await openStore({ kind: 'sqlite', path: join(dir, 'bulkhead.db') });
  const server = await startGrpcServer({ listen: '127.0.0.1:0', store, pki, logger });
  t.teardown(async () => {
    await server.shutdown();
    await store.close();
  });
  return { pki, store, addr: `127.0.0.1:${server.port}` };
}

t.test('a certificate from another controller\'s CA: named once by the controller, re-enroll and a slow retry at the agent', async (t) => {
  const dir = t.testdir();
  const ctlLog = capture('ctl', 'debug');
  const a = await controller(t, join(dir, 'a'), ctlLog.logger);
  const b = await controller(t, join(dir, 'b'));
  const { token } = await createJoinToken(b.store, 60_000, new Date());
  const fromB = await enroll({ controller: b.addr, token, caFingerprint: b.pki.caFingerprint, stateDir: join(dir, 'agent'), hostname: 'h1' });
  // Pointed at A and trusting A's server certificate, but holding B's client certificate.
  const creds = { ...fromB, caPem: a.pki.ca.certPem, identity: { ...fromB.identity, controller: a.addr } };
  const subjectA = new X509Certificate(a.pki.ca.certPem).subject;
  const subjectB = new X509Certificate(b.pki.ca.certPem).subject;
  t.not(subjectA, subjectB);

  const agentLog = capture('agent', 'info');
  const link = new ControllerLink({ credentials: creds, inventory, hostFacts: host, logger: agentLog.logger, minBackoffMs: 10, maxBackoffMs: 20, certRefusedRetryMs: 150 });
  link.start();
  t.teardown(() => link.stop());
  const refusedAtAgent = () => agentLog.lines.filter((l) => l['code'] === 'BK_ERR_CERT_REQUIRED');
  await waitFor('three refusals', async () => refusedAtAgent().length >= 3);
  link.stop();

  for (const l of refusedAtAgent()) {
    t.match(l, { level: 50, retryInMs: 150, msg: /refused this agent's certificate.*enroll this host again: bulkhead-agent enroll --controller 127\.0\.0\.1:\d+ --token / });
  }
  t.match(refusedAtAgent()[0]?.['reason'], `issuer "${subjectB}"`, 'the agent is told whose certificate it holds');
  t.equal(agentLog.lines.filter((l) => l['msg'] === 'controller link down').length, 0, 'not the generic fast back-off line');

  const named = ctlLog.lines.filter((l) => /did not verify against this controller's CA/.test(String(l['msg'])));
  t.equal(named.filter((l) => l['level'] === 40).length, 1, 'warned once');
  t.ok(named.filter((l) => l['level'] === 20).length >= 2, 'the repeats go to debug');
  t.match(named[0], { code: 'BK_ERR_CERT_REQUIRED', certIssuer: subjectB, caSubject: subjectA, tlsError: /^[A-Z_]+$/ });
  t.notOk(named[0]?.['err'], 'no stack trace');
  t.equal(ctlLog.lines.filter((l) => l['msg'] === 'agent stream refused').length, 0, 'no second, generic line per attempt');
});

t.test('the slow retry defaults to a minute', async (t) => {
  const dir = t.testdir();
  const a = await controller(t, join(dir, 'a'));
  const b = await controller(t, join(dir, 'b'));
  const { token } = await createJoinToken(b.store, 60_000, new Date());
  const fromB = await enroll({ controller: b.addr, token, caFingerprint: b.pki.caFingerprint, stateDir: join(dir, 'agent'), hostname: 'h1' });
  const agentLog = capture('agent', 'info');
  const link = new ControllerLink({ credentials: { ...fromB, caPem: a.pki.ca.certPem }, controller: a.addr, inventory, hostFacts: host, logger: agentLog.logger });
  link.start();
  t.teardown(() => link.stop());
  await waitFor('refused', async () => link.state === 'backoff');
  await new Promise((r) => setTimeout(r, 500));
  const refused = agentLog.lines.filter((l) => l['code'] === 'BK_ERR_CERT_REQUIRED');
  t.equal(refused.length, 1, 'one attempt, the next a minute away');
  t.match(refused[0], { level: 50, retryInMs: 60_000 });
});

t.test('a controller whose certificate is not from the CA the agent enrolled with: re-enroll and a slow retry', async (t) => {
  const dir = t.testdir();
  const a = await controller(t, join(dir, 'a'));
  const b = await controller(t, join(dir, 'b'));
  const { token } = await createJoinToken(b.store, 60_000, new Date());
  const fromB = await enroll({ controller: b.addr, token, caFingerprint: b.pki.caFingerprint, stateDir: join(dir, 'agent'), hostname: 'h1' });
  const agentLog = capture('agent', 'info');
  // All of B's credentials, pointed at A (A was set up again with a new CA, say).
  const link = new ControllerLink({ credentials: fromB, controller: a.addr, inventory, hostFacts: host, logger: agentLog.logger, minBackoffMs: 10, maxBackoffMs: 20 });
  link.start();
  t.teardown(() => link.stop());
  await waitFor('refused', async () => link.state === 'backoff');
  await new Promise((r) => setTimeout(r, 300));
  const lines = agentLog.lines.filter((l) => l['code'] === 'BK_ERR_CA_PIN_MISMATCH');
  t.equal(lines.length, 1, 'one attempt, not the fast back-off');
  t.match(lines[0], { level: 50, retryInMs: 60_000, msg: /not from the CA this agent enrolled with.*enroll this host again: bulkhead-agent enroll/ });
});
