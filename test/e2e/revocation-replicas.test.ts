// Revocation across controller replicas: two real `bulkhead-controller serve`
// processes on one private PostgreSQL database (test/helpers/postgres.ts),
// agents enrolled with the real `bulkhead-agent enroll`, their streams opened
// with a real grpc-js client and the agents' own certificates on replica B,
// and the revocation made through replica A's API. Replica B must close the
// stream and refuse the certificate within 1 s; a renewal asked for on the
// revoked agent's stream is refused.
import t from 'tap';
import * as grpc from '@grpc/grpc-js';
import { createCsr, loadProto, type AgentMessage, type ControllerMessage__Output } from '../../packages/shared/src/index';
import { controllerCredentials } from '../../packages/agent/src/link/controller-credentials';
import { loadCredentials, type AgentCredentials } from '../../packages/agent/src/state/agent-state';
import { CONTROLLER_BIN, Daemon, apiRequest } from '../helpers/processes';
import { usePostgres } from '../helpers/postgres';
import { enrollAgent, startController, tempRoot } from './stack';

type Duplex = grpc.ClientDuplexStream<AgentMessage, ControllerMessage__Output>;

interface Stream {
  call: Duplex;
  /** Settles when the controller ends the stream: when, and why. */
  closed: Promise<{ at: number; error?: grpc.ServiceError }>;
  messages: ControllerMessage__Output[];
  close(): void;
}

/** Opens AgentLink with the agent's own pair and resolves once welcomed (or rejects with the refusal). */
async function openStream(addr: string, creds: AgentCredentials): Promise<Stream> {
  const proto = loadProto();
  const client = new proto.bulkhead.v1.AgentLink(addr, controllerCredentials(creds.caPem, creds));
  const call = client.Connect() as Duplex;
  const messages: ControllerMessage__Output[] = [];
  let welcomed: (() => void) | undefined;
  const welcome = new Promise<void>((r) => (welcomed = r));
  const closed = new Promise<{ at: number; error?: grpc.ServiceError }>((resolve) => {
    call.on('error', (error: grpc.ServiceError) => resolve({ at: performance.now(), error }));
    call.on('end', () => resolve({ at: performance.now() }));
  });
  call.on('data', (m: ControllerMessage__Output) => {
    messages.push(m);
    if (m.body === 'welcome') welcomed?.();
  });
  call.write({ seq: 1, hello: { agentId: creds.identity.agentId, agentVersion: 'test', host: { hostname: 'replica-test' } } });
  const outcome = await Promise.race([welcome.then(() => undefined), closed]);
  const close = () => {
    call.cancel();
    client.close();
  };
  if (outcome) {
    close();
    throw Object.assign(new Error(`stream refused: ${outcome.error?.details ?? 'ended'}`), { details: outcome.error?.details ?? '' });
  }
  return { call, closed, messages, close };
}

t.test('a revocation through replica A closes the stream on replica B and refuses the certificate there within 1 s', async (t) => {
  const pg = await usePostgres(t);
  if (!pg) return;
  const db = await pg.createDatabase({ name: 'bulkhead', owner: 'bulkhead' });
  const root = tempRoot();
  t.teardown(root.cleanup);
  const env = { BULKHEAD_DATABASE_URL: db.url };

  const a = await startController(root.dir, { env });
  t.teardown(() => a.stop());
  // Replica B: the same data directory (CA, server certificate, token key), the same database.
  const b = Daemon.start('controller-b', CONTROLLER_BIN, ['serve', '--data-dir', a.dataDir, '--grpc-listen', '127.0.0.1:0', '--api-listen', '127.0.0.1:0', '--no-metrics'], env);
  t.teardown(() => b.stop());
  const bReady = await b.waitForLog((l) => l['msg'] === 'controller ready');
  const bAddr = `127.0.0.1:${bReady['grpcPort'] as number}`;

  const one = await enrollAgent(a, root.dir, 'agent1', 'unix:///nonexistent');
  const two = await enrollAgent(a, root.dir, 'agent2', 'unix:///nonexistent');
  const creds1 = loadCredentials(one.stateDir);
  const creds2 = loadCredentials(two.stateDir);

  // Agent 1: stream on B, revoked through A; the time from sending the API call to the stream's end on B.
  const s1 = await openStream(bAddr, creds1);
  t.teardown(s1.close);
  const started = performance.now();
  const revoked = await apiRequest<{ status: string }>(a.apiBase, 'POST', `/v1/agents/${one.agentId}/revoke`, a.caPem, a.adminKey);
  const apiMs = performance.now() - started;
  t.equal(revoked.status, 200, 'replica A revoked the agent');
  t.equal(revoked.body.status, 'revoked');
  const end = await Promise.race([s1.closed, new Promise<undefined>((r) => setTimeout(() => r(undefined), 3000))]);
  t.ok(end, 'replica B closed the stream');
  const closeMs = end ? end.at - started : Infinity;
  t.match(end?.error?.details, /^BK_ERR_AGENT_REVOKED: /, 'with the revocation as the reason');
  t.ok(closeMs <= 1000, `stream on replica B closed ${closeMs.toFixed(0)} ms after the revoke call (API answered in ${apiMs.toFixed(0)} ms); bound 1000 ms`);

  // A new stream with the same certificate on B: refused at once.
  const refusedAt = performance.now();
  const again = await openStream(bAddr, creds1).then((s) => (s.close(), undefined), (e: { details: string }) => e.details);
  const refuseMs = performance.now() - refusedAt;
  t.match(again, /^BK_ERR_AGENT_REVOKED: /, 'replica B refuses the revoked certificate');
  t.ok(performance.now() - started <= 1000 + refuseMs, 'refused within the same bound');
  await b.waitForLog((l) => l['msg'] === 'agent revoked: stream closed' && l['agentId'] === one.agentId);

  // Agent 2: revoked through A while its stream on B is open; a renewal asked for right away on
  // that stream gets no certificate, whichever comes first (the refusal or the stream's end).
  const s2 = await openStream(bAddr, creds2);
  t.teardown(s2.close);
  const r2 = await apiRequest(a.apiBase, 'POST', `/v1/agents/${two.agentId}/revoke`, a.caPem, a.adminKey);
  t.equal(r2.status, 200);
  const { csrPem } = await createCsr('replica-test');
  s2.call.write({ seq: 2, renewCert: { csrPem } });
  const end2 = await Promise.race([s2.closed, new Promise<undefined>((r) => setTimeout(() => r(undefined), 3000))]);
  t.ok(end2, 'the stream of the revoked agent ended');
  const renewal = s2.messages.find((m) => m.body === 'certRenewal')?.certRenewal;
  t.notOk(renewal?.certificatePem, 'no certificate was issued to the revoked agent');
  if (renewal) t.match(renewal.error, /^BK_ERR_AGENT_REVOKED: /, 'the renewal refusal names the revocation');
  t.match(end2?.error?.details, /^BK_ERR_AGENT_REVOKED: /);
  t.comment(`measured: revoke via A → stream closed on B in ${closeMs.toFixed(0)} ms; re-connection refused in ${refuseMs.toFixed(0)} ms`);
});
