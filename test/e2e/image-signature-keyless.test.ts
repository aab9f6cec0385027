// image-signature end to end with KEYLESS identities (certificate issuer + subject glob, offline
// Sigstore trusted root), against real components only: a real registry (docker-registry 2.8,
// HTTPS, loopback), a private dockerd 20.10 with the agent's authorization plugin, and real
// keyless material made offline (test/helpers/keyless.ts): Sigstore bundles made by the Sigstore
// project's signing client (@sigstore/sign) against its test CA / CT log / Rekor (@sigstore/mock)
// on loopback, attached like cosign's `--new-bundle-format`; and classic keyless `.sig`
// attachments made by REAL cosign 2.5 `sign` against the same CA and log. cosign is the oracle
// for every image (`verify-attestation --new-bundle-format --trusted-root` for bundles, `verify
// --certificate-identity-regexp … --certificate-oidc-issuer …` for `.sig`): Bulkhead must allow
// exactly what cosign verifies for the trusted identity and deny the rest.
import t from 'tap';
import { mkdirSync, copyFileSync } from 'node:fs';
import { join } from 'node:path';
import { engineVersions, startBypassStack, type BypassStack, type EngineVersion } from '../helpers/authz-bypass-stack';
import { buildOciImage, cosignVerifyKeyless, pullInto, pushImage, startRegistry } from '../helpers/registry';
import { attachBundle, COSIGN_SIGN_PREDICATE, cosignSignKeyless, startKeylessAuthority, type KeylessSignOptions } from '../helpers/keyless';
import { LABEL_ARGS } from '../helpers/engine';

const RULE = 'images.signed';

async function create(s: BypassStack, ref: string, what: string): Promise<{ ok: boolean; out: string }> {
  const r = await s.docker(['create', ...LABEL_ARGS, '--name', s.name(what), ref, 'sleep', '60']);
  return { ok: r.code === 0, out: `${r.stdout}${r.stderr}` };
}

const DENIED = (s: BypassStack) => new RegExp(`authorization denied by plugin ${s.plugin}: Bulkhead policy`);

t.test('keyless identities at the authorization door: issuer + subject glob against an offline trusted root', async (t) => {
  const dir = t.testdir();
  const reg = await startRegistry({ t });
  const auth = await startKeylessAuthority({ t });
  const rootFile = await auth.writeTrustedRoot(dir);
  const cosignTrust = await auth.writeCosignTrustEnv(dir);
  const certsDir = join(dir, 'certs.d');
  mkdirSync(join(certsDir, reg.addr), { recursive: true });
  copyFileSync(reg.caFile, join(certsDir, reg.addr, 'ca.crt'));
  const issuer = 'https://token.actions.example.test';
  const subject = 'https://git.example.test/acme/shop/.github/workflows/release.yml@refs/heads/main';
  const keylessPolicy = `apiVersion: bulkhead.dev/v1
kind: Policy
metadata: { name: authz-bypass }
spec:
  rules:
    - id: ${RULE}
      description: shop images are signed by the release workflow
      severity: critical
      mode: enforce
      action: { type: stop, stopTimeoutSeconds: 1 }
      scope: { images: ["${reg.addr}/shop/*"] }
      check:
        type: image-signature
        identities:
          - { issuer: ${JSON.stringify(issuer)}, subjectGlob: "https://git.example.test/acme/*/.github/workflows/release.yml@refs/heads/main" }
        trustedRootFile: ${JSON.stringify(rootFile)}
`;
  // Bundles made by @sigstore/sign, or (names starting "cosign-") a classic `.sig` made by REAL cosign 2.5 `sign`.
  const signed = async (name: string, sign: Omit<KeylessSignOptions, 'image'> | undefined): Promise<string> => {
    const img = await buildOciImage(dir, { variant: `keyless-${name}` });
    const digest = await pushImage(reg, img, `shop/${name}:1`);
    if (sign && name.startsWith('cosign-')) await cosignSignKeyless(reg, auth, cosignTrust, reg.ref(`shop/${name}`, digest), sign);
    else if (sign) await attachBundle(reg, `shop/${name}`, digest, await auth.signImage({ ...sign, image: reg.ref(`shop/${name}`, digest) }));
    return reg.ref(`shop/${name}`, '1');
  };
  const cases: [string, Omit<KeylessSignOptions, 'image'> | undefined, boolean, RegExp][] = [
    ['release', { subject, issuer }, true, /./],
    ['cosign-release', { subject, issuer }, true, /./],
    ['cosign-forked', { subject: 'https://git.example.test/mallory/shop/.github/workflows/release.yml@refs/heads/main', issuer }, false, /keyless signature by https:\/\/git\.example\.test\/mallory\/\S+ .*not a trusted identity/],
    ['forked', { subject: 'https://git.example.test/mallory/shop/.github/workflows/release.yml@refs/heads/main', issuer }, false, /keyless signature by https:\/\/git\.example\.test\/mallory\/\S+ .*not a trusted identity/],
    ['other-idp', { subject, issuer: 'https://evil.example.test' }, false, /from https:\/\/evil\.example\.test, not a trusted identity/],
    ['rogue-ca', { subject, issuer, ca: 'untrusted' }, false, /does not verify against the trusted root/],
    ['unsigned', undefined, false, /no signature by identity/],
  ];
  const refs = new Map<string, string>();
  for (const [name, sign] of cases) refs.set(name, await signed(name, sign));
  // The oracle first: these expectations are cosign's.
  for (const [name, , want] of cases) {
    const classic = name.startsWith('cosign-');
    const o = await cosignVerifyKeyless(reg, refs.get(name)!, {
      identity: '^https://git\\.example\\.test/acme/[^/]*/\\.github/workflows/release\\.yml@refs/heads/main$', identityRegexp: true, issuer, env: cosignTrust,
      ...(classic ? {} : { trustedRootFile: rootFile, attestationType: COSIGN_SIGN_PREDICATE }),
    });
    t.equal(o.ok, want, `cosign ${classic ? 'verify' : 'verify-attestation'} ${name}: ${want ? 'verified' : 'refused'} (${o.stderr.trim().split('\n').pop()})`);
  }

  const s = await startBypassStack(t, {
    version: engineVersions()[0] as EngineVersion,
    policy: () => keylessPolicy,
    agentArgs: ['--registry-certs-dir', certsDir],
    beforePolicy: async (st) => {
      for (const ref of refs.values()) await pullInto(st.engine.dockerHost, ref);
    },
  });
  for (const [name, , want] of cases) {
    const r = await create(s, refs.get(name)!, `keyless-${name}`);
    t.equal(r.ok, want, `${name}: ${want ? 'created' : 'refused'}, as cosign says ${want ? '' : r.out}`);
    if (!want) {
      t.match(r.out, DENIED(s), `${name}: refused by the plugin`);
      t.match(r.out, new RegExp(`${reg.addr.replace(/[.]/g, '\\.')}/shop/${name}@sha256:[0-9a-f]{64}`), `${name}: the denial names the digest`);
    }
  }
  // A denial line is capped at 400 characters at the plugin (long identity URIs and the digest
  // fill most of it); the violation recorded at the controller carries the whole reason.
  const violations = (await s.violations()).filter((v) => v.ruleId === RULE && v.denied);
  for (const [name, , want, why] of cases) {
    if (want) continue;
    const v = violations.find((x) => x.containerName.endsWith(`keyless-${name}`));
    t.match(v?.message, why, `${name}: the recorded violation says why`);
  }
  t.equal(violations.length, cases.filter(([, , want]) => !want).length, 'every denial recorded at the controller');
});
