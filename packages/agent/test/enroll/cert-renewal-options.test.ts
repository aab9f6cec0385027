import t from 'tap';
import {
  CERT_RENEWAL_DEFAULTS, planRenewal, renewalDueAt, renewalRetryDelayMs, resolveCertRenewalOptions,
} from '../../src/enroll/cert-renewal-options';

const DAY = 86_400_000;
const t0 = new Date('2026-01-01T00:00:00Z');
const at = (ms: number) => new Date(t0.getTime() + ms);
const v90 = { notBefore: t0, notAfter: at(90 * DAY) };

t.test('defaults: renew at half the lifetime', async (t) => {
  const o = resolveCertRenewalOptions();
  t.same(o, CERT_RENEWAL_DEFAULTS);
  t.equal(renewalDueAt(v90, o).toISOString(), at(45 * DAY).toISOString(), 'a 90-day certificate renews on day 45');
  t.same(planRenewal(v90, at(DAY), o), { kind: 'renew-in', ms: 44 * DAY });
  t.same(planRenewal(v90, at(60 * DAY), o), { kind: 'renew-in', ms: 0 }, 'started with less than half left: at once');
  t.same(planRenewal(v90, at(90 * DAY), o), { kind: 'expired' }, 'at notAfter it is expired');
  t.same(planRenewal(v90, at(91 * DAY), o), { kind: 'expired' });
});

t.test('renewAtFraction and renewBeforeMs', async (t) => {
  t.equal(renewalDueAt(v90, resolveCertRenewalOptions({ renewAtFraction: 0.75 })).toISOString(), at(67.5 * DAY).toISOString());
  const before = resolveCertRenewalOptions({ renewBeforeMs: 10 * DAY, renewAtFraction: 0.1 });
  t.equal(renewalDueAt(v90, before).toISOString(), at(80 * DAY).toISOString(), 'renewBeforeMs wins over the fraction');
  t.equal(renewalDueAt(v90, resolveCertRenewalOptions({ renewBeforeMs: 200 * DAY })).toISOString(), t0.toISOString(), 'never before notBefore');
  const short = { notBefore: t0, notAfter: at(4000) };
  t.same(planRenewal(short, at(1000), resolveCertRenewalOptions()), { kind: 'renew-in', ms: 1000 }, 'seconds-long certificates work the same');
});

t.test('invalid options are refused at start', async (t) => {
  for (const bad of [{ renewAtFraction: 0 }, { renewAtFraction: 1 }, { renewAtFraction: Number.NaN }, { renewBeforeMs: 0 }, { minRetryMs: -1 }, { minRetryMs: 10, maxRetryMs: 5 }, { expiredRetryMs: 0 }, { answerTimeoutMs: Infinity }]) {
    t.throws(() => resolveCertRenewalOptions(bad), { code: 'BK_ERR_CONFIG_INVALID' }, JSON.stringify(bad));
  }
});

t.test('retry delay: doubling, capped, full jitter, floor at half the minimum', async (t) => {
  const o = resolveCertRenewalOptions({ minRetryMs: 1000, maxRetryMs: 8000 });
  t.equal(renewalRetryDelayMs(0, o, () => 1), 1000);
  t.equal(renewalRetryDelayMs(1, o, () => 1), 2000);
  t.equal(renewalRetryDelayMs(3, o, () => 1), 8000);
  t.equal(renewalRetryDelayMs(50, o, () => 1), 8000, 'capped (and no overflow)');
  t.equal(renewalRetryDelayMs(3, o, () => 0.25), 2000, 'jittered');
  t.equal(renewalRetryDelayMs(3, o, () => 0), 500, 'never spins: at least half the minimum');
});
