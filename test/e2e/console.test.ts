// The web console end to end, in real headless Chromium (test/helpers/browser.ts) against a
// real controller + agent + private dockerd: log in with an API key, see a container started
// on the engine appear live, see a violation appear and acknowledge it, pause a container from
// its page and find it paused on the engine (docker inspect), check that a viewer gets no
// action buttons, and a key limited to `containers.pause` sees Pause alone (and its forged kill
// is refused); see each host's CIS score and lockdown findings from the agent's own host audit
// on the overview and in Host audit; log out and find the session dead server-side. axe-core runs on every view
// (zero serious/critical), the page never holds the key (storage, URL, cookie jar visible to
// script) and no Content-Security-Policy violation happens. With BULKHEAD_CONSOLE_SCREENSHOTS=1
// it also writes docs/console/*.png.
//
// BULKHEAD_CONSOLE_BENCH=N (e.g. 30) also measures, for BENCHMARKS.md: the compressed size of
// the console's JS+CSS, the overview's first meaningful paint cold (a new browser context each
// time), and N container starts on the engine → row visible in an open Containers view.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { request } from 'node:https';
import { brotliCompressSync, gzipSync } from 'node:zlib';
import type { Test } from 'tap';
import type { Page } from 'playwright-core';
import { fetchInPage, launchBrowser, newContext, runAxe, screenshot, startConsoleController } from '../helpers/browser';
import { LABEL_ARGS, removeLabelledContainers, startPrivateEngine } from '../helpers/engine';
import { ROOT, apiRequest, waitFor } from '../helpers/processes';
import { enrollAgent, tempRoot } from './stack';

const CONSOLE_DIR = join(ROOT, 'packages/controller/dist/console');
const BENCH = Number(process.env['BULKHEAD_CONSOLE_BENCH'] ?? '0');

const POLICY = `apiVersion: bulkhead.dev/v1
kind: Policy
metadata: { name: console-e2e }
spec:
  rules:
    - id: quotas.memory
      description: Console test apps must set a memory limit.
      severity: high
      mode: monitor
      action: { type: alert }
      scope: { containerLabels: { app: console-viol } }
      check: { type: resource-limits, requireMemory: true, requireCpu: false, requirePids: false }
`;

/** GET with only the session cookie (what a thief holding a copy of it would send). */
function withCookie(base: string, caPem: string, path: string, sessionId: string): Promise<{ status: number }> {
  return new Promise((resolve, reject) => {
    const req = request(new URL(path, base), { method: 'GET', ca: caPem, headers: { cookie: `__Host-bulkhead_session=${sessionId}` } }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0 }));
    });
    req.on('error', reject);
    req.end();
  });
}

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

