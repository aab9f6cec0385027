// Image signature verdicts across controller replicas: two real `bulkhead-controller serve`
// processes on one private PostgreSQL database (test/helpers/postgres.ts), two agents enrolled
// with the real `bulkhead-agent enroll`, their streams opened with a real grpc-js client and
// their own certificates — one on replica A, one on replica B — each sending a snapshot and the
// SignatureVerdicts it decided (as packages/agent/src/signatures/verdict-reporter.ts sends
// them). The dry-run of an image-signature rule through EITHER replica's API must judge both
// containers with the verdict their own agent reported (stored in signature_verdicts), and a
// revocation through A must drop the revoked agent's verdicts for B's dry-run too.
// (The verdicts themselves, from a real agent verifying real cosign signatures: test/e2e/image-signature-dry-run.test.ts.)
import t from 'tap';
import { createHash } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { loadProto, parsePolicy, signatureParamsOfRule, signatureVerdictKey, type AgentMessage, type ControllerMessage__Output } from '../../packages/shared/src/index';
import { controllerCredentials } from '../../packages/agent/src/link/controller-credentials';
import { loadCredentials, type AgentCredentials } from '../../packages/agent/src/state/agent-state';
import { CONTROLLER_BIN, Daemon, apiRequest, waitFor } from '../helpers/processes';
import { usePostgres } from '../helpers/postgres';
import { enrollAgent, startController, tempRoot } from './stack';

type Duplex = grpc.ClientDuplexStream<AgentMessage, ControllerMessage__Output>;

const REPO = 'registry.example.com/shop/web';
const D = (c: string) => `sha256:${c.repeat(64)}`;
const PEM = '-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----';
const POLICY = `apiVersion: bulkhead.dev/v1
kind: Policy
metadata: { name: signed-replicas }
spec:
  rules:
    - id: images.signed
      description: shop images are signed by the release key
      severity: critical
      mode: monitor
      action: { type: alert }
      scope: { images: ["registry.example.com/shop/*"] }
      check:
        type: image-signature
        keys:
          - name: prod-signer
            pem: |
${PEM.split('\n').map((l) => `              ${l}`).join('\n')}
`;
const params = signatureParamsOfRule(parsePolicy(POLICY, 'policy.yaml').spec.rules[0]!);
const keySha = (repoDigest: string) => createHash('sha256').update(signatureVerdictKey(params, repoDigest)).digest('hex');

interface Stream {
  acks: Set<number>;
  send(m: AgentMessage): void;
  close(): void;
}

async function openStream(addr: string, creds: AgentCredentials, hostname: string): Promise<Stream> {
  const proto = loadProto();
  const client = new proto.bulkhead.v1.AgentLink(addr, controllerCredentials(creds.caPem, creds));
  const call = client.Connect() as Duplex;
  const acks = new Set<number>();
  let welcomed: (() => void) | undefined;
  const welcome = new Promise<void>((r) => (welcomed = r));
  call.on('error', () => undefined);
  call.on('data', (m: ControllerMessage__Output) => {
    if (m.body === 'welcome') welcomed?.();
    if (m.body === 'ack' && m.ack) acks.add(Number(m.ack.seq));
  });
  call.write({ seq: 1, hello: { agentId: creds.identity.agentId, agentVersion: 'test', host: { hostname } } });
  await Promise.race([welcome, new Promise((_, rej) => setTimeout(() => rej(new Error(`no welcome from ${addr}`)), 15_000))]);
  return { acks, send: (m) => call.write(m), close: () => (call.cancel(), client.close()) };
}

function container(name: string, tag: string, repoDigest: string) {
  return {
    id: name.padEnd(64, '0'), name: `/${name}`, imageRef: `${REPO}:${tag}`, imageId: D('9'), imageDigest: repoDigest, state: 'running',
    repoDigests: { values: [repoDigest] },
  };
}

interface DryRun { rules: Array<{ ruleId: string; hits: Array<{ containerName: string; message: string }>; undecided: Array<{ containerName: string }> }> }

t.setTimeout(180_000);

