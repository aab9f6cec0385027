import t from 'tap';
import { statSync, writeFileSync, chmodSync } from 'node:fs';
import { join } from 'node:path';
import { resolveAgentOptions } from '../../src/agent-options';
import { splitController } from '../../src/link/controller-address';
import { saveCredentials, loadCredentials, isEnrolled, statePaths } from '../../src/state/agent-state';

t.test('agent options: defaults and clear errors', async (t) => {
  const o = resolveAgentOptions({ stateDir: '/s', hostLabel: ['env=prod', 'zone=a=b'] });
  t.same(o, {
    stateDir: '/s', dockerHost: undefined, controller: undefined, hostLabels: { env: 'prod', zone: 'a=b' }, reconcileIntervalMs: 30_000, authzSocket: '/run/docker/plugins/bulkhead.sock', policyFile: undefined,
    metricsListen: '127.0.0.1:9465', metricsAllowRemote: false,
    usageIntervalMs: 5000, usageReportIntervalMs: 30_000,
    // host audit (issue 4): hourly, every lockdown fix off
    audit: { intervalMs: 3600_000, fixes: {}, dockerGroup: 'docker', hostRoot: '/', procRoot: undefined, containerdSocketPath: undefined, daemonJsonPath: undefined, trustedUsers: undefined, imageUnusedDays: 30 },
  });
  t.equal(resolveAgentOptions({ stateDir: '/s', authzSocket: false }).authzSocket, undefined, '--no-authz');
  t.equal(resolveAgentOptions({ stateDir: '/s', authzSocket: '/tmp/x/a.sock' }).authzSocket, '/tmp/x/a.sock');
  t.throws(() => resolveAgentOptions({ stateDir: '/s', authzSocket: 'relative.sock' }), { message: /absolute path/ });
  t.equal(resolveAgentOptions({ stateDir: '/s', reconcileInterval: '5s', dockerHost: 'unix:///x.sock' }).reconcileIntervalMs, 5000);
  t.throws(() => resolveAgentOptions({ stateDir: '' }), { code: 'BK_ERR_CONFIG_INVALID' });
  t.throws(() => resolveAgentOptions({ stateDir: '/s', hostLabel: ['novalue'] }), { message: /key=value/ });
  t.throws(() => resolveAgentOptions({ stateDir: '/s', reconcileInterval: '100ms' }), { message: /at least 1s/ });
  t.equal(resolveAgentOptions({ stateDir: '/s', dockerHost: '/run/x.sock' }).dockerHost, 'unix:///run/x.sock', 'bare socket path');
  t.throws(() => resolveAgentOptions({ stateDir: '/s', dockerHost: 'docker.sock' }), { message: /socket path or a URL/ });
  t.throws(() => resolveAgentOptions({ stateDir: '/s', controller: 'nohost' }), { message: /HOST:PORT/ });
});

t.test('controller address parsing', async (t) => {
  t.same(splitController('ctl.example.com:7443'), { host: 'ctl.example.com', port: 7443 });
  t.same(splitController('[::1]:7443'), { host: '::1', port: 7443 });
  for (const bad of ['ctl', ':7443', 'ctl:0', 'ctl:70000', 'https://ctl:7443']) t.throws(() => splitController(bad), { code: 'BK_ERR_CONFIG_INVALID' }, bad);
});

t.test('state dir: credentials round-trip, key 0600, refuses loose key modes', async (t) => {
  const dir = join(t.testdir(), 'state');
  t.notOk(isEnrolled(dir));
  t.throws(() => loadCredentials(dir), { code: 'BK_ERR_NOT_ENROLLED' });
  const identity = { agentId: 'agt_1', controller: 'c:1', caFingerprint: 'sha256:00', enrolledAt: 'x', certNotAfter: 'y' };
  saveCredentials(dir, { identity, keyPem: 'KEY', certPem: 'CERT', caPem: 'CA' });
  t.ok(isEnrolled(dir));
  const p = statePaths(dir);
  t.equal(statSync(p.key).mode & 0o777, 0o600);
  t.equal(statSync(dir).mode & 0o777, 0o700);
  t.same(loadCredentials(dir), { identity, keyPem: 'KEY', certPem: 'CERT', caPem: 'CA' });
  chmodSync(p.key, 0o644);
  t.throws(() => loadCredentials(dir), { code: 'BK_ERR_CONFIG_INVALID', message: /chmod 600/ });
  chmodSync(p.key, 0o600);
  writeFileSync(p.identity, '{not json');
  t.throws(() => loadCredentials(dir), { code: 'BK_ERR_CONFIG_INVALID' });
  writeFileSync(p.identity, '{}');
  t.throws(() => loadCredentials(dir), { message: /lacks agentId/ });
});
