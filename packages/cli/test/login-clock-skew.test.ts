// `bulkhead login` on a host whose clock is off from the controller's: the
// cached token's expiry (on the controller's clock) is judged on this host's
// clock corrected by the offset measured at login, so a 15-minute token is
// neither taken for expired early nor sent after it expired.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { mintToken } from '../../controller/src/auth/bearer-tokens';
import { cachedToken, controllerClockOffsetMs, type TokenCache } from '../src/commands/login';

const secret = randomBytes(32);
const base = new URL('https://ctl.example:8443/');
const fail = (m: string) => new Error(m);

for (const skewMin of [10, -10]) {
  t.test(`controller clock ${skewMin > 0 ? '+' : ''}${skewMin} min`, async (t) => {
    const local = Date.now();
    const serverNow = new Date(local + skewMin * 60_000);
    const { token, claims } = mintToken(secret, { kid: 'ak_1', role: 'admin', projects: [], now: serverNow, ttlMs: 15 * 60_000 });
    const offset = controllerClockOffsetMs(token, local - 20, local + 30);
    t.ok(Math.abs(offset - skewMin * 60_000) < 1_500, `offset measured: ${offset} ms`);
    const cache: TokenCache = {
      api: base.href, ca: null, token, expiresAt: new Date(claims.exp * 1000).toISOString(), keyId: 'ak_1', keyName: 'admin', role: 'admin', projects: [], clockOffsetMs: offset,
    };
    t.equal(cachedToken(cache, base, new Date(local + 14 * 60_000), fail), token, 'usable for its whole 15 minutes on this host\'s clock');
    t.throws(() => cachedToken(cache, base, new Date(local + 16 * 60_000), fail), /expired/, 'and not after');
    const { clockOffsetMs: _o, ...uncorrected } = cache;
    void _o;
    if (skewMin < 0) t.throws(() => cachedToken(uncorrected, base, new Date(local + 6 * 60_000), fail), /expired/, 'uncorrected, it would have been refused after 5 minutes');
  });
}

t.test('no offset for a synchronized clock or an unreadable token', async (t) => {
  const now = Date.now();
  const { token } = mintToken(secret, { kid: 'ak_1', role: 'admin', projects: [], now: new Date(now), ttlMs: 60_000 });
  t.equal(controllerClockOffsetMs(token, now - 5, now + 200), 0);
  t.equal(controllerClockOffsetMs('bkt_notbase64.sig', now, now), 0);
  t.equal(controllerClockOffsetMs('garbage', now, now), 0);
});
