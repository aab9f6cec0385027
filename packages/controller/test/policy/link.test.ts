// Policy distribution over the real agent link: the controller's gRPC server
// on 127.0.0.1:0 with real mutual TLS and the real HTTPS API, both sharing one
// PolicyService and SQLite store. A raw AgentLink client stands in for the
// agent, so the test sees exactly what goes over the wire: the bundle after
// the welcome, a new bundle after PUT /v1/policies (and after a scan upload),
// policy status visible in GET /v1/agents, violation reports in GET /v1/violations.
import t from 'tap';
import * as grpc from '@grpc/grpc-js';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import {
  createLogger, describeCert, issueAgentCertWithDates, loadProto, type AgentMessage, type ControllerMessage__Output,
  type PolicyBundle__Output,
} from '@bulkhead/shared';
import { initPki } from '../../src/pki/data-dir';
import { openStore } from '../../src/store/open-store';
import { startGrpcServer } from '../../src/grpc/grpc-server';
import { createApiServer } from '../../src/api/server';
import { generateApiKey } from '../../src/api/api-keys';
import { PolicyService } from '../../src/policy/policy-service';
import type { Store } from '../../src/store/store';
import { bearer, get, type RunningApi } from '../api/fixtures/api-server';
import { send } from './fixtures/policy-api';
import { APP_DIGEST, CANDIDATE_YAML, hex, hostFacts, trivyReport } from './fixtures/fleet';

const sha = (s: string) => createHash('sha256').update(s).digest('hex');

