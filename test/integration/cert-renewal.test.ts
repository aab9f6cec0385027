// Certificate renewal end to end in one process, with real pieces: the
// controller's gRPC server on 127.0.0.1:0 with real TLS and a real CA, a real
// SQLite store, the agent's real enrollment and ControllerLink (with its
// CertRenewer) — only the Docker side is an in-memory inventory.
import t from 'tap';
import * as grpc from '@grpc/grpc-js';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import {
  createCsr, createLogger, certPublicKeyFingerprint, describeCert, issueAgentCertWithDates, loadProto,
  type AgentMessage, type ContainerDelta, type ControllerMessage__Output,
} from '../../packages/shared/src/index';
import { initPki, type ControllerPki } from '../../packages/controller/src/pki/data-dir';
import { openStore } from '../../packages/controller/src/store/open-store';
import { startGrpcServer, type RunningGrpcServer } from '../../packages/controller/src/grpc/grpc-server';
import { createJoinToken } from '../../packages/controller/src/enrollment/join-tokens';
import type { AuditEntry } from '../../packages/controller/src/audit/audit-store';
import type { Store } from '../../packages/controller/src/store/store';
import { enroll } from '../../packages/agent/src/enroll/enroll';
import { ControllerLink, type LinkInventory } from '../../packages/agent/src/link/controller-link';
import { saveCredentials, type AgentCredentials } from '../../packages/agent/src/state/agent-state';
import { waitFor } from '../helpers/processes';

const silent = createLogger({ name: 'test', level: 'silent' });
const inventory: LinkInventory = { inventory: () => [], subscribe: (_l: (d: ContainerDelta) => void) => () => undefined };
const host = async () => ({ hostname: 'h1', osPlatform: 'linux', cpus: 2, memoryBytes: 1024, dockerVersion: '20.10', cgroupVersion: 1 });

interface Rig {
  dir: string;
  pki: ControllerPki;
  store: Store;
  server: RunningGrpcServer;
  addr: string;
  audit: AuditEntry[];
}

async function rig(t: { testdir(): string; teardown(fn: () => unknown): void }, agentCertMs = 600_000): Promise<Rig> {
  const dir = t.testdir();
  const pki = await initPki(join(dir, 'ctl'), ['localhost', '127.0.0.1']);
  const store: Store = await openStore({ kind: 'sqlite', path: join(dir, 'ctl', 'bulkhead.db') });
  const audit: AuditEntry[] = [];
  const server = await startGrpcServer({
    listen: '127.0.0.1:0', store, pki, logger: silent,
    link: { heartbeatIntervalMs: 150, offlineAfterMs: 600, helloTimeoutMs: 500, renewal: { ca: pki.ca, agentCertMs, audit: { record: (e) => void audit.push(e) } } },
  });
  t.teardown(async () => {
    await server.shutdown();
    await store.close();
  });
  return { dir, pki, store, server, addr: `127.0.0.1:${server.port}`, audit };
}

/** Enrolls for real, then swaps in a certificate with the given dates (and records its serial as the agent's). */
async function enrolled(r: Rig, notBefore: Date, notAfter: Date): Promise<{ creds: AgentCredentials; stateDir: string }> {
  const stateDir = join(r.dir, 'agent');
  const { token } = await createJoinToken(r.store, 60_000, new Date());
  const first = await enroll({ controller: r.addr, token, caFingerprint: r.pki.caFingerprint, stateDir, hostname: 'h1' });
  const short = await issueAgentCertWithDates(r.pki.ca, first.identity.agentId, notBefore, notAfter);
  const rec = await r.store.getAgent(first.identity.agentId);
  await r.store.replaceAgentCert!(first.identity.agentId, rec!.certSerial, { serial: describeCert(short.certPem).serial, notAfter }, null);
  const creds: AgentCredentials = { ...first, keyPem: short.keyPem, certPem: short.certPem, identity: { ...first.identity, certNotAfter: notAfter.toISOString() } };
  saveCredentials(stateDir, creds);
  return { creds, stateDir };
}

type Duplex = grpc.ClientDuplexStream<AgentMessage, ControllerMessage__Output>;

/** A bare stream with the given pair: resolves once welcomed, or with the refusal. */
async function rawStream(addr: string, creds: { caPem: string; keyPem: string; certPem: string }, agentId: string): Promise<{ call: Duplex; welcomed: boolean; error?: grpc.ServiceError; close: () => void }> {
  const proto = loadProto();
  const client = new proto.bulkhead.v1.AgentLink(addr, grpc.credentials.createSsl(Buffer.from(creds.caPem), Buffer.from(creds.keyPem), Buffer.from(creds.certPem)));
  const call = client.Connect() as Duplex;
  const close = () => {
    call.cancel();
    client.close();
  };
  const outcome = await new Promise<{ welcomed: boolean; error?: grpc.ServiceError }>((resolve) => {
    call.on('data', (m: ControllerMessage__Output) => m.body === 'welcome' && resolve({ welcomed: true }));
    call.on('error', (error: grpc.ServiceError) => resolve({ welcomed: false, error }));
    call.write({ seq: 1, hello: { agentId, agentVersion: 'raw', host: { hostname: 'h1' } } });
  });
  return { call, close, ...outcome };
}

