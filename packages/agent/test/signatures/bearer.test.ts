// The Bearer token flow against a REAL docker-registry 2.8 configured for token auth
// (`auth.token`: realm, service, issuer, rootcertbundle), with a small token service on
// loopback written here (the registry verifies its ES256 JWTs against the bundle, as it
// would a real one's). The image is pushed by skopeo and signed by cosign through the same
// token flow; the verifier then gets tokens with config.json credentials: username/password
// (GET realm with Basic) and an identity token (POST, OAuth2 refresh_token grant).
import t from 'tap';
import { createPrivateKey, randomBytes, sign, X509Certificate } from 'node:crypto';
import { startOwnRegistry } from './own-registry';
import { copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:https';
import { join } from 'node:path';
import type { SignatureRequirement } from '@bulkhead/shared';
import { createSignatureVerifier, SignatureVerifier } from '../../src/signatures/verifier';
import {
  buildOciImage, cosignSign, generateCosignKeyPair, pushImage, runTool, startRegistry, type TestRegistry,
} from '../../../../test/helpers/registry';

const USER = 'puller';
const PASS = 'token-pass';
const REFRESH = 'refresh-0123456789';

function b64url(b: Buffer | string): string {
  return Buffer.from(b).toString('base64url');
}

t.test('Bearer token flow with config.json credentials', async (t) => {
  const base = await startRegistry({ t }); // for its TLS material and tool files
  const work = t.testdir();
  const dir = join(work, 'token-registry');
  await mkdir(join(dir, 'data'), { recursive: true });

  // Token signing key + self-signed certificate: the registry's rootcertbundle.
  const keyFile = join(dir, 'token.key');
  const certFile = join(dir, 'token.crt');
  const ossl = await runTool('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', keyFile, '-out', certFile, '-days', '2', '-subj', '/CN=bulkhead-test-token-issuer']);
  t.equal(ossl.code, 0, ossl.stderr);
  const tokenKey = createPrivateKey(await readFile(keyFile));
  const tokenCertDer = new X509Certificate(await readFile(certFile)).raw;

  // The token service (HTTPS with the registry's own certificate: same test CA).
  const issued: Array<{ method: string; basic: boolean; refresh: boolean; scope: string }> = [];
  const tokenServer: Server = createServer({ cert: await readFile(join(base.dir, 'tls', 'server.crt')), key: await readFile(join(base.dir, 'tls', 'server.key')) }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'https://x');
      const form = new URLSearchParams(Buffer.concat(chunks).toString());
      const auth = req.headers.authorization ?? '';
      const basic = auth === `Basic ${Buffer.from(`${USER}:${PASS}`).toString('base64')}`;
      const refresh = req.method === 'POST' && form.get('grant_type') === 'refresh_token' && form.get('refresh_token') === REFRESH;
      const scope = (req.method === 'POST' ? form.get('scope') : url.searchParams.get('scope')) ?? '';
      issued.push({ method: req.method ?? '', basic, refresh, scope });
      if (!basic && !refresh) { res.writeHead(401, { 'content-type': 'application/json' }); res.end('{"details":"bad credentials"}'); return; }
      const access = scope.split(' ').filter(Boolean).map((s) => {
        const [type, name, actions] = s.split(':');
        return { type, name, actions: (actions ?? '').split(',') };
      });
      const now = Math.floor(Date.now() / 1000);
      const header = b64url(JSON.stringify({ typ: 'JWT', alg: 'ES256', x5c: [tokenCertDer.toString('base64')] }));
      const claims = b64url(JSON.stringify({ iss: 'bulkhead-test-issuer', sub: USER, aud: 'bulkhead-test-registry', exp: now + 300, nbf: now - 10, iat: now, jti: randomBytes(8).toString('hex'), access }));
      const sig = sign('sha256', Buffer.from(`${header}.${claims}`), { key: tokenKey, dsaEncoding: 'ieee-p1363' });
      const token = `${header}.${claims}.${b64url(sig)}`;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(req.method === 'POST' ? { access_token: token, expires_in: 300 } : { token, expires_in: 300 }));
    });
  });
  await new Promise<void>((r) => tokenServer.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => tokenServer.close(() => r())));
  const realm = `https://127.0.0.1:${(tokenServer.address() as { port: number }).port}/token`;

  // The real registry, token auth.
  const addr = await startOwnRegistry(t, base, dir, { extra: `auth:
  token:
    realm: ${realm}
    service: bulkhead-test-registry
    issuer: bulkhead-test-issuer
    rootcertbundle: ${certFile}` });
  const ping = await runTool('curl', ['-s', '-o', '/dev/null', '-w', '%{http_code} %header{www-authenticate}', '--cacert', base.caFile, `https://${addr}/v2/`]);
  t.match(ping.stdout, /^401 Bearer realm=/, 'the registry asks for a Bearer token');

  // Push with skopeo and sign with cosign, both through the token flow.
  const dockerConfigDir = join(work, 'docker-config');
  await mkdir(dockerConfigDir, { recursive: true });
  await writeFile(join(dockerConfigDir, 'config.json'), JSON.stringify({ auths: { [addr]: { auth: Buffer.from(`${USER}:${PASS}`).toString('base64') } } }), { mode: 0o600 });
  const img = await buildOciImage(work, { variant: 'bearer' });
  const tokenReg: TestRegistry = { ...base, addr, credentials: { username: USER, password: PASS }, dockerConfigDir, manifestDigest: async () => img.digest, ref: (repo, d) => `${addr}/${repo}${d.startsWith('sha256:') ? '@' : ':'}${d}` };
  const d = await pushImage(tokenReg, img, 'team/app:1');
  const key = await generateCosignKeyPair(work);
  await cosignSign(tokenReg, key, tokenReg.ref('team/app', d));
  t.ok(issued.some((i) => i.basic && i.scope.includes('team/app') && i.scope.includes('push')), 'the tools got push tokens');

  const certsDir = join(work, 'certs.d');
  await mkdir(join(certsDir, addr), { recursive: true });
  await copyFile(base.caFile, join(certsDir, addr, 'ca.crt'));
  const req: SignatureRequirement = { keys: [{ name: 'team-signer', pem: key.publicKeyPem }], identities: [], minSignatures: 1, annotations: {} };
  const repoDigest = `${addr}/team/app@${d}`;

  t.test('username/password: GET realm with Basic, then Bearer', async (t) => {
    const before = issued.length;
    const v = await createSignatureVerifier({ registryCertsDir: certsDir, registryAuthFile: join(dockerConfigDir, 'config.json'), timeoutMs: 5000, cacheTtlMs: 60_000 });
    t.teardown(() => v.close());
    const r = await v.verify(repoDigest, req);
    t.equal(r.status, 'verified', r.message);
    const mine = issued.slice(before);
    t.ok(mine.length >= 1 && mine.every((i) => i.method === 'GET' && i.basic && i.scope === 'repository:team/app:pull'), `pull-only tokens asked with Basic: ${JSON.stringify(mine)}`);
    t.equal(mine.length, 1, 'one token reused for every request of the verification');
  });

  t.test('identity token: POST refresh_token grant', async (t) => {
    const file = join(work, 'identity.json');
    await writeFile(file, JSON.stringify({ auths: { [`https://${addr}`]: { identitytoken: REFRESH } } }), { mode: 0o600 });
    const before = issued.length;
    const v = await createSignatureVerifier({ registryCertsDir: certsDir, registryAuthFile: file, timeoutMs: 5000, cacheTtlMs: 60_000 });
    t.teardown(() => v.close());
    const r = await v.verify(repoDigest, req);
    t.equal(r.status, 'verified', r.message);
    const mine = issued.slice(before);
    t.ok(mine.length >= 1 && mine.every((i) => i.method === 'POST' && i.refresh), JSON.stringify(mine));
  });

  t.test('no or wrong credentials: the token service refuses → unreachable, no secret in the message', async (t) => {
    const anon = new SignatureVerifier({ certsDir, timeoutMs: 5000 });
    t.teardown(() => anon.close());
    const r = await anon.verify(repoDigest, req);
    t.equal(r.status, 'unreachable');
    t.match(r.message, /token service answered HTTP 401/);
    const file = join(work, 'wrong.json');
    await writeFile(file, JSON.stringify({ auths: { [addr]: { username: USER, password: 'wrong-secret' } } }), { mode: 0o600 });
    const v = await createSignatureVerifier({ registryCertsDir: certsDir, registryAuthFile: file, timeoutMs: 5000, cacheTtlMs: 60_000 });
    t.teardown(() => v.close());
    const w = await v.verify(repoDigest, req);
    t.equal(w.status, 'unreachable');
    t.notMatch(w.message, /wrong-secret|token-pass|puller/);
  });
});
