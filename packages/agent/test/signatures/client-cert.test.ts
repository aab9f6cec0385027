// Docker's certs.d layout also carries a client certificate (client.cert + client.key): a
// REAL docker-registry 2.8 that requires one (http.tls.clientcas) is reached with it, and
// refuses the handshake without it.
import t from 'tap';
import { copyFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { SignatureVerifier } from '../../src/signatures/verifier';
import { buildOciImage, generateCosignKeyPair, pushImage, runTool, startRegistry } from '../../../../test/helpers/registry';
import { startOwnRegistry } from './own-registry';

t.test('client certificate from certs.d', async (t) => {
  const base = await startRegistry({ t });
  const work = t.testdir();
  const pki = join(work, 'client-pki');
  await mkdir(pki, { recursive: true });
  const run = async (args: string[]): Promise<void> => {
    const r = await runTool('openssl', args, { cwd: pki });
    if (r.code !== 0) throw new Error(`openssl ${args.join(' ')}: ${r.stderr}`);
  };
  await run(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '2', '-subj', '/CN=bulkhead-test-client-ca',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  await run(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', 'client.key', '-out', 'client.csr', '-subj', '/CN=bulkhead-agent']);
  await run(['x509', '-req', '-in', 'client.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'client.cert', '-days', '2']);
  const dir = join(work, 'mtls-registry');
  const addr = await startOwnRegistry(t, base, dir, { httpExtra: `    clientcas:\n      - ${join(pki, 'ca.crt')}` });

  // skopeo pushes with the same layout (c/image reads *.crt, *.cert, *.key from its cert dir).
  const skopeoCerts = join(work, 'skopeo-certs');
  await mkdir(skopeoCerts, { recursive: true });
  await copyFile(base.caFile, join(skopeoCerts, 'ca.crt'));
  await copyFile(join(pki, 'client.cert'), join(skopeoCerts, 'client.cert'));
  await copyFile(join(pki, 'client.key'), join(skopeoCerts, 'client.key'));
  const img = await buildOciImage(work, { variant: 'mtls' });
  const d = await pushImage({ ...base, addr, certDir: skopeoCerts, manifestDigest: async () => img.digest }, img, 'shop/mtls:1');

  const req = { keys: [{ name: 'prod-signer', pem: (await generateCosignKeyPair(work)).publicKeyPem }], identities: [], minSignatures: 1, annotations: {} };
  const withCert = join(work, 'certs.d');
  await mkdir(join(withCert, addr), { recursive: true });
  await copyFile(base.caFile, join(withCert, addr, 'ca.crt'));
  await copyFile(join(pki, 'client.cert'), join(withCert, addr, 'client.cert'));
  await copyFile(join(pki, 'client.key'), join(withCert, addr, 'client.key'));
  const v = new SignatureVerifier({ certsDir: withCert, timeoutMs: 5000 });
  t.teardown(() => v.close());
  const ok = await v.verify(`${addr}/shop/mtls@${d}`, req);
  t.equal(ok.status, 'unsigned', `the registry answered: ${ok.message}`);

  const noCert = join(work, 'certs-no-client.d');
  await mkdir(join(noCert, addr), { recursive: true });
  await copyFile(base.caFile, join(noCert, addr, 'ca.crt'));
  const v2 = new SignatureVerifier({ certsDir: noCert, timeoutMs: 5000 });
  t.teardown(() => v2.close());
  const refused = await v2.verify(`${addr}/shop/mtls@${d}`, req);
  t.equal(refused.status, 'unreachable', refused.message);
  t.match(refused.message, new RegExp(`^registry ${addr.replace(/\./g, '\\.')} unreachable: TLS handshake failed: .*certificate`));
});