t.test('the agent renews at half its lifetime with a new key and reconnects with it', async (t) => {
  const r = await rig(t);
  const now = Date.now();
  // 4 s of validity: renewal is due 2 s in.
  const { creds, stateDir } = await enrolled(r, new Date(now), new Date(now + 4000));
  const agentId = creds.identity.agentId;
  const issued = describeCert(creds.certPem);
  const oldSerial = issued.serial;
  // X.509 keeps whole seconds: half the lifetime is measured on the certificate as issued.
  const halfLife = issued.notBefore.getTime() + (issued.notAfter.getTime() - issued.notBefore.getTime()) / 2;

  const link = new ControllerLink({
    credentials: creds, inventory, hostFacts: host, logger: silent, minBackoffMs: 50, maxBackoffMs: 300,
    renewal: { stateDir, options: { minRetryMs: 100, maxRetryMs: 500 } },
  });
  const states: string[] = [];
  link.onState((s) => states.push(s));
  link.start();
  t.teardown(() => link.stop());

  await waitFor('online with the short certificate', async () => (await r.store.getAgent(agentId))?.status === 'online' && link.state === 'connected');
  t.equal((await r.store.getAgent(agentId))?.certSerial, oldSerial, 'not renewed before half its lifetime');
  const connectsBefore = states.filter((s) => s === 'connected').length;

  const rec = await waitFor('controller records the new serial', async () => {
    const a = await r.store.getAgent(agentId);
    return a && a.certSerial !== oldSerial ? a : undefined;
  }, 10_000);
  t.ok(Date.now() >= halfLife - 50, `renewed only once half the lifetime had passed (${Date.now() - halfLife} ms after it)`);
  await waitFor('reconnected with the new certificate', async () => states.filter((s) => s === 'connected').length > connectsBefore && link.state === 'connected');

  const renewed = link.credentials;
  const c = describeCert(renewed.certPem);
  t.equal(c.serial, rec.certSerial, 'the link now uses the certificate whose serial the controller stored');
  t.not(certPublicKeyFingerprint(renewed.certPem), certPublicKeyFingerprint(creds.certPem), 'the renewed certificate carries a NEW public key');
  t.ok(c.notAfter.getTime() > now + 500_000, 'fresh validity (the controller issues 10 min here)');
  t.ok(Math.abs(rec.certNotAfter.getTime() - c.notAfter.getTime()) < 1000, 'stored expiry follows (the certificate keeps whole seconds)');
  t.ok(c.subject.includes(agentId), 'same agent identity');

  // On disk: the new pair in place, key 0600, no leftovers once the new stream is up.
  t.equal(readFileSync(join(stateDir, 'agent.crt'), 'utf8'), renewed.certPem, 'agent.crt is the renewed certificate');
  t.equal(readFileSync(join(stateDir, 'agent.key'), 'utf8'), renewed.keyPem, 'agent.key is the new key');
  t.equal(statSync(join(stateDir, 'agent.key')).mode & 0o777, 0o600, 'the new key is 0600');
  t.equal(JSON.parse(readFileSync(join(stateDir, 'identity.json'), 'utf8')).certNotAfter, c.notAfter.toISOString(), 'identity.json carries the new expiry');
  await waitFor('old pair removed after the new certificate is in use', async () => !existsSync(join(stateDir, 'agent.key.prev')) && !existsSync(join(stateDir, 'agent.crt.prev')));
  t.notOk(existsSync(join(stateDir, 'agent.key.next')), 'no half-done renewal left');

  // The old certificate no longer opens a stream.
  const old = await rawStream(r.addr, creds, agentId);
  t.teardown(old.close);
  t.notOk(old.welcomed, 'the old certificate is refused at hello');
  t.match(old.error?.details, /BK_ERR_CERT_REQUIRED/, 'refused as not the certificate on record');
  t.equal(link.state, 'connected', 'the agent stays connected with the new certificate');
  t.equal((await r.store.getAgent(agentId))?.certSerial, c.serial, 'exactly one renewal: the next is due at half of the new lifetime');

  const entry = r.audit.find((e) => e.action === 'agents.renew-cert');
  t.match(entry, { actorKind: 'agent', actorId: agentId, status: 200, code: '', target: { agentId, fromSerial: oldSerial, toSerial: c.serial } }, 'the renewal is audited');
});

