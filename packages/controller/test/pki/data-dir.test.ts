import t from 'tap';
import { X509Certificate } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { createCa, issueServerCert, writeFileAtomic, writeSecretFile } from '@bulkhead/shared';
import { dataDirPaths, initPki, loadPki } from '../../src/pki/data-dir';

t.test('each initialised CA has a subject of its own', async (t) => {
  const dir = t.testdir();
  const a = await initPki(join(dir, 'a'), ['localhost']);
  const b = await initPki(join(dir, 'b'), ['localhost']);
  const subjectA = new X509Certificate(a.ca.certPem).subject;
  const subjectB = new X509Certificate(b.ca.certPem).subject;
  t.match(subjectA, /^CN=Bulkhead Controller CA [0-9a-f]{8}$/);
  t.not(subjectA, subjectB, 'two installations, two CA subjects');
  t.equal(new X509Certificate(a.server.certPem).issuer, subjectA, 'the server certificate names its own CA');
});

t.test('a CA created with the old fixed subject still loads unchanged', async (t) => {
  const dir = join(t.testdir(), 'old');
  const p = dataDirPaths(dir);
  const ca = await createCa('Bulkhead Controller CA');
  const server = await issueServerCert({ ca, sans: ['localhost'] });
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  writeSecretFile(p.caKey, ca.keyPem);
  writeFileAtomic(p.caCert, ca.certPem);
  writeSecretFile(p.serverKey, server.keyPem);
  writeFileAtomic(p.serverCert, server.certPem);
  const loaded = loadPki(dir);
  t.equal(new X509Certificate(loaded.ca.certPem).subject, 'CN=Bulkhead Controller CA');
  t.equal(loaded.ca.certPem, ca.certPem, 'the CA on disk is not rewritten');
});