async function waitFor<T>(what: string, fn: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

type Call = grpc.ClientDuplexStream<AgentMessage, ControllerMessage__Output>;

/** A fake agent: enrolled in the store with a real certificate, talking raw AgentLink. */
async function connectAgent(t: tap.Test, opts: { store: Store; pki: Awaited<ReturnType<typeof initPki>>; addr: string; name: string; storedSerial?: (serial: string) => string }) {
  const agentId = 'agt_' + hex(opts.name).slice(0, 20);
  const now = Date.now();
  const cert = await issueAgentCertWithDates(opts.pki.ca, agentId, new Date(now - 60_000), new Date(now + 86_400_000));
  const info = describeCert(cert.certPem);
  await opts.store.insertAgent({
    id: agentId, hostname: opts.name, status: 'offline', agentVersion: '', host: null, certSerial: opts.storedSerial?.(info.serial) ?? info.serial, certNotAfter: info.notAfter,
    enrolledAt: new Date(now), lastSeenAt: null, connectedAt: null, revokedAt: null, containerCount: 0,
  });
  const proto = loadProto();
  const client = new proto.bulkhead.v1.AgentLink(opts.addr, grpc.credentials.createSsl(Buffer.from(opts.pki.ca.certPem), Buffer.from(cert.keyPem), Buffer.from(cert.certPem)));
  t.teardown(() => client.close());
  const call = client.Connect() as Call;
  const received: ControllerMessage__Output[] = [];
  call.on('data', (m: ControllerMessage__Output) => received.push(m));
  call.on('error', () => undefined);
  t.teardown(() => call.end());
  let seq = 0;
  const write = (m: Omit<AgentMessage, 'seq'>): number => {
    seq++;
    call.write({ seq, ...m });
    return seq;
  };
  write({ hello: { agentId, agentVersion: '0.1.0-test', host: hostFacts(opts.name, { env: 'prod' }), startedAtMs: now } });
  const bundles = () => received.filter((m) => m.body === 'policy').map((m) => m.policy as PolicyBundle__Output);
  const acked = (n: number) => received.some((m) => m.body === 'ack' && Number(m.ack?.seq) === n);
  return { agentId, call, received, write, bundles, acked };
}

t.test('policy bundles, status and violations over the agent link', async (t) => {
  const dir = t.testdir();
  const lines: string[] = [];
  const logger = createLogger({ name: 'link-policy-test', level: 'debug', destination: { write: (s: string) => void lines.push(s) } });
  const pki = await initPki(join(dir, 'ctl'), ['localhost', '127.0.0.1']);
  const store = await openStore({ kind: 'sqlite', path: join(dir, 'ctl', 'bulkhead.db') });
  t.teardown(() => store.close());
  const policy = await PolicyService.create({ store, logger });
  const server = await startGrpcServer({ listen: '127.0.0.1:0', store, pki, logger, link: { heartbeatIntervalMs: 1000, offlineAfterMs: 120_000 }, policy });
  t.teardown(() => server.shutdown());
  const addr = `127.0.0.1:${server.port}`;
  const app = await createApiServer({ store, tls: pki.server, logger, policy });
  await app.listen({ host: '127.0.0.1', port: 0 });
  t.teardown(() => app.close());
  const key = generateApiKey('link-test', 'admin');
  await store.insertApiKey(key.record);
  const api = { url: `https://127.0.0.1:${(app.server.address() as AddressInfo).port}`, ca: pki.ca } as unknown as RunningApi;
  const auth = bearer(key.plaintext);

  const a = await connectAgent(t, { store, pki, addr, name: 'prod-7' });
  await waitFor('the first bundle', () => a.bundles().length === 1);
  t.same(a.received.slice(0, 3).map((m) => m.body), ['welcome', 'ack', 'policy'], 'welcome, hello ack, then the bundle');
  const b1 = a.bundles()[0]!;
  t.equal(Number(b1.version), 1, 'the default policy');
  t.equal(b1.policyJson, policy.current().record.json);
  t.equal(b1.scansJson, '[]');
  t.equal(b1.sha256, sha(b1.policyJson + b1.scansJson));

  // The agent reports what it applied; the API shows it.
  const s1 = a.write({ policyStatus: { version: 1, applied: true, error: '' } });
  await waitFor('status acked', () => a.acked(s1));
  const agents = (await get(api, '/v1/agents', auth)).json as { items: Array<{ id: string; status: string; policy: { version: number; applied: boolean } | null }> };
  t.match(agents.items.find((x) => x.id === a.agentId), { status: 'online', policy: { version: 1, applied: true, error: '' } });

  // PUT /v1/policies reaches the connected agent at once.
  const put = await send(api, 'PUT', '/v1/policies', { body: CANDIDATE_YAML, headers: { ...auth, 'content-type': 'application/yaml' } });
  t.equal(put.status, 200, put.text);
  await waitFor('the new bundle', () => a.bundles().length === 2);
  const b2 = a.bundles()[1]!;
  t.equal(Number(b2.version), 2);
  t.equal((JSON.parse(b2.policyJson) as { metadata: { name: string } }).metadata.name, 'fleet-baseline');
  t.equal(b2.sha256, sha(b2.policyJson + b2.scansJson));

  // A rejected policy pushes nothing.
  const bad = await send(api, 'PUT', '/v1/policies', { body: 'kind: Nope\n', headers: { ...auth, 'content-type': 'application/yaml' } });
  t.equal(bad.status, 400);

  // A refused bundle is visible too.
  const s2 = a.write({ policyStatus: { version: 2, applied: false, error: 'unknown check type "privileged2"' } });
  await waitFor('refusal acked', () => a.acked(s2));
  const one = (await get(api, `/v1/agents/${a.agentId}`, auth)).json as { policy: unknown };
  t.match(one.policy, { version: 2, applied: false, error: 'unknown check type "privileged2"' });

  // Violation reports are stored once, acknowledged, and listed.
  const report = {
    id: 'vr_01JNZ8K2W3',
    containerId: hex('ci-runner'),
    containerName: '/ci-runner',
    imageRef: 'gitlab/gitlab-runner:latest',
    project: 'ci',
    ruleId: 'host.docker-socket',
    severity: 'critical',
    mode: 'enforce',
    source: 'reaction',
    message: 'runtime socket /var/run/docker.sock is mounted; remove the socket mount',
    evidenceJson: JSON.stringify([{ location: 'mounts[/var/run/docker.sock]', detail: 'runtime socket /var/run/docker.sock is mounted at /var/run/docker.sock' }]),
    denied: false,
    action: { type: 'stop', result: 'ok', error: '', durationMs: 412.5, detail: 'stopped with 5 s timeout' },
    atMs: Date.parse('2026-03-10T08:59:59.250Z'),
    policyVersion: 2,
    exemptedBy: '',
  };
  const v1 = a.write({ violation: report });
  const v2 = a.write({ violation: { ...report, message: 'resent after reconnect' } });
  const v3 = a.write({ violation: { ...report, id: '' } });
  const v4 = a.write({ violation: { ...report, id: 'vr_denied', source: 'authz', denied: true, action: null, atMs: Date.parse('2026-03-10T09:00:01Z') } });
  await waitFor('violations acked', () => [v1, v2, v3, v4].every(a.acked));
  t.match(lines.join(''), /dropped a malformed violation report/, 'a malformed report is logged and acked, not fatal');
  const v5 = a.write({ violation: { ...report, id: '', ruleId: '' } });
  await waitFor('second malformed report acked', () => a.acked(v5));
  const dropped = lines.map((l) => JSON.parse(l) as { level: number; msg: string }).filter((l) => l.msg.startsWith('dropped a malformed violation report'));
  t.same(dropped.map((l) => l.level), [40, 20], 'one warn line per stream for malformed reports; the rest at debug');
  const list = (await get(api, '/v1/violations', auth)).json as { items: Array<Record<string, unknown>> };
  t.same(list.items.map((v) => v['id']), ['vr_denied', 'vr_01JNZ8K2W3'], 'stored once each, newest first');
  t.match(list.items[1], {
    agentId: a.agentId,
    containerName: '/ci-runner',
    ruleId: 'host.docker-socket',
    mode: 'enforce',
    source: 'reaction',
    message: 'runtime socket /var/run/docker.sock is mounted; remove the socket mount',
    evidence: [{ location: 'mounts[/var/run/docker.sock]' }],
    denied: false,
    action: { type: 'stop', result: 'ok', durationMs: 412.5 },
    at: '2026-03-10T08:59:59.250Z',
    policyVersion: 2,
  });
  t.match(list.items[0], { denied: true, action: null, source: 'authz' });
  const filtered = (await get(api, `/v1/violations?agent=${a.agentId}&denied=true`, auth)).json as { items: unknown[] };
  t.equal(filtered.items.length, 1);

  // A scan upload re-pushes the bundle (same policy version, new scans).
  const up = await send(api, 'POST', '/v1/scans', { body: JSON.stringify(trivyReport()), headers: { ...auth, 'content-type': 'application/json' } });
  t.equal(up.status, 201, up.text);
  await waitFor('the bundle with the scan', () => a.bundles().length === 3);
  const b3 = a.bundles()[2]!;
  t.equal(Number(b3.version), 2);
  t.same((JSON.parse(b3.scansJson) as Array<{ digest: string }>).map((s) => s.digest), [APP_DIGEST]);
  t.not(b3.sha256, b2.sha256);

  // A second agent connecting now gets the current bundle, and only it. Its serial is stored the
  // way earlier versions could store it (leading zero byte, upper case): it is still the same serial.
  const b = await connectAgent(t, { store, pki, addr, name: 'prod-8', storedSerial: (s) => '00' + s.toUpperCase() });
  await waitFor('second agent bundle', () => b.bundles().length === 1);
  t.same(b.bundles()[0], b3);
  await new Promise((r) => setTimeout(r, 200));
  t.equal(a.bundles().length, 3, 'the first agent got nothing new');
  t.equal(b.bundles().length, 1);

  // A protocol fault (a second hello) closes that stream with one warn line and no stack trace.
  b.write({ hello: { agentId: b.agentId, agentVersion: '0.1.0-test', host: hostFacts('prod-8', { env: 'prod' }), startedAtMs: Date.now() } });
  const fault = await waitFor('protocol fault logged', () =>
    lines.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l['msg'] === 'agent stream closed: protocol error' && l['agentId'] === b.agentId),
  );
  t.match(fault, { level: 40, code: 'BK_ERR_PROTOCOL', reason: 'hello sent twice on one stream' });
  t.notOk('err' in fault || 'stack' in fault, 'no stack trace');

  // Shutting the link down unsubscribes it: later changes push nothing (and do not throw).
  await server.shutdown();
  const after = await send(api, 'PUT', '/v1/policies', { body: CANDIDATE_YAML, headers: { ...auth, 'content-type': 'application/yaml' } });
  t.equal(after.status, 200);
  t.equal(b.bundles().length, 1);
});
