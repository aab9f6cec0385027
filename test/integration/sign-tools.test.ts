// The image-signature test infrastructure itself (test/helpers/registry.ts,
// scripts/registry.sh, scripts/sign-tools.sh), proven against the real tools: a real
// registry over HTTPS, images pushed by skopeo, signed by real cosign and real skopeo,
// judged by cosign's and skopeo's own verification (and an independent ECDSA check), and
// pulled into private dockerd 20.10 and 26.1 engines for real RepoDigests.
import { createPublicKey, verify as verifySignature } from 'node:crypto';
import { existsSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import t from 'tap';
import { LABEL_ARGS, runDocker, startPrivateEngine, useEngine, type EngineVersion } from '../helpers/engine';
import {
  buildOciImage,
  cosignAttest,
  cosignSign,
  cosignSignResult,
  cosignVerify,
  cosignVerifyAttestation,
  generateCosignKeyPair,
  pullInto,
  pushImage,
  pushSignedImage,
  readAttachedSignatures,
  readReferrers,
  referrersTag,
  signatureTag,
  skopeoCopySigned,
  skopeoVerify,
  startRegistry,
  type AttachedSignature,
  type CosignKeyPair,
} from '../helpers/registry';

/** Independent check: the ECDSA P-256 signature over the exact payload bytes, with Node's crypto. */
function signatureValid(sig: AttachedSignature, key: CosignKeyPair): boolean {
  return verifySignature('sha256', sig.payload, createPublicKey(key.publicKeyPem), Buffer.from(sig.signature, 'base64'));
}

/** A TLS handshake that does NOT trust the test CA must fail (the registry really is HTTPS with our CA). */
function untrustedHandshake(addr: string): Promise<string> {
  const [host, port] = addr.split(':');
  return new Promise((resolvePromise) => {
    const req = httpsRequest({ host, port: Number(port), path: '/v2/', timeout: 5000 }, (res) => {
      res.resume();
      resolvePromise(`HTTP ${res.statusCode}`);
    });
    req.on('error', (e: NodeJS.ErrnoException) => resolvePromise(e.code ?? e.message));
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.end();
  });
}

t.test('registry, images, signers and oracles', async (t) => {
  const dir = t.testdir();
  const reg = await startRegistry({ t });
  t.match(reg.addr, /^127\.0\.0\.1:\d+$/, 'registry on loopback');
  const ping = await reg.request('GET', '');
  t.equal(ping.status, 200, 'GET /v2/ over TLS with the test CA');
  t.equal(await untrustedHandshake(reg.addr), 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'without the test CA the certificate is refused');

  const imgA = await buildOciImage(dir);
  const imgA2 = await buildOciImage(dir);
  const imgB = await buildOciImage(dir, { variant: 'b' });
  t.equal(imgA2.digest, imgA.digest, 'image layouts are deterministic');
  t.not(imgB.digest, imgA.digest, 'a variant has another digest');

  const digestA = await pushImage(reg, imgA, 'test/app:1');
  t.equal(digestA, imgA.digest, 'skopeo 1.9 push keeps the manifest: registry digest = layout digest');

  const key = await generateCosignKeyPair(dir);
  const other = await generateCosignKeyPair(dir, { pemType: 'ENCRYPTED SIGSTORE PRIVATE KEY' });

  // ---- cosign signs (by digest, with an annotation) ----
  await cosignSign(reg, key, reg.ref('test/app', digestA), { annotations: { env: 'test' } });
  t.ok((await reg.tags('test/app')).includes(signatureTag(digestA)), 'cosign wrote the sha256-<hex>.sig attachment');
  const cosignSigs = await readAttachedSignatures(reg, 'test/app', digestA);
  t.equal(cosignSigs.length, 1, 'one signature layer');
  const cs = cosignSigs[0]!;
  t.equal(cs.payloadJson.critical.type, 'cosign container image signature');
  t.equal(cs.payloadJson.critical.image['docker-manifest-digest'], digestA, 'payload names the signed digest');
  t.equal(cs.payloadJson.critical.identity['docker-reference'], `${reg.addr}/test/app`);
  t.same(cs.payloadJson.optional, { env: 'test' }, 'annotations land in the payload\'s `optional`');
  t.ok(signatureValid(cs, key), 'independent ECDSA check: valid under the signing key');
  t.notOk(signatureValid(cs, other), 'independent ECDSA check: invalid under another key');

  // ---- skopeo 1.18 signs while copying ----
  const digestS = await skopeoCopySigned(reg, imgA, 'test/skopeo:1', key);
  t.equal(digestS, imgA.digest);
  const skopeoSigs = await readAttachedSignatures(reg, 'test/skopeo', digestS);
  t.equal(skopeoSigs.length, 1, 'skopeo wrote one cosign-style signature');
  t.equal(skopeoSigs[0]!.payloadJson.critical.image['docker-manifest-digest'], digestS);
  t.ok(signatureValid(skopeoSigs[0]!, key), 'independent ECDSA check of the skopeo signature');

  // ---- oracles accept ----
  for (const [what, repo] of [['cosign-signed', 'test/app'], ['skopeo-signed', 'test/skopeo']] as const) {
    const cv = await cosignVerify(reg, key, reg.ref(repo, '1'));
    t.ok(cv.ok, `cosign verify accepts the ${what} image`, { stderr: cv.stderr });
    if (cv.ok) {
      const out = JSON.parse(cv.stdout) as { critical: { image: { 'docker-manifest-digest': string } } }[];
      t.equal(out[0]?.critical.image['docker-manifest-digest'], digestA, `cosign verify names the digest (${what})`);
    }
    const sv = await skopeoVerify(reg, key, reg.ref(repo, '1'));
    t.ok(sv.ok, `skopeo sigstoreSigned policy accepts the ${what} image`, { stderr: sv.stderr });
  }
  t.ok((await cosignVerify(reg, key, reg.ref('test/app', '1'), { annotations: { env: 'test' } })).ok, 'cosign verify -a env=test accepts');
  const wrongAnn = await cosignVerify(reg, key, reg.ref('test/app', '1'), { annotations: { env: 'prod' } });
  t.notOk(wrongAnn.ok, 'cosign verify -a env=prod rejects');

  // ---- oracles reject: another key ----
  const cvOther = await cosignVerify(reg, other, reg.ref('test/app', '1'));
  t.notOk(cvOther.ok, 'cosign verify rejects another key');
  t.match(cvOther.stderr, /no matching signatures/);
  const svOther = await skopeoVerify(reg, other, reg.ref('test/app', '1'));
  t.notOk(svOther.ok, 'skopeo policy rejects another key');
  t.match(svOther.stderr, /signature verification failed|not match|invalid signature/i);

  // ---- oracles reject: unsigned ----
  const digestB = await pushImage(reg, imgB, 'test/app:unsigned');
  t.equal(digestB, imgB.digest);
  const cvUnsigned = await cosignVerify(reg, key, reg.ref('test/app', 'unsigned'));
  t.notOk(cvUnsigned.ok, 'cosign verify rejects an unsigned image');
  t.match(cvUnsigned.stderr, /no signatures found/);
  const svUnsigned = await skopeoVerify(reg, key, reg.ref('test/app', 'unsigned'));
  t.notOk(svUnsigned.ok, 'skopeo policy rejects an unsigned image');
  t.match(svUnsigned.stderr, /no signature exists/i);

  // ---- oracles reject: the signed tag re-pushed with another image ----
  t.equal(await pushImage(reg, imgB, 'test/skopeo:1'), digestB, 'test/skopeo:1 now points at the unsigned image');
  t.notOk((await cosignVerify(reg, key, reg.ref('test/skopeo', '1'))).ok, 'cosign verify rejects the re-pushed tag');
  t.notOk((await skopeoVerify(reg, key, reg.ref('test/skopeo', '1'))).ok, 'skopeo policy rejects the re-pushed tag');
  t.ok((await cosignVerify(reg, key, reg.ref('test/skopeo', digestA))).ok, 'the old digest is still signed');

  // ---- a deleted signature is gone ----
  const sigManifest = await reg.getManifest('test/skopeo', signatureTag(digestA));
  await reg.deleteManifest('test/skopeo', sigManifest.digest);
  t.notOk((await cosignVerify(reg, key, reg.ref('test/skopeo', digestA))).ok, 'deleting the .sig manifest unsigns the digest');
});

t.test('OCI 1.1 referrers (tag-schema fallback) and Sigstore bundles', async (t) => {
  const dir = t.testdir();
  const reg = await startRegistry({ t });
  const key = await generateCosignKeyPair(dir);
  const other = await generateCosignKeyPair(dir);

  const noFlag = await cosignSignResult(reg, key, reg.ref('none/app', 'sha256:' + '0'.repeat(64)), { args: ['--new-bundle-format'] });
  t.not(noFlag.code, 0, 'cosign 2.5 `sign` has no --new-bundle-format');
  t.match(noFlag.stderr, /unknown flag: --new-bundle-format/);

  // A signature stored as a referrer instead of the .sig tag.
  const img = await buildOciImage(dir, { variant: 'referrers' });
  const digest = await pushImage(reg, img, 'test/ref:1');
  await cosignSign(reg, key, reg.ref('test/ref', digest), { referrers: true });
  const tags = await reg.tags('test/ref');
  t.ok(tags.includes(referrersTag(digest)), 'the sha256-<hex> referrers fallback tag exists');
  t.notOk(tags.includes(signatureTag(digest)), 'no classic .sig tag');
  const refs = await readReferrers(reg, 'test/ref', digest);
  t.equal(refs.length, 1);
  t.equal(refs[0]?.manifest.config.mediaType, 'application/vnd.dev.cosign.artifact.sig.v1+json');
  t.equal(refs[0]?.manifest.layers[0]?.mediaType, 'application/vnd.dev.cosign.simplesigning.v1+json');
  t.equal(refs[0]?.manifest.subject?.digest, digest, 'the referrer\'s subject is the image');
  const oci11 = await cosignVerify(reg, key, reg.ref('test/ref', '1'), { experimentalOci11: true });
  t.ok(oci11.ok, 'cosign verify --experimental-oci11 accepts', { stderr: oci11.stderr });
  const oci11d = await cosignVerify(reg, key, reg.ref('test/ref', digest), { experimentalOci11: true });
  t.ok(oci11d.ok, 'cosign verify --experimental-oci11 accepts by digest', { stderr: oci11d.stderr });
  t.notOk((await cosignVerify(reg, other, reg.ref('test/ref', '1'), { experimentalOci11: true })).ok, '... and rejects another key');
  const legacy = await cosignVerify(reg, key, reg.ref('test/ref', '1'));
  t.notOk(legacy.ok, 'plain cosign verify does not look at referrers');
  t.match(legacy.stderr, /no signatures found/);

  // A Sigstore bundle (attestation) through referrers.
  const imgB = await buildOciImage(dir, { variant: 'bundle' });
  const digestB = await pushImage(reg, imgB, 'test/bundle:1');
  await cosignAttest(reg, key, reg.ref('test/bundle', digestB), { predicate: { built: 'by-test' } });
  const brefs = await readReferrers(reg, 'test/bundle', digestB);
  t.equal(brefs.length, 1);
  t.equal(brefs[0]?.artifactType, 'application/vnd.dev.sigstore.bundle.v0.3+json');
  t.equal(brefs[0]?.manifest.layers[0]?.mediaType, 'application/vnd.dev.sigstore.bundle.v0.3+json');
  t.equal(brefs[0]?.manifest.subject?.digest, digestB);
  t.ok((await cosignVerifyAttestation(reg, key, reg.ref('test/bundle', '1'))).ok, 'verify-attestation --new-bundle-format accepts (offline, empty trusted root)');
  const wrong = await cosignVerifyAttestation(reg, other, reg.ref('test/bundle', '1'));
  t.notOk(wrong.ok, '... and rejects another key');
  t.match(wrong.stderr, /no matching attestations/);
  t.notOk((await cosignVerifyAttestation(reg, key, reg.ref('test/app-none', '1'))).ok, '... and an image that does not exist');
});

t.test('registry with htpasswd auth', async (t) => {
  const dir = t.testdir();
  const auth = { username: 'tester', password: 'pa ss:w0rd$' };
  const reg = await startRegistry({ t, auth });
  const anon = await reg.request('GET', '', { anonymous: true });
  t.equal(anon.status, 401, 'no credentials: 401');
  t.equal((await reg.request('GET', '')).status, 200, 'with credentials: 200');
  const img = await buildOciImage(dir, { variant: 'auth' });
  const digest = await pushImage(reg, img, 'private/app:1');
  const key = await generateCosignKeyPair(dir);
  await cosignSign(reg, key, reg.ref('private/app', digest));
  t.ok((await cosignVerify(reg, key, reg.ref('private/app', '1'))).ok, 'cosign signs and verifies with credentials');
  t.ok((await skopeoVerify(reg, key, reg.ref('private/app', '1'))).ok, 'skopeo verifies with credentials');
  const sk = await pushSignedImage(reg, dir, 'private/sk:1', key, { signer: 'skopeo', variant: 'sk' });
  t.not(sk.digest, digest);
  t.ok((await cosignVerify(reg, key, sk.ref)).ok, 'pushSignedImage (skopeo signer) gives a verifiable image');
  // Registry to registry: sign an image already there under another key.
  const other = await generateCosignKeyPair(dir);
  t.equal(await skopeoCopySigned(reg, reg.ref('private/app', digest), 'private/copy:1', other), digest, 'a signing copy keeps the digest');
  t.ok((await skopeoVerify(reg, other, reg.ref('private/copy', '1'))).ok, 'the copy is signed by the other key');
  t.notOk((await skopeoVerify(reg, key, reg.ref('private/copy', '1'))).ok, '... and not by the first (private/copy has only the other key\'s signature)');
});

t.test('private engines pull from the registry and get RepoDigests', async (t) => {
  const dir = t.testdir();
  const reg = await startRegistry({ t, auth: { username: 'puller', password: 'secret-1' } });
  const img = await buildOciImage(dir, { variant: 'pull' });
  const digest = await pushImage(reg, img, 'test/pull:1');
  const ref = reg.ref('test/pull', '1');
  t.notOk(existsSync(`/etc/docker/certs.d/${reg.addr}`), 'no /etc/docker/certs.d entry for the registry');
  const engines: [EngineVersion, string][] = [
    ['20.10', (await useEngine(t)).dockerHost],
    ['26.1', (await startPrivateEngine({ t, version: '26.1' })).dockerHost],
  ];
  for (const [version, host] of engines) {
    const noCreds = await runDocker(host, ['--config', `${dir}/empty-docker-config`, 'pull', '--quiet', ref], { timeoutMs: 60_000 });
    // 26.1 says "no basic auth credentials"; 20.10, after the 401 over HTTPS, retries the same
    // port over plain HTTP (the insecure-registry fallback) and reports that attempt's
    // "connection reset by peer" instead.
    t.not(noCreds.code, 0, `Docker ${version}: pull without credentials is refused`, { stderr: noCreds.stderr });
    const repoDigests = await pullInto(host, ref, reg);
    t.ok(repoDigests.includes(`${reg.addr}/test/pull@${digest}`), `Docker ${version}: RepoDigests name the pushed digest`, { repoDigests });
    const run = await runDocker(host, ['run', '--rm', '--network', 'none', ...LABEL_ARGS, ref, 'cat', '/etc/bulkhead-variant']);
    t.equal(run.stdout.trim(), 'pull', `Docker ${version}: the pulled image runs`);
    await runDocker(host, ['image', 'rm', '--force', ref]);
  }
});
