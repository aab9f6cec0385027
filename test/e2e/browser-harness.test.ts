// The browser harness itself (test/helpers/browser.ts), so the console tests stand on something
// that can fail: Chromium trusts the controller's certificate and no other, the certificate it
// saw is the one Node verifies against the controller CA, axe-core finds a violation that is
// there (and none on a clean page), the other origin serves pages, and closing the browser
// leaves no Chromium process behind.
import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { launchBrowser, newContext, processAlive, runAxe, screenshot, startConsoleController, startOtherOrigin, assertServedCertificate } from '../helpers/browser';

t.test('browser harness', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'bk-browser-harness-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const ctl = await startConsoleController(t, root);
  const other = await startOtherOrigin(t);
  const untrusted = await startOtherOrigin(t, '127.0.0.3');
  const { browser, pid, close } = await launchBrowser(t, { trust: [ctl.serverCertPem, other.certPem] });
  t.ok(processAlive(pid), `Chromium runs (pid ${pid})`);

  const ctx = await newContext(t, browser);
  const page = await ctx.newPage();
  const res = await page.goto(`${ctl.apiBase}/healthz`);
  t.equal(res?.status(), 200, 'the controller answers over HTTPS in Chromium');
  t.same(JSON.parse((await res?.text()) ?? ''), { status: 'ok' });
  await assertServedCertificate(t, res!, ctl.port, ctl.caPem);

  // Its own page: the error page Chromium then loads must not race the next navigation.
  const probe = await ctx.newPage();
  const refused = await probe.goto(`${untrusted.origin}/`).then(
    () => 'loaded',
    (e: Error) => e.message,
  );
  t.match(refused, /ERR_CERT_AUTHORITY_INVALID/, 'a server whose key is not trusted is refused: the browser still checks certificates');
  await probe.close();

  other.page('/bad', '<!doctype html><html lang="en"><head><title>bad</title></head><body><main><img src="data:image/gif;base64,R0lGODlhAQABAAAAACw="><button></button></main></body></html>');
  other.page('/good', '<!doctype html><html lang="en"><head><title>good</title></head><body><main><h1>Fleet</h1><p>All well.</p><button>Refresh</button></main></body></html>');
  await page.goto(`${other.origin}/bad`);
  const bad = await runAxe(page);
  t.ok(bad.some((v) => v.id === 'image-alt' && v.impact === 'critical'), 'axe-core finds an image without alt text (critical)');
  t.ok(bad.some((v) => v.id === 'button-name'), 'and a button without a name');
  await page.goto(`${other.origin}/good`);
  await runAxe(page, t, 'a clean page');
  t.ok(other.requests.some((r) => r.url === '/good'), 'the other origin logs what it served');

  const shot = await screenshot(page, 'harness-check');
  if (process.env['BULKHEAD_CONSOLE_SCREENSHOTS'] !== '1') t.equal(shot, undefined, 'no screenshot written unless BULKHEAD_CONSOLE_SCREENSHOTS=1');

  await close();
  await close(); // idempotent
  const deadline = Date.now() + 10_000;
  while (processAlive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  t.notOk(processAlive(pid), 'closing the browser ends its process');
});

t.test('a missing Chromium fails with a message saying how to get it', async (t) => {
  await t.rejects(launchBrowser(t, { executablePath: '/nonexistent/chromium' }), /headless Chromium not found at \/nonexistent\/chromium: .*apt-get install chromium/);
});
