// What the agent will verify is the engine's own RepoDigests entry: a real dockerd pulls from
// the real test registry (127.0.0.0/8 is an insecure registry for dockerd: HTTPS without
// certificate verification), and that string goes to the verifier as is. Also the moving tag
// end to end: signed v1 pulled, the tag re-pushed to an unsigned image and pulled again.
import t from 'tap';
import { copyFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { SignatureRequirement } from '@bulkhead/shared';
import { SignatureVerifier } from '../../src/signatures/verifier';
import { runDocker, useEngine } from '../../../../test/helpers/engine';
import { buildOciImage, cosignSign, generateCosignKeyPair, pullInto, pushImage, startRegistry } from '../../../../test/helpers/registry';

t.test('RepoDigests from a real engine pull are verified as they are', async (t) => {
  const engine = await useEngine(t);
  const reg = await startRegistry({ t });
  const work = t.testdir();
  const certsDir = join(work, 'certs.d');
  await mkdir(join(certsDir, reg.addr), { recursive: true });
  await copyFile(reg.caFile, join(certsDir, reg.addr, 'ca.crt'));
  const key = await generateCosignKeyPair(work);
  const req: SignatureRequirement = { keys: [{ name: 'prod-signer', pem: key.publicKeyPem }], identities: [], minSignatures: 1, annotations: {} };

  const v1 = await buildOciImage(work, { variant: 'rd-1' });
  const d1 = await pushImage(reg, v1, 'shop/web:release');
  await cosignSign(reg, key, reg.ref('shop/web', d1));
  const ref = reg.ref('shop/web', 'release');
  // The engine is shared by the whole run (both Node passes): images are deterministic, so the
  // same content may already carry a repo digest from another run's registry (another port).
  // Only this registry's repo digests are ours; the images are removed by id afterwards.
  const ours = (digests: string[]) => digests.filter((d) => d.startsWith(`${reg.addr}/`));
  const removeById = async (): Promise<void> => {
    const id = (await runDocker(engine.dockerHost, ['image', 'inspect', '-f', '{{.Id}}', ref])).stdout.trim();
    if (id) await runDocker(engine.dockerHost, ['image', 'rm', '-f', id]);
  };
  t.teardown(removeById);
  const first = ours(await pullInto(engine.dockerHost, ref));
  t.same(first, [`${reg.addr}/shop/web@${d1}`], 'the engine names the pushed digest');
  const verifier = new SignatureVerifier({ certsDir, timeoutMs: 5000 });
  t.teardown(() => verifier.close());
  const ok = await verifier.verify(first[0]!, req);
  t.equal(ok.status, 'verified', ok.message);

  // The tag is re-pushed over the signed version; the next pull runs something unsigned.
  const v2 = await buildOciImage(work, { variant: 'rd-2' });
  const d2 = await pushImage(reg, v2, 'shop/web:release');
  await removeById(); // v1 goes (this run's tag moves to v2 anyway)
  const second = ours(await pullInto(engine.dockerHost, ref));
  t.same(second, [`${reg.addr}/shop/web@${d2}`]);
  const moved = await verifier.verify(second[0]!, req);
  t.equal(moved.status, 'unsigned', moved.message);
  t.equal(moved.message, `no signature by key prod-signer for ${reg.addr}/shop/web@${d2} (the registry has no signatures for this digest)`);
});
