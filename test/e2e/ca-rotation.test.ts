// Certificate lifecycle on real processes: the built `bulkhead-controller`
// (serve, cert reissue, ca status, ca rotate start|activate|finish, SIGHUP)
// and a real `bulkhead-agent run` against a private Docker engine.
//
//   1. `cert reissue --san …` + SIGHUP: new connections get the new server
//      certificate; the agent's stream is not touched.
//   2. A CA rotation: the agent receives and stores the new CA, renews under
//      it once it issues, keeps reporting throughout; the old CA is retired and
//      a certificate from it is refused with the documented error.
import t from 'tap';
import * as grpc from '@grpc/grpc-js';
import { createHash, X509Certificate } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { connect } from 'node:tls';
import { join } from 'node:path';
import { loadProto, splitPemCertificates, certFingerprint, type AgentMessage, type ControllerMessage__Output } from '../../packages/shared/src/index';
import { controllerCredentials } from '../../packages/agent/src/link/controller-credentials';
import { LABEL_ARGS, FILE_LABEL, removeLabelledContainers, useEngine } from '../helpers/engine';
import { AGENT_BIN, CONTROLLER_BIN, apiGet, apiRequest, run, waitFor } from '../helpers/processes';
import { enrollAgent, startController, tempRoot, type ControllerHandle } from './stack';

interface ServerCertSeen {
  fingerprint: string;
  issuer: string;
  subjectAltName: string;
}

/** The certificate a new TLS connection to the gRPC port gets, and the CA after it in the chain. */
function serverCert(ctl: ControllerHandle): Promise<ServerCertSeen> {
  const [host, port] = ctl.grpcAddr.split(':');
  return new Promise((resolve, reject) => {
    const s = connect({ host: host!, port: Number(port), rejectUnauthorized: false, ALPNProtocols: ['h2'] }, () => {
      const peer = s.getPeerCertificate(true);
      const x = new X509Certificate(peer.raw);
      resolve({ fingerprint: 'sha256:' + createHash('sha256').update(peer.raw).digest('hex'), issuer: x.issuer, subjectAltName: x.subjectAltName ?? '' });
      s.end();
    });
    s.on('error', reject);
  });
}

/** One AgentLink attempt with the given pair: the refusal's details, or "welcomed". */
async function tryLink(addr: string, caPem: string, keyPem: string, certPem: string, agentId: string): Promise<string> {
  const proto = loadProto();
  const client = new proto.bulkhead.v1.AgentLink(addr, controllerCredentials(caPem, { keyPem, certPem }));
  const call = client.Connect() as grpc.ClientDuplexStream<AgentMessage, ControllerMessage__Output>;
  try {
    return await new Promise<string>((resolve) => {
      call.on('data', (m: ControllerMessage__Output) => m.body === 'welcome' && resolve('welcomed'));
      call.on('error', (e: grpc.ServiceError) => resolve(e.details));
      call.write({ seq: 1, hello: { agentId, agentVersion: 'test', host: { hostname: 'old-cert' } } });
    });
  } finally {
    call.cancel();
    client.close();
  }
}

interface CaStatusJson {
  rotation: string;
  cas: { role: string; fingerprint: string; subject: string }[];
  agents: { id: string; certCa: string; trusts: Record<string, boolean> }[];
}

