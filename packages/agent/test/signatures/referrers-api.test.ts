// The OCI 1.1 referrers API (GET /v2/<name>/referrers/<digest>) path of the agent's verifier.
//
// No registry on this machine implements that API: Debian's docker-registry 2.8 does not (the
// real registry used everywhere else), no Debian package ships a newer distribution or zot, and
// npm has registry clients only. So this file puts a SMALL SPEC-FOLLOWING TEST REGISTRY in
// front of the real docker-registry 2.8: an HTTPS proxy (the same test CA and certificate) that
// forwards every request to it and adds what the OCI distribution spec 1.1 says a registry with
// the referrers API does —
//   * on `PUT /v2/<name>/manifests/<ref>` of a manifest with a `subject`, it records the
//     manifest as a referrer of that subject and answers with the `OCI-Subject` header (so a
//     1.1 client, cosign here, does not maintain the tag-schema fallback);
//   * `GET /v2/<name>/referrers/<digest>` answers 200 with
//     `Content-Type: application/vnd.oci.image.index.v1+json` and an image index whose
//     `manifests` are descriptors of the referrers (mediaType, digest, size, artifactType — the
//     manifest's artifactType, else its config's mediaType — and annotations), empty when none.
// Its other modes answer what a registry without the API, or a broken or hostile one, would:
// 404 (no API: the client must use the tag-schema fallback), a body that is not JSON, an index
// without `manifests`, an oversized answer (with and without Content-Length), another digest's
// referrers. The signatures are REAL: cosign 2.5 `sign --registry-referrers-mode=oci-1-1` and
// `attest --new-bundle-format`, pushed through the test registry, and cosign's own
// `verify --experimental-oci11`, reading the same API, is the oracle for the spec mode.
// The tag-schema fallback against the real registry alone is tested in verifier.test.ts.
import t, { type Test } from 'tap';
import { createHash } from 'node:crypto';
import { copyFile, mkdir, readFile } from 'node:fs/promises';
import https from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { SignatureRequirement } from '@bulkhead/shared';
import { SignatureVerifier } from '../../src/signatures/verifier';
import { buildOciImage, cosignAttest, cosignSign, cosignVerify, generateCosignKeyPair, pushImage, startRegistry, type TestRegistry } from '../../../../test/helpers/registry';

type Mode = 'spec' | '404' | 'not-json' | 'no-manifests' | 'oversized' | 'oversized-chunked' | 'foreign';

interface Descriptor { mediaType: string; digest: string; size: number; artifactType?: string; annotations?: Record<string, string> }

interface SpecRegistry {
  addr: string;
  mode: Mode;
  /** Hide the real registry's `sha256-<hex>` fallback tags (404), so only the API can find referrers. */
  hideFallbackTags: boolean;
  /** Requests seen ("GET /v2/…"). */
  seen: string[];
  /** For 'foreign': whose referrers to answer with. */
  foreignDigest?: string;
}

