// What dockerd does while the authorization plugin is DOWN (docs/authz.md):
// it retries the plugin for ~30 s and then REFUSES the request — every API
// request, reads included. A plugin back within that window lets the
// stalled request through. This is dockerd's behaviour; the test pins it so
// the documentation stays true.
import t from 'tap';
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
