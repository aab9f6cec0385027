import t from 'tap';
import { generateKeyPairSync } from 'node:crypto';
import { runCases, type CheckCase } from './run-cases';
import { signatureVerdictKey, signatureParamsKey, signedRepoDigest, signatureRequirement } from '../../src/policy/checks/signatures';
import { policyFromJson, PolicyValidationError } from '../../src/policy/parse';
import type { SignatureVerdict } from '../../src/policy/types';
import { facts as mkFacts, NOW, policyOf, rule } from './helpers';
import { evaluate } from '../../src/policy/evaluator';

const baseFacts = mkFacts({});

const D1 = `sha256:${'a'.repeat(64)}`;
const D2 = `sha256:${'b'.repeat(64)}`;
const REPO = '127.0.0.1:5000/shop/web';
const PEM = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ type: 'spki', format: 'pem' }).toString();
const check = { type: 'image-signature', keys: [{ name: 'prod-signer', pem: PEM }] };

function verdicts(params: object, repoDigest: string, v: Partial<SignatureVerdict>): Map<string, SignatureVerdict> {
  return new Map([[signatureVerdictKey(params, repoDigest), { status: 'verified', repoDigest, signers: [], message: '', checkedAt: 0, ...v }]]);
}

t.test('signedRepoDigest: the repo digest for the repository the ref names, never another one', async (t) => {
  t.equal(signedRepoDigest({ imageRef: `${REPO}:1`, imageDigest: `${REPO}@${D1}` }), `${REPO}@${D1}`);
  t.equal(signedRepoDigest({ imageRef: `${REPO}:1`, imageDigest: `127.0.0.1:5000/other@${D1}` }), '', 'a digest of another repository does not stand for this one');
  t.equal(signedRepoDigest({ imageRef: `${REPO}:1`, imageDigest: '' }), '', 'locally built: none');
  t.equal(signedRepoDigest({ imageRef: 'nginx:1.27', imageDigest: `nginx@${D1}` }), `nginx@${D1}`, 'docker hub short names normalised');
  t.equal(signedRepoDigest({ imageRef: 'docker.io/library/nginx:1.27', imageDigest: `nginx@${D1}` }), `nginx@${D1}`);
  t.equal(signedRepoDigest({ imageRef: `${REPO}@${D1}`, imageDigest: `${REPO}@${D1}` }), `${REPO}@${D1}`, 'pinned by digest');
  t.equal(signedRepoDigest({ imageRef: `${REPO}@${D2}`, imageDigest: `${REPO}@${D1}` }), '', 'pinned to another digest than recorded');
  t.equal(signedRepoDigest({ imageRef: D1, imageDigest: `${REPO}@${D2}` }), `${REPO}@${D2}`, 'by image id: the recorded repo digest');
  t.equal(signedRepoDigest({ imageRef: `${REPO}:1`, imageDigest: `${REPO}@sha256:zz` }), '', 'malformed digest');
  const several = { values: [`127.0.0.1:5000/other@${D2}`, `${REPO}@${D1}`] };
  t.equal(signedRepoDigest({ imageRef: `${REPO}:1`, imageDigest: `127.0.0.1:5000/other@${D2}`, repoDigests: several }), `${REPO}@${D1}`, 'the one for the named repository, wherever it is in the list');
  t.equal(signedRepoDigest({ imageRef: '127.0.0.1:5000/third:1', imageDigest: `127.0.0.1:5000/other@${D2}`, repoDigests: several }), '', 'a name none of them is for');
  t.equal(signedRepoDigest({ imageRef: D1, imageDigest: '', repoDigests: several }), `127.0.0.1:5000/other@${D2}`, 'by id: the first');
});