/** The spec-following test registry described at the top of this file. */
async function startSpecRegistry(t: Test, reg: TestRegistry): Promise<SpecRegistry> {
  const ca = await readFile(reg.caFile);
  const referrers = new Map<string, Descriptor[]>(); // "<name>@<subject digest>" → descriptors
  const state: SpecRegistry = { addr: '', mode: 'spec', hideFallbackTags: false, seen: [] };
  const [regHost, regPort] = reg.addr.split(':');
  const forward = (req: IncomingMessage, res: ServerResponse, body: Buffer | undefined, extraHeaders: Record<string, string> = {}) => {
    const headers = { ...req.headers };
    if (body) headers['content-length'] = String(body.length);
    const up = https.request({ host: regHost, port: Number(regPort), method: req.method, path: req.url, headers, ca }, (ur) => {
      res.writeHead(ur.statusCode ?? 502, { ...ur.headers, ...(ur.statusCode && ur.statusCode < 300 ? extraHeaders : {}) });
      ur.pipe(res);
    });
    up.on('error', (e) => { res.writeHead(502); res.end(String(e)); });
    if (body) up.end(body);
    else req.pipe(up);
  };
  const server = https.createServer({ cert: await readFile(join(reg.dir, 'tls/server.crt')), key: await readFile(join(reg.dir, 'tls/server.key')) }, (req, res) => {
    const url = new URL(req.url ?? '/', 'https://x');
    state.seen.push(`${req.method} ${url.pathname}`);
    const refm = /^\/v2\/(.+)\/referrers\/(sha256:[a-f0-9]{64})$/.exec(url.pathname);
    if (refm && req.method === 'GET') {
      const [, name, digest] = refm;
      const index = (d: string) => ({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: referrers.get(`${name}@${d}`) ?? [] });
      const json = (status: number, body: string | Buffer, chunked = false) => {
        const h: Record<string, string> = { 'content-type': 'application/vnd.oci.image.index.v1+json' };
        if (!chunked) h['content-length'] = String(Buffer.byteLength(body));
        res.writeHead(status, h);
        res.end(body);
      };
      switch (state.mode) {
        case 'spec': return json(200, JSON.stringify(index(digest!)));
        case '404': res.writeHead(404, { 'content-type': 'application/json' }); return res.end('{"errors":[{"code":"NOT_FOUND","message":"not found"}]}');
        case 'not-json': return json(200, '<html>referrers</html>');
        case 'no-manifests': return json(200, JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json' }));
        case 'oversized': return json(200, JSON.stringify({ ...index(digest!), annotations: { pad: 'x'.repeat(300 * 1024) } }));
        case 'oversized-chunked': return json(200, JSON.stringify({ ...index(digest!), annotations: { pad: 'x'.repeat(300 * 1024) } }), true);
        case 'foreign': return json(200, JSON.stringify(index(state.foreignDigest!)));
      }
    }
    if (state.hideFallbackTags && req.method !== 'PUT' && /^\/v2\/.+\/manifests\/sha256-[a-f0-9]{64}$/.test(url.pathname)) {
      res.writeHead(404, { 'content-type': 'application/json' });
      return res.end('{"errors":[{"code":"MANIFEST_UNKNOWN","message":"hidden by the test registry"}]}');
    }
    const putm = /^\/v2\/(.+)\/manifests\/([^/]+)$/.exec(url.pathname);
    if (putm && req.method === 'PUT' && state.mode !== '404') {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = Buffer.concat(chunks);
        let m: { subject?: { digest?: string }; artifactType?: string; config?: { mediaType?: string }; annotations?: Record<string, string>; mediaType?: string } = {};
        try { m = JSON.parse(body.toString()) as typeof m; } catch { /* not ours to judge: the registry answers */ }
        const subject = m.subject?.digest;
        if (subject) {
          const d: Descriptor = {
            mediaType: m.mediaType ?? String(req.headers['content-type'] ?? ''),
            digest: `sha256:${createHash('sha256').update(body).digest('hex')}`,
            size: body.length,
            ...(m.artifactType ?? m.config?.mediaType ? { artifactType: m.artifactType ?? m.config!.mediaType! } : {}),
            ...(m.annotations ? { annotations: m.annotations } : {}),
          };
          const key = `${putm[1]}@${subject}`;
          referrers.set(key, [...(referrers.get(key) ?? []).filter((x) => x.digest !== d.digest), d]);
          return forward(req, res, body, { 'OCI-Subject': subject });
        }
        forward(req, res, body);
      });
      return;
    }
    forward(req, res, undefined);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  state.addr = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  t.teardown(() => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }));
  return state;
}

t.setTimeout(300_000);

