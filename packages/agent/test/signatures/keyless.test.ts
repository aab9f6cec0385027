// Keyless (Fulcio certificate) signatures, positive and negative, against a REAL registry
// (docker-registry 2.8 over HTTPS, loopback) and REAL Sigstore material: bundles made by the
// Sigstore project's signing client (@sigstore/sign) against its own test CA / CT log / Rekor
// (@sigstore/mock) on loopback (test/helpers/keyless.ts), attached through the referrers
// tag-schema fallback the way cosign does, and verified by the agent's verifier (the real
// @sigstore/verify path, offline, against a trusted_root.json). REAL cosign 2.5 is the oracle
// for every verdict, with its reason: `cosign verify-attestation --new-bundle-format
// --trusted-root ROOT --type https://sigstore.dev/cosign/sign/v1 --certificate-identity[-regexp]
// --certificate-oidc-issuer` (see test/helpers/keyless.ts for why not `cosign verify`).
// Keyless cosign `.sig` attachments are made by REAL cosign 2.5 `sign` against the same
// loopback CA and log, with `cosign verify --certificate-identity …` as their oracle.
import t, { type Test } from 'tap';
import { copyFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { SignatureRequirement, TrustedIdentity } from '@bulkhead/shared';
import { SignatureVerifier } from '../../src/signatures/verifier';
import { attachBundle, cosignSignKeyless, startKeylessAuthority, type KeylessSignOptions } from '../../../../test/helpers/keyless';
import { buildOciImage, cosignVerifyKeyless, pushImage, startRegistry, type VerifyResult } from '../../../../test/helpers/registry';

/** cosign exited non-zero FOR THIS REASON (not a network or usage error). */
function refusedBy(t: Test, o: VerifyResult, why: RegExp, label: string): void {
  t.notOk(o.ok, label);
  t.match(o.stderr, why, `${label}: ${o.stderr.trim().split('\n').pop()}`);
}

const ISSUER = 'https://token.actions.example.test';
const SUBJECT = 'https://git.example.test/acme/shop/.github/workflows/release.yml@refs/heads/main';

t.test('keyless signatures: Fulcio-style certificate, CT log, Rekor, offline trusted root', async (t) => {
  const reg = await startRegistry({ t });
  const auth = await startKeylessAuthority({ t });
  const work = t.testdir();
  const rootFile = await auth.writeTrustedRoot(work);
  const cosignTrust = await auth.writeCosignTrustEnv(work);
  const certsDir = join(work, 'certs.d');
  await mkdir(join(certsDir, reg.addr), { recursive: true });
  await copyFile(reg.caFile, join(certsDir, reg.addr, 'ca.crt'));
  const verifier = new SignatureVerifier({ certsDir, timeoutMs: 10_000 });
  t.teardown(() => verifier.close());
  const req = (identities: TrustedIdentity[], extra: Partial<SignatureRequirement> = {}): SignatureRequirement =>
    ({ keys: [], identities, trustedRoot: auth.trustedRootJson, minSignatures: 1, annotations: {}, ...extra });
  const exact = req([{ issuer: ISSUER, subject: SUBJECT }]);

  /** A fresh image in `repo`, with one keyless bundle made by `sign` attached; its repo digest. */
  const signed = async (variant: string, sign: Omit<KeylessSignOptions, 'image'>, repo = 'shop/web'): Promise<string> => {
    const img = await buildOciImage(work, { variant });
    const digest = await pushImage(reg, img, `${repo}:${variant}`);
    const bundle = await auth.signImage({ ...sign, image: reg.ref(repo, digest) });
    await attachBundle(reg, repo, digest, bundle);
    return reg.ref(repo, digest);
  };
  const oracle = (ref: string, identity = SUBJECT, issuer = ISSUER, identityRegexp = false): ReturnType<typeof cosignVerifyKeyless> =>
    cosignVerifyKeyless(reg, ref, { trustedRootFile: rootFile, identity, issuer, identityRegexp, env: cosignTrust, attestationType: 'https://sigstore.dev/cosign/sign/v1' });

  const good = await signed('keyless-good', { subject: SUBJECT, issuer: ISSUER });

  await t.test('the trusted identity, exact subject: signed', async (t) => {
    const v = await verifier.verify(good, exact);
    t.equal(v.status, 'verified', v.message);
    t.same(v.signers, [`${ISSUER} ${SUBJECT}`]);
    const o = await oracle(good);
    t.ok(o.ok, `cosign verify agrees: ${o.stderr.trim().split('\n').pop()}`);
  });

  await t.test('the trusted identity, subject glob: signed', async (t) => {
    const v = await verifier.verify(good, req([{ issuer: ISSUER, subjectGlob: 'https://git.example.test/acme/*@refs/heads/main' }]));
    t.equal(v.status, 'verified', v.message);
    const o = await oracle(good, '^https://git\\.example\\.test/acme/.*@refs/heads/main$', ISSUER, true);
    t.ok(o.ok, `cosign verify --certificate-identity-regexp agrees: ${o.stderr.trim().split('\n').pop()}`);
    const miss = await verifier.verify(good, req([{ issuer: ISSUER, subjectGlob: 'https://git.example.test/other/*' }]));
    t.equal(miss.status, 'rejected', 'a glob for another organisation does not match');
    t.match(miss.message, /keyless signature by https:\/\/git\.example\.test\/acme\/shop\/\S+ from https:\/\/token\.actions\.example\.test, not a trusted identity/);
  });

  await t.test('the rule trusts another issuer or another subject: refused', async (t) => {
    const wrongIssuer = await verifier.verify(good, req([{ issuer: 'https://accounts.example.test', subject: SUBJECT }]));
    t.equal(wrongIssuer.status, 'rejected');
    t.match(wrongIssuer.message, /not a trusted identity/);
    refusedBy(t, await oracle(good, SUBJECT, 'https://accounts.example.test'), /expected issuer value "https:\/\/accounts\.example\.test"/, 'cosign refuses the other issuer too');
    const wrongSubject = await verifier.verify(good, req([{ issuer: ISSUER, subject: `${SUBJECT}x` }]));
    t.equal(wrongSubject.status, 'rejected');
    t.match(wrongSubject.message, /not a trusted identity/);
    refusedBy(t, await oracle(good, `${SUBJECT}x`), /expected SAN value "https:\/\/git\.example\.test\/acme\/shop\/\S+x"/, 'cosign refuses the other subject too');
  });

  await t.test('signed by another issuer / another subject than the rule trusts: refused', async (t) => {
    const byOtherIssuer = await signed('keyless-other-issuer', { subject: SUBJECT, issuer: 'https://evil.example.test' });
    const v1 = await verifier.verify(byOtherIssuer, exact);
    t.equal(v1.status, 'rejected');
    t.match(v1.message, /keyless signature by \S+ from https:\/\/evil\.example\.test, not a trusted identity/);
    refusedBy(t, await oracle(byOtherIssuer), /expected issuer value "https:\/\/token\.actions\.example\.test", got "https:\/\/evil\.example\.test"/, 'cosign refuses it too');
    const byOtherSubject = await signed('keyless-other-subject', { subject: 'https://git.example.test/mallory/x/.github/workflows/r.yml@refs/heads/main', issuer: ISSUER });
    const v2 = await verifier.verify(byOtherSubject, exact);
    t.equal(v2.status, 'rejected');
    t.match(v2.message, /keyless signature by https:\/\/git\.example\.test\/mallory\//);
    refusedBy(t, await oracle(byOtherSubject), /got "https:\/\/git\.example\.test\/mallory\//, 'cosign refuses it too');
  });

  await t.test('a certificate from a CA the root does not hold: refused', async (t) => {
    const ref = await signed('keyless-untrusted-ca', { subject: SUBJECT, issuer: ISSUER, ca: 'untrusted' });
    const v = await verifier.verify(ref, exact);
    t.equal(v.status, 'rejected');
    t.match(v.message, /does not verify against the trusted root \(Failed to verify certificate chain: no (valid|trusted) certificate path found/);
    refusedBy(t, await oracle(ref), /failed to verify leaf certificate/, 'cosign refuses it too');
  });

  await t.test('a certificate expired when the log recorded the signature: refused', async (t) => {
    const ref = await signed('keyless-expired', { subject: SUBJECT, issuer: ISSUER, ca: 'expired' });
    const v = await verifier.verify(ref, exact);
    t.equal(v.status, 'rejected');
    t.match(v.message, /does not verify against the trusted root \(Failed to verify certificate chain: certificate is not valid or expired at the specified date/);
    refusedBy(t, await oracle(ref), /integrated time outside certificate validity/, 'cosign refuses it too');
  });

  await t.test('a keyless statement for another digest, attached to this one: refused', async (t) => {
    const img = await buildOciImage(work, { variant: 'keyless-moved' });
    const digest = await pushImage(reg, img, 'shop/web:keyless-moved');
    // The good image's signature bundle, copied over: valid signer, wrong subject digest.
    const bundle = await auth.signImage({ subject: SUBJECT, issuer: ISSUER, image: good });
    await attachBundle(reg, 'shop/web', digest, bundle);
    const v = await verifier.verify(reg.ref('shop/web', digest), exact);
    t.equal(v.status, 'rejected');
    t.match(v.message, /bundle by https:\/\/token\.actions\.example\.test \S+: signature is for another digest/);
  });

  await t.test('keyless cosign .sig attachments, signed by REAL cosign 2.5 against the same CA and log', async (t) => {
    const sigImage = async (variant: string, o: Omit<KeylessSignOptions, 'image'>): Promise<string> => {
      const digest = await pushImage(reg, await buildOciImage(work, { variant }), `shop/api:${variant}`);
      await cosignSignKeyless(reg, auth, cosignTrust, reg.ref('shop/api', digest), o);
      return reg.ref('shop/api', digest);
    };
    const legacyOracle = (ref: string, identity = SUBJECT, issuer = ISSUER): ReturnType<typeof cosignVerifyKeyless> =>
      cosignVerifyKeyless(reg, ref, { identity, issuer, env: cosignTrust });
    const ok = await sigImage('sig-good', { subject: SUBJECT, issuer: ISSUER });
    const o = await legacyOracle(ok);
    t.ok(o.ok, `oracle: cosign verify accepts it (${o.stderr.trim().split('\n').pop()})`);
    const v = await verifier.verify(ok, exact);
    t.equal(v.status, 'verified', v.message);
    t.same(v.signers, [`${ISSUER} ${SUBJECT}`]);
    t.equal((await verifier.verify(ok, req([{ issuer: ISSUER, subjectGlob: 'https://git.example.test/acme/*' }]))).status, 'verified', 'by glob');

    const wrong = await verifier.verify(ok, req([{ issuer: 'https://accounts.example.test', subject: SUBJECT }]));
    t.equal(wrong.status, 'rejected');
    t.match(wrong.message, /keyless signature by \S+ from https:\/\/token\.actions\.example\.test, not a trusted identity/);
    refusedBy(t, await legacyOracle(ok, SUBJECT, 'https://accounts.example.test'), /none of the expected identities matched .* with issuer https:\/\/token\.actions\.example\.test/, 'cosign refuses the other issuer too');

    const keysOnly = await verifier.verify(ok, { keys: [{ name: 'prod-signer', pem: '-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+Pw==\n-----END PUBLIC KEY-----\n' }], identities: [], minSignatures: 1, annotations: {} });
    t.equal(keysOnly.status, 'rejected', 'a rule with keys only does not count a keyless signature');

    const noRoot = await verifier.verify(ok, { keys: [], identities: [{ issuer: ISSUER, subject: SUBJECT }], minSignatures: 1, annotations: {} });
    t.equal(noRoot.status, 'rejected');
    t.match(noRoot.message, /keyless signature, but no trusted root is configured/);

    const rogue = await sigImage('sig-rogue', { subject: SUBJECT, issuer: ISSUER, ca: 'untrusted' });
    const vr = await verifier.verify(rogue, exact);
    t.equal(vr.status, 'rejected');
    t.match(vr.message, /keyless signature does not verify against the trusted root \(Failed to verify certificate chain/);
    refusedBy(t, await legacyOracle(rogue), /certificate signed by unknown authority/, 'cosign refuses the rogue CA too');

    const expired = await sigImage('sig-expired', { subject: SUBJECT, issuer: ISSUER, ca: 'expired' });
    const ve = await verifier.verify(expired, exact);
    t.equal(ve.status, 'rejected');
    t.match(ve.message, /keyless signature does not verify against the trusted root \(Failed to verify certificate chain: certificate is not valid or expired at the specified date/);
    // cosign checks the chain at the certificate's own start (when our test CA's root, made
    // "now", was not yet valid) before it compares the log time: a refusal for time all the same.
    refusedBy(t, await legacyOracle(expired), /certificate has expired or is not yet valid|integrated time outside certificate validity/, 'cosign refuses the expired certificate too');
  });

  await t.test('the same material without the trusted root, or a root without this CA: refused', async (t) => {
    const noRoot = await verifier.verify(good, { keys: [], identities: [{ issuer: ISSUER, subject: SUBJECT }], minSignatures: 1, annotations: {} });
    t.equal(noRoot.status, 'rejected');
    t.match(noRoot.message, /keyless bundle, but no trusted root is configured/);
    const root = JSON.parse(auth.trustedRootJson) as { certificateAuthorities: unknown[] };
    const withoutCa = await verifier.verify(good, req([{ issuer: ISSUER, subject: SUBJECT }], { trustedRoot: JSON.stringify({ ...root, certificateAuthorities: [] }) }));
    t.equal(withoutCa.status, 'rejected');
    t.match(withoutCa.message, /does not verify against the trusted root/);
  });
});