t.test('the web console in headless Chromium', { timeout: 600_000 }, async (t) => {
  // The controller reads the built console when it starts; build it if this checkout has not.
  if (!existsSync(join(CONSOLE_DIR, 'index.html'))) execFileSync(process.execPath, [join(ROOT, 'packages/console/build.mjs')], { stdio: 'inherit' });

  const engine = await startPrivateEngine({ t });
  t.teardown(() => removeLabelledContainers(engine).then(() => undefined, () => undefined));
  const root = tempRoot();
  t.teardown(root.cleanup);
  // History points a second (default a minute), so the container page opens with several of the controller's.
  const ctl = await startConsoleController(t, root.dir, { heartbeatInterval: '500ms', offlineAfter: '5s', serveArgs: ['--usage-history-interval', '1s'] });
  const put = await apiRequest<{ version: number }>(ctl.apiBase, 'PUT', '/v1/policies', ctl.caPem, ctl.adminKey, POLICY, 'application/yaml');
  t.equal(put.status, 200, `policy applied: ${JSON.stringify(put.body)}`);

  const agent = await enrollAgent(ctl, root.dir, 'agent1', engine.dockerHost, ['--usage-interval', '1s', '--usage-report-interval', '1s']);
  agent.start();
  t.teardown(() => agent.stop());
  await waitFor('agent online', async () => (await ctl.call<{ items: { id: string; status: string }[] }>('GET', '/v1/agents')).body.items.find((a) => a.id === agent.agentId && a.status === 'online'), 30_000);

  // A container from before the console opens: the one to pause.
  const pauseMe = (await engine.dockerOk(['run', '-d', '--network', 'none', ...LABEL_ARGS, '--name', 'web-frontend', '--memory', '64m', engine.image, 'sleep', '600'])).trim();
  // A little CPU (a tenth of a core at most) so the overview's busiest-containers chart has a bar.
  await engine.dockerOk(['run', '-d', '--network', 'none', ...LABEL_ARGS, '--name', 'batch-worker', '--cpus', '0.1', engine.image, 'sh', '-c', 'while :; do :; done']);
  await waitFor('web-frontend known', async () => (await ctl.call<{ state: string }>('GET', `/v1/containers/${agent.agentId}/${pauseMe}`)).body.state === 'running', 30_000);
  // Memory growing 2 MiB a second: reported (and so given a history point) every report.
  const grower = (await engine.dockerOk([
    'run', '-d', '--network', 'none', ...LABEL_ARGS, '--name', 'mem-grower', '--tmpfs', '/fill:size=200m', engine.image,
    'sh', '-c', 'i=0; while [ $i -lt 90 ]; do dd if=/dev/zero of=/fill/f$i bs=1M count=2 2>/dev/null; i=$((i+1)); sleep 1; done; sleep 600',
  ])).trim();

  const { browser } = await launchBrowser(t, { trust: [ctl.serverCertPem] });
  const ctx = await newContext(t, browser);
  const page = await ctx.newPage();
  const cspViolations: string[] = [];
  const pageErrors: string[] = [];
  page.on('console', (m) => {
    if (/Content Security Policy|Refused to/i.test(m.text())) cspViolations.push(m.text());
  });
  page.on('pageerror', (e) => pageErrors.push(e.message));

  // ---- login
  const res = await page.goto(`${ctl.apiBase}/`);
  t.equal(res?.status(), 200, 'GET / serves the console');
  t.match(res?.headers()['content-security-policy'], /script-src 'self'/, 'with the strict CSP');
  await page.waitForSelector('#api-key');
  await runAxe(page, t, 'the login page');
  await screenshot(page, 'login');
  await page.fill('#api-key', 'bk_0000000000000000_wrongwrongwrongwrongwrongwrongwrongwrongwro');
  await page.click('button[type=submit]');
  await page.waitForSelector('#login-error');
  t.match(await page.textContent('#login-error'), /not accepted/, 'a wrong key is refused with a message');
  t.equal(await page.inputValue('#api-key'), '', 'and the field is cleared');

  await page.fill('#api-key', ctl.keys.operator);
  await page.click('button[type=submit]');
  await page.waitForSelector('[data-testid=session-info]');
  t.match(await page.textContent('[data-testid=session-info]'), /console-operator.*operator.*all projects/s, 'session info: key name, role, projects');
  // Strings evaluated in the page (the tests compile without the DOM library).
  const leaks = JSON.parse(await page.evaluate<string>('JSON.stringify({ url: location.href, cookie: document.cookie, local: JSON.stringify({ ...localStorage }), session: JSON.stringify({ ...sessionStorage }), html: document.documentElement.outerHTML })')) as Record<string, string>;
  for (const [where, text] of Object.entries(leaks)) t.notMatch(text, ctl.keys.operator, `the key is not in ${where}`);
  t.equal(leaks.cookie, '', 'script sees no cookie (HttpOnly)');
  const cookie = (await ctx.cookies()).find((c) => c.name === '__Host-bulkhead_session');
  t.ok(cookie?.httpOnly && cookie.secure && cookie.sameSite === 'Strict', 'the session cookie is HttpOnly, Secure, SameSite=Strict');

  // ---- overview
  await page.waitForSelector('[data-testid=verdict]');
  await page.waitForSelector('text=web-frontend');
  await runAxe(page, t, 'the fleet overview');

  // ---- containers: a container started on the engine appears without a reload
  await page.click('nav >> text=Containers');
  await page.waitForSelector('table.containers >> text=web-frontend');
  const navigations: string[] = [];
  page.on('framenavigated', (f) => navigations.push(f.url()));
  const live = (await engine.dockerOk(['run', '-d', '--network', 'none', ...LABEL_ARGS, '--name', 'live-arrival', engine.image, 'sleep', '600'])).trim();
  const started = Date.now();
  await page.waitForSelector(`tr[data-container-id="${live}"]`, { timeout: 20_000 });
  t.pass(`a container started on the engine shows in the open view (${Date.now() - started} ms)`);
  t.same(navigations.filter((u) => !u.includes('#')), [], 'without a page load');
  await runAxe(page, t, 'the containers view');
  await screenshot(page, 'containers');

  // Server-side filter through the form: state=paused shows none of these.
  await page.selectOption('#f-state', 'exited');
  await page.click('form.filters button[type=submit]');
  await page.waitForSelector('text=No container matches.');
  t.match(page.url(), /#\/containers\?state=exited/, 'filters live in the hash (no credential there)');
  await page.click('text=Clear');
  await page.waitForSelector('table.containers >> text=web-frontend');
  // Free-text search and a server-side sort from the column headers.
  await page.fill('#f-q', 'live-arr');
  await page.click('form.filters button[type=submit]');
  await waitFor('search applied', async () => (await page.$$('table.containers tbody tr')).length === 1, 15_000);
  t.match(await page.textContent('table.containers tbody'), /live-arrival/, 'search: only the matching container');
  await page.click('text=Clear');
  await page.click('th button.sort:has-text("CPU")');
  await page.waitForSelector('th[aria-sort=descending] >> text=CPU');
  t.match(page.url(), /sort=-cpu/, 'CPU sorts busiest first, in the address');
  await waitFor('busiest first', async () => /batch-worker/.test((await page.textContent('table.containers tbody tr:first-child th')) ?? ''), 15_000);
  t.pass('the CPU-busy container is the first row');
  await runAxe(page, t, 'the sorted containers view');
  await page.click('text=Clear');

  // ---- a violation appears live; acknowledge it with a comment
  await page.click('nav >> text=Violations');
  await page.waitForSelector('table.violations');
  const breaker = (await engine.dockerOk(['run', '-d', '--network', 'none', ...LABEL_ARGS, '--label', 'app=console-viol', '--name', 'no-limits', engine.image, 'sleep', '600'])).trim();
  const first = await page.waitForSelector('tr:has-text("quotas.memory"):has-text("no-limits")', { timeout: 30_000 });
  t.match(await first.textContent(), /high/, 'the violation row names its severity in words');
  await runAxe(page, t, 'the violations view');
  await screenshot(page, 'violations');
  // "Breaks rule X" in the containers view: only the container with an open violation of it.
  await page.goto(`${ctl.apiBase}/#/containers?rule=quotas.memory`);
  await page.waitForSelector('table.containers >> text=no-limits');
  t.equal((await page.$$('table.containers tbody tr')).length, 1, 'the rule filter lists only the breaking container');
  await page.goto(`${ctl.apiBase}/#/violations`);
  await page.waitForSelector('tr:has-text("quotas.memory"):has-text("no-limits")');
  await page.click('tr:has-text("quotas.memory"):has-text("no-limits") button:has-text("Acknowledge")');
  await page.waitForSelector('dialog[open] #ack-comment');
  t.match(await page.textContent('dialog[open] h2'), /quotas\.memory on no-limits \(host /, 'the dialog names the rule, container and host');
  await runAxe(page, t, 'the acknowledge dialog');
  await page.fill('#ack-comment', 'INC-42: limits next release');
  await page.click('dialog[open] button[type=submit]');
  await page.waitForSelector('text=Acknowledged quotas.memory on no-limits');
  const acked = await ctl.call<{ items: { containerId: string; acknowledged: boolean; acknowledgement: { comment: string; byName: string } | null }[] }>('GET', `/v1/violations?container=${breaker}`);
  t.match(acked.body.items[0], { acknowledged: true, acknowledgement: { comment: 'INC-42: limits next release', byName: 'console-operator' } }, 'the acknowledgement is recorded with the comment and who');
  // Default filter is "open": it left the list.
  await waitFor('acknowledged row gone from the open list', async () => (await page.$('tr:has-text("no-limits")')) === null, 10_000);
  t.pass('the acknowledged violation leaves the open list');

  // ---- container detail: the usage chart opens with the controller's history, not an empty line
  await waitFor('mem-grower has ≥ 3 history points at the controller', async () => {
    const h = await ctl.call<{ points?: unknown[] }>('GET', `/v1/containers/${agent.agentId}/${grower}/usage`);
    return (h.body.points?.length ?? 0) >= 3;
  }, 60_000, 250);
  const opened = Date.now();
  await page.goto(`${ctl.apiBase}/#/containers/${agent.agentId}/${grower}`);
  await page.waitForSelector('[data-testid=usage-history]:has-text("kept by the controller")', { timeout: 4000 });
  const sparkLabel = (await page.getAttribute('.spark svg[role=img]', 'aria-label')) ?? '';
  const readings = Number(/over the last (\d+) readings/.exec(sparkLabel)?.[1] ?? 0);
  const openMs = Date.now() - opened;
  t.ok(readings >= 3, `the chart has the server's points at once: ${readings} readings ${openMs} ms after opening (${sparkLabel})`);
  t.ok(openMs < 5000, `before the page's first 5 s re-read (${openMs} ms), so they came from the server`);
  t.match(await page.textContent('[data-testid=usage-history]'), /\d+ points? kept by the controller \(one per 1 s, up to 1 min\)/, 'the page says where the points come from');

  // ---- container detail: facts, usage chart, pause with a confirmation naming container and host
  await page.goto(`${ctl.apiBase}/#/containers/${agent.agentId}/${pauseMe}`);
  await page.waitForSelector('h2:has-text("web-frontend")');
  t.match(await page.textContent('main'), /What policy sees[\s\S]*Privileged[\s\S]*Capabilities/, 'the facts policy sees');
  t.match(await page.textContent('[data-testid=scan]'), /no digest/, 'an image run by tag without a digest: says no scan can be matched');
  await page.waitForSelector('.spark svg[role=img]', { timeout: 30_000 });
  t.ok(await page.$('.actions button:has-text("Pause")'), 'an operator sees the action buttons');
  await runAxe(page, t, 'the container page');
  await page.click('.actions button:has-text("Pause")');
  const dialogTitle = await page.textContent('dialog[open] h2');
  t.match(dialogTitle, /Pause container web-frontend on host \S+\?/, 'the confirmation names the container and the host');
  await page.click('dialog[open] button[type=submit]');
  await page.waitForSelector('[data-testid=action-result]', { timeout: 30_000 });
  t.match(await page.textContent('[data-testid=action-result]'), /pause web-frontend on .*state now paused/, 'the result is shown');
  t.equal((await engine.dockerOk(['inspect', '-f', '{{.State.Paused}}', pauseMe])).trim(), 'true', 'docker inspect: the container is paused on the engine');
  await page.waitForSelector('h2:has-text("web-frontend") .state-paused', { timeout: 20_000 });
  t.pass('the page shows it paused');
  await page.click('.actions button:has-text("Unpause")');
  await page.click('dialog[open] button[type=submit]');
  await page.waitForSelector('[data-testid=action-result]:has-text("state now running")', { timeout: 30_000 });

  await screenshot(page, 'container');

  // The overview now has a violation and two actions on its timeline, and the host's CIS
  // score and lockdown findings from the audit the agent ran at start on this engine.
  const hostAudit = await waitFor('the agent\'s host audit at the controller', async () => {
    const r = await ctl.call<{ score: number; summary: { cis: { pass: number; warn: number }; lockdown: { total: number } } }>('GET', `/v1/agents/${agent.agentId}/audit`);
    return r.status === 200 ? r.body : undefined;
  }, 90_000);
  await page.click('nav >> text=Overview');
  await page.waitForSelector('.legend-item.series-action:has-text("actions: 2")', { timeout: 20_000 });
  t.match(await page.textContent('.timeline figcaption'), /violations: 1[\s\S]*actions: 2/, 'the timeline counts the violation and the two actions');
  const hostRow = await page.waitForSelector(`[data-testid=hosts-audit] tr[data-agent-id="${agent.agentId}"]`, { timeout: 20_000 });
  const hostText = (await hostRow.textContent()) ?? '';
  t.match(hostText, new RegExp(`${Math.round(hostAudit.score)} %\\s*\\(${hostAudit.summary.cis.pass} PASS · ${hostAudit.summary.cis.warn} WARN\\)`), `the overview shows the host's CIS score with its counts in words (${hostText.replace(/\s+/g, ' ')})`);
  t.match(hostText, hostAudit.summary.lockdown.total === 0 ? /none/ : /(critical|high|medium|low|info) \d+/, 'and its open lockdown findings by severity, in words');
  t.match(await page.textContent('[data-testid=hosts-audit]'), /1 host audited/, 'how many hosts were audited');
  await runAxe(page, t, 'the fleet overview with data');
  await screenshot(page, 'overview');

  // Host audit, from the overview's row: the same report in full.
  await page.click(`[data-testid=hosts-audit] tr[data-agent-id="${agent.agentId}"] a`);
  await page.waitForSelector('#h-score');
  t.match(await page.textContent('#h-score'), new RegExp(`CIS score ${Math.round(hostAudit.score)} %`), 'the host audit view shows the same score');
  await page.waitForSelector('table.cis tbody tr');
  await runAxe(page, t, 'the host audit view');
  // The picture: the score, lockdown findings and the CIS report's WARN rows (the start of them).
  await page.selectOption('#h-result', 'WARN');
  await page.waitForSelector('table.cis tbody tr[data-cis-result="WARN"]');
  t.equal(await page.$('table.cis tbody tr:not([data-cis-result="WARN"])'), null, 'the CIS report filtered to WARN');
  await runAxe(page, t, 'the host audit view filtered to WARN');
  await page.setViewportSize({ width: 1280, height: 1500 });
  await screenshot(page, 'host-audit', { fullPage: false });
  await page.setViewportSize({ width: 1280, height: 720 });

  // ---- keyboard only: skip link first, then the navigation reaches every view
  await page.goto(`${ctl.apiBase}/#/`);
  await page.reload(); // a fresh document: focus starts at the top
  await page.waitForSelector('[data-testid=verdict]');
  await page.keyboard.press('Tab');
  t.equal(await page.evaluate<string>('document.activeElement && document.activeElement.textContent'), 'Skip to content', 'Tab reaches the skip link first');
  let reached = false;
  for (let i = 0; i < 8 && !reached; i++) {
    await page.keyboard.press('Tab');
    reached = (await page.evaluate<string>('document.activeElement && document.activeElement.textContent')) === 'Violations';
  }
  t.ok(reached, 'the Violations link is reachable with Tab');
  await page.keyboard.press('Enter');
  await page.waitForSelector('table.violations');
  t.match(page.url(), /#\/violations/, 'and Enter opens it');

  // ---- 200 % zoom: a 1280×720 window at 200 % lays out like 640×360 CSS pixels; nothing
  // may need sideways scrolling of the page (wide tables scroll inside their own box).
  await page.setViewportSize({ width: 640, height: 360 });
  for (const view of ['#/', '#/containers', `#/containers/${agent.agentId}/${pauseMe}`, '#/violations?acknowledged=all']) {
    await page.goto(`${ctl.apiBase}/${view}`);
    await page.waitForSelector('main h1');
    await page.waitForTimeout(300);
    const overflow = await page.evaluate<number>('document.documentElement.scrollWidth - document.documentElement.clientWidth');
    t.ok(overflow <= 1, `${view} at 200 % zoom: no horizontal page scroll (${overflow} px)`);
  }
  await page.setViewportSize({ width: 1280, height: 720 });

  // ---- a viewer sees no action or acknowledge buttons
  // (In the dark theme: axe-core checks its contrast too.)
  const vctx = await newContext(t, browser, { colorScheme: 'dark' });
  const vpage = await vctx.newPage();
  await vpage.goto(`${ctl.apiBase}/`);
  await vpage.fill('#api-key', ctl.keys.viewer);
  await vpage.click('button[type=submit]');
  await vpage.waitForSelector('[data-testid=session-info]');
  await vpage.goto(`${ctl.apiBase}/#/containers/${agent.agentId}/${pauseMe}`);
  await vpage.waitForSelector('h2:has-text("web-frontend")');
  t.equal(await vpage.$('.actions'), null, 'a viewer sees no action buttons on a container');
  t.equal(await vpage.evaluate<string>('getComputedStyle(document.body).backgroundColor'), 'rgb(15, 18, 22)', 'the dark theme follows prefers-color-scheme');
  await runAxe(vpage, t, 'the container page, dark theme');
  await vpage.goto(`${ctl.apiBase}/#/violations?acknowledged=all`);
  await vpage.waitForSelector('tr:has-text("no-limits")');
  t.equal(await vpage.$('button:has-text("cknowledge")'), null, 'nor acknowledge buttons');
  await runAxe(vpage, t, 'the violations view, dark theme');
  await vpage.goto(`${ctl.apiBase}/#/`);
  await vpage.waitForSelector('[data-testid=verdict]');
  await runAxe(vpage, t, 'the fleet overview, dark theme');
  await screenshot(vpage, 'overview-dark');

  // ---- a key limited to pausing (keys create --only containers.pause, plus what the console
  // reads): the container page offers Pause alone; a forged kill with its session is refused.
  const pauseOnly = await ctl.call<{ key: string; actions: string[] }>('POST', '/v1/keys', {
    name: 'night-shift', role: 'operator',
    actions: ['session.login', 'session.read', 'session.logout', 'events.read', 'summary.read', 'agents.read', 'containers.read', 'violations.read', 'alerts.read', 'scans.read', 'containers.pause'],
  });
  t.equal(pauseOnly.status, 201, `a key limited to pause: ${JSON.stringify(pauseOnly.body).slice(0, 200)}`);
  const pctx = await newContext(t, browser);
  const ppage = await pctx.newPage();
  ppage.on('pageerror', (e) => pageErrors.push(e.message));
  await ppage.goto(`${ctl.apiBase}/`);
  await ppage.fill('#api-key', pauseOnly.body.key);
  await ppage.click('button[type=submit]');
  await ppage.waitForSelector('[data-testid=session-info]');
  await ppage.goto(`${ctl.apiBase}/#/containers/${agent.agentId}/${pauseMe}`);
  await ppage.waitForSelector('h2:has-text("web-frontend") .state-running');
  await ppage.waitForSelector('.actions button:has-text("Pause")');
  t.same(await ppage.$$eval('.actions button', (bs) => bs.map((b) => (b as unknown as { textContent: string }).textContent.trim())), ['Pause'], 'the pause-only key sees Pause and no other action (no Stop, Kill, Quarantine)');
  await runAxe(ppage, t, 'the container page for a pause-only key');
  const sess = await fetchInPage(ppage, 'GET', '/v1/session');
  t.same(sess.body.allowedActions.filter((a: string) => a.startsWith('containers.') && a !== 'containers.read'), ['containers.pause'], 'GET /v1/session says what the session may do');
  const forged = await fetchInPage(ppage, 'POST', `/v1/containers/${agent.agentId}/${pauseMe}/actions`, { csrf: sess.body.csrfToken, body: { action: 'kill' } });
  t.equal(forged.status, 403, 'a forged kill with that session (and its CSRF token) is refused by the server');
  t.match(forged.body.detail, /containers\.kill is not among the actions session ses_[0-9a-f]+ of key ak_[0-9a-f]+ "night-shift" is limited to: .*containers\.pause/, 'naming the limit');
  t.equal((await engine.dockerOk(['inspect', '-f', '{{.State.Running}} {{.State.Paused}}', pauseMe])).trim(), 'true false', 'docker inspect: the container still runs');
  await ppage.click('.actions button:has-text("Pause")');
  await ppage.click('dialog[open] button[type=submit]');
  await ppage.waitForSelector('[data-testid=action-result]:has-text("state now paused")', { timeout: 30_000 });
  t.equal((await engine.dockerOk(['inspect', '-f', '{{.State.Paused}}', pauseMe])).trim(), 'true', 'the allowed pause works');
  await ppage.waitForSelector('h2:has-text("web-frontend") .state-paused', { timeout: 20_000 });
  t.equal(await ppage.$('.actions'), null, 'paused: Unpause is not this key\'s to do, so no button at all');

  // ---- logout: the session is dead server-side, wherever a copy of the cookie is
  const stolen = (await ctx.cookies()).find((c) => c.name === '__Host-bulkhead_session')!.value;
  const before = await withCookie(ctl.apiBase, ctl.caPem, '/v1/session', stolen);
  t.equal(before.status, 200, 'the cookie works before logout');
  await page.click('button.logout');
  await page.waitForSelector('#api-key');
  t.match(await page.textContent('main'), /logged out/, 'the login page says so');
  const after = await withCookie(ctl.apiBase, ctl.caPem, '/v1/session', stolen);
  t.equal(after.status, 401, 'GET /v1/session with the old cookie: 401 after logout');

  t.same(cspViolations, [], 'no Content-Security-Policy violation in any view');
  t.same(pageErrors, [], 'no uncaught error in the page');

  if (BENCH > 0) await bench(t, ctl.apiBase, ctl.keys.viewer, browser, engine);
});

async function bench(t: Test, apiBase: string, key: string, browser: import('playwright-core').Browser, engine: { dockerOk(args: string[]): Promise<string> }): Promise<void> {
  // Size: what a browser downloads, compressed as the controller serves it.
  const assets = readdirSync(join(CONSOLE_DIR, 'assets'));
  let raw = 0;
  let gz = 0;
  let br = 0;
  for (const f of assets) {
    const b = readFileSync(join(CONSOLE_DIR, 'assets', f));
    raw += b.length;
    gz += gzipSync(b, { level: 9 }).length;
    br += brotliCompressSync(b).length;
  }
  t.ok(br <= 250 * 1024 && gz <= 250 * 1024, `compressed JS+CSS ${gz} B gzip, ${br} B brotli (${raw} B raw) ≤ 250 KB`);

  // First meaningful paint of the overview, cold: a fresh context (empty cache), logged in,
  // then a navigation to /; the time until the verdict line is painted (rAF after it exists).
  const paints: number[] = [];
  for (let i = 0; i < 10; i++) {
    const ctx = await browser.newContext();
    const p = await ctx.newPage();
    await p.goto(`${apiBase}/healthz`);
    await p.evaluate(async (k) => {
      await fetch('/v1/session', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ key: k }) });
    }, key);
    await p.addInitScript(
      "{ const tick = () => { if (document.querySelector('[data-testid=verdict]')) requestAnimationFrame(() => { window.__fmp = performance.now(); }); else requestAnimationFrame(tick); }; requestAnimationFrame(tick); }",
    );
    await p.goto(`${apiBase}/`);
    const fmp = await waitForPaint(p);
    paints.push(fmp);
    await ctx.close();
  }
  paints.sort((a, b) => a - b);
  t.comment(`BENCH first meaningful paint of the overview, cold, ms: median ${pct(paints, 50).toFixed(0)}, p95 ${pct(paints, 95).toFixed(0)}, max ${paints[paints.length - 1]!.toFixed(0)} (n=${paints.length})`);
  t.ok(pct(paints, 50) < 5000, 'first paint well within bounds (the 1 s target is reported, not asserted, on a shared machine)');

  // Engine event → visible: an open Containers view, N container starts.
  const ctx = await browser.newContext();
  const p = await ctx.newPage();
  await p.goto(`${apiBase}/healthz`);
  await p.evaluate(async (k) => {
    await fetch('/v1/session', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ key: k }) });
  }, key);
  await p.goto(`${apiBase}/#/containers?state=running&limit=500`);
  await p.waitForSelector('table.containers tbody tr');
  const lat: number[] = [];
  for (let i = 0; i < BENCH; i++) {
    // `docker run -d` returns once the container started: the event is on the engine by then.
    const id = (await engine.dockerOk(['run', '-d', '--network', 'none', ...LABEL_ARGS, '--name', `bench-${i}`, 'bulkhead-test/busybox:1', 'sleep', '600'])).trim();
    const t0 = Date.now();
    await p.waitForSelector(`tr[data-container-id="${id}"]`, { timeout: 30_000 });
    lat.push(Date.now() - t0);
  }
  await ctx.close();
  lat.sort((a, b) => a - b);
  t.comment(`BENCH engine container start -> row visible in the open console, ms: p50 ${pct(lat, 50)}, p95 ${pct(lat, 95)}, p99 ${pct(lat, 99)}, max ${lat[lat.length - 1]} (n=${lat.length})`);
  t.ok(pct(lat, 99) < 10_000, 'engine → console latency bounded');
}

async function waitForPaint(p: Page): Promise<number> {
  return waitFor('overview painted', async () => p.evaluate<number | undefined>('window.__fmp'), 30_000, 20);
}
