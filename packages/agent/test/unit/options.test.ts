import t from 'tap';
import { statSync, writeFileSync, chmodSync } from 'node:fs';
import { join } from 'node:path';
import { resolveAgentOptions } from '../../src/agent-options';
import { MAX_CONTROLLER_ADDRESSES, parseControllerList, splitController } from '../../src/link/controller-address';
import { controllersIdentity, identityControllers, saveCredentials, loadCredentials, isEnrolled, statePaths } from '../../src/state/agent-state';
import { main } from '../../src/cli/main';
import { createCa, issueAgentCertWithDates } from '@bulkhead/shared';

t.test('agent options: defaults and clear errors', async (t) => {
  const o = resolveAgentOptions({ stateDir: '/s', hostLabel: ['env=prod', 'zone=a=b'] });
  t.same(o, {
    stateDir: '/s', dockerHost: undefined, controller: undefined, hostLabels: { env: 'prod', zone: 'a=b' }, reconcileIntervalMs: 30_000, authzSocket: '/run/docker/plugins/bulkhead.sock', policyFile: undefined,
    metricsListen: '127.0.0.1:9465', metricsAllowRemote: false,
    usageIntervalMs: 5000, usageReportIntervalMs: 30_000,
    usageSources: { disk: true, net: true, blkio: true },
    usageResourceIntervalMs: 60_000,
    // host audit (issue 4): hourly, every lockdown fix off
    audit: { intervalMs: 3600_000, fixes: {}, dockerGroup: 'docker', hostRoot: '/', procRoot: undefined, containerdSocketPath: undefined, daemonJsonPath: undefined, trustedUsers: undefined, imageUnusedDays: 30 },
    heapTrimIntervalMs: 30_000,
    dataRootThresholdPercent: 85,
    // image signatures (issue 13)
    signatures: { registryCertsDir: '/etc/docker/certs.d', registryAuthFile: undefined, timeoutMs: 1500, cacheTtlMs: 600_000 },
  });
  t.same(resolveAgentOptions({ stateDir: '/s', registryCertsDir: '/c', registryAuthFile: '/a.json', signatureTimeout: '3s', signatureCacheTtl: '0' }).signatures,
    { registryCertsDir: '/c', registryAuthFile: '/a.json', timeoutMs: 3000, cacheTtlMs: 0 }, '--registry-certs-dir --registry-auth-file --signature-timeout --signature-cache-ttl');
  t.throws(() => resolveAgentOptions({ stateDir: '/s', signatureTimeout: '10ms' }), { code: 'BK_ERR_CONFIG_INVALID', message: /signature-timeout/ });
  t.throws(() => resolveAgentOptions({ stateDir: '/s', registryAuthFile: 'auth.json' }), { code: 'BK_ERR_CONFIG_INVALID', message: /absolute path/ });
  t.equal(resolveAgentOptions({ stateDir: '/s', heapTrimInterval: '0' }).heapTrimIntervalMs, 0, '--heap-trim-interval 0 = off');
  // This test's node runs without --optimize-for-size: auto is 30 s (with it, 0: heap-trim.test.ts covers the detection).
  t.equal(resolveAgentOptions({ stateDir: '/s', heapTrimInterval: 'auto' }).heapTrimIntervalMs, process.execArgv.includes('--optimize-for-size') ? 0 : 30_000, '--heap-trim-interval auto');
  t.equal(resolveAgentOptions({ stateDir: '/s', heapTrimInterval: '2m' }).heapTrimIntervalMs, 120_000);
  t.throws(() => resolveAgentOptions({ stateDir: '/s', heapTrimInterval: '1s' }), { code: 'BK_ERR_CONFIG_INVALID', message: /at least 10s/ });
  t.equal(resolveAgentOptions({ stateDir: '/s', authzSocket: false }).authzSocket, undefined, '--no-authz');
  t.same(resolveAgentOptions({ stateDir: '/s', diskUsage: false, netUsage: false, blkioUsage: false }).usageSources, { disk: false, net: false, blkio: false }, '--no-disk-usage --no-net-usage --no-blkio-usage');
  t.equal(resolveAgentOptions({ stateDir: '/s', usageInterval: '1s', usageReportInterval: '2s', usageResourceInterval: '1s' }).usageResourceIntervalMs, 1000, '--usage-resource-interval');
  t.throws(() => resolveAgentOptions({ stateDir: '/s', usageResourceInterval: '2s' }), { message: /not be shorter than usage-interval/ });
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
  for (const bad of ['ctl', ':7443', 'ctl:0', 'ctl:70000', 'https://ctl:7443', 'a:1,b:2']) t.throws(() => splitController(bad), { code: 'BK_ERR_CONFIG_INVALID' }, bad);
});