t.test('every replica\'s dry-run judges with the verdicts every agent reported, whichever replica holds its stream', async (t) => {
  const pg = await usePostgres(t);
  if (!pg) return;
  const db = await pg.createDatabase({ name: 'bulkhead', owner: 'bulkhead' });
  const root = tempRoot();
  t.teardown(root.cleanup);
  const env = { BULKHEAD_DATABASE_URL: db.url };
  const a = await startController(root.dir, { env });
  t.teardown(() => a.stop());
  const b = Daemon.start('controller-b', CONTROLLER_BIN, ['serve', '--data-dir', a.dataDir, '--grpc-listen', '127.0.0.1:0', '--api-listen', '127.0.0.1:0', '--no-metrics'], env);
  t.teardown(() => b.stop());
  const bReady = await b.waitForLog((l) => l['msg'] === 'controller ready');
  const bAddr = `127.0.0.1:${bReady['grpcPort'] as number}`;
  const bApi = `https://127.0.0.1:${bReady['apiPort'] as number}`;

  const one = await enrollAgent(a, root.dir, 'agent1', 'unix:///nonexistent');
  const two = await enrollAgent(a, root.dir, 'agent2', 'unix:///nonexistent');
  const s1 = await openStream(a.grpcAddr, loadCredentials(one.stateDir), 'host-on-a');
  t.teardown(s1.close);
  const s2 = await openStream(bAddr, loadCredentials(two.stateDir), 'host-on-b');
  t.teardown(s2.close);

  const good = `${REPO}@${D('a')}`;
  const bad = `${REPO}@${D('b')}`;
  const shared = `${REPO}@${D('c')}`; // run on A's host, verified only on B's
  s1.send({ seq: 2, snapshot: { containers: [container('signed', '1', good), container('shared', '3', shared)], takenAtMs: Date.now() } });
  s1.send({ seq: 3, signatureVerdicts: { verdicts: [{ keySha256: keySha(good), verdictJson: JSON.stringify({ status: 'verified', repoDigest: good, signers: ['prod-signer'], message: 'signed by prod-signer', checkedAt: Date.now() }) }] } });
  s2.send({ seq: 2, snapshot: { containers: [container('other', '2', bad)], takenAtMs: Date.now() } });
  s2.send({ seq: 3, signatureVerdicts: { verdicts: [{ keySha256: keySha(bad), verdictJson: JSON.stringify({ status: 'rejected', repoDigest: bad, signers: [], message: `no signature by key prod-signer for ${bad}`, checkedAt: Date.now() }) },
    { keySha256: keySha(shared), verdictJson: JSON.stringify({ status: 'rejected', repoDigest: shared, signers: [], message: `no signature by key prod-signer for ${shared}`, checkedAt: Date.now() }) },
  ] } });
  await waitFor('both streams acknowledged their verdicts', async () => s1.acks.has(3) && s2.acks.has(3), 15_000);

  const dryRun = async (base: string) => {
    const r = await apiRequest<DryRun>(base, 'POST', '/v1/policies:dry-run', a.caPem, a.adminKey, POLICY, 'application/yaml');
    t.equal(r.status, 200, 'dry-run answered');
    return r.body.rules[0]!;
  };
  for (const [name, base] of [['A', a.apiBase], ['B', bApi]] as const) {
    const rule = await dryRun(base);
    t.same(rule.undecided.map((u) => u.containerName), [], `replica ${name}: nothing undecided (each verdict came through one replica only)`);
    t.same(rule.hits.map((h) => h.containerName).sort(), ['/other', '/shared'], `replica ${name}: the rejected digests are hits (one verified on another host), the verified one clean`);
    for (const h of rule.hits) t.match(h.message, /no signature by key prod-signer/);
  }

  // Revoked through A: its verdicts go for every replica (agent 2's stream is on B). The
  // container on A's host that only agent 2 had verified is undecided again.
  const r = await apiRequest(a.apiBase, 'POST', `/v1/agents/${two.agentId}/revoke`, a.caPem, a.adminKey);
  t.equal(r.status, 200);
  const after = await waitFor('B no longer uses the revoked agent\'s verdicts', async () => {
    const rule = await dryRun(bApi);
    return rule.undecided.length > 0 ? rule : undefined;
  }, 15_000, 250);
  t.same(after.undecided.map((u) => u.containerName), ['/shared'], 'verified only by the revoked host: undecided');
  t.same(after.hits, [], 'no hit on the revoked host\'s word; its own container left the fleet');
});
