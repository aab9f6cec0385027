// A slow agent, with the real dockerd (20.10 and 26.1) as the judge: a plugin
// that cannot decide within its decision timeout refuses the request while
// the policy enforces anything (fail-closed) and allows it otherwise
// (fail-open), as docs/authz.md says. The evaluator here never answers.
import t from 'tap';
import { createLogger } from '@bulkhead/shared';
import { AuthzPlugin, DOCKER_PLUGIN_DIR } from '../../packages/agent/src/authz/plugin-server';
import { ENGINE_VERSIONS, LABEL_ARGS, startPrivateEngine, TEST_IMAGE } from '../helpers/engine';

const logger = createLogger({ name: 'slow-agent', level: process.env['BULKHEAD_LOG_LEVEL'] ?? 'silent' });

for (const version of ENGINE_VERSIONS) {
  t.test(`Docker ${version}: a decision that does not come in time`, async (t) => {
    let enforcing = true;
    const name = `bk-sl-${process.pid.toString(36)}${Math.random().toString(36).slice(2, 6)}`;
    const plugin = await AuthzPlugin.start({
      socketPath: `${DOCKER_PLUGIN_DIR}/${name}.sock`,
      // Everything but the create is answered at once; the create never is.
      evaluate: (req) => (req.path === '/containers/create' ? new Promise(() => undefined) : { allow: true }),
      decisionTimeoutMs: 500,
      failClosed: () => enforcing,
      logger,
    });
    t.teardown(() => plugin.stop());
    const e = await startPrivateEngine({ version, dockerdArgs: [`--authorization-plugin=${name}`], t });
    const started = Date.now();
    const refused = await e.docker(['create', '--network', 'none', ...LABEL_ARGS, TEST_IMAGE, 'true']);
    t.not(refused.code, 0, 'enforcing: refused');
    t.match(refused.stderr, new RegExp(`authorization denied by plugin ${name}: Bulkhead could not decide on this request \\(no decision within 500 ms\\)`), 'with the reason');
    t.ok(Date.now() - started < 10_000, `answered in ${Date.now() - started} ms, not after dockerd's retries`);
    t.equal((await e.docker(['ps', '-aq'])).stdout.trim(), '', 'nothing was created');
    enforcing = false;
    const allowed = await e.docker(['create', '--network', 'none', ...LABEL_ARGS, TEST_IMAGE, 'true']);
    t.equal(allowed.code, 0, `not enforcing: allowed (fail-open) ${allowed.stderr}`);
    t.equal(plugin.stats.failClosed, 1);
    t.equal(plugin.stats.failOpen, 1);
  });
}
