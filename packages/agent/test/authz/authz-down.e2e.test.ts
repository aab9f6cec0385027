// What dockerd does while the authorization plugin is DOWN (docs/authz.md):
// it retries the plugin for ~30 s and then REFUSES the request — every API
// request, reads included. A plugin back within that window lets the
// stalled request through. This is dockerd's behaviour; the test pins it so
// the documentation stays true. Also: enabling the plugin through
// daemon.json, and the documented escape hatch (remove it, reload dockerd:
// no restart, containers keep running).
import t from 'tap';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createLogger } from '@bulkhead/shared';
import { startPrivateEngine, type PrivateEngine } from '../../../../test/helpers/engine';
import { AuthzPlugin, DOCKER_PLUGIN_DIR } from '../../src/authz/plugin-server';

const logger = createLogger({ name: 'authz-down-e2e', level: process.env['BULKHEAD_LOG_LEVEL'] ?? 'silent' });
const PLUGIN = `bulkhead-test-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
const socketPath = `${DOCKER_PLUGIN_DIR}/${PLUGIN}.sock`;

t.test('plugin down: dockerd refuses requests; back up: requests flow again', async (t) => {
  const start = () => AuthzPlugin.start({ socketPath, evaluate: () => ({ allow: true }), logger });
  let plugin = await start();
  let engine: PrivateEngine | undefined;
  t.teardown(async () => {
    // Stopping the engine talks to it through the plugin: plugin last.
    await engine?.stop();
    await plugin.stop();
  });
  engine = await startPrivateEngine({ dockerdArgs: [`--authorization-plugin=${PLUGIN}`], t });
  const e = engine;
  t.equal((await e.docker(['ps', '-q'])).code, 0, 'plugin up: requests served');

  await plugin.stop();
  const t0 = Date.now();
  const refused = await e.docker(['ps', '-q'], { timeoutMs: 90_000 });
  const refusedAfterMs = Date.now() - t0;
  t.comment(`plugin down: docker ps refused after ${refusedAfterMs} ms: ${refused.stderr.trim()}`);
  t.not(refused.code, 0, 'refused while the plugin is down');
  t.match(refused.stderr, new RegExp(`plugin ${PLUGIN} failed with error`));
  t.ok(refusedAfterMs >= 5_000, 'dockerd retried the plugin before giving up');

  // Down for a moment (an agent restart): the request stalls, then succeeds.
  const t1 = Date.now();
  const pending = e.docker(['ps', '-q'], { timeoutMs: 90_000 });
  await new Promise((r) => setTimeout(r, 1500));
  plugin = await start();
  const stalled = await pending;
  t.comment(`plugin back after 1.5 s: docker ps succeeded after ${Date.now() - t1} ms`);
  t.equal(stalled.code, 0, stalled.stderr);
  t.equal((await e.docker(['ps', '-q'])).code, 0, 'plugin up again: requests served at once');
});

t.test('daemon.json: enabled by "authorization-plugins" + reload; escape hatch: remove it + reload', async (t) => {
  const name = `${PLUGIN}-cfg`;
  const plugin = await AuthzPlugin.start({
    socketPath: `${DOCKER_PLUGIN_DIR}/${name}.sock`,
    evaluate: (req) => (req.method === 'POST' && req.path === '/containers/create' ? { allow: false, msg: 'creates are frozen' } : { allow: true }),
    logger,
  });
  let engine: PrivateEngine | undefined;
  t.teardown(async () => {
    await engine?.stop();
    await plugin.stop();
  });
  engine = await startPrivateEngine({ t });
  const e = engine;
  // engine.sh runs dockerd with --config-file DIR/daemon.json; SIGHUP = `systemctl reload docker`.
  const config = join(e.dir, 'daemon.json');
  const reload = async (cfg: Record<string, unknown>) => {
    writeFileSync(config, JSON.stringify(cfg));
    process.kill(Number(readFileSync(join(e.dir, 'dockerd.pid'), 'utf8').trim()), 'SIGHUP');
    await new Promise((r) => setTimeout(r, 1000));
  };
  const create = () => e.docker(['create', '--network', 'none', '--label', 'bulkhead.test=1', e.image, 'true']);
  t.equal((await create()).code, 0, 'no plugin configured: allowed');

  await reload({ 'authorization-plugins': [name] });
  const denied = await create();
  t.not(denied.code, 0);
  t.match(denied.stderr, new RegExp(`authorization denied by plugin ${name}: creates are frozen`));

  // Agent down AND the operator needs the engine back: drop the plugin from daemon.json and reload.
  await plugin.stop();
  await reload({});
  const t0 = Date.now();
  const back = await create();
  t.equal(back.code, 0, back.stderr);
  t.ok(Date.now() - t0 < 10_000, 'served at once, no plugin retries');
});
