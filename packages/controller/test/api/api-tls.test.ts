// The operator-supplied API certificate (src/api/api-tls.ts): every start-up
// check with real certificates from a separate CA — a good pair (chain
// included), unreadable files, not PEM, a key of another certificate, an
// encrypted key, loose key modes, expired / not yet valid / expiring soon,
// a client-only certificate — the data-directory default, the reload that
// swaps a listening server's certificate, the controller options, and the
// CLI's system trust store (packages/cli/src/trust.ts).
import t from 'tap';
import { X509Certificate, createHash, createPrivateKey } from 'node:crypto';
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import { connect } from 'node:tls';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { rootCertificates } from 'node:tls';
import { createCa, createCsr, createLogger, issueServerCert, signAgentCsr, type KeyAndCert } from '@bulkhead/shared';
import {
  EXPIRY_WARNING_MS, apiTlsSource, describeApiTls, loadOperatorApiTls, reloadApiTls, splitCertificates, type ApiTlsFiles,
} from '../../src/api/api-tls';
import { resolveControllerOptions } from '../../src/controller-options';
import { SYSTEM_CA_BUNDLES, systemTrust } from '../../../cli/src/trust';

const DAY = 86_400_000;

function fingerprint(pem: string): string {
  return 'sha256:' + createHash('sha256').update(new X509Certificate(pem).raw).digest('hex');
}

async function pki(): Promise<{ ca: KeyAndCert; server: KeyAndCert; other: KeyAndCert }> {
  const ca = await createCa('Operator Test CA');
  const server = await issueServerCert({ ca, sans: ['127.0.0.1', 'api.example.test'], validDays: 90 });
  const other = await issueServerCert({ ca, sans: ['127.0.0.1'] });
  return { ca, server, other };
}

function logSink(): { logger: ReturnType<typeof createLogger>; text: () => string } {
  const lines: string[] = [];
  return { logger: createLogger({ name: 't', level: 'debug', destination: { write: (s: string) => void lines.push(s) } }), text: () => lines.join('') };
}

