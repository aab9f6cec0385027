// Unit tests of the identity-and-access building blocks.
import t from 'tap';
import { createHmac } from 'node:crypto';
import { chmodSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { mintToken, verifyToken } from '../../src/auth/bearer-tokens';
import { AuthFailureLimits, FailureLimiter } from '../../src/auth/rate-limiter';
import { deriveAction, roleAtLeast } from '../../src/auth/roles';
import { checkGrant } from '../../src/auth/delegation';
import { containerProject, projectsWithin } from '../../src/auth/project-scope';
import { loadOrCreateSigningSecret, loadSigningSecret, signingSecretPath } from '../../src/auth/signing-secret';
import { resolveAuthOptions } from '../../src/auth/auth-options';
import type { Principal } from '../../src/auth/principal';
import { generateApiKey } from '../../src/api/api-keys';
import { facts, hexId } from '../store/fixtures/records';

const SECRET = Buffer.alloc(32, 1);
const NOW = new Date('2026-11-28T12:00:00Z');

t.test('bearer tokens', async (t) => {
  const { token, claims } = mintToken(SECRET, { kid: 'ak_0123456789abcdef', role: 'operator', projects: ['a'], now: NOW, ttlMs: 900_000 });
  t.match(claims, { kid: 'ak_0123456789abcdef', role: 'operator', projects: ['a'], iat: NOW.getTime() / 1000, exp: NOW.getTime() / 1000 + 900, jti: /^tok_[0-9a-f]{24}$/ });
  t.same(verifyToken(SECRET, token, NOW), claims);
  t.throws(() => verifyToken(SECRET, token, new Date(NOW.getTime() + 900_000)), { code: 'BK_ERR_UNAUTHENTICATED', message: /expired/ });
  t.throws(() => verifyToken(Buffer.alloc(32, 2), token, NOW), { message: /signature/ });
  t.throws(() => verifyToken(SECRET, token, new Date(NOW.getTime() - 120_000)), { message: /future/ });
  const [body, sig] = token.split('.') as [string, string];
  const alter = (c: Record<string, unknown>) => 'bkt_' + Buffer.from(JSON.stringify(c)).toString('base64url') + '.' + sig;
  t.throws(() => verifyToken(SECRET, alter({ ...claims, role: 'admin' }), NOW), { message: /signature/ }, 'altered role');
  t.throws(() => verifyToken(SECRET, alter({ ...claims, projects: [] }), NOW), { message: /signature/ }, 'widened projects');
  t.throws(() => verifyToken(SECRET, `${body}.${sig.slice(0, -1)}`, NOW), { message: /malformed/ });
  // Correctly signed but nonsense claims (only possible with the secret): still refused.
  const weird = 'bkt_' + Buffer.from(JSON.stringify({ kid: 'nope', role: 'root' })).toString('base64url');
  t.throws(() => verifyToken(SECRET, `${weird}.${createHmac('sha256', SECRET).update(weird).digest('base64url')}`, NOW), { message: /malformed token claims/ });
});

t.test('failure limiter', async (t) => {
  const l = new FailureLimiter({ max: 2, windowMs: 1000, maxBuckets: 3 });
  t.equal(l.retryAfterMs('a', 0), 0);
  l.fail(['a', 'b'], 0);
  l.fail(['a'], 400);
  t.equal(l.retryAfterMs('a', 500), 500, 'until the oldest failure leaves the window');
  t.equal(l.retryAfterMs('b', 500), 0);
  t.equal(l.retryAfterMs('a', 999), 1);
  t.equal(l.retryAfterMs('a', 1000), 0, 'sliding: the oldest failure aged out, one is left');
  l.fail(['a'], 1000);
  t.equal(l.retryAfterMs('a', 1000), 400, 'limited again until the failure at 400 ages out');
  for (const b of ['c', 'd', 'e', 'f']) l.fail([b], 2000);
  t.equal((l as unknown as { buckets: Map<string, number[]> }).buckets.size, 3, 'bounded memory');
  t.throws(() => new FailureLimiter({ max: 0 }));
});

t.test('failed authentication is counted per address and per key id at an address, never per key id alone', async (t) => {
  const l = new AuthFailureLimits({ perAddress: 5, perKeyPerAddress: 2, windowMs: 1000 });
  const K = 'ak_0123456789abcdef';
  l.fail('10.0.0.1', K, 0);
  l.fail('10.0.0.1', K, 0);
  t.match(l.checkKey(K, '10.0.0.1', 0), { bucket: `key:${K}@ip:10.0.0.1`, retryAfterMs: 1000, scope: `for key ${K} from this address (2 per 1s)` });
  t.equal(l.checkKey(K, '10.0.0.2', 0), undefined, 'the same key from another address is not limited');
  t.equal(l.checkKey('ak_fedcba9876543210', '10.0.0.1', 0), undefined, 'another key from the same address is not');
  t.equal(l.checkAddress('10.0.0.1', 0), undefined, 'the address is below its own, wider limit');
  for (const ip of ['10.0.1.1', '10.0.1.2', '10.0.1.3', '10.0.1.4', '10.0.1.5']) l.fail(ip, K, 0);
  t.equal(l.checkKey(K, '10.0.0.2', 0), undefined, 'failures for a key from many addresses do not add up');
  for (let i = 0; i < 3; i++) l.fail('10.0.0.1', undefined, 500);
  t.match(l.checkAddress('10.0.0.1', 500), { bucket: 'ip:10.0.0.1', retryAfterMs: 500, scope: 'from this address (5 per 1s)' });
  t.equal(l.checkAddress('10.0.0.1', 1000), undefined, 'the window slides');
  t.equal(l.checkKey(K, '10.0.0.1', 1000), undefined);
  t.throws(() => new AuthFailureLimits({ perKeyPerAddress: 0 }), RangeError);
});

t.test('roles, actions, delegation, scopes', async (t) => {
  t.ok(roleAtLeast('admin', 'operator'));
  t.notOk(roleAtLeast('viewer', 'operator'));
  t.equal(deriveAction('POST', '/v1/keys'), 'keys.create');
  t.equal(deriveAction('DELETE', '/v1/keys/:id'), 'keys.delete');
  t.equal(deriveAction('POST', '/v1/webhooks/:id/rotate-secret'), 'webhooks.rotate-secret');
  t.equal(deriveAction('POST', '/v1/policies::dry-run'), 'policies.dry-run');
  t.equal(deriveAction('GET', '/v1/containers/:agent/:id'), 'containers.read');
  t.equal(deriveAction('POST', '/v1/containers/:agent/:id/actions'), 'containers.actions');

  t.ok(projectsWithin(['a'], []));
  t.ok(projectsWithin([], []));
  t.notOk(projectsWithin([], ['a']), 'every project is wider than one');
  t.notOk(projectsWithin(['a', 'b'], ['a']));
  t.equal(containerProject(facts({ id: hexId('x'), labels: { 'bulkhead.project': 'pay' } })), 'pay');
  t.equal(containerProject(facts({ id: hexId('x'), project: 'from-agent', labels: { 'bulkhead.project': 'pay' } })), 'from-agent');
  t.equal(containerProject(facts({ id: hexId('x') })), '');

  const key = generateApiKey('k', 'operator').record;
  const p = (over: Partial<Principal>): Principal => ({ kind: 'key', keyId: key.id, keyName: 'k', role: 'operator', projects: [], keyExpiresAt: null, expiresAt: null, tokenId: null, key, ...over });
  const soon = new Date(NOW.getTime() + 3_600_000);
  t.throws(() => checkGrant(p({}), { role: 'admin', projects: [], expiresAt: null }, 'x'), { code: 'BK_ERR_FORBIDDEN', message: /cannot grant admin/ });
  t.doesNotThrow(() => checkGrant(p({}), { role: 'viewer', projects: ['a'], expiresAt: null }, 'x'));
  t.throws(() => checkGrant(p({ projects: ['a'] }), { role: 'viewer', projects: [], expiresAt: null }, 'x'), { message: /every project/ });
  t.throws(() => checkGrant(p({ keyExpiresAt: soon }), { role: 'viewer', projects: [], expiresAt: null }, 'x'), { message: /no expiry/ });
  t.throws(() => checkGrant(p({ keyExpiresAt: soon }), { role: 'viewer', projects: [], expiresAt: new Date(soon.getTime() + 1) }, 'x'), { message: /no later/ });
  t.doesNotThrow(() => checkGrant(p({ keyExpiresAt: soon }), { role: 'viewer', projects: [], expiresAt: soon }, 'x'));
});

t.test('signing secret file and options', async (t) => {
  const dir = t.testdir();
  const s1 = loadOrCreateSigningSecret(dir);
  t.equal(s1.length, 32);
  t.equal(statSync(signingSecretPath(dir)).mode & 0o777, 0o600, 'created 0600');
  t.same(loadOrCreateSigningSecret(dir), s1, 'kept across starts');
  chmodSync(signingSecretPath(dir), 0o644);
  t.throws(() => loadSigningSecret(dir), { code: 'BK_ERR_CONFIG_INVALID', message: /chmod 600/ });
  chmodSync(signingSecretPath(dir), 0o600);
  writeFileSync(join(dir, 'token-signing.key'), 'short\n', { mode: 0o600 });
  t.throws(() => loadSigningSecret(dir), { message: /at least 32 bytes/ });
  t.match(readFileSync(join(dir, 'token-signing.key'), 'utf8'), 'short');

  const o = resolveAuthOptions({});
  t.match(o, { tokenDefaultTtlMs: 900_000, tokenMaxTtlMs: 3_600_000 });
  t.equal(resolveAuthOptions({ tokenMaxTtlMs: 300_000 }).tokenDefaultTtlMs, 300_000, 'the default never exceeds the maximum');
  t.throws(() => resolveAuthOptions({ tokenMaxTtlMs: 1000 }), { code: 'BK_ERR_CONFIG_INVALID' });
  t.throws(() => resolveAuthOptions({ tokenSecret: Buffer.alloc(8) }), { message: /32 bytes/ });
  t.same(o.failureLimit, { perAddress: 30, perKeyPerAddress: 10, windowMs: 60_000, maxBuckets: 10_000 });
  t.match(resolveAuthOptions({ failureLimit: { perKeyPerAddress: 3 } }).failureLimit, { perAddress: 30, perKeyPerAddress: 3 });
  t.throws(() => resolveAuthOptions({ failureLimit: { perAddress: 0 } }), { code: 'BK_ERR_CONFIG_INVALID', message: /perAddress must be a positive integer/ });
  t.throws(() => resolveAuthOptions({ failureLimit: { perKeyPerAddress: 1.5 } }), { code: 'BK_ERR_CONFIG_INVALID', message: /perKeyPerAddress/ });
  t.throws(() => resolveAuthOptions({ failureLimit: { windowMs: 0 } }), { code: 'BK_ERR_CONFIG_INVALID', message: /window/ });
});
