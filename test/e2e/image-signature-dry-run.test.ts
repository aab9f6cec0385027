// The policy dry-run and image signatures, against real components: a real registry (Debian's
// docker-registry 2.8 over HTTPS with a test CA), images signed by cosign 2.5 (`sign --key`),
// pulled by a private dockerd and run there, a real agent process verifying them at its
// reaction door, and a real controller whose dry-run cannot verify anything itself. The agent
// reports the verdicts it decided; the dry-run of an image-signature rule then judges the
// running containers with them — a container signed by the trusted key is clean, one signed
// by another key is a hit naming the key — and a candidate rule trusting a key no agent
// verified with lists every container it applies to as "not verified yet on any host"
// (undecided), never as clean.
import t from 'tap';
import { mkdirSync, copyFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { engineVersions, startBypassStack, type EngineVersion } from '../helpers/authz-bypass-stack';
import { generateCosignKeyPair, pullInto, pushSignedImage, startRegistry, type TestRegistry } from '../helpers/registry';
import { LABEL_ARGS } from '../helpers/engine';
import { apiRequest, waitFor } from '../helpers/processes';

const RULE = 'images.signed';

function policy(reg: TestRegistry, keyFile: string): string {
  return `apiVersion: bulkhead.dev/v1
kind: Policy
metadata: { name: signed-dry-run }
spec:
  rules:
    - id: ${RULE}
      description: shop images are signed by the release key
      severity: critical
      mode: monitor
      action: { type: alert }
      scope: { images: ["${reg.addr}/shop/*"] }
      check:
        type: image-signature
        keys:
          - { name: prod-signer, file: ${JSON.stringify(keyFile)} }
`;
}

interface Undecided { containerName: string; repoDigest: string; reason: string }
interface Hit { containerName: string; message: string }
interface DryRun { rules: Array<{ ruleId: string; hits: Hit[]; undecided: Undecided[] }>; totals: { undecided: number; findings: number } }

t.setTimeout(300_000);

t.test('the dry-run judges image-signature rules with the verdicts agents reported, and says what is not verified yet', async (t) => {
  const dir = t.testdir();
  const reg = await startRegistry({ t });
  const key = await generateCosignKeyPair(dir);
  const other = await generateCosignKeyPair(dir, { pemType: 'ENCRYPTED SIGSTORE PRIVATE KEY' });
  const certsDir = join(dir, 'certs.d');
  mkdirSync(join(certsDir, reg.addr), { recursive: true });
  copyFileSync(reg.caFile, join(certsDir, reg.addr, 'ca.crt'));
  const keyFile = join(dir, 'prod-signer.pub');
  writeFileSync(keyFile, key.publicKeyPem);
  const otherFile = join(dir, 'other-signer.pub');
  writeFileSync(otherFile, other.publicKeyPem);
  const signed = await pushSignedImage(reg, dir, 'shop/web:1', key, { signer: 'cosign', variant: 'web' });
  const byOther = await pushSignedImage(reg, dir, 'shop/other:1', other, { signer: 'cosign', variant: 'other' });

  const s = await startBypassStack(t, {
    version: engineVersions()[0] as EngineVersion,
    policy: () => policy(reg, keyFile),
    agentArgs: ['--registry-certs-dir', certsDir, '--reconcile-interval', '1s'],
    beforePolicy: async (st) => {
      for (const ref of [signed.ref, byOther.ref]) await pullInto(st.engine.dockerHost, ref);
      // Running before the rule: only the reaction door (the agent's sweeps) verifies them.
      await st.dockerOk(['run', '-d', ...LABEL_ARGS, '--name', st.name('signed'), signed.ref, 'sleep', '300']);
      await st.dockerOk(['run', '-d', ...LABEL_ARGS, '--name', st.name('other'), byOther.ref, 'sleep', '300']);
    },
  });
  const dryRun = async (yaml: string): Promise<DryRun['rules'][number] & { totals: DryRun['totals'] }> => {
    const r = await apiRequest<DryRun>(s.ctl.apiBase, 'POST', '/v1/policies:dry-run', s.ctl.caPem, s.ctl.adminKey, yaml, 'application/yaml');
    t.equal(r.status, 200, 'dry-run answered');
    return { ...r.body.rules.find((x) => x.ruleId === RULE)!, totals: r.body.totals };
  };
  const named = <X extends { containerName: string }>(xs: X[], what: string): X[] => xs.filter((x) => x.containerName.replace(/^\//, '') === s.name(what));

  // Until the agent verified and reported, nothing is decided; then both are.
  const rule = await waitFor('the dry-run decided both containers', async () => {
    const r = await dryRun(policy(reg, keyFile));
    return r.undecided.length === 0 && named(r.hits, 'other').length === 1 ? r : undefined;
  }, 60_000);
  t.same(named(rule.hits, 'signed'), [], 'signed by the trusted key: no hit');
  t.match(named(rule.hits, 'other')[0]!.message, /no signature by key prod-signer/, 'signed by another key: a hit naming the key looked for');
  t.equal(rule.totals.undecided, 0);

  // A candidate trusting another key file: no agent verified with it → undecided, with the digest.
  const candidate = await dryRun(policy(reg, otherFile));
  t.same(candidate.hits, [], 'nothing is called a violation on no evidence');
  t.equal(candidate.undecided.length, 2, 'both containers undecided');
  t.equal(candidate.totals.undecided, 2);
  for (const u of candidate.undecided) {
    t.match(u.reason, /^not verified yet on any host/);
    t.match(u.repoDigest, new RegExp(`^${reg.addr.replace(/[.]/g, '\\.')}/shop/(web|other)@sha256:[0-9a-f]{64}$`));
  }
  t.equal(named(candidate.undecided, 'signed')[0]?.repoDigest.endsWith(signed.digest), true, 'the digest the engine runs');
});
