import t from 'tap';
import { chmodSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { resolveControllerOptions } from '../../src/controller-options';
import { splitHostPort } from '../../src/net/host-port';
import { defaultSans, initPki, loadPki } from '../../src/pki/data-dir';

t.test('controller options', async (t) => {
  const o = resolveControllerOptions({ dataDir: '/d' });
  t.same(o, {
    dataDir: '/d', grpcListen: '0.0.0.0:7443', apiListen: '0.0.0.0:8443', heartbeatIntervalMs: 5000, offlineAfterMs: 15000,
    metricsListen: '127.0.0.1:9464', metricsAllowRemote: false, tokenMaxTtlMs: 3_600_000, databasePoolSize: 20, databasePoolWaitMs: 30_000,
    sessionIdleMs: 15 * 60_000, sessionMaxLifetimeMs: 8 * 3_600_000, usageHistoryIntervalMs: 60_000,
  });
  // Recent usage history: whole seconds, 1 s to 1 h, refused at start with the flag's name.
  t.equal(resolveControllerOptions({ dataDir: '/d', usageHistoryInterval: '2s' }).usageHistoryIntervalMs, 2000);
  t.throws(() => resolveControllerOptions({ dataDir: '/d', usageHistoryInterval: '1500ms' }), { code: 'BK_ERR_CONFIG_INVALID', message: /usage-history-interval/ });
  t.throws(() => resolveControllerOptions({ dataDir: '/d', usageHistoryInterval: '2h' }), { message: /usage-history-interval/ });
  // Browser sessions: both timeouts configurable, bounded, and the lifetime not shorter than the idle timeout.
  t.match(resolveControllerOptions({ dataDir: '/d', sessionIdleTimeout: '10s', sessionMaxLifetime: '1m' }), { sessionIdleMs: 10_000, sessionMaxLifetimeMs: 60_000 });
  t.throws(() => resolveControllerOptions({ dataDir: '/d', sessionIdleTimeout: '5s' }), { code: 'BK_ERR_CONFIG_INVALID', message: /session-idle-timeout/ });
  t.throws(() => resolveControllerOptions({ dataDir: '/d', sessionMaxLifetime: '31d' }), { code: 'BK_ERR_CONFIG_INVALID', message: /session-max-lifetime/ });
  t.throws(() => resolveControllerOptions({ dataDir: '/d', sessionIdleTimeout: '2h', sessionMaxLifetime: '1h' }), { message: /must not be shorter than session-idle-timeout/ });
  // PostgreSQL pool (issue 16): size and wait, from flags or the environment's strings.
  const pool = resolveControllerOptions({ dataDir: '/d', databasePoolSize: '4', databasePoolWait: '500ms' });
  t.equal(pool.databasePoolSize, 4);
  t.equal(pool.databasePoolWaitMs, 500);
  t.throws(() => resolveControllerOptions({ dataDir: '/d', databasePoolSize: '0' }), { message: /database-pool-size/ });
  t.throws(() => resolveControllerOptions({ dataDir: '/d', databasePoolSize: 'ten' }), { message: /database-pool-size/ });
  t.throws(() => resolveControllerOptions({ dataDir: '/d', databasePoolWait: '10ms' }), { message: /database-pool-wait/ });
  t.throws(() => resolveControllerOptions({ dataDir: '/d', databasePoolWait: 'soon' }), { message: /database-pool-wait/ });
  // Identity and access (issue 5).
  t.equal(resolveControllerOptions({ dataDir: '/d', tokenMaxTtl: '15m' }).tokenMaxTtlMs, 900_000);
  t.throws(() => resolveControllerOptions({ dataDir: '/d', tokenMaxTtl: '30s' }), { message: /token-max-ttl/ });
  t.throws(() => resolveControllerOptions({ dataDir: '/d', tokenMaxTtl: '2d' }), { message: /token-max-ttl/ });
  t.equal(resolveControllerOptions({ dataDir: '/d', heartbeatInterval: '1s' }).offlineAfterMs, 3000, 'offline defaults to 3 × heartbeat');
  t.throws(() => resolveControllerOptions({ dataDir: '' }), { code: 'BK_ERR_CONFIG_INVALID' });
  t.throws(() => resolveControllerOptions({ dataDir: '/d', heartbeatInterval: '10ms' }), { message: /at least 100ms/ });
  t.throws(() => resolveControllerOptions({ dataDir: '/d', heartbeatInterval: '5s', offlineAfter: '5s' }), { message: /longer than heartbeat/ });
  t.throws(() => resolveControllerOptions({ dataDir: '/d', apiListen: '8443' }), { message: /api-listen/ });
});

t.test('listen address parsing', async (t) => {
  t.same(splitHostPort('127.0.0.1:0', 'x'), { host: '127.0.0.1', port: 0 });
  t.same(splitHostPort('[::1]:8443', 'x'), { host: '::1', port: 8443 });
  t.throws(() => splitHostPort('host:99999', 'grpc-listen'), { message: /grpc-listen/ });
});

t.test('data dir: init once, keys 0600, loose modes refused', async (t) => {
  const dir = join(t.testdir(), 'ctl');
  t.throws(() => loadPki(dir), { code: 'BK_ERR_NOT_INITIALIZED' });
  const sans = defaultSans(['ctl.example.com', ' ', 'localhost']);
  t.ok(sans.includes('ctl.example.com') && sans.includes('127.0.0.1'));
  t.equal(sans.filter((s) => s === 'localhost').length, 1, 'deduplicated');
  const pki = await initPki(dir, sans);
  t.equal(statSync(join(dir, 'ca.key')).mode & 0o777, 0o600);
  t.equal(loadPki(dir).caFingerprint, pki.caFingerprint);
  await t.rejects(initPki(dir, sans), { code: 'BK_ERR_ALREADY_INITIALIZED' }, 'never replaces a CA');
  chmodSync(join(dir, 'server.key'), 0o640);
  t.throws(() => loadPki(dir), { code: 'BK_ERR_CONFIG_INVALID', message: /server\.key/ });
});