t.test('controller address lists: comma-separated, repeated, and clear errors', async (t) => {
  t.same(parseControllerList('ctl.example.com:7443'), ['ctl.example.com:7443']);
  t.same(parseControllerList('a.example:7443, b.example:7443'), ['a.example:7443', 'b.example:7443'], 'spaces around entries are fine');
  t.same(parseControllerList(['a:1,b:2', '[::1]:3', '10.0.0.5:7443']), ['a:1', 'b:2', '[::1]:3', '10.0.0.5:7443'], 'repeated flag and lists mixed, order kept');
  t.throws(() => parseControllerList('a:1,,b:2'), { code: 'BK_ERR_CONFIG_INVALID', message: /"a:1,,b:2" has an empty entry \(position 2 of 3\)/ });
  t.throws(() => parseControllerList('a:1,'), { code: 'BK_ERR_CONFIG_INVALID', message: /empty entry \(position 2 of 2\)/ }, 'trailing comma');
  t.throws(() => parseControllerList(''), { code: 'BK_ERR_CONFIG_INVALID', message: /empty entry/ });
  t.throws(() => parseControllerList([]), { code: 'BK_ERR_CONFIG_INVALID', message: /no controller address/ });
  t.throws(() => parseControllerList('a:1,b:99999'), { code: 'BK_ERR_CONFIG_INVALID', message: /"b:99999" is not HOST:PORT/ }, 'bad port');
  t.throws(() => parseControllerList('a:1,b'), { code: 'BK_ERR_CONFIG_INVALID', message: /"b" is not HOST:PORT/ }, 'no port');
  t.throws(() => parseControllerList(['CTL.example:7443', 'ctl.example:7443']), { code: 'BK_ERR_CONFIG_INVALID', message: /"ctl.example:7443" is given twice \(also as "CTL.example:7443"\)/ });
  t.same(parseControllerList('ctl:7443,ctl:7444'), ['ctl:7443', 'ctl:7444'], 'one host, two ports: two replicas');
  const many = Array.from({ length: MAX_CONTROLLER_ADDRESSES + 1 }, (_, i) => `c${i}:7443`).join(',');
  t.throws(() => parseControllerList(many), { code: 'BK_ERR_CONFIG_INVALID', message: /at most 16/ });
  t.same(resolveAgentOptions({ stateDir: '/s', controller: ['a:1', 'b:2,c:3'] }).controller, ['a:1', 'b:2', 'c:3']);
  t.equal(resolveAgentOptions({ stateDir: '/s', controller: [] }).controller, undefined, 'no override');
  t.throws(() => resolveAgentOptions({ stateDir: '/s', controller: 'a:1,a:1' }), { message: /given twice/ });
});

t.test('CLI: a malformed --controller list exits 2 naming the entry', async (t) => {
  const err: string[] = [];
  const io = { out: () => undefined, err: (s: string) => void err.push(s) };
  const dir = join(t.testdir(), 'none');
  t.equal(await main(['enroll', '--controller', 'a:7443,,b:7443', '--token', 'x', '--ca-fingerprint', 'sha256:00', '--state-dir', dir], io), 2);
  t.match(err.join(''), /empty entry/);
  err.length = 0;
  t.equal(await main(['run', '--state-dir', dir, '--controller', 'a:7443', '--controller', 'a:7443'], io), 2, 'run refuses a duplicate before anything starts');
  t.match(err.join(''), /given twice/);
  // The environment variable takes the same list.
  err.length = 0;
  process.env['BULKHEAD_CONTROLLER_OVERRIDE'] = 'a:7443,b:7443,';
  t.teardown(() => delete process.env['BULKHEAD_CONTROLLER_OVERRIDE']);
  t.equal(await main(['run', '--state-dir', dir], io), 2, 'BULKHEAD_CONTROLLER_OVERRIDE is checked the same way');
  t.match(err.join(''), /"a:7443,b:7443," has an empty entry \(position 3 of 3\)/);
});

