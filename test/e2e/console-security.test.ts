// The web console's door, attacked from a real browser: headless Chromium (Debian's package)
// against the built controller as a real process over HTTPS, with the session cookie, CSRF
// header and security headers it serves to browsers. Independent of the console's UI: every
// page here is the controller's own answer (/healthz) or the attacker's page on another origin.
//
//   - the cookie as Chromium stores it: HttpOnly, Secure, SameSite=Strict, Path=/, host-only,
//     unreadable and unwritable from script; no credential in a URL, localStorage or sessionStorage;
//   - cross-site (https://127.0.0.2) form posts and fetches carry no cookie and change nothing;
//     same-site pages of another origin (https://127.0.0.1:<other port>) DO get the cookie sent,
//     and the missing CSRF header is what refuses them; no answer is readable cross-origin;
//   - every security header on a page load, CSP enforced by the browser (no inline script, no
//     eval, no other origin), and the controller's pages cannot be framed;
//   - a stolen session id works until logout, idle expiry or the key's revocation, then never;
//   - a viewer's session gets 403 on every mutating route of the live OpenAPI document, with a
//     valid CSRF token;
//   - a project-scoped session's EventSource never receives another project's event.
import t, { type Test } from 'tap';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BrowserContext, Page, Response } from 'playwright-core';
import { Fleet, apiClient, type RunningController } from '../../bench/lib/fleet-sim';
import { ROOT } from '../helpers/processes';
import {
  fetchInPage,
  launchBrowser,
  loginInPage,
  newContext,
  startConsoleController,
  startOtherOrigin,
  type ConsoleController,
} from '../helpers/browser';

const COOKIE = '__Host-bulkhead_session';

