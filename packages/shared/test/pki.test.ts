import t from 'tap';
import { X509Certificate } from 'node:crypto';
import {
  createCa, issueServerCert, createCsr, signAgentCsr, certFingerprint, normalizeFingerprint, agentIdFromCert,
  describeCert, issueAgentCertWithDates, canonicalSerial, backdateMs,
} from '../src/pki/pki';
import { BulkheadError } from '../src/errors/registry';

t.test('CA, server and agent certificates chain correctly', async (t) => {
  const ca = await createCa('Test CA');
  const caX = new X509Certificate(ca.certPem);
  t.ok(caX.ca, 'CA flag set');
  t.equal(caX.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1', 'P-256 key');

  const srv = await issueServerCert({ ca, sans: ['localhost', '127.0.0.1', '::1'] });
  const srvX = new X509Certificate(srv.certPem);
  t.ok(srvX.verify(caX.publicKey), 'server cert signed by CA');
  t.match(srvX.subjectAltName, /DNS:localhost/);
  t.match(srvX.subjectAltName, /IP Address:127\.0\.0\.1/);
  t.equal(srvX.checkIP('127.0.0.1'), '127.0.0.1');
  t.notOk(srvX.ca);

  const { keyPem, csrPem } = await createCsr('host-a');
  t.match(keyPem, /BEGIN PRIVATE KEY/);
  const issued = await signAgentCsr({ ca, csrPem, agentId: 'agt_abc', validDays: 1 });
  const agX = new X509Certificate(issued.certPem);
  t.ok(agX.verify(caX.publicKey), 'agent cert signed by CA');
  t.equal(agX.subject, 'CN=agt_abc', 'identity is the controller-chosen id, not the CSR subject');
  t.equal(agentIdFromCert({ subjectaltname: agX.subjectAltName }), 'agt_abc');
  t.equal(issued.serial, agX.serialNumber.toLowerCase());
  t.ok(issued.notAfter.getTime() - Date.now() < 86_400_000 + 1000);
  t.ok(agX.checkPrivateKey(require('node:crypto').createPrivateKey(keyPem)), 'cert matches the agent key');
  const d = describeCert(issued.certPem);
  t.equal(d.serial, issued.serial);
});

t.test('serials: one spelling everywhere, never a leading zero byte', async (t) => {
  t.equal(canonicalSerial('00AB01'), 'ab01');
  t.equal(canonicalSerial('0000'), '0');
  t.equal(canonicalSerial('7f00'), '7f00');
  // DER drops a leading zero byte, so a serial generated with one would be stored differently
  // from what the agent's TLS certificate reports (1 enrollment in 128 was refused before).
  const ca = await createCa();
  for (let i = 0; i < 64; i++) {
    const { csrPem } = await createCsr('h');
    const issued = await signAgentCsr({ ca, csrPem, agentId: 'agt_s' });
    const reported = new X509Certificate(issued.certPem).serialNumber;
    if (issued.serial !== reported.toLowerCase() || reported.length !== 32) {
      t.fail(`serial ${issued.serial} vs certificate ${reported}`);
      return;
    }
  }
  t.pass('64 serials are 16 significant bytes and stored as the certificate reports them');
});

t.test('CSR problems are refused with BK_ERR_CSR_INVALID', async (t) => {
  const ca = await createCa();
  await t.rejects(signAgentCsr({ ca, csrPem: 'garbage', agentId: 'agt_x' }), { code: 'BK_ERR_CSR_INVALID' });
  const { csrPem } = await createCsr('h');
  // Flip a byte inside the signature to break it.
  const b64 = csrPem.split('\n').filter((l) => l && !l.startsWith('-----')).join('');
  const der = Buffer.from(b64, 'base64');
  der[der.length - 5] = der[der.length - 5]! ^ 0xff;
  const broken = `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`;
  await t.rejects(signAgentCsr({ ca, csrPem: broken, agentId: 'agt_x' }), BulkheadError);
  await t.rejects(issueServerCert({ ca, sans: [] }), { code: 'BK_ERR_CONFIG_INVALID' });
});

t.test('fingerprints', async (t) => {
  const ca = await createCa();
  const fp = certFingerprint(ca.certPem);
  t.match(fp, /^sha256:[0-9a-f]{64}$/);
  const hex = fp.slice(7);
  t.equal(normalizeFingerprint(hex.toUpperCase().match(/../g)!.join(':')), fp);
  t.equal(normalizeFingerprint('SHA256:' + hex), fp);
  t.throws(() => normalizeFingerprint('sha256:1234'), { code: 'BK_ERR_CONFIG_INVALID' });
  t.not(certFingerprint((await createCa()).certPem), fp, 'distinct CAs, distinct fingerprints');
});

t.test('explicit-date agent certificates (for expiry tests)', async (t) => {
  const ca = await createCa();
  const past = await issueAgentCertWithDates(ca, 'agt_old', new Date(Date.now() - 10 * 86_400_000), new Date(Date.now() - 86_400_000));
  const x = new X509Certificate(past.certPem);
  t.ok(new Date(x.validTo).getTime() < Date.now(), 'already expired');
  t.equal(agentIdFromCert({ subjectaltname: x.subjectAltName }), 'agt_old');
  t.equal(agentIdFromCert({ subjectaltname: 'DNS:example.com' }), undefined);
});

t.test('notBefore is backdated by an hour (a tenth of short lifetimes, at least a minute) for peers whose clock is behind', async (t) => {
  t.equal(backdateMs(90 * 86_400_000), 3_600_000);
  t.equal(backdateMs(2 * 3_600_000), 720_000);
  t.equal(backdateMs(120_000), 60_000);
  const ca = await createCa('skew', 3650);
  const from = new Date(new X509Certificate(ca.certPem).validFrom).getTime();
  t.ok(Math.abs(Date.now() - 3_600_000 - from) < 5_000, `CA valid from an hour ago (${new Date(from).toISOString()})`);
});
