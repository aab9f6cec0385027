// The data-directory side of server certificate replacement and CA rotation, on a real SQLite store.
import t from 'tap';
import { X509Certificate } from 'node:crypto';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { certFingerprint, createCa, createLogger, issueServerCert } from '@bulkhead/shared';
import { dataDirPaths, initPki, loadPki } from '../../src/pki/data-dir';
import { LivePki } from '../../src/pki/live-pki';
import { installServerCert, reissueServerCert } from '../../src/pki/server-cert';
import { caStatus, rotateActivate, rotateFinish, rotateStart } from '../../src/pki/ca-rotation';
import { openStore } from '../../src/store/open-store';
import type { AgentRecord } from '../../src/store/store';

const silent = createLogger({ name: 't', level: 'silent' });

function agent(id: string, certCa: string | undefined, trustedCas?: string[]): AgentRecord {
  const now = new Date();
  return {
    id, hostname: id, status: 'offline', agentVersion: '', host: null, certSerial: id.replace(/\D/g, '') || '1', certNotAfter: now, enrolledAt: now,
    lastSeenAt: null, connectedAt: null, revokedAt: null, containerCount: 0, ...(certCa ? { certCa } : {}), ...(trustedCas ? { trustedCas } : {}),
  };
}

t.test('cert reissue keeps the names and adds new ones; install refuses a certificate agents would not trust', async (t) => {
  const dir = join(t.testdir(), 'd');
  const first = await initPki(dir, ['localhost', '127.0.0.1', 'a.example']);
  const r = await reissueServerCert(dir, { extraSans: ['b.example'] });
  t.not(r.fingerprint, certFingerprint(first.server.certPem), 'a new certificate');
  for (const n of ['localhost', '127.0.0.1', '::1', 'a.example', 'b.example']) t.ok(r.sans.includes(n), `keeps or adds ${n}`);
  t.equal(new Set(r.sans).size, r.sans.length, 'no name twice');
  t.notOk(r.sans.includes('0:0:0:0:0:0:0:1'), 'IPv6 names in their short form');
  t.equal(statSync(dataDirPaths(dir).serverKey).mode & 0o777, 0o600);
  t.equal(loadPki(dir).server.certPem.trim(), new X509Certificate(loadPki(dir).server.certPem).toString().trim(), 'the directory loads');

  const foreign = await createCa('foreign');
  const pair = await issueServerCert({ ca: foreign, sans: ['localhost'] });
  const files = { certFile: join(dir, '..', 'op.crt'), keyFile: join(dir, '..', 'op.key') };
  writeFileSync(files.certFile, pair.certPem);
  writeFileSync(files.keyFile, pair.keyPem, { mode: 0o600 });
  t.throws(() => installServerCert(dir, files), /BK_ERR_CONFIG_INVALID|not issued by a CA this controller trusts/);
  t.equal(certFingerprint(loadPki(dir).server.certPem), r.fingerprint, 'nothing was written');

  const ours = await issueServerCert({ ca: loadPki(dir).ca, sans: ['op.example'] });
  writeFileSync(files.certFile, ours.certPem);
  writeFileSync(files.keyFile, pair.keyPem); // the wrong key
  t.throws(() => installServerCert(dir, files), /is not the private key of/);
  writeFileSync(files.keyFile, ours.keyPem);
  t.equal(installServerCert(dir, files).fingerprint, certFingerprint(ours.certPem), 'an operator certificate from the controller CA is installed');

  const live = new LivePki(loadPki(dir), dir);
  let changes = 0;
  live.subscribe(() => changes++);
  await reissueServerCert(dir);
  live.reload(silent);
  t.equal(changes, 1, 'a reload notifies');
  t.equal(certFingerprint(live.server.certPem), certFingerprint(loadPki(dir).server.certPem));
});