function tempDir(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'bk-console-sec-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A page on the controller's origin (its /healthz answer: the console's UI is not needed). */
async function controllerPage(ctx: BrowserContext, ctl: ConsoleController): Promise<Page> {
  const page = await ctx.newPage();
  const r = await page.goto(`${ctl.apiBase}/healthz`);
  if (r?.status() !== 200) throw new Error(`GET /healthz in the browser: ${r?.status()}`);
  return page;
}

async function sessionCookieOf(ctx: BrowserContext, ctl: ConsoleController) {
  return (await ctx.cookies(ctl.apiBase)).find((c) => c.name === COOKIE);
}

/** The keys' names as the admin sees them, revoked or not. */
async function keyNames(ctl: ConsoleController): Promise<string[]> {
  const r = await ctl.call<{ items: { name: string; revokedAt: string | null }[] }>('GET', '/v1/keys');
  if (r.status !== 200) throw new Error(`GET /v1/keys: ${r.status}`);
  return r.body.items.map((k) => `${k.name}${k.revokedAt ? ' (revoked)' : ''}`).sort();
}

async function joinTokenCount(ctl: ConsoleController): Promise<number> {
  const r = await ctl.call<{ items: unknown[] }>('GET', '/v1/join-tokens?limit=1000');
  if (r.status !== 200) throw new Error(`GET /v1/join-tokens: ${r.status}`);
  return r.body.items.length;
}

t.test('the console door in real Chromium', async (t) => {
  const root = tempDir(t);
  const ctl = await startConsoleController(t, root);
  const crossSite = await startOtherOrigin(t, '127.0.0.2');
  const sameSite = await startOtherOrigin(t, '127.0.0.1');
  const { browser } = await launchBrowser(t, { trust: [ctl.serverCertPem, crossSite.certPem, sameSite.certPem] });

  // ---------------------------------------------------------------------------------------------
  t.test('the cookie as the browser keeps it; no credential in a URL or in web storage', async (t) => {
    const ctx = await newContext(t, browser);
    const urls: string[] = [];
    ctx.on('request', (r) => urls.push(r.url()));
    const page = await controllerPage(ctx, ctl);
    const login = await loginInPage(page, ctl.keys.operator);
    t.equal(login.status, 200, 'logged in from the page');
    t.match(login.session, { role: 'operator', sessionId: /^ses_[0-9a-f]{16}$/, csrfToken: /^[A-Za-z0-9_-]{20,}$/, idleTimeoutSeconds: 900 });

    const c = await sessionCookieOf(ctx, ctl);
    t.ok(c, `the browser stored ${COOKIE}`);
    t.match(c, { name: COOKIE, value: /^bks_[A-Za-z0-9_-]{43}$/, domain: '127.0.0.1', path: '/', httpOnly: true, secure: true, sameSite: 'Strict' }, 'HttpOnly, Secure, SameSite=Strict, Path=/');
    t.notOk(c!.domain.startsWith('.'), 'host-only (no Domain attribute): no other host can read or plant it');
    const lifetime = c!.expires * 1000 - Date.now();
    t.ok(lifetime > 7.9 * 3600_000 && lifetime <= 8 * 3600_000 + 5_000, `expires with the session's 8 h lifetime (${Math.round(lifetime / 60_000)} min)`);
    t.notOk(c!.value.includes(ctl.keys.operator) || ctl.keys.operator.includes(c!.value), 'the cookie is not the key');

    const scriptView = await page.evaluate(() => (globalThis as unknown as { document: { cookie: string } }).document.cookie);
    t.notMatch(scriptView, /bulkhead_session|bks_/, 'document.cookie does not show it');
    // Script cannot overwrite an HttpOnly cookie either (a planted session: fixation).
    await page.evaluate(() => {
      (globalThis as unknown as { document: { cookie: string } }).document.cookie = '__Host-bulkhead_session=bks_' + 'A'.repeat(43) + '; Path=/; Secure; SameSite=Strict';
    });
    t.equal((await sessionCookieOf(ctx, ctl))?.value, c!.value, 'script cannot overwrite it');
    const me = await fetchInPage(page, 'GET', '/v1/session');
    t.equal(me.status, 200);
    t.equal(me.body.sessionId, login.session.sessionId, 'the cookie still names the logged-in session');

    // No credential anywhere a script, an extension or a history file could find it.
    const storage = await page.evaluate(() => {
      type Store = { length: number; key(i: number): string | null; getItem(k: string): string | null };
      const g = globalThis as unknown as { localStorage: Store; sessionStorage: Store };
      const dump = (s: Store) => Array.from({ length: s.length }, (_, i) => `${s.key(i)}=${s.getItem(s.key(i)!)}`);
      return { local: dump(g.localStorage), session: dump(g.sessionStorage) };
    });
    t.same(storage, { local: [], session: [] }, 'nothing in localStorage or sessionStorage');
    const secrets = [ctl.keys.operator, c!.value, login.session.csrfToken];
    const leaking = urls.filter((u) => secrets.some((s) => u.includes(s) || u.includes(encodeURIComponent(s))));
    t.same(leaking, [], `no request URL carries the key, the session id or the CSRF token (${urls.length} requests)`);
    t.notOk(secrets.some((s) => page.url().includes(s)), 'nor the page URL');
    const state = await ctx.storageState();
    t.same(state.origins.filter((o) => o.localStorage.length > 0), [], 'the saved browser state holds no web storage');
    t.same(state.cookies.map((k) => k.name), [COOKIE], 'and only the session cookie');

    // A session cannot open another session nor mint a bearer token.
    const token = await fetchInPage(page, 'POST', '/v1/auth/token', { csrf: login.session.csrfToken, body: {} });
    t.equal(token.status, 403, 'a session cannot mint a token (which would be a credential script can read)');
  });

  // ---------------------------------------------------------------------------------------------
  t.test('security headers on a page load, enforced by the browser', async (t) => {
    const ctx = await newContext(t, browser);
    const page = await ctx.newPage();
    for (const path of ['/healthz', '/v1/containers', '/no/such/page']) {
      const r = (await page.goto(`${ctl.apiBase}${path}`))!;
      const h = await r.allHeaders();
      const csp = h['content-security-policy'] ?? '';
      t.ok(csp.length > 0, `${path} (${r.status()}): Content-Security-Policy`);
      t.notMatch(csp, /unsafe-inline|unsafe-eval|\*|https?:/, `${path}: no 'unsafe-inline', no 'unsafe-eval', no wildcard or other origin`);
      const directives = new Map(csp.split(';').map((d) => d.trim().split(/\s+/)).map(([k, ...v]) => [k!, v.join(' ')]));
      t.equal(directives.get('default-src'), "'self'", `${path}: default-src 'self'`);
      t.equal(directives.get('script-src'), "'self'", `${path}: script-src 'self'`);
      t.equal(directives.get('frame-ancestors'), "'none'", `${path}: frame-ancestors 'none'`);
      t.equal(directives.get('object-src'), "'none'", `${path}: object-src 'none'`);
      t.equal(directives.get('base-uri'), "'none'", `${path}: base-uri 'none'`);
      t.equal(h['x-frame-options'], 'DENY', `${path}: X-Frame-Options DENY`);
      t.match(h['strict-transport-security'], /^max-age=(\d+)/, `${path}: HSTS`);
      t.ok(Number(/max-age=(\d+)/.exec(h['strict-transport-security'] ?? '')?.[1]) >= 15_552_000, `${path}: HSTS for at least 180 days`);
      t.equal(h['referrer-policy'], 'no-referrer', `${path}: Referrer-Policy no-referrer`);
      t.equal(h['x-content-type-options'], 'nosniff', `${path}: nosniff`);
      t.notOk('access-control-allow-origin' in h, `${path}: no CORS grant`);
    }

    // The browser enforces the policy on the controller's origin.
    await page.goto(`${ctl.apiBase}/healthz`);
    const enforced = await page.evaluate(async (other) => {
      const g = globalThis as unknown as { document: any; pwned?: number; addEventListener: (n: string, f: (e: any) => void) => void };
      const violations: string[] = [];
      g.addEventListener('securitypolicyviolation', (e) => violations.push(`${e.violatedDirective}`));
      const s = g.document.createElement('script');
      s.textContent = 'window.pwned = 1';
      g.document.body.append(s);
      const img = g.document.createElement('img');
      img.setAttribute('src', 'data:,x');
      img.setAttribute('onerror', 'window.pwned = 2');
      g.document.body.append(img);
      // A script from a data: URL or from another origin: script-src 'self' refuses both.
      for (const src of ['data:text/javascript,window.pwned=3', `${other}/evil.js`]) {
        const ext = g.document.createElement('script');
        ext.src = src;
        g.document.body.append(ext);
      }
      const thirdParty = await fetch(`${other}/`).then(
        () => 'fetched',
        (e: Error) => e.name,
      );
      await new Promise((r) => setTimeout(r, 300));
      return { pwned: g.pwned ?? null, thirdParty, violations };
    }, crossSite.origin);
    t.equal(enforced.pwned, null, 'an injected inline script, an inline event handler, a data: script and another origin\'s script do not run');
    // (eval is not tried here: code run through the DevTools protocol may always eval; the header
    // check above asserts there is no 'unsafe-eval'.)
    t.notOk(crossSite.requests.some((r) => r.url === '/evil.js'), 'the other origin\'s script was not even fetched');
    t.equal(enforced.thirdParty, 'TypeError', 'a fetch to another origin is refused (connect-src)');
    t.ok(enforced.violations.includes('script-src-elem') || enforced.violations.includes('script-src'), `the browser reported the violations (${enforced.violations.join(', ')})`);
    t.ok(enforced.violations.includes('connect-src'), 'connect-src among them');

    // Framing: the attacker's page puts the controller in an iframe, next to one of its own pages.
    crossSite.page('/own', '<!doctype html><title>own</title><p id="own">framed fine</p>');
    crossSite.page(
      '/frame',
      `<!doctype html><title>frame</title><iframe id="ctl" src="${ctl.apiBase}/healthz"></iframe><iframe id="own" src="${crossSite.origin}/own"></iframe>`,
    );
    const console_: string[] = [];
    const attacker = await ctx.newPage();
    attacker.on('console', (m) => console_.push(m.text()));
    const ctlFrameResponse = attacker.waitForResponse((r) => r.url() === `${ctl.apiBase}/healthz`, { timeout: 30_000 });
    await attacker.goto(`${crossSite.origin}/frame`);
    await ctlFrameResponse;
    const own = attacker.frames().find((f) => f.url() === `${crossSite.origin}/own`);
    t.ok(own, 'the control frame (the attacker\'s own page) loads');
    t.equal(await own!.evaluate(() => (globalThis as unknown as { document: any }).document.getElementById('own')?.textContent), 'framed fine', 'and renders');
    const framed = await attacker.waitForFunction(() => true).then(async () => {
      const deadline = Date.now() + 10_000;
      for (;;) {
        const f = attacker.frames().find((x) => x !== attacker.mainFrame() && x.url() !== `${crossSite.origin}/own`);
        if (f && f.url() !== 'about:blank' && f.url() !== '') return f.url();
        if (Date.now() > deadline) return f?.url() ?? 'no frame';
        await new Promise((r) => setTimeout(r, 100));
      }
    });
    t.not(framed, `${ctl.apiBase}/healthz`, `the controller's page is not shown in the frame (frame is at ${framed})`);
    t.match(framed, /^chrome-error:/, 'Chromium replaced it with its error page');
    t.ok(console_.some((m) => /frame-ancestors|X-Frame-Options|refused to (display|frame)/i.test(m)), `Chromium says why: ${console_.filter((m) => /frame/i.test(m)).join(' | ').slice(0, 300)}`);
  });

  // ---------------------------------------------------------------------------------------------
  t.test('cross-site and same-site forgery', async (t) => {
    const ctx = await newContext(t, browser);
    const page = await controllerPage(ctx, ctl);
    const login = await loginInPage(page, ctl.keys.admin);
    t.equal(login.status, 200);
    const victim = await ctl.mintKey('csrf-victim', 'viewer');
    const keysBefore = await keyNames(ctl);
    const tokensBefore = await joinTokenCount(ctl);

    // The attacker's pages: a JSON-looking text/plain body (the classic JSON CSRF), a form
    // creating a join token, and a "DELETE" smuggled as a method override.
    const forms = (target: string) => ({
      '/create-key': `<form method="POST" enctype="text/plain" action="${target}/v1/keys"><input name='{"name":"csrf-evil","role":"admin","x":"' value='"}'></form>`,
      '/join-token': `<form method="POST" action="${target}/v1/join-tokens"><input name="ttl" value="1h"></form>`,
      '/revoke-override': `<form method="POST" action="${target}/v1/keys/${victim.id}?_method=DELETE"><input name="_method" value="DELETE"></form>`,
    });
    type Seen = { status: number; cookieSent: boolean; body: any };
    const submit = async (origin: typeof crossSite, path: string, html: string): Promise<Seen> => {
      origin.page(path, `<!doctype html><title>win a prize</title>${html}`);
      const p = await ctx.newPage();
      t.teardown(() => p.close().catch(() => undefined));
      await p.goto(`${origin.origin}${path}`);
      const answered = p.waitForResponse((r: Response) => r.url().startsWith(ctl.apiBase) && r.request().method() === 'POST', { timeout: 30_000 });
      await p.evaluate(() => (globalThis as unknown as { document: any }).document.forms[0].submit());
      const r = await answered;
      const headers = await r.request().allHeaders();
      const text = await r.text().catch(() => '');
      let body: any = text;
      try {
        body = JSON.parse(text);
      } catch {
        /* keep text */
      }
      return { status: r.status(), cookieSent: (headers['cookie'] ?? '').includes(COOKIE), body };
    };

    for (const [path, html] of Object.entries(forms(ctl.apiBase))) {
      const cross = await submit(crossSite, path, html);
      t.notOk(cross.cookieSent, `cross-site form ${path}: the browser does not send the SameSite=Strict cookie`);
      const same = await submit(sameSite, path, html);
      t.ok(same.cookieSent, `same-site form ${path} from another port: the cookie IS sent (SameSite is per site, not per origin)`);
      if (path === '/revoke-override') {
        // No route answers POST /v1/keys/:id: a method override (_method, in the query or the form) is not honoured.
        t.equal(cross.status, 404, `cross-site form ${path}: 404, no such route`);
        t.equal(same.status, 404, `same-site form ${path}: 404, no such route`);
        continue;
      }
      t.equal(cross.status, 401, `cross-site form ${path}: 401 (no credential)`);
      t.equal(same.status, 403, `same-site form ${path}: refused`);
      t.equal(same.body?.code, 'BK_ERR_CSRF', `same-site form ${path}: BK_ERR_CSRF (no token in the header)`);
    }
    t.same(await keyNames(ctl), keysBefore, 'no key was created or revoked');
    t.equal(await joinTokenCount(ctl), tokensBefore, 'no join token was minted');

    // fetch() with credentials from the other origins: no CORS grant, so nothing readable, and
    // the non-simple requests (DELETE, JSON, a custom header) never leave the browser.
    const attack = async (origin: typeof crossSite) => {
      origin.page('/fetch', '<!doctype html><title>fetch</title>');
      const p = await ctx.newPage();
      t.teardown(() => p.close().catch(() => undefined));
      await p.goto(`${origin.origin}/fetch`);
      const seen: { method: string; url: string; status: number; acao: string | undefined }[] = [];
      const sent: { method: string; url: string }[] = [];
      p.on('request', (r) => {
        if (r.url().startsWith(ctl.apiBase)) sent.push({ method: r.method(), url: r.url() });
      });
      p.on('response', async (r) => {
        if (r.url().startsWith(ctl.apiBase)) seen.push({ method: r.request().method(), url: r.url(), status: r.status(), acao: (await r.allHeaders())['access-control-allow-origin'] });
      });
      const outcome = await p.evaluate(
        async ({ api, victimId }) => {
          const tryIt = (url: string, init: RequestInit) =>
            fetch(url, { credentials: 'include', ...init }).then(
              async (r) => `read ${r.status}: ${await r.text()}`,
              (e: Error) => e.name,
            );
          return {
            readKeys: await tryIt(`${api}/v1/keys`, {}),
            readSession: await tryIt(`${api}/v1/session`, {}),
            deleteKey: await tryIt(`${api}/v1/keys/${victimId}`, { method: 'DELETE', headers: { 'x-bulkhead-csrf': 'guessed' } }),
            createKey: await tryIt(`${api}/v1/keys`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'csrf-evil-fetch', role: 'admin' }) }),
            simplePost: await tryIt(`${api}/v1/join-tokens`, { method: 'POST', mode: 'no-cors', headers: { 'content-type': 'text/plain' }, body: '{"ttl":"1h"}' }),
          };
        },
        { api: ctl.apiBase, victimId: victim.id },
      );
      await new Promise((r) => setTimeout(r, 300));
      return { outcome, seen, sent };
    };
    for (const [label, origin] of [['cross-site', crossSite], ['same-site', sameSite]] as const) {
      const deletesBefore = await ctl.served('DELETE', '/v1/keys/:id');
      const createsBefore = await ctl.served('POST', '/v1/keys');
      const mintsBefore = await ctl.served('POST', '/v1/join-tokens');
      const { outcome, seen, sent } = await attack(origin);
      t.equal(outcome.readKeys, 'TypeError', `${label} fetch GET /v1/keys with credentials: the answer cannot be read`);
      t.equal(outcome.readSession, 'TypeError', `${label} fetch GET /v1/session (the CSRF token): cannot be read`);
      t.equal(outcome.deleteKey, 'TypeError', `${label} fetch DELETE /v1/keys/:id: blocked (preflight not granted)`);
      t.equal(outcome.createKey, 'TypeError', `${label} fetch POST JSON /v1/keys: blocked (preflight not granted)`);
      // Not even an opaque answer: Cross-Origin-Resource-Policy: same-origin makes the browser drop it.
      t.equal(outcome.simplePost, 'TypeError', `${label} no-cors POST: no answer at all, not even an opaque one (CORP same-origin)`);
      t.ok(sent.some((s) => s.method === 'POST' && s.url.endsWith('/v1/join-tokens')), `${label} the simple POST was sent (and refused: no join token below)`);
      t.equal(await ctl.served('DELETE', '/v1/keys/:id'), deletesBefore, `${label}: the DELETE never reached the controller (its own request count)`);
      t.equal(await ctl.served('POST', '/v1/keys'), createsBefore, `${label}: nor the JSON POST`);
      t.equal(await ctl.served('POST', '/v1/join-tokens'), mintsBefore + 1, `${label}: the simple POST did arrive (and was refused: no join token below)`);
      t.ok(seen.every((s) => s.acao === undefined), `${label}: no answer grants CORS`);
    }
    t.same(await keyNames(ctl), keysBefore, 'still no key created or revoked');
    t.equal(await joinTokenCount(ctl), tokensBefore, 'still no join token');

    // Same origin, the page's own fetch: without the header, a wrong one, another session's, then right.
    const noHeader = await fetchInPage(page, 'POST', '/v1/join-tokens', { body: { ttl: '1h' } });
    t.equal(noHeader.status, 403);
    t.equal(noHeader.body.code, 'BK_ERR_CSRF', 'same origin without X-Bulkhead-CSRF: BK_ERR_CSRF');
    t.match(noHeader.body.detail, /needs the session's CSRF token in the x-bulkhead-csrf header/);
    const wrong = await fetchInPage(page, 'POST', '/v1/join-tokens', { body: { ttl: '1h' }, csrf: 'A'.repeat(43) });
    t.equal(wrong.body.code, 'BK_ERR_CSRF', 'a wrong token: BK_ERR_CSRF');
    t.match(wrong.body.detail, /does not match/);
    const ctx2 = await newContext(t, browser);
    const other = await loginInPage(await controllerPage(ctx2, ctl), ctl.keys.admin);
    const crossed = await fetchInPage(page, 'POST', '/v1/join-tokens', { body: { ttl: '1h' }, csrf: other.session.csrfToken });
    t.equal(crossed.body.code, 'BK_ERR_CSRF', "another session's token does not fit this session");
    const del = await fetchInPage(page, 'DELETE', `/v1/keys/${victim.id}`);
    t.equal(del.body.code, 'BK_ERR_CSRF', 'DELETE without the token: BK_ERR_CSRF');
    t.equal(await joinTokenCount(ctl), tokensBefore, 'none of them minted a join token');
    const right = await fetchInPage(page, 'POST', '/v1/join-tokens', { body: { ttl: '1h' }, csrf: login.session.csrfToken });
    t.equal(right.status, 201, 'with the session\'s token the same request works (so the refusals above were the CSRF check)');
    t.equal(await joinTokenCount(ctl), tokensBefore + 1, 'and mints exactly one join token');

    // Login CSRF: the attacker logs the victim's browser in as the attacker (whose console the
    // victim would then fill with their own input). The login route takes only JSON, which no
    // form can send; a text/plain body shaped like JSON is refused before any session exists.
    const attackerKey = await ctl.mintKey('login-csrf-attacker', 'viewer');
    const loginForm = `<form method="POST" enctype="text/plain" action="${ctl.apiBase}/v1/session"><input name='{"key":"${attackerKey.key}","x":"' value='"}'></form>`;
    const loginsBefore = await ctl.served('POST', '/v1/session');
    for (const origin of [crossSite, sameSite]) {
      const victimCtx = await newContext(t, browser);
      const p = await victimCtx.newPage();
      origin.page('/login-csrf', `<!doctype html><title>login</title>${loginForm}`);
      await p.goto(`${origin.origin}/login-csrf`);
      const answered = p.waitForResponse((r: Response) => r.url() === `${ctl.apiBase}/v1/session`, { timeout: 30_000 });
      await p.evaluate(() => (globalThis as unknown as { document: any }).document.forms[0].submit());
      const r = await answered;
      t.equal(r.status(), 400, `${origin === crossSite ? 'cross-site' : 'same-site'} login form (text/plain): 400, the body is a string, not the JSON object the route takes`);
      t.equal((await r.json().catch(() => ({}))).code, 'BK_ERR_BAD_REQUEST');
      t.notOk(await sessionCookieOf(victimCtx, ctl), 'no session cookie was planted in the victim\'s browser');
    }
    t.equal(await ctl.served('POST', '/v1/session'), loginsBefore + 2, 'both forms reached the login route');
    const audit = await ctl.call<{ items: { action: string; status: number; actorId: string }[] }>('GET', '/v1/audit-log?limit=500');
    t.ok(audit.body.items.some((e) => e.action === 'session.login' && e.status === 200), 'control: the audit trail does record successful logins');
    t.same(audit.body.items.filter((e) => e.action === 'session.login' && e.status === 200 && e.actorId === attackerKey.id), [], 'no session was opened with the attacker\'s key');
    t.equal((await ctl.call('GET', '/v1/agents', undefined, victim.key)).status, 200, 'the victim key still works');
  });

  // ---------------------------------------------------------------------------------------------
  t.test('a stolen session id: works until logout or revocation, then never', async (t) => {
    const steal = async (key: string) => {
      const victimCtx = await newContext(t, browser);
      const victimPage = await controllerPage(victimCtx, ctl);
      const login = await loginInPage(victimPage, key);
      t.equal(login.status, 200);
      const cookie = (await sessionCookieOf(victimCtx, ctl))!;
      const thiefCtx = await newContext(t, browser);
      await thiefCtx.addCookies([cookie]);
      const thiefPage = await controllerPage(thiefCtx, ctl);
      return { victimPage, login, thiefPage, thiefCtx };
    };

    const a = await steal(ctl.keys.operator);
    const before = await fetchInPage(a.thiefPage, 'GET', '/v1/session');
    t.equal(before.status, 200, 'the copied cookie works in another browser profile (that is what a theft is)');
    t.equal(before.body.sessionId, a.login.session.sessionId);
    const out = await fetchInPage(a.victimPage, 'DELETE', '/v1/session', { csrf: a.login.session.csrfToken });
    t.same(out, { status: 200, body: { sessionId: a.login.session.sessionId, loggedOut: true } }, 'the victim logs out');
    const stolen = (await a.thiefCtx.cookies(ctl.apiBase)).find((c) => c.name === COOKIE)!;
    for (const [method, path] of [['GET', '/v1/containers'], ['GET', '/v1/session'], ['POST', '/v1/violations/x/acknowledge']] as const) {
      await a.thiefCtx.addCookies([stolen]); // the thief keeps a copy: a cleared cookie is planted again
      const r = await fetchInPage(a.thiefPage, method, path, { csrf: a.login.session.csrfToken, body: method === 'POST' ? {} : undefined });
      t.equal(r.status, 401, `after logout, the stolen id: ${method} ${path} → 401`);
      t.equal(r.body.code, 'BK_ERR_UNAUTHENTICATED');
      t.match(r.body.detail, /no such session \(logged out or expired\)/);
    }
    t.notOk(await sessionCookieOf(a.thiefCtx, ctl), "the refused cookie was cleared from the thief's browser too");

    const keyed = await ctl.mintKey('stolen-then-revoked', 'operator');
    const b = await steal(keyed.key);
    t.equal((await fetchInPage(b.thiefPage, 'GET', '/v1/containers')).status, 200, 'another stolen session works');
    t.equal((await ctl.call('DELETE', `/v1/keys/${keyed.id}`)).status, 200, 'the admin revokes the key behind it');
    const revoked = await fetchInPage(b.thiefPage, 'GET', '/v1/containers');
    t.equal(revoked.status, 401, 'the key revoked: the stolen session is dead');
    t.match(revoked.body.detail, new RegExp(`the API key behind this session \\(${keyed.id}\\) was revoked`));

    const audit = await ctl.call<{ items: { action: string; actorKind?: string; target?: { sessionId?: string } }[] }>('GET', '/v1/audit-log?limit=1000');
    t.ok(audit.body.items.some((e) => e.action === 'session.logout' && e.target?.sessionId === a.login.session.sessionId), 'the logout is in the audit trail with the session\'s public id');
  });

  t.test('a stolen session id dies with idle expiry', async (t) => {
    const idle = await startConsoleController(t, join(tempDir(t), 'idle'), { serveArgs: ['--session-idle-timeout', '10s'] });
    const b2 = await launchBrowser(t, { trust: [idle.serverCertPem] });
    const victimCtx = await newContext(t, b2.browser);
    const login = await loginInPage(await controllerPage(victimCtx, idle), idle.keys.viewer);
    t.equal(login.session.idleTimeoutSeconds, 10);
    const thiefCtx = await newContext(t, b2.browser);
    await thiefCtx.addCookies([(await sessionCookieOf(victimCtx, idle))!]);
    const thiefPage = await controllerPage(thiefCtx, idle);
    t.equal((await fetchInPage(thiefPage, 'GET', '/v1/containers')).status, 200, 'the stolen id works while the session is in use');
    await new Promise((r) => setTimeout(r, 12_500));
    const after = await fetchInPage(thiefPage, 'GET', '/v1/containers');
    t.equal(after.status, 401, 'after 10 s without a request it is refused');
    t.match(after.body.detail, /session unused for more than 10s \(idle timeout\)/);
    t.equal((await fetchInPage(thiefPage, 'GET', '/v1/containers')).status, 401, 'and stays refused (a refused request does not revive it)');

    // A same-site page of another origin (another service on the same host name) gets the
    // cookie sent with its credentialed requests. It cannot read the answers, but without the
    // Sec-Fetch-Site check it could keep a forgotten session alive past its idle timeout, and
    // hold the key's event-stream slots with EventSources. Both are refused, and do not count as use.
    const sameSite = await startOtherOrigin(t, '127.0.0.1');
    const b3 = await launchBrowser(t, { trust: [idle.serverCertPem, sameSite.certPem] });
    const ctx = await newContext(t, b3.browser);
    const consolePage = await controllerPage(ctx, idle);
    const login2 = await loginInPage(consolePage, idle.keys.operator);
    t.equal(login2.status, 200);
    const sessionReadsBefore = await idle.served('GET', '/v1/session', 200);
    const streamsBefore = await idle.served('GET', '/v1/events', 200);
    sameSite.page('/keepalive', '<!doctype html><title>keepalive</title>');
    const attacker = await ctx.newPage();
    await attacker.goto(`${sameSite.origin}/keepalive`);
    await attacker.evaluate((api) => {
      const g = globalThis as unknown as { EventSource: any; setInterval: typeof setInterval };
      g.setInterval(() => void fetch(`${api}/v1/session`, { credentials: 'include' }).catch(() => undefined), 2000);
      for (let i = 0; i < 3; i++) new g.EventSource(`${api}/v1/events`, { withCredentials: true });
    }, idle.apiBase);
    await new Promise((r) => setTimeout(r, 13_000));
    const refusedReads = await idle.served('GET', '/v1/session', 403);
    t.ok(refusedReads >= 3, `the same-site page's credentialed reads reached the controller and were refused (${refusedReads} × 403)`);
    t.equal(await idle.served('GET', '/v1/session', 200), sessionReadsBefore, 'none of them was answered');
    await attacker.close();
    await new Promise((r) => setTimeout(r, 500));
    t.ok((await idle.served('GET', '/v1/events', 403)) >= 3, 'its EventSources were refused');
    t.equal(await idle.served('GET', '/v1/events', 200), streamsBefore, 'no event stream was opened for the same-site page');
    const own = await fetchInPage(consolePage, 'GET', '/v1/containers');
    t.equal(own.status, 401, 'the session idled out although the other page kept sending the cookie');
    t.match(own.body.detail, /idle timeout/);
  });

  // ---------------------------------------------------------------------------------------------
  t.test("a viewer's session: 403 on every mutating route, CSRF token or not", async (t) => {
    const ctx = await newContext(t, browser);
    const page = await controllerPage(ctx, ctl);
    const login = await loginInPage(page, ctl.keys.viewer);
    t.equal(login.session.role, 'viewer');
    // The live document lists every route the server registered (packages/controller/test/openapi checks that).
    const doc = await fetchInPage(page, 'GET', '/v1/openapi.json');
    t.equal(doc.status, 200);
    const mutating: { method: string; path: string }[] = [];
    for (const [path, ops] of Object.entries(doc.body.paths as Record<string, Record<string, unknown>>)) {
      for (const method of Object.keys(ops)) if (['post', 'put', 'patch', 'delete'].includes(method)) mutating.push({ method: method.toUpperCase(), path });
    }
    // The role table in docs/security.md (which the role-matrix test keeps equal to the server's).
    const table = readFileSync(join(ROOT, 'docs/security.md'), 'utf8');
    const documented = [...table.matchAll(/^\| `(POST|PUT|PATCH|DELETE) (\/v1\/[^`]+)` \| (\w+) \|/gm)].map((m) => ({ method: m[1]!, path: m[2]!.replace(/\/:([A-Za-z_]\w*)/g, '/{$1}'), role: m[3]! }));
    t.same(mutating.map((r) => `${r.method} ${r.path}`).sort(), documented.map((r) => `${r.method} ${r.path}`).sort(), 'the walk covers every mutating route the role table lists');
    t.ok(mutating.length >= 20, `${mutating.length} mutating routes`);

    const keysBefore = await keyNames(ctl);
    const own = new Set(['POST /v1/session', 'DELETE /v1/session']);
    for (const r of mutating) {
      if (own.has(`${r.method} ${r.path}`)) continue;
      const url = r.path.replace(/\{[^}]+\}/g, 'x');
      const body = r.method === 'DELETE' ? undefined : {};
      const withToken = await fetchInPage(page, r.method, url, { csrf: login.session.csrfToken, body });
      t.equal(withToken.status, 403, `${r.method} ${url} with a valid CSRF token: 403`);
      const role = documented.find((d) => d.method === r.method && d.path === r.path)?.role;
      if (r.path === '/v1/auth/token') t.match(withToken.body.detail, /only an API key can be exchanged for a token/, `${r.method} ${url}: a session cannot mint tokens`);
      else t.match(withToken.body, { code: 'BK_ERR_FORBIDDEN', detail: new RegExp(`needs the ${role} role or higher`) }, `${r.method} ${url}: BK_ERR_FORBIDDEN naming the ${role} role`);
      const withoutToken = await fetchInPage(page, r.method, url, { body });
      t.equal(withoutToken.body?.code, 'BK_ERR_CSRF', `${r.method} ${url} without the token: BK_ERR_CSRF first`);
    }
    t.same(await keyNames(ctl), keysBefore, 'nothing changed');
    // The session's own routes, last: a new login with the cookie is refused (a session is not a key), logout works.
    const relogin = await fetchInPage(page, 'POST', '/v1/session', { csrf: login.session.csrfToken, body: {} });
    t.equal(relogin.status, 401, 'POST /v1/session with only the cookie: 401 (a session cannot open a session)');
    const out = await fetchInPage(page, 'DELETE', '/v1/session', { csrf: login.session.csrfToken });
    t.equal(out.status, 200, 'DELETE /v1/session: the viewer may log out');

    // The same walk's control: an operator's session IS let through on operator routes.
    const opCtx = await newContext(t, browser);
    const opPage = await controllerPage(opCtx, ctl);
    const op = await loginInPage(opPage, ctl.keys.operator);
    const ack = await fetchInPage(opPage, 'POST', '/v1/violations/x/acknowledge', { csrf: op.session.csrfToken, body: {} });
    t.notOk([401, 403].includes(ack.status), `control: an operator session on POST /v1/violations/x/acknowledge is past authorization (${ack.status} ${ack.body?.code})`);
  });

  // ---------------------------------------------------------------------------------------------
  t.test("a project-scoped session's EventSource never receives another project's events", async (t) => {
    const scoped = await ctl.mintKey('payments-viewer', 'viewer', ['payments']);
    const EVENT_TYPES = [
      'container.updated', 'container.removed', 'container.snapshot', 'agent.online', 'agent.offline', 'stream.gap', 'stream.end',
      'alert.violation', 'alert.action', 'alert.action_failed', 'alert.authz_denied', 'alert.lockdown_finding', 'alert.agent_offline',
      'alert.agent_online', 'alert.cert_expiring', 'alert.image_tag_moved',
    ];
    const listen = async (key: string) => {
      const ctx = await newContext(t, browser);
      const page = await controllerPage(ctx, ctl);
      const login = await loginInPage(page, key);
      t.equal(login.status, 200);
      await page.evaluate((types) => {
        const g = globalThis as unknown as { events: unknown[]; esState: string; EventSource: any };
        g.events = [];
        g.esState = 'connecting';
        const es = new g.EventSource('/v1/events');
        es.onopen = () => (g.esState = 'open');
        es.onerror = () => (g.esState = 'error');
        // Unnamed messages too, so an event of a type this list does not know is still seen.
        es.onmessage = (e: { data: string }) => g.events.push({ type: 'message', ...JSON.parse(e.data) });
        for (const type of types) es.addEventListener(type, (e: { data: string }) => g.events.push(JSON.parse(e.data)));
      }, EVENT_TYPES);
      await page.waitForFunction(() => (globalThis as unknown as { esState: string }).esState === 'open', undefined, { timeout: 30_000 });
      return page;
    };
    const events = (page: Page) => page.evaluate(() => (globalThis as unknown as { events: { type: string; project?: string | null; containerId?: string; name?: string }[] }).events);
    const scopedPage = await listen(scoped.key);
    const adminPage = await listen(ctl.keys.admin);

    // One simulated agent (the agent's real ControllerLink over mutual TLS, enrolled with a join
    // token), whose containers belong to payments, search, platform and data in turn.
    const api = apiClient({ port: ctl.port, ca: Buffer.from(ctl.caPem), apiKey: ctl.adminKey, maxSockets: 2 });
    t.teardown(() => api.close());
    const fleet = new Fleet({ controller: { grpcAddress: ctl.grpcAddr, caFingerprint: ctl.caFingerprint } as RunningController, api, agents: 1, containers: 4, stateDir: join(root, 'sim'), seed: 3 });
    t.teardown(() => fleet.stop());
    await fleet.enrollAll();
    const snap = await fleet.connectAll({ timeoutMs: 60_000 });
    t.equal(snap.stored, 1, 'the simulated agent connected and its snapshot was stored');
    for (let i = 0; i < 8; i++) fleet.hosts[0]!.inventory.start();
    t.ok(await fleet.drained(30_000), 'the controller stored every delta');

    const projects = ['payments', 'search', 'platform', 'data'];
    const deadline = Date.now() + 30_000;
    let adminSeen: Awaited<ReturnType<typeof events>> = [];
    while (Date.now() < deadline) {
      adminSeen = await events(adminPage);
      if (projects.every((p) => adminSeen.filter((e) => e.type === 'container.updated' && e.project === p).length >= 2)) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    for (const p of projects) t.ok(adminSeen.some((e) => e.type === 'container.updated' && e.project === p), `control: the unscoped session received ${p}'s container events`);
    // Both streams read the same ordered rows; the scoped one has had as long. Wait until it has its own project's last event.
    const lastPayments = adminSeen.filter((e) => e.type === 'container.updated' && e.project === 'payments').at(-1);
    let scopedSeen: Awaited<ReturnType<typeof events>> = [];
    const d2 = Date.now() + 30_000;
    while (Date.now() < d2) {
      scopedSeen = await events(scopedPage);
      if (scopedSeen.some((e) => e.containerId === lastPayments?.containerId)) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    await new Promise((r) => setTimeout(r, 1000)); // anything else in flight arrives too
    scopedSeen = await events(scopedPage);
    t.ok(scopedSeen.some((e) => e.containerId === lastPayments?.containerId), 'the scoped session received its own project\'s events');
    t.ok(scopedSeen.filter((e) => e.type === 'container.updated').length >= 2, `payments container events: ${scopedSeen.filter((e) => e.type === 'container.updated').length}`);
    const foreign = scopedSeen.filter((e) => !(e.project === 'payments' || (e.type.startsWith('agent.') && !e.type.startsWith('alert.'))));
    t.same(foreign, [], `no event of another project (or of none) reached the payments session (${scopedSeen.length} received: ${[...new Set(scopedSeen.map((e) => e.type))].join(', ')})`);
    const adminOnly = adminSeen.filter((e) => e.project !== 'payments' && !e.type.startsWith('agent.'));
    t.ok(adminOnly.length >= 6, `${adminOnly.length} events of other projects existed and were withheld`);
  });
});
