// End to end: the HTTPS API with an operator-supplied certificate.
// A separate CA (not the controller's) issues a server certificate for
// 127.0.0.1; the built controller serves it as a real process, and:
//   - the API presents exactly that certificate (peer fingerprint), while
//     agents' gRPC keeps the controller CA's certificate;
//   - the `bulkhead` CLI works with the operator CA (--ca / BULKHEAD_CA, or
//     the system trust store via SSL_CERT_FILE) and is refused without it;
//   - TLS 1.1 is refused, TLS 1.2 accepted;
//   - SIGHUP swaps in a renewed certificate, and keeps the old one when the
//     new pair is broken;
//   - a key that does not match, a lone --api-tls-cert, a world-readable
//     key and an expired certificate stop `serve` at start with the
//     documented BK_ERR_CONFIG_INVALID errors (exit 2).
import t from 'tap';
import { X509Certificate, createHash } from 'node:crypto';
import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect, type ConnectionOptions } from 'node:tls';
import { createCa, issueServerCert, type KeyAndCert } from '@bulkhead/shared';
import { CONTROLLER_BIN, Daemon, OPS_BIN, readText, run, waitFor } from '../helpers/processes';
import { tempRoot } from './stack';

function fingerprintOf(pem: string): string {
  return 'sha256:' + createHash('sha256').update(new X509Certificate(pem).raw).digest('hex');
}

/** The fingerprint of the certificate the server at `port` presents (verified against `ca` when given). */
function servedFingerprint(port: number, o: Partial<ConnectionOptions> = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port, servername: undefined, ...o }, () => {
      const fp = 'sha256:' + createHash('sha256').update(s.getPeerCertificate().raw).digest('hex');
      s.end();
      resolve(fp);
    });
    s.on('error', reject);
  });
}