t.test('renewal is refused: a reused key, a revoked agent', async (t) => {
  const r = await rig(t);
  const now = Date.now();
  const { creds } = await enrolled(r, new Date(now - 1000), new Date(now + 3_600_000));
  const agentId = creds.identity.agentId;
  const serial = describeCert(creds.certPem).serial;

  const s = await rawStream(r.addr, creds, agentId);
  t.teardown(s.close);
  t.ok(s.welcomed, 'stream up');
  const answers: NonNullable<ControllerMessage__Output['certRenewal']>[] = [];
  s.call.on('data', (m: ControllerMessage__Output) => m.body === 'certRenewal' && m.certRenewal && answers.push(m.certRenewal));
  const ended = new Promise<grpc.ServiceError>((res) => s.call.on('error', res));

  // A CSR for the key the current certificate already has.
  const reuse = await reuseKeyCsr(creds.keyPem);
  s.call.write({ seq: 2, renewCert: { csrPem: reuse } });
  await waitFor('answer to the reused key', async () => answers.length === 1);
  t.match(answers[0]!.error, /^BK_ERR_CSR_INVALID: .*new key pair/, 'a CSR reusing the current key is refused');
  t.equal(answers[0]!.certificatePem, '', 'no certificate with a refusal');
  t.equal((await r.store.getAgent(agentId))?.certSerial, serial, 'serial unchanged');

  // Revoked in the store (as the API does first): the renewal is refused and the stream closed.
  // The revocation watch may close the stream before the request is read: either way no
  // certificate is issued, and a refusal that was answered is an AGENT_REVOKED one.
  await r.store.setAgentStatus(agentId, 'revoked', new Date());
  const { csrPem } = await createCsr('h1');
  s.call.write({ seq: 3, renewCert: { csrPem } });
  t.match((await ended).details, /BK_ERR_AGENT_REVOKED/, 'its stream is closed as revoked');
  t.ok(answers.length <= 2, 'at most one answer to the revoked agent');
  if (answers.length === 2) {
    t.match(answers[1]!.error, /^BK_ERR_AGENT_REVOKED: /, 'a revoked agent gets no certificate');
    t.equal(answers[1]!.certificatePem, '');
  }
  const after = await r.store.getAgent(agentId);
  t.equal(after?.certSerial, serial, 'the store keeps the old serial: nothing to resurrect');
  t.equal(after?.status, 'revoked', 'still revoked');
  const codes = r.audit.filter((e) => e.action === 'agents.renew-cert').map((e) => e.code);
  t.equal(codes[0], 'BK_ERR_CSR_INVALID');
  t.ok(codes.slice(1).every((c) => c === 'BK_ERR_AGENT_REVOKED'), 'refusals are audited');

  const again = await rawStream(r.addr, creds, agentId);
  t.teardown(again.close);
  t.match(again.error?.details, /BK_ERR_AGENT_REVOKED/, 'a revoked agent is not served afterwards');
});

t.test('revoke during a live stream: a renewal from that stream is refused', async (t) => {
  const r = await rig(t);
  const now = Date.now();
  const { creds } = await enrolled(r, new Date(now - 1000), new Date(now + 3_600_000));
  const agentId = creds.identity.agentId;
  const link = new ControllerLink({ credentials: creds, inventory, hostFacts: host, logger: silent, minBackoffMs: 50, maxBackoffMs: 300 });
  link.start();
  t.teardown(() => link.stop());
  await waitFor('connected', async () => link.state === 'connected');
  // The API's order: store first, then the live stream.
  await r.store.setAgentStatus(agentId, 'revoked', new Date());
  r.server.link.revoke(agentId);
  await waitFor('link down', async () => link.state !== 'connected');
  t.equal(link.error?.code, 'BK_ERR_AGENT_REVOKED');
  await t.rejects(link.requestRenewal((await createCsr('h1')).csrPem, 1000), { code: 'BK_ERR_CONTROLLER_UNAVAILABLE' }, 'no stream to renew over');
  t.equal((await r.store.getAgent(agentId))?.certSerial, describeCert(creds.certPem).serial, 'serial unchanged');
});