t.test('identity: one address stays a plain `controller`; several are saved in order and read back', async (t) => {
  t.same(controllersIdentity(['a:1']), { controller: 'a:1' });
  t.same(controllersIdentity(['a:1', 'b:2']), { controller: 'a:1', controllers: ['a:1', 'b:2'] });
  const base = { agentId: 'agt_1', caFingerprint: 'sha256:00', enrolledAt: 'x', certNotAfter: 'y' };
  t.same(identityControllers({ ...base, controller: 'a:1' }), ['a:1']);
  t.same(identityControllers({ ...base, controller: 'a:1', controllers: ['a:1', 'b:2'] }), ['a:1', 'b:2']);
  const dir = join(t.testdir(), 'state');
  const ca = await createCa();
  const pair = await issueAgentCertWithDates(ca, 'agt_1', new Date(Date.now() - 60_000), new Date(Date.now() + 86_400_000));
  const creds = { identity: { ...base, ...controllersIdentity(['a:1', 'b:2']) }, keyPem: pair.keyPem, certPem: pair.certPem, caPem: ca.certPem };
  saveCredentials(dir, creds);
  t.same(loadCredentials(dir).identity.controllers, ['a:1', 'b:2']);
  writeFileSync(statePaths(dir).identity, JSON.stringify({ ...creds.identity, controllers: ['a:1', 'a:1'] }));
  t.throws(() => loadCredentials(dir), { code: 'BK_ERR_CONFIG_INVALID', message: /bad controllers list .*given twice/ });
});

t.test('state dir: credentials round-trip, key 0600, refuses loose key modes', async (t) => {
  const dir = join(t.testdir(), 'state');
  t.notOk(isEnrolled(dir));
  t.throws(() => loadCredentials(dir), { code: 'BK_ERR_NOT_ENROLLED' });
  const identity = { agentId: 'agt_1', controller: 'c:1', caFingerprint: 'sha256:00', enrolledAt: 'x', certNotAfter: 'y' };
  const ca = await createCa();
  const pair = await issueAgentCertWithDates(ca, 'agt_1', new Date(Date.now() - 60_000), new Date(Date.now() + 86_400_000));
  const creds = { identity, keyPem: pair.keyPem, certPem: pair.certPem, caPem: ca.certPem };
  saveCredentials(dir, creds);
  t.ok(isEnrolled(dir));
  const p = statePaths(dir);
  t.equal(statSync(p.key).mode & 0o777, 0o600);
  t.equal(statSync(dir).mode & 0o777, 0o700);
  t.same(loadCredentials(dir), creds);
  chmodSync(p.key, 0o644);
  t.throws(() => loadCredentials(dir), { code: 'BK_ERR_CONFIG_INVALID', message: /chmod 600/ });
  chmodSync(p.key, 0o600);
  writeFileSync(p.identity, '{not json');
  t.throws(() => loadCredentials(dir), { code: 'BK_ERR_CONFIG_INVALID', message: /identity\.json is not valid JSON .*enroll this host again/ });
  writeFileSync(p.identity, '{}');
  t.throws(() => loadCredentials(dir), { message: /lacks agentId/ });
  writeFileSync(p.identity, 'null');
  t.throws(() => loadCredentials(dir), { message: /lacks agentId/ });
});

t.test('state dir: a damaged key, certificate or CA is refused at load, naming the file and how to recover', async (t) => {
  const dir = join(t.testdir(), 'state');
  const identity = { agentId: 'agt_1', controller: 'ctl:7443', caFingerprint: 'sha256:ab', enrolledAt: 'x', certNotAfter: 'y' };
  const ca = await createCa();
  const pair = await issueAgentCertWithDates(ca, 'agt_1', new Date(Date.now() - 60_000), new Date(Date.now() + 86_400_000));
  const other = await issueAgentCertWithDates(ca, 'agt_2', new Date(Date.now() - 60_000), new Date(Date.now() + 86_400_000));
  const good = { identity, keyPem: pair.keyPem, certPem: pair.certPem, caPem: ca.certPem };
  const p = statePaths(dir);
  const cases: [string, Partial<typeof good>, string, RegExp][] = [
    ['truncated key', { keyPem: pair.keyPem.slice(0, 60) }, p.key, /is not a readable private key/],
    ['garbage certificate', { certPem: '\u0000\u0001garbage' }, p.cert, /is not a readable certificate/],
    ['truncated certificate', { certPem: pair.certPem.slice(0, pair.certPem.length / 2) }, p.cert, /is not a readable certificate/],
    ['empty CA', { caPem: '' }, p.ca, /is not a readable certificate/],
    ['a certificate of another key', { certPem: other.certPem }, p.cert, /is not the certificate of the key in/],
  ];
  for (const [what, change, file, message] of cases) {
    saveCredentials(dir, { ...good, ...change });
    const err = (() => {
      try {
        loadCredentials(dir);
        return undefined;
      } catch (e) {
        return e as Error & { code?: string };
      }
    })();
    t.equal(err?.code, 'BK_ERR_CONFIG_INVALID', what);
    t.match(err?.message, message, what);
    t.ok(err?.message.includes(file), `${what}: names ${file}`);
    t.match(err?.message, /bulkhead-agent enroll --controller ctl:7443 --token <new join token> --ca-fingerprint sha256:ab --state-dir /, `${what}: says how to recover`);
  }
});