t.test('server certificate re-issue and a CA rotation with a running agent', async (t) => {
  const engine = await useEngine(t);
  t.teardown(() => removeLabelledContainers(engine, FILE_LABEL));
  const root = tempRoot();
  t.teardown(root.cleanup);
  const ctl = await startController(root.dir, { heartbeatInterval: '500ms', offlineAfter: '3s' });
  t.teardown(() => ctl.stop());
  const ctlCli = (args: string[]) => run(CONTROLLER_BIN, [...args, '--data-dir', ctl.dataDir]);
  const status = async (): Promise<CaStatusJson> => {
    const r = await ctlCli(['ca', 'status', '--json']);
    if (r.code !== 0) throw new Error(`ca status failed: ${r.stderr}`);
    return JSON.parse(r.stdout) as CaStatusJson;
  };
  let reloads = 0;
  const sighup = async (): Promise<void> => {
    const want = ++reloads;
    process.kill(ctl.daemon.child.pid!, 'SIGHUP');
    await waitFor(`reload ${want}`, async () => ctl.daemon.lines.filter((l) => l['msg'] === 'controller certificates reloaded').length >= want, 10_000);
  };
  const agentLines = (msg: string) => agent.daemon.lines.filter((l) => l['msg'] === msg);
  // The API's certificate follows the gRPC one (it is the data directory's server.crt): an ops
  // client trusts the CA(s) in the data directory, as docs/pki.md tells operators to give theirs.
  const api = <T>(path: string) => apiGet<T>(ctl.apiBase, path, ctl.caPem.trimEnd() + '\n' + readFileSync(join(ctl.dataDir, 'ca.crt'), 'utf8'), ctl.adminKey);
  const online = async (what: string) => waitFor(what, async () => (await api<{ items: { id: string; status: string }[] }>('/v1/agents')).body.items.some((a) => a.id === agent.agentId && a.status === 'online'), 30_000);

  const agent = await enrollAgent(ctl, root.dir, 'agent1', engine.dockerHost);
  const idle = await enrollAgent(ctl, root.dir, 'agent2', engine.dockerHost); // enrolled, never started
  agent.start();
  t.teardown(() => agent.stop());
  await online('agent online');
  const connects = () => ctl.daemon.lines.filter((l) => l['msg'] === 'agent connected' && l['agentId'] === agent.agentId).length;

  // ---- 1. the server certificate, re-issued with an extra name, served after SIGHUP ----
  const before = await serverCert(ctl);
  const reissue = await ctlCli(['cert', 'reissue', '--san', 'grpc2.example.test', '--json']);
  t.equal(reissue.code, 0, reissue.stderr);
  t.equal(statSync(join(ctl.dataDir, 'server.key')).mode & 0o777, 0o600, 'the new key is 0600');
  t.equal((await serverCert(ctl)).fingerprint, before.fingerprint, 'nothing changes before SIGHUP');
  const connectsBefore = connects();
  await sighup();
  const after = await serverCert(ctl);
  t.equal(after.fingerprint, (JSON.parse(reissue.stdout) as { fingerprint: string }).fingerprint, 'a new connection gets the re-issued certificate');
  t.match(after.subjectAltName, /DNS:grpc2\.example\.test/, 'with the added name');
  t.match(after.subjectAltName, /IP Address:127\.0\.0\.1/, 'and the names it had');
  await new Promise((r) => setTimeout(r, 1500));
  t.equal(connects(), connectsBefore, 'the agent\'s stream stayed up across the server certificate change');
  await online('agent still online');

  // ---- 2. CA rotation ----
  const oldFp = ctl.caFingerprint;
  let st = await status();
  t.equal(st.rotation, 'none');
  t.equal(st.agents.find((a) => a.id === agent.agentId)?.certCa, oldFp, 'the agent\'s certificate is recorded as from the CA');

  const start = await ctlCli(['ca', 'rotate', 'start', '--json']);
  t.equal(start.code, 0, start.stderr);
  const newFp = (JSON.parse(start.stdout) as { next: { fingerprint: string } }).next.fingerprint;
  t.not(newFp, oldFp);
  t.equal(statSync(join(ctl.dataDir, 'ca-next.key')).mode & 0o777, 0o600, 'the new CA key is 0600');
  await sighup();
  await waitFor('agent stores the new trust', async () => agentLines('trusted controller CAs updated').length >= 1, 15_000);
  const agentCa = join(agent.stateDir, 'ca.crt');
  t.same(splitPemCertificates(readFileSync(agentCa, 'utf8')).map(certFingerprint), [oldFp, newFp], 'the agent trusts the old CA (issuing) and the new one');
  t.equal(statSync(agentCa).mode & 0o777, 0o644, 'ca.crt is 0644');
  st = await waitFor('status shows the agent trusting the new CA', async () => {
    const s = await status();
    return s.agents.find((a) => a.id === agent.agentId)?.trusts[newFp] ? s : undefined;
  }, 10_000);
  t.equal(st.rotation, 'started');
  t.same(st.cas.map((c) => c.role), ['issuing', 'next']);

  // The idle agent never learned the new CA: activate refuses until it is dealt with.
  const refusedActivate = await ctlCli(['ca', 'rotate', 'activate']);
  t.not(refusedActivate.code, 0, 'activate is refused while an agent does not trust the new CA');
  t.match(refusedActivate.stderr, new RegExp(`BK_ERR_CONFLICT.*${idle.agentId}`));
  const revoked = await apiRequest(ctl.apiBase, 'POST', `/v1/agents/${idle.agentId}/revoke`, ctl.caPem, ctl.adminKey);
  t.equal(revoked.status, 200);
  const activate = await ctlCli(['ca', 'rotate', 'activate', '--json']);
  t.equal(activate.code, 0, activate.stderr);

  // Before the reload the agent still holds an old-CA certificate: finish refuses.
  const early = await ctlCli(['ca', 'rotate', 'finish']);
  t.not(early.code, 0, 'finish is refused while an agent holds an old-CA certificate');
  t.match(early.stderr, new RegExp(`BK_ERR_CONFLICT.*${agent.agentId}`));

  const oldKey = readFileSync(join(agent.stateDir, 'agent.key'), 'utf8');
  const oldCert = readFileSync(join(agent.stateDir, 'agent.crt'), 'utf8');
  const renewStarted = performance.now();
  await sighup();
  t.match((await serverCert(ctl)).issuer, (JSON.parse(activate.stdout) as { issuing: { subject: string } }).issuing.subject.replace(/^CN=/, ''), 'the server certificate is from the new CA');
  await waitFor('agent renewed under the new CA', async () => agentLines('certificate renewed; reconnecting with the new certificate').length >= 1, 30_000);
  await waitFor('agent reconnected', async () => agentLines('connected to controller').length >= 2, 30_000);
  const renewMs = performance.now() - renewStarted;
  const newCert = readFileSync(join(agent.stateDir, 'agent.crt'), 'utf8');
  const newCaPem = splitPemCertificates(readFileSync(agentCa, 'utf8'))[0]!;
  t.equal(certFingerprint(newCaPem), newFp, 'the issuing CA is first in the agent\'s ca.crt');
  t.ok(new X509Certificate(newCert).verify(new X509Certificate(newCaPem).publicKey), 'the agent\'s certificate is from the new CA');
  t.equal(statSync(join(agent.stateDir, 'agent.key')).mode & 0o777, 0o600, 'its new key is 0600');
  st = await waitFor('status shows the agent on the new CA', async () => {
    const s = await status();
    return s.agents.find((a) => a.id === agent.agentId)?.certCa === newFp ? s : undefined;
  }, 10_000);
  t.same(st.cas.map((c) => c.role), ['issuing', 'previous']);

  // Wait for the finish's bundle itself (a line more than now, and ca.crt down to one CA), not
  // for a fixed count of lines: another bundle (the activation's new issuing CA, a reconnect)
  // can log the line too, and a fixed count once raced the finish's bundle in CI.
  const trustLines = agentLines('trusted controller CAs updated').length;
  const finish = await ctlCli(['ca', 'rotate', 'finish']);
  t.equal(finish.code, 0, finish.stderr);
  t.notOk(existsSync(join(ctl.dataDir, 'ca-previous.key')), 'the old CA key is gone');
  await sighup();
  const trustedNow = () => splitPemCertificates(readFileSync(agentCa, 'utf8')).map(certFingerprint);
  await waitFor('agent drops the old CA', async () => agentLines('trusted controller CAs updated').length > trustLines && trustedNow().length === 1, 15_000);
  t.same(trustedNow(), [newFp], 'the agent trusts the new CA only');
  t.equal((await status()).rotation, 'none');

  // A certificate from the retired CA is refused, with the documented error.
  const refused = await tryLink(ctl.grpcAddr, newCaPem, oldKey, oldCert, agent.agentId);
  t.match(refused, /^BK_ERR_CERT_REQUIRED: the client certificate \(issuer ".*", .*\) did not verify against this controller's CA/, 'an old-CA certificate is refused');
  await ctl.daemon.waitForLog((l) => l['msg'] === 'agent stream refused: client certificate did not verify against this controller\'s CA');

  // The agent ran and reported throughout: still the same process, online, and a new container arrives.
  t.equal(agent.daemon.child.exitCode, null, 'the agent process never stopped');
  await online('agent online after the rotation');
  const started = await engine.docker(['run', '-d', '--network', 'none', ...LABEL_ARGS, '--label', 'bk.rot=1', engine.image, 'sleep', '300']);
  t.equal(started.code, 0, started.stderr);
  const cid = started.stdout.trim();
  await waitFor('container reported after the rotation', async () => (await api<{ items: { id: string }[] }>('/v1/containers?label=bk.rot=1')).body.items.some((c) => c.id === cid), 30_000);
  t.same(agent.daemon.lines.filter((l) => /CA_PIN_MISMATCH|CERT_REQUIRED/.test(String(l['code'] ?? ''))), [], 'the agent never lost trust in the controller');

  // New agents enroll with the new fingerprint.
  const fp = await ctlCli(['ca-fingerprint']);
  t.equal(fp.stdout.trim(), newFp);
  const token = await ctl.token();
  const enrolled = await run(AGENT_BIN, ['enroll', '--controller', ctl.grpcAddr, '--token', token, '--ca-fingerprint', newFp, '--state-dir', join(root.dir, 'agent3')]);
  t.equal(enrolled.code, 0, enrolled.stderr);
  t.comment(`measured: SIGHUP after activate → agent renewed under the new CA and reconnected in ${renewMs.toFixed(0)} ms`);
});
