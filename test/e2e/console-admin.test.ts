// The console's policy, host audit, audit trail, keys-and-tokens and webhooks views in real
// headless Chromium (test/helpers/browser.ts) against a real controller process: an admin
// dry-runs a pasted policy through the UI, sees the container it would hit under its rule,
// applies it with a comment and finds the new version in force on the server and in the
// version list with a diff; creates an API key (the secret is shown once and works; it is in
// no storage), mints a join token and gets the enroll command; sees the audit chain verified;
// a viewer gets none of the buttons. axe-core (zero serious/critical) on each view. With
// BULKHEAD_CONSOLE_SCREENSHOTS=1 it writes docs/console/{overview-wide,policy-dry-run,policy-diff,
// keys,audit-trail,webhooks}.png (the host audit picture comes from console.test.ts, whose agent
// audits a real engine).
//
// The inventory the dry run reads is written into the controller's database through the
// store's own write path (insertAgent, replaceContainers: what the agent link calls), so the
// test needs no Docker engine: what it checks is the browser path, not the agent's.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { launchBrowser, newContext, runAxe, screenshot, startConsoleController } from '../helpers/browser';
import { ROOT, waitFor } from '../helpers/processes';
import { tempRoot } from './stack';
import { openStore, storeConfigFor } from '../../packages/controller/src/store/open-store';
import { agent, facts, hexId } from '../../packages/controller/test/store/fixtures/records';

const CONSOLE_DIR = join(ROOT, 'packages/controller/dist/console');

const CANDIDATE = `apiVersion: bulkhead.dev/v1
kind: Policy
metadata: { name: console-admin-e2e }
spec:
  rules:
    - id: host.privileged
      description: Containers must not run privileged.
      severity: critical
      mode: monitor
      action: { type: alert }
      check: { type: privileged }
`;

