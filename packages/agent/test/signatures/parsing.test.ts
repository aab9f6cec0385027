// Image signatures, the parts that need no registry: reference normalisation, Docker
// config.json credentials, WWW-Authenticate challenges, cosign's per-key-type signature
// algorithms (real keys, real signatures made by node:crypto), payload and statement checks,
// the requirement hash, and verdicts decided before any request.
import t from 'tap';
import { constants, generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { chmod, mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { SignatureRequirement } from '@bulkhead/shared';
import {
  loadDockerAuthFile, normalizeName, parseChallenge, parseDockerAuthConfig, parseRepoDigest,
} from '../../src/signatures/registry-client';
import { checkSimpleSigningPayload, prepareKeys, verifyWithKey } from '../../src/signatures/cosign';
import { checkStatement, identityMatches, verifyBundle, verifyCosignKeyless } from '../../src/signatures/bundles';
import { createSignatureVerifier, SignatureVerifier, signatureRequirementKey } from '../../src/signatures/verifier';

const D = `sha256:${'ab'.repeat(32)}`;
const D2 = `sha256:${'cd'.repeat(32)}`;

t.test('repo digests are normalised the way Docker does', async (t) => {
  t.same(parseRepoDigest(`127.0.0.1:5000/shop/web@${D}`), { registry: '127.0.0.1:5000', repository: 'shop/web', digest: D });
  t.same(parseRepoDigest(`nginx@${D}`), { registry: 'docker.io', repository: 'library/nginx', digest: D });
  t.same(parseRepoDigest(`docker.io/library/nginx@${D}`), { registry: 'docker.io', repository: 'library/nginx', digest: D });
  t.same(parseRepoDigest(`index.docker.io/me/app@${D}`), { registry: 'docker.io', repository: 'me/app', digest: D });
  t.same(parseRepoDigest(`localhost/app@${D}`), { registry: 'localhost', repository: 'app', digest: D });
  t.same(normalizeName('127.0.0.1:5000/shop/web:1'), { registry: '127.0.0.1:5000', repository: 'shop/web' }, 'a tag is dropped');
  t.same(normalizeName('busybox:latest'), { registry: 'docker.io', repository: 'library/busybox' });
  t.throws(() => parseRepoDigest('shop/web:1'), { message: /not a repo digest/ });
  t.throws(() => parseRepoDigest('shop/web@sha256:abc'), { message: /no sha256 digest/ });
  t.throws(() => parseRepoDigest(`Shop/../web@${D}`), { message: /not a valid repository/ });
});

t.test('Docker config.json credentials', async (t) => {
  const m = parseDockerAuthConfig(JSON.stringify({
    auths: {
      '127.0.0.1:5000': { auth: Buffer.from('alice:s3cr:et').toString('base64') },
      'https://registry.example.com/v2/': { username: 'bob', password: 'pw' },
      'https://index.docker.io/v1/': { identitytoken: 'tok' },
      'empty.example.com': {},
      'bad.example.com': 'x',
    },
    credsStore: 'desktop',
  }));
  t.same(m.get('127.0.0.1:5000'), { username: 'alice', password: 's3cr:et' }, 'the password may hold a colon');
  t.same(m.get('registry.example.com'), { username: 'bob', password: 'pw' }, 'scheme and path dropped');
  t.same(m.get('docker.io'), { identityToken: 'tok' }, "Docker Hub's key");
  t.notOk(m.has('empty.example.com'));
  t.same(parseDockerAuthConfig('{}').size, 0);
  t.throws(() => parseDockerAuthConfig('{nope'), { message: /not JSON/ });

  const dir = await mkdtemp(join(tmpdir(), 'bk-auth-'));
  t.teardown(() => import('node:fs/promises').then((f) => f.rm(dir, { recursive: true, force: true })));
  const file = join(dir, 'config.json');
  await writeFile(file, JSON.stringify({ auths: { 'r:1': { username: 'u', password: 'p' } } }));
  await chmod(file, 0o644);
  await t.rejects(loadDockerAuthFile(file), { message: /readable by every user.*chmod 600/ });
  await t.rejects(createSignatureVerifier({ registryCertsDir: '/nonexistent', registryAuthFile: file, timeoutMs: 1000, cacheTtlMs: 1000 }),
    { code: 'BK_ERR_CONFIG_INVALID', message: /--registry-auth-file: .*readable by every user/ });
  await chmod(file, 0o600);
  t.same((await loadDockerAuthFile(file)).get('r:1'), { username: 'u', password: 'p' });
  const v = await createSignatureVerifier({ registryCertsDir: '/nonexistent', registryAuthFile: file, timeoutMs: 1000, cacheTtlMs: 1000 });
  t.type(v, SignatureVerifier);
  v.close();
});

t.test('WWW-Authenticate challenges', async (t) => {
  t.same(parseChallenge('Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:shop/web:pull"'),
    { realm: 'https://auth.example.com/token', service: 'registry.example.com', scope: 'repository:shop/web:pull' });
  t.same(parseChallenge('Basic realm="Registry Realm"'), { realm: 'Registry Realm' });
  t.same(parseChallenge('Bearer realm=https://a/t, service=x'), { realm: 'https://a/t', service: 'x' });
});

function keyPem(k: KeyObject): string {
  return k.export({ type: 'spki', format: 'pem' }).toString();
}

t.test('signature algorithms per key type, as cosign/sigstore use them', async (t) => {
  const data = Buffer.from('{"critical":{}}');
  const p256 = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const p384 = generateKeyPairSync('ec', { namedCurve: 'secp384r1' });
  const ed = generateKeyPairSync('ed25519');
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
  t.ok(verifyWithKey(p256.publicKey, data, sign('sha256', data, p256.privateKey)), 'ECDSA P-256 / SHA-256');
  t.ok(verifyWithKey(p384.publicKey, data, sign('sha384', data, p384.privateKey)), 'ECDSA P-384 / SHA-384');
  t.ok(verifyWithKey(p384.publicKey, data, sign('sha256', data, p384.privateKey)), 'ECDSA P-384 / SHA-256 (cosign verify default hash)');
  t.ok(verifyWithKey(ed.publicKey, data, sign(null, data, ed.privateKey)), 'Ed25519');
  t.ok(verifyWithKey(rsa.publicKey, data, sign('sha256', data, rsa.privateKey)), 'RSA PKCS#1 v1.5 / SHA-256');
  t.ok(verifyWithKey(rsa.publicKey, data, sign('sha256', data, { key: rsa.privateKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 })), 'RSA-PSS / SHA-256');
  t.notOk(verifyWithKey(p256.publicKey, data, sign('sha256', Buffer.from('other'), p256.privateKey)), 'other data');
  t.notOk(verifyWithKey(p384.publicKey, data, sign('sha256', data, p256.privateKey)), 'other key');
  t.notOk(verifyWithKey(p256.publicKey, data, Buffer.from('garbage')), 'garbage signature');
  t.notOk(verifyWithKey(ed.publicKey, data, Buffer.alloc(0)), 'empty signature');
  t.notOk(verifyWithKey(generateKeyPairSync('x25519').publicKey, data, Buffer.alloc(64)), 'a key type that cannot sign');
  const prepared = prepareKeys([{ name: 'good', pem: keyPem(p256.publicKey) }, { name: 'broken', pem: '-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n' }]);
  t.same(prepared.keys.map((k) => k.name), ['good']);
  t.same(prepared.errors, ['trusted key broken is not a PEM public key']);
});

t.test('simple-signing payload checks', async (t) => {
  const ref = parseRepoDigest(`127.0.0.1:5000/shop/web@${D}`);
  const payload = (o: Record<string, unknown> = {}, crit: Record<string, unknown> = {}): Buffer => Buffer.from(JSON.stringify({
    critical: { identity: { 'docker-reference': '127.0.0.1:5000/shop/web' }, image: { 'docker-manifest-digest': D }, type: 'cosign container image signature', ...crit },
    optional: o,
  }));
  t.equal(checkSimpleSigningPayload(payload(), ref, {}), undefined, 'good');
  t.equal(checkSimpleSigningPayload(payload({}, { identity: { 'docker-reference': '127.0.0.1:5000/shop/web:1' } }), ref, {}), undefined, 'skopeo names the tag: same repository');
  t.equal(checkSimpleSigningPayload(payload({ env: 'prod' }), ref, { env: 'prod' }), undefined, 'annotation present');
  t.match(checkSimpleSigningPayload(payload(), ref, { env: 'prod' }), /annotation env is missing/);
  t.match(checkSimpleSigningPayload(payload({ env: 'dev' }), ref, { env: 'prod' }), /annotation env is "dev", "prod" required/);
  t.match(checkSimpleSigningPayload(payload({}, { image: { 'docker-manifest-digest': D2 } }), ref, {}), /another digest/);
  t.match(checkSimpleSigningPayload(payload({}, { identity: { 'docker-reference': '127.0.0.1:5000/shop/api' } }), ref, {}), /another repository \(127\.0\.0\.1:5000\/shop\/api\)/);
  t.match(checkSimpleSigningPayload(payload({}, { identity: { 'docker-reference': 'shop/web' } }), ref, {}), /another repository \(docker\.io\/shop\/web\)/);
  t.match(checkSimpleSigningPayload(payload({}, { identity: {} }), ref, {}), /no docker-reference/);
  t.match(checkSimpleSigningPayload(payload({}, { identity: { 'docker-reference': 'UPPER/x' } }), ref, {}), /not a reference/);
  t.match(checkSimpleSigningPayload(payload({}, { type: 'something else' }), ref, {}), /payload type/);
  t.match(checkSimpleSigningPayload(Buffer.from('{"critical":'), ref, {}), /not JSON/);
  t.match(checkSimpleSigningPayload(Buffer.from('[]'), ref, {}), /no "critical"/);
  t.match(checkSimpleSigningPayload(Buffer.from('null'), ref, {}), /no "critical"/);
  const hub = parseRepoDigest(`nginx@${D}`);
  t.equal(checkSimpleSigningPayload(payload({}, { identity: { 'docker-reference': 'docker.io/library/nginx' } }), hub, {}), undefined, 'docker.io/library normalised');
  t.equal(checkSimpleSigningPayload(payload({}, { identity: { 'docker-reference': 'index.docker.io/library/nginx' } }), hub, {}), undefined);
});

t.test('in-toto statement checks (bundles)', async (t) => {
  const ref = parseRepoDigest(`127.0.0.1:5000/shop/web@${D}`);
  const st = (o: Record<string, unknown> = {}): Buffer => Buffer.from(JSON.stringify({
    _type: 'https://in-toto.io/Statement/v1',
    subject: [{ name: '127.0.0.1:5000/shop/web', digest: { sha256: D.slice(7) }, annotations: { env: 'prod' } }],
    predicateType: 'https://sigstore.dev/cosign/sign/v1', predicate: {}, ...o,
  }));
  t.equal(checkStatement(st(), ref, {}), undefined);
  t.equal(checkStatement(st(), ref, { env: 'prod' }), undefined);
  t.match(checkStatement(st(), ref, { team: 'a' }), /annotation team is missing/);
  t.match(checkStatement(st({ predicateType: 'https://slsa.dev/provenance/v1' }), ref, {}), /not an image signature/);
  t.match(checkStatement(st({ subject: [{ digest: { sha256: D2.slice(7) } }] }), ref, {}), /another digest/);
  t.match(checkStatement(st({ subject: 'x' }), ref, {}), /another digest/);
  t.match(checkStatement(Buffer.from('nope'), ref, {}), /not JSON/);
  t.match(checkStatement(Buffer.from('null'), ref, {}), /not an object/);
  t.ok(identityMatches({ issuer: 'https://idp', subject: 'a@b' }, 'https://idp', 'a@b'));
  t.notOk(identityMatches({ issuer: 'https://idp', subject: 'a@b' }, 'https://other', 'a@b'));
  t.ok(identityMatches({ issuer: 'https://idp', subjectGlob: '*@example.com' }, 'https://idp', 'ci@example.com'));
  t.notOk(identityMatches({ issuer: 'https://idp', subjectGlob: '*@example.com' }, 'https://idp', 'ci@example.com.evil'), 'anchored');
  t.notOk(identityMatches({ issuer: 'https://idp', subjectGlob: '*@example.com' }, 'https://other', 'ci@example.com'), 'issuer must match');
  const slow = 'a'.repeat(5000);
  const t0 = performance.now();
  t.notOk(identityMatches({ issuer: 'https://idp', subjectGlob: '*a*a*a*a*a*a*a*a*a*b' }, 'https://idp', slow), 'a pathological glob does not match');
  t.ok(performance.now() - t0 < 1000, 'and does not backtrack');
  t.notOk(identityMatches({ issuer: 'https://idp' }, 'https://idp', 'x'), 'neither subject nor regexp');
});

t.test('garbage bundles are reasons, not exceptions', async (t) => {
  const ref = parseRepoDigest(`127.0.0.1:5000/shop/web@${D}`);
  const req: SignatureRequirement = { keys: [], identities: [], minSignatures: 1, annotations: {} };
  t.match(verifyBundle(Buffer.from('{'), ref, [], req), /not a valid Sigstore bundle/);
  t.match(verifyBundle(Buffer.from('{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json"}'), ref, [], req), /not a valid Sigstore bundle/);
  t.match(verifyBundle(Buffer.from(JSON.stringify({
    mediaType: 'application/vnd.dev.sigstore.bundle.v0.3+json',
    verificationMaterial: { publicKey: { hint: 'x' }, tlogEntries: [], timestampVerificationData: { rfc3161Timestamps: [] } },
    messageSignature: { messageDigest: { algorithm: 'SHA2_256', digest: 'AAAA' }, signature: 'AAAA' },
  })), ref, [], req), /plain message signature/);
});

t.test('the requirement hash is stable and sensitive', async (t) => {
  const a: SignatureRequirement = { keys: [{ name: 'k1', pem: 'P1' }, { name: 'k2', pem: 'P2' }], identities: [{ issuer: 'i', subject: 's' }], minSignatures: 1, annotations: { a: '1', b: '2' } };
  const b: SignatureRequirement = { keys: [{ name: 'k2', pem: 'P2\n' }, { name: 'k1', pem: 'P1' }], identities: [{ issuer: 'i', subject: 's' }], minSignatures: 1, annotations: { b: '2', a: '1' } };
  t.equal(signatureRequirementKey(a), signatureRequirementKey(b), 'order and PEM whitespace do not matter');
  t.match(signatureRequirementKey(a), /^[a-f0-9]{32}$/);
  t.not(signatureRequirementKey(a), signatureRequirementKey({ ...a, minSignatures: 2 }));
  t.not(signatureRequirementKey(a), signatureRequirementKey({ ...a, annotations: { a: '1' } }));
  t.not(signatureRequirementKey(a), signatureRequirementKey({ ...a, keys: [{ name: 'k1', pem: 'P3' }, { name: 'k2', pem: 'P2' }] }));
  t.not(signatureRequirementKey(a), signatureRequirementKey({ ...a, trustedRoot: '{}' }));
  t.not(signatureRequirementKey(a), signatureRequirementKey({ ...a, identities: [{ issuer: 'i', subjectGlob: 's' }] }));
});

t.test('verdicts decided without a request', async (t) => {
  let requests = 0;
  const v = new SignatureVerifier({ onRequest: () => requests++ });
  t.teardown(() => v.close());
  const req: SignatureRequirement = { keys: [{ name: 'prod-signer', pem: keyPem(generateKeyPairSync('ed25519').publicKey) }], identities: [], minSignatures: 1, annotations: {} };
  const local = await v.verify('', req);
  t.equal(local.status, 'unsigned');
  t.match(local.message, /no repo digest/);
  t.equal(local.repoDigest, '');
  const bad = await v.verify('shop/web:1', req);
  t.equal(bad.status, 'rejected');
  t.match(bad.message, /not a repo digest/);
  t.equal(requests, 0);
  t.equal(v.peek('shop/web:1', req)?.status, 'rejected', 'cached');
  v.clear();
  t.equal(v.peek('shop/web:1', req), undefined);
  const broken = await v.verify(`r.example.com/x@${D}`, { keys: [{ name: 'typo', pem: 'not a key' }], identities: [], minSignatures: 1, annotations: {} });
  t.equal(broken.status, 'rejected');
  t.equal(broken.message, `no usable trusted signer for r.example.com/x@${D}: trusted key typo is not a PEM public key`);
  const none = await v.verify(`r.example.com/x@${D}`, { keys: [], identities: [], minSignatures: 1, annotations: {} });
  t.match(none.message, /no keys or identities configured/);
  t.equal(requests, 0, 'the registry is not asked when nothing could verify');
  t.equal(v.peek(`r.example.com/x@${D}`, null as unknown as SignatureRequirement), undefined, 'peek never throws');
  const weird = await v.verify(`r.example.com/x@${D}`, null as unknown as SignatureRequirement);
  t.equal(weird.status, 'rejected', 'a broken requirement is a verdict, not an exception');
});

t.test('bundles: trusted root handling and keyless refusals (negative paths only)', async (t) => {
  // A DSSE bundle signed with a real P-256 key, built here the way Sigstore bundles are
  // (DSSE PAE over the in-toto statement), then variants of its verification material.
  const { execFileSync } = await import('node:child_process');
  const ref = parseRepoDigest(`127.0.0.1:5000/shop/web@${D}`);
  const kp = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const statement = Buffer.from(JSON.stringify({ _type: 'https://in-toto.io/Statement/v0.1', predicateType: 'https://sigstore.dev/cosign/sign/v1', subject: [{ name: '127.0.0.1:5000/shop/web', digest: { sha256: D.slice(7) } }], predicate: {} }));
  const type = 'application/vnd.in-toto+json';
  const pae = Buffer.concat([Buffer.from(`DSSEv1 ${type.length} ${type} ${statement.length} `), statement]);
  const sig = sign('sha256', pae, kp.privateKey);
  const bundle = (material: Record<string, unknown>): Buffer => Buffer.from(JSON.stringify({
    mediaType: 'application/vnd.dev.sigstore.bundle.v0.3+json',
    verificationMaterial: { ...material, tlogEntries: [], timestampVerificationData: { rfc3161Timestamps: [] } },
    dsseEnvelope: { payload: statement.toString('base64'), payloadType: type, signatures: [{ sig: sig.toString('base64'), keyid: '' }] },
  }));
  const keys = prepareKeys([{ name: 'k', pem: keyPem(kp.publicKey) }]).keys;
  const req: SignatureRequirement = { keys: [], identities: [], minSignatures: 1, annotations: {} };
  const emptyRoot = JSON.stringify({ mediaType: 'application/vnd.dev.sigstore.trustedroot+json;version=0.1', tlogs: [], certificateAuthorities: [], ctlogs: [], timestampAuthorities: [] });
  const byKey = bundle({ publicKey: { hint: 'not-a-real-hint' } });
  t.same(verifyBundle(byKey, ref, keys, req), { signer: 'k' }, 'by key, whatever the hint');
  t.same(verifyBundle(byKey, ref, keys, { ...req, trustedRoot: emptyRoot }), { signer: 'k' }, 'by key with a (empty) trusted root');
  t.match(verifyBundle(byKey, ref, keys, { ...req, trustedRoot: '{"nope": ' }), /trusted root is not a Sigstore trusted_root\.json/);
  t.match(verifyBundle(byKey, ref, prepareKeys([{ name: 'other', pem: keyPem(generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).publicKey) }]).keys, req), /bad signature or signature by an unknown key/);
  t.match(verifyBundle(byKey, parseRepoDigest(`127.0.0.1:5000/shop/api@${D}`), keys, req), /bundle by k: signature names another repository/);

  // A certificate (keyless material) from a throw-away openssl CA: refused without a root or
  // identities, and refused against a root that does not hold its CA.
  const dir = await mkdtemp(join(tmpdir(), 'bk-keyless-'));
  t.teardown(() => import('node:fs/promises').then((f) => f.rm(dir, { recursive: true, force: true })));
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', join(dir, 'k.pem'), '-out', join(dir, 'c.pem'), '-days', '1', '-subj', '/CN=x', '-addext', 'subjectAltName=email:ci@example.com'], { stdio: 'ignore' });
  const der = execFileSync('openssl', ['x509', '-in', join(dir, 'c.pem'), '-outform', 'DER']);
  const keyless = bundle({ certificate: { rawBytes: der.toString('base64') } });
  t.match(verifyBundle(keyless, ref, keys, req), /keyless bundle, but no trusted root is configured/);
  t.match(verifyBundle(keyless, ref, keys, { ...req, trustedRoot: emptyRoot }), /no trusted identities are configured/);
  t.match(verifyBundle(keyless, ref, keys, { ...req, trustedRoot: emptyRoot, identities: [{ issuer: 'https://idp', subject: 'ci@example.com' }] }),
    /keyless bundle does not verify against the trusted root/);
});

t.test('keyless .sig layers: malformed annotations are reasons, never exceptions', async (t) => {
  // The positive paths (real cosign 2.5 keyless signatures) are in keyless.test.ts.
  const emptyRoot = JSON.stringify({ mediaType: 'application/vnd.dev.sigstore.trustedroot+json;version=0.1', tlogs: [], certificateAuthorities: [], ctlogs: [], timestampAuthorities: [] });
  const req: SignatureRequirement = { keys: [], identities: [{ issuer: 'https://idp', subject: 'ci@example.com' }], trustedRoot: emptyRoot, minSignatures: 1, annotations: {} };
  const payload = Buffer.from('{"critical":{}}');
  const sig = Buffer.from('MEUCIQ==', 'base64');
  const cert = '-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUJ5\n-----END CERTIFICATE-----\n';
  t.match(verifyCosignKeyless(payload, sig, { 'dev.sigstore.cosign/certificate': cert }, { ...req, trustedRoot: undefined as unknown as string }), /no trusted root is configured/);
  t.match(verifyCosignKeyless(payload, sig, { 'dev.sigstore.cosign/certificate': cert }, { ...req, trustedRoot: '{' }), /trusted root is not a Sigstore trusted_root\.json/);
  t.match(verifyCosignKeyless(payload, sig, { 'dev.sigstore.cosign/certificate': 'not a pem' }, req), /certificate annotation holds no certificate/);
  t.match(verifyCosignKeyless(payload, sig, { 'dev.sigstore.cosign/certificate': cert, 'dev.sigstore.cosign/bundle': '{"Payload":' }, req), /keyless signature with malformed annotations/);
  t.match(verifyCosignKeyless(payload, sig, { 'dev.sigstore.cosign/certificate': cert, 'dev.sigstore.cosign/rfc3161timestamp': 'x' }, req), /keyless signature with malformed annotations/);
  t.match(verifyCosignKeyless(payload, sig, { 'dev.sigstore.cosign/certificate': cert }, { ...req, identities: [] }), /keyless signature, but no trusted identities are configured/);
  t.match(verifyCosignKeyless(payload, sig, { 'dev.sigstore.cosign/certificate': cert }, req), /keyless signature (does not verify against the trusted root|with malformed annotations)/);
});