t.test('the referrers API against a spec-following test registry (in front of the real registry)', async (t) => {
  const reg = await startRegistry({ t });
  const spec = await startSpecRegistry(t, reg);
  const work = t.testdir();
  const certsDir = join(work, 'certs.d');
  for (const addr of [reg.addr, spec.addr]) {
    await mkdir(join(certsDir, addr), { recursive: true });
    await copyFile(reg.caFile, join(certsDir, addr, 'ca.crt'));
  }
  const prod = await generateCosignKeyPair(work);
  const req: SignatureRequirement = { keys: [{ name: 'prod-signer', pem: prod.publicKeyPem }], identities: [], minSignatures: 1, annotations: {} };
  const verify = async (repo: string, digest: string) => {
    const v = new SignatureVerifier({ certsDir, timeoutMs: 8000 });
    try {
      return await v.verify(`${spec.addr}/${repo}@${digest}`, req);
    } finally {
      v.close();
    }
  };
  const ref = (repo: string, digest: string) => `${spec.addr}/${repo}@${digest}`;

  // Images pushed to the real registry; signed by real cosign THROUGH the test registry.
  const dSig = await pushImage(reg, await buildOciImage(work, { variant: 'api-sig' }), 'shop/api:1');
  const dBundle = await pushImage(reg, await buildOciImage(work, { variant: 'api-bundle' }), 'shop/api:2');
  const dFallback = await pushImage(reg, await buildOciImage(work, { variant: 'api-fallback' }), 'shop/api:3');
  const dNone = await pushImage(reg, await buildOciImage(work, { variant: 'api-none' }), 'shop/api:4');
  await cosignSign(reg, prod, ref('shop/api', dSig), { referrers: true });
  await cosignAttest(reg, prod, ref('shop/api', dBundle), { type: 'https://sigstore.dev/cosign/sign/v1', predicate: {} });
  const realTags = await reg.tags('shop/api');
  t.notOk(realTags.includes(dSig.replace(':', '-')), 'the test registry answered OCI-Subject: cosign wrote no fallback tag for the signature');
  t.notOk(realTags.includes(dBundle.replace(':', '-')), 'nor for the bundle');

  t.test('spec mode: found through the API only (fallback tags hidden), cosign agrees', async (t) => {
    spec.mode = 'spec';
    spec.hideFallbackTags = true;
    spec.seen.length = 0;
    const v = await verify('shop/api', dSig);
    t.equal(v.status, 'verified', v.message);
    t.ok(spec.seen.includes(`GET /v2/shop/api/referrers/${dSig}`), 'asked the referrers API');
    const b = await verify('shop/api', dBundle);
    t.equal(b.status, 'verified', `Sigstore bundle through the API: ${b.message}`);
    const none = await verify('shop/api', dNone);
    t.equal(none.status, 'unsigned', `an empty referrers list: ${none.message}`);
    const oracle = await cosignVerify(reg, prod, ref('shop/api', dSig), { experimentalOci11: true });
    t.equal(oracle.code, 0, `oracle: cosign verify --experimental-oci11 through the same API agrees (${oracle.stderr.trim().slice(0, 200)})`);
    const oracleNone = await cosignVerify(reg, prod, ref('shop/api', dNone), { experimentalOci11: true });
    t.not(oracleNone.code, 0, 'oracle: and finds nothing for the unsigned one');
  });

  t.test('a registry answering 404 for referrers: the tag-schema fallback is used', async (t) => {
    spec.mode = '404';
    spec.hideFallbackTags = false;
    // Signed while the registry has no API: cosign (no OCI-Subject) maintains the fallback tag.
    await cosignSign(reg, prod, ref('shop/api', dFallback), { referrers: true });
    t.ok((await reg.tags('shop/api')).includes(dFallback.replace(':', '-')), 'cosign wrote the fallback tag');
    spec.seen.length = 0;
    const v = await verify('shop/api', dFallback);
    t.equal(v.status, 'verified', v.message);
    t.ok(spec.seen.includes(`GET /v2/shop/api/referrers/${dFallback}`), 'the API was asked first');
    t.ok(spec.seen.includes(`GET /v2/shop/api/manifests/${dFallback.replace(':', '-')}`), 'then the fallback tag');
    t.equal((await verify('shop/api', dSig)).status, 'unsigned', 'signed through the API only: a registry without it shows nothing (no fallback tag)');
  });

  t.test('malformed, oversized or foreign referrers answers are refused, never verified, with the reason', async (t) => {
    spec.hideFallbackTags = true;
    const cases: Array<[Mode, RegExp]> = [
      ['not-json', /referrers index unreadable \(referrers index is not JSON\)/],
      ['no-manifests', /referrers index unreadable \(referrers index has no manifests list\)/],
      ['oversized', /referrers index unreadable \(.*body of \d+ bytes is over the 262144-byte limit\)/],
      ['oversized-chunked', /referrers index unreadable \(.*body over the 262144-byte limit\)/],
    ];
    for (const [mode, why] of cases) {
      spec.mode = mode;
      const v = await verify('shop/api', dSig);
      t.equal(v.status, 'rejected', `${mode}: ${v.message}`);
      t.match(v.message, why);
      t.same(v.signers, []);
    }
    spec.mode = 'foreign';
    spec.foreignDigest = dSig;
    const f = await verify('shop/api', dNone);
    t.equal(f.status, 'rejected', `another digest's referrers: ${f.message}`);
    t.match(f.message, /signature referrer for another digest/);
  });
});