t.test('scope by image: where the image came from counts, not only the name it was run by', async (t) => {
  const scoped = (mode: string) => policyFromJson(policyOf({ ...rule({ type: 'image-signature', keys: [{ name: 'k', pem: PEM }] }), mode, scope: { images: [`${REPO.replace('/web', '')}/*`] } } as never));
  const unsigned = `127.0.0.1:5000/shop/unsigned@${D2}`;
  const run = (facts: object) => evaluate(scoped('enforce'), { container: { ...baseFacts, ...facts } as never }, { now: NOW, signatures: new Map() });
  t.equal(run({ imageRef: 'sha256:' + 'f'.repeat(64), imageDigest: unsigned, repoDigests: { values: [unsigned] } }).length, 1, 'run by image id: in scope through its repo digest');
  t.equal(run({ imageRef: 'f'.repeat(12), imageDigest: unsigned, repoDigests: { values: [unsigned] } }).length, 1, 'run by short id');
  t.equal(run({ imageRef: 'elsewhere.example/x:1', imageDigest: unsigned, repoDigests: { values: [unsigned] } }).length, 1, 'retagged under a name outside the scope');
  t.equal(run({ imageRef: 'elsewhere.example/x:1', imageDigest: `elsewhere.example/other@${D2}`, repoDigests: { values: [`elsewhere.example/other@${D2}`, unsigned] } }).length, 1, 'the in-scope origin is not the first repo digest');
  t.equal(run({ imageRef: 'elsewhere.example/x:1', imageDigest: `elsewhere.example/x@${D2}`, repoDigests: { values: [`elsewhere.example/x@${D2}`] } }).length, 0, 'neither name nor origin in scope: not judged');
  const exempted = policyFromJson(policyOf({ ...rule({ type: 'image-signature', keys: [{ name: 'k', pem: PEM }] }), exemptions: [{ who: 'a', why: 'b', match: { images: ['127.0.0.1:5000/shop/*'] } }] } as never));
  const f = evaluate(exempted, { container: { ...baseFacts, imageRef: 'elsewhere.example/x:1', imageDigest: unsigned, repoDigests: { values: [unsigned] } } as never }, { now: NOW, signatures: new Map() });
  t.equal(f.length, 1);
  t.notOk(f[0]?.exemptedBy, 'an exemption by image still matches the name only: it does not grow with where the image came from');
});

t.test('image-signature decisions from the verdicts the agent hands in', async (t) => {
  const facts = { imageRef: `${REPO}:1`, imageDigest: `${REPO}@${D1}` };
  const rd = `${REPO}@${D1}`;
  const cases: CheckCase[] = [
    { name: 'verified', check, facts, ctx: { signatures: verdicts(check, rd, { status: 'verified', signers: ['prod-signer'] }) }, broken: false },
    { name: 'unsigned', check, facts, ctx: { signatures: verdicts(check, rd, { status: 'unsigned', message: `no signature by key prod-signer for ${rd}` }) }, broken: true, detail: /no signature by key prod-signer for 127\.0\.0\.1:5000\/shop\/web@sha256:a{64}/ },
    { name: 'rejected', check, facts, ctx: { signatures: verdicts(check, rd, { status: 'rejected', message: 'bad signature' }) }, broken: true, detail: /bad signature/ },
    { name: 'unreachable, fails closed by default', check, facts, ctx: { signatures: verdicts(check, rd, { status: 'unreachable', message: 'registry 127.0.0.1:5000 unreachable: ECONNREFUSED' }) }, broken: true, detail: /could not verify .*ECONNREFUSED \(the rule fails closed\)/ },
    { name: 'unreachable, failClosed false', check: { ...check, failClosed: false }, facts, ctx: { signatures: verdicts(check, rd, { status: 'unreachable', message: 'down' }) }, broken: false },
    { name: 'a verdict for another digest does not count', check, facts: { ...facts, imageDigest: `${REPO}@${D2}` }, ctx: { signatures: verdicts(check, rd, { status: 'verified' }) }, broken: true, detail: /not verified in time/ },
    { name: 'a verdict for other params does not count', check, facts, ctx: { signatures: verdicts({ ...check, minSignatures: 2 }, rd, { status: 'verified' }) }, broken: true, detail: /not verified in time/ },
    { name: 'no verdict, failClosed false', check: { ...check, failClosed: false }, facts, ctx: { signatures: new Map() }, broken: false },
    { name: 'no repo digest: unsigned even without a verifier', check, facts: { imageRef: 'myapp:dev', imageDigest: '' }, broken: true, detail: /no repo digest for its repository.*unsigned/ },
    { name: 'retagged from another repository', check, facts: { imageRef: `${REPO}:1`, imageDigest: `127.0.0.1:5000/base@${D1}` }, broken: true, detail: /its repo digests: 127\.0\.0\.1:5000\/base@/ },
    { name: 'no verifier at all (controller dry-run) cannot decide', check, facts, broken: false },
  ];
  runCases(t, cases);
});

