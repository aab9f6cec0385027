import t from 'tap';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { certFingerprint, createCa, issueServerCert } from '@bulkhead/shared';
import { acceptTrustBundle, saveTrust, trustedFingerprints } from '../../src/link/trust-bundle';

t.test('a rotation bundle is taken; a bundle that is not one is refused', async (t) => {
  const oldCa = await createCa('old');
  const newCa = await createCa('new');
  const stranger = await createCa('stranger');
  const both = newCa.certPem + oldCa.certPem;

  const start = acceptTrustBundle(oldCa.certPem, { caPem: oldCa.certPem + newCa.certPem, issuingCaFingerprint: certFingerprint(oldCa.certPem) });
  t.ok(start.changed, 'a new CA beside the old one is a change');
  t.same(start.fingerprints, [certFingerprint(oldCa.certPem), certFingerprint(newCa.certPem)]);
  t.equal(start.issuingCaPem.trim(), oldCa.certPem.trim());

  const same = acceptTrustBundle(oldCa.certPem + newCa.certPem, { caPem: both, issuingCaFingerprint: certFingerprint(newCa.certPem) });
  t.notOk(same.changed, 'the same CAs in another order are no change');

  const finish = acceptTrustBundle(both, { caPem: newCa.certPem, issuingCaFingerprint: certFingerprint(newCa.certPem) });
  t.ok(finish.changed);
  t.same(trustedFingerprints(finish.caPem), [certFingerprint(newCa.certPem)]);

  t.throws(() => acceptTrustBundle(oldCa.certPem, { caPem: stranger.certPem, issuingCaFingerprint: certFingerprint(stranger.certPem) }), /keeps none of the CAs this agent trusts/, 'an unrelated set of CAs is refused');
  t.throws(() => acceptTrustBundle(oldCa.certPem, { caPem: both, issuingCaFingerprint: certFingerprint(stranger.certPem) }), /does not hold its issuing CA/);
  t.throws(() => acceptTrustBundle(oldCa.certPem, { caPem: '', issuingCaFingerprint: '' }), /1 to 8 CA certificates/);
  const leaf = await issueServerCert({ ca: oldCa, sans: ['localhost'] });
  t.throws(() => acceptTrustBundle(oldCa.certPem, { caPem: oldCa.certPem + leaf.certPem, issuingCaFingerprint: certFingerprint(oldCa.certPem) }), /is not a CA certificate/, 'a leaf certificate is not a CA');
});

t.test('saveTrust writes ca.crt 0644 and identity.json 0600', async (t) => {
  const dir = t.testdir();
  const ca = await createCa('x');
  saveTrust(dir, ca.certPem, { agentId: 'agt_1', controller: 'h:1', caFingerprint: certFingerprint(ca.certPem), enrolledAt: '', certNotAfter: '' });
  t.equal(readFileSync(join(dir, 'ca.crt'), 'utf8'), ca.certPem);
  t.equal(statSync(join(dir, 'ca.crt')).mode & 0o777, 0o644);
  t.equal(statSync(join(dir, 'identity.json')).mode & 0o777, 0o600);
});