t.test('loadOperatorApiTls: a good pair, every refusal named with its flag and file', async (t) => {
  const { ca, server, other } = await pki();
  const dir = t.testdir();
  const write = (name: string, text: string, mode = 0o600): string => {
    const p = join(dir, name);
    writeFileSync(p, text);
    chmodSync(p, mode);
    return p;
  };
  const cert = write('api.crt', server.certPem + ca.certPem, 0o644); // leaf + issuer, as ACME tools write fullchain.pem
  const key = write('api.key', server.keyPem);
  const files: ApiTlsFiles = { certFile: cert, keyFile: key };

  const ok = loadOperatorApiTls(files);
  t.equal(ok.summary.source, 'operator');
  t.equal(ok.summary.fingerprint, fingerprint(server.certPem), 'the leaf is summarized');
  t.equal(ok.summary.chainLength, 2);
  t.match(ok.summary.subjectAltName, /IP Address:127\.0\.0\.1/);
  t.match(ok.summary.issuer, /Operator Test CA/);
  t.same(splitCertificates(ok.material.certPem).map(fingerprint), [fingerprint(server.certPem), fingerprint(ca.certPem)], 'the chain is served leaf first');
  t.equal(ok.material.keyPem, server.keyPem);

  const refuse = (f: Partial<ApiTlsFiles>, re: RegExp, why: string, o = {}) =>
    t.throws(() => loadOperatorApiTls({ ...files, ...f }, o), { code: 'BK_ERR_CONFIG_INVALID', message: re }, why);

  refuse({ keyFile: write('other.key', other.keyPem) }, new RegExp(`--api-tls-key .*other\\.key does not match --api-tls-cert .*api\\.crt: the key's public key is not the certificate's`), 'a key of another certificate');
  refuse({ certFile: join(dir, 'missing.crt') }, /cannot read --api-tls-cert .*missing\.crt: no such file/, 'missing certificate');
  refuse({ keyFile: join(dir, 'missing.key') }, /cannot read --api-tls-key .*missing\.key: no such file/, 'missing key');
  mkdirSync(join(dir, 'adir'), { mode: 0o700 });
  refuse({ certFile: join(dir, 'adir') }, /cannot read --api-tls-cert .*adir: is a directory/, 'a directory');
  refuse({ certFile: write('key-as-cert.crt', server.keyPem) }, /--api-tls-cert .* contains no PEM certificate/, 'a key where the certificate belongs');
  refuse({ certFile: write('bad.crt', '-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n') }, /--api-tls-cert .*bad\.crt: the first certificate cannot be parsed/, 'garbage in PEM armour');
  refuse({ keyFile: write('cert-as-key.key', server.certPem) }, /--api-tls-key .* is not a PEM private key/, 'a certificate where the key belongs');
  const encrypted = createPrivateKey(server.keyPem).export({ format: 'pem', type: 'pkcs8', cipher: 'aes-256-cbc', passphrase: 'secret' }) as string;
  refuse({ keyFile: write('enc.key', encrypted) }, /--api-tls-key .*enc\.key is an encrypted private key; the controller cannot prompt for a passphrase/, 'an encrypted key');
  refuse({ keyFile: write('world.key', server.keyPem, 0o644) }, /--api-tls-key .*world\.key is accessible to every user \(mode 0644\); run chmod 600/, 'a world-readable key');
  refuse({ keyFile: write('world-w.key', server.keyPem, 0o602) }, /mode 0602/, 'a world-writable key');

  // Group-readable (0640 root:ssl-cert): accepted, with a warning.
  const log = logSink();
  const grp = loadOperatorApiTls({ ...files, keyFile: write('group.key', server.keyPem, 0o640) }, { logger: log.logger });
  t.equal(grp.summary.fingerprint, ok.summary.fingerprint);
  t.match(log.text(), /"mode":"0640".*readable by its group/);

  // Validity, judged by the clock it is given.
  const notAfter = ok.summary.notAfter.getTime();
  refuse({}, /--api-tls-cert .*api\.crt expired at \d{4}-.*renew it/, 'expired', { now: () => new Date(notAfter + 1000) });
  refuse({}, /is not valid before \d{4}-.*check this host's clock/, 'not yet valid', { now: () => new Date(Date.now() - 2 * DAY) });
  const soon = logSink();
  loadOperatorApiTls(files, { now: () => new Date(notAfter - EXPIRY_WARNING_MS + DAY), logger: soon.logger });
  t.match(soon.text(), /"daysLeft":29\b.*expires soon/, 'a warning 30 days ahead');
  const fine = logSink();
  loadOperatorApiTls(files, { logger: fine.logger });
  t.equal(fine.text(), '', 'nothing to say about a healthy certificate');

  // A real expired certificate (notBefore < notAfter < now), without any injected clock.
  const expired = await issueServerCert({ ca, sans: ['127.0.0.1'], validDays: -0.0001 });
  refuse({ certFile: write('expired.crt', expired.certPem), keyFile: write('expired.key', expired.keyPem) }, /expired at/, 'expired for real');

  // A client certificate (extended key usage clientAuth only) cannot serve TLS.
  const csr = await createCsr('host');
  const client = await signAgentCsr({ ca, csrPem: csr.csrPem, agentId: 'agt_0123' });
  refuse({ certFile: write('client.crt', client.certPem), keyFile: write('client.key', csr.keyPem) }, /is not for TLS servers: its extended key usage \(1\.3\.6\.1\.5\.5\.7\.3\.2\) lacks serverAuth/, 'clientAuth only');
});

t.test('data-directory default, source and reload on a listening server', async (t) => {
  const { ca, server, other } = await pki();
  const dir = t.testdir();
  const cert = join(dir, 'api.crt');
  const key = join(dir, 'api.key');
  writeFileSync(cert, server.certPem);
  writeFileSync(key, server.keyPem, { mode: 0o600 });

  let dataDirReads = 0;
  const fromDataDir = apiTlsSource(undefined, () => (dataDirReads++, other));
  const d = fromDataDir.load();
  t.equal(d.summary.source, 'data-dir');
  t.equal(d.summary.fingerprint, fingerprint(other.certPem));
  t.equal(d.material, other);
  fromDataDir.load();
  t.equal(dataDirReads, 2, 're-read on every load (a reload picks up a replaced server.crt)');
  t.equal(describeApiTls(server, 'data-dir').chainLength, 1);

  const source = apiTlsSource({ certFile: cert, keyFile: key }, () => {
    throw new Error('the data directory must not be read when operator files are given');
  });
  const first = source.load();
  const https: Server = createServer({ key: first.material.keyPem, cert: first.material.certPem, minVersion: 'TLSv1.2' }, (_req, res) => res.end('ok'));
  await new Promise<void>((r) => https.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => https.close(() => r())));
  const port = (https.address() as AddressInfo).port;
  const served = (o: { maxVersion?: 'TLSv1.1' | 'TLSv1.2' } = {}) =>
    new Promise<string>((resolve, reject) => {
      const s = connect({ host: '127.0.0.1', port, ca: ca.certPem, ...(o.maxVersion === 'TLSv1.1' ? { minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT@SECLEVEL=0' } : {}) }, () => {
        const fp = 'sha256:' + createHash('sha256').update(s.getPeerCertificate().raw).digest('hex');
        s.end();
        resolve(fp);
      });
      s.on('error', reject);
    });
  t.equal(await served(), fingerprint(server.certPem));

  // Rotate: a new certificate and key in place, then reload.
  writeFileSync(cert, other.certPem);
  writeFileSync(key, other.keyPem, { mode: 0o600 });
  const summary = reloadApiTls(source, https);
  t.equal(summary.fingerprint, fingerprint(other.certPem));
  t.equal(await served(), fingerprint(other.certPem), 'new connections get the new certificate');
  const old = await served({ maxVersion: 'TLSv1.1' }).then(() => 'accepted', (e: NodeJS.ErrnoException) => e.code);
  t.equal(old, 'ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION', 'TLS 1.1 is still refused after the swap');

  // A broken pair: refused, and the server keeps what it had.
  writeFileSync(key, server.keyPem, { mode: 0o600 });
  t.throws(() => reloadApiTls(source, https), { code: 'BK_ERR_CONFIG_INVALID', message: /does not match/ });
  t.equal(await served(), fingerprint(other.certPem), 'still the previous certificate');
});

t.test('controller options: --api-tls-cert and --api-tls-key go together', async (t) => {
  t.equal(resolveControllerOptions({ dataDir: '/d' }).apiTls, undefined, 'default: the data directory certificate');
  t.equal(resolveControllerOptions({ dataDir: '/d', apiTlsCert: '', apiTlsKey: '' }).apiTls, undefined, 'empty values (an empty env var) count as unset');
  t.same(resolveControllerOptions({ dataDir: '/d', apiTlsCert: '/c.pem', apiTlsKey: '/k.pem' }).apiTls, { certFile: '/c.pem', keyFile: '/k.pem' });
  t.throws(() => resolveControllerOptions({ dataDir: '/d', apiTlsCert: '/c.pem' }), { code: 'BK_ERR_CONFIG_INVALID', message: /go together: got only --api-tls-cert/ });
  t.throws(() => resolveControllerOptions({ dataDir: '/d', apiTlsKey: '/k.pem' }), { code: 'BK_ERR_CONFIG_INVALID', message: /got only --api-tls-key/ });
});

t.test('CLI system trust store: SSL_CERT_FILE, the usual bundle paths, else Node\'s list', async (t) => {
  const { ca } = await pki();
  const files = new Map<string, string>();
  const read = (p: string): string => {
    const v = files.get(p);
    if (v === undefined) throw Object.assign(new Error('nope'), { code: 'ENOENT' });
    return v;
  };
  t.same(systemTrust({}, read), { ca: [...rootCertificates], bundle: undefined }, 'no bundle anywhere: Node\'s own roots');

  files.set('/etc/pki/tls/certs/ca-bundle.crt', `# comment\n${ca.certPem}`);
  const rhel = systemTrust({}, read);
  t.equal(rhel.bundle, '/etc/pki/tls/certs/ca-bundle.crt');
  t.equal(rhel.ca.length, rootCertificates.length + 1);
  t.equal(rhel.ca.at(-1)!.trim(), ca.certPem.trim(), 'the bundle adds to Node\'s roots');

  files.set(SYSTEM_CA_BUNDLES[0]!, 'no certificates in here');
  t.equal(systemTrust({}, read).bundle, '/etc/pki/tls/certs/ca-bundle.crt', 'a bundle without certificates is skipped');

  files.set('/opt/corp.pem', ca.certPem + ca.certPem);
  const explicit = systemTrust({ SSL_CERT_FILE: '/opt/corp.pem' }, read);
  t.equal(explicit.bundle, '/opt/corp.pem', 'SSL_CERT_FILE wins');
  t.equal(explicit.ca.length, rootCertificates.length + 2);
  t.equal(systemTrust({ SSL_CERT_FILE: '' }, read).bundle, '/etc/pki/tls/certs/ca-bundle.crt', 'empty means unset');
  t.throws(() => systemTrust({ SSL_CERT_FILE: '/opt/typo.pem' }, read), { message: 'cannot read SSL_CERT_FILE /opt/typo.pem: ENOENT' }, 'a named bundle that cannot be read is an error, not a silent fallback');
  // NODE_EXTRA_CA_CERTS is kept (Node drops it once a CA list is passed explicitly).
  files.set('/opt/extra.pem', ca.certPem);
  t.equal(systemTrust({ NODE_EXTRA_CA_CERTS: '/opt/extra.pem' }, read).ca.length, rootCertificates.length + 2, 'extra + bundle');
  t.equal(systemTrust({ NODE_EXTRA_CA_CERTS: '/opt/missing.pem' }, read).ca.length, rootCertificates.length + 1, 'an unreadable extra file adds nothing');
  t.ok(systemTrust({}).ca.length >= rootCertificates.length, 'the real file system works too');
});
