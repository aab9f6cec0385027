// Every refusal of the trust model, against a real controller process:
// reused / expired / malformed join tokens, a wrong CA pin, and agent streams
// with no certificate, a certificate from another CA, an expired certificate,
// a certificate not issued to that agent, or a hello claiming another id.
// After each one the controller must still be up and serving.
import t from 'tap';
import * as grpc from '@grpc/grpc-js';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createCa, issueAgentCertWithDates, loadProto, type AgentMessage, type ControllerMessage__Output } from '../../packages/shared/src/index';
import { AGENT_BIN, run } from '../helpers/processes';
import { enrollAgent, startController, tempRoot, type ControllerHandle } from './stack';

const proto = loadProto();

function hostFacts() {
  return { hostname: 'test', osPlatform: 'linux', cpus: 1, memoryBytes: 1, cgroupVersion: 2 };
}

/** Opens an AgentLink stream with the given credentials, sends a hello, and returns how it ended. */
async function tryLink(ctl: ControllerHandle, creds: grpc.ChannelCredentials, helloAgentId: string): Promise<{ code: number; details: string; welcomed: boolean }> {
  const client = new proto.bulkhead.v1.AgentLink(ctl.grpcAddr, creds);
  try {
    return await new Promise((resolve) => {
      const call = client.Connect() as grpc.ClientDuplexStream<AgentMessage, ControllerMessage__Output>;
      let welcomed = false;
      call.on('data', (m: ControllerMessage__Output) => {
        if (m.body === 'welcome') {
          welcomed = true;
          call.cancel();
        }
      });
      call.on('error', (e: grpc.ServiceError) => resolve({ code: e.code, details: e.details, welcomed }));
      call.on('end', () => resolve({ code: 0, details: '', welcomed }));
      call.write({ seq: 1, hello: { agentId: helloAgentId, agentVersion: 'test', host: hostFacts() } });
    });
  } finally {
    client.close();
  }
}

