// The web console's files on the API listener (src/api/console-assets.ts): a fresh build of
// packages/console into a temp dir, served by a real createApiServer over HTTPS. Asserts the
// content types, the cache headers (index revalidated, hashed assets immutable), ETag/304,
// brotli/gzip/identity by Accept-Encoding, the strict CSP on these answers too, no inline
// script or style in the page, 404 problems for unknown assets and for a controller without
// the console, and that these routes need no credential.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { brotliDecompressSync, gunzipSync } from 'node:zlib';
import { createLogger } from '@bulkhead/shared';
import { createApiServer } from '../../src/api/server';
import type { Store } from '../../src/store/store';
import { testPki } from './fixtures/api-server';

const BUILD = resolve(__dirname, '../../../console/build.mjs');

interface Res {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

function fetchRaw(url: string, ca: string, method = 'GET', headers: Record<string, string> = {}): Promise<Res> {
  return new Promise((res, rej) => {
    const req = request(url, { method, ca, headers }, (r) => {
      const chunks: Buffer[] = [];
      r.on('data', (c: Buffer) => chunks.push(c));
      r.on('end', () => res({ status: r.statusCode ?? 0, headers: r.headers, body: Buffer.concat(chunks) }));
    });
    req.on('error', rej);
    req.end();
  });
}

t.test('console assets on the API listener', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'bk-console-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  execFileSync(process.execPath, [BUILD], { env: { ...process.env, BULKHEAD_CONSOLE_OUT: dir }, stdio: 'pipe' });
  const assets = readdirSync(join(dir, 'assets'));
  const js = assets.find((f) => /^main-[A-Z0-9]+\.js$/.test(f));
  const css = assets.find((f) => /^main-[A-Z0-9]+\.css$/.test(f));
  t.ok(js && css, `hashed JS and CSS built: ${assets.join(', ')}`);

  const { ca, server } = await testPki();
  const logger = createLogger({ name: 'console-assets-test', level: 'silent' });
  // No request here reaches /v1, so no store is needed.
  const app = await createApiServer({ store: {} as unknown as Store, tls: server, logger, consoleDir: dir });
  t.teardown(() => app.close());
  await app.listen({ host: '127.0.0.1', port: 0 });
  const base = `https://127.0.0.1:${(app.server.address() as { port: number }).port}`;

  for (const path of ['/', '/console', '/console/']) {
    const r = await fetchRaw(base + path, ca.certPem);
    t.equal(r.status, 200, `GET ${path}`);
    t.equal(r.headers['content-type'], 'text/html; charset=utf-8', `${path}: html`);
    t.equal(r.headers['cache-control'], 'no-cache', `${path}: revalidated`);
    t.match(r.headers['content-security-policy'], /default-src 'self'; script-src 'self'; style-src 'self'/, `${path}: the strict CSP`);
    t.equal(r.headers['x-frame-options'], 'DENY');
    t.equal(r.headers['x-content-type-options'], 'nosniff');
    t.equal(r.body.toString(), readFileSync(join(dir, 'index.html'), 'utf8'), `${path}: the built page`);
  }
  const page = (await fetchRaw(`${base}/`, ca.certPem)).body.toString();
  t.notMatch(page, /<script(?![^>]*\bsrc=)[^>]*>/, 'no inline script in the page');
  t.notMatch(page, /<style|\sstyle=/, 'no inline style');
  t.notMatch(page, /https?:\/\//, 'no absolute URL (no third-party origin, no CDN)');
  t.match(page, `/console/assets/${js}`);
  t.match(page, `/console/assets/${css}`);

  const first = await fetchRaw(`${base}/`, ca.certPem);
  const etag = String(first.headers['etag']);
  t.match(etag, /^"[A-Za-z0-9_-]+"$/, 'an ETag');
  const again = await fetchRaw(`${base}/`, ca.certPem, 'GET', { 'if-none-match': etag });
  t.equal(again.status, 304, 'If-None-Match: 304');
  t.equal(again.body.length, 0);

  const raw = readFileSync(join(dir, 'assets', js!));
  const id = await fetchRaw(`${base}/console/assets/${js}`, ca.certPem);
  t.equal(id.status, 200);
  t.equal(id.headers['content-type'], 'text/javascript; charset=utf-8', 'JS content type');
  t.equal(id.headers['cache-control'], 'public, max-age=31536000, immutable', 'hashed: cached for a year');
  t.equal(id.headers['vary'], 'accept-encoding');
  t.equal(id.headers['content-encoding'], undefined, 'no Accept-Encoding: identity');
  t.ok(id.body.equals(raw), 'the built file');
  const br = await fetchRaw(`${base}/console/assets/${js}`, ca.certPem, 'GET', { 'accept-encoding': 'gzip, deflate, br' });
  t.equal(br.headers['content-encoding'], 'br', 'brotli preferred');
  t.ok(brotliDecompressSync(br.body).equals(raw), 'brotli decodes to the file');
  t.ok(br.body.length < raw.length / 2, `compressed ${br.body.length} < ${raw.length}/2`);
  const gz = await fetchRaw(`${base}/console/assets/${js}`, ca.certPem, 'GET', { 'accept-encoding': 'gzip, br;q=0' });
  t.equal(gz.headers['content-encoding'], 'gzip', 'br;q=0 refuses brotli: gzip');
  t.ok(gunzipSync(gz.body).equals(raw), 'gzip decodes to the file');
  const cssRes = await fetchRaw(`${base}/console/assets/${css}`, ca.certPem);
  t.equal(cssRes.headers['content-type'], 'text/css; charset=utf-8', 'CSS content type');
  const head = await fetchRaw(`${base}/console/assets/${css}`, ca.certPem, 'HEAD');
  t.equal(head.status, 200, 'HEAD answers too');
  t.equal(head.body.length, 0);

  for (const bad of ['nope.js', '..%2Findex.html', '%2e%2e%2f%2e%2e%2fpackage.json']) {
    const r = await fetchRaw(`${base}/console/assets/${bad}`, ca.certPem);
    t.equal(r.status, 404, `unknown asset ${bad}: 404`);
    t.match(String(r.headers['content-type']), /^application\/problem\+json/, 'as a problem');
    t.match(r.headers['content-security-policy'], /default-src 'self'/, 'with the CSP');
  }
  const deeper = await fetchRaw(`${base}/console/assets/x/y.js`, ca.certPem);
  t.equal(deeper.status, 404, 'no path below assets/');

  const none = await createApiServer({ store: {} as unknown as Store, tls: server, logger, consoleDir: false });
  t.teardown(() => none.close());
  const r = await none.inject({ method: 'GET', url: '/' });
  t.equal(r.statusCode, 404, 'a controller without the console: 404 at /');
  t.match(r.json(), { code: 'BK_ERR_NOT_FOUND', detail: /not built into this controller \(run `npm run build`\)/ }, 'saying how to build it');
});
