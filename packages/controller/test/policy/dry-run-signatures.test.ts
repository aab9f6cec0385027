// The dry-run of image-signature rules (pure: dryRunPolicy with the verdicts agents reported)
// and the controller's book of reported verdicts (ReportedVerdicts). End to end, with a real
// registry, real cosign signatures and a real agent reporting: test/e2e/image-signature-dry-run.test.ts.
import t from 'tap';
import { createHash } from 'node:crypto';
import { createLogger, policyFromJson, signatureParamsOfRule, signatureVerdictKey, type ContainerFacts__Output, type SignatureVerdict } from '@bulkhead/shared';
import { dryRunPolicy } from '../../src/policy/dry-run';
import { ReportedVerdicts } from '../../src/signatures/reported-verdicts';

const REPO = 'registry.example.com/shop/web';
const D = (c: string) => `sha256:${c.repeat(64)}`;
const PEM = '-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----\n';

function facts(name: string, ref: string, repoDigest: string): ContainerFacts__Output {
  return {
    id: name.padEnd(64, '0'), name: `/${name}`, imageRef: ref, imageDigest: repoDigest, imageId: D('9'), state: 'running', labels: {},
    repoDigests: { values: repoDigest ? [repoDigest] : [] },
  } as unknown as ContainerFacts__Output;
}

const policy = policyFromJson({
  apiVersion: 'bulkhead.dev/v1', kind: 'Policy', metadata: { name: 'p' },
  spec: {
    rules: [{
      id: 'images.signed', description: 'd', severity: 'high', mode: 'enforce', action: { type: 'alert' },
      scope: { images: ['registry.example.com/shop/*'] },
      exemptions: [{ who: 'alice', why: 'legacy', match: { names: ['legacy'] } }],
      check: { type: 'image-signature', keys: [{ name: 'prod-signer', pem: PEM }] },
    }],
  },
});
const params = signatureParamsOfRule(policy.spec.rules[0]!);

const fleet = [{
  agentId: 'agt_a', hostname: 'a', status: 'online', host: undefined,
  containers: [
    facts('good', `${REPO}:1`, `${REPO}@${D('a')}`),
    facts('bad', `${REPO}:2`, `${REPO}@${D('b')}`),
    facts('never', `${REPO}:3`, `${REPO}@${D('c')}`),
    facts('local', `${REPO}:4`, ''),
    facts('legacy', `${REPO}:5`, `${REPO}@${D('e')}`),
    facts('tools', 'registry.example.com/tools/x:1', `registry.example.com/tools/x@${D('f')}`),
  ],
}];

function verdict(status: SignatureVerdict['status'], digest: string, message: string, checkedAt = 1000): SignatureVerdict {
  return { status, repoDigest: `${REPO}@${digest}`, signers: status === 'verified' ? ['prod-signer'] : [], message, checkedAt };
}

t.test('reported verdicts decide; what no host verified is undecided, never clean', async (t) => {
  const reported = new Map<string, SignatureVerdict>([
    [signatureVerdictKey(params, `${REPO}@${D('a')}`), verdict('verified', D('a'), 'signed by prod-signer')],
    [signatureVerdictKey(params, `${REPO}@${D('b')}`), verdict('rejected', D('b'), `no signature by key prod-signer for ${REPO}@${D('b')}`)],
  ]);
  const r = dryRunPolicy(policy, fleet, { now: new Date(0), scans: new Map(), signatureVerdict: (k) => reported.get(k) });
  const rule = r.rules[0]!;
  t.same(rule.hits.map((h) => [h.containerName, h.exemptedBy?.who ?? null]).sort(), [['/bad', null], ['/local', null]], 'rejected and locally built (unsigned) are hits; verified is not');
  t.match(rule.hits.find((h) => h.containerName === '/bad')!.message, /no signature by key prod-signer/);
  t.same(rule.undecided.map((u) => [u.containerName, u.repoDigest]), [['/never', `${REPO}@${D('c')}`]], 'not verified by any host; exempted and out of scope are not listed');
  t.match(rule.undecided[0]!.reason, /^not verified yet on any host/);
  t.equal(r.totals.undecided, 1);

  const none = dryRunPolicy(policy, fleet, { now: new Date(0), scans: new Map() });
  t.same(none.rules[0]!.undecided.map((u) => u.containerName).sort(), ['/bad', '/good', '/never'], 'no verdicts at all: every digest in scope undecided');
  t.same(none.rules[0]!.hits.map((h) => h.containerName), ['/local'], 'only the image that cannot carry a signature is a hit');
});

t.test('ReportedVerdicts: the own host first, else the newest; malformed entries skipped; a revoked host forgotten', async (t) => {
  const lines: string[] = [];
  const book = new ReportedVerdicts(createLogger({ name: 't', level: 'warn', destination: { write: (s: string) => void lines.push(s) } }));
  const key = createHash('sha256').update('k').digest('hex');
  const json = (v: SignatureVerdict) => JSON.stringify(v);
  t.equal(book.record('agt_a', [{ keySha256: key, verdictJson: json(verdict('rejected', D('a'), 'old', 1000)) }]), 1);
  t.equal(book.record('agt_b', [
    { keySha256: key, verdictJson: json(verdict('verified', D('a'), 'new', 2000)) },
    { keySha256: 'not-a-hash', verdictJson: json(verdict('verified', D('a'), 'x')) },
    { keySha256: key.replace(/^./, '0'), verdictJson: '{"status":"unreachable","repoDigest":"","signers":[],"message":"","checkedAt":1}' },
    { keySha256: key.replace(/^./, '1'), verdictJson: '{' },
  ]), 1, 'one good entry of four');
  t.match(lines.join(''), /"skipped":3/);
  t.equal(book.lookup(key)?.message, 'new', 'the newest of any host');
  t.equal(book.lookup(key, 'agt_a')?.message, 'old', 'the container\'s own host first');
  t.equal(book.lookup(key.replace(/^./, '0')), undefined, '"could not ask" is no verdict');
  book.forget('agt_b');
  t.equal(book.lookup(key)?.message, 'old');
});