t.test('an expired certificate gives a clear re-enroll error and retries slowly', async (t) => {
  const r = await rig(t);
  const now = Date.now();
  const { creds, stateDir } = await enrolled(r, new Date(now - 120_000), new Date(now - 60_000));
  const lines: Record<string, unknown>[] = [];
  const logger = createLogger({ name: 'agent', level: 'info', destination: { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) } });
  const link = new ControllerLink({
    credentials: creds, inventory, hostFacts: host, logger, minBackoffMs: 50, maxBackoffMs: 300,
    renewal: { stateDir, options: { expiredRetryMs: 60_000 } },
  });
  link.start();
  t.teardown(() => link.stop());
  await waitFor('link gives up for now', async () => link.state === 'backoff');
  t.equal(link.error?.code, 'BK_ERR_CERT_EXPIRED');
  t.match(link.error?.message, /expired at .* Enroll this host again: bulkhead-agent enroll --controller 127\.0\.0\.1:\d+ --token <new join token> --ca-fingerprint sha256:[0-9a-f]{64} --state-dir /);
  await new Promise((res) => setTimeout(res, 1000));
  const down = lines.filter((l) => l['msg'] === 'controller link down');
  t.equal(down.length, 1, 'no spinning: one attempt, the next an hour away');
  t.match(down[0], { level: 50, code: 'BK_ERR_CERT_EXPIRED', retryInMs: 60_000 }, 'logged at error level with the slow retry');
  const expired = lines.find((l) => l['msg'] === 'agent certificate expired');
  t.match(expired, { level: 50, code: 'BK_ERR_CERT_EXPIRED', reason: /bulkhead-agent enroll/ }, 'the renewer says the same');
  t.equal(readFileSync(join(stateDir, 'agent.crt'), 'utf8'), creds.certPem, 'nothing on disk changed');
});

/** A CSR signed by an existing key (the renewal must not accept it). */
async function reuseKeyCsr(keyPem: string): Promise<string> {
  require('reflect-metadata');
  const x509 = require('@peculiar/x509') as typeof import('@peculiar/x509');
  const { webcrypto, createPrivateKey, createPublicKey } = await import('node:crypto');
  x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);
  const alg = { name: 'ECDSA', namedCurve: 'P-256' };
  const privateKey = await webcrypto.subtle.importKey('pkcs8', createPrivateKey(keyPem).export({ type: 'pkcs8', format: 'der' }), alg, true, ['sign']);
  const publicKey = await webcrypto.subtle.importKey('spki', createPublicKey(keyPem).export({ type: 'spki', format: 'der' }), alg, true, ['verify']);
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: 'CN=h1',
    keys: { privateKey, publicKey } as unknown as Parameters<typeof x509.Pkcs10CertificateRequestGenerator.create>[0]['keys'],
    signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
  });
  return csr.toString('pem');
}

t.test('a renewal answer lost on the way strands no agent: the previous certificate stays good until the new one is used', async (t) => {
  const r = await rig(t);
  const now = Date.now();
  // Past half its lifetime: the agent renews as soon as it connects.
  const { creds } = await enrolled(r, new Date(now - 3_000_000), new Date(now + 600_000));
  const agentId = creds.identity.agentId;
  const oldSerial = describeCert(creds.certPem).serial;

  // The controller issues, but the agent never stores the answer (the stream is dropped on arrival).
  const s = await rawStream(r.addr, creds, agentId);
  t.ok(s.welcomed);
  const lost = new Promise<NonNullable<ControllerMessage__Output['certRenewal']>>((res) => s.call.on('data', (m: ControllerMessage__Output) => m.body === 'certRenewal' && m.certRenewal && res(m.certRenewal)));
  s.call.write({ seq: 2, renewCert: { csrPem: (await createCsr('h1')).csrPem } });
  const answer = await lost;
  s.close();
  t.equal(answer.error, '', 'issued');
  const stored = await r.store.getAgent(agentId);
  t.equal(stored?.certSerial, answer.serial, 'the store holds the serial the agent never received');
  t.equal(stored?.prevCertSerial, oldSerial, 'and remembers the one it replaced');

  // The agent comes back with the certificate it has (past half its lifetime) and renews from it.
  const link = new ControllerLink({
    credentials: creds, inventory, hostFacts: host, logger: silent, minBackoffMs: 50, maxBackoffMs: 300,
    renewal: { stateDir: join(r.dir, 'agent'), options: { minRetryMs: 100, maxRetryMs: 500 } },
  });
  link.start();
  t.teardown(() => link.stop());
  await waitFor('reconnected with a new certificate', async () => link.state === 'connected' && describeCert(link.credentials.certPem).serial !== oldSerial);
  const now2 = describeCert(link.credentials.certPem).serial;
  t.not(now2, answer.serial, 'a fresh certificate, not the lost one');
  const rec = await waitFor('previous retired', async () => {
    const a = await r.store.getAgent(agentId);
    return a && a.certSerial === now2 && a.prevCertSerial === undefined ? a : undefined;
  });
  t.equal(rec.certSerial, now2);

  // Once the new certificate is in use, the old one is refused again.
  const old = await rawStream(r.addr, creds, agentId);
  t.teardown(old.close);
  t.notOk(old.welcomed, 'the previous certificate no longer opens a stream');
  t.match(old.error?.details, /BK_ERR_CERT_REQUIRED/);
});