t.test('policy, host audit, audit trail, keys and webhooks views in headless Chromium', { timeout: 170_000 }, async (t) => {
  if (!existsSync(join(CONSOLE_DIR, 'index.html'))) execFileSync(process.execPath, [join(ROOT, 'packages/console/build.mjs')], { stdio: 'inherit' });
  const root = tempRoot();
  t.teardown(root.cleanup);
  const ctl = await startConsoleController(t, root.dir);

  // The fleet the dry run evaluates: one host, a privileged container and a plain one.
  const store = await openStore(storeConfigFor(ctl.dataDir));
  await store.insertAgent(agent('agt_console_e2e', { hostname: 'web-07' }));
  await store.replaceContainers('agt_console_e2e', [facts({ id: hexId('priv'), name: '/danger-zone', privileged: true }), facts({ id: hexId('plain'), name: '/quiet-one' })], new Date());
  await store.close();
  const hook = await ctl.call<{ id: string }>('POST', '/v1/webhooks', { name: 'ops-hook', url: 'https://127.0.0.1:9/hook', allowUnsafeTarget: true });
  t.equal(hook.status, 201, `a webhook endpoint to list: ${JSON.stringify(hook.body)}`);

  const { browser } = await launchBrowser(t, { trust: [ctl.serverCertPem] });
  const ctx = await newContext(t, browser);
  const page = await ctx.newPage();
  const pageErrors: string[] = [];
  page.on('pageerror', (e) => pageErrors.push(e.message));
  await page.goto(`${ctl.apiBase}/`);
  await page.waitForSelector('#api-key');
  await page.fill('#api-key', ctl.keys.admin);
  await page.click('button[type=submit]');
  await page.waitForSelector('[data-testid=session-info]');

  // ---- the admin's header and the overview's cards at the two common desktop widths: the
  // header (nine views, the stream, the session, "Log out") on one line, "Log out" on one
  // line, and no summary card alone on its row.
  await page.waitForSelector('[data-testid=verdict]');
  for (const [width, height] of [[1280, 800], [1920, 1080]] as const) {
    await page.setViewportSize({ width, height });
    const got = await page.evaluate(() => {
      const d = (globalThis as any).document;
      const mid = (e: any) => { const r = e.getBoundingClientRect(); return Math.round(r.top + r.height / 2); };
      const parts = [...d.querySelectorAll('header.top > :not(.skip)')];
      const logout = d.querySelector('header.top button.logout');
      const rows = new Map<number, number>();
      for (const c of d.querySelectorAll('.grid.tiles > .card')) rows.set(Math.round(c.getBoundingClientRect().top), (rows.get(Math.round(c.getBoundingClientRect().top)) ?? 0) + 1);
      return {
        headerSpread: Math.max(...parts.map(mid)) - Math.min(...parts.map(mid)),
        logoutHeight: Math.round(logout.getBoundingClientRect().height),
        lineHeight: parseFloat((globalThis as any).getComputedStyle(logout).lineHeight),
        cardsPerRow: [...rows.values()],
        overflowX: d.documentElement.scrollWidth > d.documentElement.clientWidth,
      };
    });
    t.ok(got.headerSpread <= 4, `${width}×${height}: the admin's header is one line (its parts' centres within ${got.headerSpread} px)`);
    t.ok(got.logoutHeight < 2 * got.lineHeight + 16, `${width}×${height}: "Log out" is one line (${got.logoutHeight} px high)`);
    t.ok(got.cardsPerRow.length > 0 && got.cardsPerRow.every((n) => n >= 2), `${width}×${height}: no overview card alone on its row (cards per row: ${got.cardsPerRow.join(', ')})`);
    t.notOk(got.overflowX, `${width}×${height}: no sideways scrolling`);
    if (width === 1920) await screenshot(page, 'overview-wide', { fullPage: false });
  }
  await page.setViewportSize({ width: 1280, height: 720 });

  // ---- policy: in force, dry run through the UI, apply, diff
  await page.click('nav >> text=Policy');
  await page.waitForSelector('pre.yaml .y-key');
  t.match(await page.textContent('#p-current'), /In force: version 1/, 'the policy in force is shown');
  await runAxe(page, t, 'the policy view');
  await page.fill('#p-text', CANDIDATE);
  await page.click('[data-testid=dry-run]');
  await page.waitForSelector('[data-testid=dry-run-result]');
  const group = await page.textContent('[data-rule-id="host.privileged"]');
  t.match(group, /host\.privileged.*critical.*1\s*container/s, 'hits grouped under the rule, with severity in words');
  t.match(group, /danger-zone/, 'the container the rule would hit');
  t.notMatch(group, /quiet-one/, 'and not the compliant one');
  await runAxe(page, t, 'the policy view with a dry-run result');
  await screenshot(page, 'policy-dry-run');
  await page.click('[data-testid=apply]');
  await page.waitForSelector('dialog.confirm[open]');
  await page.fill('#p-comment', 'privileged containers: watch first');
  await page.click('dialog.confirm button[type=submit]');
  await page.waitForSelector('[data-testid=applied]');
  t.match(await page.textContent('[data-testid=applied]'), /Applied as version 2/);
  const inForce = await ctl.call<{ version: number; name: string; comment: string; createdBy: string }>('GET', '/v1/policies');
  t.same({ version: inForce.body.version, name: inForce.body.name, comment: inForce.body.comment }, { version: 2, name: 'console-admin-e2e', comment: 'privileged containers: watch first' }, 'the server has the new version in force');
  await page.waitForSelector('tr[data-policy-version="2"]');
  await page.waitForSelector('pre.diff .d-add');
  t.match(await page.textContent('pre.diff'), /\+ .*console-admin-e2e/, 'the diff of versions 1 → 2 shows the new name as added');
  await runAxe(page, t, 'the policy view after applying');
  await page.locator('pre.diff').scrollIntoViewIfNeeded();
  await screenshot(page, 'policy-diff');

  // ---- keys and tokens: the secret once, and it works; the enroll command
  await page.click('nav >> text=Keys');
  await page.waitForSelector('table.keys');
  await runAxe(page, t, 'the keys and tokens view');
  await page.fill('#k-name', 'from-the-console');
  await page.selectOption('#k-role', 'viewer');
  await page.click('form[aria-label="Create an API key"] button[type=submit]');
  await page.waitForSelector('[data-testid=new-key]');
  const secret = await page.inputValue('#k-secret');
  t.match(secret, /^bk_/, 'the new key is shown');
  const who = await ctl.call<{ keyName: string; role: string }>('GET', '/v1/auth/whoami', undefined, secret);
  t.same([who.status, who.body.keyName, who.body.role], [200, 'from-the-console', 'viewer'], 'the shown key authenticates as the key created');
  const stored = await page.evaluate<string>('JSON.stringify({ local: JSON.stringify({ ...localStorage }), session: JSON.stringify({ ...sessionStorage }), url: location.href })');
  // The key's tail is its secret part (its head is the public key id, listed in the table).
  const secretPart = secret.slice(-24);
  t.notMatch(stored, secretPart, 'the secret is in no storage and not in the URL');
  await page.click('text=Done, hide it');
  t.equal(await page.$('#k-secret'), null, 'hidden once acknowledged');
  t.match(await page.content(), /from-the-console/, 'the key is listed');
  t.notMatch(await page.content(), secretPart, 'and its secret is not in the page any more');
  await page.fill('#k-desc', 'web-08');
  await page.click('form[aria-label="Mint a join token"] button[type=submit]');
  await page.waitForSelector('[data-testid=join-command]');
  const command = await page.inputValue('#k-command');
  t.match(command, /^bulkhead-agent enroll --controller 127\.0\.0\.1:7443 --token bkj_\S+ --ca-fingerprint sha256:[0-9a-f:]+ --state-dir \/var\/lib\/bulkhead-agent$/i, 'the exact enroll command');
  await runAxe(page, t, 'the keys view with a minted token');
  await screenshot(page, 'keys');

  // ---- audit trail: the chain verified, and the policy apply recorded
  await page.click('nav >> text=Audit trail');
  await page.waitForSelector('[data-testid=chain-status]');
  t.match(await page.textContent('[data-testid=chain-status]'), /Verified: all \d+ entries/, 'chain verification status in words');
  await page.waitForSelector('table.audit >> text=policies.apply');
  await runAxe(page, t, 'the audit trail view');
  await screenshot(page, 'audit-trail');

  // ---- webhooks: endpoint listed, a test sent from the UI
  await page.click('nav >> text=Webhooks');
  await page.waitForSelector(`tr[data-webhook-id="${hook.body.id}"]`);
  await page.click(`button[aria-label="Send test alert to ops-hook"]`);
  await page.waitForSelector('text=Test alert queued for ops-hook');
  await page.waitForSelector('table.deliveries tbody tr[data-delivery-id]');
  t.match(await page.textContent('table.deliveries tbody'), /test/, 'the test delivery is in the endpoint\'s delivery log');
  await runAxe(page, t, 'the webhooks view');
  // The receiver (port 9, nothing listening) refuses the first attempt: the log says why.
  await waitFor('the test delivery\'s first attempt', async () => {
    const r = await ctl.call<{ items: { attempts: number }[] }>('GET', `/v1/webhooks/${hook.body.id}/deliveries`);
    return (r.body.items[0]?.attempts ?? 0) >= 1;
  }, 60_000);
  await page.reload();
  await page.waitForSelector('table.deliveries tbody tr[data-delivery-id]');
  t.match(await page.textContent('table.deliveries tbody tr[data-delivery-id]'), /ECONNREFUSED|refused|connect/i, 'the delivery log shows the failed attempt and why');
  await runAxe(page, t, 'the webhooks view with a failed attempt');
  await screenshot(page, 'webhooks');

  // ---- host audit: the host is listed (no report yet: said so)
  await page.click('nav >> text=Host audit');
  await page.waitForSelector('#h-agent');
  await runAxe(page, t, 'the host audit view');
  t.same(pageErrors, [], 'no uncaught error in the page');

  // ---- a viewer: the same views, no action buttons
  const vctx = await newContext(t, browser);
  const vpage = await vctx.newPage();
  await vpage.goto(`${ctl.apiBase}/`);
  await vpage.waitForSelector('#api-key');
  await vpage.fill('#api-key', ctl.keys.viewer);
  await vpage.click('button[type=submit]');
  await vpage.waitForSelector('[data-testid=session-info]');
  await vpage.goto(`${ctl.apiBase}/#/policy`);
  await vpage.waitForSelector('tr[data-policy-version="2"]');
  t.equal(await vpage.$('[data-testid=dry-run]'), null, 'a viewer gets no dry run');
  t.equal(await vpage.$('#p-text'), null, 'nor a policy editor');
  await vpage.goto(`${ctl.apiBase}/#/webhooks`);
  await vpage.waitForSelector(`tr[data-webhook-id="${hook.body.id}"]`);
  t.equal(await vpage.$('button:has-text("Send test")'), null, 'a viewer gets no test button');
  t.equal(await vpage.$('nav >> text=Keys'), null, 'the keys view is not in a viewer\'s navigation');
  t.equal(await vpage.$('nav >> text=Audit trail'), null, 'nor the audit trail');
  await runAxe(vpage, t, 'the webhooks view as a viewer');
});
