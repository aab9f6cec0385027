// The signature verifier against a REAL registry (docker-registry 2.8 over HTTPS with a test
// CA, on loopback) and REAL signatures: `cosign sign --key` (cosign 2.5) and
// `skopeo copy --sign-by-sigstore-private-key` (skopeo 1.18), with cosign verify / skopeo's
// sigstoreSigned policy as oracles where they have an opinion. Tampered attachments are made
// from the real ones through the registry's own push API.
import t from 'tap';
import { connect, createServer as createNetServer, type Server, type Socket } from 'node:net';
import { mkdir, copyFile, writeFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { SignatureRequirement } from '@bulkhead/shared';
import { SignatureVerifier, createSignatureVerifier } from '../../src/signatures/verifier';
import { RegistryClient } from '../../src/signatures/registry-client';
import {
  buildOciImage, cosignSign, cosignVerify, generateCosignKeyPair, pushBlob, pushImage, sha256Digest, signatureTag,
  runTool, signTools, skopeoCopySigned, skopeoVerify, startRegistry, type CosignKeyPair, type TestRegistry, type ToolResult,
} from '../../../../test/helpers/registry';


async function pushManifest(reg: TestRegistry, repo: string, tag: string, manifest: unknown, mediaType = 'application/vnd.oci.image.manifest.v1+json'): Promise<string> {
  const body = Buffer.from(JSON.stringify(manifest));
  const r = await reg.request('PUT', `${repo}/manifests/${tag}`, { body, headers: { 'content-type': mediaType } });
  if (r.status !== 201) throw new Error(`manifest push ${repo}:${tag}: HTTP ${r.status} ${r.body.toString()}`);
  return sha256Digest(body);
}

async function getJson(reg: TestRegistry, repo: string, ref: string): Promise<Record<string, unknown>> {
  return JSON.parse((await reg.getManifest(repo, ref)).body.toString()) as Record<string, unknown>;
}

async function getBlob(reg: TestRegistry, repo: string, digest: string): Promise<Buffer> {
  const r = await reg.request('GET', `${repo}/blobs/${digest}`);
  if (r.status !== 200) throw new Error(`GET blob: HTTP ${r.status}`);
  return r.body;
}

/** Copy the manifest `from:ref` (and its config + layer blobs) to `to:tag`. */
async function copyManifest(reg: TestRegistry, from: string, ref: string, to: string, tag: string): Promise<void> {
  const m = await getJson(reg, from, ref) as { config: { digest: string }; layers: Array<{ digest: string }>; mediaType?: string };
  for (const d of [m.config.digest, ...m.layers.map((l) => l.digest)]) await pushBlob(reg, to, await getBlob(reg, from, d));
  await pushManifest(reg, to, tag, m, m.mediaType);
}

function requirement(keys: Array<{ name: string; key: CosignKeyPair }>, extra: Partial<SignatureRequirement> = {}): SignatureRequirement {
  return { keys: keys.map((k) => ({ name: k.name, pem: k.key.publicKeyPem })), identities: [], minSignatures: 1, annotations: {}, ...extra };
}

t.test('real registry, real signers', async (t) => {
  const reg = await startRegistry({ t });
  const work = t.testdir();
  // Docker's layout: DIR/HOST:PORT/ca.crt
  const certsDir = join(work, 'certs.d');
  await mkdir(join(certsDir, reg.addr), { recursive: true });
  await copyFile(reg.caFile, join(certsDir, reg.addr, 'ca.crt'));
  const prod = await generateCosignKeyPair(work);
  const other = await generateCosignKeyPair(work, { pemType: 'ENCRYPTED SIGSTORE PRIVATE KEY' });

  const requests: string[] = [];
  const verifier = new SignatureVerifier({ certsDir, timeoutMs: 5000, onRequest: (_m, url) => requests.push(url) });
  t.teardown(() => verifier.close());
  const fresh = (): SignatureVerifier => {
    const v = new SignatureVerifier({ certsDir, timeoutMs: 5000 });
    t.teardown(() => v.close());
    return v;
  };
  const prodOnly = requirement([{ name: 'prod-signer', key: prod }]);

  // cosign signs image A (by digest, with an annotation); skopeo signs image B while copying.
  const imgA = await buildOciImage(work, { variant: 'a' });
  const dA = await pushImage(reg, imgA, 'shop/web:1');
  await cosignSign(reg, prod, reg.ref('shop/web', dA), { annotations: { env: 'prod' } });
  const imgB = await buildOciImage(work, { variant: 'b' });
  const dB = await skopeoCopySigned(reg, imgB, 'shop/web:2', prod);
  const imgC = await buildOciImage(work, { variant: 'c' });
  const dC = await pushImage(reg, imgC, 'shop/web:unsigned');

  t.test('signed by cosign → verified (oracle: cosign verify)', async (t) => {
    t.ok((await cosignVerify(reg, prod, reg.ref('shop/web', dA))).ok, 'oracle agrees');
    const v = await verifier.verify(reg.ref('shop/web', dA), prodOnly);
    t.equal(v.status, 'verified', v.message);
    t.same(v.signers, ['prod-signer']);
    t.equal(v.repoDigest, `${reg.addr}/shop/web@${dA}`);
    t.match(v.message, /signed by prod-signer/);
  });

  t.test('signed by skopeo → verified (oracle: skopeo sigstoreSigned policy)', async (t) => {
    t.ok((await skopeoVerify(reg, prod, reg.ref('shop/web', '2'))).ok, 'oracle agrees');
    const v = await fresh().verify(reg.ref('shop/web', dB), prodOnly);
    t.equal(v.status, 'verified', v.message);
    t.same(v.signers, ['prod-signer']);
  });

  t.test('no signature at all → unsigned, naming the key and the digest', async (t) => {
    const v = await fresh().verify(reg.ref('shop/web', dC), prodOnly);
    t.equal(v.status, 'unsigned');
    t.equal(v.message.startsWith(`no signature by key prod-signer for ${reg.addr}/shop/web@${dC}`), true, v.message);
    t.notOk((await cosignVerify(reg, prod, reg.ref('shop/web', dC))).ok, 'oracle: cosign finds none either');
  });

  t.test('signature by an untrusted key → rejected (oracle: cosign verify --key other fails)', async (t) => {
    const v = await fresh().verify(reg.ref('shop/web', dA), requirement([{ name: 'other-signer', key: other }]));
    t.equal(v.status, 'rejected');
    t.match(v.message, /^no signature by key other-signer for .*: 1 signature found, none valid for a trusted signer \(bad signature or signature by an unknown key\)/);
    t.same(v.signers, []);
    t.notOk((await cosignVerify(reg, other, reg.ref('shop/web', dA))).ok, 'oracle agrees');
  });

  t.test('a valid signature for another digest → rejected', async (t) => {
    // A's real attachment, placed where an unsigned image's would be (same repository).
    const imgX = await buildOciImage(work, { variant: 'x' });
    const dX = await pushImage(reg, imgX, 'shop/web:x');
    await copyManifest(reg, 'shop/web', signatureTag(dA), 'shop/web', signatureTag(dX));
    const v = await fresh().verify(reg.ref('shop/web', dX), prodOnly);
    t.equal(v.status, 'rejected');
    t.match(v.message, /signature by key prod-signer: signature is for another digest/);
    t.notOk((await cosignVerify(reg, prod, reg.ref('shop/web', dX))).ok, 'oracle agrees');
  });

  t.test('a tag re-pushed to a new unsigned image after signing → the new digest is unsigned', async (t) => {
    const imgD = await buildOciImage(work, { variant: 'd' });
    const dD = await pushImage(reg, imgD, 'shop/web:release');
    await cosignSign(reg, prod, reg.ref('shop/web', dD));
    const imgE = await buildOciImage(work, { variant: 'e' });
    const dE = await pushImage(reg, imgE, 'shop/web:release');
    t.not(dE, dD);
    t.equal(await reg.manifestDigest('shop/web', 'release'), dE, 'the tag moved');
    const v = fresh();
    t.equal((await v.verify(reg.ref('shop/web', dE), prodOnly)).status, 'unsigned', 'what the engine would run now');
    t.equal((await v.verify(reg.ref('shop/web', dD), prodOnly)).status, 'verified', 'the old digest still is');
    t.notOk((await cosignVerify(reg, prod, reg.ref('shop/web', 'release'))).ok, 'oracle: cosign verify of the tag fails too');
  });

  t.test('truncated and garbage signature layers → rejected, never a crash', async (t) => {
    const sigManifest = await getJson(reg, 'shop/web', signatureTag(dA)) as { config: unknown; layers: Array<{ digest: string; size: number; mediaType: string; annotations: Record<string, string> }> };
    const realLayer = sigManifest.layers[0]!;
    const payload = await getBlob(reg, 'shop/web', realLayer.digest);
    const cut = payload.subarray(0, Math.floor(payload.length / 2));
    const cutDigest = await pushBlob(reg, 'shop/junk', cut);
    const junkDigest = await pushBlob(reg, 'shop/junk', Buffer.from([0, 1, 2, 255, 254]));
    const cfg = await getBlob(reg, 'shop/web', (sigManifest.config as { digest: string }).digest);
    await pushBlob(reg, 'shop/junk', cfg);
    await pushBlob(reg, 'shop/junk', payload);
    const imgF = await buildOciImage(work, { variant: 'f' });
    const dF = await pushImage(reg, imgF, 'shop/junk:1');
    await pushManifest(reg, 'shop/junk', signatureTag(dF), {
      ...sigManifest,
      layers: [
        { ...realLayer, digest: cutDigest, size: cut.length }, // truncated payload, real signature
        { ...realLayer, digest: junkDigest, size: 5, annotations: { 'dev.cosignproject.cosign/signature': 'bm90IGEgc2lnbmF0dXJl' } },
        { ...realLayer, annotations: { 'dev.cosignproject.cosign/signature': '' } }, // no signature
        { ...realLayer, annotations: { 'dev.cosignproject.cosign/signature': '%%%not base64%%%' } },
        { mediaType: 'application/octet-stream', digest: junkDigest, size: 5 }, // not a signature layer: ignored
      ],
    });
    const v = await fresh().verify(reg.ref('shop/junk', dF), prodOnly);
    t.equal(v.status, 'rejected', v.message);
    t.match(v.message, /4 signatures found, none valid/);
    t.notOk((await cosignVerify(reg, prod, reg.ref('shop/junk', dF))).ok, 'oracle agrees');

  });

  t.test('docker-reference of another repository → rejected (oracle: skopeo matchRepository)', async (t) => {
    // The same image pushed to another repository, with shop/web's real signature copied over.
    const dMirror = await pushImage(reg, imgB, 'shop/mirror:2');
    t.equal(dMirror, dB);
    await copyManifest(reg, 'shop/web', signatureTag(dB), 'shop/mirror', signatureTag(dB));
    const v = await fresh().verify(reg.ref('shop/mirror', dB), prodOnly);
    t.equal(v.status, 'rejected');
    t.match(v.message, new RegExp(`signature names another repository \\(${reg.addr.replace(/\./g, '\\.')}/shop/web\\)`));
    t.notOk((await skopeoVerify(reg, prod, reg.ref('shop/mirror', '2'))).ok, 'oracle agrees');
  });

  t.test('required annotations', async (t) => {
    const v = fresh();
    const needProd = { ...prodOnly, annotations: { env: 'prod' } };
    t.equal((await v.verify(reg.ref('shop/web', dA), needProd)).status, 'verified', 'cosign -a env=prod');
    const missing = await v.verify(reg.ref('shop/web', dB), needProd);
    t.equal(missing.status, 'rejected');
    t.match(missing.message, /annotation env is missing, "prod" required/);
    const wrong = await v.verify(reg.ref('shop/web', dA), { ...prodOnly, annotations: { env: 'dev' } });
    t.match(wrong.message, /annotation env is "prod", "dev" required/);
    t.ok((await cosignVerify(reg, prod, reg.ref('shop/web', dA), { annotations: { env: 'prod' } })).ok, 'oracle: present');
    t.notOk((await cosignVerify(reg, prod, reg.ref('shop/web', dB), { annotations: { env: 'prod' } })).ok, 'oracle: missing');
  });

  t.test('distinct signers are counted against minSignatures', async (t) => {
    const imgH = await buildOciImage(work, { variant: 'h' });
    const dH = await pushImage(reg, imgH, 'shop/web:two');
    await cosignSign(reg, prod, reg.ref('shop/web', dH));
    await cosignSign(reg, prod, reg.ref('shop/web', dH)); // the same key twice counts once
    const both = requirement([{ name: 'prod-signer', key: prod }, { name: 'other-signer', key: other }], { minSignatures: 2 });
    const one = await fresh().verify(reg.ref('shop/web', dH), both);
    t.equal(one.status, 'rejected', one.message);
    t.match(one.message, /1 of 2 required signers \(prod-signer\)/);
    t.same(one.signers, ['prod-signer']);
    await cosignSign(reg, other, reg.ref('shop/web', dH));
    const two = await fresh().verify(reg.ref('shop/web', dH), both);
    t.equal(two.status, 'verified', two.message);
    t.same(two.signers, ['other-signer', 'prod-signer']);
  });

  t.test('cache: a second verification costs no request; in-flight verifications are shared', async (t) => {
    // Counted twice: by the client's request hook and, independently, by a loopback TCP proxy
    // in front of the registry that counts connections and bytes.
    const [regHost, regPort] = reg.addr.split(':');
    let bytes = 0;
    let connections = 0;
    const proxy = createNetServer((down) => {
      connections++;
      const up = connect(Number(regPort), regHost);
      down.on('data', (b: Buffer) => { bytes += b.length; });
      up.on('data', (b: Buffer) => { bytes += b.length; });
      down.pipe(up).pipe(down);
      const end = (): void => { down.destroy(); up.destroy(); };
      down.on('error', end); up.on('error', end); down.on('close', end); up.on('close', end);
    });
    await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
    t.teardown(() => new Promise<void>((r) => proxy.close(() => r())));
    const viaProxy = `127.0.0.1:${(proxy.address() as { port: number }).port}`;
    await mkdir(join(certsDir, viaProxy), { recursive: true });
    await copyFile(reg.caFile, join(certsDir, viaProxy, 'ca.crt'));
    // The signature names the registry's own address; the proxy is another name for it, so
    // the digest check holds and the repository check does not: a rejected verdict, cached too.
    let count = 0;
    const v = new SignatureVerifier({ certsDir, timeoutMs: 5000, onRequest: () => count++ });
    t.teardown(() => v.close());
    const ref = `${viaProxy}/shop/web@${dA}`;
    const [a, b] = await Promise.all([v.verify(ref, prodOnly), v.verify(ref, prodOnly)]);
    t.equal(a, b, 'one verification for two callers');
    t.equal(a.status, 'rejected', a.message);
    t.match(a.message, /another repository/);
    const first = count;
    t.ok(first >= 2, `cold: ${first} requests`);
    t.ok(connections >= 1 && bytes > 0, `cold: ${connections} connection(s), ${bytes} bytes through the proxy`);
    const [c0, b0] = [connections, bytes];
    t.equal(v.peek(ref, prodOnly), a, 'peek answers synchronously');
    const again = await v.verify(ref, prodOnly);
    t.equal(again, a);
    t.equal(count, first, 'no request for the cached verdict');
    t.equal(connections, c0, 'no connection');
    t.equal(bytes, b0, 'not one byte');
    t.equal(v.peek(ref, { ...prodOnly, minSignatures: 2 }), undefined, 'another requirement is another entry');
    // And a verified verdict from the cache, through the hook.
    const v2 = new SignatureVerifier({ certsDir, timeoutMs: 5000, onRequest: () => count++ });
    t.teardown(() => v2.close());
    t.equal((await v2.verify(reg.ref('shop/web', dA), prodOnly)).status, 'verified');
    const n = count;
    t.equal((await v2.verify(reg.ref('shop/web', dA), prodOnly)).status, 'verified');
    t.equal(count, n, 'verified verdict cached');
  });

  t.test('cache TTL by status', async (t) => {
    let now = 1_000_000;
    const v = new SignatureVerifier({ certsDir, timeoutMs: 5000, now: () => now, verifiedTtlMs: 60_000, negativeTtlMs: 5_000 });
    t.teardown(() => v.close());
    await v.verify(reg.ref('shop/web', dA), prodOnly);
    await v.verify(reg.ref('shop/web', dC), prodOnly);
    now += 6_000;
    t.ok(v.peek(reg.ref('shop/web', dA), prodOnly), 'verified still cached');
    t.equal(v.peek(reg.ref('shop/web', dC), prodOnly), undefined, 'unsigned expired');
    now += 60_000;
    t.equal(v.peek(reg.ref('shop/web', dA), prodOnly), undefined, 'verified expired');
  });

  t.test('the CA must be trusted: without certs.d the registry is unreachable (TLS)', async (t) => {
    const empty = await mkdtemp(join(tmpdir(), 'bk-certs-'));
    t.teardown(() => rm(empty, { recursive: true, force: true }));
    const v = new SignatureVerifier({ certsDir: empty, timeoutMs: 3000 });
    t.teardown(() => v.close());
    const r = await v.verify(reg.ref('shop/web', dA), prodOnly);
    t.equal(r.status, 'unreachable');
    t.match(r.message, new RegExp(`^registry ${reg.addr} unreachable: .*(certificate|self.signed|issuer)`, 'i'));
  });

  t.test('size caps and digest checks in the client', async (t) => {
    const c = new RegistryClient({ certsDir, maxBlobBytes: 64, maxManifestBytes: 100 });
    t.teardown(() => c.close());
    const deadline = Date.now() + 5000;
    await t.rejects(c.getManifest(reg.addr, 'shop/web', dA, deadline), { name: 'RegistryError', kind: 'invalid', message: /over the 100-byte limit/ });
    const c2 = new RegistryClient({ certsDir });
    t.teardown(() => c2.close());
    const m = await c2.getManifest(reg.addr, 'shop/web', dA, deadline);
    t.equal(m.digest, dA);
    await t.rejects(c2.getManifest(reg.addr, 'shop/web', dC.replace(/.$/, (x) => (x === '0' ? '1' : '0')), deadline), { name: 'RegistryError', kind: 'not-found' });
    const layer = (JSON.parse(m.body.toString()) as { layers: Array<{ digest: string }> }).layers[0]!.digest;
    await t.rejects(c.getBlob(reg.addr, 'shop/web', layer, deadline), { kind: 'invalid', message: /limit/ }, 'a big blob is cut off');
    await t.rejects(c2.getBlob(reg.addr, 'shop/web', 'sha256:xyz', deadline), { name: 'RegistryError', kind: 'invalid' });
    t.ok((await c2.listTags(reg.addr, 'shop/web', deadline)).includes('1'));
    await t.rejects(c2.getManifest(reg.addr, 'shop/web', '1', Date.now() - 1), { kind: 'unreachable', message: /deadline/ });
    t.same(await c2.getReferrers(reg.addr, 'shop/web', dC, deadline), [], 'no referrers API (404) and no fallback tag → none');
  });

  t.test('Sigstore bundles through the referrers tag-schema fallback (cosign attest --new-bundle-format)', async (t) => {
    // cosign 2.5's `sign` has no --new-bundle-format; its `attest --new-bundle-format` writes a
    // Sigstore bundle v0.3 (DSSE over an in-toto Statement) as an OCI 1.1 referrer. With
    // --type https://sigstore.dev/cosign/sign/v1 and an empty predicate that is the image
    // signature cosign v3's `sign` writes. docker-registry 2.8 has no referrers API, so cosign
    // maintains the `sha256-<hex>` fallback index.
    const tools = await signTools();
    const imgJ = await buildOciImage(work, { variant: 'bundle' });
    const dJ = await pushImage(reg, imgJ, 'shop/bundled:1');
    const empty = join(work, 'predicate.json');
    await writeFile(empty, '{}');
    const attest = (key: CosignKeyPair, type: string): Promise<ToolResult> => runTool(tools.cosign, [
      'attest', '--new-bundle-format', '--key', key.privateKeyFile, '--tlog-upload=false', '-y', '--type', type, '--predicate', empty, reg.ref('shop/bundled', dJ),
    ], { env: { HOME: reg.homeDir, DOCKER_CONFIG: reg.dockerConfigDir, SSL_CERT_FILE: reg.caFile, COSIGN_PASSWORD: key.passphrase }, timeoutMs: 60_000 });
    const v0 = await fresh().verify(reg.ref('shop/bundled', dJ), prodOnly);
    t.equal(v0.status, 'unsigned', v0.message);
    // An attestation of another kind is not an image signature.
    const prov = await attest(prod, 'https://slsa.dev/provenance/v1');
    t.equal(prov.code, 0, prov.stderr);
    const tags = await reg.tags('shop/bundled');
    t.ok(tags.includes(dJ.replace(':', '-')), `the referrers fallback tag exists (${tags.join(' ')})`);
    const v1 = await fresh().verify(reg.ref('shop/bundled', dJ), prodOnly);
    t.equal(v1.status, 'rejected', v1.message);
    t.match(v1.message, /not an image signature/);
    const sig = await attest(prod, 'https://sigstore.dev/cosign/sign/v1');
    t.equal(sig.code, 0, sig.stderr);
    const v2 = await fresh().verify(reg.ref('shop/bundled', dJ), prodOnly);
    t.equal(v2.status, 'verified', v2.message);
    t.same(v2.signers, ['prod-signer']);
    // cosign wants a trusted root for bundles (else it fetches one over TUF): an empty one, offline.
    const emptyRoot = join(work, 'empty-root.json');
    await writeFile(emptyRoot, JSON.stringify({ mediaType: 'application/vnd.dev.sigstore.trustedroot+json;version=0.1', tlogs: [], certificateAuthorities: [], ctlogs: [], timestampAuthorities: [] }));
    const oracle = await runTool(tools.cosign, ['verify-attestation', '--new-bundle-format', '--key', prod.publicKeyFile, '--insecure-ignore-tlog=true', '--trusted-root', emptyRoot, '--type', 'https://sigstore.dev/cosign/sign/v1', reg.ref('shop/bundled', dJ)],
      { env: { HOME: reg.homeDir, DOCKER_CONFIG: reg.dockerConfigDir, SSL_CERT_FILE: reg.caFile }, timeoutMs: 60_000 });
    t.equal(oracle.code, 0, `oracle: cosign verify-attestation --new-bundle-format agrees ${oracle.stderr}`);
    const untrusted = await fresh().verify(reg.ref('shop/bundled', dJ), requirement([{ name: 'other-signer', key: other }]));
    t.equal(untrusted.status, 'rejected', untrusted.message);
    t.match(untrusted.message, /2 signatures found, none valid/);

    // The fallback index of J placed as another image's: referrers whose subject is J.
    const imgL = await buildOciImage(work, { variant: 'bundle-other' });
    const dL = await pushImage(reg, imgL, 'shop/bundled:2');
    const index = await reg.getManifest('shop/bundled', dJ.replace(':', '-'));
    await pushManifest(reg, 'shop/bundled', dL.replace(':', '-'), JSON.parse(index.body.toString()), 'application/vnd.oci.image.index.v1+json');
    const moved = await fresh().verify(reg.ref('shop/bundled', dL), prodOnly);
    t.equal(moved.status, 'rejected', moved.message);
    t.match(moved.message, /signature referrer for another digest/);
  });

  t.test('cosign signature as an OCI 1.1 referrer (cosign sign --registry-referrers-mode=oci-1-1)', async (t) => {
    const tools = await signTools();
    const imgK = await buildOciImage(work, { variant: 'referrer-sig' });
    const dK = await pushImage(reg, imgK, 'shop/refsig:1');
    const r = await runTool(tools.cosign, ['sign', '--key', prod.privateKeyFile, '--tlog-upload=false', '-y', '--registry-referrers-mode=oci-1-1', reg.ref('shop/refsig', dK)],
      { env: { HOME: reg.homeDir, DOCKER_CONFIG: reg.dockerConfigDir, SSL_CERT_FILE: reg.caFile, COSIGN_PASSWORD: prod.passphrase, COSIGN_EXPERIMENTAL: '1' }, timeoutMs: 60_000 });
    t.equal(r.code, 0, r.stderr);
    const tags = await reg.tags('shop/refsig');
    t.notOk(tags.includes(signatureTag(dK)), `no .sig tag (${tags.join(' ')})`);
    const v = await fresh().verify(reg.ref('shop/refsig', dK), prodOnly);
    t.equal(v.status, 'verified', v.message);
    // No oracle here: cosign 2.5's own `verify` answers "no signatures found" for this
    // signature against docker-registry 2.8 (it does not read the referrers fallback index
    // for plain signatures). What cosign wrote is checked instead: a referrer manifest of
    // the cosign signature artifact type, with this digest as its subject.
    const index = JSON.parse((await reg.getManifest('shop/refsig', dK.replace(':', '-'))).body.toString()) as { manifests: Array<{ digest: string }> };
    t.equal(index.manifests.length, 1, 'one referrer in the fallback index');
    const refm = await getJson(reg, 'shop/refsig', index.manifests[0]!.digest) as { artifactType?: string; config: { mediaType: string }; layers: Array<{ mediaType: string }>; subject?: { digest: string } };
    // cosign 2.5 sets no artifactType: the type is the config's media type.
    t.equal(refm.artifactType ?? refm.config.mediaType, 'application/vnd.dev.cosign.artifact.sig.v1+json');
    t.equal(refm.layers[0]?.mediaType, 'application/vnd.dev.cosign.simplesigning.v1+json');
    t.equal(refm.subject?.digest, dK);
    const bad = await fresh().verify(reg.ref('shop/refsig', dK), requirement([{ name: 'other-signer', key: other }]));
    t.equal(bad.status, 'rejected', bad.message);
  });

  t.test('the agent factory: certs dir and timeout from the run options', async (t) => {
    const v = await createSignatureVerifier({ registryCertsDir: certsDir, registryAuthFile: undefined, timeoutMs: 5000, cacheTtlMs: 60_000 });
    t.teardown(() => v.close());
    t.equal((await v.verify(reg.ref('shop/web', dA), prodOnly)).status, 'verified');
  });
});

t.test('registry with basic auth, credentials from a config.json file', async (t) => {
  const reg = await startRegistry({ t, auth: { username: 'ci-reader', password: 'p4ss:word' } });
  const work = t.testdir();
  const certsDir = join(work, 'certs.d');
  await mkdir(join(certsDir, reg.addr), { recursive: true });
  await copyFile(reg.caFile, join(certsDir, reg.addr, 'ca.crt'));
  const key = await generateCosignKeyPair(work);
  const img = await buildOciImage(work, { variant: 'auth' });
  const d = await pushImage(reg, img, 'private/app:1');
  await cosignSign(reg, key, reg.ref('private/app', d));
  const req = requirement([{ name: 'prod-signer', key }]);

  const authFile = join(work, 'config.json');
  await writeFile(authFile, JSON.stringify({ auths: { [reg.addr]: { auth: Buffer.from('ci-reader:p4ss:word').toString('base64') } } }), { mode: 0o600 });
  const v = await createSignatureVerifier({ registryCertsDir: certsDir, registryAuthFile: authFile, timeoutMs: 5000, cacheTtlMs: 60_000 });
  t.teardown(() => v.close());
  const ok = await v.verify(reg.ref('private/app', d), req);
  t.equal(ok.status, 'verified', ok.message);

  const anon = new SignatureVerifier({ certsDir, timeoutMs: 5000 });
  t.teardown(() => anon.close());
  const refused = await anon.verify(reg.ref('private/app', d), req);
  t.equal(refused.status, 'unreachable');
  t.match(refused.message, /refused access \(HTTP 401, no credentials configured\)/);

  const wrongFile = join(work, 'wrong.json');
  await writeFile(wrongFile, JSON.stringify({ auths: { [reg.addr]: { username: 'ci-reader', password: 'not-it' } } }), { mode: 0o600 });
  const wrong = await createSignatureVerifier({ registryCertsDir: certsDir, registryAuthFile: wrongFile, timeoutMs: 5000, cacheTtlMs: 60_000 });
  t.teardown(() => wrong.close());
  const w = await wrong.verify(reg.ref('private/app', d), req);
  t.equal(w.status, 'unreachable');
  t.match(w.message, /with the configured credentials/);
  for (const verdict of [ok, refused, w]) {
    t.notMatch(verdict.message, /p4ss|not-it|ci-reader/, 'no credentials in messages');
  }
});

t.test('registry down or silent → unreachable within the deadline', async (t) => {
  const req: SignatureRequirement = { keys: [{ name: 'prod-signer', pem: (await generateCosignKeyPair(t.testdir())).publicKeyPem }], identities: [], minSignatures: 1, annotations: {} };
  const D = `sha256:${'12'.repeat(32)}`;

  // Connection refused: a port that was just free.
  const probe = createNetServer();
  await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
  const downPort = (probe.address() as { port: number }).port;
  await new Promise<void>((r) => probe.close(() => r()));
  const v = new SignatureVerifier({ timeoutMs: 1500 });
  t.teardown(() => v.close());
  const t0 = Date.now();
  const down = await v.verify(`127.0.0.1:${downPort}/shop/web@${D}`, req);
  t.equal(down.status, 'unreachable');
  t.match(down.message, new RegExp(`^registry 127\\.0\\.0\\.1:${downPort} unreachable: connect ECONNREFUSED`));
  t.ok(Date.now() - t0 < 1500, 'refused at once');
  t.equal(v.peek(`127.0.0.1:${downPort}/shop/web@${D}`, req)?.status, 'unreachable', 'cached (briefly)');

  // Accepts and never answers (not even the TLS handshake).
  const held: Socket[] = [];
  const silent: Server = createNetServer((s) => { held.push(s); s.on('error', () => undefined); });
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
  t.teardown(() => { for (const s of held) s.destroy(); silent.close(); });
  const port = (silent.address() as { port: number }).port;
  const t1 = Date.now();
  const v2 = new SignatureVerifier({ timeoutMs: 800 });
  t.teardown(() => v2.close());
  const slow = await v2.verify(`127.0.0.1:${port}/shop/web@${D}`, req);
  const took = Date.now() - t1;
  t.equal(slow.status, 'unreachable');
  t.match(slow.message, /unreachable: no answer within \d+ ms/);
  t.ok(took >= 700 && took < 1500, `gave up at the deadline (${took} ms)`);
  t.ok(held.length >= 1, 'the connection was made');

  // A caller's earlier deadline wins over the verifier's timeout.
  const t2 = Date.now();
  const v3 = new SignatureVerifier({ timeoutMs: 5000 });
  t.teardown(() => v3.close());
  const early = await v3.verify(`127.0.0.1:${port}/shop/api@${D}`, req, { deadline: Date.now() + 300 });
  t.equal(early.status, 'unreachable');
  t.ok(Date.now() - t2 < 1000, `caller deadline honoured (${Date.now() - t2} ms)`);
});

