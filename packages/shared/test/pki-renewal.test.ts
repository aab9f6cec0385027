// The PKI pieces certificate renewal relies on: a lifetime in milliseconds,
// public-key fingerprints, and refusing a CSR that reuses the current key.
import t from 'tap';
import { certPublicKeyFingerprint, createCa, createCsr, describeCert, signAgentCsr } from '../src/index';

t.test('validMs, key fingerprints and notKeyOf', async (t) => {
  const ca = await createCa('test CA');
  const a = await createCsr('h');
  const before = Date.now();
  const first = await signAgentCsr({ ca, csrPem: a.csrPem, agentId: 'agt_1', validMs: 5000 });
  t.ok(Math.abs(first.notAfter.getTime() - (before + 5000)) < 1000, 'validMs sets the lifetime');
  t.ok(Math.abs(describeCert(first.certPem).notAfter.getTime() - first.notAfter.getTime()) < 1000);

  const again = await signAgentCsr({ ca, csrPem: a.csrPem, agentId: 'agt_1' });
  t.equal(certPublicKeyFingerprint(again.certPem), certPublicKeyFingerprint(first.certPem), 'same key, same fingerprint');
  t.not(certPublicKeyFingerprint(first.certPem), certPublicKeyFingerprint(ca.certPem));
  await t.rejects(signAgentCsr({ ca, csrPem: a.csrPem, agentId: 'agt_1', notKeyOf: first.certPem }), { code: 'BK_ERR_CSR_INVALID', message: /new key pair/ });

  const b = await createCsr('h');
  const renewed = await signAgentCsr({ ca, csrPem: b.csrPem, agentId: 'agt_1', notKeyOf: Buffer.from(new (await import('node:crypto')).X509Certificate(first.certPem).raw) });
  t.not(certPublicKeyFingerprint(renewed.certPem), certPublicKeyFingerprint(first.certPem), 'a new key is accepted (DER form of notKeyOf too)');
});