t.test('a CA rotation: start, activate, finish, and what each refuses', async (t) => {
  const dir = join(t.testdir(), 'd');
  const pki = await initPki(dir, ['localhost']);
  const p = dataDirPaths(dir);
  const store = await openStore({ kind: 'sqlite', path: join(dir, 'bulkhead.db') });
  t.teardown(() => store.close());
  await store.migrate();
  const oldFp = pki.caFingerprint;

  await t.rejects(rotateActivate(dir, store), /not started/);
  const { next } = await rotateStart(dir);
  await t.rejects(rotateStart(dir), /already started/);
  t.equal(statSync(p.caNextKey).mode & 0o777, 0o600);
  let loaded = loadPki(dir);
  t.equal(loaded.rotation, 'started');
  t.same(loaded.trust.map(certFingerprint), [oldFp, next.fingerprint], 'both trusted, the old one issuing');
  t.equal(loaded.caFingerprint, oldFp);

  await store.insertAgent(agent('agt_1', oldFp, [oldFp, next.fingerprint]));
  await store.insertAgent(agent('agt_2', undefined)); // from before CA tracking, never reported trust
  await t.rejects(rotateActivate(dir, store), /1 agent\(s\) have not said they trust the new CA: agt_2/);
  await store.setAgentTrustedCas!('agt_2', [oldFp, next.fingerprint]);
  const act = await rotateActivate(dir, store);
  t.equal(act.issuing.fingerprint, next.fingerprint);
  loaded = loadPki(dir);
  t.equal(loaded.rotation, 'activated');
  t.equal(loaded.caFingerprint, next.fingerprint, 'the new CA issues');
  t.equal(certFingerprint(loaded.serverIssuer), next.fingerprint, 'the server certificate is from it');
  t.notOk(existsSync(p.caNextKey));
  t.equal(statSync(p.caPreviousKey).mode & 0o777, 0o600);

  await t.rejects(rotateFinish(dir, store), /2 agent\(s\) still hold a certificate from the old CA/);
  const st = await caStatus(dir, store);
  t.same(st.agents.map((a) => a.certCa).sort(), [oldFp, 'unknown']);
  const r1 = await store.getAgent('agt_1');
  t.ok(await store.replaceAgentCert!('agt_1', r1!.certSerial, { serial: 'aa', notAfter: new Date(), ca: next.fingerprint }, null));
  await store.setAgentStatus('agt_2', 'revoked', new Date());
  // A server certificate from the old CA (installed while both are trusted) would not survive
  // the old CA's retirement: finish refuses until it is re-issued.
  const oldCa = { keyPem: readFileSync(p.caPreviousKey, 'utf8'), certPem: readFileSync(p.caPreviousCert, 'utf8') };
  const fromOld = await issueServerCert({ ca: oldCa, sans: ['localhost'] });
  const certFile = join(dir, '..', 'old-ca-server.crt');
  const keyFile = join(dir, '..', 'old-ca-server.key');
  writeFileSync(certFile, fromOld.certPem);
  writeFileSync(keyFile, fromOld.keyPem, { mode: 0o600 });
  installServerCert(dir, { certFile, keyFile });
  await t.rejects(rotateFinish(dir, store, { force: true }), /server certificate is not issued by the new CA/);
  await reissueServerCert(dir);
  const fin = await rotateFinish(dir, store);
  t.equal(fin.retired.fingerprint, oldFp);
  loaded = loadPki(dir);
  t.equal(loaded.rotation, 'none');
  t.same(loaded.trust.map(certFingerprint), [next.fingerprint], 'only the new CA is left');
  t.notOk(existsSync(p.caPreviousKey), 'the old CA key is gone');
});

t.test('a torn CA pair is refused, not served', async (t) => {
  const dir = join(t.testdir(), 'd');
  await initPki(dir, ['localhost']);
  const other = await createCa('other');
  writeFileSync(dataDirPaths(dir).caCert, other.certPem);
  t.throws(() => loadPki(dir), /is not the private key of/);
});
