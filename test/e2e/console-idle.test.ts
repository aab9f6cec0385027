// The session idle timeout against an unattended console (attack review of issue 14): a page
// left open on a container keeps asking the API (usage re-read every 5 s, reloads on events),
// and every request moves the server's idle clock, so without the console's own idle logout a
// walked-away-from browser stays logged in for the whole session lifetime. Real controller
// (--session-idle-timeout 10s) + agent + private dockerd + headless Chromium, no input at all.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { request } from 'node:https';
import { launchBrowser, newContext, startConsoleController } from '../helpers/browser';
import { LABEL_ARGS, removeLabelledContainers, startPrivateEngine } from '../helpers/engine';
import { ROOT, waitFor } from '../helpers/processes';
import { enrollAgent, tempRoot } from './stack';

const CONSOLE_DIR = join(ROOT, 'packages/controller/dist/console');

function whoami(base: string, caPem: string, sessionId: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(new URL('/v1/auth/whoami', base), { ca: caPem, headers: { cookie: `__Host-bulkhead_session=${sessionId}` } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end();
  });
}

t.test('the console with a real agent', { timeout: 300_000 }, async (t) => {
  if (!existsSync(join(CONSOLE_DIR, 'index.html'))) execFileSync(process.execPath, [join(ROOT, 'packages/console/build.mjs')], { stdio: 'inherit' });
  const engine = await startPrivateEngine({ t });
  t.teardown(() => removeLabelledContainers(engine).then(() => undefined, () => undefined));
  const root = tempRoot();
  t.teardown(root.cleanup);
  const ctl = await startConsoleController(t, root.dir, { heartbeatInterval: '500ms', serveArgs: ['--session-idle-timeout', '10s'] });
  const agent = await enrollAgent(ctl, root.dir, 'agent1', engine.dockerHost, ['--usage-interval', '1s', '--usage-report-interval', '1s']);
  agent.start();
  t.teardown(() => agent.stop());
  const id = (await engine.dockerOk(['run', '-d', '--network', 'none', ...LABEL_ARGS, '--name', 'idle-web', engine.image, 'sleep', '600'])).trim();
  const other = (await engine.dockerOk(['run', '-d', '--network', 'none', ...LABEL_ARGS, '--name', 'bystander', engine.image, 'sleep', '600'])).trim();
  for (const c of [id, other]) await waitFor('container known', async () => (await ctl.call<{ state: string }>('GET', `/v1/containers/${agent.agentId}/${c}`)).body.state === 'running', 60_000);

  const { browser } = await launchBrowser(t, { trust: [ctl.serverCertPem] });

  await t.test('a confirmation does not follow the user to another container', async (t) => {
    const ctx = await newContext(t, browser);
    const page = await ctx.newPage();
    await page.goto(`${ctl.apiBase}/console/#/containers/${agent.agentId}/${other}`);
    await page.waitForSelector('#api-key');
    await page.fill('#api-key', ctl.keys.operator);
    await page.click('button[type=submit]');
    await page.waitForSelector('text=bystander');
    await page.goto(`${ctl.apiBase}/console/#/containers/${agent.agentId}/${id}`);
    await page.click('.actions button:text-is("Kill")');
    await page.waitForSelector('dialog.confirm[open]');
    t.match(await page.textContent('dialog.confirm'), /Kill container idle-web/, 'the dialog names the container');
    // Back (Alt+Left, the browser's button): the previous container's page.
    await page.evaluate('history.back()');
    await page.waitForSelector('h2:has-text("bystander")');
    await page.waitForTimeout(1000);
    t.equal(await page.$('dialog.confirm[open]'), null, 'no Kill confirmation for the container nobody chose');
    const state = (await ctl.call<{ state: string }>('GET', `/v1/containers/${agent.agentId}/${other}`)).body.state;
    t.equal(state, 'running');
    await ctx.close();
  });

  await t.test('an unattended console logs itself out after the idle timeout', async (t) => {
    const ctx = await newContext(t, browser);
    const page = await ctx.newPage();
    await page.goto(`${ctl.apiBase}/console/`);
    await page.waitForSelector('#api-key');
    await page.fill('#api-key', ctl.keys.viewer);
    await page.click('button[type=submit]');
    await page.waitForSelector('[data-testid=session-info]');
    const cookie = (await ctx.cookies(ctl.apiBase)).find((c) => c.name === '__Host-bulkhead_session');
    t.ok(cookie, 'logged in');
    // Open the container page (a hash change: no input event is synthesised), then nobody touches anything.
    await page.evaluate(`location.hash = ${JSON.stringify(`#/containers/${agent.agentId}/${id}`)}`);
    await page.waitForSelector('text=idle-web');
    const requests: string[] = [];
    page.on('request', (r) => requests.push(r.url()));
    // Three idle timeouts of silence from the person (30 s).
    await page.waitForTimeout(30_000);
    t.ok(requests.filter((u) => u.includes('/v1/containers/')).length >= 1, `the page kept asking the API by itself (${requests.length} requests)`);
    t.equal(await whoami(ctl.apiBase, ctl.caPem, cookie!.value), 401, 'the session is over after the idle timeout, though the page kept polling');
    t.match((await page.textContent('body')) ?? '', /logged out after .* without activity/, 'the console says why');
    t.ok(await page.$('#api-key'), 'and shows the login page');
  });
});
