// CertRenewer against a fake link and a real CA: retries with backoff when
// the controller refuses, swaps the files only once a certificate arrives,
// and finishes a swap a crash interrupted.
import t from 'tap';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { X509Certificate, createPublicKey } from 'node:crypto';
import { createCa, createLogger, describeCert, issueAgentCertWithDates, signAgentCsr, writeFileAtomic, writeSecretFile, createCsr } from '@bulkhead/shared';
import { CertRenewer, renewalPaths, type RenewalAnswer, type RenewalLink } from '../../src/enroll/cert-renewal';
import { saveCredentials, type AgentCredentials } from '../../src/state/agent-state';

async function setup(t: { testdir(): string }) {
  const dir = t.testdir();
  const ca = await createCa('test CA');
  const now = Date.now();
  const cur = await issueAgentCertWithDates(ca, 'agt_1', new Date(now - 10_000), new Date(now + 3_600_000));
  const creds: AgentCredentials = {
    identity: { agentId: 'agt_1', controller: 'ctl:7443', caFingerprint: 'sha256:' + '0'.repeat(64), enrolledAt: new Date(now).toISOString(), certNotAfter: new Date(now + 3_600_000).toISOString() },
    keyPem: cur.keyPem, certPem: cur.certPem, caPem: ca.certPem,
  };
  saveCredentials(dir, creds);
  const lines: Record<string, unknown>[] = [];
  const logger = createLogger({ name: 't', level: 'info', destination: { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) } });
  return { dir, ca, creds, lines, logger };
}

class FakeLink implements RenewalLink {
  answers: (RenewalAnswer | Error | ((csrPem: string) => Promise<RenewalAnswer>))[] = [];
  csrs: string[] = [];
  used: AgentCredentials[] = [];
  private ls = new Set<() => void>();
  connected(): boolean {
    return true;
  }
  onConnected(l: () => void): () => void {
    this.ls.add(l);
    return () => this.ls.delete(l);
  }
  async requestRenewal(csrPem: string): Promise<RenewalAnswer> {
    this.csrs.push(csrPem);
    const a = this.answers.shift();
    if (!a) throw new Error('no answer scripted');
    if (a instanceof Error) throw a;
    return typeof a === 'function' ? a(csrPem) : a;
  }
  useCredentials(c: AgentCredentials): void {
    this.used.push(c);
    for (const l of this.ls) l();
  }
}

t.test('a refusal is retried with backoff; success swaps the files and reconnects', async (t) => {
  const { dir, ca, creds, lines, logger } = await setup(t);
  const link = new FakeLink();
  link.answers.push({ certificatePem: '', notAfterMs: 0, serial: '', error: 'BK_ERR_CONTROLLER_UNAVAILABLE: busy' });
  const renewer = new CertRenewer({ stateDir: dir, credentials: creds, link, logger, options: { renewBeforeMs: 2 * 3_600_000, minRetryMs: 200, maxRetryMs: 400 }, random: () => 1 });
  t.teardown(() => renewer.stop());
  // The second request gets a real certificate for whatever key the renewer made.
  link.answers.push(async (csrPem) => {
    const x = await signAgentCsr({ ca, csrPem, agentId: 'agt_1', validMs: 10 * 3_600_000 }); // next renewal 8 h away
    return { certificatePem: x.certPem, notAfterMs: x.notAfter.getTime(), serial: x.serial, error: '' };
  });
  renewer.start(); // due at once: less than renewBeforeMs is left
  while (link.used.length === 0) await new Promise((r) => setTimeout(r, 20));

  const warn = lines.find((l) => l['msg'] === 'certificate renewal failed; will retry');
  t.match(warn, { level: 40, code: 'BK_ERR_CONTROLLER_UNAVAILABLE', attempt: 1, retryInMs: 200 }, 'the failure is logged with its retry delay');
  t.equal(link.csrs.length, 2, 'one retry');
  const used = link.used[0]!;
  t.equal(readFileSync(join(dir, 'agent.crt'), 'utf8'), used.certPem);
  t.equal(readFileSync(join(dir, 'agent.key'), 'utf8'), used.keyPem);
  t.equal(statSync(join(dir, 'agent.key')).mode & 0o777, 0o600);
  t.not(used.keyPem, creds.keyPem, 'a new key');
  t.equal(new X509Certificate(used.certPem).publicKey.export({ type: 'spki', format: 'der' }).toString('hex'),
    createPublicKey(used.keyPem).export({ type: 'spki', format: 'der' }).toString('hex'), 'the certificate is for the key on disk');
  t.notOk(existsSync(renewalPaths(dir).prevKey), 'old key removed once the new certificate is in use');
  t.notOk(existsSync(renewalPaths(dir).nextKey));
});

t.test('a certificate for another key or agent is not installed', async (t) => {
  const { dir, ca, creds, logger } = await setup(t);
  const link = new FakeLink();
  const other = await createCsr('x');
  const wrongKey = await signAgentCsr({ ca, csrPem: other.csrPem, agentId: 'agt_1' });
  link.answers.push({ certificatePem: wrongKey.certPem, notAfterMs: wrongKey.notAfter.getTime(), serial: wrongKey.serial, error: '' });
  const renewer = new CertRenewer({ stateDir: dir, credentials: creds, link, logger, options: { renewBeforeMs: 2 * 3_600_000, minRetryMs: 60_000, maxRetryMs: 60_000 } });
  t.teardown(() => renewer.stop());
  await renewer.renewNow();
  t.equal(link.used.length, 0, 'not used');
  t.equal(readFileSync(join(dir, 'agent.crt'), 'utf8'), creds.certPem, 'current certificate untouched');
  t.equal(readFileSync(join(dir, 'agent.key'), 'utf8'), creds.keyPem, 'current key untouched');
});

t.test('an interrupted swap is finished at start', async (t) => {
  const { dir, ca, creds, logger } = await setup(t);
  const next = await createCsr('h');
  const issued = await signAgentCsr({ ca, csrPem: next.csrPem, agentId: 'agt_1', validMs: 7_200_000 });
  const p = renewalPaths(dir);
  writeSecretFile(p.nextKey, next.keyPem);
  writeFileAtomic(p.nextCert, issued.certPem);
  const link = new FakeLink();
  const renewer = new CertRenewer({ stateDir: dir, credentials: creds, link, logger });
  renewer.start();
  t.teardown(() => renewer.stop());
  t.equal(link.used.length, 1, 'reconnects with the renewed pair');
  t.equal(describeCert(readFileSync(p.cert, 'utf8')).serial, issued.serial);
  t.equal(readFileSync(p.key, 'utf8'), next.keyPem);
  t.notOk(existsSync(p.nextKey));
});
