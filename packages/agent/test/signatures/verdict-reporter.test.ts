// The verdicts the agent reports for the controller's dry-run: the real SignatureGate (with a
// stand-in verifier for the registry side; the real one against a real registry and a real
// controller: test/e2e/image-signature-dry-run.test.ts) and the VerdictReporter. Decisive
// verdicts are reported once, keyed by sha256 of the verdict key; "could not ask" never; a send
// while disconnected keeps them; a new stream re-sends everything.
import t from 'tap';
import { createHash } from 'node:crypto';
import { createLogger, parsePolicy, signatureParamsOfRule, signatureVerdictKey, type ContainerFacts__Output, type SignatureVerdict } from '@bulkhead/shared';
import { SignatureGate, type VerifierLike } from '../../src/signatures/signature-gate';
import { VerdictReporter } from '../../src/signatures/verdict-reporter';

const logger = createLogger({ name: 't', level: 'silent' });
const REG = '127.0.0.1:5999';
const D = (c: string) => `sha256:${c.repeat(64)}`;
const PEM = '-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----\n';

const policy = parsePolicy(`
apiVersion: bulkhead.dev/v1
kind: Policy
metadata: { name: sig }
spec:
  rules:
    - id: images.signed
      description: signed
      severity: critical
      mode: enforce
      action: { type: stop }
      check:
        type: image-signature
        keys: [{ name: prod-signer, pem: ${JSON.stringify(PEM)} }]
`, 'sig.yaml');

function facts(digest: string): ContainerFacts__Output {
  return { id: digest.slice(7, 19), name: '/x', imageRef: `${REG}/shop/web:1`, imageDigest: `${REG}/shop/web@${digest}`, imageId: D('9'), labels: {}, repoDigests: { values: [`${REG}/shop/web@${digest}`] } } as unknown as ContainerFacts__Output;
}

t.test('decisive verdicts are reported once, by key hash; unreachable never; kept while disconnected; all again on a new stream', async (t) => {
  const status: Record<string, SignatureVerdict['status']> = { [D('a')]: 'verified', [D('b')]: 'rejected', [D('c')]: 'unreachable' };
  const verifier: VerifierLike = {
    peek: () => undefined,
    verify: async (repoDigest) => ({ status: status[repoDigest.slice(repoDigest.indexOf('@') + 1)]!, repoDigest, signers: [], message: 'm', checkedAt: 1 }),
  };
  const gate = new SignatureGate({ verifier, logger });
  for (const d of [D('a'), D('b'), D('c')]) await gate.resolve(policy, facts(d), undefined, new Date(), undefined, 'admission');

  const sent: Array<Array<{ keySha256: string; verdictJson: string }>> = [];
  let connected = false;
  let onConnected: (() => void) | undefined;
  const reporter = VerdictReporter.start({
    gate, logger, intervalMs: 3_600_000, maxPerMessage: 1,
    send: (r) => (connected ? (sent.push(r.verdicts), true) : false),
    onConnected: (l) => void (onConnected = l),
  });
  t.teardown(() => reporter.stop());

  reporter.flush();
  t.same(sent, [], 'not connected: nothing sent');
  connected = true;
  reporter.flush();
  reporter.flush();
  reporter.flush();
  t.equal(sent.length, 2, 'one bounded message per flush; the unreachable verdict is never reported');
  const params = signatureParamsOfRule(policy.spec.rules[0]!);
  const hash = (d: string) => createHash('sha256').update(signatureVerdictKey(params, `${REG}/shop/web@${d}`)).digest('hex');
  t.same(sent.map((m) => m[0]!.keySha256).sort(), [hash(D('a')), hash(D('b'))].sort(), 'keyed as the controller computes from the rule');
  const a = sent.map((m) => JSON.parse(m[0]!.verdictJson) as SignatureVerdict).find((v) => v.status === 'verified');
  t.equal(a?.repoDigest, `${REG}/shop/web@${D('a')}`, 'the verdict as decided');
  onConnected!();
  reporter.flush();
  reporter.flush();
  t.equal(sent.length, 4, 'a new stream: everything again');
});