t.test('refusals', async (t) => {
  const root = tempRoot();
  t.teardown(root.cleanup);
  const ctl = await startController(root.dir);
  t.teardown(() => ctl.stop());
  const stillUp = async (what: string): Promise<void> => {
    const h = await ctl.get('/healthz', null);
    t.equal(h.status, 200, `controller still up after ${what}`);
  };
  const enrollWith = (token: string, fp = ctl.caFingerprint, dir = 'x') =>
    run(AGENT_BIN, ['enroll', '--controller', ctl.grpcAddr, '--token', token, '--ca-fingerprint', fp, '--state-dir', join(root.dir, dir)]);

  await t.test('join tokens', async (t) => {
    const token = await ctl.token();
    const first = await enrollWith(token, ctl.caFingerprint, 'tok-a');
    t.equal(first.code, 0, 'first use enrolls');
    const again = await enrollWith(token, ctl.caFingerprint, 'tok-b');
    t.equal(again.code, 1, 'reuse fails');
    t.match(again.stderr, /BK_ERR_TOKEN_USED/);
    await stillUp('a reused token');

    const short = await ctl.token('1s');
    await new Promise((r) => setTimeout(r, 1500));
    const late = await enrollWith(short, ctl.caFingerprint, 'tok-c');
    t.equal(late.code, 1);
    t.match(late.stderr, /BK_ERR_TOKEN_EXPIRED/);

    const forged = await enrollWith(token.slice(0, -4) + 'AAAA', ctl.caFingerprint, 'tok-d');
    t.match(forged.stderr, /BK_ERR_TOKEN_(INVALID|USED)/);
    const unknown = await enrollWith('bkj_0123456789abcdef_' + 'A'.repeat(43), ctl.caFingerprint, 'tok-e');
    t.match(unknown.stderr, /BK_ERR_TOKEN_INVALID/);
    const malformed = await enrollWith('not-a-token', ctl.caFingerprint, 'tok-f');
    t.match(malformed.stderr, /BK_ERR_TOKEN_INVALID/);
    await stillUp('bad tokens');
  });

  await t.test('a wrong CA pin is refused before the token is sent', async (t) => {
    const token = await ctl.token();
    const other = 'sha256:' + 'ab'.repeat(32);
    const r = await enrollWith(token, other, 'pin-a');
    t.equal(r.code, 1);
    t.match(r.stderr, /BK_ERR_CA_PIN_MISMATCH/);
    const ok = await enrollWith(token, ctl.caFingerprint, 'pin-b');
    t.equal(ok.code, 0, 'the token was not spent by the refused attempt');
  });

  // A legitimately enrolled identity to compare against.
  const agent = await enrollAgent(ctl, root.dir, 'good', 'unix:///nonexistent.sock');
  const st = (f: string) => readFileSync(join(agent.stateDir, f));
  const caPem = st('ca.crt');

  await t.test('agent streams', async (t) => {
    const good = await tryLink(ctl, grpc.credentials.createSsl(caPem, st('agent.key'), st('agent.crt')), agent.agentId);
    t.ok(good.welcomed, 'the enrolled agent is welcomed', { code: good.code, details: good.details });

    const none = await tryLink(ctl, grpc.credentials.createSsl(caPem), agent.agentId);
    t.equal(none.code, grpc.status.UNAUTHENTICATED, 'no client certificate');
    t.match(none.details, /BK_ERR_CERT_REQUIRED/);

    const otherCa = await createCa('Impostor CA');
    const forged = await issueAgentCertWithDates(otherCa, agent.agentId, new Date(Date.now() - 60_000), new Date(Date.now() + 86_400_000));
    const fromOther = await tryLink(ctl, grpc.credentials.createSsl(caPem, Buffer.from(forged.keyPem), Buffer.from(forged.certPem)), agent.agentId);
    t.equal(fromOther.code, grpc.status.UNAUTHENTICATED, 'certificate from another CA');
    t.match(fromOther.details, /BK_ERR_CERT_REQUIRED/);

    const realCa = { keyPem: readFileSync(join(ctl.dataDir, 'ca.key'), 'utf8'), certPem: ctl.caPem };
    const expired = await issueAgentCertWithDates(realCa, agent.agentId, new Date(Date.now() - 10 * 86_400_000), new Date(Date.now() - 86_400_000));
    const exp = await tryLink(ctl, grpc.credentials.createSsl(caPem, Buffer.from(expired.keyPem), Buffer.from(expired.certPem)), agent.agentId);
    t.equal(exp.code, grpc.status.UNAUTHENTICATED, 'expired certificate');
    t.match(exp.details, /BK_ERR_CERT_REQUIRED/);

    // Signed by the real CA but not the certificate issued to this agent.
    const rogue = await issueAgentCertWithDates(realCa, agent.agentId, new Date(Date.now() - 60_000), new Date(Date.now() + 86_400_000));
    const rg = await tryLink(ctl, grpc.credentials.createSsl(caPem, Buffer.from(rogue.keyPem), Buffer.from(rogue.certPem)), agent.agentId);
    t.equal(rg.code, grpc.status.UNAUTHENTICATED, 'certificate serial not issued to this agent');

    const ghost = await issueAgentCertWithDates(realCa, 'agt_ghost', new Date(Date.now() - 60_000), new Date(Date.now() + 86_400_000));
    const gh = await tryLink(ctl, grpc.credentials.createSsl(caPem, Buffer.from(ghost.keyPem), Buffer.from(ghost.certPem)), 'agt_ghost');
    t.equal(gh.code, grpc.status.PERMISSION_DENIED, 'unknown agent');
    t.match(gh.details, /BK_ERR_AGENT_UNKNOWN/);

    const claim = await tryLink(ctl, grpc.credentials.createSsl(caPem, st('agent.key'), st('agent.crt')), 'agt_someoneelse');
    t.equal(claim.code, grpc.status.PERMISSION_DENIED, 'hello claiming another agent id');
    t.match(claim.details, /BK_ERR_AGENT_ID_MISMATCH/);
    t.notOk(claim.welcomed);

    await stillUp('refused streams');
    const again = await tryLink(ctl, grpc.credentials.createSsl(caPem, st('agent.key'), st('agent.crt')), agent.agentId);
    t.ok(again.welcomed, 'the real agent still connects afterwards', { code: again.code, details: again.details });
  });
});