t.test('operator-supplied API certificate', async (t) => {
  const root = tempRoot();
  t.teardown(root.cleanup);
  const dataDir = join(root.dir, 'controller');
  const init = await run(CONTROLLER_BIN, ['init', '--data-dir', dataDir, '--json']);
  t.equal(init.code, 0, init.stderr);
  const info = JSON.parse(init.stdout) as { caCert: string; adminApiKey: string };
  const controllerCaPem = readText(info.caCert);
  const dataDirServerFp = fingerprintOf(readText(join(dataDir, 'server.crt')));

  // A CA that has nothing to do with the controller's, and a server certificate for 127.0.0.1.
  const opCa = await createCa('Operator Corp Root');
  const opServer = await issueServerCert({ ca: opCa, sans: ['127.0.0.1'], validDays: 30 });
  const file = (name: string, text: string, mode = 0o600): string => {
    const p = join(root.dir, name);
    writeFileSync(p, text);
    chmodSync(p, mode);
    return p;
  };
  const opCaFile = file('operator-ca.crt', opCa.certPem, 0o644);
  const certFile = file('api.crt', opServer.certPem, 0o644);
  const keyFile = file('api.key', opServer.keyPem);

  // Configured through the environment, as the systemd unit's EnvironmentFile would.
  const daemon = Daemon.start('controller', CONTROLLER_BIN, ['serve', '--data-dir', dataDir, '--grpc-listen', '127.0.0.1:0', '--api-listen', '127.0.0.1:0', '--no-metrics'], {
    BULKHEAD_API_TLS_CERT: certFile,
    BULKHEAD_API_TLS_KEY: keyFile,
  });
  t.teardown(() => daemon.stop());
  const ready = await Promise.race([
    daemon.waitForLog((l) => l['msg'] === 'controller ready'),
    daemon.exited.then((c) => {
      throw new Error(`controller exited with ${c}: ${daemon.raw}`);
    }),
  ]);
  const apiPort = ready['apiPort'] as number;
  const grpcPort = ready['grpcPort'] as number;
  t.match(ready['apiCertificate'], { source: 'operator', fingerprint: fingerprintOf(opServer.certPem) }, 'the ready line names the certificate served');

  // ---- which certificate is served where -------------------------------------------------
  t.equal(await servedFingerprint(apiPort, { ca: opCa.certPem }), fingerprintOf(opServer.certPem), 'the API presents the operator certificate, verified by the operator CA');
  const withControllerCa = await servedFingerprint(apiPort, { ca: controllerCaPem }).then(() => 'verified', (e: NodeJS.ErrnoException) => e.code);
  t.match(withControllerCa, /UNABLE_TO_VERIFY_LEAF_SIGNATURE|SELF_SIGNED|UNABLE_TO_GET_ISSUER/, 'the controller CA does not vouch for the API any more');
  t.equal(
    await servedFingerprint(grpcPort, { ca: controllerCaPem, ALPNProtocols: ['h2'] }),
    dataDirServerFp,
    'agents\' gRPC still presents the controller CA\'s server certificate',
  );

  // ---- TLS versions ----------------------------------------------------------------------
  const tls11 = await servedFingerprint(apiPort, { ca: opCa.certPem, minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT@SECLEVEL=0' }).then(
    () => 'accepted',
    (e: NodeJS.ErrnoException) => e.code,
  );
  t.equal(tls11, 'ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION', 'TLS 1.1 is refused by the server (protocol version alert)');
  t.equal(await servedFingerprint(apiPort, { ca: opCa.certPem, maxVersion: 'TLSv1.2' }), fingerprintOf(opServer.certPem), 'TLS 1.2 is accepted');

  // ---- the CLI -----------------------------------------------------------------------------
  const api = `https://127.0.0.1:${apiPort}`;
  const cli = (args: string[], env: Record<string, string>) =>
    run(OPS_BIN, args, { BULKHEAD_API: api, BULKHEAD_API_KEY: info.adminApiKey, BULKHEAD_CA: '', SSL_CERT_FILE: '', XDG_CONFIG_HOME: join(root.dir, 'cfg'), ...env });
  const withOpCa = await cli(['agents'], { BULKHEAD_CA: opCaFile });
  t.equal(withOpCa.code, 0, `BULKHEAD_CA=operator CA: ${withOpCa.stderr}`);
  t.match(withOpCa.stdout, /no agents|AGENT|ID/);
  const flag = await cli(['--ca', opCaFile, '--json', 'violations'], {});
  t.equal(flag.code, 0, `--ca operator CA: ${flag.stderr}`);
  t.same(JSON.parse(flag.stdout), { items: [] });
  const systemStore = await cli(['agents'], { SSL_CERT_FILE: opCaFile });
  t.equal(systemStore.code, 0, `no --ca, the operator CA in the system bundle (SSL_CERT_FILE): ${systemStore.stderr}`);
  const untrusted = await cli(['agents'], {});
  t.equal(untrusted.code, 3, 'no CA that issued it: cannot connect (exit 3)');
  t.match(untrusted.stderr, /TLS handshake with https:\/\/127\.0\.0\.1:\d+ failed: .*pass the CA certificate that issued the API's certificate with --ca or BULKHEAD_CA/);
  const wrongCa = await cli(['agents'], { BULKHEAD_CA: info.caCert });
  t.equal(wrongCa.code, 3, 'the controller CA pinned with --ca no longer verifies the API');
  const badBundle = await cli(['agents'], { SSL_CERT_FILE: join(root.dir, 'nope.pem') });
  t.equal(badBundle.code, 2, 'an unreadable SSL_CERT_FILE is a usage error');
  t.match(badBundle.stderr, /cannot read SSL_CERT_FILE .*nope\.pem: ENOENT/);

  // ---- SIGHUP: rotation without a restart ----------------------------------------------------
  const renewed = await issueServerCert({ ca: opCa, sans: ['127.0.0.1'], validDays: 60 });
  writeFileSync(certFile, renewed.certPem);
  writeFileSync(keyFile, renewed.keyPem);
  daemon.child.kill('SIGHUP');
  const reloaded = await daemon.waitForLog((l) => l['msg'] === 'API certificate reloaded');
  t.match(reloaded['apiCertificate'], { fingerprint: fingerprintOf(renewed.certPem) });
  t.equal(await servedFingerprint(apiPort, { ca: opCa.certPem }), fingerprintOf(renewed.certPem), 'new connections get the renewed certificate');
  const after = await servedFingerprint(apiPort, { ca: opCa.certPem, minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT@SECLEVEL=0' }).then(
    () => 'accepted',
    (e: NodeJS.ErrnoException) => e.code,
  );
  t.equal(after, 'ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION', 'and TLS 1.1 is still refused');

  writeFileSync(keyFile, opServer.keyPem); // the old key: does not match the renewed certificate
  daemon.child.kill('SIGHUP');
  const failed = await daemon.waitForLog((l) => l['msg'] === 'API certificate reload failed; still serving the previous one');
  t.match(failed['err'], /--api-tls-key .* does not match --api-tls-cert/);
  t.equal(await servedFingerprint(apiPort, { ca: opCa.certPem }), fingerprintOf(renewed.certPem), 'a broken pair keeps the previous certificate');
  t.equal(daemon.child.exitCode, null, 'and the controller keeps running');
  const stillWorks = await cli(['agents'], { BULKHEAD_CA: opCaFile });
  t.equal(stillWorks.code, 0, stillWorks.stderr);

  // ---- refused at start ----------------------------------------------------------------------
  await daemon.stop();
  const serve = (extra: string[]) =>
    run(CONTROLLER_BIN, ['serve', '--data-dir', dataDir, '--grpc-listen', '127.0.0.1:0', '--api-listen', '127.0.0.1:0', '--no-metrics', ...extra], { BULKHEAD_API_TLS_CERT: '', BULKHEAD_API_TLS_KEY: '' }, 30_000);

  const mismatch = await serve(['--api-tls-cert', certFile, '--api-tls-key', keyFile]);
  t.equal(mismatch.code, 2, 'a key that does not match: exit 2');
  t.match(mismatch.stderr, new RegExp(`error: BK_ERR_CONFIG_INVALID: --api-tls-key ${keyFile} does not match --api-tls-cert ${certFile}: the key's public key is not the certificate's`));

  const lone = await serve(['--api-tls-cert', certFile]);
  t.equal(lone.code, 2);
  t.match(lone.stderr, /BK_ERR_CONFIG_INVALID: --api-tls-cert and --api-tls-key go together: got only --api-tls-cert/);

  const worldKey = file('world.key', renewed.keyPem, 0o644);
  const loose = await serve(['--api-tls-cert', certFile, '--api-tls-key', worldKey]);
  t.equal(loose.code, 2);
  t.match(loose.stderr, /BK_ERR_CONFIG_INVALID: --api-tls-key .*world\.key is accessible to every user \(mode 0644\); run chmod 600/);

  const old: KeyAndCert = await issueServerCert({ ca: opCa, sans: ['127.0.0.1'], validDays: -0.0001 });
  const expired = await serve(['--api-tls-cert', file('expired.crt', old.certPem, 0o644), '--api-tls-key', file('expired.key', old.keyPem)]);
  t.equal(expired.code, 2);
  t.match(expired.stderr, /BK_ERR_CONFIG_INVALID: --api-tls-cert .*expired\.crt expired at \d{4}-/);

  // The good pair starts again (the refusals above left nothing behind).
  writeFileSync(keyFile, renewed.keyPem);
  const again = Daemon.start('controller-again', CONTROLLER_BIN, ['serve', '--data-dir', dataDir, '--grpc-listen', '127.0.0.1:0', '--api-listen', '127.0.0.1:0', '--no-metrics', '--api-tls-cert', certFile, '--api-tls-key', keyFile]);
  t.teardown(() => again.stop());
  const ready2 = await waitFor('restart with the renewed pair', async () => again.lines.find((l) => l['msg'] === 'controller ready'), 30_000);
  t.equal(await servedFingerprint(ready2['apiPort'] as number, { ca: opCa.certPem }), fingerprintOf(renewed.certPem));
});
