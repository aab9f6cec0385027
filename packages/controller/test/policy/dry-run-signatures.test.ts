// The dry-run of image-signature rules (pure: dryRunPolicy with the verdicts agents reported).
// The stored verdicts themselves: test/signatures/reported-verdicts.test.ts. End to end, with a real
// registry, real cosign signatures and a real agent reporting: test/e2e/image-signature-dry-run.test.ts.
import t from 'tap';
import { policyFromJson, signatureParamsOfRule, signatureVerdictKey, type ContainerFacts__Output, type SignatureVerdict } from '@bulkhead/shared';
import { dryRunPolicy, neededVerdictKeys } from '../../src/policy/dry-run';

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

t.test('neededVerdictKeys names exactly the keys the dry-run looks up (what the controller fetches from the store first)', async (t) => {
  const asked = new Set<string>();
  dryRunPolicy(policy, fleet, { now: new Date(0), scans: new Map(), signatureVerdict: (k) => (asked.add(k), undefined) });
  const needed = neededVerdictKeys(policy, fleet, new Date(0));
  t.same([...needed].sort(), [...asked].sort());
  t.equal(needed.size, 3, 'in scope, not exempted, with a repo digest: good, bad, never');
  t.equal(neededVerdictKeys(policyFromJson({ apiVersion: 'bulkhead.dev/v1', kind: 'Policy', metadata: { name: 'q' }, spec: { rules: [] } }), fleet, new Date(0)).size, 0);
});