t.test('the verdict key: canonical over what verification depends on', async (t) => {
  const a = { keys: [{ name: 'k', pem: PEM }], annotations: { b: '2', a: '1' } };
  const b = { annotations: { a: '1', b: '2' }, keys: [{ pem: PEM, name: 'k' }], minSignatures: 1, failClosed: false };
  t.equal(signatureParamsKey(a), signatureParamsKey(b), 'order of annotations and fields, the default threshold and failClosed do not matter');
  t.not(signatureParamsKey(a), signatureParamsKey({ ...a, minSignatures: 2 }));
  t.not(signatureParamsKey(a), signatureParamsKey({ ...a, keys: [{ name: 'k2', pem: PEM }] }));
  t.not(signatureVerdictKey(a, `${REPO}@${D1}`), signatureVerdictKey(a, `${REPO}@${D2}`));
  const req = signatureRequirement({ keys: [{ name: 'f', file: '/k.pub' }, { name: 'i', pem: PEM }], identities: [{ issuer: 'https://iss', subjectGlob: '*@example.com' }], minSignatures: 2, annotations: { env: 'prod' } },
    { keyFiles: new Map([['/k.pub', 'FILE-PEM']]), trustedRoot: '{}' });
  t.same(req, { keys: [{ name: 'f', pem: 'FILE-PEM' }, { name: 'i', pem: PEM }], identities: [{ issuer: 'https://iss', subjectGlob: '*@example.com' }], trustedRoot: '{}', minSignatures: 2, annotations: { env: 'prod' } });
});

t.test('bad parameters are refused at policy load with the path', async (t) => {
  const load = (c: object) => policyFromJson(policyOf(rule({ type: 'image-signature', ...c })));
  const bad: [string, object, RegExp][] = [
    ['no signer', {}, /at least one of `keys` \/ `identities`/],
    ['pem and file', { keys: [{ name: 'k', pem: PEM, file: '/k' }] }, /exactly one of `pem`/],
    ['neither pem nor file', { keys: [{ name: 'k' }] }, /exactly one of `pem`/],
    ['not a PEM', { keys: [{ name: 'k', pem: 'hello' }] }, /keys\[0\]\.pem.*not a PEM public key/],
    ['relative key file', { keys: [{ name: 'k', file: 'keys/k.pub' }] }, /absolute path/],
    ['duplicate names', { keys: [{ name: 'k', pem: PEM }, { name: 'k', file: '/k' }] }, /used twice/],
    ['identity without root', { identities: [{ issuer: 'https://i', subject: 'a@b' }] }, /trusted root file/],
    ['identity without subject', { identities: [{ issuer: 'https://i' }], trustedRootFile: '/r.json' }, /exactly one of `subject` or `subjectGlob`/],
    ['threshold over signers', { keys: [{ name: 'k', pem: PEM }], minSignatures: 2 }, /asks for 2 distinct signers but the rule trusts only 1/],
    ['unknown field', { keys: [{ name: 'k', pem: PEM, usage: 'x' }] }, /usage/],
  ];
  for (const [name, c, re] of bad) {
    try {
      load(c);
      t.fail(`${name}: accepted`);
    } catch (e) {
      t.type(e, PolicyValidationError, name);
      t.match(JSON.stringify((e as PolicyValidationError).errors), re, name);
    }
  }
  t.doesNotThrow(() => load({ keys: [{ name: 'a', pem: PEM }, { name: 'b', file: '/etc/keys/b.pub' }], identities: [{ issuer: 'https://i', subjectGlob: '*@example.com' }], trustedRootFile: '/etc/root.json', minSignatures: 3, annotations: { env: 'prod' } }));
});
